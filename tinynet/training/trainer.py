"""The training loop: minibatch SGD on the LeNet, with checkpoints, resume, logs and plots.

From Python (a notebook, say), in one call::

    from tinynet import TrainConfig, train
    result = train(TrainConfig(data_dir="data", dataset="emnist-balanced", epochs=2), "runs/try")
    result["test_accuracy"]

or in parts, with a :class:`Trainer` (``docs/library.md``)::

    with Trainer(TrainConfig(epochs=2), "runs/try") as trainer:
        trainer.step()            # one SGD step on the next batch
        trainer.run_epoch()       # the rest of the epoch, then its evaluation and checkpoints
        trainer.evaluate()        # (loss, accuracy, balanced accuracy) on the validation split
        trainer.fit()             # the remaining epochs and the test evaluation: what train.py runs

Each batch is one :func:`tinynet.nn.step.train_step`; this module is the loop around it, and
its pieces are beside it: the configuration (``config``), the run folder and the files kept there
(``runfolder``), the data (``data``), resuming (``resume``), callbacks and Ctrl-C (``callbacks``).
Its command line is ``train.py`` (``tinynet.cli.train``).

Randomness: one seed makes a run repeatable. It chooses the validation split and is split
(``np.random.SeedSequence.spawn``) into independent generators for initialisation, shuffling,
augmentation and dropout; their states are saved in every checkpoint, so a resumed run continues
exactly as an uninterrupted one would have.

Side effects: none that outlive a call. BLAS is limited to one thread only while the trainer works
(``tinynet.nn.parallel.one_blas_thread``), Ctrl-C is caught only during :meth:`Trainer.fit` in the main
thread (the previous handler is put back), and the trainer's thread pool is closed by
:meth:`Trainer.close` (``train`` and a ``with`` block do it).
"""

import math
import time
from dataclasses import replace

import numpy as np

from ..datasets.augment import augment_batch
from ..datasets.idx import to_float
from ..nn.layers import Dropout, SoftmaxCrossEntropy
from ..nn.optim import learning_rate
from ..nn.parallel import DataParallel, one_blas_thread
from ..nn.step import train_step
from .callbacks import Callbacks, StopFlag
from .config import BEST_BY, TrainConfig
from .data import epoch_order, load_run_data
from .divergence import all_finite, diverged
from .errors import TrainingError
from .runfolder import RunFolder, resume_config
from .scores import EpochBar, EpochTally, Scores, run_summary
from .state import RunState


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

    Callbacks (``tinynet.training.callbacks.Callbacks``) receive this object; the attributes they
    may read are ``run_dir``, ``config``, ``model``, ``classes``, ``val_images``, ``val_labels``,
    ``batches_per_epoch``, ``total_steps`` and ``state`` (``epoch``, ``step``, ``batch``,
    ``history``, ``best_val_accuracy``). The trainer owns a thread pool: :meth:`close` it, or use
    it as a context manager.
    """

    def __init__(self, config, run_dir, *, resume=False, download=True, progress=True,
                 log=print, callbacks=(), train_data=None, test_data=None):
        self.started = time.perf_counter()
        self.folder, self.config, self.data, self.run, self.model = prepare_run(
            config, run_dir, resume, download, log, train_data, test_data)
        self.run_dir, self.progress, self.log = self.folder.path, progress, log
        self.classes, self.train_idx = self.data.classes, self.data.train_idx
        self.val_images, self.val_labels = self.data.val_images, self.data.val_labels
        self.net = DataParallel(self.model, self.config.threads)  # fixed slices of each batch, run by the threads
        self.scores = Scores(self.net, self.data, self.config)
        self.loss_fn = SoftmaxCrossEntropy(self.config.label_smoothing)
        self.batches_per_epoch = math.ceil(len(self.train_idx) / self.config.batch_size)
        self.total_steps = self.batches_per_epoch * self.config.epochs
        self.notify = Callbacks(callbacks, log)
        self._stop = StopFlag()  # not installed: fit() installs one
        self._tally = None  # the current epoch's running sums (in this process)
        self._started = False

    @property
    def state(self):
        """The run's counters: ``epoch``, ``step``, ``batch``, ``history``, ``best_val_accuracy``."""
        return self.run.counters

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
        record (``loss``, ``accuracy``, ``lr``...). TrainingError if the loss or a weight (or a
        gradient) becomes NaN or infinite (``tinynet.training.divergence``; last.npz stays the last
        good checkpoint), or if the epoch's batches are done (call :meth:`end_epoch`)."""
        config, state = self.config, self.state
        if state["epoch"] >= config.epochs or state["batch"] >= self.batches_per_epoch:
            raise TrainingError("the run is finished" if state["epoch"] >= config.epochs else
                                f"epoch {state['epoch'] + 1}'s batches are done: call end_epoch()")
        self.start()
        x, y = self._next_batch()
        optimizer = self.run.optimizer
        optimizer.lr = learning_rate(config.lr_schedule, config.lr, state["step"], self.total_steps)
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below
            loss, logits = train_step(self.net, self.loss_fn, optimizer, x, y)
        if not (math.isfinite(loss) and all_finite(p for _, p, _ in self.model.parameters())):
            self._diverged(loss)
        state["batch"] += 1
        state["step"] += 1
        correct = int(np.sum(logits.argmax(axis=1) == y))
        self._tally.add(loss, correct, len(y))
        record = {"step": state["step"], "epoch": state["epoch"] + 1, "batch": state["batch"], "loss": loss,
                  "accuracy": correct / len(y), "lr": optimizer.lr, "images": len(y),
                  "seconds": time.perf_counter() - self.clock}
        self.notify("on_step", self, record)
        return record

    def _next_batch(self):
        """The current batch's images (float32, augmented when the recipe says so) and labels."""
        config, data, run, batch = self.config, self.data, self.run, self.state["batch"]
        if run.order is None:
            run.order = epoch_order(self.train_idx, data.labels, config.class_balance, run.rngs["shuffle"])
        if self._tally is None:
            self._tally = EpochTally()
        idx = run.order[batch * config.batch_size:(batch + 1) * config.batch_size]
        x, y = to_float(data.images[idx]), data.labels[idx]
        if config.augment:
            x = augment_batch(x, run.rngs["augment"], config.augment_strength,
                              self.net.map_rows)  # warped in the threads
        return x, y

    def _diverged(self, loss):
        error = diverged(loss, self.model, self.run.optimizer, self.state, self.folder.last)
        self.notify("on_end", self, {"status": "failed", "error": str(error)})
        raise error

    def run_epoch(self):
        """The current epoch's remaining steps (with a progress bar), then :meth:`end_epoch`; returns
        the epoch's record, or None when Ctrl-C stopped it during :meth:`fit`."""
        state = self.state
        bar = EpochBar(self.progress, self.batches_per_epoch, state["batch"],
                       f"epoch {state['epoch'] + 1}/{self.config.epochs}")
        try:
            while state["batch"] < self.batches_per_epoch:
                if self._stop.requested:
                    return None
                self.step()
                bar.update(state["batch"], self._tally)
        finally:
            bar.close()
        return self.end_epoch()

    def evaluate(self, images=None, labels=None):
        """``(loss, accuracy, balanced accuracy)`` of the model on uint8 images (N, 28, 28) and
        their labels; by default on the validation split (NaN for an empty one)."""
        return self.scores.evaluate(images, labels)

    def end_epoch(self):
        """Close the current epoch: evaluate, record it in ``metrics.jsonl`` and ``curves.png``,
        save ``best.npz`` (if it is the best so far) and ``last.npz``, tell the callbacks and log
        a line. Returns the epoch's record."""
        state = self.state
        record = self.scores.epoch_record(state["epoch"] + 1, self._tally or EpochTally(), self.run.optimizer.lr)
        state["history"].append(record)
        state["epoch"] += 1
        state["batch"] = 0
        self.run.order = self._tally = None
        score = record[BEST_BY[self.config.best_by]]
        if score > state["best_val_accuracy"] or math.isnan(score):
            state["best_val_accuracy"] = score
            self.save_checkpoint(self.folder.best)
        self.save_checkpoint(self.folder.last)
        self.folder.write_history(state["history"])
        self.notify("on_epoch", self, record)
        self.log(self.scores.epoch_line(record))
        return record

    def save_checkpoint(self, path):
        """Save the weights and the whole training state (momentum, counters, generators, the
        current epoch's order when it is under way) to ``path``: :func:`train` with ``resume``
        continues from a ``last.npz`` written this way exactly as if never stopped."""
        self.run.save(path, self.model)

    def fit(self):
        """Train the remaining epochs, then :meth:`finish`; returns the summary (``status``
        ``finished``, or ``interrupted`` after a Ctrl-C, which saves ``last.npz`` first)."""
        try:
            with one_blas_thread, StopFlag() as self._stop:
                self.start()
                while self.state["epoch"] < self.config.epochs:
                    if self.run_epoch() is None:
                        return self._interrupted()
        finally:
            self._stop = StopFlag()  # a later run_epoch() in a notebook starts unstopped
        return self.finish()

    def _interrupted(self):
        state, last = self.state, self.folder.last
        self.save_checkpoint(last)
        self.log(f"stopped by Ctrl-C at epoch {state['epoch'] + 1}, batch {state['batch']}; saved "
                 f"{last}. Resume with: python3 train.py --resume {self.run_dir}")
        summary = run_summary(state, "interrupted", self.started, self.run_dir)
        self.notify("on_end", self, summary)
        return summary

    def finish(self):
        """The end of the run: test evaluation, ``summary.json``, ``filters.png``, the callbacks'
        ``on_end`` and a log line. Returns the summary."""
        scores = self.scores.test_scores(self.state["history"])
        summary = run_summary(self.state, "finished", self.started, self.run_dir, **scores)
        self.folder.write_summary(summary, self.model.layers[0].params["W"])  # conv1's filters, as trained
        self.notify("on_end", self, summary)
        self.log(self.scores.summary_line(summary))
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


def prepare_run(config, run_dir, resume=False, download=True, log=print, train_data=None, test_data=None):
    """What a run needs before its first step, as ``(folder, config, data, run state, model)``:
    the run folder checked (``tinynet.training.runfolder``), the configuration (with ``resume``,
    the one saved there), the data loaded (``tinynet.training.data``), and the model built and
    ``config.json`` written, or with ``resume`` the model and training state put back from
    ``last.npz`` (``tinynet.training.state``). On a failure to load the data, the folders this
    run created are removed where still empty."""
    folder = RunFolder(run_dir)
    config = _resume_config(folder.path, config) if resume else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig (None only with resume), not {type(config).__name__}")
    folder.prepare()
    try:
        data = load_run_data(config, download, log, train_data, test_data)
    except BaseException:  # no data, no run
        folder.discard()
        raise
    run = RunState(config, data)  # the model's description, counters, optimiser, generators
    if resume:
        model = run.restore(folder.last)
        if run.counters["history"]:  # a kill between last.npz and these files may have left them behind
            folder.write_history(run.counters["history"])
        log(f"resuming {folder.path} at epoch {run.counters['epoch'] + 1}, batch {run.counters['batch']}")
    else:
        model = run.new_model()
        folder.write_config(config)
    for layer in model.layers:
        if isinstance(layer, Dropout):
            layer.rng = run.rngs["dropout"]
    log(f"training on {len(data.train_idx)} images of {config.dataset} ({len(data.classes)} classes), "
        f"validating on {len(data.val_labels)}, testing on {len(data.test_labels)}; run folder {folder.path}")
    return folder, config, data, run, model


def _resume_config(run_dir, config):
    """``train(config, run_dir, resume=True)``'s configuration: the saved one, with ``config``'s
    ``epochs`` and ``threads`` when ``config`` is given (threads None: every core)."""
    saved = resume_config(run_dir)
    return saved if config is None else replace(saved, epochs=config.epochs, threads=config.threads)
