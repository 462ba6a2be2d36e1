"""Numerical gradients by centred differences, for checking hand-written backward passes.

For a scalar function f, the centred difference
    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h
has error O(h^2), so in float64 with h = 1e-5 it agrees with an exact gradient to ~1e-10 relative.

For a layer with array output y = f(x) and an upstream gradient dout = dL/dy, the chain rule gives
    dL/dx_i = sum_j dout_j * dy_j/dx_i ~ sum((f(x + h e_i) - f(x - h e_i)) * dout) / 2h,
which checks a backward pass against random upstream gradients without ever forming the Jacobian.
"""

import numpy as np


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
