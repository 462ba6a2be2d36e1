#!/usr/bin/env python3
"""Kill training with SIGKILL at random moments (and in the middle of checkpoint writes), resume it,
and check that nothing is ever lost.

    python3 bench/kill_resume.py                       # 25 kills over a 6-epoch run (a few minutes)
    python3 bench/kill_resume.py --kills 60 --epochs 10 --seed 7
    python3 bench/kill_resume.py --epochs 3 --plan write:2 --plan training:0.2 --json stats.json

What it does: writes a tiny EMNIST-format data set to a temporary folder, trains on it once without
interruption (the reference), then trains the same configuration again as ``python3 train.py``
subprocesses that it kills with SIGKILL -- after a random delay from its start or from the start of
training (mid-epoch), or right when a checkpoint's temporary file (``.tmp-*-last.npz`` /
``.tmp-*-best.npz``, see ``tinynet.files.atomic``) appears in the run folder, so that the kill lands in
the middle of the write -- and resumes each time with ``python3 train.py --resume RUN`` (or starts
afresh when no ``last.npz`` exists yet), until the run finishes; then it starts another run, and so
on, until ``--kills`` kills have been made.

After every kill it checks: every ``*.npz`` in the run folder loads with ``load_checkpoint``; the
epoch in ``last.npz`` never goes back (nothing saved is lost); at most one epoch's work is redone
(the completed epochs known from any checkpoint, ``metrics.jsonl`` or the log, minus the epoch in
``last.npz``, is at most 1). A resumed process must remove the temporary files a kill left behind.
At the end of each run: it finished, ``metrics.jsonl`` holds every epoch exactly once, no temporary file is
left, and the final weights, momentum buffers and best checkpoint are bit-for-bit those of the
uninterrupted run with the same seed (resuming restores every random generator).

Exit status: 0 when every check passed, 1 otherwise, 2 for invalid options.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tinynet.files.atomic import TEMP_PREFIX  # noqa: E402  (temporary files are TEMP_PREFIX + random + -name)
from tinynet.cli import positive_int  # noqa: E402
from tinynet.testing.datasets import write_toy_dataset  # noqa: E402

TRAIN_OPTIONS = ["--dataset", "tiny", "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9",
                 "--augment", "--dropout", "0.3", "--lr-schedule", "cosine", "--val-fraction", "0.2",
                 "--seed", "3", "--no-progress", "--no-download"]
CHECKPOINT_TMP = re.compile(rf"^{re.escape(TEMP_PREFIX)}.*-(last|best)\.npz$")
EPOCH_DONE = re.compile(r"^epoch (\d+)/(\d+): train loss", re.M)
TIMING_FIELDS = ("seconds", "images_per_second")  # differ between runs; everything else must not


def fraction(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def kill_plan(text):
    """argparse type: KIND:ARG[:DELAY], see --plan's help -> a plan tuple."""
    kind, _, rest = text.partition(":")
    try:
        values = [float(v) for v in rest.split(":")] if rest else []
    except ValueError:
        values = None
    if kind == "write" and values and len(values) <= 2 and values[0] == int(values[0]) >= 0:
        return ("write", int(values[0]), values[1] if len(values) == 2 else 0.0)
    if kind in ("time", "training") and values and len(values) == 1 and values[0] >= 0:
        return (kind, values[0])
    raise argparse.ArgumentTypeError(f"expected write:N[:DELAY], time:S or training:S, got {text}")


def build_parser():
    p = argparse.ArgumentParser(
        prog="bench/kill_resume.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Kill train.py with SIGKILL at random moments and during checkpoint writes, "
                    "resume it each time,\nand check that every checkpoint stays loadable and the "
                    "finished run equals an uninterrupted one.",
        epilog="exit status: 0 all checks passed, 1 something was lost or broken, 2 invalid options")
    p.add_argument("--kills", type=positive_int, default=25, metavar="N",
                   help="SIGKILLs to deliver; runs are killed and resumed, one after another, until "
                        "that many kills are made (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=6, metavar="E",
                   help="epochs of the training run (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the kill timings, so a soak is repeatable (default: %(default)s)")
    p.add_argument("--write-fraction", type=fraction, default=0.5, metavar="F",
                   help="share of the kills aimed at a checkpoint write instead of a random moment "
                        "(default: %(default)s)")
    p.add_argument("--n-train", type=positive_int, default=600, metavar="N",
                   help="training images in the synthetic data set; fewer means shorter epochs and "
                        "more frequent checkpoint writes (default: %(default)s)")
    p.add_argument("--n-test", type=positive_int, default=200, metavar="N",
                   help="test images in the synthetic data set (default: %(default)s)")
    p.add_argument("--plan", type=kill_plan, action="append", metavar="KIND:ARG",
                   help="a kill to make, in order, instead of --kills random ones (repeatable): "
                        "write:N[:DELAY] as the (N+1)-th checkpoint write of a process starts (DELAY "
                        "seconds later), time:S S seconds after a process starts, training:S S seconds "
                        "after it starts training")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="also write the statistics to FILE as JSON (default: none)")
    p.add_argument("--timeout", type=positive_int, default=600, metavar="S",
                   help="seconds one train.py process may run before it counts as hung "
                        "(default: %(default)s)")
    p.add_argument("--keep", action="store_true",
                   help="keep the work folder (data, runs, logs) instead of deleting it")
    return p


def train_argv(data_dir, runs_dir, name, epochs):
    return [sys.executable, "train.py", "--data-dir", str(data_dir), *TRAIN_OPTIONS,
            "--epochs", str(epochs), "--runs-dir", str(runs_dir), "--name", name]


def checkpoint_epochs(run):
    """{file name: epoch} of every checkpoint (*.npz, not a temporary file being written) in ``run``;
    raises CheckpointError for a broken one."""
    from tinynet.files.checkpoint import load_checkpoint

    return {p.name: load_checkpoint(p)[1]["training"]["epoch"] for p in sorted(run.glob("*.npz"))
            if not p.name.startswith(TEMP_PREFIX)}


def metrics_epochs(run):
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()]


def temp_files(run):
    try:
        return {n for n in os.listdir(run) if n.startswith(TEMP_PREFIX)}
    except FileNotFoundError:
        return set()


class Soak:
    """One soak: a reference run, then a run killed ``kills`` times and resumed until it finishes."""

    def __init__(self, workdir, *, kills, epochs, seed, write_fraction=0.5, n_train=600, n_test=200,
                 timeout=600, log=print, plans=None):
        self.workdir = Path(workdir)
        self.plans = None if plans is None else list(plans)
        self.kills_wanted = kills if plans is None else len(self.plans)
        self.epochs = epochs
        self.rng = random.Random(seed)
        self.write_fraction, self.timeout, self.log = write_fraction, timeout, log
        self.data = write_toy_dataset(self.workdir / "data", n_train=n_train, n_test=n_test)
        self.runs = self.workdir / "runs"
        self.run = None  # the current round's run folder
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.launches = 0
        self.stats = {"runs": 0, "kills": 0, "kills_during_checkpoint_write": 0, "kills_before_first_checkpoint": 0,
                      "kills_at_random_time": 0, "kills_during_training": 0, "kills_aimed_at_writes": 0,
                      "resumes": 0,
                      "fresh_restarts": 0, "processes": 0, "checkpoints_verified": 0,
                      "completed_epochs_redone": 0, "max_completed_epochs_redone_per_kill": 0,
                      "interrupted_epochs": 0, "temp_files_left_by_kills": 0,
                      "temp_files_removed_on_resume": 0, "failures": []}
        self.startup = 3.0
        self.epoch_seconds = 1.0

    def fail(self, message):
        self.stats["failures"].append(message)
        self.log(f"  FAILURE: {message}")

    # -- processes -------------------------------------------------------------------------------

    def launch(self, argv):
        self.launches += 1
        self.stats["processes"] += 1
        out = open(self.logs / f"process{self.launches:03d}.log", "w+")
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        return proc, out

    def reference(self):
        """The uninterrupted run (``train.py`` as a subprocess)."""
        started = time.monotonic()
        proc, out = self.launch(train_argv(self.data, self.runs, "reference", self.epochs))
        first_epoch = None
        while proc.poll() is None:
            if first_epoch is None and "training on" in Path(out.name).read_text():
                self.startup = time.monotonic() - started
                first_epoch = time.monotonic()
            if time.monotonic() - started > self.timeout:
                proc.kill()
            time.sleep(0.02)
        out.close()
        if proc.returncode != 0:
            raise SystemExit(f"kill_resume.py: the reference run failed:\n{Path(out.name).read_text()}")
        total = time.monotonic() - started
        self.epoch_seconds = max(0.1, (total - self.startup) / self.epochs)
        self.reference_run = self.runs / "reference"
        self.log(f"reference run: {total:.1f} s (start-up {self.startup:.1f} s, about "
                 f"{self.epoch_seconds:.1f} s per epoch)")

    def plan(self, last_epoch):
        """How to kill the next process: ("write", writes to let pass, extra delay), ("time", seconds
        after it starts) or ("training", seconds after it starts training)."""
        if self.plans is not None:  # given explicitly (tests)
            return self.plans.pop(0) if self.plans else None
        remaining = self.epochs - last_epoch  # last.npz writes still to come (best.npz: maybe more)
        if self.rng.random() < self.write_fraction:
            return ("write", self.rng.randrange(max(1, remaining)),
                    self.rng.choice((0.0, 0.0, self.rng.uniform(0.0, 0.01))))
        if self.rng.random() < 0.5:
            return ("time", self.rng.uniform(0.0, self.startup + remaining * self.epoch_seconds * 1.1))
        return ("training", self.rng.uniform(0.0, remaining * self.epoch_seconds))

    def run_process(self, plan):
        """Start (or resume) the soak run, kill it as planned; returns (returncode, killed, log text,
        temp files present before it started)."""
        resume = (self.run / "last.npz").exists()
        argv = ([sys.executable, "train.py", "--resume", str(self.run), "--no-progress", "--no-download"]
                if resume else train_argv(self.data, self.runs, self.run.name, self.epochs))
        stale = temp_files(self.run)
        proc, out = self.launch(argv)
        started = time.monotonic()
        seen, killed, training_since = set(), False, None
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            if (plan and plan[0] == "training" and training_since is None
                    and "training on " in Path(out.name).read_text()):
                training_since = time.monotonic()
            if elapsed > self.timeout:
                proc.kill()
                self.fail(f"process {self.launches} still running after {self.timeout} s: killed")
                break
            if plan and plan[0] == "time" and elapsed >= plan[1]:
                killed = True
            elif training_since is not None and time.monotonic() - training_since >= plan[1]:
                killed = True
            elif plan and plan[0] == "write":
                new = {n for n in temp_files(self.run) if CHECKPOINT_TMP.match(n)} - stale - seen
                seen |= new
                if new and len(seen) > plan[1]:
                    if plan[2]:
                        time.sleep(plan[2])
                    killed = True
            if killed:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.0005 if plan and plan[0] == "write" else 0.005)
        code = proc.wait()
        out.close()
        text = Path(out.name).read_text()
        killed = killed and code == -signal.SIGKILL
        return resume, code, killed, text, stale

    # -- the soak --------------------------------------------------------------------------------

    def soak(self):
        """Rounds of killed-and-resumed runs (soak1, soak2, ...), until the kills wanted are made; each
        finished run is checked against the reference."""
        while not self.stats["failures"]:
            self.stats["runs"] += 1
            self.run = self.runs / f"soak{self.stats['runs']}"
            if not self.soak_round():
                return
            self.final_checks()
            if self.stats["kills"] >= self.kills_wanted or self.plans == []:
                return

    def soak_round(self):
        """Kill and resume one run until it finishes; False if it cannot."""
        previous_last = 0
        while True:
            if self.launches > 3 * self.kills_wanted + 20:
                self.fail("the runs never finished")
                return False
            plan = self.plan(previous_last) if self.stats["kills"] < self.kills_wanted else None
            resume, code, killed, text, stale = self.run_process(plan)
            self.stats["resumes" if resume else "fresh_restarts"] += 1
            started_training = "resuming " in text or "training on " in text
            if stale and started_training:
                still = stale & temp_files(self.run)
                self.stats["temp_files_removed_on_resume"] += len(stale - still)
                if still:
                    self.fail(f"process {self.launches} started training but left the stale temporary "
                              f"files {sorted(still)} of an earlier kill")
            if not killed:
                if code != 0:
                    self.fail(f"process {self.launches} exited with status {code}:\n{text[-2000:]}")
                    return False
                self.log(f"  {self.run.name} finished" + (f" before the planned kill {plan}" if plan else ""))
                return True
            self.stats["kills"] += 1
            self.stats["kills_aimed_at_writes" if plan[0] == "write" else "kills_at_random_time"] += 1
            self.stats["kills_during_training"] += plan[0] == "training"
            previous_last = self.after_kill(previous_last, text)

    def after_kill(self, previous_last, text):
        left = temp_files(self.run)
        during_write = sorted(n for n in left if CHECKPOINT_TMP.match(n))
        if during_write:
            self.stats["kills_during_checkpoint_write"] += 1
        self.stats["temp_files_left_by_kills"] += len(left)
        try:
            epochs = checkpoint_epochs(self.run)
        except Exception as e:  # noqa: BLE001 - a broken checkpoint is exactly what must not happen
            self.fail(f"after kill {self.stats['kills']}: a checkpoint does not load: {type(e).__name__}: {e}")
            return previous_last
        self.stats["checkpoints_verified"] += len(epochs)
        last = epochs.get("last.npz", 0)
        if "last.npz" not in epochs:
            self.stats["kills_before_first_checkpoint"] += 1
        if last < previous_last:
            self.fail(f"after kill {self.stats['kills']}: last.npz went back from epoch {previous_last} to {last}")
        logged = [int(m.group(1)) for m in EPOCH_DONE.finditer(text)]
        try:
            metrics = metrics_epochs(self.run)
        except (ValueError, KeyError) as e:
            self.fail(f"after kill {self.stats['kills']}: metrics.jsonl is unreadable ({e})")
            metrics = []
        if metrics and metrics != list(range(1, len(metrics) + 1)):
            self.fail(f"after kill {self.stats['kills']}: metrics.jsonl holds epochs {metrics}")
        done = max([last, *epochs.values(), *logged, *metrics])
        redone = done - last
        self.stats["completed_epochs_redone"] += redone
        self.stats["max_completed_epochs_redone_per_kill"] = max(
            self.stats["max_completed_epochs_redone_per_kill"], redone)
        if last < self.epochs:
            self.stats["interrupted_epochs"] += 1
        if redone > 1:
            self.fail(f"after kill {self.stats['kills']}: {redone} completed epochs must be redone "
                      f"(epochs done {done}, last.npz at {last})")
        self.log(f"  kill {self.stats['kills']:>3}: last.npz at epoch {last}"
                 + (f", checkpoints {epochs}" if len(epochs) > 1 else "")
                 + (f", killed while writing {during_write[0][:10]}..." if during_write else "")
                 + (f", {redone} completed epoch to redo" if redone else ""))
        return last

    def final_checks(self):
        from tinynet.files.checkpoint import load_checkpoint

        run, ref = self.run, self.reference_run
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
        if summary.get("status") != "finished" or summary.get("epochs_done") != self.epochs:
            self.fail(f"summary.json does not report a finished {self.epochs}-epoch run: {summary}")
        metrics = metrics_epochs(run)
        if metrics != list(range(1, self.epochs + 1)):
            self.fail(f"metrics.jsonl holds epochs {metrics}, expected each of 1..{self.epochs} once")
        if temp_files(run):
            self.fail(f"temporary files left in the finished run: {sorted(temp_files(run))}")
        self.stats.setdefault("identical_to_uninterrupted_run", True)
        for name in ("last.npz", "best.npz"):
            model, meta, optimizer, extra = load_checkpoint(run / name)
            ref_model, ref_meta, ref_optimizer, _ = load_checkpoint(ref / name)
            a, b = model.state_dict(), ref_model.state_dict()
            same = all(np.array_equal(a[k], b[k]) for k in b)
            same_momentum = (optimizer.keys() == ref_optimizer.keys()
                             and all(np.array_equal(optimizer[k], ref_optimizer[k]) for k in ref_optimizer))
            history = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in meta["training"]["history"]]
            ref_history = [{k: v for k, v in r.items() if k not in TIMING_FIELDS}
                           for r in ref_meta["training"]["history"]]
            if not (same and same_momentum and history == ref_history
                    and meta["rng_state"] == ref_meta["rng_state"]):
                self.stats["identical_to_uninterrupted_run"] = False
                self.fail(f"{run.name}/{name} differs from the uninterrupted run's (weights equal: {same}, momentum "
                          f"equal: {same_momentum}, history equal: {history == ref_history})")


def run_soak(workdir, *, kills, epochs, seed, write_fraction=0.5, n_train=600, n_test=200, timeout=600,
             log=print, plans=None):
    """Run one soak in ``workdir``; returns its statistics (``failures`` lists what went wrong).

    ``plans``: the kills to make, in order, instead of random ones (then ``kills`` is ignored):
    ``("write", n, delay)`` kills ``delay`` seconds after the (n+1)-th checkpoint temporary file of a
    process appears; ``("time", seconds)`` kills that long after the process starts; ``("training",
    seconds)`` that long after it logs that training starts."""
    soak = Soak(workdir, kills=kills, epochs=epochs, seed=seed, write_fraction=write_fraction,
                n_train=n_train, n_test=n_test, timeout=timeout, log=log, plans=plans)
    soak.reference()
    soak.soak()
    return soak.stats


def main(argv=None):
    args = build_parser().parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tinynet-kill-resume-"))
    started = time.monotonic()
    print(f"kill_resume.py: seed {args.seed}, {len(args.plan) if args.plan else args.kills} kills ({args.write_fraction:.0%} aimed at "
          f"checkpoint writes), {args.epochs} epochs, {args.n_train} training images; work folder {workdir}")
    stats = run_soak(workdir, kills=args.kills, epochs=args.epochs, seed=args.seed,
                     write_fraction=args.write_fraction, n_train=args.n_train, n_test=args.n_test,
                     timeout=args.timeout, plans=args.plan)
    if args.json:
        Path(args.json).write_text(json.dumps(stats, indent=1) + "\n")
    print()
    rows = [("kills (SIGKILL)", stats["kills"]),
            ("  aimed at a checkpoint write", stats["kills_aimed_at_writes"]),
            ("  at a random moment", stats["kills_at_random_time"]),
            ("    of which timed from the start of training (mid-epoch)", stats["kills_during_training"]),
            ("  that landed during a checkpoint write (temp file caught half-written)",
             stats["kills_during_checkpoint_write"]),
            ("  before the first checkpoint existed (run started afresh)", stats["kills_before_first_checkpoint"]),
            ("runs killed, resumed and finished (each checked against the reference)", stats["runs"]),
            ("train.py processes", stats["processes"]),
            ("resumes (train.py --resume)", stats["resumes"]),
            ("checkpoint loads verified after kills", stats["checkpoints_verified"]),
            ("interrupted (partial) epochs redone", stats["interrupted_epochs"]),
            ("completed epochs redone (not yet in last.npz when killed)", stats["completed_epochs_redone"]),
            ("  most completed epochs redone after one kill", stats["max_completed_epochs_redone_per_kill"]),
            ("temp files left by kills", stats["temp_files_left_by_kills"]),
            ("  removed when the run resumed", stats["temp_files_removed_on_resume"]),
            ("final weights identical to the uninterrupted run",
             stats.get("identical_to_uninterrupted_run", "n/a")),
            ("failures (anything lost or broken)", len(stats["failures"]))]
    for name, value in rows:
        print(f"{name:<74} {value}")
    print(f"total time {time.monotonic() - started:.0f} s")
    for failure in stats["failures"]:
        print(f"FAILURE: {failure}")
    if args.keep or stats["failures"]:
        print(f"work folder kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if stats["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
