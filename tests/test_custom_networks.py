"""Your own networks (aevb.custom): a user's conv encoder and decoder (tests/custom_nets.py) train, evaluate,
resume and load like the in-tree ones, without pickle, and networks that do not fit are refused in one line."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import aevb
import custom_nets as cn
from aevb.checkpoint import read_config
from aevb.cli import main
from aevb.preprocess import split
from aevb.rundir import read_metrics
from aevb_process import aevb_cmd, aevb_main, subprocess_env

TESTS = Path(__file__).resolve().parent
CONFIG = aevb.ModelConfig(latent_dim=2, **cn.IN_TREE)  # 8x8 digits; the in-tree conv that custom_nets replicates


def seeded_in_tree(seed: int = 0) -> aevb.VAE:
    """The in-tree conv VAE with the initial weights `aevb.train` draws for `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return aevb.VAE(CONFIG)


def custom_like(model: aevb.VAE, build=cn.build) -> aevb.VAE:
    """A VAE with custom_nets' networks holding `model`'s weights, copied in order (the names differ)."""
    encoder, decoder = build(model.config)
    custom = aevb.VAE(model.config, encoder=encoder, decoder=decoder)
    theirs = list(model.state_dict().values())
    ours = custom.state_dict()
    assert [t.shape for t in theirs] == [t.shape for t in ours.values()]
    custom.load_state_dict(dict(zip(ours, theirs)))
    return custom


def built(seed: int = 0) -> aevb.VAE:
    """custom_nets' VAE with torch's default initialisation under `seed`, as `--module` builds it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder, decoder = cn.build(CONFIG)
    return aevb.VAE(CONFIG, encoder=encoder, decoder=decoder)


def test_network_sizes_are_the_in_tree_networks():
    """The contract's sizes are those the in-tree networks have: (B, D [+ classes]) -> [mu | log sigma^2
    (| flow context)], (B, latent_dim [+ classes]) -> the head's outputs."""
    for cfg in (
        CONFIG,
        aevb.ModelConfig(latent_dim=3, likelihood="gaussian-learned", data_shape=(5,)),
        aevb.ModelConfig(latent_dim=2, flow="iaf", flow_context=7, condition_on="labels", classes=4),
    ):
        model = aevb.VAE(cfg)
        s = aevb.network_sizes(cfg)
        enc, dec = model.encoder(torch.zeros(3, s.encoder_in)), model.decoder(torch.zeros(3, s.decoder_in))
        assert (enc.shape, dec.shape) == ((3, s.encoder_out), (3, s.decoder_out))
    assert aevb.network_sizes(aevb.ModelConfig(latent_dim=3, likelihood="gaussian-learned", data_shape=(5,))) == (
        5,
        6,
        3,
        10,
    )


def _mlp(n_in: int, n_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(n_in, 16), torch.nn.Tanh(), torch.nn.Linear(16, n_out))


@pytest.mark.parametrize(
    "fields",
    [
        {"flow": "iaf", "flow_context": 4, "flow_hidden": (8,)},
        {"latents": (2, 3), "inference": "ladder"},
        {"latents": (2, 3)},
        {"condition_on": "labels", "classes": 3, "likelihood": "gaussian-learned"},
    ],
)
def test_flows_stacks_and_labels_take_custom_networks(fields):
    """A flow (the encoder also emits its context), a stack (the networks are x <-> z_1) and a conditional model
    (the one-hot label after x and z) with networks of the user's own: the same log weights log p(x, z) - log q(z|x)
    as the in-tree MLPs holding the same weights, draw for draw."""
    cfg = aevb.ModelConfig(data_shape=(6,), hidden=(16,), **{"latent_dim": 2, **fields})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ref = aevb.VAE(cfg)
    s = aevb.network_sizes(cfg)
    custom = aevb.VAE(cfg, encoder=_mlp(s.encoder_in, s.encoder_out), decoder=_mlp(s.decoder_in, s.decoder_out))
    theirs, ours = ref.state_dict(), custom.state_dict()
    assert [t.shape for t in theirs.values()] == [t.shape for t in ours.values()]
    custom.load_state_dict(dict(zip(ours, theirs.values())))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 6, generator=g), torch.arange(5) % 3 if cfg.conditional else None
    eps = torch.randn(4, 5, ref.noise_dim, generator=g)
    torch.testing.assert_close(
        aevb.log_weights(custom, x, 4, eps=eps, y=y), aevb.log_weights(ref, x, 4, eps=eps, y=y), rtol=1e-6, atol=1e-5
    )


def test_custom_networks_train_to_the_in_tree_elbo(digits):
    """The user's conv networks with the in-tree conv's initial weights end training with its parameters and
    its per-example test ELBO, to float tolerance (same seed, same data)."""
    tc = aevb.TrainConfig(epochs=3, seed=0)
    ref = seeded_in_tree(0)
    custom = custom_like(ref)
    assert custom.config.module == "custom"
    trained_custom = aevb.train(custom, tc, dataset=digits)
    trained_ref = aevb.train(CONFIG, tc, dataset=digits)
    for a, b in zip(trained_custom.state_dict().values(), trained_ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    x = split(digits, "test", "dynamic")
    ours, theirs = aevb.elbo_terms(trained_custom, x, seed=0), aevb.elbo_terms(trained_ref, x, seed=0)
    torch.testing.assert_close(ours.elbo, theirs.elbo, rtol=1e-5, atol=1e-4)
    start = aevb.elbo_terms(seeded_in_tree(0), x, seed=0).elbo.mean()
    assert ours.elbo.mean() > start + 0.5  # it did train
    # IWAE's k samples reach the decoder as (k, B, Dz): the model hands it rows (N, Dz) and reshapes back
    eps = torch.randn(4, 20, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        aevb.iwae(trained_custom, x[:20], 4, eps=eps), aevb.iwae(trained_ref, x[:20], 4, eps=eps)
    )


def test_resume_is_bit_for_bit(digits, tmp_path):
    """2 epochs at once equal 1 epoch and a resumed one with freshly built networks: every weight, and the
    optimiser state, exactly; the metrics too."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    aevb.train(built(0), aevb.TrainConfig(epochs=2, seed=3), whole, dataset=digits)
    aevb.train(built(0), aevb.TrainConfig(epochs=1, seed=3), parts, dataset=digits)
    stored, _ = read_config(parts)
    fresh = aevb.VAE(stored, *cn.build(stored))  # other initial weights: the checkpoint's replace them
    aevb.train(fresh, aevb.TrainConfig(epochs=2), parts, resume=True, dataset=digits)
    for name in ("model.safetensors", "checkpoint.safetensors"):
        a, b = load_file(whole / name), load_file(parts / name)
        assert a.keys() == b.keys() and any(k.startswith("optim.") for k in load_file(whole / "checkpoint.safetensors"))
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(read_metrics(whole)) == strip(read_metrics(parts))


@pytest.fixture(scope="module")
def run(digits, tmp_path_factory) -> tuple[Path, aevb.VAE]:
    """A run trained 1 epoch with custom_nets' networks, and the model train returned."""
    path = tmp_path_factory.mktemp("custom") / "run"
    return path, aevb.train(built(0), aevb.TrainConfig(epochs=1, seed=0), path, dataset=digits)


def test_load_with_the_networks_and_no_pickle(run, monkeypatch):
    """aevb.load(run, encoder=, decoder=) gives back the trained weights exactly, with every way to unpickle
    disabled; the run folder holds only safetensors, JSON, JSON lines and PNG files."""
    path, trained = run

    def refuse(*a, **k):
        raise AssertionError("a pickle was loaded")

    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)
    model = aevb.load(path, encoder=cn.build(CONFIG)[0], decoder=cn.build(CONFIG)[1])
    assert model.config == dataclasses.replace(CONFIG, module="custom") == trained.config
    assert not model.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), trained.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    z = torch.randn(5, 2)
    assert torch.equal(model.decode(z).mean, trained.decode(z).mean)
    assert json.loads((path / "config.json").read_text())["model"]["module"] == "custom"
    files = {p.name for p in path.iterdir()} - {".lock"}  # the run's lock (a pid) aside
    assert {"model.safetensors", "checkpoint.safetensors", "config.json"} <= files
    assert {Path(f).suffix for f in files} <= {".safetensors", ".json", ".jsonl", ".png"}, files


def _one_line(e: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


def test_mismatched_networks_are_refused_in_one_line(run):
    """Other hidden sizes, a renamed parameter, wrong outputs, no networks for a custom run, networks for
    an in-tree one: each a one-line CheckpointError naming what does not fit."""
    path, _ = run
    with pytest.raises(
        aevb.CheckpointError, match=r"decoder.fc.bias is torch.float32 \(32,\), the networks given need"
    ):
        aevb.load(path, **dict(zip(("encoder", "decoder"), cn.build_wide(CONFIG))))
    with pytest.raises(aevb.CheckpointError, match=r"missing \['decoder.dense.bias', 'decoder.dense.weight'\]") as e:
        aevb.load(path, **dict(zip(("encoder", "decoder"), cn.build_renamed(CONFIG))))
    _one_line(e)
    with pytest.raises(aevb.CheckpointError, match=r"the encoder must map \(B, 64\) to \(B, 4\); on \(2, 64\) it gave"):
        aevb.load(path, encoder=cn.Encoder(3), decoder=cn.Decoder(2))
    with pytest.raises(aevb.CheckpointError, match="was trained with your own networks") as e:
        aevb.load(path)
    _one_line(e)
    in_tree = path.parent / "in-tree"
    aevb.train(CONFIG, aevb.TrainConfig(epochs=0), in_tree, dataset=aevb.load_dataset("digits"))
    with pytest.raises(aevb.CheckpointError, match="uses the in-tree networks"):
        aevb.load(in_tree, encoder=cn.Encoder(4), decoder=cn.Decoder(2))
    with pytest.raises(ValueError, match="give both networks"):
        aevb.VAE(CONFIG, encoder=cn.Encoder(4))


def test_train_refuses_what_does_not_fit(digits, tmp_path):
    """A config naming your own networks without a built model, a model built for other data, and a
    custom run resumed without its networks: one-line AevbErrors, and no run folder left behind."""
    with pytest.raises(aevb.AevbError, match="has your own networks"):
        aevb.train(dataclasses.replace(CONFIG, module="custom_nets:build"), aevb.TrainConfig(epochs=1), dataset=digits)
    cfg = dataclasses.replace(CONFIG, data_shape=(8, 9))
    wrong = aevb.VAE(cfg, encoder=torch.nn.Linear(72, 4), decoder=torch.nn.Linear(2, 72))  # for 8x9 images
    with pytest.raises(aevb.AevbError, match=r"data_shape \(8, 9\) \(needs \(8, 8\)\)") as e:
        aevb.train(wrong, aevb.TrainConfig(epochs=1), tmp_path / "wrong", dataset=digits)
    _one_line(e)
    assert not (tmp_path / "wrong").exists()
    aevb.train(built(0), aevb.TrainConfig(epochs=0), tmp_path / "run", dataset=digits)
    with pytest.raises(aevb.AevbError, match="has your own networks"):
        aevb.train(None, aevb.TrainConfig(epochs=1), tmp_path / "run", resume=True, dataset=digits)
    with pytest.raises(ValueError, match="module must be an import path"):
        aevb.ModelConfig(module="not a path")


def test_cli_without_module_is_one_line(run, capsys):
    """`aevb eval|sample|encode RUN` of a custom run without --module: one line saying to pass it; --module on
    an in-tree run, or one that cannot be imported: one line too."""
    path, _ = run
    for command in (["eval", str(path)], ["sample", str(path)], ["train", "--resume", str(path), "--epochs", "2"]):
        assert main(command) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "pass --module PKG.MOD:BUILD" in err[0], err
    in_tree = path.parent / "cli-in-tree"
    aevb.train(CONFIG, aevb.TrainConfig(epochs=0), in_tree, dataset=aevb.load_dataset("digits"))
    assert main(["encode", str(in_tree), "--module", "custom_nets:build"]) == 1
    assert "--module is for runs trained with your own networks" in capsys.readouterr().err
    assert main(["eval", str(path), "--module", "no_such_module_here:build"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "aevb: error: --module no_such_module_here:build: cannot import no_such_module_here "
        "(ModuleNotFoundError: No module named 'no_such_module_here')"
    ]


@pytest.mark.slow
def test_cli_module_runs_like_the_in_tree_conv(tmp_path):
    """`aevb train --module custom_nets:build` and `aevb eval RUN --module custom_nets:build` in subprocesses
    (custom_nets imported from the current folder): the same numbers as the in-tree conv run of the same seed,
    whose initial weights torch draws in the same order."""
    env = subprocess_env()
    conv = ["--arch", "conv", "--channels", "4", "8", "--hidden", "32", "--activation", "relu"]
    common = ["--dataset", "digits", "--latent-dim", "2", "--epochs", "2", "--no-progress"]
    runs = {"custom": tmp_path / "custom", "in-tree": tmp_path / "in-tree"}
    for name, flags in (("custom", ["--module", "custom_nets:build"]), ("in-tree", conv)):
        # the custom run in a new process (a console script has no cwd on sys.path), the rest in this one
        train = ["train", *common, *flags, "--out", runs[name]]
        r = aevb_cmd(TESTS, env, *train) if name == "custom" else aevb_main(TESTS, train)
        assert r.returncode == 0, r.stderr
        module = flags[:2] if name == "custom" else []
        r = aevb_main(TESTS, ["eval", runs[name], "--k", "20", "--no-progress", *module])
        assert r.returncode == 0, r.stderr
    ours, theirs = (json.loads((runs[n] / "eval_test.json").read_text()) for n in ("custom", "in-tree"))
    for key in ("elbo", "log_likelihood"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-4), key
    assert json.loads((runs["custom"] / "config.json").read_text())["model"]["module"] == "custom_nets:build"
    r = aevb_main(TESTS, ["train", "--resume", runs["custom"], "--epochs", "3", "--module", "custom_nets:build"])
    assert r.returncode == 0 and "epoch    3" in r.stdout, r.stderr
