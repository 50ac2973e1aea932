"""The package's shape: one list of names per part (the dicts that config and the CLI read), one
evaluation record, one reconstruction, and an import graph without cycles or private names."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

import aevb
from aevb import config, nets, objectives, optimizers, priors
from aevb.cli.parser import CHOICES
from aevb.evaluate import ACTIVE_THRESHOLD, elbo_terms, evaluation_record, log_likelihood, posterior_mean_variance

PACKAGE = Path(aevb.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")).relative_to("aevb") if name != "aevb" else Path()
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _imports(path: Path, top_level_only: bool):
    """(imported module, names) of each `from aevb... import names` / `import aevb...` in the file;
    top_level_only: the statements that run on import (not in functions, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(body):
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                yield from visit(
                    [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", []),
                     *[n for h in getattr(node, "handlers", []) for n in h.body]]
                )  # fmt: skip
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                if target.startswith("aevb"):
                    yield target, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                yield from ((a.name, []) for a in node.names if a.name.startswith("aevb"))
            elif not top_level_only and isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                yield from visit(node.body)

    yield from visit(tree.body)


def _graph(top_level_only: bool = True) -> dict[str, set[str]]:
    """module -> the aevb modules it imports (top_level_only: when it is imported); packages'
    __init__ are left out: a parent package is always initialised before its modules."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        edges = set()
        for target, names in _imports(path, top_level_only):
            for n in names or [None]:
                sub = f"{target}.{n}" if n else target
                edges.add(sub if n and _is_module(sub) else target)
        package = lambda m: (PACKAGE / Path(*m.split(".")[1:]) / "__init__.py").is_file()  # noqa: E731
        graph[_module_name(path)] = {e for e in edges if not package(e)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph (a -> b -> ... -> a), or None."""
    state: dict[str, str] = {}

    def visit(m: str, stack: list[str]) -> list[str] | None:
        state[m] = "open"
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                return [*stack[stack.index(n) :], n]
            found = None if n in state else visit(n, [*stack, n])
            if found:
                return found
        state[m] = "done"
        return None

    for m in sorted(graph):
        found = None if m in state else visit(m, [m])
        if found:
            return found
    return None


def test_the_modules_import_each_other_without_a_cycle():
    assert _cycle(_graph(top_level_only=True)) is None


def test_not_even_the_imports_inside_functions_make_a_cycle():
    assert _cycle(_graph(top_level_only=False)) is None


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{_module_name(path)}: {target}.{n}"
        for path in PACKAGE.rglob("*.py")
        for target, names in _imports(path, top_level_only=False)
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert private == []


def test_no_module_reaches_into_another_modules_private_names():
    """`module._name` where `module` is an aevb module imported by name (e.g. `plots._helper()`)."""
    reached = []
    for path in PACKAGE.rglob("*.py"):
        modules = {
            n for target, names in _imports(path, top_level_only=False) for n in names if _is_module(f"{target}.{n}")
        }
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                if node.attr.startswith("_") and not node.attr.startswith("__"):
                    reached.append(f"{_module_name(path)}: {node.value.id}.{node.attr}")
    assert reached == []


def test_the_concept_modules_that_config_reads_do_not_import_config_when_they_run():
    graph = _graph()
    for m in ("aevb.nets", "aevb.priors", "aevb.objectives", "aevb.optimizers", "aevb.model"):
        assert "aevb.config" not in graph[m], m


@pytest.mark.parametrize(
    "field, registry, make",
    [
        ("arch", nets.ARCHS, lambda v: config.ModelConfig(arch=v)),
        ("prior", priors.PRIORS, lambda v: config.ModelConfig(prior=v)),
        ("objective", objectives.OBJECTIVES, lambda v: config.TrainConfig(objective=v)),
        ("optimizer", optimizers.OPTIMIZERS, lambda v: config.TrainConfig(optimizer=v)),
    ],
)
def test_config_and_the_cli_take_exactly_the_names_of_each_registry(field, registry, make):
    assert tuple(CHOICES[field]) == tuple(registry)
    for name in registry:
        if field == "arch" and name == "conv":
            config.ModelConfig(arch=name, data_shape=(8, 8))
        else:
            assert getattr(make(name), field) == name
    with pytest.raises(ValueError, match=f"{field} must be one of {', '.join(registry)}; got 'bogus'"):
        make("bogus")


def test_a_registered_objective_is_accepted_by_config(monkeypatch):
    monkeypatch.setitem(objectives.OBJECTIVES, "toy", objectives.OBJECTIVES["elbo"])
    assert config.TrainConfig(objective="toy").objective == "toy"


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    plain = aevb.VAE(aevb.ModelConfig(data_shape=(8, 8), latent_dim=3, hidden=(16,)))
    conditional = aevb.VAE(
        aevb.ModelConfig(data_shape=(8, 8), latent_dim=2, hidden=(16,), condition_on="labels", classes=4)
    )
    x = torch.rand(30, 8, 8, generator=torch.Generator().manual_seed(1)).round()
    return plain.eval(), conditional.eval(), x, torch.arange(30) % 4


def test_reconstruct_is_the_decoded_mean_at_the_posterior_mean(models):
    plain, conditional, x, y = models
    with torch.no_grad():
        expected = torch.sigmoid(plain.decoder(plain.encode(x).base_dist.loc)).reshape(x.shape)  # Bernoulli mean
        expected_y = conditional.decode(conditional.encode(x, y).mean, y).mean.reshape(x.shape)
    assert plain.reconstruct(x).shape == x.shape and not plain.reconstruct(x).requires_grad
    torch.testing.assert_close(plain.reconstruct(x), expected)
    torch.testing.assert_close(plain.reconstruct(x.reshape(30, -1)), expected.reshape(30, -1))
    assert torch.equal(conditional.reconstruct(x, y), expected_y)


def test_the_evaluation_record_summarises_the_evaluation_loops(models):
    plain, _, x, _ = models
    calls = []
    res = evaluation_record(plain, x, k=40, seed=3, batch_size=7, on_batch=calls.append)
    assert sum(calls) == 30 and len(calls) == math.ceil(30 / 7)
    terms, ll = elbo_terms(plain, x, seed=3), log_likelihood(plain, x, k=40, seed=3)
    for name, v in (("elbo", terms.elbo), ("log_px_z", terms.log_px_z), ("kl", terms.kl), ("log_likelihood", ll)):
        v = v.double()
        assert res[name] == pytest.approx(v.mean().item(), abs=1e-9)
        assert res[name + "_se"] == pytest.approx(v.std().item() / math.sqrt(30), rel=1e-9)
    assert res["bits_per_dim"] == pytest.approx(-res["log_likelihood"] / (64 * math.log(2)), rel=1e-6)
    var = posterior_mean_variance(plain, x)
    assert res["posterior_mean_variance"] == pytest.approx(var.tolist(), abs=1e-6)
    assert res["active_units"] == int((var > ACTIVE_THRESHOLD).sum()) and res["latent_dim"] == 3
    assert (res["examples"], res["k"], res["seed"]) == (30, 40, 3)
    assert ACTIVE_THRESHOLD == 0.01  # Burda et al. (2016)
