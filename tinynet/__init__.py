"""tinynet: a from-scratch NumPy + Numba neural-network library (LeNet on EMNIST)."""

import os

# Two thread pools take turns on the cores: Numba's (the im2col/col2im/pooling kernels) and
# OpenBLAS's (the matmuls). A pool that busy-waits after its turn steals a core from the other, which
# halves throughput on a 2-core machine and gets far worse when the machine is busy. So: Numba's own
# 'workqueue' pool, whose workers sleep between kernels (unless the user chose a layer), and a short
# OpenBLAS spin (this part only takes effect if NumPy has not been imported yet). See runtime.py.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
if "NUMBA_THREADING_LAYER" not in os.environ:
    import numba

    numba.config.THREADING_LAYER = "workqueue"

__version__ = "0.1.0"
