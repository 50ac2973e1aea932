"""Time-to-likelihood benchmark: the test log p(x) that an `aevb train` configuration reaches on MNIST for a
budget of training minutes, against the published numbers.

    OMP_NUM_THREADS=2 python benchmarks/likelihood.py run NAME --minutes 120 --eval-at 15 60 -- [AEVB TRAIN ARGS]
    python benchmarks/likelihood.py report        # docs/benchmarks/likelihood.md and .png from the records

run: for each evaluation time T (--eval-at, then --minutes) trains RUNS_DIR/NAME up to T minutes of training
with `aevb train ARGS --time-limit T` (a subprocess; every later one `aevb train --resume RUN --time-limit T`),
then estimates the importance-sampled log p(x) of all the test images with `aevb eval RUN --k K`, and appends
the measurement to docs/benchmarks/likelihood_NAME.json. Training minutes are the run's own count (optimiser
steps over all resumes): start-up, validation and evaluation are not counted. The same command again continues
a killed or finished benchmark: the run resumes from its checkpoint and the times already measured are kept.
The train args are stored with the first record; without any, `DEFAULT_TRAIN_ARGS` (aevb's best known setup).
Give --epochs large enough for the budget (a recipe sets its own); a run that ends its epochs early is recorded
as finished at its own minutes. The report (likelihood_report.py) is rewritten after every measurement.

    python benchmarks/likelihood.py keep NAME     # copy the run's last checkpoint into benchmarks/runs/NAME

keep: a run that takes longer than one machine's life (burda-vae-1l: 3,280 passes, about nine hours) goes on
elsewhere from the copy that `keep` makes of what `aevb train --resume` reads (config.json, checkpoint.safetensors,
model.safetensors, metrics.jsonl; a few MB, committed beside the records). `run` on a machine without
RUNS_DIR/NAME puts that copy back and resumes it; without one, it refuses to start a new run under the old
records.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parent)]
import likelihood_report  # noqa: E402  (beside this file)

import aevb  # noqa: E402  (this checkout's, whose commit the records name)
from aevb.checkpoint import read_config  # noqa: E402
from aevb.errors import AevbError  # noqa: E402
from aevb.files import RunLock, atomic_write_text  # noqa: E402
from aevb.rundir import progress  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks"
KEPT = ROOT / "benchmarks" / "runs"
KEPT_FILES = ("config.json", "checkpoint.safetensors", "model.safetensors", "metrics.jsonl")  # what --resume reads
# aevb's best known setup so far (issue 18: 450 epochs of it reach -90.17 nats); the time limit ends it
DEFAULT_TRAIN_ARGS = (
    "--dataset mnist --hidden 400 --latent-dim 20 --activation relu --precision bf16 --epochs 100000".split()
)


def eval_times(minutes: float, eval_at: list[float]) -> list[float]:
    """The training times (minutes) measured, in order: those of `eval_at` within the budget, and the budget."""
    return sorted({t for t in eval_at if 0 < t < minutes} | {minutes})


def _aevb(*args: str) -> list[str]:
    return [sys.executable, "-m", "aevb", *args]


def _call(cmd: list[str]) -> float:
    """Run an `aevb` command with this checkout's package; its wall seconds. Exits when it fails."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(aevb.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    print("$", shown(cmd), flush=True)
    t = time.perf_counter()
    rc = subprocess.run(cmd, env=env).returncode
    if rc in (130, 143):  # Ctrl-C or SIGTERM: aevb train kept its checkpoint, the same benchmark command continues it
        sys.exit(f"likelihood.py: `{shown(cmd)}` was interrupted; its run is saved, the same command continues it")
    if rc != 0:
        sys.exit(f"likelihood.py: `{shown(cmd)}` failed (exit {rc}); the records so far are kept")
    return time.perf_counter() - t


def shown(cmd: list[str]) -> str:
    """A command as typed: `aevb ...` for this interpreter's `python -m aevb ...`."""
    if cmd[:3] == [sys.executable, "-m", "aevb"]:
        cmd = ["aevb", *cmd[3:]]
    return shlex.join(cmd)


def git_commit() -> str:
    """The checkout's commit, with "+changes" when tracked files differ from it ("unknown" outside git)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "system": f"{platform.system()} {platform.machine()}",
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        # other work on the machine: with more runnable processes than cores, a training minute holds fewer steps
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def read_records(docs: Path, name: str) -> dict | None:
    path = docs / f"likelihood_{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_records(docs: Path, name: str, d: dict) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(docs / f"likelihood_{name}.json", json.dumps(d, indent=1) + "\n")


def _train_to(run: Path, minutes: float, train_args: list[str], data_dir: str) -> tuple[str, float]:
    """Train `run` (created from train_args, else resumed) up to `minutes` of training; (command, wall s)."""
    common = ["--time-limit", f"{minutes:g}", "--data-dir", data_dir, "--no-progress"]
    if (run / "config.json").exists():
        cmd = _aevb("train", "--resume", str(run), *common)
    else:
        cmd = _aevb("train", *train_args, "--out", str(run), *common)
    return shown(cmd), _call(cmd)


def _evaluate(run: Path, k: int, batch_size: int, data_dir: str) -> tuple[str, dict, float]:
    cmd = _aevb(
        "eval",
        str(run),
        "--k",
        str(k),
        "--batch-size",
        str(batch_size),
        "--seed",
        "0",
        "--data-dir",
        data_dir,
        "--no-progress",
    )
    wall = _call(cmd)
    return shown(cmd), json.loads((run / "eval_test.json").read_text()), wall


def keep(run_dir: Path, kept: Path) -> dict:
    """Copy the files `aevb train --resume` reads from `run_dir` to `kept` (replaced whole, never half
    written), holding the run's lock so that no trainer writes it meanwhile; exits when it cannot. Returns the
    copy's progress (`aevb.rundir.progress`)."""
    missing = [f for f in KEPT_FILES if not (run_dir / f).is_file()]
    if missing:
        sys.exit(f"likelihood.py: {run_dir} has no {', '.join(missing)}: nothing to keep")
    tmp, old = kept.with_name(f".{kept.name}.tmp"), kept.with_name(f".{kept.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with RunLock(run_dir):
            for f in KEPT_FILES:
                shutil.copy2(run_dir / f, tmp / f)
    except AevbError as e:
        shutil.rmtree(tmp)
        sys.exit(f"likelihood.py: {e}")
    shutil.rmtree(old, ignore_errors=True)
    if kept.exists():
        kept.rename(old)
    tmp.rename(kept)
    shutil.rmtree(old, ignore_errors=True)
    p = progress(kept)
    print(f"kept {run_dir} in {kept}: epoch {p['epoch']}, {p['minutes']:.1f} minutes of training")
    return p


def note_kept(docs: Path, name: str, p: dict) -> None:
    """Say in NAME's records how far its kept copy is (the report shows it for a run not yet measured)."""
    d = read_records(docs, name)
    if d is not None:
        when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        d["kept"] = {"epoch": p["epoch"], "epochs": p["epochs"], "minutes": p["minutes"], "when": when}
        write_records(docs, name, d)
        likelihood_report.write(docs)


def _restore(run_dir: Path, kept: Path) -> None:
    """Put the kept copy of a run back where its records say it is (a folder left there without config.json,
    a run killed before its first checkpoint, is filled in)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for f in KEPT_FILES:
        shutil.copy2(kept / f, run_dir / f)
    p = progress(run_dir)
    print(f"restored {run_dir} from {kept}: epoch {p['epoch']}, {p['minutes']:.1f} minutes of training", flush=True)


def run(args) -> None:
    docs, name = Path(args.docs), args.name
    run_dir = Path(args.runs_dir) / name
    kept = Path(args.kept) / name
    stored = read_records(docs, name)
    train_args = args.train_args or (stored["train_args"] if stored else list(DEFAULT_TRAIN_ARGS))
    if stored and args.train_args and args.train_args != stored["train_args"]:
        sys.exit(
            f"likelihood.py: {name} was started with `{shlex.join(stored['train_args'])}`; "
            "give the same train args, none, or another NAME"
        )
    if stored and stored["run"] != str(run_dir):
        sys.exit(f"likelihood.py: {name}'s run is {stored['run']}; give --runs-dir {Path(stored['run']).parent}")
    d = stored or {"name": name, "run": str(run_dir), "train_args": train_args, "records": []}
    d["budget_minutes"] = max(args.minutes, d.get("budget_minutes", 0))
    if not stored:  # the train args on record from the start: a run kept before its first measurement has them
        write_records(docs, name, d)
    for target in eval_times(args.minutes, args.eval_at):
        if any(r["target_minutes"] == target for r in d["records"]):
            continue
        if d["records"] and d["records"][-1]["finished"]:
            print(f"{name} finished its epochs at {d['records'][-1]['minutes']:.2f} minutes: nothing to train")
            break
        if (run_dir / "config.json").exists():
            _, cfg = read_config(run_dir)
            if cfg is not None and cfg.time_limit > target:
                print(f"{name} has trained past {target:g} minutes already (to {cfg.time_limit:g}): not measured")
                continue
        if not (run_dir / "config.json").exists() and (kept / "config.json").exists():
            _restore(run_dir, kept)  # measured or not yet: a kept run goes on, it does not start again
        if d["records"] and not (run_dir / "config.json").exists():
            sys.exit(
                f"likelihood.py: {name}'s run {run_dir} is gone (its records reach {d['records'][-1]['minutes']:g} "
                f"minutes) and {kept} holds no copy; put its last checkpoint back there to continue it, or start "
                "the train args again under another NAME"
            )
        train_cmd, train_wall = _train_to(run_dir, target, train_args, args.data_dir)
        done, (_, cfg) = progress(run_dir), read_config(run_dir)
        eval_cmd, res, eval_wall = _evaluate(run_dir, args.k, args.batch_size, args.data_dir)
        d["records"].append(
            {
                "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": shlex.join(["python", "benchmarks/likelihood.py", *sys.argv[1:]]),
                "train_command": train_cmd,
                "eval_command": eval_cmd,
                "git_commit": git_commit(),
                "machine": machine(),
                "target_minutes": target,
                "minutes": done["minutes"],
                "epochs": done["epochs"],
                "steps": done["step"],
                "finished": done["epoch"] >= cfg.epochs,
                "train_wall_seconds": train_wall,
                "eval_wall_seconds": eval_wall,
                **{
                    key: res[key]
                    for key in (
                        "log_likelihood",
                        "log_likelihood_se",
                        "elbo",
                        "elbo_se",
                        "k",
                        "examples",
                        "binarize",
                        "data",
                        "seed",
                    )
                },
            }
        )
        write_records(docs, name, d)  # after every measurement: a killed benchmark keeps what it measured
        likelihood_report.write(docs)
        r = d["records"][-1]
        print(f"{name}: {r['minutes']:.3f} minutes of training, test log p(x) {r['log_likelihood']:.2f}", flush=True)
    if not d["records"]:
        write_records(docs, name, d)
    likelihood_report.write(docs)
    print(likelihood_report.progress_table(d))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    train_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", default=str(DOCS), help="folder of the records and the report (default: %(default)s)")
    sub = p.add_subparsers(dest="part", required=True)
    r = sub.add_parser("run", help="train NAME to each evaluation time, measure, record; `-- ARGS` for aevb train")
    r.add_argument("name", metavar="NAME", help="the benchmark run: RUNS_DIR/NAME and likelihood_NAME.json")
    r.add_argument("--minutes", type=float, default=120.0, help="training minutes in all (default: %(default)s)")
    r.add_argument(
        "--eval-at",
        type=float,
        nargs="*",
        default=[15.0, 60.0],
        metavar="MINUTES",
        help="also measure at these training minutes (default: 15 60)",
    )
    r.add_argument("--k", type=int, default=5000, help="importance samples per test image (default: %(default)s)")
    r.add_argument(
        "--batch-size", type=int, default=50, help="test images per `aevb eval` batch (default: %(default)s)"
    )
    r.add_argument("--runs-dir", default="runs/likelihood", help="folder of the runs (default: %(default)s)")
    r.add_argument("--data-dir", default="../shared/data", help="folder of the datasets (default: %(default)s)")
    k = sub.add_parser("keep", help="copy RUNS_DIR/NAME's last checkpoint into KEPT/NAME, for another machine")
    k.add_argument("name", metavar="NAME")
    k.add_argument("--runs-dir", default="runs/likelihood", help="folder of the runs (default: %(default)s)")
    for q in (r, k):
        q.add_argument("--kept", default=str(KEPT), help="folder of the kept copies of runs (default: benchmarks/runs)")
    sub.add_parser("report", help="write likelihood.md and likelihood.png from the records")
    args = p.parse_args(argv)
    if args.part == "report":
        print(f"wrote {likelihood_report.write(Path(args.docs))}")
        return
    if not all(c.isalnum() or c in "-_." for c in args.name) or args.name.startswith("."):
        p.error(f"NAME must be a plain name (letters, digits, - _ .); got {args.name!r}")
    if args.part == "keep":
        note_kept(Path(args.docs), args.name, keep(Path(args.runs_dir) / args.name, Path(args.kept) / args.name))
        return
    if not args.minutes > 0 or args.k < 1 or args.batch_size < 1 or any(not t > 0 for t in args.eval_at):
        p.error("--minutes and --eval-at must be > 0, --k and --batch-size >= 1")
    args.train_args = train_args
    run(args)


if __name__ == "__main__":
    main()
