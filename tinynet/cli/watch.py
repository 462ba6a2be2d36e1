"""``tinynet watch [RUNS_DIR]``: serve the training page over every run in RUNS_DIR (live or
finished) until Ctrl-C; see ``tinynet.web.watch`` and docs/watch.md."""

import argparse
import sys
from pathlib import Path

from ..web.watch import DEFAULT_HOST, DEFAULT_PORT, serve
from .serve import port_number


def build_parser(prog=None):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve a live page of the training runs in RUNS_DIR: each run's curves, "
                    "learning rate, speed, conv1's filters and predictions as it trains (runs "
                    "trained with --watch), and several runs' curves overlaid with their configs.")
    p.add_argument("runs_dir", metavar="RUNS_DIR", nargs="?", default="runs",
                   help="the folder holding run folders, or one run's folder (then the page opens "
                        "it, beside the other runs of its folder) (default: %(default)s)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                   help="port to listen on; 0 for any free one (default: %(default)s)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on (default: %(default)s, this machine only)")
    return p


def main(argv=None, prog=None):
    """``tinynet watch``; returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_dir():
        print(f"error: {runs_dir}: no such folder (train a run first: python3 train.py ...)", file=sys.stderr)
        return 1
    focus = None
    if (runs_dir / "config.json").is_file():  # one run's folder
        runs_dir, focus = runs_dir.resolve().parent, runs_dir.resolve().name
    try:
        return serve(runs_dir, args.host, args.port, focus)
    except OSError as e:
        print(f"error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
