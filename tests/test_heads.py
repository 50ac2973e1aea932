"""The decoder heads' modules (aevb.heads_shared, heads_discrete, heads_real, heads_mixed): every public name
is the object that `aevb.likelihoods` exports, and the registry's heads are the families' classes."""

from __future__ import annotations

import inspect

import pytest
import torch

import aevb
from aevb import heads_discrete, heads_mixed, heads_real, heads_shared, likelihoods

FAMILIES = (heads_shared, heads_discrete, heads_real, heads_mixed)


@pytest.mark.parametrize("module", FAMILIES, ids=lambda m: m.__name__)
def test_every_public_name_of_a_heads_module_is_exported_by_likelihoods(module):
    own = [
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
    ]
    assert own, module.__name__
    for name in own:
        assert name in likelihoods.__all__, name
        assert getattr(likelihoods, name) is getattr(module, name), name


def test_likelihoods_all_names_only_what_it_has():
    assert sorted(set(likelihoods.__all__)) == sorted(likelihoods.__all__)
    for name in likelihoods.__all__:
        assert hasattr(likelihoods, name), name


def test_each_registered_head_is_a_class_of_its_family():
    family = {"bernoulli": heads_discrete, "poisson": heads_discrete, "categorical": heads_discrete,
              "mixed": heads_mixed}  # fmt: skip
    extra = {"categorical": {"categories": 3}, "mixed": {"columns": "poisson:2,gaussian:1"}}
    for name in likelihoods.LIKELIHOODS:
        head = likelihoods.make_likelihood(aevb.ModelConfig(data_shape=(3,), likelihood=name, **extra.get(name, {})))
        assert inspect.getmodule(type(head)) is family.get(name, heads_real), name


def test_the_shared_helpers_against_their_definitions():
    g = torch.Generator().manual_seed(0)
    loc, scale = torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) + 0.5
    p = torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)
    shift, s = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 3.0])
    x = torch.randn(4, 3, generator=g)
    q = heads_shared.rescale_normal(p, shift, s)
    # x = shift + s * x' for x' ~ p: log q(x) = log p((x - shift) / s) - sum log s
    torch.testing.assert_close(q.log_prob(x), p.log_prob((x - shift) / s) - s.log().sum())
    eps = torch.randn(loc.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(heads_shared.sample_normal(p, torch.Generator().manual_seed(7)), loc + scale * eps)
    ok = torch.ones(4, 3, dtype=torch.bool)
    assert heads_shared.support_message(x, ok, 5, "bad {columns}", "need") is None
    ok[2, 1] = False
    msg = heads_shared.support_message(x, ok, 5, "bad values in {columns}", "need reals")
    assert (
        msg
        == f"has bad values in column(s) 5..7: the first is the value {x[2, 1].item():g} (row 2, feature 6); need reals"
    )
