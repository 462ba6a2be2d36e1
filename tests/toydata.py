"""A tiny synthetic data set in EMNIST's format: a helper for the tests and the benchmarks
(``bench/`` puts this folder on ``sys.path``), not part of the library. IDX files are written by
``tinynet.data.write_idx``."""

from pathlib import Path

import numpy as np

from tinynet.data import write_idx


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
