"""Data sets in EMNIST's format for tests, benchmarks and quick experiments that must run anywhere
(no download): a tiny synthetic one a network learns in seconds, and the real sample shipped with
tinynet (``tinynet.datasets.load.load_sample()``) written as a data folder."""

from pathlib import Path

import numpy as np

from ..datasets.idx import train_val_split, write_idx
from ..datasets.load import SAMPLE_DIR, SAMPLE_NAME, load_sample


def write_toy_dataset(folder, n_train=600, n_test=200, classes=5, seed=0, gz=True):
    """Write a tiny synthetic dataset ``tiny`` in EMNIST's format.

    Each image is faint noise plus a bright bar whose height depends on its class (so a network
    can learn it in seconds); stored transposed and named like EMNIST's files, with a mapping
    ``A, B, C, ...``. Returns ``folder`` (load it with ``load_split(folder, "tiny", split)``).
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, classes, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 4 + 4 * label:10 + 4 * label, 8:20] = 255
        write_idx(folder / f"tiny-{split}-images-idx3-ubyte{ext}", images.transpose(0, 2, 1))
        write_idx(folder / f"tiny-{split}-labels-idx1-ubyte{ext}", labels)
    (folder / "tiny-mapping.txt").write_text("".join(f"{k} {65 + k}\n" for k in range(classes)))
    return folder


def write_sample_dataset(folder, test_fraction=0.2, seed=0):
    """Write the real sample shipped with tinynet (``tinynet.datasets.load.load_sample``: 80 images of each
    of the 47 classes) as a dataset ``sample`` in EMNIST's format, split into train and test with
    ``train_val_split(labels, test_fraction, seed)`` (stratified: 3,008 and 752 images at 0.2), for
    tests of command lines that read a data folder. Returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sample = load_sample()
    for split, idx in zip(("train", "test"), train_val_split(sample.labels, test_fraction, seed)):
        write_idx(folder / f"sample-{split}-images-idx3-ubyte.gz", sample.images[idx].transpose(0, 2, 1))
        write_idx(folder / f"sample-{split}-labels-idx1-ubyte.gz", sample.labels[idx].astype(np.uint8))
    (folder / "sample-mapping.txt").write_bytes((SAMPLE_DIR / f"{SAMPLE_NAME}-mapping.txt").read_bytes())
    return folder
