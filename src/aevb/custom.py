"""Your own networks: a VAE whose encoder and decoder are any `nn.Module`s, and the run stays pickle-free.

The contract (`network_sizes(config)`): both networks map flattened rows, (B, in) -> (B, out), with
- encoder: in = D (+ classes of a conditional model: the one-hot label after x);
  out = 2 * latent_dim, [mu | log sigma^2] of q(z|x) (of z_1 for a stack of `latents`: the encoder
  parametrisation of the in-tree networks), + flow_context numbers h(x) after them with a `flow`;
- decoder: in = latent_dim (+ classes); out = the likelihood head's outputs (`likelihood.outputs(D)`:
  D Bernoulli logits; [mean | log variance] = 2D for gaussian-learned; ...).
The likelihood head, the prior, a flow and the layers above z_1 of a stack still come from the config;
`arch`, `hidden` and `channels` name the in-tree networks only. The model flattens any leading sample
dimensions (IWAE's k) before calling them.

A run records `ModelConfig.module`: "custom" (networks given from Python) or the import path
"pkg.mod:build" of a function `build(config) -> (encoder, decoder)`. Nothing imports it from a stored
config: `aevb.load(run, encoder=, decoder=)` or the CLI's `--module` name the code, and the weights come
from model.safetensors, whose names and shapes must match the networks given.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from .errors import AevbError
from .likelihoods import make_likelihood

if TYPE_CHECKING:  # config checks `module` with IMPORT_PATH below: it must not import config when it runs
    from .config import ModelConfig

CUSTOM = "custom"  # `module` of networks given from Python, without an import path
IMPORT_PATH = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"  # pkg.mod:build
Builder = Callable[["ModelConfig"], tuple[nn.Module, nn.Module]]


class NetworkSizes(NamedTuple):
    """Row sizes of the encoder's and the decoder's inputs and outputs (module docstring)."""

    encoder_in: int
    encoder_out: int
    decoder_in: int
    decoder_out: int


def network_sizes(config: ModelConfig) -> NetworkSizes:
    """What the encoder and decoder of `config` map from and to, (B, in) -> (B, out): the same for the
    in-tree networks (`aevb.nets.ARCHS`) and for your own."""
    context = 0 if config.flow == "none" else config.flow_context
    return NetworkSizes(
        config.data_dim + config.classes,
        2 * config.latent_dim + context,
        config.latent_dim + config.classes,
        make_likelihood(config).outputs(config.data_dim),
    )


def check_networks(encoder: nn.Module, decoder: nn.Module, sizes: NetworkSizes) -> None:
    """ValueError (one line) unless encoder and decoder are nn.Modules that map rows of `sizes`: each
    is run once, in eval mode and without gradients, on two rows of zeros (its modes are restored)."""
    nets = (("encoder", encoder, sizes.encoder_in, sizes.encoder_out), ("decoder", decoder, *sizes[2:]))
    for name, net, n_in, n_out in nets:
        if not isinstance(net, nn.Module):
            raise ValueError(f"the {name} must be a torch.nn.Module, got {type(net).__name__}")
        device = next((t.device for t in (*net.parameters(), *net.buffers())), torch.device("cpu"))
        modes = [(m, m.training) for m in net.modules()]
        need = f"the {name} must map (B, {n_in}) to (B, {n_out})"
        try:
            net.eval()
            with torch.no_grad():
                out = net(torch.zeros(2, n_in, device=device))
        except Exception as e:  # the user's code: any failure is a shape the networks do not take
            raise ValueError(f"{need}; on (2, {n_in}) it raised {type(e).__name__}: {_first_line(e)}") from None
        finally:
            for m, training in modes:
                m.training = training
        if not torch.is_tensor(out) or tuple(out.shape) != (2, n_out):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"{need}; on (2, {n_in}) it gave {got}")


def import_builder(path: str) -> Builder:
    """The function `build(config) -> (encoder, decoder)` at the import path "pkg.mod:build", looked up
    from the current directory first and then the Python path; AevbError (one line) when it is not there."""
    if not re.match(IMPORT_PATH, path):
        raise AevbError(f"--module {path!r} is not an import path PKG.MOD:FUNCTION (e.g. my_nets:build)")
    name, attr = path.split(":")
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:  # like `python -m`: the user's own folder, also for the installed `aevb` script
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(name)
    except Exception as e:  # ImportError, or an error inside the user's module
        raise AevbError(f"--module {path}: cannot import {name} ({type(e).__name__}: {_first_line(e)})") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    build = getattr(module, attr, None)
    if not callable(build):
        raise AevbError(f"--module {path}: {name} has no function {attr}")
    return build


def networks(path: str, config: ModelConfig, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) = build(config) of the import path "pkg.mod:build", built with torch's global
    RNG seeded by `seed` (and restored after), so that a new run's initial weights are reproducible."""
    build = import_builder(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            built = build(config)
        except Exception as e:
            raise AevbError(f"--module {path} failed: {type(e).__name__}: {_first_line(e)}") from None
    if not (isinstance(built, tuple) and len(built) == 2 and all(isinstance(n, nn.Module) for n in built)):
        raise AevbError(f"--module {path} must return (encoder, decoder), two torch.nn.Modules")
    return built


def check_given(
    config: ModelConfig,
    given: bool,
    where: str,
    *,
    give: str,
    without: str,
    has: str = "has",
    error: type[AevbError] = AevbError,
) -> None:
    """The rule of your own networks: they are given (`given`: a model built with them, or the networks
    themselves) exactly when `config` (that of `where`: a run, or the data of a new one) records a `module`.
    Else `error`, one line: "`where` `has` your own networks ...: `give`" (how to pass them) or "`where`
    uses the in-tree networks ...: `without`" (what to do instead), in the words of the caller's API."""
    if config.module and not given:
        raise error(f"{where} {has} your own networks (module {config.module}): {give}")
    if given and not config.module:
        raise error(f"{where} uses the in-tree networks (arch {config.arch}): {without}")


def check_built(built: ModelConfig, needed: ModelConfig, where: str) -> None:
    """AevbError unless a built model's config `built` is `needed` (a run's, or one resolved against the
    data), `module` aside: every other field equal."""
    differ = [
        f"{f} {getattr(built, f)!r} (needs {getattr(needed, f)!r})"
        for f in (field.name for field in dataclasses.fields(needed))
        if f != "module" and getattr(built, f) != getattr(needed, f)
    ]
    if differ:
        raise AevbError(f"the model was built for other settings than {where}: {', '.join(differ)[:300]}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else "no message")[:200]
