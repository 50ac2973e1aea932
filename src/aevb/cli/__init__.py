"""The `aevb` command: the only place that parses argv, prints, and picks output paths."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from .. import distributed, memory
from ..errors import AevbError
from .detect import cmd_detect
from .detect import register as register_detect
from .parser import build_parser
from .report import cmd_report, cmd_serve
from .report import register as register_report
from .reproduce import cmd_reproduce
from .reproduce import register as register_reproduce
from .runs import (
    cmd_encode,
    cmd_eval,
    cmd_manifold,
    cmd_plot,
    cmd_reconstruct,
    cmd_sample,
)
from .train import cmd_train
from .variants import COMMANDS as VARIANT_COMMANDS
from .variants import register as register_variants

COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "encode": cmd_encode,
    "manifold": cmd_manifold,
    "plot": cmd_plot,
}
# Command modules that add their own subcommand: (register(subparsers), {name: handler}).
EXTENSIONS: list = [
    (register_report, {"report": cmd_report, "serve": cmd_serve}),
    (register_reproduce, {"reproduce": cmd_reproduce}),
    (register_detect, {"detect": cmd_detect}),
    (register_variants, VARIANT_COMMANDS),
]
for _register, _commands in EXTENSIONS:
    COMMANDS.update(_commands)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aevb` console script; returns the exit status."""
    args = build_parser([r for r, _ in EXTENSIONS]).parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except AevbError as e:
        print(f"aevb: error: {e}", file=sys.stderr)
        distributed.exit_if_broken(1)
        return 1
    except (RuntimeError, MemoryError) as e:  # an allocation that no command named: still one line
        amount = memory.failed_allocation(e)
        if amount is None:
            raise
        print(f"aevb: error: {memory.out_of_memory(f'running aevb {args.command}', amount)}", file=sys.stderr)
        distributed.exit_if_broken(1)
        return 1
    except KeyboardInterrupt:
        print("aevb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `aevb ... | head`: the reader left; stop without a traceback, as `yes | head` does
        _drop_stdout()
        return 141  # 128 + SIGPIPE, a shell's status for a writer killed by a closed pipe
    return 0


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's flush at exit finds no closed pipe either."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
