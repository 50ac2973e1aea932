"""The variational auto-encoder: prior p(z), encoder q(z|x), decoder p(x|z), all as distributions."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.distributions import Distribution

from . import priors
from .custom import CUSTOM, check_networks, network_sizes
from .flows import FLOWS, FlowPosterior
from .hierarchy import BottomUp, Hierarchy, Ladder
from .latent import DiagonalGaussian
from .likelihoods import make_likelihood
from .nets import ARCHS, init_glorot_, init_normal_
from .priors import PRIORS

if TYPE_CHECKING:  # config reads the registries below this module: it must not import config when it runs
    from .config import ModelConfig


class VAE(nn.Module):
    """Kingma & Welling (2013): z ~ N(0, I), x | z ~ p(x | f(z; theta)), q(z|x) = N(mu(x), diag sigma^2(x)).

    Inputs x have shape (B, *data_shape) or (B, D); the networks see them flattened to (B, D).
    The networks are `config.arch` (aevb.nets.ARCHS), or your own (aevb.custom: `encoder`, `decoder`), and
    p(z) is `config.prior` (aevb.priors.PRIORS).
    With `config.flow` (aevb.flows.FLOWS), q(z|x) is that flow on top of the Gaussian, conditioned on a
    context h(x) of `flow_context` numbers the encoder emits beside mu and log sigma^2 (a stack's every layer
    has its own flow: `flow` is z_1's, aevb.hierarchy).
    A conditional VAE (`config.condition_on` "labels"; Sohn et al. 2015) is q(z|x, y) p(z) p(x|z, y):
    `encode`, `decode` and `sample` then take the labels y, (B,) int64 in 0..classes-1, which both
    networks see one-hot beside their input; an unconditional model ignores y.
    With `config.latents` of two or more layers, z is a stack z_1 .. z_L (aevb.hierarchy, in `hierarchy`):
    the encoder gives q(z_1|x), the decoder reads z_1, and the latent-structure members below ask the stack.
    """

    def __init__(self, config: ModelConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        """`encoder` and `decoder`: your own networks (both or neither; aevb.custom says what they map) in
        place of `config.arch`'s; the config then records `module` "custom" unless it names an import path."""
        super().__init__()
        if config.conditional and config.classes < 1:
            raise ValueError("a conditional VAE needs its number of label classes (classes >= 1)")
        if (encoder is None) != (decoder is None):
            raise ValueError("give both networks, encoder and decoder, or neither (the in-tree `arch`)")
        if encoder is None and config.module:
            raise ValueError(
                f"this config's networks are your own (module {config.module}): pass them, "
                "VAE(config, encoder=..., decoder=...)"
            )
        if encoder is not None and not config.module:
            config = dataclasses.replace(config, module=CUSTOM)
        self.config = config
        self.likelihood = make_likelihood(config)
        if config.standardize:  # set from the training data by aevb.train (`set_standardization`), then saved
            self.register_buffer("data_shift", torch.zeros(config.data_dim))
            self.register_buffer("data_scale", torch.ones(config.data_dim))
        # encoder -> [mu, logvar(, flow context)]; decoder -> the likelihood head's parameters; a conv decoder needs
        # them as whole channels per pixel (every head's outputs but mixed's, which is for tables, are a multiple of D)
        sizes = network_sizes(config)
        self.flow = FLOWS[config.flow](config, config.latent_dim)  # z_1's flow; None: q(z|x) is the diagonal Gaussian
        if encoder is None:
            out = sizes.decoder_out
            self.encoder, self.decoder = ARCHS[config.arch](config, sizes.encoder_out, out, out // config.data_dim)
        else:
            check_networks(encoder, decoder, sizes)
            self.encoder, self.decoder = encoder, decoder
        if config.init == "normal":
            init_normal_(self, config.init_std)
        elif config.init == "glorot":
            init_glorot_(self)
        self.prior_net = PRIORS[config.prior](config)  # created last: N(0, I) has no parameters
        # layers 2..L of a stack (after every one-layer part: a one-layer model draws the same initial weights)
        self.hierarchy = Hierarchy(config) if len(config.latents) > 1 else None
        if self.hierarchy is not None and config.init == "normal":
            init_normal_(self.hierarchy, config.init_std)

    @property
    def analytic_kl(self) -> bool:
        """Whether KL(q(z|x) || p(z)) has a closed form (`kl`): the diagonal Gaussian q (no flow) against N(0, I)
        (a stack of layers has none as a whole; its layers' terms given the draws: `kl_along`)."""
        return self.hierarchy is None and self.flow is None and self.prior_net.analytic_kl

    # --- the latent structure (aevb.latent): all that objectives, evaluation and the detector ask of z ---

    @property
    def noise_dim(self) -> int:
        """Standard normal numbers per draw of z from q(z|x) (`encode(x).rsample_from(eps)`): latent_dim,
        or the sum of a stack's layer sizes."""
        return self.config.latent_dim if self.hierarchy is None else self.hierarchy.noise_dim

    @property
    def top_dim(self) -> int:
        """Size of the top latent layer z_L (latent_dim for one layer): what plots and the explorer show."""
        return self.config.layers[-1]

    def top(self, z: torch.Tensor) -> torch.Tensor:
        """The top layer z_L (..., top_dim) of z (..., noise_dim): z itself for one layer."""
        return z if self.hierarchy is None else z[..., z.shape[-1] - self.top_dim :]

    def from_top(self, top: torch.Tensor) -> torch.Tensor:
        """A whole z (..., noise_dim) with top layer `top` (..., top_dim) and each lower layer at the mean of
        p(z_l | z_{l+1}): what a point of a top-layer plot decodes to; `top` itself for one layer."""
        return top if self.hierarchy is None else self.hierarchy.descend(top)

    def prior(self) -> Distribution:
        """p(z), event shape (latent_dim,): N(0, I), or the mixture `config.prior` names."""
        return self.prior_net(self._device(), self.encode)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), z.shape[:-1] in nats (a stack's: log p(z_L) + sum_l log p(z_l | z_{l+1}))."""
        return self.prior().log_prob(z) if self.hierarchy is None else self.hierarchy.log_prior(z)

    def kl(self, q: DiagonalGaussian | FlowPosterior) -> torch.Tensor | None:
        """KL(q(z|x) || p(z)) in closed form, (B,) nats; None when it has none (a mixture prior, a flow, a stack:
        a stack's layers that have one are in `kl_along`)."""
        return q.kl_standard_normal() if self.analytic_kl else None

    def kl_along(self, q: BottomUp | Ladder, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(z, kl) for a stack: q's draws z from the noise eps (..., B, noise_dim), and per draw an unbiased estimate
        of KL(q(z|x) || p(z)), (..., B) nats: each layer's term in closed form given the draws of the layers it is
        conditioned on where it has one, log q - log p along the draw elsewhere (`q.rsample_with_kl`, aevb.hierarchy).
        None for one layer, whose KL is in closed form as a whole (`kl`) or not at all."""
        if self.hierarchy is None:
            return None
        z, kl = q.rsample_with_kl(eps)  # (..., B, noise_dim), (..., B, L)
        return z, kl.sum(-1)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws z ~ p(z), (n, latent_dim), reproducible through `generator`: the model's own prior (for
        N(0, I) exactly torch.randn(n, latent_dim, generator=generator)); a stack's ancestrally, (n, noise_dim)."""
        if self.hierarchy is not None:
            return self.hierarchy.sample_prior(n, generator, self._device())
        return priors.draw(self.prior(), n, generator, self._device())

    def log_joint(self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x|z) + log p(z) (log p(x, z | y) when conditional), z.shape[:-1] in nats; x (B, ...)."""
        return self.decode(z, y).log_prob(x.reshape(x.shape[0], -1)) + self.log_prior(z)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiagonalGaussian | FlowPosterior:
        """q(z|x) (q(z|x, y) when conditional): batch shape (B,), event shape (latent_dim,). Its `.mean`
        is the posterior mean (a flow posterior's: the flow of its Gaussian's mean, aevb.flows). Its
        parameters are fp32 even when the encoder ran in bf16 (autocast).
        The likelihood head's `encoder_input(x)` is what the encoder sees (poisson: log(1 + x)).
        A stack's posterior (aevb.hierarchy, `--inference`) has the same members, event shape (noise_dim,)."""
        x = self.standardized(x.reshape(x.shape[0], -1))
        out = self._run(self.encoder, self._with_label(self.likelihood.encoder_input(x), y))
        if out.dtype in (torch.float16, torch.bfloat16):  # autocast: q's parameters (and sigma's exp) in fp32
            out = out.float()
        if self.hierarchy is not None:
            return self.hierarchy.posterior(out, self.flow)
        d = self.config.latent_dim
        mu, logvar, context = out.split((d, d, out.shape[-1] - 2 * d), dim=-1)
        q = DiagonalGaussian(mu, torch.exp(0.5 * logvar))
        return q if self.flow is None else self.flow.posterior(q, context)

    def decoder_output(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood head's parameters at z (and y), shape (*z.shape[:-1], head outputs); a stack's
        decoder reads z_1, the first latent_dim numbers of z."""
        if self.hierarchy is not None:
            z = z[..., : self.config.latent_dim]
        return self._run(self.decoder, self._with_label(z, y))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x|z) (p(x|z, y) when conditional): batch shape z.shape[:-1], event shape (D,) over the
        flattened data. y (B,) labels the last batch dimension of z."""
        return self.head(self.decoder_output(z, y))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x | z = posterior mean], shaped like x (B, *data_shape) or (B, D), in the data's units;
        a conditional model's with the labels y (B,)."""
        return self.decode(self.encode(x, y).mean, y).mean.reshape(x.shape)

    def head(self, h: torch.Tensor) -> Distribution:
        """p(x|z) from the decoder's output h: the likelihood head's distribution, moved back to the
        data's units when the model is standardised (x = shift + scale * x': the head is location-scale)."""
        if not self.config.standardize:
            return self.likelihood(h)
        return self.likelihood.rescaled(h, self.data_shift, self.data_scale)

    def draw(
        self, z: torch.Tensor, y: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One draw x ~ p(x|z) (p(x|z, y) when conditional), shape (*z.shape[:-1], D) in the data's units,
        reproducible through `generator`."""
        x = self.likelihood.sample(self.decoder_output(z, y), generator)
        return self.data_shift + self.data_scale * x if self.config.standardize else x

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        """(x - shift) / scale per feature for a standardised model, x (..., D) itself otherwise."""
        return (x - self.data_shift) / self.data_scale if self.config.standardize else x

    @torch.no_grad()
    def set_standardization(self, x: torch.Tensor) -> None:
        """Shift and scale = the mean and standard deviation of each feature of x (N, ...), a scale of 1
        for constant features: what a standardised model subtracts and divides by."""
        flat = x.reshape(x.shape[0], -1).double()
        std = flat.std(0, unbiased=False) if flat.shape[0] > 1 else torch.zeros(flat.shape[1], dtype=flat.dtype)
        self.data_shift.copy_(flat.mean(0))
        self.data_scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, mean: bool = True, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """n new data points, shape (n, *data_shape): E[x|z] for z ~ p(z), or a draw x ~ p(x|z);
        a conditional model draws from p(x|z, y) with the labels y, (n,)."""
        z = self.sample_prior(n, generator)  # (n, Dz)
        x = self.decode(z, y).mean if mean else self.draw(z, y, generator)
        return x.reshape(n, *self.config.data_shape)

    def _with_label(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """h (..., B, F) with the one-hot label y (B,) appended, (..., B, F + classes); h itself when
        the model is unconditional."""
        if not self.config.conditional:
            return h
        if y is None:
            raise ValueError("this VAE is conditioned on labels: pass y, the labels (B,) in 0..classes-1")
        onehot = nn.functional.one_hot(y.to(h.device, torch.int64), self.config.classes).to(h.dtype)  # (B, C)
        return torch.cat([h, onehot.expand(*h.shape[:-1], onehot.shape[-1])], -1)

    def _run(self, net: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """net(h), (..., out): the in-tree networks take any leading dimensions, your own see rows (N, in)."""
        if not self.config.module:
            return net(h)
        return net(h.reshape(-1, h.shape[-1])).reshape(*h.shape[:-1], -1)

    def _device(self) -> torch.device:
        return next(self.parameters()).device
