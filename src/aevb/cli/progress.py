"""Progress of a long command: a tqdm bar on a terminal, else a plain line every LINE_EVERY_S seconds.

A log file or CI keeps lines, not a bar redrawn with carriage returns; and a command that prints
nothing for a minute there looks hung. Both go to stderr, so stdout keeps only the results.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

LINE_EVERY_S = 10.0  # seconds between two progress lines when stderr is not a terminal


class Lines:
    """tqdm's update/close, told as lines: "DESC: 300/1000 UNIT (30%), 12 s, about 28 s left"."""

    def __init__(self, total: int, desc: str, unit: str, every: float):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.n, self.start, self.printed = 0, time.monotonic(), 0.0  # printed: elapsed at the last line

    def update(self, n: int) -> None:
        self.n += n
        elapsed = time.monotonic() - self.start
        if elapsed - self.printed >= self.every and self.n < self.total:
            left = elapsed * (self.total - self.n) / self.n if self.n else float("nan")
            self._line(f"{elapsed:.0f} s, about {left:.0f} s left")
            self.printed = elapsed

    def close(self) -> None:
        if self.printed:  # a log that showed progress also shows the end
            self._line(f"done in {time.monotonic() - self.start:.0f} s")
            self.printed = 0.0

    def _line(self, when: str) -> None:
        pct = 100 * self.n / self.total if self.total else 100.0
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%), {when}", file=sys.stderr, flush=True)

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(total: int, desc: str, unit: str = "examples", disabled: bool = False) -> tqdm | Lines:
    """A progress bar (stderr is a terminal) or progress lines (it is not) over `total` units; nothing
    when `disabled`. Use as a context manager; call update(n) after each n units."""
    if disabled or sys.stderr.isatty():
        return tqdm(total=total, unit=unit, desc=desc, leave=False, disable=disabled, dynamic_ncols=True)
    return Lines(total, desc, unit, LINE_EVERY_S)
