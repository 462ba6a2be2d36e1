"""Numerical gradients by centred differences, for checking hand-written backward passes.

For a scalar function f, the centred difference
    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h
has error O(h^2), so in float64 with h = 1e-5 it agrees with an exact gradient to ~1e-10 relative.

For a layer with array output y = f(x) and an upstream gradient dout = dL/dy, the chain rule gives
    dL/dx_i = sum_j dout_j * dy_j/dx_i ~ sum((f(x + h e_i) - f(x - h e_i)) * dout) / 2h,
which checks a backward pass against random upstream gradients without ever forming the Jacobian.
:func:`check_layer` does exactly that for a layer's input and every parameter; the tests run it on
every layer, the fast ones (``tinynet/nn/layers.py``) and the plain ones (``tinynet/nn/reference.py``).
"""

import numpy as np

from ..errors import TinynetError


class GradientCheckError(TinynetError, AssertionError):
    """A backward pass that disagrees with the numerical gradient: the message names the layer, the
    array (x or a parameter) and the relative error."""


def numerical_gradient(f, x, h=1e-5, indices=None):
    """dF/dx for a scalar function ``f()`` of the array ``x`` (perturbed in place, then restored).

    ``indices``: flat indices to check (default: all); other entries of the result are left 0.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)
    for i in range(x.size) if indices is None else indices:
        old = flat_x[i]
        flat_x[i] = old + h
        plus = f()
        flat_x[i] = old - h
        minus = f()
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2 * h)
    return grad


def numerical_gradient_array(f, x, dout, h=1e-5):
    """dL/dx for an array function ``f()`` of ``x`` and an upstream gradient ``dout`` = dL/df."""
    return numerical_gradient(lambda: float(np.sum(f() * dout)), x, h)


def relative_error(analytic, numeric):
    """max |a - n| / max(max |a|, max |n|): the worst error, relative to the gradient's scale."""
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), 1e-300)
    return float(np.abs(analytic - numeric).max() / scale)


def check_layer(layer, x, rng, reset=lambda: None, tolerance=1e-7):
    """Gradient-check ``layer`` on input ``x``: returns the worst relative error found, and raises
    :class:`GradientCheckError` (an AssertionError) naming the layer and the array (x or a parameter) when one exceeds ``tolerance``.

    1. run the layer forward in float64 on ``x`` and draw a random upstream gradient dout;
    2. run backward: dx and every parameter gradient, as the layer computes them;
    3. perturb each entry of x (and of each parameter) by +-h and measure
       sum(dout * change in output) / 2h;
    4. the two must agree to a relative error below ``tolerance``.

    ``x`` should avoid the points where the layer is not differentiable (see
    :func:`distinct_values`). ``reset`` is called before every forward pass (dropout uses it to
    replay the same mask).
    """
    layer.astype(np.float64)
    reset()
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    grads = {k: g.copy() for k, g in layer.grads.items()}

    def forward():
        reset()
        return layer.forward(x)

    errors = {"x": relative_error(dx, numerical_gradient_array(forward, x, dout))}
    for name, param in layer.params.items():
        errors[name] = relative_error(grads[name], numerical_gradient_array(forward, param, dout))
    for name, err in errors.items():
        if not err < tolerance:
            raise GradientCheckError(f"{type(layer).__name__} d{name}: relative error {err:.2e}")
    return max(errors.values())


def distinct_values(rng, shape, spacing=0.01):
    """Values with no ties and at least ``spacing`` apart, centred on 0 (safe for max and ReLU)."""
    values = (rng.permutation(int(np.prod(shape))) - np.prod(shape) / 2 + 0.5) * spacing
    return values.reshape(shape)
