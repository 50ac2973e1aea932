"""The `aevb` command: the only place that parses argv, prints, and picks output paths."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import AevbError
from .parser import build_parser
from .runs import (
    cmd_encode,
    cmd_eval,
    cmd_manifold,
    cmd_plot,
    cmd_reconstruct,
    cmd_sample,
)
from .train import cmd_train

COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "encode": cmd_encode,
    "manifold": cmd_manifold,
    "plot": cmd_plot,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aevb` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except AevbError as e:
        print(f"aevb: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aevb: interrupted", file=sys.stderr)
        return 130
    return 0
