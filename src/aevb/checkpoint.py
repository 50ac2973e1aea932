"""Run directories on disk: config.json, model.safetensors, checkpoint.safetensors. Never pickle.

- config.json            the ModelConfig and TrainConfig (`aevb.config.to_dict`)
- model.safetensors      the model's weights alone: what `load(run_dir)` reads
- checkpoint.safetensors weights + optimiser state + RNG state, with the trainer's counters as JSON
                         in the safetensors metadata: one file, so it is replaced atomically as a whole
Every write goes through a temp file and an atomic rename (`aevb.files`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import custom
from .config import ModelConfig, TrainConfig, from_dict, to_dict
from .errors import CheckpointError
from .files import atomic_write, atomic_write_text
from .model import VAE

CONFIG = "config.json"
MODEL = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"


def save_config(run_dir: Path, model: ModelConfig, train: TrainConfig | None) -> None:
    atomic_write_text(run_dir / CONFIG, json.dumps(to_dict(model, train), indent=2) + "\n")


def read_json(folder: Path, name: str, what: str) -> Any:
    """The JSON document `folder/name`; CheckpointError saying that `folder` is not `what` when the folder
    or the file is missing, or that the file is corrupt."""
    path = folder / name
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not {what} (no such directory)")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{folder} is not {what} (no {name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt: {e}") from None


def read_config(run_dir: str | Path) -> tuple[ModelConfig, TrainConfig | None]:
    """The configs stored in a run directory; CheckpointError if missing, corrupt or unknown."""
    return from_dict(read_json(Path(run_dir), CONFIG, "a run directory"))


def _tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # the unwrapped module's own names; clone so no two entries share storage
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_model(run_dir: Path, model: VAE) -> None:
    tensors = _tensors(model)
    atomic_write(run_dir / MODEL, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, read once; never unpickles anything."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated ({str(e).splitlines()[0][:120]})") from None
    return tensors, meta


def load_weights(model: VAE, tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        what = "the networks given" if model.config.module else "the config"  # your own networks: their names
        raise CheckpointError(f"{path} does not match {what} (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, t in tensors.items():
        if t.shape != expected[name].shape or t.dtype != expected[name].dtype:
            raise CheckpointError(
                f"{path}: {name} is {t.dtype} {tuple(t.shape)}, {_needs(model)} "
                f"{expected[name].dtype} {tuple(expected[name].shape)}"
            )
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: {name} holds NaN or inf")
    if "data_scale" in tensors and not (tensors["data_scale"] > 0).all():
        raise CheckpointError(f"{path}: data_scale must be > 0 (it divides every feature)")
    model.load_state_dict(tensors)


def _needs(model: VAE) -> str:
    return "the networks given need" if model.config.module else "the config needs"


def load(
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    *,
    encoder: torch.nn.Module | None = None,
    decoder: torch.nn.Module | None = None,
) -> VAE:
    """The trained model of a run directory, in eval mode, rebuilt from its config.json alone; a run
    trained with your own networks (`module`, aevb.custom) needs them again as `encoder` and `decoder`,
    built as for training: their weights are read from model.safetensors (names and shapes checked)."""
    run_dir = Path(run_dir)
    model_cfg, _ = read_config(run_dir)
    custom.check_given(
        model_cfg,
        encoder is not None or decoder is not None,
        str(run_dir),
        has="was trained with",
        give="pass them, aevb.load(run_dir, encoder=..., decoder=...) (the CLI: --module PKG.MOD:BUILD)",
        without="load it without networks",
        error=CheckpointError,
    )
    try:
        model = VAE(model_cfg, encoder, decoder)
    except ValueError as e:
        raise CheckpointError(f"the networks do not fit {run_dir}: {e}") from None
    tensors, _ = read_tensors(run_dir / MODEL)
    load_weights(model, tensors, run_dir / MODEL)
    return model.to(device).eval()


def save_checkpoint(
    run_dir: Path,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    state: dict[str, Any],
    position: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write checkpoint.safetensors (weights, optimiser, RNG, `state` as JSON), atomically.

    `position`: tensors of an unfinished epoch (its permutation, its running sums), stored as
    `epoch.<name>` so that a resumed run carries on from the very step where this one stopped.
    """
    tensors = {f"model.{k}": v for k, v in _tensors(model).items()}
    for name, v in (position or {}).items():
        tensors[f"epoch.{name}"] = v.detach().cpu().contiguous().clone()
    opt = optimizer.state_dict()
    per_param: dict[str, dict[str, Any]] = {}
    for idx, s in opt["state"].items():
        per_param[str(idx)] = {}
        for name, v in s.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{name}"] = v.detach().cpu().contiguous().clone()
            else:
                per_param[str(idx)][name] = v
    tensors["rng.train"] = generator.get_state().cpu().clone()
    meta = {
        "trainer": json.dumps(state),
        "optim": json.dumps({"param_groups": opt["param_groups"], "scalars": per_param}),
        "rng_device": str(generator.device),
    }
    atomic_write(run_dir / CHECKPOINT, lambda p: save_file(tensors, str(p), metadata=meta))


def read_state(run_dir: str | Path) -> dict[str, Any] | None:
    """The trainer's counters of the run's last checkpoint (as `load_checkpoint` returns them, without
    loading any tensor), None when it has none yet; a checkpoint inside an epoch adds "position" (its
    counters) and "rows" (the training rows of an epoch)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {})["trainer"])
            if isinstance(state, dict) and state.get("position") is not None:
                state["rows"] = f.get_slice("epoch.perm").get_shape()[0]
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path} is corrupt or has no trainer state ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path} has no valid trainer state")
    return state


def load_checkpoint(
    run_dir: Path, model: VAE, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> dict[str, Any]:
    """Restore weights, optimiser and RNG from checkpoint.safetensors; returns the trainer state.

    The state's "position" (present for a checkpoint written inside an epoch) also holds the
    `epoch.*` tensors; the trainer checks them against the data.
    """
    path = run_dir / CHECKPOINT
    tensors, meta = read_tensors(path)
    try:
        state = json.loads(meta["trainer"])
        optim = json.loads(meta["optim"])
        scalars = {int(idx): dict(v) for idx, v in optim["scalars"].items()}
        groups = optim["param_groups"]
        if not isinstance(state, dict) or not isinstance(groups, list):
            raise TypeError("trainer state or param_groups of the wrong type")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path} has no valid trainer metadata ({type(e).__name__}: {e})") from None
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    load_weights(model, weights, path)
    opt_state: dict[int, dict[str, Any]] = scalars
    for key, v in tensors.items():
        if key.startswith("optim."):
            try:
                _, idx, name = key.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = v
            except ValueError:
                raise CheckpointError(f"{path}: unexpected tensor {key!r}") from None
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        generator.set_state(tensors["rng.train"])
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
        raise CheckpointError(f"{path}: optimiser or RNG state does not fit this run ({e})") from None
    for p, s in optimizer.state.items():  # a state tensor of another shape would fail only later, mid-step
        for name, v in s.items():
            if torch.is_tensor(v) and v.dim() > 0 and v.shape != p.shape:
                raise CheckpointError(
                    f"{path}: optimiser state {name!r} has shape {tuple(v.shape)}, not {tuple(p.shape)}"
                )
    position = {k[len("epoch.") :]: v for k, v in tensors.items() if k.startswith("epoch.")}
    if position:
        if not isinstance(state.get("position"), dict):
            raise CheckpointError(f"{path} holds an epoch position without its counters")
        state["position"] = {**state["position"], **position}
    elif state.get("position") is not None:
        raise CheckpointError(f"{path} names an epoch position but holds no epoch tensors")
    return state
