"""A run's training state: what a checkpoint holds besides the weights, so that a resumed run
continues exactly as an uninterrupted one would have: the counters and history, the optimiser's
momentum, the random generators and, in the middle of an epoch, its order of images.

Randomness: one seed makes a run repeatable. It is split (``np.random.SeedSequence.spawn``) into
independent generators for initialisation, shuffling, augmentation and dropout, and their states are
saved in every checkpoint.
"""

from dataclasses import asdict

import numpy as np

from ..files.checkpoint import load_checkpoint, save_checkpoint
from ..nn.model import build_model, input_shape
from ..nn.optim import SGD
from .errors import TrainingError

HISTORY_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
GENERATORS = ("init", "shuffle", "augment", "dropout")


class RunState:
    """The training state of a run with ``config`` on ``data`` (a ``tinynet.training.data.RunData``;
    see the module docstring): the model's ``architecture`` (its description, which checkpoints
    store: ``tinynet.training.network``; for a resumed run, the one its checkpoint holds),
    ``counters`` (``epoch``, ``step``, ``batch``, ``history``, ``best_val_accuracy``),
    ``optimizer``, ``rngs`` (one generator per name of :data:`GENERATORS`) and ``order`` (the
    current epoch's images, or None before its first step)."""

    def __init__(self, config, data, architecture=None):
        self.config, self.classes, self.train_idx = config, data.classes, data.train_idx
        self.input_shape, self.architecture = data.input_shape, architecture
        seeds = np.random.SeedSequence(config.seed).spawn(len(GENERATORS))
        self.rngs = dict(zip(GENERATORS, (np.random.default_rng(s) for s in seeds)))
        self.optimizer = SGD(config.lr, config.momentum, config.nesterov, config.weight_decay)
        self.counters = {"epoch": 0, "step": 0, "batch": 0, "history": [], "best_val_accuracy": -1.0}
        self.order = None

    def new_model(self):
        """A freshly initialised model (from the ``init`` generator)."""
        return build_model(self.architecture, self.rngs["init"], init=self.config.init)

    def save(self, path, model):
        """``model``'s weights and this state, to checkpoint ``path``."""
        meta = {"recipe": asdict(self.config), "training": self.counters,
                "rng_state": {name: rng.bit_generator.state for name, rng in self.rngs.items()}}
        extra = None if self.order is None else {"order": self.order}
        save_checkpoint(path, model, self.architecture, self.classes, meta, self.optimizer.state_dict(), extra)

    def restore(self, path):
        """The model saved in checkpoint ``path`` (its network, whatever it is), with this state put
        back from it; TrainingError when it is not a resumable checkpoint of this run (other classes,
        another input size, an epoch order not drawn from these training images)."""
        model, meta, velocity, extra = load_checkpoint(path)
        if meta["classes"] != list(self.classes) or input_shape(model) != self.input_shape:
            raise TrainingError(f"{path}: checkpoint does not match the data (its network takes "
                                f"{input_shape(model)} images of {len(meta['classes'])} classes, the data has "
                                f"{self.input_shape} images of {len(self.classes)})")
        self.architecture = meta["architecture"]
        self.counters, self.order = _restored(path, meta, velocity, extra, self.optimizer, self.rngs,
                                              self.train_idx, self.config.class_balance == "sample")
        return model


def _restored(path, meta, velocity, extra, optimizer, rngs, train_idx, resampled=False):
    """Put the training state saved in checkpoint ``path`` back: momentum into ``optimizer``, the
    random generators' states into ``rngs``. Returns ``(counters, order)`` (order: the interrupted
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
