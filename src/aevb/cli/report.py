"""`aevb report RUN` (a self-contained HTML page) and `aevb serve RUN` (the latent-space explorer)."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from tqdm import tqdm

from ..errors import AevbError
from ..report import DEFAULT_K, write_report
from .common import load_run, out_path
from .parser import add_module_flag, positive

LOOPBACK = "127.0.0.1"


def register(sub) -> None:
    r = sub.add_parser("report", help="write a self-contained HTML report of a run")
    r.add_argument("run", metavar="RUN", help="run directory written by `aevb train`")
    add_module_flag(r)
    r.add_argument("--out", default=None, help="HTML path (default: RUN/report.html)")
    r.add_argument(
        "--k",
        type=positive,
        default=None,
        help=f"importance samples per test example for log p(x) (default: RUN/eval_test.json when it is newer "
        f"than the model, else {DEFAULT_K}, which is quick; `aevb eval` uses 5000)",
    )
    r.add_argument(
        "--seed", type=int, default=0, help="seed of the evaluation noise and of the prior samples (default: 0)"
    )
    r.add_argument(
        "--data-dir", default=None, help="folder of the built-in datasets (default: $AEVB_DATA_DIR or ~/.cache/aevb)"
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("serve", help="explore a run's latent space in the browser (local web app)")
    s.add_argument("run", metavar="RUN", help="run directory written by `aevb train`")
    add_module_flag(s)
    s.add_argument(
        "--host",
        default=LOOPBACK,
        help="address to listen on; anything but loopback is exposed to others (default: 127.0.0.1)",
    )
    s.add_argument("--port", type=int, default=8000, help="port to listen on, 0 = any free port (default: 8000)")
    s.add_argument(
        "--k",
        type=positive,
        default=100,
        help="importance samples per test item for the likelihood table (default: 100)",
    )
    s.add_argument(
        "--data-dir", default=None, help="folder of the built-in datasets (default: $AEVB_DATA_DIR or ~/.cache/aevb)"
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_report(args: argparse.Namespace) -> None:
    """Write RUN/report.html (or --out) atomically."""
    model, _ = load_run(args)  # first: a missing run is named as such, not as a missing folder for the report
    out = out_path(args, "report.html", suffix=".html")
    with tqdm(unit="ex", desc="test log p(x)", leave=False, disable=args.no_progress or None) as bar:
        path = write_report(
            args.run, out, k=args.k, seed=args.seed, data_dir=args.data_dir, on_batch=bar.update, model=model
        )
    print(f"report written to {path}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> None:
    """Serve the explorer until Ctrl-C."""
    from ..serve import Explorer, create_app, listen, make_server

    if not 0 <= args.port <= 65535:
        raise AevbError(f"--port must be between 0 and 65535, got {args.port}")
    if not _is_loopback(args.host):
        print(
            f"aevb: warning: listening on {args.host}, not loopback: anyone who can reach this machine can use "
            "the explorer (there is no authentication)",
            file=sys.stderr,
        )
    model, _ = load_run(args)
    sock = listen(args.host, args.port)  # before the slow part, so a taken port fails at once
    try:
        with tqdm(unit="ex", desc="ranking test items", leave=False, disable=args.no_progress or None) as bar:
            explorer = Explorer(args.run, k=args.k, data_dir=args.data_dir, on_batch=bar.update, model=model)
    except BaseException:
        sock.close()
        raise
    server = make_server(create_app(explorer), sock)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"aevb explorer of {args.run} on http://{host}:{server.port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
