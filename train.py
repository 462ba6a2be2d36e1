"""Train the LeNet: ``python3 train.py --epochs 20`` runs the original recipe (see README.md).

A thin command line over ``tinynet.training.train``; every option is documented by ``--help``.
"""

import tinynet  # noqa: F401  (first: sets thread environment before NumPy loads)
from tinynet.cli import train_main

if __name__ == "__main__":
    raise SystemExit(train_main())
