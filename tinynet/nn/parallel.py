"""Using the cores: data parallelism, a fixed split of every batch into slices run by threads.

``DataParallel(model, threads)`` cuts every batch into ``slices`` (default ``SLICES`` = 2) slices
of consecutive rows (fewer for a batch of fewer rows), always the same way whatever the thread
count, and runs each slice on its own replica of a ``Sequential``; ``threads`` threads of one
process take the slices one after another (1 thread runs both, 2 threads one each).
Replicas share the parameter arrays (read-only during forward and backward) and have their own
caches, scratch buffers and gradients. Inside a replica everything runs single-threaded: the Numba
kernels (which release the GIL) and the BLAS matmuls (limited to one thread while tinynet's work
runs, by :data:`one_blas_thread`, and restored afterwards: the user's own ``a @ b`` keeps every
core). A ``DataParallel`` owns a thread pool: ``close()`` it, or use it as a context manager.

Why not make each kernel and each matmul parallel instead? A training step is a chain of ~25 short
operations, alternating Numba kernels and BLAS calls. Split inside each one, the cores are handed
back and forth between two thread pools dozens of times per batch, and a pool that has just finished
keeps spinning on a core for a while: measured on a 2-core machine, every Numba kernel that followed
a multi-threaded matmul ran at half speed, and the whole step gained only 1.15x from the second core.
Split by batch, each thread does whole forward and backward passes with no hand-offs: ~1.9x.

The math. The loss is a mean over the batch, so the loss gradient dL/dlogits computed for the whole
batch already carries the 1/N. Backward over slice s's rows gives exactly those rows' part of
every parameter gradient, and the batch's gradient is the sum over slices:

    dL/dW = sum_s D_s^T X_s  (and likewise for every parameter)

which the model's ``grads`` receive after each backward, added in slice order (g_0 + g_1, then
+ g_2 and so on with more slices). The results equal an unsplit pass up to float rounding (the
sums are added in a different order).

**The same weights whatever the thread count.** Which thread runs a slice changes nothing: each
slice is computed by its own replica, single-threaded, on rows that depend only on the batch; the
slice gradients are summed in a fixed order; and dropout draws each slice's mask from a generator
seeded with (a number drawn once per training batch from the model's dropout generator, the slice
index). So a run with a given seed ends with bitwise-identical weights on 1, 2, 3 or 4 threads
(same machine and BLAS; ``tests/test_parallel.py`` checks it on real data), and predictions do not
depend on the thread count either. More threads than slices have nothing to do.

**Batch normalisation** (``tinynet.nn.layers.BatchNorm2D``, ``BatchNorm1D``): while training, each
slice is normalised with its own statistics, a "ghost batch" of the slice's rows (64 images of a
128-image batch), not the whole batch's: the replicas run their forward passes independently,
and the slices are fixed by the batch alone, so this too is the same on any thread count. The
replicas share the model's running statistics (read in evaluation) but do not update them; after
each training forward pass the model's are moved once, towards the whole batch's mean and
(unbiased) variance, merged from the slices' counts, means and variances in slice order
(``BatchNorm.update_running_statistics``): the same running statistics as one unsplit pass, up to
float rounding, and bitwise the same on any thread count.

Why 2 slices: the machine tinynet is tuned on has 2 cores. Every slice costs a pass over the
weights (fc1's 1.6 MB fall out of cache between slices) and smaller matmuls: 4 slices of 32 images
took ~4% more CPU time per image than 2 of 64 (training) and ~3% (inference at batch 1024). A
machine with more cores would want ``slices`` = its core count (the weights then differ from
those of 2 slices, as with another seed, but still not with the thread count).
"""

import contextvars
import copy
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import threadpoolctl

from ..errors import ArgumentError, ClosedError
from .layers import Dropout

SLICES = 2  # slices per batch, whatever the thread count (see the module docstring)


def resolve_threads(threads=None):
    """The thread count to use: ``threads``, or every core this process may run on when None."""
    if threads is None:
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        threads = len(cores)
    if threads < 1:
        raise ArgumentError(f"threads must be at least 1, got {threads}")
    return threads


class OneBlasThread:
    """A context manager that limits BLAS to one thread per call while tinynet's threads already
    keep every core busy, and puts the previous limits back when the last user leaves.

    Counted: any number of threads may be inside at once (a trainer's fit, the server's requests,
    each ``DataParallel`` call); the limit is set when the first enters and restored when the last
    leaves, so an inner or concurrent use never restores too early. The first to enter reads each
    BLAS library's thread count and sets it to 1, the last to leave sets it back, through
    threadpoolctl's per-library controllers (found once): ~6 us for the pair, a third of what
    ``ThreadpoolController.limit`` takes, which matters for one-image predictions (~150 us); well
    under 1 us inside another use.

    From any thread: OpenBLAS (built with pthreads, as NumPy's wheels are) has one thread count
    for the whole process, and threadpoolctl >= 3.8 lets only one thread, the first to change it,
    go on changing it (the others' changes silently do nothing). So a limit set from a worker
    thread after the main thread had set one was ignored: BLAS kept every core there, on top of
    tinynet's own threads, and rounded matmuls differently from the main thread. tinynet's counter
    already decides who sets and restores, so each of its changes takes effect from whichever thread
    makes it (:func:`_set_blas_threads`)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._libraries = None  # threadpoolctl's controllers of the BLAS libraries loaded
        self._saved = []        # (library, its thread count before the first user entered)

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                if self._libraries is None:
                    self._libraries = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
                self._saved = [(lib, lib.num_threads) for lib in self._libraries]
                _set_blas_threads([(lib, 1) for lib, threads in self._saved if threads != 1])
            self._users += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                _set_blas_threads([(lib, threads) for lib, threads in self._saved if threads != 1])
                self._saved = []


def _set_blas_threads(changes):
    """Give each BLAS library of ``changes`` (``(library controller, thread count)`` pairs) its
    thread count, taking effect from this thread: the thread that threadpoolctl (>= 3.8) lets change
    OpenBLAS's process-wide thread count is forgotten before (so this thread may) and after (so the
    next caller, the user's main thread say, may again, as if tinynet had never changed it)."""
    if not changes:
        return
    openblas = getattr(threadpoolctl, "OpenBLASController", None)
    forget = getattr(openblas, "clear_controlling_thread", None)  # threadpoolctl >= 3.8
    if forget is not None:
        forget(force=True)
    try:
        for library, threads in changes:
            library.set_num_threads(threads)
    finally:
        if forget is not None:
            forget(force=True)


one_blas_thread = OneBlasThread()  # the process's one counter (see OneBlasThread)


def replicate(model):
    """A copy of ``model`` whose layers share its parameter arrays and state (running statistics)
    but have their own ``grads``, cache and scratch buffers (a shallow copy of each layer); a
    replica's batch normalisation leaves the running statistics to the model (``update_running``
    off: :meth:`DataParallel.merge_statistics` moves them)."""
    twin = copy.copy(model)
    twin.layers = []
    for layer in model.layers:
        twin_layer = copy.copy(layer)
        twin_layer.grads = {key: np.zeros_like(g) for key, g in layer.grads.items()}
        twin_layer.cache = None
        twin_layer._buffers = {}
        if hasattr(twin_layer, "update_running"):
            twin_layer.update_running = False
        twin.layers.append(twin_layer)
    return twin


class DataParallel:
    """``model`` run on a fixed split of each batch into slices, by ``threads`` threads (see the
    module docstring).

    Same interface as ``Sequential`` for forward and backward: ``forward(x (N, ...), train)`` ->
    logits (N, K) and ``backward(dlogits)`` -> dx, filling ``model``'s ``grads`` with the batch's
    gradients, which the optimiser then applies to ``model``. ``model`` itself only holds the
    parameters and the summed gradients (and its dropout layers' generators, the source of every
    slice's masks); the slices run on replicas. Build it after the model's parameters have their
    final dtype (``astype`` replaces the arrays the replicas share).

    Threads: any number of threads may call ``forward`` (and ``backward``) on one DataParallel.
    Calls take turns (a lock: the replicas' caches and scratch buffers serve one call at a time),
    each using every thread of the pool, so every call returns what it would have returned made
    alone. A backward pass goes back through the most recent forward pass, whichever thread made
    it, so training (forward, then backward of the same batch) belongs to one thread.
    """

    def __init__(self, model, threads=None, slices=SLICES):
        self.model = model
        self.threads = resolve_threads(threads)
        self.replicas = [replicate(model) for _ in range(slices)]
        self.pool = ThreadPoolExecutor(self.threads - 1) if self.threads > 1 else None
        self.used = 1  # slices of the last forward pass
        self.lock = threading.Lock()  # held by each forward and backward call (see the docstring)

    def close(self):
        """Shut the thread pool down, once a call running in another thread has returned."""
        with self.lock:
            if self.pool is not None:
                self.pool.shutdown()
                self.pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def layers(self):
        return self.model.layers

    def parameters(self):
        """The model's ``(name, param, grad)`` triples (after backward: the whole batch's gradients)."""
        return self.model.parameters()

    def split(self, x):
        """``x``'s rows in ``used`` consecutive slices: ``slices``, or one per row for a batch of
        fewer rows. Depends on ``len(x)`` only, never on the thread count."""
        self.used = self.slice_count(len(x))
        return [x] if self.used == 1 else np.array_split(x, self.used)

    def slice_count(self, rows):
        """How many slices a batch of ``rows`` rows is cut into."""
        return max(1, min(len(self.replicas), rows))

    def map_replicas(self, fn, parts):
        """``[fn(replica_s, *parts[s]) for each slice s]``: this thread and up to ``threads - 1``
        pool threads each take the next slice not yet started until none is left; the pool threads
        run in a copy of this thread's context (so that settings such as ``np.errstate`` hold there
        too). Waits for every slice, even when one raises; then raises the first slice's error."""
        if len(parts) == 1:  # one slice (a batch of one row): run it here, nothing to hand out
            with one_blas_thread:
                return [fn(self.replicas[0], *parts[0])]
        results, errors = [None] * len(parts), [None] * len(parts)
        counter = itertools.count()  # next() on it is atomic: each slice is taken exactly once

        def work():
            while (s := next(counter)) < len(parts):
                try:
                    results[s] = fn(self.replicas[s], *parts[s])
                except BaseException as e:  # kept for the caller; the other slices still run
                    errors[s] = e

        helpers = min(self.threads, len(parts)) - 1
        if helpers and self.pool is None:
            raise ClosedError("this DataParallel is closed")
        with one_blas_thread:
            futures = [self.pool.submit(contextvars.copy_context().run, work) for _ in range(helpers)]
            try:
                work()
            finally:  # no slice may still be running afterwards
                wait(futures)
        for e in errors:
            if e is not None:
                raise e
        return results

    def map_rows(self, fn, *arrays):
        """``fn(*arrays)`` for a row-wise ``fn`` (each output row depends only on the same rows of
        the inputs), computed slice by slice in the threads: ``arrays``' rows are cut into the
        same slices as a batch of that size, and the slices' results are concatenated."""
        count = self.slice_count(len(arrays[0]))
        parts = list(zip(*(np.array_split(a, count) for a in arrays)))
        return np.concatenate(self.map_replicas(lambda replica, *part: fn(*part), parts))

    def forward(self, x, train=True):
        """x (N, ...) -> logits (N, K): each slice's rows through its replica."""
        with self.lock:
            parts = self.split(x)
            if train:
                self.reseed_dropout()
            results = self.map_replicas(type(self.model).forward, [(part, train) for part in parts])
            if train:
                self.merge_statistics()
            return results[0] if len(results) == 1 else np.concatenate(results)

    def backward(self, dout):
        """dL/dlogits (N, K) -> dL/dx (None when the first layer skips it); leaves the batch's
        gradients in ``model``'s ``grads``."""
        with self.lock:
            parts = np.array_split(dout, self.used)  # the same rows as forward's slices
            dxs = self.map_replicas(type(self.model).backward, [(part,) for part in parts])
            self.sum_gradients()
            return None if dxs[0] is None else np.concatenate(dxs)

    def sum_gradients(self):
        """The model's ``grads`` = the slices' in slice order: dL/dW = ((dW_0 + dW_1) + dW_2) + ...
        (a fixed order, so the same bits whichever thread ran which slice)."""
        for layer, *slices in zip(self.model.layers, *(r.layers for r in self.replicas[:self.used])):
            for key, total in layer.grads.items():
                if len(slices) == 1:
                    np.copyto(total, slices[0].grads[key])
                else:
                    np.add(slices[0].grads[key], slices[1].grads[key], out=total)
                for other in slices[2:]:
                    total += other.grads[key]

    def merge_statistics(self):
        """Move the model's running statistics (batch normalisation) once, towards the whole
        batch's, from its slices' statistics in slice order (see the module docstring)."""
        for layer, *slices in zip(self.model.layers, *(r.layers for r in self.replicas[:self.used])):
            if hasattr(layer, "update_running_statistics"):
                layer.update_running_statistics([other.batch_statistics for other in slices])

    def reseed_dropout(self):
        """Give slice s's dropout layers a generator seeded with (a number drawn from the model's
        dropout generator, s): one draw per batch, so the masks depend on the batch and the
        slice, not on the thread count, and the model's generator state stays resumable."""
        for layer, *slices in zip(self.model.layers, *(r.layers for r in self.replicas)):
            if isinstance(layer, Dropout):
                key = int(layer.rng.integers(2**63))
                for s, other in enumerate(slices):
                    other.rng = np.random.default_rng([key, s])
