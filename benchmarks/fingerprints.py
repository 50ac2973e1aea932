"""Fingerprints of trained parameters: one short fp32 training run on MNIST per objective variant, and
the anomaly detector's scores on two ADBench sets, each printed as a SHA-256 of the exact bytes.

A refactoring that must not change behaviour is checked by running this on both commits and comparing
the lines (`diff`): equal hashes mean bit-identical parameters (and scores). Nothing is timed.

    python benchmarks/fingerprints.py --data-dir ../shared/data > before.txt
    git checkout NEW && python benchmarks/fingerprints.py --data-dir ../shared/data > after.txt
    diff before.txt after.txt

Training goes through the `aevb train` command (its interface is what must stay), one epoch of
minibatches of 500 on the MNIST training split, dynamic binarisation unless the variant says otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

COMMON = ["--dataset", "mnist", "--epochs", "1", "--batch-size", "500", "--hidden", "100", "--latent-dim", "4"]
VARIANTS: dict[str, list[str]] = {
    "elbo-B": [],
    "elbo-A-L2": ["--estimator", "mc", "--samples", "2"],
    "iwae-k5": ["--objective", "iwae", "--k", "5"],
    "beta-2": ["--beta", "2"],
    "warmup-1": ["--kl-warmup", "1"],
    "free-bits-0.2": ["--free-bits", "0.2"],
    "prior-mog": ["--prior", "mog", "--prior-components", "5"],
    "prior-vamp": ["--prior", "vamp", "--prior-components", "5"],
    "prior-vamp-mc": ["--prior", "vamp", "--prior-components", "5", "--estimator", "mc"],
    "conditional": ["--condition-on", "labels"],
    "conv": ["--arch", "conv", "--channels", "8", "16"],
    "resmlp-relu": ["--arch", "resmlp", "--hidden", "64", "64", "--activation", "relu"],
    "gaussian-learned-std": ["--likelihood", "gaussian-learned", "--standardize"],
    "student-t-std": ["--likelihood", "student-t", "--standardize"],
    "robust": ["--likelihood", "gaussian-robust"],
    "static": ["--binarize", "static", "--init", "normal"],
    "resumed": ["--checkpoint-every", "30"],  # one epoch, then `--resume --epochs 2`
}
DETECTOR_SETS = ("38_thyroid", "42_WBC")
SRC = Path(__file__).resolve().parents[1] / "src"  # this checkout's aevb, whatever is installed


def tensor_digest(path: Path) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor in a safetensors file."""
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, t in sorted(load_file(str(path)).items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def train(name: str, flags: list[str], data_dir: str, work: Path) -> str:
    out = work / name
    cmd = [sys.executable, "-m", "aevb", "train", *COMMON, *flags, "--data-dir", data_dir, "--out", str(out)]
    cmd += ["--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if name == "resumed" and not done.returncode:
        again = [sys.executable, "-m", "aevb", "train", "--resume", str(out), "--epochs", "2", "--no-progress"]
        done = subprocess.run([*again, "--data-dir", data_dir], env=env, capture_output=True, text=True)
    if done.returncode:
        return "FAILED " + (done.stderr.strip().splitlines() or ["?"])[-1][:100]
    return tensor_digest(out / "model.safetensors")


def detector(name: str, data_dir: str) -> str:
    import torch

    from aevb.anomaly import AnomalyDetector

    torch.set_num_threads(1)
    d = np.load(Path(data_dir) / "adbench" / f"{name}.npz")
    x = d["X"].astype(np.float64)
    det = AnomalyDetector(random_state=0, refits=1, epochs=5).fit(x)
    return hashlib.sha256(np.ascontiguousarray(det.score_samples(x)).tobytes()).hexdigest()[:16]


def main() -> None:
    sys.path.insert(0, str(SRC))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = "folder holding mnist/ and adbench/ (default: %(default)s)"
    p.add_argument("--data-dir", default="../shared/data", help=where)
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these variants (default: all)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in VARIANTS.items():
            if not args.only or name in args.only:
                print(f"{name:24s} {train(name, flags, args.data_dir, Path(tmp))}", flush=True)
    for name in DETECTOR_SETS:
        if not args.only or name in args.only:
            print(f"detector-{name:15s} {detector(name, args.data_dir)}", flush=True)


if __name__ == "__main__":
    main()
