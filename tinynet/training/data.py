"""The data of a training run: loaded once (``tinynet.datasets.load``), the training set split into
training and validation images (stratified, seeded), and the order in which each epoch visits them.
The images may have any size, the same in every split: the network takes its input size from them."""

from dataclasses import dataclass

import numpy as np

from ..datasets.idx import UPRIGHT_NAMES, Split, train_val_split
from ..datasets.load import SAMPLE_DATASET, load_dataset
from ..errors import ArgumentError
from ..nn.layers import check_labels
from .errors import TrainingError


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

    @property
    def input_shape(self):
        """One image's shape as the network takes it: (1, H, W)."""
        return (1, *self.images.shape[1:])


def load_run_data(config, download=True, log=print, train_data=None, test_data=None):
    """The :class:`RunData` of ``config``: ``train_data`` / ``test_data`` (``Split`` objects in
    memory; test may be None) when given, else ``config.dataset`` from ``config.data_dir``
    (downloaded when missing, unless ``download`` is False); the external set from
    ``config.val_data`` when set. DataError for missing or bad files, TrainingError for sets whose
    classes or image sizes do not match or, in memory, whose labels are not one per image in
    [0, K). ``config.orientation`` says how the files of both sets store their images (None: by
    each set's name, ``tinynet.datasets.idx.stored_transposed``)."""
    if train_data is None:
        splits = load_dataset(config.dataset, config.data_dir, download=download, out=log,
                              orientation=config.orientation)
        train_data, test_data = splits["train"], splits["test"]
    else:
        check_split_labels(train_data, "train_data")
        if test_data is not None:
            _check_fits(test_data, train_data, "test_data")
            check_split_labels(test_data, "test_data")
    external = None
    if config.val_data:
        external = load_dataset(config.val_dataset, config.val_data, ("test",), download=download,
                                out=log, orientation=config.orientation)["test"]
        _check_fits(external, train_data, f"{config.val_dataset} in {config.val_data}")
    train_idx, val_idx = train_val_split(train_data.labels, config.val_fraction, config.seed)
    if config.limit:
        train_idx = train_idx[:config.limit]
    if test_data is None:
        test_data = Split(train_data.images[:0], np.zeros(0, np.int64), train_data.classes, "")
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


def _check_fits(other, train_data, what):
    """TrainingError unless ``other``'s classes and image size are the training set's."""
    if tuple(other.classes) != tuple(train_data.classes):
        raise TrainingError(f"{what}: its classes do not match the training set's "
                            f"({len(other.classes)} vs {len(train_data.classes)})")
    if other.images.shape[1:] != train_data.images.shape[1:]:
        size = "x".join(map(str, other.images.shape[1:]))
        raise TrainingError(f"{what}: its images are {size}, the training set's "
                            f"{'x'.join(map(str, train_data.images.shape[1:]))}")


def orientation_note(config):
    """The line a run logs when its data set's images were read as transposed only because tinynet
    reads every set that way unless told (or named like an upright one), else None: a run never
    trains silently on sideways images."""
    name = config.dataset
    if config.orientation is None and name != SAMPLE_DATASET and not name.lower().startswith(("emnist",
                                                                                             *UPRIGHT_NAMES)):
        return (f"note: {name}'s IDX files were read as storing each image transposed, as EMNIST's do; if "
                f"they store them upright (as MNIST's, Fashion-MNIST's and KMNIST's do), train with "
                f"--orientation upright")
    return None


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
