"""Predict characters with a trained LeNet: ``python3 inference.py --input PATH`` evaluates a test set
(data folder or IDX file), or reads your own image files or a .npy array.

A thin command line over ``tinynet.inference``; every option is documented by ``--help``.
"""

import tinynet  # noqa: F401  (first: sets thread environment before NumPy loads)
from tinynet.inference import main

if __name__ == "__main__":
    raise SystemExit(main())
