"""What defines a training run: :class:`TrainConfig`, checked when it is made, and the named
recipes (:data:`RECIPES`). The checks share their value rules and wording with the command line
(``tinynet.training.values``), so the Python API and ``train.py`` refuse the same values the same
way."""

import os
from dataclasses import dataclass, fields

from ..datasets.idx import ORIENTATIONS
from ..nn.optim import SCHEDULES
from .errors import ConfigError
from .values import value_problem

# --best-by: which metric of an epoch's record picks best.npz
BEST_BY = {"val": "val_accuracy", "val-balanced": "val_balanced_accuracy", "external": "external_accuracy"}
INITS = ("glorot", "he")
CLASS_BALANCE = ("none", "prior", "sample")

FIELD_KINDS = {
    "data_dir": "path", "dataset": "name", "epochs": "positive_int", "batch_size": "positive_int",
    "lr": "positive_float", "momentum": "fraction", "nesterov": "bool", "weight_decay": "non_negative_float",
    "lr_schedule": SCHEDULES, "augment": "bool", "augment_strength": "positive_float",
    "label_smoothing": "fraction", "dropout": "fraction", "init": INITS, "class_balance": CLASS_BALANCE,
    "val_fraction": "fraction", "val_data": "path", "val_dataset": "name", "best_by": tuple(BEST_BY),
    "seed": "non_negative_int", "limit": "positive_int", "threads": "positive_int",
    "orientation": ORIENTATIONS,
}
OPTIONAL = {"val_data", "val_dataset", "limit", "threads", "orientation"}  # None: not set


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. The defaults are the original recipe.

    Checked when made (also by ``dataclasses.replace``): a value training cannot use raises
    :class:`ConfigError` before any work starts, with the command line's wording. Frozen, so that
    a checked config stays checked: ``config.lr = -5`` raises ``dataclasses.FrozenInstanceError``;
    ``dataclasses.replace(config, lr=0.1)`` makes a changed copy, checked like any other."""

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
    orientation: str | None = None  # how the IDX files store images; None: by the data set's name

    def __post_init__(self):
        for name, kind in FIELD_KINDS.items():
            value = getattr(self, name)
            if value is None and name in OPTIONAL:
                continue
            problem = value_problem(kind, value)
            if problem:
                raise ConfigError("{}: " + problem.replace("{", "{{").replace("}", "}}"), name)
            # the normal forms (frozen: set through object.__setattr__, while the config is being made)
            if kind == "path":
                object.__setattr__(self, name, os.fspath(value))  # a pathlib.Path is welcome; config.json holds text
            elif kind in ("positive_float", "non_negative_float", "fraction"):
                object.__setattr__(self, name, float(value))
            elif kind in ("positive_int", "non_negative_int"):
                object.__setattr__(self, name, int(value))
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
# Chosen on the validation split (docs/accuracy.md); every ingredient is a flag too.
STRONG = {"momentum": 0.9, "nesterov": True, "lr": 0.05, "lr_schedule": "one-cycle", "weight_decay": 5e-4,
          "init": "he", "augment": True, "label_smoothing": 0.1, "dropout": 0.25}
RECIPES = {
    "original": {},
    "strong": STRONG,
    # For handwriting the model never saw, with every class equally likely (docs/accuracy.md):
    # the strong recipe trained twice as long on class-balanced draws of the training set,
    # best.npz picked by balanced validation accuracy.
    "unseen": {**STRONG, "epochs": 40, "class_balance": "sample", "best_by": "val-balanced"},
}
