"""The fast Numba kernels agree with their plain NumPy twins (tinynet/nn/kernels.py).

Each test draws random shapes with hypothesis, including the awkward ones: odd sizes, stride
different from the kernel size, padding, and overlapping pooling windows (stride < size). The NumPy
twin is the definition; the kernel must give the same numbers. Kernels and twins both work on
channels-last (N, H, W, C) arrays.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.nn.kernels import (col2im_numba, col2im_reference, conv_output_size, im2col_numba,
                                im2col_reference, maxpool_backward_numba, maxpool_backward_reference,
                                maxpool_forward_numba, maxpool_forward_reference)

FAST = settings(max_examples=60, deadline=None)


@st.composite
def conv_case(draw):
    """(x, kernel, stride, padding) with at least one output position."""
    k = draw(st.integers(1, 5))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, 2))
    h = draw(st.integers(max(1, k - 2 * padding), 11))
    w = draw(st.integers(max(1, k - 2 * padding), 11))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).standard_normal((n, h, w, c))
    return x, k, stride, padding


@st.composite
def pool_case(draw):
    """(x, size, stride) including overlapping (stride < size) and gapped (stride > size) windows."""
    size = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 4))
    h, w = draw(st.integers(size, 11)), draw(st.integers(size, 11))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # small integers make ties common, so tie-breaking is exercised too
    x = rng.integers(-3, 4, size=(n, h, w, c)).astype(np.float64)
    return x, size, stride


@FAST
@given(conv_case(), st.sampled_from([np.float32, np.float64]))
def test_im2col_matches_reference(case, dtype):
    """im2col: every receptive field lands in the same row and column in both versions."""
    x, k, s, p = case
    x = x.astype(dtype)
    n, h, w, c = x.shape
    rows = n * conv_output_size(h, k, s, p) * conv_output_size(w, k, s, p)
    fast = im2col_numba(x, k, k, s, p, np.full((rows, k * k * c), np.nan, dtype=dtype))
    np.testing.assert_array_equal(fast, im2col_reference(x, k, k, s, p))


@FAST
@given(conv_case())
def test_col2im_matches_reference(case):
    """col2im: overlapping receptive fields add up the same way in both versions."""
    x, k, s, p = case
    ref_cols = im2col_reference(x, k, k, s, p)
    cols = np.random.default_rng(0).standard_normal(ref_cols.shape)
    fast = col2im_numba(cols, k, k, s, p, np.full(x.shape, np.nan))
    np.testing.assert_allclose(fast, col2im_reference(cols, x.shape, k, k, s, p), rtol=1e-12, atol=1e-12)


@FAST
@given(conv_case())
def test_col2im_is_the_adjoint_of_im2col(case):
    """<im2col(x), y> == <x, col2im(y)>: col2im is exactly the transpose of the im2col linear map,
    which is why it is the right backward pass."""
    x, k, s, p = case
    cols = im2col_reference(x, k, k, s, p)
    y = np.random.default_rng(1).standard_normal(cols.shape)
    lhs = np.sum(cols * y)
    rhs = np.sum(x * col2im_reference(y, x.shape, k, k, s, p))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)


@FAST
@given(pool_case(), st.booleans())
def test_maxpool_forward_matches_reference(case, relu):
    """Max-pool forward: same maxima and the same winner (first maximum in row-major order)."""
    x, size, stride = case
    n, h, w, c = x.shape
    shape = (n, conv_output_size(h, size, stride, 0), conv_output_size(w, size, stride, 0), c)
    out = np.empty(shape)
    argmax = np.empty(shape, dtype=np.int32)
    maxpool_forward_numba(x, size, stride, relu, out, argmax)
    ref_out, ref_arg = maxpool_forward_reference(x, size, stride, relu)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_arg)


@FAST
@given(pool_case(), st.booleans())
def test_maxpool_backward_matches_reference(case, relu):
    """Max-pool backward: gradients reach the same winners, adding up where windows overlap."""
    x, size, stride = case
    out, argmax = maxpool_forward_reference(x, size, stride, relu)
    dout = np.random.default_rng(2).standard_normal(out.shape)
    fast = maxpool_backward_numba(dout, argmax, np.full(x.shape, np.nan))
    np.testing.assert_allclose(fast, maxpool_backward_reference(dout, argmax, x.shape), rtol=1e-12, atol=0)


def test_maxpool_tie_goes_to_first_maximum_only():
    """A window of equal values sends all of its gradient to one pixel: the first in row-major
    order (top-left). Not split, not duplicated, and the same on every run."""
    x = np.ones((1, 2, 2, 1))
    out = np.empty((1, 1, 1, 1))
    argmax = np.empty((1, 1, 1, 1), dtype=np.int32)
    maxpool_forward_numba(x, 2, 2, False, out, argmax)
    dx = maxpool_backward_numba(np.full((1, 1, 1, 1), 5.0), argmax, np.empty_like(x))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[5.0, 0.0], [0.0, 0.0]])


def test_fused_relu_pool_drops_gradient_of_non_positive_windows():
    """With relu=True, a window whose maximum is <= 0 outputs 0 and passes no gradient back."""
    x = np.array([[-1.0, -2.0, 3.0, 1.0],
                  [-3.0, -4.0, 0.0, 2.0]]).reshape(1, 2, 4, 1)
    out = np.empty((1, 1, 2, 1))
    argmax = np.empty((1, 1, 2, 1), dtype=np.int32)
    maxpool_forward_numba(x, 2, 2, True, out, argmax)
    np.testing.assert_array_equal(out[0, :, :, 0], [[0.0, 3.0]])
    dx = maxpool_backward_numba(np.ones((1, 1, 2, 1)), argmax, np.empty_like(x))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 1, 0], [0, 0, 0, 0]])
