"""The data of a training run: loaded once (``tinynet.datasets.load``), the training set split into
training and validation images (stratified, seeded), and the order in which each epoch visits them."""

from dataclasses import dataclass

import numpy as np

from ..datasets.idx import Split, train_val_split
from ..datasets.load import load_dataset
from ..errors import ArgumentError
from ..nn.layers import check_labels
from .errors import TrainingError

IMAGE_SHAPE = (28, 28)


@dataclass
class RunData:
    """A run's images (uint8, upright) and integer labels, by role.

    ``images`` / ``labels``: the whole training split, of which ``train_idx`` are trained on and
    the rest validate (``val_images``, ``val_labels``); ``test_*``: the test split (empty when
    there is none); ``external``: another labelled set validated on every epoch, or None."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple
    train_idx: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    external: Split | None


def load_run_data(config, download=True, log=print, train_data=None, test_data=None):
    """The :class:`RunData` of ``config``: ``train_data`` / ``test_data`` (``Split`` objects in
    memory; test may be None) when given, else ``config.dataset`` from ``config.data_dir``
    (downloaded when missing, unless ``download`` is False); the external set from
    ``config.val_data`` when set. DataError for missing or bad files, TrainingError for sets whose
    classes do not match or, in memory, whose labels are not one per image in [0, K)."""
    if train_data is None:
        splits = load_dataset(config.dataset, config.data_dir, download=download, out=log)
        train_data, test_data = splits["train"], splits["test"]
    else:
        check_split_labels(train_data, "train_data")
        if test_data is not None and tuple(test_data.classes) != tuple(train_data.classes):
            raise TrainingError(f"test_data's classes do not match train_data's "
                                f"({len(test_data.classes)} vs {len(train_data.classes)})")
        if test_data is not None:
            check_split_labels(test_data, "test_data")
    external = None
    if config.val_data:
        external = load_dataset(config.val_dataset, config.val_data, ("test",), download=download,
                                out=log)["test"]
        if external.classes != train_data.classes:
            raise TrainingError(f"{config.val_dataset} in {config.val_data}: its classes do not match "
                                f"the training set's ({len(external.classes)} vs {len(train_data.classes)})")
    train_idx, val_idx = train_val_split(train_data.labels, config.val_fraction, config.seed)
    if config.limit:
        train_idx = train_idx[:config.limit]
    if test_data is None:
        test_data = Split(np.zeros((0, *IMAGE_SHAPE), np.uint8), np.zeros(0, np.int64), train_data.classes, "")
    return RunData(train_data.images, train_data.labels, train_data.classes, train_idx,
                   train_data.images[val_idx], train_data.labels[val_idx], test_data.images,
                   test_data.labels, external)


def check_split_labels(split, role):
    """TrainingError unless the in-memory ``Split`` ``split`` (passed as ``role``) has one integer
    label per image, each a class index in [0, len(classes)) (a label of -1 would train class K-1)."""
    try:
        check_labels(split.labels, len(split.classes), len(split.images))
    except ArgumentError as e:
        raise TrainingError(f"{role} ({len(split.images)} images, {len(split.classes)} classes): {e}") from None


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
