"""Accuracy ablation over seeds: every variant is a full ``train.py`` run per seed, trained on the
resplit's train split and scored, with its final weights, on its test split and on
``emnist-balanced-unseen`` (genuine Balanced images that no run trains on), there also with
test-time augmentation (``tinynet.predict.tta``); prints mean +- sample standard deviation per variant as
a Markdown table for the README.

    python3 bench/ablation.py                          # every variant, seeds 0 1 2
    python3 bench/ablation.py --only original strong --seeds 0 1 2 3 4
    python3 bench/ablation.py --engine ray --address auto   # on a running Ray cluster

Runs go to ``runs/ablation/<variant>-s<seed>/`` (log beside it, ``.log``); a run whose
``summary.json`` exists is not repeated (delete the folder to redo it). Every row shows the
command that reproduces one seed of it.

Engines: ``processes`` runs ``--jobs`` runs at a time on this machine (e.g. ``--jobs 2 --threads 1``
on 2 cores). ``ray`` (``pip install -e ".[sweep]"``; the default ``auto`` uses it when it is installed) sends
each run to a Ray cluster as a task asking for ``--threads`` CPUs: a local one started on the spot
by default, or an existing one with ``--address`` (every node then needs this checkout and the data
at the same paths). A sweep is the one workload here that outgrows one machine.

Rows marked "(evaluated)" train nothing: they score another variant's final checkpoints with the
class-prior correction switched (``--class-balance prior`` only changes evaluation, so the same
weights give both rows).
"""

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinynet.files.checkpoint import load_checkpoint  # noqa: E402
from tinynet.datasets.idx import load_split, train_val_split  # noqa: E402
from tinynet.nn.layers import LogitAdjustment  # noqa: E402
from tinynet.predict.metrics import evaluate  # noqa: E402
from tinynet.training.config import TrainConfig  # noqa: E402
from tinynet.training.data import class_prior  # noqa: E402
from tinynet.predict.tta import TTA  # noqa: E402

UNSEEN = "emnist-balanced-unseen"  # the dataset name of --unseen-dir's files

# name -> extra train.py arguments (trained), or ("switch prior", other variant) (evaluated).
VARIANTS = {
    "original": ["--recipe", "original"],
    "strong": ["--recipe", "strong"],
    "strong + prior correction": ("switch prior", "strong"),
    "strong + class-balanced sampling": ["--recipe", "strong", "--class-balance", "sample"],
    "strong + prior correction, 40 epochs": ["--recipe", "strong", "--class-balance", "prior",
                                             "--epochs", "40"],
    "strong, 40 epochs (no prior correction)": ("switch prior", "strong + prior correction, 40 epochs"),
    "strong + class-balanced sampling, 40 epochs, no dropout or label smoothing": [
        "--recipe", "unseen", "--dropout", "0", "--label-smoothing", "0"],
    "unseen": ["--recipe", "unseen"],
    "unseen, 60 epochs": ["--recipe", "unseen", "--epochs", "60"],
    "unseen, no validation hold-out": ["--recipe", "unseen", "--val-fraction", "0"],
    "unseen, batch 64": ["--recipe", "unseen", "--batch-size", "64"],
}


def slug(name):
    return re.sub("-+", "-", "".join(c if c.isalnum() else "-" for c in name.lower())).strip("-")


def train_command(args, name, seed):
    cmd = ["python3", "train.py", *VARIANTS[name], "--seed", str(seed),
           "--data-dir", args.data_dir, "--dataset", args.dataset,
           "--val-data", args.unseen_dir, "--val-dataset", UNSEEN,
           "--runs-dir", str(Path(args.runs_dir) / "ablation"), "--name", f"{slug(name)}-s{seed}",
           "--no-download", "--no-progress"]
    for flag in ("epochs", "limit", "threads"):
        if getattr(args, flag):
            cmd += [f"--{flag}", str(getattr(args, flag))]
    return cmd


def run_one(cmd, log_path):
    """Run one train.py command in the checkout, its output to ``log_path``; returns the exit code."""
    with open(log_path, "w") as log:
        return subprocess.call([sys.executable, *cmd[1:]], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def run_with_processes(todo, jobs):
    """Run ``todo``'s (command, log) pairs, ``jobs`` at a time; returns the logs of failed runs."""
    def start(cmd, log):
        print(f"== {shlex.join(cmd)}", flush=True)
        return run_one(cmd, log)

    with ThreadPoolExecutor(jobs) as pool:
        codes = list(pool.map(start, *zip(*todo)))
    return [log for (_, log), code in zip(todo, codes) if code != 0]


def run_with_ray(todo, threads, address):
    """Run ``todo`` as Ray tasks of ``threads`` CPUs each; returns the logs of failed runs."""
    import ray

    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=threads or 1)(run_one)
    refs = {}
    for cmd, log in todo:
        print(f"== {shlex.join(cmd)}", flush=True)
        refs[task.remote(cmd, str(log))] = log
    failed = [refs[ref] for ref in refs if ray.get(ref) != 0]
    ray.shutdown()
    return failed


def final_model(run_dir, switch_prior=False):
    """``run_dir``'s last.npz; with ``switch_prior``, its class-prior correction removed, or added
    (from the run's own training split) when it has none."""
    model, meta, _, _ = load_checkpoint(run_dir / "last.npz")
    if switch_prior:
        config = TrainConfig.from_dict(meta["recipe"])
        layers = [layer for layer in model.layers if not isinstance(layer, LogitAdjustment)]
        if len(layers) == len(model.layers):
            train = load_split(ROOT / config.data_dir, config.dataset, "train")  # train.py ran in ROOT
            train_idx, _ = train_val_split(train.labels, config.val_fraction, config.seed)
            prior = class_prior(train.labels[train_idx], len(train.classes))
            layers.append(LogitAdjustment(prior, name="prior"))
        model.layers = layers
    return model


def scores(model, test, unseen):
    """Accuracy on the resplit test split, on unseen, and on unseen with test-time augmentation."""
    return (evaluate(model, test.images, test.labels)[1], evaluate(model, unseen.images, unseen.labels)[1],
            evaluate(TTA(model), unseen.images, unseen.labels)[1])


def mean_sd(values):
    """``mean +- sample standard deviation`` (the mean alone for one value)."""
    sd = f" +- {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.4f}{sd}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder of the training data set's IDX files")
    p.add_argument("--dataset", default="emnist-bymerge-resplit", help="training dataset name")
    p.add_argument("--unseen-dir", required=True, help=f"folder of {UNSEEN} (scored, never trained on)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of every variant")
    p.add_argument("--runs-dir", default="runs", help="run folders go to RUNS_DIR/ablation/")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None, help="only these variants")
    p.add_argument("--epochs", type=int, default=None, help="override every variant's epochs (quick looks)")
    p.add_argument("--limit", type=int, default=None, help="train on only N images (quick looks)")
    p.add_argument("--threads", type=int, default=None, help="--threads of each run (CPUs per Ray task)")
    p.add_argument("--engine", choices=("auto", "ray", "processes"), default="auto",
                   help="auto: Ray when it is installed, else processes")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time with --engine processes")
    args = p.parse_args(argv)

    names = args.only or list(VARIANTS)
    trained = sorted({VARIANTS[n][1] if isinstance(VARIANTS[n], tuple) else n for n in names},
                     key=list(VARIANTS).index)
    out = ROOT / args.runs_dir / "ablation"
    out.mkdir(parents=True, exist_ok=True)
    todo = [(train_command(args, n, s), out / f"{slug(n)}-s{s}.log") for n in trained for s in args.seeds
            if not (out / f"{slug(n)}-s{s}" / "summary.json").exists()]
    engine = args.engine
    if engine == "auto":
        try:
            import ray  # noqa: F401
            engine = "ray"
        except ImportError:
            engine = "processes"
    if todo:
        print(f"{len(todo)} runs on engine {engine}", flush=True)
        failed = (run_with_ray(todo, args.threads, args.address) if engine == "ray"
                  else run_with_processes(todo, args.jobs))
        if failed:
            sys.exit(f"{len(failed)} runs failed; see {', '.join(map(str, failed))}")

    test_set = load_split(ROOT / args.data_dir, args.dataset, "test")
    unseen_set = load_split(ROOT / args.unseen_dir, UNSEEN, "test")
    print(f"\n| recipe | resplit test acc | emnist-balanced-unseen acc | unseen acc, `--tta` | seeds | "
          f"minutes per run | command (one seed) |\n| --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        spec = VARIANTS[name]
        switched = isinstance(spec, tuple)
        source = spec[1] if switched else name
        runs = [out / f"{slug(source)}-s{s}" for s in args.seeds]
        test, unseen, tta = zip(*(scores(final_model(r, switched), test_set, unseen_set) for r in runs))
        if switched:
            minutes, cmd = "-", f"(evaluated) {source}'s checkpoints, class-prior correction switched"
        else:
            seconds = [json.loads((r / "summary.json").read_text())["seconds"] for r in runs]
            minutes = f"{statistics.median(seconds) / 60:.1f}"
            cmd = f"`{shlex.join(train_command(args, name, args.seeds[0]))}`"
        print(f"| {name} | {mean_sd(test)} | {mean_sd(unseen)} | {mean_sd(tta)} | {len(runs)} | {minutes} | {cmd} |")


if __name__ == "__main__":
    main()
