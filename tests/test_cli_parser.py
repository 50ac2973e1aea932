"""`aevb ... --help`: every option states its default at most once, whoever registered the command."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from aevb.cli import EXTENSIONS
from aevb.cli.parser import build_parser


def _commands(parser: argparse.ArgumentParser, name: str = "aevb") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _commands(p, f"{name} {sub}")


def _option_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's help as --help prints it (one line, the formatter's additions included)."""
    formatter = parser._get_formatter()
    return {
        "/".join(a.option_strings) or a.dest: " ".join(formatter._expand_help(a).split())
        for a in parser._actions
        if a.help and a.help != argparse.SUPPRESS
    }


def test_no_option_states_its_default_twice():
    commands = dict(_commands(build_parser([r for r, _ in EXTENSIONS])))
    assert {"aevb sample", "aevb interpolate", "aevb detect fit", "aevb reproduce figure2"} <= set(commands)
    doubled = [
        (name, option, text)
        for name, p in commands.items()
        for option, text in _option_help(p).items()
        if text.count("(default:") > 1
    ]
    assert doubled == []
    sample = _option_help(commands["aevb sample"])
    assert sample["--out"].count("(default: RUN/samples.png|csv, or RUN/samples-2.png|csv") == 1
    assert sample["--n"].endswith("(default: 64)")  # the formatter still adds the defaults not written out
    assert _option_help(commands["aevb interpolate"])["--out"].endswith("(default: RUN/interpolation.png|csv)")


def test_defaults_read_as_words_not_python_literals():
    """An unset option and an off switch read "none" and "off", as the config fields' flags do, never None/False."""
    commands = dict(_commands(build_parser([r for r, _ in EXTENSIONS])))
    literal = [
        (name, option, text)
        for name, p in commands.items()
        for option, text in _option_help(p).items()
        if any(f"(default: {w})" in text for w in ("None", "False", "True"))
    ]
    assert literal == []
    evaluation = _option_help(commands["aevb eval"])
    assert evaluation["--data"].endswith("(default: none)")
    assert evaluation["--no-progress"].endswith("(default: off)")
    assert evaluation["--seed"].endswith("(default: 0)")  # a zero is a number, not a switch
