"""Make tinynet's shipped sample (``tinynet/datasets/sample/``, loaded by ``tinynet.datasets.load.load_sample()``) from
the official EMNIST-ByMerge test files::

    python3 docs/make_sample.py DIR

DIR holds ``emnist-bymerge-test-images-idx3-ubyte.gz``, ``...-labels-idx1-ubyte.gz`` and
``emnist-bymerge-mapping.txt`` as NIST published them (``python3 -m tinynet download --dataset
emnist-bymerge --split test --data-dir DIR``). For each class k (0..46) it draws 80 of that class's
images without replacement with ``np.random.default_rng(SEED).choice``, one generator for all
classes in label order, and keeps them in file order. It writes the images (stored transposed, as
in every EMNIST file), labels, the mapping, and ``indices.txt`` (each kept image's position in the
official file), byte for byte the same on every run.
"""

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

from tinynet.datasets.idx import load_split, write_idx
from tinynet.datasets.load import SAMPLE_DIR, SAMPLE_NAME

PER_CLASS = 80
SEED = 20261205


def choose(labels, num_classes, per_class=PER_CLASS, seed=SEED):
    """Positions of the sample's images in the official file, in file order."""
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == k), per_class, replace=False)
              for k in range(num_classes)]
    return np.sort(np.concatenate(picked))


def main(source):
    source = Path(source)
    split = load_split(source, "emnist-bymerge", "test")
    idx = choose(split.labels, len(split.classes))
    SAMPLE_DIR.mkdir(exist_ok=True)
    write_idx(SAMPLE_DIR / f"{SAMPLE_NAME}-test-images-idx3-ubyte.gz", split.images[idx].transpose(0, 2, 1))
    write_idx(SAMPLE_DIR / f"{SAMPLE_NAME}-test-labels-idx1-ubyte.gz", split.labels[idx].astype(np.uint8))
    shutil.copyfile(source / "emnist-bymerge-mapping.txt", SAMPLE_DIR / f"{SAMPLE_NAME}-mapping.txt")
    (SAMPLE_DIR / "indices.txt").write_text("".join(f"{i}\n" for i in idx))
    images = source / "emnist-bymerge-test-images-idx3-ubyte.gz"
    digest = hashlib.sha256(images.read_bytes()).hexdigest()
    print(f"wrote {len(idx)} images ({PER_CLASS} per class) to {SAMPLE_DIR}/ from {images} (sha256 {digest})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
