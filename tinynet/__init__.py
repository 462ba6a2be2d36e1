"""tinynet: a from-scratch NumPy + Numba neural-network library (LeNet on EMNIST)."""

import os

# OpenBLAS threads spin after each matmul and would steal cores from the Numba kernel that runs
# next (see tinynet/runtime.py). This only takes effect if NumPy has not been imported yet.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.1.0"
