"""Thread settings: one knob for both thread pools (Numba's kernels and BLAS's matmuls).

The two pools take turns (a kernel, then a matmul, then a kernel...), so each may use every core;
what hurts is a pool *spinning* while the other works. OpenBLAS threads busy-wait for a while after
each call, stealing a core from the Numba kernel that follows; ``tinynet/__init__.py`` therefore sets
``OPENBLAS_THREAD_TIMEOUT`` (short spin) before NumPy loads OpenBLAS, when it can.
"""

import os

import numba
from threadpoolctl import threadpool_limits


def set_threads(threads=None):
    """Use ``threads`` threads in Numba kernels and in BLAS (None: all cores, capped by Numba's
    NUMBA_NUM_THREADS)."""
    count = min(threads or os.cpu_count() or 1, numba.config.NUMBA_NUM_THREADS)
    if count < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    numba.set_num_threads(count)
    threadpool_limits(count, user_api="blas")
    return count
