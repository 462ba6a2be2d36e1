"""A training run's folder: checked before any work, and the files the trainer keeps there.

    config.json      the run's TrainConfig (what --resume reads back)
    metrics.jsonl    one JSON record per epoch; curves.png draws them
    last.npz         the whole training state after every epoch (and on Ctrl-C): what resumes
    best.npz         the epoch with the best validation score so far
    summary.json     the end of the run; filters.png, the first convolution's learned filters

Every file is written atomically (``tinynet.files.atomic``): a killed run leaves old or new files,
never half of one, and at worst a temporary file beside them, which the next run in the folder
removes once it has started.

A folder holds one run. A new run refuses a folder that already holds one (its ``config.json`` or
``last.npz``) unless asked to replace it; then it removes that run's files (:data:`RUN_FILES`, and
nothing else) once it has started.
"""

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

from ..files.atomic import leftover_temporaries, write_text
from ..files.plots import plot_curves, plot_filters
from .config import TrainConfig
from .errors import TrainingError
from .runlog import SNAPSHOT_FILE, STATUS_FILE, STEPS_FILE

MIN_FREE_BYTES = 200 * 1024 * 1024
# The files a run writes in its folder (the trainer's, and the live log's for the training page).
RUN_FILES = ("config.json", "metrics.jsonl", "curves.png", "last.npz", "best.npz", "summary.json",
             "filters.png", STEPS_FILE, SNAPSHOT_FILE, STATUS_FILE)
MARKS_A_RUN = ("config.json", "last.npz")  # a folder holding either holds a run


def check_run_dir(run_dir, min_free_bytes=MIN_FREE_BYTES):
    """Create ``run_dir`` and make sure it is writable with room for checkpoints, before any training."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"{run_dir}: run folder is not writable ({e.strerror or e})") from None
    free = shutil.disk_usage(run_dir).free
    if free < min_free_bytes:
        raise TrainingError(f"{run_dir}: only {free / 2**20:.0f} MB free on this disk; a run needs at "
                            f"least {min_free_bytes / 2**20:.0f} MB for its checkpoints and logs")


class RunFolder:
    """The folder of one run (see the module docstring)."""

    def __init__(self, path):
        self.path = Path(path)
        self.last, self.best = self.path / "last.npz", self.path / "best.npz"
        self.created = []  # the folders prepare() made, innermost first

    def run_files(self, names=MARKS_A_RUN):
        """Those of the files ``names`` that are in the folder."""
        return [name for name in names if (self.path / name).exists()]

    def refuse_another_run(self, overwrite=False):
        """TrainingError when the folder already holds a run (:data:`MARKS_A_RUN`), unless
        ``overwrite``: a new run must not mix its files with another's."""
        found = self.run_files()
        if found and not overwrite:
            resume = "resume it (resume=True; train.py --resume), " if "last.npz" in found else ""
            raise TrainingError(f"{self.path}: already holds a run ({', '.join(found)}); {resume}replace "
                                f"it (overwrite=True), or train in another folder")

    def prepare(self):
        """Create and check the folder (:func:`check_run_dir`)."""
        self.created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        check_run_dir(self.path)

    def clear(self):
        """Remove the files of the run the folder held (:data:`RUN_FILES`), for a run that
        replaces it; nothing else in the folder."""
        for name in self.run_files(RUN_FILES):
            (self.path / name).unlink(missing_ok=True)

    def remove_leftovers(self):
        """Remove the temporary files that writes of :data:`RUN_FILES` killed before their rename
        left behind (``tinynet.files.atomic.leftover_temporaries``). Called once the run has
        started, so a run that cannot start leaves the folder as it found it; no other file is
        touched, however it is named."""
        for stale in leftover_temporaries(self.path, RUN_FILES):
            stale.unlink(missing_ok=True)

    def discard(self):
        """Remove the folders :meth:`prepare` made, where they are still empty (a run that could
        not start leaves nothing behind)."""
        for folder in self.created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def write_config(self, config):
        write_text(self.path / "config.json", json.dumps(asdict(config), indent=2) + "\n")

    def write_history(self, history):
        """``metrics.jsonl`` (one record per epoch) and ``curves.png`` from the run's history."""
        write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        plot_curves(history, self.path / "curves.png")

    def write_summary(self, summary, filters=None):
        """``summary.json`` and, given a convolution's weights, ``filters.png``."""
        write_text(self.path / "summary.json", json.dumps(summary, indent=2) + "\n")
        if filters is not None:
            plot_filters(filters, self.path / "filters.png")


def resume_config(run_dir, epochs=None, threads=None):
    """The configuration saved in ``run_dir`` (a run to resume), with ``epochs`` and ``threads``
    replaced when given: the only fields a resumed run may change. TrainingError if there is no
    run to resume there or its ``config.json`` cannot be read."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not (run_dir / "last.npz").is_file():
        raise TrainingError(f"{run_dir}: nothing to resume (no last.npz in that folder)")
    try:
        saved = TrainConfig.from_dict(json.loads(path.read_text()))
        changes = {"epochs": epochs, "threads": threads}
        return replace(saved, **{k: v for k, v in changes.items() if v is not None})
    except (OSError, ValueError, TypeError) as e:  # ValueError: bad JSON or a ConfigError
        raise TrainingError(f"{path}: cannot read the run's configuration ({e})") from None
