"""Accuracy ablation: the original recipe, the strong recipe, and the strong recipe minus one
ingredient at a time, each a full ``train.py`` run; prints a Markdown table for the README.

    python3 bench/ablation.py --data-dir ../shared/data/emnist-bymerge-resplit \
        --dataset emnist-bymerge-resplit --epochs 20

Runs go to ``runs/ablation-<name>/``; a run whose ``summary.json`` already exists is not repeated
(delete the folder to redo it). Every row shows the exact command that reproduces it.
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
    "strong - weight decay": ["--recipe", "strong", "--weight-decay", "0"],
    "strong - label smoothing": ["--recipe", "strong", "--label-smoothing", "0"],
    "strong - dropout": ["--recipe", "strong", "--dropout", "0"],
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
    args = p.parse_args(argv)

    rows = []
    for name in args.only or VARIANTS:
        run = Path(args.runs_dir) / slug(name)
        cmd = ["python3", "train.py", *VARIANTS[name], "--epochs", str(args.epochs), "--seed", "0",
               "--data-dir", args.data_dir, "--dataset", args.dataset, "--runs-dir", args.runs_dir,
               "--name", run.name, "--no-download", "--no-progress"]
        summary_path = ROOT / run / "summary.json"
        if not summary_path.exists():
            print(f"== {name}: {shlex.join(cmd)}", flush=True)
            subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, check=True)
        s = json.loads(summary_path.read_text())
        rows.append((name, s, shlex.join(cmd)))

    print("\n| recipe | best val acc | final val acc | test acc | wall time | command |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, s, cmd in rows:
        print(f"| {name} | {s['best_val_accuracy']:.4f} | {s['val_accuracy']:.4f} | "
              f"{s['test_accuracy']:.4f} | {s['seconds'] / 60:.1f} min | `{cmd}` |")


if __name__ == "__main__":
    main()
