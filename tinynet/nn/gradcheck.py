"""Numerical gradients by centred differences, for checking hand-written backward passes.

For a scalar function f, the centred difference
    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h
has error O(h^2), so in float64 with h = 1e-5 it agrees with an exact gradient to ~1e-10 relative.

For a layer with array output z = f(x) and an upstream gradient dout = G = dL/dz, the chain rule gives
    dL/dx_i = sum_j dout_j * dz_j/dx_i ~ sum((f(x + h e_i) - f(x - h e_i)) * dout) / 2h,
which checks a backward pass against random upstream gradients without ever forming the Jacobian.
:func:`check_layer` does exactly that for a layer's input and every parameter; the tests run it on
every layer, the fast ones (``tinynet/nn/layers.py``) and the plain ones (``tinynet/nn/reference.py``).
The symbols are those of ``docs/notation.md``.
"""

import numpy as np

from ..errors import ArgumentError, TinynetError


class GradientCheckError(TinynetError, AssertionError):
    """A backward pass that disagrees with the numerical gradient: the message names the layer, the
    array (x or a parameter) and the relative error."""


def numerical_gradient(f, x, h=1e-5, indices=None):
    """dF/dx for a scalar function ``f()`` of the array ``x`` (perturbed in place, then restored).

    ``x`` may be any writable array, a transposed or sliced view too: each entry is perturbed where
    it lives, so ``f`` sees the change. ``indices``: flat indices (in the C order of ``x.shape``)
    to check (default: all); other entries of the result are left 0.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    for at in _positions(x.shape, indices):
        old = x[at]
        x[at] = old + h
        plus = f()
        x[at] = old - h
        minus = f()
        x[at] = old
        grad[at] = (plus - minus) / (2 * h)
    return grad


def _positions(shape, indices=None):
    """The index tuples, in an array of ``shape``, of the flat (C order) ``indices``; of every
    entry when None."""
    if indices is None:
        return np.ndindex(shape)
    return zip(*(axis.tolist() for axis in np.unravel_index(np.asarray(indices, dtype=np.intp), shape)))


def numerical_gradient_array(f, x, dout, h=1e-5):
    """dL/dx for an array function ``f()`` of ``x`` and an upstream gradient ``dout`` = dL/df."""
    return numerical_gradient(lambda: float(np.sum(f() * dout)), x, h)


def relative_error(analytic, numeric):
    """max |a - n| / max(max |a|, max |n|): the worst error, relative to the gradient's scale."""
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), 1e-300)
    return float(np.abs(analytic - numeric).max() / scale)


def gradient_errors(layer, x, rng, reset=lambda: None, train=True):
    """The relative error of each gradient ``layer``'s backward pass computes on input ``x``, by
    name: ``"x"`` (dL/dx) and each parameter's, as :func:`check_layer` describes.

    A layer whose backward returns None (a first layer that skips its input gradient, as the
    LeNet's conv1 does) has no ``"x"`` entry: only its parameters are checked. The check runs on
    float64 copies of ``x`` and of the parameters, and the layer is left as it was: its own
    parameter arrays (shared with a model, say) in their own dtype, its gradients, cache and
    scratch buffers, its state (batch normalisation's running statistics, which every training
    forward pass here moves). ``train``: check the training pass (default) or the evaluation pass
    (``forward(x, train=False)``: batch normalisation's running statistics, dropout's identity).
    """
    saved = dict(vars(layer))
    try:
        layer.astype(np.float64)
        x = np.array(x, dtype=np.float64)
        reset()
        out = layer.forward(x, train)
        dout = rng.standard_normal(out.shape)
        dx = layer.backward(dout)
        dx = None if dx is None else np.array(dx)  # the layer's own array may be reused
        grads = {k: g.copy() for k, g in layer.grads.items()}

        def forward():
            reset()
            return layer.forward(x, train)

        errors = {} if dx is None else {"x": relative_error(dx, numerical_gradient_array(forward, x, dout))}
        for name, param in layer.params.items():
            errors[name] = relative_error(grads[name], numerical_gradient_array(forward, param, dout))
        return errors
    finally:  # the layer's own attributes back: params, grads, buffers, cache (and LogitAdjustment's offset)
        vars(layer).clear()
        vars(layer).update(saved)


def check_layer(layer, x, rng, reset=lambda: None, tolerance=1e-7, train=True):
    """Gradient-check ``layer`` on input ``x``: returns the worst relative error found, and raises
    :class:`GradientCheckError` (an AssertionError) naming the layer and the array (x or a
    parameter) when one exceeds ``tolerance``.

    1. run the layer forward in float64 on ``x`` and draw a random upstream gradient dout;
    2. run backward: dx and every parameter gradient, as the layer computes them;
    3. perturb each entry of x (and of each parameter) by +-h and measure
       sum(dout * change in output) / 2h;
    4. the two must agree to a relative error below ``tolerance``.

    ``x`` should avoid the points where the layer is not differentiable (see
    :func:`distinct_values`). ``reset`` is called before every forward pass (dropout uses it to
    replay the same mask). A layer whose backward returns None has its parameters checked, not
    its input (:func:`gradient_errors` lists what was checked). ``train=False`` checks the
    evaluation pass instead of the training pass. The layer is left as it was.
    """
    errors = gradient_errors(layer, x, rng, reset, train)
    if not errors:
        raise ArgumentError(f"{type(layer).__name__}: nothing to check (its backward returns None and "
                            f"it has no parameters)")
    for name, err in errors.items():
        if not err < tolerance:
            raise GradientCheckError(f"{type(layer).__name__} d{name}: relative error {err:.2e}")
    return max(errors.values())


def distinct_values(rng, shape, spacing=0.01):
    """Values with no ties and at least ``spacing`` apart, centred on 0 (safe for max and ReLU)."""
    values = (rng.permutation(int(np.prod(shape))) - np.prod(shape) / 2 + 0.5) * spacing
    return values.reshape(shape)
