"""The run folder as a live record of training: what the training page (``tinynet.web.watch``) and
scripts read while a run goes on. :class:`Recorder` is a training callback
(``train(..., callbacks=[Recorder()])``; ``train.py --watch`` adds it) that writes, beside the
trainer's own ``config.json``, ``metrics.jsonl`` and ``summary.json``:

- ``steps.jsonl``: one JSON record every ``every`` steps: ``step``, ``epoch`` (1-based),
  ``progress`` (epochs done, fractional: ``step / batches_per_epoch``), ``loss`` and ``accuracy``
  (running means of the training batches since the previous record), ``lr``,
  ``images_per_second``, ``eta_seconds`` (steps left at the recent pace, evaluations not counted)
  and ``seconds`` (since this process started training). Appended and flushed, never rewritten: a
  run killed mid-line leaves a truncated last line, which readers skip. After a resume, records
  may repeat steps already logged; the later ones count.
- ``snapshot.json``: written atomically (``tinynet.files.atomic``) at the start, after the first epoch
  and at the end; in between every ``snapshot_every`` steps and after each epoch, but never more
  often than keeps those snapshots within ``budget`` (0.5%) of the run's time: a snapshot that
  took 0.1 s waits for 20 s of training before the next one. It holds the first convolution's
  filters (where the network has one), the predictions on a fixed grid of validation images, and
  the per-class recall and most confused pairs on a fixed sample of a few hundred validation images
  (see :func:`snapshot`).
- ``status.json``: written atomically at the start (``"running"``, with the process id and host)
  and at the end (``"finished"``, ``"stopped"`` for Ctrl-C or ``"failed"`` with the ``error``),
  with ``recorder_seconds``: the time the recorder itself took (``recorder_step_seconds`` of it
  inside the training loop, between steps).

Costs: a step record is a few additions and, every ``every`` steps, one ``write``; a snapshot is
a forward pass over the sample (:data:`SAMPLE` images, 0.1 to 0.3 s on the 2-core machine) and a
small JSON file, paced by ``budget``. Measured: docs/watch.md.
"""

import base64
import json
import os
import socket
import time

import numpy as np

from ..files.atomic import atomic_write
from ..files.plots import signed_unit
from ..nn.model import first_conv
from ..nn.parallel import one_blas_thread
from ..predict.metrics import confusion_matrix, most_confused, per_class_metrics, predict_logits

STEP_EVERY = 20  # steps between step records
SNAPSHOT_EVERY = 100  # steps between snapshots, at least (see BUDGET)
BUDGET = 0.005  # snapshots between epochs take at most this share of the training time
SAMPLE = 400  # validation images a snapshot predicts
GRID = 48  # of them, shown on the page with their predictions
STEPS_FILE, SNAPSHOT_FILE, STATUS_FILE = "steps.jsonl", "snapshot.json", "status.json"
END_STATUS = {"finished": "finished", "interrupted": "stopped", "failed": "failed"}


class StepMeter:
    """Running means of the training batches between records, and the pace: ``add(record)`` (an
    ``on_step`` record) returns a step record every ``every`` steps (and when ``force``), else None."""

    def __init__(self, every, batches_per_epoch, total_steps):
        self.every, self.batches_per_epoch, self.total_steps = every, batches_per_epoch, total_steps
        self.reset(None)

    def reset(self, seconds):
        self.loss = self.correct = 0.0
        self.images = self.steps = 0
        self.since = seconds

    def add(self, record, force=False):
        n = record["images"]
        self.loss += record["loss"] * n
        self.correct += record["accuracy"] * n
        self.images += n
        self.steps += 1
        if self.since is None:  # the first step of this process: its time includes compilation
            self.since = 0.0
        if not (force or record["step"] % self.every == 0):
            return None
        elapsed = record["seconds"] - self.since
        pace = elapsed / self.steps
        out = {"step": record["step"], "epoch": record["epoch"],
               "progress": round(record["step"] / self.batches_per_epoch, 4),
               "loss": self.loss / self.images, "accuracy": self.correct / self.images,
               "lr": record["lr"],
               "images_per_second": round(self.images / elapsed, 1) if elapsed > 0 else None,
               "eta_seconds": round(pace * (self.total_steps - record["step"]), 1),
               "seconds": round(record["seconds"], 3)}
        self.reset(record["seconds"])
        return out


def sample_indices(labels, size=SAMPLE, grid=GRID):
    """``(sample, grid)``: indices of ``size`` validation images spread evenly over the split, and
    ``grid`` of those (positions in the sample): the first image of each class, then the next ones."""
    sample = np.unique(np.linspace(0, len(labels) - 1, min(size, len(labels))).astype(np.int64))
    _, first = np.unique(labels[sample], return_index=True)
    rest = np.setdiff1d(np.arange(len(sample)), first)
    return sample, np.concatenate([np.sort(first), rest])[:grid]


def snapshot(model, images, labels, grid, classes, state):
    """The ``snapshot.json`` record: ``step``, ``epoch`` (epochs done), ``batch``, ``time``;
    ``filters``: the first convolution's filters ``{"name": "conv1", "data": [[[...]]] in [-1, 1],
    "scale": max |w|}`` (its first input channel), or null for a network without a convolution;
    ``grid``: ``{"images": base64 of the uint8 (n, H, W) images, "shape": [H, W], "labels",
    "predicted"}``;
    on the sample of ``len(labels)`` images: ``accuracy``, ``recall`` (per class; null for a class
    absent from the sample), ``support`` and ``confused`` ([true, predicted, count], most first)."""
    with one_blas_thread:  # as in training: single-threaded BLAS beats threads on small matmuls
        predicted = np.concatenate([logits.argmax(axis=1) for _, logits in predict_logits(model, images, 256)])
    confusion = confusion_matrix(labels, predicted, len(classes))
    _, recall, _, support = per_class_metrics(confusion)
    conv = first_conv(model)
    filters = None
    if conv is not None:
        data, scale = signed_unit(conv.params["W"][:, 0])
        filters = {"name": conv.name, "data": data, "scale": scale}
    return {"step": state["step"], "epoch": state["epoch"], "batch": state["batch"], "time": time.time(),
            "classes": list(classes), "filters": filters,
            "grid": {"images": base64.b64encode(np.ascontiguousarray(images[grid]).tobytes()).decode(),
                     "shape": list(images.shape[1:]), "labels": labels[grid].tolist(),
                     "predicted": predicted[grid].tolist()},
            "sample": len(labels), "accuracy": float(np.mean(predicted == labels)),
            "recall": [round(float(r), 4) if s else None for r, s in zip(recall, support)],
            "support": support.tolist(), "confused": [list(c) for c in most_confused(confusion)]}


def write_json(path, payload):
    with atomic_write(path, "w") as f:
        json.dump(payload, f, separators=(",", ":"))
        f.write("\n")


class Recorder:
    """The training callback that keeps the run folder's live record (see the module docstring)."""

    def __init__(self, every=STEP_EVERY, snapshot_every=SNAPSHOT_EVERY, sample=SAMPLE, grid=GRID, budget=BUDGET):
        """``budget``: None for a snapshot every ``snapshot_every`` steps whatever it costs."""
        self.every, self.snapshot_every, self.sample_size, self.grid_size = every, snapshot_every, sample, grid
        self.budget = budget
        self.seconds = 0.0  # spent in this recorder
        self.step_seconds = 0.0  # of which in on_step (inside the training loop)
        self.steps_file = None
        self.snapped = None  # the step of the last snapshot
        self.snapped_at = self.snapshot_cost = 0.0  # when (perf_counter) and how long it took

    def _timed(method):
        def timed(self, *args):
            started = time.perf_counter()
            try:
                return method(self, *args)
            finally:
                self.seconds += time.perf_counter() - started
        timed.__name__, timed.__doc__ = method.__name__, method.__doc__
        return timed

    def status(self, trainer, status, **extra):
        write_json(trainer.run_dir / STATUS_FILE, {
            "status": status, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
            "step": trainer.state["step"], "total_steps": trainer.total_steps,
            "epochs_done": trainer.state["epoch"], "recorder_seconds": round(self.seconds, 3),
            "recorder_step_seconds": round(self.step_seconds, 3), **extra})

    def snapshot(self, trainer):
        if not len(self.labels) or trainer.state["step"] == self.snapped:
            return
        started = time.perf_counter()
        self.snapped = trainer.state["step"]
        write_json(trainer.run_dir / SNAPSHOT_FILE, snapshot(
            trainer.model, self.images, self.labels, self.grid, trainer.classes, trainer.state))
        self.snapped_at = time.perf_counter()
        self.snapshot_cost = self.snapped_at - started

    def due(self):
        """Whether a snapshot now keeps within the budget (see the module docstring)."""
        return self.budget is None or (time.perf_counter() - self.snapped_at) * self.budget >= self.snapshot_cost

    @_timed
    def on_start(self, trainer):
        sample, self.grid = sample_indices(trainer.val_labels, self.sample_size, self.grid_size)
        self.images, self.labels = trainer.val_images[sample], trainer.val_labels[sample]
        self.meter = StepMeter(self.every, trainer.batches_per_epoch, trainer.total_steps)
        self.steps_file = open(trainer.run_dir / STEPS_FILE, "a", encoding="utf-8")
        self.status(trainer, "running")
        with one_blas_thread:  # compile the evaluation's kernels first, so the snapshot's cost is its own
            list(predict_logits(trainer.model, self.images[:2]))
        self.snapshot(trainer)

    @_timed
    def on_step(self, trainer, record):
        started = time.perf_counter()
        try:
            self.step(trainer, record)
        finally:
            self.step_seconds += time.perf_counter() - started

    def step(self, trainer, record):
        out = self.meter.add(record)
        if out is not None:
            self.steps_file.write(json.dumps(out) + "\n")
            self.steps_file.flush()
        if record["step"] % self.snapshot_every == 0 and self.due():
            self.snapshot(trainer)

    @_timed
    def on_epoch(self, trainer, record):
        if self.due() or trainer.state["epoch"] == 1:  # the first epoch's end: always worth a look
            self.snapshot(trainer)

    @_timed
    def on_end(self, trainer, summary):
        try:
            self.snapshot(trainer)
        finally:
            if self.steps_file is not None:
                self.steps_file.close()
        extra = {"error": summary["error"]} if "error" in summary else {}
        self.status(trainer, END_STATUS.get(summary["status"], summary["status"]), **extra)

    del _timed
