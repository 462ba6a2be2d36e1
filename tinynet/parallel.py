"""Using the cores: data parallelism, one slice of every batch per thread.

``DataParallel(model, threads)`` runs ``threads`` replicas of a ``Sequential`` side by side, each
on a slice of the batch's rows, in threads of one process. Replicas share the parameter arrays
(read-only during forward and backward) and have their own caches, scratch buffers and gradients.
Inside a replica everything runs single-threaded: the Numba kernels (which release the GIL) and the
BLAS matmuls (limited to one thread here).

Why not make each kernel and each matmul parallel instead? A training step is a chain of ~25 short
operations, alternating Numba kernels and BLAS calls. Split inside each one, the cores are handed
back and forth between two thread pools dozens of times per batch, and a pool that has just finished
keeps spinning on a core for a while: measured on a 2-core machine, every Numba kernel that followed
a multi-threaded matmul ran at half speed, and the whole step gained only 1.15x from the second core.
Split by batch, each thread does a whole forward and backward pass with no hand-offs: ~1.9x.

The math. The loss is a mean over the batch, so the loss gradient dL/dlogits computed for the whole
batch already carries the 1/N. Backward over replica t's rows gives exactly those rows' part of
every parameter gradient, and the batch's gradient is the sum over replicas:

    dL/dW = sum_t D_t^T X_t  (and likewise for every parameter)

which the model's ``grads`` receive after each backward. The results equal the single-threaded
ones up to float rounding (the sums are added in a different order).

Randomness (dropout): each replica's dropout layer gets a fresh generator per training batch, seeded
from the model's own generator in the calling thread, so a run is reproducible for a given number of
threads (not across thread counts: the masks are drawn per slice).
"""

import contextvars
import copy
import os
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
from threadpoolctl import threadpool_limits

from .layers import Dropout


def resolve_threads(threads=None):
    """The thread count to use: ``threads``, or every core this process may run on when None. Also
    limits BLAS to one thread per call, since the threads already keep every core busy."""
    if threads is None:
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        threads = len(cores)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    threadpool_limits(1, user_api="blas")
    return threads


def replicate(model):
    """A copy of ``model`` whose layers share its parameter arrays but have their own ``grads``,
    cache and scratch buffers (a shallow copy of each layer)."""
    twin = copy.copy(model)
    twin.layers = []
    for layer in model.layers:
        twin_layer = copy.copy(layer)
        twin_layer.grads = {key: np.zeros_like(g) for key, g in layer.grads.items()}
        twin_layer.cache = None
        twin_layer._buffers = {}
        twin.layers.append(twin_layer)
    return twin


class DataParallel:
    """``model`` run on ``threads`` slices of each batch at once (see the module docstring).

    Same interface as ``Sequential`` for forward and backward: ``forward(x (N, ...), train)`` ->
    logits (N, K) and ``backward(dlogits)`` -> dx, filling ``model``'s ``grads`` with the batch's
    gradients, which the optimiser then applies to ``model``. Build it after the model's parameters
    have their final dtype (``astype`` replaces the arrays the replicas share).
    """

    def __init__(self, model, threads=None):
        self.model = model
        self.threads = resolve_threads(threads)
        self.replicas = [model] + [replicate(model) for _ in range(self.threads - 1)]
        self.pool = ThreadPoolExecutor(self.threads - 1) if self.threads > 1 else None
        self.used = 1  # replicas that ran the last forward pass

    @property
    def layers(self):
        return self.model.layers

    def parameters(self):
        """The model's ``(name, param, grad)`` triples (after backward: the whole batch's gradients)."""
        return self.model.parameters()

    def split(self, x):
        """``x``'s rows in ``used`` consecutive slices, one per replica that will run (fewer than
        ``threads`` for a batch smaller than that)."""
        self.used = max(1, min(self.threads, len(x)))
        return np.array_split(x, self.used)

    def map_replicas(self, fn, parts):
        """``[fn(replica_t, *parts[t]) for each t]``, all at once: the first in this thread, the
        others in the pool's threads, each in a copy of this thread's context (so that settings
        such as ``np.errstate`` hold there too)."""
        futures = [self.pool.submit(contextvars.copy_context().run, fn, replica, *part)
                   for replica, part in zip(self.replicas[1:], parts[1:])]
        try:
            first = fn(self.replicas[0], *parts[0])
        finally:  # even if this thread's part fails, no replica may still be running afterwards
            wait(futures)
        return [first] + [future.result() for future in futures]

    def forward(self, x, train=True):
        """x (N, ...) -> logits (N, K): each replica runs its slice of rows."""
        parts = self.split(x)
        if self.used == 1:
            return self.model.forward(x, train)
        if train:
            self.reseed_dropout()
        return np.concatenate(self.map_replicas(type(self.model).forward,
                                                [(part, train) for part in parts]))

    def backward(self, dout):
        """dL/dlogits (N, K) -> dL/dx (None when the first layer skips it); leaves the batch's
        gradients in ``model``'s ``grads``."""
        if self.used == 1:
            return self.model.backward(dout)
        parts = np.array_split(dout, self.used)  # the same rows as forward's slices
        dxs = self.map_replicas(type(self.model).backward, [(part,) for part in parts])
        self.sum_gradients()
        return None if dxs[0] is None else np.concatenate(dxs)

    def sum_gradients(self):
        """Add the other replicas' ``grads`` into the model's (replica 0's): dL/dW = sum_t dL/dW_t."""
        for layers in zip(*(replica.layers for replica in self.replicas[:self.used])):
            for key, total in layers[0].grads.items():
                for other in layers[1:]:
                    total += other.grads[key]

    def reseed_dropout(self):
        """Give every other replica's dropout layer a new generator seeded from the model's."""
        for layers in zip(*(replica.layers for replica in self.replicas)):
            if isinstance(layers[0], Dropout):
                for other in layers[1:]:
                    other.rng = np.random.default_rng(layers[0].rng.integers(2**63))
