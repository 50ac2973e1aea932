"""`aevb detect fit` and `aevb detect score`: anomaly detection with a VAE from the command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from ..anomaly.calibration import conformal_p_values
from ..anomaly.columns import likelihoods, rescaled_kinds
from ..anomaly.combined import COMPLEXITY_WEIGHT as COMBINED_COMPLEXITY_WEIGHT
from ..anomaly.concentration import REFITS_DEFAULT, TRIM_DEFAULT
from ..anomaly.scores import COMPLEXITY_WEIGHT_DEFAULT, NEEDS, SCORES, UNITS
from ..errors import AevbError, DataError
from ..files import save_table
from ..likelihoods import column_kinds
from .common import in_existing_folder, not_an_input
from .parser import HelpFormatter, Parser, at_least, number_in, positive

_DATA_HELP = "a .csv/.npy/.npz table (rows x features, or .npy/.npz images) or a built-in dataset name (e.g. mnist)"
FIT_SPLIT, SCORE_SPLIT = "train", "test"  # the built-in split each command reads by default


def _contamination(text: str):
    if text == "auto":
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto' or a number") from None
    if not 0 < v <= 0.5:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 0.5]")
    return v


_weight = number_in("(0, 1)", lambda v: 0 < v < 1)


def _image_shape(text: str):
    """'auto', 'none' (None: a table) or HxW (a tuple of two integers >= 1)."""
    if text in ("auto", "none"):
        return None if text == "none" else text
    h, x, w = text.partition("x")
    if not (x and h.isdigit() and w.isdigit() and int(h) >= 1 and int(w) >= 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto', 'none' or HxW (e.g. 28x28)")
    return int(h), int(w)


_trim = number_in("[0, 0.5)", lambda v: 0 <= v < 0.5)
_nonnegative = number_in("[0, inf)", lambda v: 0 <= v < float("inf"))


def _refits(text: str):
    """'auto' or an integer >= 0."""
    return text if text == "auto" else at_least(0)(text)


def register(subparsers) -> None:
    fmt = HelpFormatter
    d = subparsers.add_parser("detect", help="anomaly detection: fit a detector, score rows")
    sub = d.add_subparsers(dest="detect_command", required=True, parser_class=Parser)

    f = sub.add_parser("fit", help="fit an AnomalyDetector on DATA (labels unused); writes DIR", formatter_class=fmt)
    f.add_argument("data", metavar="DATA", help=_DATA_HELP)
    f.add_argument(
        "--out", required=True, metavar="DIR", help="folder to create (detector.json + detector.safetensors)"
    )
    f.add_argument("--split", default=FIT_SPLIT, choices=("train", "valid", "test"), help="split of a built-in dataset")
    f.add_argument("--exclude-class", type=int, default=None, metavar="C", help="leave out rows with label C")
    f.add_argument("--data-dir", default=None, help="folder of the built-in datasets")
    f.add_argument(
        "--score",
        default="auto",
        choices=("auto", *SCORES),
        help="anomaly score, higher = more normal, in nats of x but for the latent ones and combined: complexity "
        "= log p(x) + W x PNG code length x ln 2 (Serra et al. 2020, W = --complexity-weight), likelihood-ratio = "
        "log p(x) - log p_background(x) (Ren et al. 2019), latent-knn = minus the mean distance of E[z|x] to the 5 "
        "nearest training rows', latent-lof = minus the log local outlier factor of E[z|x] among them (5 "
        "neighbours), latent-gmm = the log density of E[z|x] under a 20-component Gaussian mixture fitted to them "
        "(nats of z), combined = log-likelihood, complexity with W = 1, latent-knn, latent-lof and latent-gmm, each "
        "standardised by its training median and IQR, added; auto = combined when the rows are images (as "
        "--image-shape finds or names them), else log-likelihood",
    )
    f.add_argument(
        "--complexity-weight",
        type=_nonnegative,
        default=COMPLEXITY_WEIGHT_DEFAULT,
        metavar="W",
        help="with --score complexity: weight W >= 0 of the code length; 1 is Serra et al.'s correction",
    )
    f.add_argument(
        "--image-shape",
        type=_image_shape,
        default="auto",
        metavar="HxW",
        help="rows are HxW grey images in [0, 1] (for --score complexity or combined and the auto --score, "
        "--likelihood and --refits); 'auto' = square when a row has s*s >= 64 values all in [0, 1], else 'none' "
        "(a table: code length 0)",
    )
    f.add_argument(
        "--background-noise",
        type=_weight,
        default=0.2,
        help="with --score likelihood-ratio: fraction mu in (0, 1) of the training values replaced by uniform "
        "noise for the background VAE",
    )
    f.add_argument("--contamination", type=_contamination, default="auto", help="'auto' or the outlier fraction")
    f.add_argument("--n-samples", type=positive, default=100, help="importance samples k / posterior draws L")
    f.add_argument(
        "--likelihood",
        default="auto",
        choices=("auto", *likelihoods()),
        help="p(x|z); auto = gaussian-learned when the rows are images (as --image-shape finds or names them), "
        "else gaussian-robust (a learned Gaussian per feature mixed with a Cauchy(0, 1) background)",
    )
    f.add_argument(
        "--outlier-weight",
        type=_weight,
        default=0.2,
        help="weight w in (0, 1) of the background of --likelihood gaussian-robust",
    )
    f.add_argument(
        "--columns",
        default=None,
        metavar="SPEC",
        help="with --likelihood mixed: KIND:N,... groups of N consecutive columns, KIND one of "
        f"{', '.join(column_kinds())}, categorical written categoricalC (class indices 0..C-1), "
        "e.g. gaussian-learned:3,poisson:2,categorical4:1; the columns of the location-scale kinds "
        f"({', '.join(rescaled_kinds())}) are centred, scaled and clipped",
    )
    f.add_argument("--latent-dim", type=positive, default=None, help="latent size; None = the data-size rule")
    f.add_argument(
        "--hidden",
        type=positive,
        nargs="+",
        default=None,
        metavar="H",
        help="hidden layer sizes; None = the data-size rule",
    )
    f.add_argument("--batch-size", type=positive, default=None, help="minibatch size; None = the data-size rule")
    f.add_argument(
        "--epochs",
        type=at_least(1),
        default=None,
        help="passes over the data; None = the data-size rule (about 2000 steps on a table, 6000 on images)",
    )
    f.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    f.add_argument(
        "--trim",
        type=_trim,
        default=TRIM_DEFAULT,
        help="fraction of the training rows, those the previous model scores lowest, left out of each refit",
    )
    f.add_argument(
        "--refits",
        type=_refits,
        default="auto",
        help="refits afresh without the --trim lowest-scoring training rows (0: fit once); auto = 0 when the rows "
        f"are images (as --image-shape finds or names them), else {REFITS_DEFAULT}",
    )
    f.add_argument(
        "--random-state",
        "--seed",
        dest="random_state",
        type=int,
        default=0,
        help="seed of the initialisation, training and scoring noise (--seed: the same flag, its old name)",
    )
    f.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("score", help="score every row of DATA with a fitted detector", formatter_class=fmt)
    s.add_argument("detector", metavar="DIR", help="folder written by `aevb detect fit`")
    s.add_argument("data", metavar="DATA", help=_DATA_HELP)
    s.add_argument(
        "--out",
        required=True,
        help=".csv/.npy/.npz with one row per input row: score, decision, label, p_value (the conformal p-value "
        "against the training scores; absent for a detector saved before aevb kept them)",
    )
    s.add_argument(
        "--split", default=SCORE_SPLIT, choices=("train", "valid", "test"), help="split of a built-in dataset"
    )
    s.add_argument(
        "--anomaly-class", type=int, default=None, metavar="C", help="also print ROC-AUC with label C as anomaly"
    )
    s.add_argument("--data-dir", default=None, help="folder of the built-in datasets")


def _read(data: str, split: str, data_dir: str | None, default_split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows (n, d) float64 and labels or None, from a user file (all rows) or a built-in split; a `split` other than
    the command's `default_split` with a file is refused (a file has no splits: all its rows are read)."""
    from ..data import load_dataset
    from ..data.builtin import BUILTIN
    from ..data.load import read_user_file

    if data in BUILTIN:
        ds = load_dataset(data, data_dir)
        x, y = getattr(ds, split), getattr(ds, f"{split}_labels")
    else:
        if Path(data).suffix.lower() not in (".csv", ".npy", ".npz"):
            raise DataError(f"{data}: not a .csv/.npy/.npz file nor a built-in dataset ({', '.join(BUILTIN)})")
        if split != default_split:
            raise DataError(f"--split {split} is for a built-in dataset; {data} is a file, whose rows are all read")
        x, y = read_user_file(data)
    x = x.reshape(x.shape[0], -1).double().numpy()
    return x, (None if y is None else y.numpy())


def cmd_fit(args: argparse.Namespace) -> None:
    """Fit on DATA and save the detector to --out."""
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AevbError(f"{out} exists and is not an empty directory; choose another --out")
    x, y = _read(args.data, args.split, args.data_dir, default_split=FIT_SPLIT)
    if args.exclude_class is not None:
        if y is None:
            raise DataError(f"--exclude-class needs labels, and {args.data} has none")
        x = x[y != args.exclude_class]
        if len(x) == 0:
            raise DataError(f"no rows left after --exclude-class {args.exclude_class}")
    from ..anomaly import AnomalyDetector  # scikit-learn: imported only when used

    det = AnomalyDetector(
        score=args.score, complexity_weight=args.complexity_weight,
        contamination=args.contamination, n_samples=args.n_samples,
        likelihood=args.likelihood, outlier_weight=args.outlier_weight,
        columns=args.columns,
        latent_dim=args.latent_dim, hidden=tuple(args.hidden) if args.hidden else None, batch_size=args.batch_size,
        epochs=args.epochs, lr=args.lr, trim=args.trim,
        refits=args.refits,
        image_shape=args.image_shape, background_noise=args.background_noise, random_state=args.random_state,
        verbose=not args.no_progress,
    )  # fmt: skip
    det.fit(x)
    det.save(out)
    flagged = int((det.train_scores_ < det.offset_).sum())
    print(
        f"fitted on {len(x)} rows x {x.shape[1]} features: hidden {det.size_['hidden']}, latent "
        f"{det.size_['latent_dim']}, {det.size_['epochs']} epochs of batch {det.size_['batch_size']}"
    )
    if not det.support_.all():
        print(f"{det.refits_} refits, each without the {(~det.support_).sum()} training rows scored lowest")
    unit = UNITS.get(det.score_, "nats")
    print(f"score {det.score_} ({unit}, higher = more normal); offset {det.offset_:.4g} flags {flagged} training rows")
    if "code_bits" in NEEDS.get(det.score_, ()):
        shape = "none (a table: code length 0)" if det.image_shape_ is None else "x".join(map(str, det.image_shape_))
        weight = det.complexity_weight if det.score_ == "complexity" else COMBINED_COMPLEXITY_WEIGHT
        print(f"image shape {shape}; code length weight {weight:g}")
    print(f"wrote {out}{os.sep}")


def cmd_score(args: argparse.Namespace) -> None:
    """Score DATA with a saved detector; write score, decision, label (+1 inlier / -1 outlier) per row."""
    from ..anomaly import AnomalyDetector, InputError

    det = AnomalyDetector.load(args.detector)
    out = in_existing_folder(not_an_input(Path(args.out), [args.data]))
    x, y = _read(args.data, args.split, args.data_dir, default_split=SCORE_SPLIT)
    if args.anomaly_class is not None:  # before anything is written
        if y is None:
            raise DataError(f"--anomaly-class needs labels, and {args.data} has none")
        truth = y == args.anomaly_class
        if truth.all() or not truth.any():
            raise DataError(f"--anomaly-class {args.anomaly_class}: need rows of both kinds to compute ROC-AUC")
    try:
        score = det.score_samples(x)
    except InputError as e:  # about the rows of DATA (the detector calls them X): name the file
        raise DataError(f"{args.data}: {e}") from None
    decision = score - det.offset_
    label = np.where(decision < 0, -1, 1)
    columns = {"score": score, "decision": decision, "label": label}
    if det.calibration_scores_ is not None:
        columns["p_value"] = conformal_p_values(det.calibration_scores_, score)
    save_table(out, columns)
    print(f"{len(x)} rows, {int((label < 0).sum())} flagged as outliers (score {det.score_}); wrote {out}")
    if args.anomaly_class is not None:
        from sklearn.metrics import roc_auc_score

        print(f"ROC-AUC with class {args.anomaly_class} as the anomaly: {roc_auc_score(truth, -score):.4f}")


def cmd_detect(args: argparse.Namespace) -> None:
    {"fit": cmd_fit, "score": cmd_score}[args.detect_command](args)
