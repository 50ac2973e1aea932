"""Gradient estimators of the encoder: which derivative of the same bound the trainer follows.

`--gradient` picks one; the objective's VALUE is the bound either way (bit for bit the numbers of
`iwae` / `elbo`), only its gradient with respect to the encoder's parameters phi changes:

- "standard": the reparameterisation gradient of the bound (Kingma & Welling 2013; Burda et al. 2016):
  log q(z|x) depends on phi through z and through q's parameters (the score-function term).
- "stl", sticking the landing (Roeder et al. 2017): log q is scored with q's parameters cut from the
  graph (`q.detached()`), z keeps its path. The dropped score term has mean zero for the ELBO
  (k = 1), so STL is unbiased there; for the IWAE bound with k > 1 it does not (the term is weighted
  by the normalised importance weights), so STL is biased for k > 1 (Tucker et al. 2019, Section 4).
  At the true posterior every log-weight is log p(x) whatever z, so each draw's gradient is exactly 0.
- "dreg", the doubly reparameterised gradient (Tucker et al. 2019, eq. 5-8): as STL, and the path
  z -> phi weighted by the squared normalised weights: the encoder gets sum_i w~_i^2 d log w_i/dz_i
  dz_i/dphi, unbiased for the IWAE bound's gradient at every k. The decoder and prior parameters
  theta keep the usual sum_i w~_i d log w_i/dtheta: the weighting is a hook on z's gradient, so
  theta's backward pass is the standard one operation for operation.

A posterior opts in with `q.detached()` (aevb.latent): the diagonal Gaussian (its mu and sigma detached)
and both stacks of `aevb.hierarchy` (bottom-up and ladder: each layer's Gaussian recomputed from its
differentiable parent z through the nets with detached parameters, so that log q keeps the path through
the parents; that module's docstring says which parameters count as q's). For a stack, "theta" above
is every parameter off z's path; the ladder's `down` nets are on both sides and get the usual theta
term plus the path term, which is unbiased for them too.

The IAF flow posterior (aevb.flows) has no `detached()`: scoring a given z with the parameters cut
needs z_0 = flow^-1(z), and an IAF's inverse is sequential, D passes of every MADE step per draw (D the
latent size) against one for the draw itself, so each training step would cost about D times the
flow's forward pass. `require_detached` refuses it (and any other such posterior) in one line.
"""

from __future__ import annotations

from typing import Any

import torch

GRADIENTS = ("standard", "dreg", "stl")


def require_detached(q: Any) -> None:
    """Raise ValueError (one line) when the posterior `q` has no `detached()`, which stl and dreg need."""
    if not callable(getattr(q, "detached", None)):
        raise ValueError(
            f"--gradient stl and dreg need a posterior that scores a given z with its parameters cut from "
            f"the graph (q.detached()); {type(q).__name__} has none (a flow would need its sequential inverse "
            f"per draw): use --gradient standard"
        )


def draw(q: Any, eps: torch.Tensor, gradient: str = "standard") -> tuple[torch.Tensor, torch.Tensor]:
    """z from the noise eps (..., B, noise_dim), differentiable along its path, and log q(z|x) (..., B)
    nats of those draws: for "standard" `q.rsample_with_log_prob(eps)`; for "stl" and "dreg" the same
    numbers with q's parameters cut from log q's graph (no score-function term)."""
    if gradient == "standard":
        return q.rsample_with_log_prob(eps)
    require_detached(q)
    z = q.rsample_from(eps)
    return z, q.detached().log_prob(z)


def doubly_reparameterise(z: torch.Tensor, log_w: torch.Tensor) -> None:
    """DReG: scale the gradient reaching the draws z (k, B, Dz) by their normalised importance weights
    w~ = softmax(log_w) over the k draws (log_w (k, B)), so that the encoder, which sees the bound only
    through z (after `draw` with "dreg"), gets sum_i w~_i^2 d log w_i/dz_i dz_i/dphi. Nothing changes
    in the forward pass or in the gradient of the parameters log_w reaches by other paths (theta)."""
    if not z.requires_grad:  # no graph (evaluation): nothing to weight
        return
    w = torch.softmax(log_w.detach(), dim=0).unsqueeze(-1)  # (k, B, 1)
    z.register_hook(lambda g: g * w)
