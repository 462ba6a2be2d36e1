"""TensorBoard event files of a run (``train.py --tensorboard``), for those who compare runs in
TensorBoard: :class:`TensorBoardLog` is a training callback writing, with tensorboardX (the
optional extra ``pip install "tinynet[tensorboard]"``), into ``RUN_DIR/tensorboard/``:

- every ``every`` steps the step record's scalars (``step/loss``, ``step/accuracy``: running means
  since the previous record; ``step/lr``, ``step/images_per_second``), the same numbers as the
  run folder's ``steps.jsonl`` (``tinynet.training.runlog``);
- after every epoch its ``metrics.jsonl`` numbers as ``epoch/<name>`` (x axis: the step), a
  histogram of every parameter (``weights/<layer>.<name>``) and conv1's filters as an image
  (``conv1/filters``: red positive, blue negative, one scale for all); the last two also at the start.

Open with ``tensorboard --logdir runs`` (TensorBoard itself is not needed to write them).
"""

import numpy as np

from ..errors import TinynetError
from ..files.plots import tile
from ..nn.model import first_conv
from .runlog import STEP_EVERY, StepMeter

INSTALL = 'pip install "tinynet[tensorboard]"  (or: pip install tensorboardX)'


class TensorBoardUnavailable(TinynetError, RuntimeError):
    """tensorboardX is not installed; the message says how to install it."""


def summary_writer_class():
    """tensorboardX's ``SummaryWriter``; TensorBoardUnavailable when it is missing."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise TensorBoardUnavailable(f"--tensorboard needs tensorboardX, which is not installed "
                                     f"({e}): {INSTALL}") from None
    return SummaryWriter


def filters_image(weights, columns=5, zoom=8):
    """conv weights (C_out, 1, kH, kW) as one RGB image float (3, H, W) in [0, 1]: red for positive,
    blue for negative (one scale for all filters), white for 0 and between the filters."""
    limit = float(np.abs(weights).max()) or 1.0
    tiled = tile(weights[:, 0] / limit, columns)  # NaN between the filters
    pos, neg = np.nan_to_num(np.clip(tiled, 0, 1)), np.nan_to_num(np.clip(-tiled, 0, 1))
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos])
    return np.clip(rgb, 0, 1).repeat(zoom, axis=1).repeat(zoom, axis=2)


class TensorBoardLog:
    """The training callback (see the module docstring). Raises TensorBoardUnavailable when
    created without tensorboardX installed, before any training."""

    def __init__(self, every=STEP_EVERY, logdir_name="tensorboard"):
        self.SummaryWriter = summary_writer_class()
        self.every, self.logdir_name = every, logdir_name
        self.writer = None

    def on_start(self, trainer):
        self.writer = self.SummaryWriter(logdir=str(trainer.run_dir / self.logdir_name), flush_secs=10)
        self.meter = StepMeter(self.every, trainer.batches_per_epoch, trainer.total_steps)
        self.pictures(trainer)

    def on_step(self, trainer, record):
        out = self.meter.add(record)
        if out is not None:
            for key in ("loss", "accuracy", "lr", "images_per_second"):
                if out[key] is not None:
                    self.writer.add_scalar(f"step/{key}", out[key], out["step"])

    def on_epoch(self, trainer, record):
        step = trainer.state["step"]
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, step)
        self.pictures(trainer)
        self.writer.flush()

    def pictures(self, trainer):
        step = trainer.state["step"]
        self.writer.add_image("conv1/filters", filters_image(first_conv(trainer.model).params["W"]), step)
        for name, value, _ in trainer.model.parameters():
            self.writer.add_histogram(f"weights/{name}", value, step)

    def on_end(self, trainer, summary):
        if self.writer is not None:
            self.writer.close()
