"""Binarisation rules and the data-vs-model checks."""

import pytest
import torch

import aevb
from aevb.preprocess import BINARIZE_SEEDS, binarize_once, check_data, resolve_binarize, split


def _binary_dataset(digits):
    return aevb.Dataset("bin", (8, 8), *(binarize_once(getattr(digits, s), 0) for s in ("train", "valid", "test")))


def test_auto_resolution(digits):
    assert resolve_binarize("auto", "bernoulli", digits) == "dynamic"
    assert resolve_binarize("auto", "gaussian", digits) == "none"
    assert resolve_binarize("static", "bernoulli", digits) == "static"
    assert resolve_binarize("dynamic", "bernoulli", _binary_dataset(digits)) == "none"  # already 0/1
    with pytest.raises(aevb.DataError, match="applies to the bernoulli likelihood only"):
        resolve_binarize("dynamic", "gaussian-learned", digits)


def test_binarize_once_is_a_fixed_bernoulli_draw(digits):
    x = digits.train
    a, b = binarize_once(x, 0), binarize_once(x, 0)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, binarize_once(x, 1))
    # an unbiased draw: the mean of the binary pixels matches the grey levels' mean
    assert abs(a.mean().item() - x.mean().item()) < 0.005
    assert torch.equal(a[x == 0], torch.zeros_like(a[x == 0])) and torch.equal(a[x == 1], torch.ones_like(a[x == 1]))


def test_splits_under_each_setting(digits):
    # dynamic keeps grey training data (redrawn per minibatch) and fixes the evaluation draws
    assert torch.equal(split(digits, "train", "dynamic"), digits.train)
    for name in ("valid", "test"):
        fixed = binarize_once(getattr(digits, name), BINARIZE_SEEDS[name])
        assert torch.equal(split(digits, name, "dynamic"), fixed)
        assert torch.equal(split(digits, name, "static"), fixed)  # the same test set for every run
    assert torch.equal(split(digits, "train", "static"), binarize_once(digits.train, BINARIZE_SEEDS["train"]))
    assert torch.equal(split(digits, "test", "none"), digits.test)


def test_check_data_messages():
    cfg = aevb.ModelConfig(data_shape=(4,), likelihood="bernoulli")
    x = torch.rand(5, 4)
    assert check_data(x.double(), cfg, "t").dtype == torch.float32
    assert check_data(x.reshape(5, 2, 2), cfg, "t").shape == (5, 4)
    with pytest.raises(aevb.DataError, match="t is empty"):
        check_data(torch.zeros(0, 4), cfg, "t")
    with pytest.raises(aevb.DataError, match="t has 3 features per row; the model was trained on 4"):
        check_data(torch.rand(5, 3), cfg, "t")
    with pytest.raises(aevb.DataError, match="t contains NaN or inf"):
        check_data(torch.tensor([[0.5, float("inf"), 0.1, 0.2]]), cfg, "t")
    with pytest.raises(aevb.DataError, match=r"outside \[0, 1\] \(-1 .. 0.5\)"):
        check_data(torch.tensor([[0.5, -1.0, 0.1, 0.2]]), cfg, "t")
    gauss = aevb.ModelConfig(data_shape=(4,), likelihood="gaussian")
    assert check_data(torch.tensor([[5.0, -1.0, 0.1, 0.2]]), gauss, "t").shape == (1, 4)
