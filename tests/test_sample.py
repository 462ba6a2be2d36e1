"""The sample shipped with tinynet (``tinynet.datasets.load.load_sample``): real, balanced, and exactly the
images its note (tinynet/datasets/sample/SOURCE.md) says."""

import numpy as np

from conftest import SHARED_DATA, require_dir
from tinynet.datasets.idx import load_split
from tinynet.datasets.load import SAMPLE_DIR, load_sample


def test_the_sample_is_80_images_of_each_of_the_47_classes():
    sample = load_sample()
    assert sample.images.shape == (3760, 28, 28) and sample.images.dtype == np.uint8
    assert np.array_equal(np.bincount(sample.labels), np.full(47, 80))
    assert sample.classes[:3] == ("0", "1", "2") and sample.classes[10] == "A" and sample.classes[36] == "a"
    assert sum(f.stat().st_size for f in SAMPLE_DIR.iterdir()) < 1_000_000  # the committed bytes
    ink = sample.images.reshape(len(sample.images), -1).mean(axis=1)
    assert ink.min() > 5 and np.median(ink) < 80  # every image has ink; light ink on dark


def test_the_sample_holds_the_official_images_its_indices_name():
    """Each image and label equals the official ByMerge test file's at the position indices.txt gives."""
    bymerge = require_dir(SHARED_DATA / "emnist-bymerge")
    official = load_split(bymerge, "emnist-bymerge", "test")
    sample = load_sample()
    idx = np.loadtxt(SAMPLE_DIR / "indices.txt", dtype=np.int64)
    assert np.all(np.diff(idx) > 0) and len(idx) == len(sample.labels)
    assert np.array_equal(official.images[idx], sample.images)
    assert np.array_equal(official.labels[idx], sample.labels)
    assert official.classes == sample.classes
