"""Recipes (aevb.recipes): `aevb train --recipe NAME` applies a published setup's fields, a config file
and flags override them, the run stores them and the recipe's name, and `--recipe list` shows them."""

import dataclasses
import json

import pytest

import aevb
from aevb.cli import main
from aevb.config import ModelConfig, TrainConfig
from aevb.recipes import RECIPES, recipe_fields
from aevb.schedules import lr_at
from aevb_process import aevb_main

TINY = ["--dataset", "digits", "--epochs", "1", "--hidden", "8", "--latent-dim", "2", "--batch-size", "100"]


def test_every_recipe_is_a_valid_config_that_names_itself():
    for name in RECIPES:
        model_kw, train_kw = recipe_fields(name)
        model, train = ModelConfig(**model_kw), TrainConfig(**train_kw)
        assert train.recipe == name
        assert {k: getattr(model, k) for k in model_kw} == model_kw
        assert {k: getattr(train, k) for k in train_kw} == train_kw
        assert RECIPES[name]["description"] and ("Burda" in RECIPES[name]["source"]) == name.startswith("burda-")


def test_aevb_2h_decays_to_its_floor_at_its_last_epoch_and_stops_at_two_hours():
    model_kw, train_kw = recipe_fields("aevb-2h")
    train = TrainConfig(**train_kw)
    assert model_kw == recipe_fields("burda-iwae-1l-k5")[0]  # Burda et al.'s one-layer networks
    assert (train.objective, train.k, train.gradient, train.batch_size) == ("iwae", 5, "dreg", 100)
    assert train.time_limit == 120.0 and RECIPES["aevb-2h"]["published_nll"] is None
    assert lr_at(train, 1, 0, 1) == 2e-3
    assert lr_at(train, 426, 0, 1) == pytest.approx((2e-3 + 1e-5) / 2)  # half-way down the cosine
    assert lr_at(train, train.epochs, 1, 1) == pytest.approx(1e-5)


@pytest.mark.parametrize(
    ("name", "minutes", "networks"),
    [
        ("aevb-15m", 15.0, "burda-iwae-1l-k5"),
        ("aevb-1h", 60.0, "burda-iwae-1l-k5"),
        ("aevb-2h-2l", 120.0, "burda-iwae-2l-k5"),
    ],
)
def test_timed_recipes_decay_over_their_budget_in_training_minutes(name, minutes, networks):
    model_kw, train_kw = recipe_fields(name)
    train, twoh = TrainConfig(**train_kw), TrainConfig(**recipe_fields("aevb-2h")[1])
    assert model_kw == recipe_fields(networks)[0]  # Burda et al.'s networks (one or two stochastic layers) ...
    same = ("objective", "k", "gradient", "batch_size", "lr", "lr_schedule", "lr_final", "adam_eps")  # ... aevb-2h's
    assert all(getattr(train, f) == getattr(twoh, f) for f in same)
    assert (train.precision, train.compile) == ("bf16", "on")  # ... faster per pass
    assert train.time_limit == train.lr_minutes == minutes  # the decay ends with the budget, in minutes
    assert lr_at(train, 1, 0, 1, 0.0) == 2e-3 and lr_at(train, train.epochs, 0, 1, 0.0) == 2e-3  # not by epochs
    assert lr_at(train, 1, 0, 1, 30.0 * minutes) == pytest.approx((2e-3 + 1e-5) / 2)  # half the minutes
    assert lr_at(train, 1, 0, 1, 60.0 * minutes) == pytest.approx(1e-5)


def test_burda_one_layer_setups_are_the_papers():
    # Burda et al. (2016), Section 5: 784-200-200-50 tanh, batch 20, Adam(0.9, 0.999, 1e-4), 3,280 epochs
    # of 3^i at 1e-3 * 10^(-i/7), Glorot's initialisation, dynamically binarised MNIST; k = 1 (VAE), 5, 50 (IWAE)
    ks = {}
    for name in ("burda-vae-1l", "burda-iwae-1l-k5", "burda-iwae-1l-k50"):
        model_kw, train_kw = recipe_fields(name)
        model, train = ModelConfig(**model_kw), TrainConfig(**train_kw)
        assert (model.hidden, model.latent_dim, model.activation, model.likelihood) == (
            (200, 200),
            50,
            "tanh",
            "bernoulli",
        )
        assert (train.dataset, train.binarize, train.batch_size, train.epochs) == ("mnist", "dynamic", 20, 3280)
        assert (train.optimizer, train.adam_beta1, train.adam_beta2, train.adam_eps) == ("adam", 0.9, 0.999, 1e-4)
        assert train.epochs == sum(3**i for i in range(8))
        assert model.init == "glorot"
        assert lr_at(train, 3280, 0, 1) == pytest.approx(1e-4) and lr_at(train, 1, 0, 1) == 1e-3
        ks[name] = 1 if train.objective == "elbo" and train.estimator == "mc" and train.samples == 1 else train.k
        assert train.objective == ("elbo" if name == "burda-vae-1l" else "iwae")
    assert ks == {"burda-vae-1l": 1, "burda-iwae-1l-k5": 5, "burda-iwae-1l-k50": 50}


def test_burda_two_layer_setups_are_the_papers():
    # Burda et al. (2016), Section 5: 784-200-200-100 deterministic units to z_1 (100), 100-100 from z_1 to
    # z_2 (50), tanh, bottom-up inference, the one-layer setups' optimisation; Table 1: 85.33, 83.89, 82.90
    published = {"burda-vae-2l": (1, 85.33), "burda-iwae-2l-k5": (5, 83.89), "burda-iwae-2l-k50": (50, 82.90)}
    for name, (k, nll) in published.items():
        model_kw, train_kw = recipe_fields(name)
        model, train = ModelConfig(**model_kw), TrainConfig(**train_kw)
        assert (model.hidden, model.layers, model.latent_hidden, model.activation) == (
            (200, 200),
            (100, 50),
            (100, 100),
            "tanh",
        )
        assert (model.inference, model.init, model.latent_dim) == ("bottom-up", "glorot", 100)
        one_layer = recipe_fields(name.replace("-2l", "-1l"))[1]  # the same optimisation as the one-layer setup
        assert train_kw == {**one_layer, "recipe": name}
        assert (train.batch_size, train.epochs, train.lr_schedule, train.adam_eps) == (20, 3280, "burda", 1e-4)
        got_k = 1 if train.objective == "elbo" and train.estimator == "mc" and train.samples == 1 else train.k
        assert (got_k, RECIPES[name]["published_nll"]) == (k, nll)
        n_params = sum(p.numel() for p in aevb.VAE(dataclasses.replace(model, data_shape=(28, 28))).parameters())
        # q: x-200-200-(100 means, 100 scales) and z_1-100-100-(50, 50); p: z_2-100-100-(100, 100), z_1-200-200-784
        q = (784 * 200 + 200) + (200 * 200 + 200) + (200 * 200 + 200) + 2 * (100 * 100 + 100) + (100 * 100 + 100)
        p = (50 * 100 + 100) + (100 * 100 + 100) + (100 * 200 + 200) + (100 * 200 + 200) + (200 * 200 + 200)
        assert n_params == q + p + (200 * 784 + 784)


def test_recipe_list_prints_every_recipe(capsys):
    assert main(["train", "--recipe", "list"]) == 0
    out = capsys.readouterr().out
    for name, r in RECIPES.items():
        line = next(x for x in out.splitlines() if x.startswith(f"{name}: "))
        assert r["description"] in line
    assert "--adam-eps 0.0001" in out and "--lr-schedule burda" in out


def test_an_unknown_recipe_is_a_one_line_error_naming_the_recipes(capsys, tmp_path):
    assert main(["train", "--recipe", "burda-vae-9l", "--out", str(tmp_path / "r"), *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aevb: error: unknown recipe 'burda-vae-9l'")
    assert all(name in err[0] for name in RECIPES)
    assert not (tmp_path / "r").exists()


def test_a_config_file_overrides_the_recipe_and_flags_override_both(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"train": {"k": 7, "batch_size": 60}, "model": {"latent_dim": 3}}))
    argv = ["train", "--recipe", "burda-iwae-1l-k50", "--config", str(cfg), *TINY, "--latent-dim", "4"]
    assert main([*argv, "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["train"]["k"] == 7  # the file over the recipe's 50
    assert stored["train"]["batch_size"] == 100  # the flag over the file's 60 and the recipe's 20
    assert stored["model"]["latent_dim"] == 4
    assert stored["train"]["recipe"] == "burda-iwae-1l-k50" and stored["train"]["lr_schedule"] == "burda"


@pytest.mark.slow  # training: over 3 s
def test_train_with_a_recipe_end_to_end(tmp_path, shared_data):
    argv = ["train", "--recipe", "burda-iwae-1l-k5", *TINY, "--gradient", "dreg", "--out", "r", "--no-progress"]
    r = aevb_main(tmp_path, argv, AEVB_DATA_DIR=str(shared_data))
    assert r.returncode == 0, r.stderr
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    model_kw, train_kw = recipe_fields("burda-iwae-1l-k5")
    flags = {"dataset": "digits", "epochs": 1, "batch_size": 100, "gradient": "dreg"}
    expected_train = dataclasses.asdict(TrainConfig(**{**train_kw, **flags}))
    assert stored["train"] == expected_train  # the recipe's fields, the flags over them, the rest defaults
    expected_model = {**dataclasses.asdict(ModelConfig(**model_kw)), "hidden": [8], "latent_dim": 2}
    assert {k: v for k, v in stored["model"].items() if k != "data_shape"} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in expected_model.items() if k != "data_shape"
    }
    assert aevb.load(tmp_path / "r").config.activation == "tanh"
    # a resumed run keeps its recipe: giving it again is a change, refused in one line
    r = aevb_main(tmp_path, ["train", "--resume", "r", "--recipe", "burda-vae-1l"], AEVB_DATA_DIR=str(shared_data))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot change recipe" in r.stderr
