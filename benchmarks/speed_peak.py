"""The machine's limit for benchmarks/speed.py: torch's matrix-multiply GFLOP/s at the model's own
shapes, and the FLOPs that the model spends per example (training) and per importance sample (evaluation),
so that a measured rate reads as a fraction of the peak."""

from __future__ import annotations

import math
import time

import torch
from speed_loops import D


def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 0.5) -> float:
    """GFLOP/s of (m, k) @ (k, n) in dtype, best of 3 timed blocks."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    reps = max(1, int(seconds * 1e11 / (2 * m * k * n)))
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * m * k * n * reps / best / 1e9


def peaks(hidden: int, batch: int, seconds: float = 0.5, dtypes=("fp32", "bf16")) -> dict[str, float]:
    """fp32 and bf16 matmul GFLOP/s at the encoder's and decoder's big layer (batch rows), the faster."""
    out = {}
    for name in dtypes:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        enc = matmul_gflops(batch, D, hidden, dtype, seconds)
        dec = matmul_gflops(batch, hidden, D, dtype, seconds)
        out[name] = max(enc, dec)
    return out


def train_flops(hidden: int, latent: int) -> float:
    """FLOPs of one example's forward and backward pass: 2 per MAC forward, 4 backward (weights and
    inputs), less the input gradient of the first layer, which nothing needs."""
    macs = D * hidden + hidden * 2 * latent + latent * hidden + hidden * D
    return 6 * macs - 2 * D * hidden


def eval_flops(hidden: int, latent: int) -> float:
    """FLOPs per importance sample: the decoder's forward (the encoder runs once per image)."""
    return 2 * (latent * hidden + hidden * D)
