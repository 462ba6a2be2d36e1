"""The fast Numba kernels agree with their plain NumPy twins (tinynet/nn/kernels.py).

Each test draws random shapes with hypothesis, including the awkward ones: odd sizes, stride
different from the kernel size, padding, and overlapping pooling windows (stride < size). The NumPy
twin is the definition; the kernel must give the same numbers. Kernels and twins both work on
channels-last (N, H, W, C) arrays.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.nn.kernels import (col2im_numba, col2im_reference, conv_output_size, from_pooling_order,
                                im2col_numba, im2col_pooled_numba, im2col_pooled_reference,
                                im2col_reference, maxpool_backward_numba, maxpool_backward_reference,
                                maxpool_blocks_backward_numba, maxpool_blocks_backward_reference,
                                maxpool_blocks_numba, maxpool_blocks_reference,
                                maxpool_blocks_winners_numba, maxpool_blocks_winners_reference,
                                maxpool_forward_numba, maxpool_forward_reference, sgd_update_numba,
                                sgd_update_reference, to_pooling_order)

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
@given(conv_case(), st.integers(1, 3), st.sampled_from([np.float32, np.float64]))
def test_im2col_pooled_matches_reference(case, pool, dtype):
    """im2col in pooling order: the same receptive fields, rows grouped by offset in the window."""
    x, k, s, p = case
    x = x.astype(dtype)
    n, h, w, c = x.shape
    ph, pw = conv_output_size(h, k, s, p) // pool, conv_output_size(w, k, s, p) // pool
    fast = im2col_pooled_numba(x, k, k, s, p, pool,
                               np.full((pool * pool * n * ph * pw, k * k * c), np.nan, dtype=dtype))
    np.testing.assert_array_equal(fast, im2col_pooled_reference(x, k, k, s, p, pool))


@pytest.mark.parametrize("pooled", [False, True])
def test_im2col_of_one_channel_5x5_matches_reference(pooled):
    """The unrolled path for the LeNet's conv1 (one channel, 5x5, no padding; strides 1 and 2)."""
    x = np.random.default_rng(5).random((3, 28, 28, 1), dtype=np.float32)
    for stride in (1, 2):
        if pooled:
            o = conv_output_size(28, 5, stride, 0) // 2
            fast = im2col_pooled_numba(x, 5, 5, stride, 0, 2, np.empty((4 * 3 * o * o, 25), np.float32))
            np.testing.assert_array_equal(fast, im2col_pooled_reference(x, 5, 5, stride, 0, 2))
        else:
            o = conv_output_size(28, 5, stride, 0)
            fast = im2col_numba(x, 5, 5, stride, 0, np.empty((3 * o * o, 25), np.float32))
            np.testing.assert_array_equal(fast, im2col_reference(x, 5, 5, stride, 0))


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
@given(conv_case(), st.integers(2, 3))
def test_col2im_in_pooling_order_matches_reference(case, pool):
    """col2im of rows in pooling order (a convolution fused with its max-pooling, while training):
    the same sums, and nothing from the outputs that no window reads."""
    x, k, s, p = case
    n, h, w, c = x.shape
    ph, pw = conv_output_size(h, k, s, p) // pool, conv_output_size(w, k, s, p) // pool
    cols = np.random.default_rng(0).standard_normal((n * pool * pool * ph * pw, k * k * c))
    fast = col2im_numba(cols, k, k, s, p, np.full(x.shape, np.nan), pool)
    np.testing.assert_allclose(fast, col2im_reference(cols, x.shape, k, k, s, p, pool), rtol=1e-12,
                               atol=1e-12)


@FAST
@given(conv_case(), st.integers(1, 3))
def test_pooling_order_is_a_reordering_of_rows(case, pool):
    """to_pooling_order picks each output the windows read exactly once, and from_pooling_order
    puts it back (zeros elsewhere): im2col in pooling order is im2col with its rows reordered."""
    x, k, s, p = case
    n, h, w, c = x.shape
    oh, ow = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
    a = np.random.default_rng(3).standard_normal((n, oh, ow, 2))
    back = from_pooling_order(to_pooling_order(a, pool), a.shape, pool)
    read = np.zeros(a.shape, dtype=bool)
    read[:, :oh // pool * pool, :ow // pool * pool] = True
    np.testing.assert_array_equal(back, np.where(read, a, 0))


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


def with_specials(x, seed):
    """``x`` with some values replaced by NaN, +inf and -inf."""
    u = np.random.default_rng(seed).random(x.shape)
    x = x.copy()
    x[u < 0.08] = np.nan
    x[(u >= 0.08) & (u < 0.12)] = np.inf
    x[(u >= 0.12) & (u < 0.16)] = -np.inf
    return x


@FAST
@given(pool_case(), st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_maxpool_forward_with_nan_inf_and_bias_matches_reference(case, relu, biased, seed):
    """NaN and infinities in the windows, with and without a bias added on the way in: the same
    values (a window holding a NaN gives NaN, ReLU keeps it) and the same winners."""
    x, size, stride = case
    x = with_specials(x, seed)
    bias = np.random.default_rng(seed).standard_normal(x.shape[3]) if biased else None
    n, h, w, c = x.shape
    shape = (n, conv_output_size(h, size, stride, 0), conv_output_size(w, size, stride, 0), c)
    out, argmax = np.empty(shape), np.empty(shape, dtype=np.int32)
    maxpool_forward_numba(x, size, stride, relu, out, argmax, bias)
    ref_out, ref_arg = maxpool_forward_reference(x, size, stride, relu, bias)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_arg)
    windows_with_nan = maxpool_forward_reference(np.isnan(x).astype(float), size, stride)[0] > 0
    assert np.isnan(out[windows_with_nan]).all()  # never hidden


@FAST
@given(st.integers(1, 9), st.integers(1, 70), st.integers(1, 5), st.booleans(),
       st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]))
def test_maxpool_blocks_matches_reference(blocks, rows, channels, relu, seed, dtype):
    """Elementwise pooling of blocks (more rows than one tile too), with NaN and infinities."""
    rng = np.random.default_rng(seed)
    x = with_specials(rng.integers(-3, 4, (2, blocks, rows, channels)).astype(dtype), seed)
    bias = rng.standard_normal(channels).astype(dtype)
    fast = maxpool_blocks_numba(x, bias, relu, np.full((2, rows, channels), 7.0, dtype=dtype))
    np.testing.assert_array_equal(fast, maxpool_blocks_reference(x, bias, relu))


@FAST
@given(st.integers(1, 9), st.integers(1, 70), st.integers(1, 5), st.booleans(),
       st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]))
def test_maxpool_blocks_winners_matches_reference(blocks, rows, channels, relu, seed, dtype):
    """Elementwise pooling of blocks with winners (training): the same maxima and the same winning
    block, with ties (small integers), NaN and infinities, more rows than one tile, B = 4 (the
    one-pass path) and other block counts."""
    rng = np.random.default_rng(seed)
    x = with_specials(rng.integers(-3, 4, (2, blocks, rows, channels)).astype(dtype), seed)
    bias = rng.integers(-2, 3, channels).astype(dtype)
    out, winner = np.full((2, rows, channels), 7.0, dtype=dtype), np.full((2, rows, channels), 99, np.int32)
    maxpool_blocks_winners_numba(x, bias, relu, out, winner)
    ref_out, ref_winner = maxpool_blocks_winners_reference(x, bias, relu)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(winner, ref_winner)


@FAST
@given(st.integers(1, 9), st.integers(1, 70), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_maxpool_blocks_backward_matches_reference(blocks, rows, channels, seed):
    """The pooled gradient routed to the winning blocks (-1: to none)."""
    rng = np.random.default_rng(seed)
    dout = rng.standard_normal((2, rows, channels))
    winner = rng.integers(-1, blocks, (2, rows, channels)).astype(np.int32)
    fast = maxpool_blocks_backward_numba(dout, winner, np.full((2, blocks, rows, channels), np.nan))
    np.testing.assert_array_equal(fast, maxpool_blocks_backward_reference(dout, winner, blocks))


@FAST
@given(pool_case(), st.booleans(), st.integers(0, 2**32 - 1))
def test_pooling_blocks_picks_the_winners_of_window_by_window_pooling(case, relu, seed):
    """The winners of pooling in blocks are the windows' winners of maxpool_forward (the same
    pixel, first maximum on ties, first NaN), read back as flat indices."""
    x, size, _ = case
    x = with_specials(x, seed)
    n, h, w, c = x.shape
    ph, pw = h // size, w // size
    blocks = to_pooling_order(x, size).reshape(n, size * size, ph * pw, c)
    out, winner = maxpool_blocks_winners_reference(blocks, np.zeros(c), relu)
    ref_out, ref_arg = maxpool_forward_reference(x, size, size, relu)
    np.testing.assert_array_equal(out.reshape(ref_out.shape), ref_out)
    a, e = np.divmod(winner.reshape(ref_arg.shape), size)
    rows, cols = np.arange(ph)[:, None, None] * size + a, np.arange(pw)[None, :, None] * size + e
    np.testing.assert_array_equal(np.where(winner.reshape(ref_arg.shape) >= 0, rows * w + cols, -1),
                                  ref_arg)


def test_pooling_blocks_equals_pooling_the_convolution(rng):
    """What the evaluation pass computes: im2col in pooling order, one matmul, elementwise block
    maxima + bias + ReLU == the convolution + bias, then ReLU + max-pool (the training pass)."""
    x = rng.standard_normal((2, 9, 11, 3))
    W2, b = rng.standard_normal((4, 3 * 3 * 3)), rng.standard_normal(4)
    conv = (im2col_reference(x, 3, 3, 1, 0) @ W2.T + b).reshape(2, 7, 9, 4)
    expected, _ = maxpool_forward_reference(conv, 2, 2, relu=True)
    blocks = (im2col_pooled_reference(x, 3, 3, 1, 0, 2) @ W2.T).reshape(2, 4, -1, 4)
    got = maxpool_blocks_reference(blocks, b, True).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("momentum, nesterov, decay", [(0.0, False, 0.0), (0.9, False, 0.0),
                                                       (0.9, True, 5e-4), (0.0, False, 1e-3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_update_matches_reference_bitwise(momentum, nesterov, decay, dtype, rng):
    """The one-pass SGD kernel rounds every product and sum as the NumPy expressions do."""
    p, g, v = (rng.standard_normal(1000).astype(dtype) for _ in range(3))
    p2, v2 = p.copy(), v.copy()
    sgd_update_numba(p, g, v, dtype(0.01), dtype(momentum), nesterov, dtype(decay))
    sgd_update_reference(p2, g, v2 if momentum else None, 0.01, momentum, nesterov, decay)
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(v, v2)


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
