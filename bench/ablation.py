"""Accuracy ablation: the original recipe, the strong recipe, and the strong recipe minus one
ingredient at a time, each a full ``train.py`` run; prints a Markdown table for the README.

    python3 bench/ablation.py --data-dir ../shared/data/emnist-bymerge-resplit \
        --dataset emnist-bymerge-resplit --epochs 20

Runs go to ``runs/ablation-<name>/`` (log: ``runs/ablation-<name>.log``); a run whose
``summary.json`` already exists is not repeated (delete the folder to redo it). Every row shows the
exact command that reproduces it. ``--jobs 2 --threads 1`` runs two at a time, one core each.
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> extra train.py arguments. "strong minus X" turns one ingredient back to the original.
VARIANTS = {
    "original": ["--recipe", "original"],
    "strong": ["--recipe", "strong"],
    "strong - augmentation": ["--recipe", "strong", "--no-augment"],
    "strong - momentum/Nesterov": ["--recipe", "strong", "--momentum", "0", "--no-nesterov"],
    "strong - one-cycle (constant lr)": ["--recipe", "strong", "--lr-schedule", "constant"],
    "strong - label smoothing": ["--recipe", "strong", "--label-smoothing", "0"],
    "strong - dropout": ["--recipe", "strong", "--dropout", "0"],
    "strong - weight decay": ["--recipe", "strong", "--weight-decay", "0"],
    "strong - He init (Glorot)": ["--recipe", "strong", "--init", "glorot"],
}


def slug(name):
    return "ablation-" + "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data/emnist-bymerge-resplit", help="data folder")
    p.add_argument("--dataset", default="emnist-bymerge-resplit", help="dataset name")
    p.add_argument("--epochs", type=int, default=20, help="epochs per run")
    p.add_argument("--runs-dir", default="runs", help="where the run folders go")
    p.add_argument("--only", nargs="*", choices=list(VARIANTS), default=None, help="run only these variants")
    p.add_argument("--threads", type=int, default=None, help="--threads for each train.py run")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time (e.g. 2 runs of --threads 1 on a 2-core machine)")
    args = p.parse_args(argv)

    commands = {}
    for name in args.only or VARIANTS:
        cmd = ["python3", "train.py", *VARIANTS[name], "--epochs", str(args.epochs), "--seed", "0",
               "--data-dir", args.data_dir, "--dataset", args.dataset, "--runs-dir", args.runs_dir,
               "--name", slug(name), "--no-download", "--no-progress"]
        commands[name] = cmd + (["--threads", str(args.threads)] if args.threads else [])
    pending = [n for n in commands if not (ROOT / args.runs_dir / slug(n) / "summary.json").exists()]
    running = []
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            print(f"== {name}: {shlex.join(commands[name])}", flush=True)
            log = open(ROOT / args.runs_dir / f"{slug(name)}.log", "w")
            running.append((name, subprocess.Popen([sys.executable, *commands[name][1:]], cwd=ROOT,
                                                   stdout=log, stderr=subprocess.STDOUT)))
        name, proc = running.pop(0)
        if proc.wait() != 0:
            sys.exit(f"{name} failed (exit {proc.returncode}); see {args.runs_dir}/{slug(name)}.log")

    rows = []
    for name, cmd in commands.items():
        s = json.loads((ROOT / args.runs_dir / slug(name) / "summary.json").read_text())
        rows.append((name, s, shlex.join(cmd)))

    print("\n| recipe | best val acc | final val acc | test acc | wall time | command |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, s, cmd in rows:
        print(f"| {name} | {s['best_val_accuracy']:.4f} | {s['val_accuracy']:.4f} | "
              f"{s['test_accuracy']:.4f} | {s['seconds'] / 60:.1f} min | `{cmd}` |")


if __name__ == "__main__":
    main()
