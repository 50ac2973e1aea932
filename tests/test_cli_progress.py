"""`aevb eval` and `aevb sample` on a trained run: progress a log file can show, and a default output
name that never replaces what training (or an earlier command) wrote."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from tqdm import tqdm

import aevb.cli.progress
from aevb.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "R"
    assert main(["train", "--epochs", "1", "--hidden", "8", "--no-progress", "--out", str(run)]) == 0
    return run


def test_eval_prints_progress_lines_when_stderr_is_not_a_terminal(run, monkeypatch, capsys):
    monkeypatch.setattr(aevb.cli.progress, "LINE_EVERY_S", 0.0)  # a line after every batch, not every 10 s
    capsys.readouterr()
    assert main(["eval", str(run), "--k", "20", "--batch-size", "50"]) == 0
    lines = capsys.readouterr().err.splitlines()
    # digits' test split: 300 rows, 6 batches of 50; one line per batch but the last, then the end
    pattern = re.compile(r"log p\(x\), k=20: (\d+)/300 examples \((\d+)%\), (\d+) s, about (\d+) s left")
    matches = [pattern.fullmatch(line) for line in lines[:-1]]
    assert all(matches), lines
    assert [(int(m[1]), int(m[2])) for m in matches] == [(n, round(100 * n / 300)) for n in range(50, 300, 50)]
    assert re.fullmatch(r"log p\(x\), k=20: 300/300 examples \(100%\), done in \d+ s", lines[-1]), lines


def test_eval_is_quiet_when_quick_or_told_and_draws_a_bar_on_a_terminal(run, monkeypatch, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "--k", "20"]) == 0  # far under LINE_EVERY_S: nothing to report
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(aevb.cli.progress, "LINE_EVERY_S", 0.0)
    assert main(["eval", str(run), "--k", "20", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert isinstance(aevb.cli.progress.progress(10, "x"), aevb.cli.progress.Lines)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = aevb.cli.progress.progress(10, "x")
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()


def test_sample_never_replaces_the_samples_training_wrote(run, capsys):
    trained = (run / "samples.png").read_bytes()
    for i in (2, 3):
        capsys.readouterr()
        assert main(["sample", str(run), "--n", "4", "--seed", str(i)]) == 0
        assert capsys.readouterr().out == f"4 samples written to {run / f'samples-{i}.png'}\n"
        assert (run / f"samples-{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "samples.png").read_bytes() == trained
    assert (run / "samples-2.png").read_bytes() != (run / "samples-3.png").read_bytes()  # 2 seeds, 2 grids
    assert main(["sample", str(run), "--n", "4", "--seed", "3", "--out", str(run / "samples-2.png")]) == 0
    assert (run / "samples-2.png").read_bytes() == (run / "samples-3.png").read_bytes()  # an --out is replaced
    assert not (run / "samples-4.png").exists()
