"""The training loop: minibatch SGD on the LeNet, with checkpoints, resume, logs and plots.

From Python (a notebook, say), in one call::

    from tinynet.training.trainer import TrainConfig, train
    result = train(TrainConfig(data_dir="data", dataset="emnist-balanced", epochs=2), "runs/try")
    result["test_accuracy"]

or in parts, with a :class:`Trainer` (``docs/library.md``)::

    with Trainer(TrainConfig(epochs=2), "runs/try") as trainer:
        trainer.step()            # one SGD step on the next batch
        trainer.run_epoch()       # the rest of the epoch, then its evaluation and checkpoints
        trainer.evaluate()        # (loss, accuracy, balanced accuracy) on the validation split
        trainer.fit()             # the remaining epochs and the test evaluation: what train.py runs

Each batch is one :func:`tinynet.nn.step.train_step`; this module is everything around it. Its command
line is ``train.py`` (``tinynet.cli.train``). A run folder holds ``config.json``,
``metrics.jsonl`` (one JSON record per epoch), ``curves.png``, ``last.npz`` (after every epoch, and
when stopped with Ctrl-C), ``best.npz`` (best validation accuracy), ``summary.json`` and, at the
end, ``filters.png`` (conv1's learned filters).

Randomness: one seed makes a run repeatable. It chooses the validation split and is split
(``np.random.SeedSequence.spawn``) into independent generators for initialisation, shuffling,
augmentation and dropout; their states are saved in every checkpoint, so a resumed run continues
exactly as an uninterrupted one would have.

Side effects: none that outlive a call. BLAS is limited to one thread only while the trainer works
(``tinynet.nn.parallel.one_blas_thread``), Ctrl-C is caught only during :meth:`Trainer.fit` in the main
thread (the previous handler is put back), and the trainer's thread pool is closed by
:meth:`Trainer.close` (``train`` and a ``with`` block do it).
"""

import json
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..datasets.augment import augment_batch
from ..datasets.download import ensure_dataset
from ..datasets.idx import load_split, to_float, train_val_split
from ..files.atomic import TEMP_PREFIX, atomic_write
from ..files.checkpoint import load_checkpoint, save_checkpoint
from ..files.plots import plot_curves, plot_filters
from ..nn.layers import Dropout, SoftmaxCrossEntropy
from ..nn.model import build_model
from ..nn.optim import SCHEDULES, SGD, learning_rate
from ..nn.parallel import DataParallel, one_blas_thread
from ..nn.step import train_step
from ..predict.metrics import evaluate
from .values import value_problem

MIN_FREE_BYTES = 200 * 1024 * 1024
# --best-by: which metric of an epoch's record picks best.npz
BEST_BY = {"val": "val_accuracy", "val-balanced": "val_balanced_accuracy", "external": "external_accuracy"}
HISTORY_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
INITS = ("glorot", "he")
CLASS_BALANCE = ("none", "prior", "sample")


class ConfigError(ValueError):
    """A configuration training cannot use, found when the :class:`TrainConfig` is made.

    ``str(error)`` names the fields as Python does (``nesterov needs momentum > 0``);
    :meth:`as_options` names them as the command line does (``--nesterov needs --momentum > 0``)."""

    def __init__(self, template, *names):
        """``template``: the message, with a ``{}`` for each field named in ``names``."""
        self.template, self.names = template, names
        super().__init__(template.format(*names) if names else template)

    def as_options(self):
        options = ("--" + n.replace("_", "-") for n in self.names)
        return self.template.format(*options) if self.names else self.template


FIELD_KINDS = {
    "data_dir": "path", "dataset": "name", "epochs": "positive_int", "batch_size": "positive_int",
    "lr": "positive_float", "momentum": "fraction", "nesterov": "bool", "weight_decay": "non_negative_float",
    "lr_schedule": SCHEDULES, "augment": "bool", "augment_strength": "positive_float",
    "label_smoothing": "fraction", "dropout": "fraction", "init": INITS, "class_balance": CLASS_BALANCE,
    "val_fraction": "fraction", "val_data": "path", "val_dataset": "name", "best_by": tuple(BEST_BY),
    "seed": "non_negative_int", "limit": "positive_int", "threads": "positive_int",
}
OPTIONAL = {"val_data", "val_dataset", "limit", "threads"}  # None: not set


@dataclass
class TrainConfig:
    """Everything that defines a run. The defaults are the original recipe.

    Checked when made (also by ``dataclasses.replace``): a value training cannot use raises
    :class:`ConfigError` before any work starts, with the command line's wording."""

    data_dir: str = "data"
    dataset: str = "emnist-balanced"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    augment: bool = False
    augment_strength: float = 1.0
    label_smoothing: float = 0.0
    dropout: float = 0.0
    init: str = "glorot"
    class_balance: str = "none"
    val_fraction: float = 0.1
    val_data: str | None = None
    val_dataset: str | None = None
    best_by: str = "val"
    seed: int = 0
    limit: int | None = None
    threads: int | None = None

    def __post_init__(self):
        for name, kind in FIELD_KINDS.items():
            value = getattr(self, name)
            if value is None and name in OPTIONAL:
                continue
            problem = value_problem(kind, value)
            if problem:
                raise ConfigError("{}: " + problem.replace("{", "{{").replace("}", "}}"), name)
            if kind == "path":
                setattr(self, name, os.fspath(value))  # a pathlib.Path is welcome; config.json holds text
            elif kind in ("positive_float", "non_negative_float", "fraction"):
                setattr(self, name, float(value))
            elif kind in ("positive_int", "non_negative_int"):
                setattr(self, name, int(value))
        if self.nesterov and not self.momentum:
            raise ConfigError("{} needs {} > 0", "nesterov", "momentum")
        if (self.val_data is None) != (self.val_dataset is None):
            raise ConfigError("{} and {} go together", "val_data", "val_dataset")
        if self.best_by == "external" and self.val_data is None:
            raise ConfigError("{} external needs {}", "best_by", "val_data")

    @classmethod
    def from_dict(cls, d):
        """A TrainConfig from a dict such as ``config.json``'s; ConfigError for a key that is not
        a field (every key any tinynet version has written is one)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a configuration is a JSON object of fields, not a {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown configuration key{'s' * (len(unknown) > 1)} "
                              f"{', '.join(map(repr, unknown))} (the fields are: {', '.join(known)})")
        return cls(**d)


# Named recipes: TrainConfig fields that differ from the defaults (the original recipe).
# Chosen on the validation split (README: "Accuracy"); every ingredient is a flag too.
STRONG = {"momentum": 0.9, "nesterov": True, "lr": 0.05, "lr_schedule": "one-cycle", "weight_decay": 5e-4,
          "init": "he", "augment": True, "label_smoothing": 0.1, "dropout": 0.25}
RECIPES = {
    "original": {},
    "strong": STRONG,
    # For handwriting the model never saw, with every class equally likely (README: "Accuracy"):
    # the strong recipe trained twice as long on class-balanced draws of the training set,
    # best.npz picked by balanced validation accuracy.
    "unseen": {**STRONG, "epochs": 40, "class_balance": "sample", "best_by": "val-balanced"},
}


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on (bad run folder, diverged loss); the message says why."""


def write_text_atomically(path, text):
    """Write text to ``path`` via a temporary file and a rename (never a half-written file)."""
    with atomic_write(path, "w") as f:
        f.write(text)


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


class _StopFlag:
    """Turns the first Ctrl-C into a request to stop at the next batch; a second one aborts."""

    def __init__(self):
        self.requested = False
        self.installed = False

    def __enter__(self):
        # Python only lets the main thread set signal handlers; elsewhere Ctrl-C is not caught.
        self.installed = threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self.installed and self.previous is not None:  # None: set outside Python, cannot be put back
            signal.signal(signal.SIGINT, self.previous)


class Callbacks:
    """Observers of a run (``train(..., callbacks=[...])``), e.g. the ``--watch`` recorder.

    A callback is any object with some of these methods; each gets the running :class:`Trainer`, whose
    attributes ``run_dir``, ``config``, ``model`` (the ``Sequential``; ``model.forward(x,
    train=False)`` predicts), ``classes``, ``val_images`` (uint8, upright), ``val_labels``,
    ``batches_per_epoch``, ``total_steps`` and ``state`` (``epoch``, ``step``, ``batch``) it may read
    and must not change:

    - ``on_start(trainer)``: before the first step (of this process: after a resume, too);
    - ``on_step(trainer, record)``: after every step, ``record`` = ``step`` (steps done), ``epoch``
      (1-based), ``batch`` (batches done in the epoch), ``loss`` and ``accuracy`` (of the batch),
      ``lr``, ``images`` (in the batch), ``seconds`` (since ``on_start``);
    - ``on_epoch(trainer, record)``: after each epoch, with its ``metrics.jsonl`` record;
    - ``on_end(trainer, summary)``: once, with ``summary["status"]`` ``finished``, ``interrupted``
      (Ctrl-C) or ``failed`` (diverged; ``summary["error"]`` says why).

    A callback never stops or changes training: one that raises is reported once through ``log``
    and dropped, and the run goes on as it would have without it.
    """

    def __init__(self, callbacks, log):
        self.callbacks = list(callbacks)
        self.log = log

    def __call__(self, event, *args):
        for cb in list(self.callbacks):
            method = getattr(cb, event, None)
            if method is None:
                continue
            try:
                method(*args)
            except Exception as e:  # noqa: BLE001: whatever an observer does wrong, training goes on
                self.callbacks.remove(cb)
                self.log(f"warning: {type(cb).__name__}.{event} failed ({type(e).__name__}: {e}); "
                         f"training goes on without it")


def _generators(seed):
    """Independent generators, all from one seed: init, shuffle, augment, dropout."""
    return dict(zip(("init", "shuffle", "augment", "dropout"),
                    (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))))


class Trainer:
    """One training run, in parts a notebook can call one at a time; :meth:`fit` runs the rest of
    it, and is what ``train.py`` runs (through :func:`train`).

    ``Trainer(config, run_dir)`` checks the run folder, loads the data (``config.data_dir`` /
    ``config.dataset``, downloaded unless ``download=False``; or in-memory ``tinynet.datasets.idx.Split``
    objects given as ``train_data`` and optionally ``test_data``, when ``config.data_dir`` and
    ``config.dataset`` are only recorded), builds the model or, with ``resume``, restores the run
    saved in ``run_dir``. Then:

    - :meth:`step`: one SGD step on the next batch of the current epoch;
    - :meth:`run_epoch`: the epoch's remaining steps, then :meth:`end_epoch` (evaluation,
      ``metrics.jsonl``, ``curves.png``, ``best.npz`` and ``last.npz``);
    - :meth:`evaluate`: loss, accuracy and balanced accuracy on the validation split (or any images);
    - :meth:`save_checkpoint`: the whole training state, resumable;
    - :meth:`fit`: the remaining epochs (Ctrl-C stops cleanly), then :meth:`finish` (test
      evaluation, ``summary.json``, ``filters.png``); returns the summary.

    Callbacks (:class:`Callbacks`) receive this object; the attributes they may read are
    ``run_dir``, ``config``, ``model``, ``classes``, ``val_images``, ``val_labels``,
    ``batches_per_epoch``, ``total_steps`` and ``state`` (``epoch``, ``step``, ``batch``,
    ``history``, ``best_val_accuracy``). The trainer owns a thread pool: :meth:`close` it, or use
    it as a context manager.
    """

    def __init__(self, config, run_dir, *, resume=False, download=True, progress=True,
                 log=print, callbacks=(), train_data=None, test_data=None):
        self.run_dir, self.progress, self.log = Path(run_dir), progress, log
        config = _resume_config(self.run_dir, config) if resume else config
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig (None only with resume), not {type(config).__name__}")
        self.config = config
        self.started = time.perf_counter()
        self._load_data(download, train_data, test_data)
        self.rngs = _generators(config.seed)
        self.state = {"epoch": 0, "step": 0, "batch": 0, "history": [], "best_val_accuracy": -1.0}
        self.optimizer = SGD(config.lr, config.momentum, config.nesterov, config.weight_decay)
        self.order = None  # the current epoch's images, in order (drawn at its first step)
        if resume:
            self._restore_run()
        else:
            self.model = build_model(self.architecture, self.rngs["init"], init=config.init)
            write_text_atomically(self.run_dir / "config.json", json.dumps(asdict(config), indent=2) + "\n")
        for layer in self.model.layers:
            if isinstance(layer, Dropout):
                layer.rng = self.rngs["dropout"]
        self.net = DataParallel(self.model, config.threads)  # fixed slices of each batch, run by the threads
        self.loss_fn = SoftmaxCrossEntropy(config.label_smoothing)
        self.batches_per_epoch = math.ceil(len(self.train_idx) / config.batch_size)
        self.total_steps = self.batches_per_epoch * config.epochs
        self.notify = Callbacks(callbacks, log)
        self._stop = _StopFlag()  # not installed: fit() installs one
        self._tally = None  # the current epoch's running sums (in this process)
        self._started = False
        log(f"training on {len(self.train_idx)} images of {config.dataset} ({len(self.classes)} classes), "
            f"validating on {len(self.val_labels)}, testing on {len(self.test_labels)}; "
            f"run folder {self.run_dir}")

    def _load_data(self, download, train_data, test_data):
        """The run folder checked, the training, test and external validation data loaded, the
        training set split; on a failure, the folders this run created are removed if still empty."""
        created = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]  # innermost first
        check_run_dir(self.run_dir)
        for stale in self.run_dir.glob(f"{TEMP_PREFIX}*"):  # left by a run killed in the middle of a write
            stale.unlink(missing_ok=True)
        try:
            train_split, test_split, self.external = _load_splits(self.config, download, self.log,
                                                                  train_data, test_data)
        except BaseException:  # no data, no run: remove the folders made above if still empty
            for folder in created:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise
        config = self.config
        self.images, self.labels, self.classes = train_split.images, train_split.labels, train_split.classes
        empty = np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64)
        self.test_images, self.test_labels = (test_split.images, test_split.labels) if test_split else empty
        self.train_idx, val_idx = train_val_split(self.labels, config.val_fraction, config.seed)
        if config.limit:
            self.train_idx = self.train_idx[:config.limit]
        self.val_images, self.val_labels = self.images[val_idx], self.labels[val_idx]
        self.architecture = {"name": "lenet", "num_classes": len(self.classes), "dropout": config.dropout}
        if config.class_balance == "prior":
            self.architecture["class_prior"] = class_prior(self.labels[self.train_idx], len(self.classes)).tolist()

    def _restore_run(self):
        """The model, momentum, generators, counters and epoch order saved in ``run_dir/last.npz``."""
        path = self.run_dir / "last.npz"
        self.model, meta, velocity, extra = load_checkpoint(path)
        if meta["architecture"] != self.architecture or meta["classes"] != list(self.classes):
            raise TrainingError(f"{path}: checkpoint does not match the data "
                                f"({meta['architecture']} vs {self.architecture})")
        self.state, self.order = _restore(path, meta, velocity, extra, self.optimizer, self.rngs,
                                          self.train_idx, resampled=self.config.class_balance == "sample")
        if self.state["history"]:  # a kill between last.npz and these files may have left them behind
            _write_history(self.state["history"], self.run_dir)
        self.log(f"resuming {self.run_dir} at epoch {self.state['epoch'] + 1}, batch {self.state['batch']}")

    def close(self):
        """Shut down the trainer's threads (it cannot train or evaluate afterwards)."""
        self.net.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        """Tell the callbacks the run starts (once; :meth:`step` and :meth:`fit` call it)."""
        if not self._started:
            self._started = True
            self.notify("on_start", self)
            self.clock = time.perf_counter()  # on_step's seconds

    def step(self):
        """One SGD step on the next batch of the current epoch; returns the callbacks' ``on_step``
        record (``loss``, ``accuracy``, ``lr``...). TrainingError if the loss diverges (last.npz
        stays the last good checkpoint), or if the epoch's batches are done (call :meth:`end_epoch`)."""
        config, state = self.config, self.state
        if state["epoch"] >= config.epochs or state["batch"] >= self.batches_per_epoch:
            raise TrainingError("the run is finished" if state["epoch"] >= config.epochs else
                                f"epoch {state['epoch'] + 1}'s batches are done: call end_epoch()")
        self.start()
        if self.order is None:
            self.order = epoch_order(self.train_idx, self.labels, config.class_balance, self.rngs["shuffle"])
        if self._tally is None:
            self._tally = {"seen": 0, "correct": 0, "loss_sum": 0.0, "start": time.perf_counter()}
        idx = self.order[state["batch"] * config.batch_size:(state["batch"] + 1) * config.batch_size]
        x, y = to_float(self.images[idx]), self.labels[idx]
        if config.augment:
            x = augment_batch(x, self.rngs["augment"], config.augment_strength,
                              self.net.map_rows)  # warped in the threads
        self.optimizer.lr = learning_rate(config.lr_schedule, config.lr, state["step"], self.total_steps)
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below
            loss, logits = train_step(self.net, self.loss_fn, self.optimizer, x, y)
        if not math.isfinite(loss):
            self._diverged(loss)
        state["batch"] += 1
        state["step"] += 1
        correct = int(np.sum(logits.argmax(axis=1) == y))
        tally = self._tally
        tally["seen"] += len(y)
        tally["loss_sum"] += loss * len(y)
        tally["correct"] += correct
        record = {"step": state["step"], "epoch": state["epoch"] + 1, "batch": state["batch"], "loss": loss,
                  "accuracy": correct / len(y), "lr": self.optimizer.lr, "images": len(y),
                  "seconds": time.perf_counter() - self.clock}
        self.notify("on_step", self, record)
        return record

    def _diverged(self, loss):
        state, last = self.state, self.run_dir / "last.npz"
        kept = (f"the last good checkpoint {last} (epoch {state['epoch']}) is kept"
                if last.exists() else "no checkpoint was written yet")
        error = TrainingError(f"loss became {loss} at epoch {state['epoch'] + 1}, batch {state['batch']} "
                              f"(step {state['step']}): training diverged; {kept}. Try a lower --lr.")
        self.notify("on_end", self, {"status": "failed", "error": str(error)})
        raise error

    def run_epoch(self):
        """The current epoch's remaining steps (with a progress bar), then :meth:`end_epoch`; returns
        the epoch's record, or None when Ctrl-C stopped it during :meth:`fit`."""
        state = self.state
        bar = None  # (not even a disabled tqdm: any tqdm starts tqdm's monitor thread for good)
        if self.progress:
            bar = tqdm(total=self.batches_per_epoch, initial=state["batch"], unit="batch", leave=False,
                       desc=f"epoch {state['epoch'] + 1}/{self.config.epochs}")
        try:
            while state["batch"] < self.batches_per_epoch:
                if self._stop.requested:
                    return None
                self.step()
                if bar is not None:
                    bar.update()
                    if state["batch"] % 16 == 0:  # formatting it costs ~25 us: not every batch
                        t = self._tally
                        bar.set_postfix(loss=f"{t['loss_sum'] / t['seen']:.4f}",
                                        acc=f"{t['correct'] / t['seen']:.4f}",
                                        img_s=f"{t['seen'] / (time.perf_counter() - t['start']):.0f}",
                                        refresh=False)
        finally:
            if bar is not None:
                bar.close()
        return self.end_epoch()

    def evaluate(self, images=None, labels=None):
        """``(loss, accuracy, balanced accuracy)`` of the model on uint8 images (N, 28, 28) and
        their labels; by default on the validation split (NaN for an empty one)."""
        if images is None:
            images, labels = self.val_images, self.val_labels
        return evaluate(self.net, images, labels)

    def end_epoch(self):
        """Close the current epoch: evaluate, record it in ``metrics.jsonl`` and ``curves.png``,
        save ``best.npz`` (if it is the best so far) and ``last.npz``, tell the callbacks and log
        a line. Returns the epoch's record."""
        state, config = self.state, self.config
        record = self._epoch_record()
        state["history"].append(record)
        state["epoch"] += 1
        state["batch"] = 0
        self.order = self._tally = None
        score = record[BEST_BY[config.best_by]]
        if score > state["best_val_accuracy"] or math.isnan(score):
            state["best_val_accuracy"] = score
            self.save_checkpoint(self.run_dir / "best.npz")
        self.save_checkpoint(self.run_dir / "last.npz")
        _write_history(state["history"], self.run_dir)
        self.notify("on_epoch", self, record)
        val = (f"val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.4f} "
               f"(balanced {record['val_balanced_accuracy']:.4f})" if len(self.val_labels)
               else "no validation split")
        ext = (f" | {config.val_dataset} loss {record['external_loss']:.4f} acc "
               f"{record['external_accuracy']:.4f}" if self.external is not None else "")
        self.log(f"epoch {record['epoch']}/{config.epochs}: train loss {record['train_loss']:.4f} "
                 f"acc {record['train_accuracy']:.4f} | {val}{ext} | {record['seconds']:.1f} s, "
                 f"{record['images_per_second']:.0f} images/s")
        return record

    def _epoch_record(self):
        """The ``metrics.jsonl`` record of the epoch that just ended (evaluated now)."""
        t = self._tally or {"seen": 0, "correct": 0, "loss_sum": 0.0, "start": time.perf_counter()}
        seconds = time.perf_counter() - t["start"]
        val_loss, val_acc, val_bal = self.evaluate()
        record = {"epoch": self.state["epoch"] + 1, "train_loss": t["loss_sum"] / max(t["seen"], 1),
                  "train_accuracy": t["correct"] / max(t["seen"], 1), "val_loss": val_loss,
                  "val_accuracy": val_acc, "val_balanced_accuracy": val_bal, "lr": self.optimizer.lr,
                  "seconds": seconds, "images_per_second": t["seen"] / seconds if seconds else float("nan")}
        if self.external is not None:
            record["external_loss"], record["external_accuracy"], _ = self.evaluate(
                self.external.images, self.external.labels)
        return record

    def save_checkpoint(self, path):
        """Save the weights and the whole training state (momentum, counters, generators, the
        current epoch's order when it is under way) to ``path``: :func:`train` with ``resume``
        continues from a ``last.npz`` written this way exactly as if never stopped."""
        meta = {"recipe": asdict(self.config), "training": self.state,
                "rng_state": {name: rng.bit_generator.state for name, rng in self.rngs.items()}}
        extra = None if self.order is None else {"order": self.order}
        save_checkpoint(path, self.model, self.architecture, self.classes, meta,
                        self.optimizer.state_dict(), extra)

    def fit(self):
        """Train the remaining epochs, then :meth:`finish`; returns the summary (``status``
        ``finished``, or ``interrupted`` after a Ctrl-C, which saves ``last.npz`` first)."""
        try:
            with one_blas_thread, _StopFlag() as self._stop:
                self.start()
                while self.state["epoch"] < self.config.epochs:
                    if self.run_epoch() is None:
                        return self._interrupted()
        finally:
            self._stop = _StopFlag()  # a later run_epoch() in a notebook starts unstopped
        return self.finish()

    def _interrupted(self):
        state, last = self.state, self.run_dir / "last.npz"
        self.save_checkpoint(last)
        self.log(f"stopped by Ctrl-C at epoch {state['epoch'] + 1}, batch {state['batch']}; saved "
                 f"{last}. Resume with: python3 train.py --resume {self.run_dir}")
        summary = _summary(state, "interrupted", self.started, self.run_dir)
        self.notify("on_end", self, summary)
        return summary

    def finish(self):
        """The end of the run: test evaluation, ``summary.json``, ``filters.png``, the callbacks'
        ``on_end`` and a log line. Returns the summary."""
        config = self.config
        test_loss, test_acc, test_bal = self.evaluate(self.test_images, self.test_labels)
        extra = {"best_by": BEST_BY[config.best_by], "test_loss": test_loss, "test_accuracy": test_acc,
                 "test_balanced_accuracy": test_bal}
        if self.external is not None and self.state["history"]:  # the last epoch scored these weights
            extra["external_loss"] = self.state["history"][-1]["external_loss"]
            extra["external_accuracy"] = self.state["history"][-1]["external_accuracy"]
        summary = _summary(self.state, "finished", self.started, self.run_dir, **extra)
        write_text_atomically(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        plot_filters(self.model.layers[0].params["W"], self.run_dir / "filters.png")  # conv1's, as trained
        self.notify("on_end", self, summary)
        ext = (f"; {config.val_dataset} accuracy {extra['external_accuracy']:.4f}"
               if "external_accuracy" in extra else "")
        self.log(f"test accuracy {test_acc:.4f} (balanced {test_bal:.4f}, loss {test_loss:.4f}){ext}; "
                 f"total time {summary['seconds']:.1f} s")
        return summary


def train(config, run_dir, *, resume=False, download=True, progress=True, log=print, callbacks=()):
    """Train per ``config`` into ``run_dir``; with ``resume``, continue the run saved there (its
    own configuration; ``config``'s ``epochs`` and ``threads``, if given, replace the saved ones).
    ``callbacks`` observe the run (see :class:`Callbacks`). ``Trainer(...).fit()``, closed after.

    Returns a summary dict (``status`` is ``"finished"`` or ``"interrupted"``, plus final metrics,
    ``test_accuracy`` and ``seconds``). Raises :class:`TrainingError` for a run that cannot start or
    that diverges, and ``tinynet.datasets.idx.DataError`` for missing or bad data.
    """
    with Trainer(config, run_dir, resume=resume, download=download, progress=progress, log=log,
                 callbacks=callbacks) as trainer:
        return trainer.fit()


def _load_splits(config, download, log, train_data=None, test_data=None):
    """``(train, test, external)`` Splits: ``train_data`` / ``test_data`` when given (test may be
    None), else the dataset's from ``config.data_dir``; external: ``config.val_data``'s test split
    or None."""
    if train_data is None:
        ensure_dataset(config.data_dir, config.dataset, download=download, out=log)
        train_data = load_split(config.data_dir, config.dataset, "train")
        test_data = load_split(config.data_dir, config.dataset, "test")
    elif test_data is not None and tuple(test_data.classes) != tuple(train_data.classes):
        raise TrainingError(f"test_data's classes do not match train_data's "
                            f"({len(test_data.classes)} vs {len(train_data.classes)})")
    external = None
    if config.val_data:
        ensure_dataset(config.val_data, config.val_dataset, download=download, splits=("test",), out=log)
        external = load_split(config.val_data, config.val_dataset, "test")
        if external.classes != train_data.classes:
            raise TrainingError(f"{config.val_dataset} in {config.val_data}: its classes do not match "
                                f"the training set's ({len(external.classes)} vs {len(train_data.classes)})")
    return train_data, test_data, external


def class_prior(labels, num_classes):
    """The class frequencies of the training labels, every count at least 1 (no class gets prior
    0): what ``--class-balance prior`` stores in the checkpoint for its ``LogitAdjustment``."""
    counts = np.bincount(labels, minlength=num_classes)
    return np.maximum(counts, 1) / counts.sum()


def epoch_order(train_idx, labels, class_balance, rng):
    """The training images of one epoch, in order: a shuffle of ``train_idx``, or with
    ``class_balance="sample"`` as many draws (with replacement) in which every class is equally
    likely, the images of a class equally likely among themselves."""
    if class_balance != "sample":
        return rng.permutation(train_idx)
    counts = np.bincount(labels[train_idx])
    weights = 1.0 / counts[labels[train_idx]]
    return rng.choice(train_idx, size=len(train_idx), p=weights / weights.sum())


def _write_history(history, run_dir):
    """``metrics.jsonl`` (one record per epoch) and ``curves.png`` from the run's history."""
    write_text_atomically(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    plot_curves(history, run_dir / "curves.png")


def _restore(path, meta, velocity, extra, optimizer, rngs, train_idx, resampled=False):
    """Put the training state saved in checkpoint ``path`` back: momentum into ``optimizer``, the
    random generators' states into ``rngs``. Returns ``(state, order)`` (order: the interrupted
    epoch's shuffled indices, or None). TrainingError if it is not a resumable state of this run."""
    def is_count(v):
        return type(v) is int and v >= 0

    try:
        state = meta["training"]
        if not isinstance(state, dict):
            raise TypeError(f"'training' is a {type(state).__name__}")
        bad = [k for k in ("epoch", "step", "batch") if not is_count(state[k])]
        if bad:
            raise ValueError(f"{bad[0]} is {state[bad[0]]!r}")
        if type(state["best_val_accuracy"]) not in (int, float):
            raise ValueError(f"best_val_accuracy is {state['best_val_accuracy']!r}")
        history = state["history"]
        if (not isinstance(history, list) or len(history) != state["epoch"]
                or not all(isinstance(r, dict) and HISTORY_KEYS <= r.keys() for r in history)):
            raise ValueError("history does not hold one record per epoch done")
        for name, rng in rngs.items():
            rng.bit_generator.state = meta["rng_state"][name]
        optimizer.load_state_dict(velocity)
    except (KeyError, TypeError, ValueError) as e:
        raise TrainingError(f"{path}: not a resumable training checkpoint ({type(e).__name__}: "
                            f"{' '.join(str(e).split())})") from None
    order = extra.get("order")
    if order is not None and (order.dtype.kind not in "iu" or order.shape != train_idx.shape or not (
            np.isin(order, train_idx).all() if resampled else np.array_equal(np.sort(order), train_idx))):
        raise TrainingError(f"{path}: its saved shuffling order is not "
                            f"{'drawn from' if resampled else 'a permutation of'} this run's "
                            f"{len(train_idx)} training images")
    return state, order


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


def _resume_config(run_dir, config):
    """``train(config, run_dir, resume=True)``'s configuration: the saved one, with ``config``'s
    ``epochs`` and ``threads`` when ``config`` is given (threads None: every core)."""
    saved = resume_config(run_dir)
    return saved if config is None else replace(saved, epochs=config.epochs, threads=config.threads)


def _summary(state, status, started, run_dir, **extra):
    last = state["history"][-1] if state["history"] else {}
    return {"status": status, "run_dir": str(run_dir), "epochs_done": state["epoch"],
            "train_accuracy": last.get("train_accuracy"), "val_accuracy": last.get("val_accuracy"),
            "best_val_accuracy": state["best_val_accuracy"], **extra,
            "seconds": time.perf_counter() - started}
