"""A training run's folder: checked before any work, and the files the trainer keeps there.

    config.json      the run's TrainConfig (what --resume reads back)
    metrics.jsonl    one JSON record per epoch; curves.png draws them
    last.npz         the whole training state after every epoch (and on Ctrl-C): what resumes
    best.npz         the epoch with the best validation score so far
    summary.json     the end of the run; filters.png, the first convolution's learned filters

Every file is written atomically (``tinynet.files.atomic``): a killed run leaves old or new files,
never half of one.
"""

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

from ..files.atomic import TEMP_PREFIX, write_text
from ..files.plots import plot_curves, plot_filters
from .config import TrainConfig
from .errors import TrainingError

MIN_FREE_BYTES = 200 * 1024 * 1024


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

    def prepare(self):
        """Create and check the folder (:func:`check_run_dir`) and remove temporary files a run
        killed in the middle of a write left behind."""
        self.created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        check_run_dir(self.path)
        for stale in self.path.glob(f"{TEMP_PREFIX}*"):
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
