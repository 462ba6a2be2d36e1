"""A run whose numbers stop being numbers stops: after every step the loss and every weight must be
finite, or training ends with a :class:`TrainingError` naming the step and the arrays, before any
checkpoint could hold them (``last.npz`` and ``best.npz`` stay the last good ones).

Why the weights, and why that is enough for the gradients too: the loss is computed from the
logits, and a NaN or infinite weight need not reach them (a ReLU turns -inf into 0; a max-pool may
pass over a NaN). The SGD update ``p -= lr * g`` (with momentum: ``v = m v + g``, ``p -= lr * v``)
leaves a weight non-finite whenever its gradient, or its velocity, is (``lr * inf`` is infinite,
``lr * nan`` is NaN, and no finite number cancels either), and whenever the step overflows float32.
So a weight check after the update also catches every non-finite gradient.
"""

import math

import numpy as np

from .errors import TrainingError


def all_finite(arrays):
    """True when every value of every float array is finite (no NaN, no +-inf).

    Cheap: one BLAS dot product of each array with itself, summed in Python floats. Each square is
    NaN, +inf or a finite number >= 0, so the total is finite exactly when every value is finite,
    unless squares of huge finite values overflow; the exact check (:func:`numpy.isfinite`), which
    costs about twice as much, then decides. A dot product reads each value once, at the speed of
    memory: ~0.1 ms for the LeNet's 450,000 weights, where a training step takes ~15 ms.
    """
    arrays = [np.ravel(a) for a in arrays]
    with np.errstate(over="ignore", invalid="ignore"):  # what they would warn about is the answer
        if math.isfinite(sum(float(np.dot(a, a)) for a in arrays)):
            return True
    return all(np.isfinite(a).all() for a in arrays)


def nonfinite_names(named_arrays):
    """The names of the arrays of ``(name, array)`` pairs that hold NaN or +-inf."""
    return [name for name, a in named_arrays if not np.isfinite(a).all()]


def diverged(loss, model, optimizer, state, last):
    """The TrainingError for a step after which the loss or a weight is not finite: it names the step
    (``state``'s epoch, batch and step, counted from 1 as the steps' records are), the loss when
    it is NaN or infinite, the weights, gradients and momentum buffers that are, and what is kept
    on disk (``last``, the run's ``last.npz``)."""
    arrays = []
    for what, named in (("weights", [(n, p) for n, p, _ in model.parameters()]),
                        ("gradients", [(n, g) for n, _, g in model.parameters()]),
                        ("momentum", sorted(optimizer.state_dict().items()))):
        names = nonfinite_names(named)
        if names:
            arrays.append(f"{what} ({'all' if len(names) == len(named) else ', '.join(names)})")
    faults = [] if math.isfinite(loss) else [f"loss became {loss}"]
    if arrays:
        listed = ", ".join(arrays[:-1]) + " and " * (len(arrays) > 1) + arrays[-1]
        faults.append(f"{listed} became NaN or infinite")
    kept = (f"the last good checkpoint {last} (epoch {state['epoch']}) is kept" if last.exists()
            else "no checkpoint was written yet")
    return TrainingError(f"{' and '.join(faults)} at epoch {state['epoch'] + 1}, batch {state['batch'] + 1} "
                         f"(step {state['step'] + 1}): training diverged; {kept}. Try a lower --lr.")
