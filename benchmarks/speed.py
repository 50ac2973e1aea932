"""Speed of aevb's training and evaluation against the machine's limit and a reference loop, in one run.

    OMP_NUM_THREADS=1 python benchmarks/speed.py --data-dir ../shared/data --json speed.json

Every figure is a ratio measured in this one run (the reference and aevb interleaved), because the
machines are shared and noisy:
1. peak: torch's matrix-multiply GFLOP/s (fp32, bf16) at the model's own shapes;
2. training images/s on MNIST: aevb's trainer (`aevb.loop.run_epoch`, with the optimiser that
   `aevb.train` builds) against a reference loop written the way the PyTorch examples VAE is
   (DataLoader over a TensorDataset, sigmoid then BCE summed, loss.item() every step), for the
   examples' network (784-400-20 ReLU, batch 128), the paper's (784-500-20 tanh, batch 100) and a
   larger batch (1024); aevb in fp32, in bf16 autocast and (--compile) torch.compile'd; at one
   thread and at the machine's default (torch's: one per core), both loops at the same count;
3. bf16 quality: the same short training in fp32 and bf16, test log-likelihood compared;
4. time to quality: wall time until the test ELBO (dynamically binarised MNIST) first passes
   -100 nats, aevb defaults against the reference loop (epochs interleaved; evaluation not timed);
5. evaluation: importance-sampled log p(x) with k=5000 (of a model trained here, or --eval-model):
   images*samples/s, fraction of the fp32 peak measured between its blocks of images, and the peak
   memory of the same evaluation with k=500 and k=5000 (child processes);
6. peak resident memory of a training run (a child process running aevb.train for one epoch).
Wall time of the default run on a quiet machine: about 25 minutes (8 of them the k=5000 evaluation of
all 10,000 test images, --eval-images to shorten it); much longer under load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

import aevb
from aevb import speed
from aevb.evaluate import log_likelihood
from aevb.preprocess import binarize_once

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when imported
from speed_loops import Aevb, D, Reference  # noqa: E402
from speed_peak import eval_flops, matmul_gflops, peaks, train_flops  # noqa: E402

NETS = {  # name: (hidden, latent, activation, batch)
    "examples 784-400-20 relu b128": (400, 20, "relu", 128),
    "paper 784-500-20 tanh b100": (500, 20, "tanh", 100),
    "examples 784-400-20 relu b1024": (400, 20, "relu", 1024),
}


# ---------------------------------------------------------------- the parts


def part_throughput(x, args, log) -> list[dict]:
    rows = []
    threads = torch.get_num_threads()
    for name, (hidden, latent, act, batch) in NETS.items():
        xs = x[: args.images]
        variants = {"reference": None, "aevb fp32": {}, "aevb bf16": {"precision": "bf16"}}
        if args.compile:
            variants["aevb fp32 compiled"] = {"compile": "on"}
        trainers = {
            v: Reference(hidden, latent, act, batch) if kw is None else Aevb(hidden, latent, act, batch, **kw)
            for v, kw in variants.items()
        }
        for tr in trainers.values():  # warm-up (and compilation) outside the clock
            tr.epoch(xs[: 4 * batch])
        times = {v: [] for v in trainers}
        peak = []
        for _ in range(args.repeats):  # interleaved: the peak and every variant see the same load
            peak.append(max(peaks(hidden, batch, seconds=0.2, dtypes=("fp32",)).values()))
            for v, tr in trainers.items():
                times[v].append(tr.epoch(xs))
        peak = statistics.median(peak)
        log(f"  {name:32s} fp32 matmul peak during these epochs: {peak:.1f} GFLOP/s ({threads} threads)")
        flops = train_flops(hidden, latent)
        ref = xs.shape[0] / statistics.median(times["reference"])
        for v, ts in times.items():
            ips = xs.shape[0] / statistics.median(ts)
            row = {
                "net": name,
                "threads": threads,
                "variant": v,
                "images_per_s": ips,
                "vs_reference": ips / ref,
                "fraction_of_fp32_peak": ips * flops / 1e9 / peak,
                "fp32_peak_gflops": peak,
                "load_average": os.getloadavg()[0],
            }
            rows.append(row)
            frac = row["fraction_of_fp32_peak"]
            log(f"  {name:32s} {v:20s} {ips:9.0f} img/s  x{ips / ref:4.2f} ref  {frac:5.1%} of fp32 peak")
    return rows


def part_bf16_quality(ds, x_test, args, log) -> dict:
    """Same seed, same epochs: test log p(x) (k=args.quality_k on args.quality_images) fp32 vs bf16."""
    hidden, latent, act, batch = NETS["examples 784-400-20 relu b128"]
    out = {}
    for precision in ("fp32", "bf16"):
        tr = Aevb(hidden, latent, act, batch, precision=precision)
        for _ in range(args.quality_epochs):
            tr.epoch(ds.train.reshape(-1, D))
        ll = log_likelihood(tr.model, x_test[: args.quality_images], k=args.quality_k, batch_size=50)
        out[precision] = {"test_log_px": ll.mean().item(), "se": ll.std().item() / math.sqrt(ll.numel())}
        log(f"  {precision}: test log p(x) {out[precision]['test_log_px']:.3f} ± {out[precision]['se']:.3f} nats")
    out["difference"] = out["bf16"]["test_log_px"] - out["fp32"]["test_log_px"]
    out["epochs"], out["k"], out["images"] = args.quality_epochs, args.quality_k, args.quality_images
    log(f"  bf16 - fp32: {out['difference']:+.3f} nats (tolerance 0.1)")
    return out


def part_time_to_quality(ds, x_test, args, log):
    """Epochs interleaved; seconds of training (not of evaluation) until test ELBO > target."""
    hidden, latent, act = 400, 20, "relu"
    defaults = aevb.TrainConfig()
    trainers = {
        "reference (b128)": Reference(hidden, latent, act, 128),
        f"aevb defaults (b{defaults.batch_size}, fp32)": Aevb(hidden, latent, act, defaults.batch_size),
        f"aevb defaults + bf16 (b{defaults.batch_size})": Aevb(
            hidden, latent, act, defaults.batch_size, precision="bf16"
        ),
    }
    x_train = ds.train.reshape(-1, D)
    state = {v: {"seconds": 0.0, "epochs": 0, "reached": None, "elbo": None} for v in trainers}
    for epoch in range(1, args.max_epochs + 1):
        for v, tr in trainers.items():
            s = state[v]
            if s["reached"] is not None:
                continue
            s["seconds"] += tr.epoch(x_train)
            s["epochs"], s["elbo"] = epoch, tr.test_elbo(x_test)
            if s["elbo"] > args.target:
                s["reached"] = s["seconds"]
        log(f"  epoch {epoch}: " + ", ".join(f"{v} {s['elbo']:.2f}" for v, s in state.items()))
        if all(s["reached"] is not None for s in state.values()):
            break
    models = {v: tr for v, tr in trainers.items()}
    return state, models


def part_eval(model: aevb.VAE, x_test, args, log) -> dict:
    """k=5000 over args.eval_images test images in blocks of args.eval_block, the fp32 matmul peak at
    the decoder's shape measured before every block and after the last: each block's fraction of
    peak is its rate over the mean of the peaks around it (the load changes between blocks)."""
    xs = x_test[: args.eval_images]
    hidden, latent = model.config.hidden[0], model.config.latent_dim
    flops = eval_flops(hidden, latent)
    log_likelihood(model, xs[:10], k=500)  # warm-up

    def eval_peak() -> float:
        return matmul_gflops(50 * 500, hidden, D, torch.float32, seconds=0.3)

    peak, lls, blocks = [eval_peak()], [], []
    for b in tqdm(range(0, xs.shape[0], args.eval_block), desc="log p(x), k=5000", disable=not args.progress):
        t = time.perf_counter()
        lls.append(log_likelihood(model, xs[b : b + args.eval_block], k=5000, batch_size=50, first_index=b))
        seconds = time.perf_counter() - t
        peak.append(eval_peak())
        rate = lls[-1].numel() * 5000 / seconds
        blocks.append({"images": lls[-1].numel(), "seconds": seconds, "images_samples_per_s": rate})
        blocks[-1]["fraction_of_fp32_peak"] = rate * flops / 1e9 / ((peak[-2] + peak[-1]) / 2)
    ll = torch.cat(lls)
    seconds = sum(b["seconds"] for b in blocks)
    rate = xs.shape[0] * 5000 / seconds
    fractions = [b["fraction_of_fp32_peak"] for b in blocks]
    out = {
        "images": xs.shape[0],
        "seconds": seconds,
        "images_samples_per_s": rate,
        "fp32_peak_gflops_median": statistics.median(peak),
        "fp32_peak_range": [min(peak), max(peak)],
        "fraction_of_fp32_peak_median_block": statistics.median(fractions),
        "fraction_of_fp32_peak_range": [min(fractions), max(fractions)],
        "fastest_block_images_samples_per_s": max(b["images_samples_per_s"] for b in blocks),
        "test_log_px": ll.mean().item(),
        "test_log_px_se": ll.std().item() / math.sqrt(ll.numel()),
        "blocks": blocks,
        "load_average": os.getloadavg()[0],
    }
    log(
        f"  k=5000 over {xs.shape[0]} test images in {seconds:.0f} s: {rate:.0f} images*samples/s overall, "
        f"fastest block {out['fastest_block_images_samples_per_s']:.0f}; fraction of the fp32 peak around each "
        f"block: median {out['fraction_of_fp32_peak_median_block']:.1%} (range {min(fractions):.1%}-"
        f"{max(fractions):.1%}; peak {min(peak):.1f}-{max(peak):.1f} GFLOP/s); "
        f"log p(x) {out['test_log_px']:.2f} ± {out['test_log_px_se']:.2f} nats"
    )
    return out


def child_rss(args, *child_args) -> float:
    """Peak RSS (MiB) of this script run as a child doing one measured thing."""
    cmd = [sys.executable, __file__, "--data-dir", args.data_dir, "--threads", str(args.threads), *child_args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def run_child(args) -> None:
    ds = aevb.load_dataset("mnist", args.data_dir)
    mc = aevb.ModelConfig(data_shape=(D,), latent_dim=20, hidden=(400,), activation="relu")
    if args.child == "eval":
        model = aevb.VAE(mc)
        x = binarize_once(ds.test.reshape(-1, D), 2)[:100]
        log_likelihood(model, x, k=args.child_k, batch_size=50)
    elif args.child == "baseline":
        model = aevb.VAE(mc)
    else:  # one epoch of aevb.train on MNIST, as `aevb train` runs it (no run directory)
        aevb.train(mc, aevb.TrainConfig(dataset="mnist", epochs=1, batch_size=128), data_dir=args.data_dir)
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mib": kib / 1024}))


# ---------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data", help="folder holding mnist/ (default: ../shared/data)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads of every part but 2-3's; 0 = one per core (default: 1)"
    )
    p.add_argument(
        "--thread-counts",
        type=int,
        nargs="+",
        default=[1, 0],
        help="thread counts of the throughput part (2-3), both loops at each; 0 = one per core, torch's default "
        "without OMP_NUM_THREADS (default: 1 0)",
    )
    p.add_argument("--images", type=int, default=12800, help="training images per timed epoch (default: 12800)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per variant, median kept (default: 3)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd aevb (compiles ~30 s a net)")
    p.add_argument("--quality-epochs", type=int, default=3, help="epochs of the fp32/bf16 comparison (default: 3)")
    p.add_argument("--quality-k", type=int, default=1000, help="importance samples there (default: 1000)")
    p.add_argument("--quality-images", type=int, default=1000, help="test images there (default: 1000)")
    p.add_argument("--target", type=float, default=-100.0, help="test ELBO to reach, nats (default: -100)")
    p.add_argument("--max-epochs", type=int, default=40, help="time-to-quality cap per trainer (default: 40)")
    p.add_argument("--eval-images", type=int, default=10000, help="test images for k=5000 (default: 10000, all)")
    p.add_argument("--eval-block", type=int, default=500, help="images between peak measurements (default: 500)")
    p.add_argument(
        "--eval-model", help="aevb run directory of the model to evaluate (default: the time-to-quality part's)"
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--skip", nargs="*", default=[], help="parts to skip: throughput quality ttq eval memory")
    p.add_argument("--child", choices=("eval", "train", "baseline"), help=argparse.SUPPRESS)
    p.add_argument("--child-k", type=int, default=500, help=argparse.SUPPRESS)
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    threads = speed.set_threads(args.threads or cores)
    if args.child:
        return run_child(args)

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.perf_counter()
    ds = aevb.load_dataset("mnist", args.data_dir)
    x_train = ds.train.reshape(-1, D)
    x_test = binarize_once(ds.test.reshape(-1, D), 2)  # the fixed test binarisation aevb evaluates on
    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__,
            "cores": cores,
            "threads": threads,
            "load_average_at_start": list(os.getloadavg()),
        },
        "command": " ".join(sys.argv),
    }
    log(f"torch {torch.__version__}, {threads} thread(s), {results['machine']['cpu_capability']}")

    log("1. matmul peak (GFLOP/s) at the model's shapes")
    peak32, peak16 = {}, {}
    for name, (hidden, _, _, batch) in NETS.items():
        pk = peaks(hidden, batch)
        peak32[name], peak16[name] = pk["fp32"], pk["bf16"]
        log(f"  {name:32s} fp32 {pk['fp32']:6.1f}  bf16 {pk['bf16']:6.1f}")
    eval_peak = {
        "fp32": matmul_gflops(25000, 400, D, torch.float32),
        "bf16": matmul_gflops(25000, 400, D, torch.bfloat16),
    }
    log(f"  eval decoder (25000x400 @ 400x784)  fp32 {eval_peak['fp32']:6.1f}  bf16 {eval_peak['bf16']:6.1f}")
    results["peak_gflops"] = {"fp32": peak32, "bf16": peak16, "eval": eval_peak}

    if "throughput" not in args.skip:
        results["throughput"] = []
        for count in args.thread_counts:
            speed.set_threads(count or cores)
            log(
                f"2-3. training throughput, {torch.get_num_threads()} thread(s) "
                f"({args.images} images per timed epoch, median of {args.repeats}; load {os.getloadavg()[0]:.1f})"
            )
            results["throughput"] += part_throughput(x_train, args, log)
        speed.set_threads(threads)
    if "quality" not in args.skip:
        log(f"3. bf16 quality: {args.quality_epochs} epochs each, same seed")
        results["bf16_quality"] = part_bf16_quality(ds, x_test, args, log)
    model = None
    if "ttq" not in args.skip:
        log(f"4. time to test ELBO > {args.target} (dynamically binarised MNIST, 784-400-20 relu)")
        state, trainers = part_time_to_quality(ds, x_test, args, log)
        results["time_to_quality"] = state
        model = next(tr.model for v, tr in trainers.items() if v.startswith("aevb defaults (")).eval()
    if "eval" not in args.skip:
        log(f"5. evaluation, importance-sampled log p(x), k=5000 (load {os.getloadavg()[0]:.1f})")
        if args.eval_model:
            model = aevb.load(args.eval_model).eval()
        elif model is None:
            raise SystemExit("speed.py: the evaluation part needs the time-to-quality part or --eval-model")
        results["eval"] = part_eval(model, x_test, args, log)
        results["eval"]["model"] = args.eval_model or "the time-to-quality part's aevb defaults (fp32) model"
    if "memory" not in args.skip:
        log("5-6. peak resident memory (child processes, MiB)")
        mem = {
            "import + model": child_rss(args, "--child", "baseline"),
            "log p(x) k=500, 100 images": child_rss(args, "--child", "eval", "--child-k", "500"),
            "log p(x) k=5000, 100 images": child_rss(args, "--child", "eval", "--child-k", "5000"),
            "aevb.train, 1 epoch of MNIST": child_rss(args, "--child", "train"),
        }
        for k, v in mem.items():
            log(f"  {k:32s} {v:7.0f} MiB")
        results["peak_rss_mib"] = mem
    results["wall_seconds"] = time.perf_counter() - started
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    log(f"done in {results['wall_seconds']:.0f} s; load average {results['machine']['load_average_at_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
