"""One way in for a data set: find it, download it where that is allowed, load it.

    from tinynet.datasets.load import load_dataset
    splits = load_dataset("emnist-balanced", "data")        # {"train": Split, "test": Split}
    test = load_dataset("emnist-balanced", "data", ("test",))["test"]

A data set is a name and a folder (``tinynet.datasets.idx`` says which files make one). Files that
are missing are extracted from the official EMNIST archive, downloaded first where allowed
(``tinynet.datasets.download``); then each split is read and checked. The trainer, the command
lines and scripts ask this one function, once per data set.

The real sample that ships with tinynet (:func:`load_sample`) needs neither a folder nor a download.
"""

from pathlib import Path

from .download import ensure_dataset
from .idx import SPLITS, load_split

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"  # package data, see load_sample()
SAMPLE_NAME = "emnist-sample"


def load_dataset(name, data_dir="data", splits=SPLITS, *, download=True, out=print):
    """``{split: Split}`` of dataset ``name`` in ``data_dir``, for each of ``splits``.

    Missing files are installed first (``ensure_dataset``: from the EMNIST archive in ``data_dir``,
    downloaded unless ``download`` is False; ``out`` receives progress lines). Raises
    ``tinynet.datasets.idx.DataError`` naming the file and the fault for anything missing or
    malformed."""
    ensure_dataset(data_dir, name, download=download, splits=tuple(splits), out=out)
    return {split: load_split(data_dir, name, split) for split in splits}


def load_sample():
    """The small real sample that ships with tinynet: 80 images of each of the 47 classes (3,760)
    from the official EMNIST-ByMerge test images, with the EMNIST-Balanced mapping.

    For notebooks, examples and tests that must run on any clone; never for accuracy figures (its
    images are in the resplit data the bundled model was trained and tested on). Which images, and
    how they were chosen: ``tinynet/datasets/sample/SOURCE.md``.
    """
    return load_split(SAMPLE_DIR, SAMPLE_NAME, "test")
