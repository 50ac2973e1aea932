"""DReG under torch.compile, for tests/test_gradients.py (one latent layer) and tests/test_gradients_stack.py
(stacks): its weighting is a hook on z's gradient (and, for stacks, the frozen nets are called through
torch.func.functional_call), which compilation must keep."""

from __future__ import annotations

from unittest import mock

import torch

import aevb
from aevb.config import TrainConfig
from aevb.objectives import OBJECTIVES, iwae


def assert_dreg_compiled_equals_eager(
    model: aevb.VAE, x: torch.Tensor, eps: torch.Tensor, k: int = 5, backend: str = "inductor"
) -> None:
    """The parameters' gradients of the IWAE bound (k samples, noise `eps`) with DReG, torch.compile'd and
    eager, are equal (rtol 1e-4, atol 1e-5), and differ from the standard gradient's: DReG is in effect.

    `backend` "inductor" is what `--compile on` uses. "aot_eager" stops after what could lose the hook or
    the frozen calls (Dynamo's capture and AOTAutograd's joint forward-backward graph) and skips the C++
    code generation, which is the same for every graph and costs about 25 s per cold graph."""
    from aevb import speed

    grads = {}
    compile_with = mock.patch.object(speed, "_compiled", lambda fn: torch.compile(fn, backend=backend, dynamic=False))
    for compiled in ("off", "on"):
        cfg = TrainConfig(objective="iwae", k=k, gradient="dreg", compile=compiled)
        model.zero_grad()
        with compile_with:
            value = speed.objective(OBJECTIVES["iwae"], cfg)(model, x, cfg, eps, None)
            (-value.mean()).backward()
        grads[compiled] = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(grads["off"], grads["on"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    model.zero_grad()
    (-iwae(model, x, k, eps=eps).mean()).backward()  # and DReG is not the standard gradient
    assert not torch.allclose(grads["on"][0], model.encoder.net[0].weight.grad)
