"""One way in for a data set: find it, download it where that is allowed, load it.

    from tinynet.datasets.load import load_dataset
    splits = load_dataset("emnist-balanced", "data")        # {"train": Split, "test": Split}
    test = load_dataset("emnist-balanced", "data", ("test",))["test"]
    splits = load_dataset("sample")                         # the shipped sample: no folder, offline

A data set is a name and a folder (``tinynet.datasets.idx`` says which files make one, and how
their images are oriented). Files that are missing are extracted from the official EMNIST archive,
downloaded first where allowed (``tinynet.datasets.download``); then each split is read and checked.
The trainer, the command lines and scripts ask this one function, once per data set.

The name ``sample`` is the real sample that ships with tinynet (:func:`load_sample`), split once
and for all into 3,008 training and 752 test images (:func:`sample_splits`;
``tinynet/datasets/sample/SOURCE.md``): a data set every command knows, with no folder and no
download.
"""

from pathlib import Path

from .download import ensure_dataset
from .idx import SPLITS, Split, load_split, train_val_split

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"  # package data, see load_sample()
SAMPLE_NAME = "emnist-sample"
SAMPLE_DATASET = "sample"  # its name as a data set (train.py --dataset sample)
SAMPLE_TEST_FRACTION, SAMPLE_SEED = 0.2, 0  # its one split: train_val_split(labels, 0.2, seed=0)


def load_dataset(name, data_dir="data", splits=SPLITS, *, download=True, out=print, orientation=None):
    """``{split: Split}`` of dataset ``name`` in ``data_dir``, for each of ``splits``.

    ``name="sample"``: the shipped sample's fixed split (:func:`sample_splits`); ``data_dir``,
    ``download`` and ``orientation`` do not apply. Otherwise missing files are installed first
    (``ensure_dataset``: from the EMNIST archive in ``data_dir``, downloaded unless ``download`` is
    False; ``out`` receives progress lines), and the images are read upright (``orientation``: how
    the files store them, ``tinynet.datasets.idx.stored_transposed``). Raises
    ``tinynet.datasets.idx.DataError`` naming the file and the fault for anything missing or
    malformed."""
    if name == SAMPLE_DATASET:
        return {split: sample_splits()[split] for split in splits}
    ensure_dataset(data_dir, name, download=download, splits=tuple(splits), out=out)
    return {split: load_split(data_dir, name, split, orientation) for split in splits}


def load_sample():
    """The small real sample that ships with tinynet: 80 images of each of the 47 classes (3,760)
    from the official EMNIST-ByMerge test images, with the EMNIST-Balanced mapping.

    For notebooks, examples and tests that must run on any clone; never for accuracy figures (its
    images are in the resplit data the bundled model was trained and tested on). Which images, and
    how they were chosen: ``tinynet/datasets/sample/SOURCE.md``.
    """
    return load_split(SAMPLE_DIR, SAMPLE_NAME, "test")


def sample_splits():
    """The shipped sample as the data set ``sample``: ``{"train": Split, "test": Split}``, its 3,760
    images split once and for all by ``train_val_split(labels, 0.2, seed=0)`` (stratified: 64
    training and 16 test images of each class, 3,008 and 752 in all, each split in the sample's
    order). Each split's ``source`` names it."""
    sample = load_sample()
    train_idx, test_idx = train_val_split(sample.labels, SAMPLE_TEST_FRACTION, SAMPLE_SEED)
    return {split: Split(sample.images[idx], sample.labels[idx], sample.classes,
                         f"{sample.source} ({split} split of the sample: {len(idx)} images)")
            for split, idx in (("train", train_idx), ("test", test_idx))}
