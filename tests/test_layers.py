"""Gradient checks for every layer: the hand-written backward pass against centred differences.

The recipe is the same for each layer: ``check_layer`` (tinynet/nn/gradcheck.py) runs it in float64 on a
random input with a random upstream gradient, and requires a relative error below 1e-7.

Random upstream gradients matter: with dout = 1 a bug that mixes up output positions can cancel out.
Inputs avoid the places where a layer is not differentiable (ReLU at 0, ties in max-pool), because
a finite difference across a kink measures the wrong thing; ties get their own test.
"""

import numpy as np
import pytest

from tinynet.nn.gradcheck import check_layer, distinct_values, numerical_gradient, relative_error
from tinynet.nn.layers import (Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, ReLUMaxPool2D,
                               SoftmaxCrossEntropy)

TOLERANCE = 1e-7


@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((2, 3, 7, 9), 3, 1, 0),   # odd sizes
    ((2, 2, 8, 7), 3, 2, 1),   # stride 2 with padding
    ((3, 1, 9, 9), 5, 1, 2),   # 'same' padding, one input channel like conv1
    ((1, 4, 6, 6), 2, 3, 0),   # stride larger than the kernel: some pixels get no gradient
])
def test_conv2d_gradients(shape, kernel, stride, padding, rng):
    """Conv2D: dx (col2im of D @ W2), dW (D.T @ X) and db (sum of D) match finite differences."""
    layer = Conv2D(shape[1], 5, kernel, stride=stride, padding=padding, rng=rng)
    layer.params["b"] = rng.standard_normal(5)  # non-zero bias, so a wrong db cannot hide
    check_layer(layer, rng.standard_normal(shape), rng)


def test_conv2d_can_skip_the_input_gradient(rng):
    """With compute_input_grad off (the first layer), backward returns None but still fills dW, db."""
    layer = Conv2D(1, 4, 3, rng=rng).astype(np.float64)
    x = rng.standard_normal((2, 1, 6, 6))
    dout = rng.standard_normal(layer.forward(x).shape)
    layer.backward(dout)
    expected = {k: v.copy() for k, v in layer.grads.items()}
    layer.compute_input_grad = False
    assert layer.backward(dout) is None
    for k in expected:
        np.testing.assert_array_equal(layer.grads[k], expected[k])


def test_conv2d_matches_direct_convolution(rng):
    """The im2col + matmul forward equals the textbook sum over channels and kernel offsets."""
    layer = Conv2D(3, 4, 3, stride=2, padding=1, rng=rng).astype(np.float64)
    x = rng.standard_normal((2, 3, 7, 6))
    out = layer.forward(x)
    W, b = layer.params["W"], layer.params["b"]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.empty_like(out)
    for oh in range(out.shape[2]):
        for ow in range(out.shape[3]):
            patch = xp[:, :, 2 * oh:2 * oh + 3, 2 * ow:2 * ow + 3]  # (N, C, 3, 3)
            expected[:, :, oh, ow] = np.einsum("nchw,fchw->nf", patch, W) + b
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, size, stride", [
    ((2, 3, 8, 8), 2, 2),      # LeNet's pooling
    ((2, 2, 7, 9), 2, 2),      # odd sizes: the last row/column is dropped (floor)
    ((1, 2, 7, 7), 3, 2),      # overlapping windows: one pixel can win twice
])
@pytest.mark.parametrize("layer_class", [MaxPool2D, ReLUMaxPool2D])
def test_maxpool_gradients(shape, size, stride, layer_class, rng):
    """Max-pool (and the fused ReLU + max-pool): the gradient goes to each window's winner."""
    check_layer(layer_class(size, stride), distinct_values(rng, shape), rng)


def test_maxpool_ties_send_gradient_to_exactly_one_input(rng):
    """All-equal windows: each window's gradient goes to exactly one pixel, the first in row-major
    order, so the total gradient is conserved and the choice is the same on every run."""
    layer = MaxPool2D(2)
    x = np.zeros((2, 3, 4, 4))
    dout = rng.standard_normal((2, 3, 2, 2))
    layer.forward(x)
    dx = layer.backward(dout)
    windows = dx.reshape(2, 3, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 2, 2, 4)
    assert np.all(np.count_nonzero(windows, axis=-1) == 1)
    np.testing.assert_array_equal(windows[..., 0], dout)  # top-left of each window


def test_fused_relu_maxpool_equals_relu_then_maxpool(rng):
    """ReLUMaxPool2D gives the same output and input gradient as ReLU followed by MaxPool2D."""
    x = distinct_values(rng, (2, 3, 8, 8))
    dout = rng.standard_normal((2, 3, 4, 4))
    relu, pool, fused = ReLU(), MaxPool2D(2), ReLUMaxPool2D(2)
    np.testing.assert_array_equal(fused.forward(x), pool.forward(relu.forward(x)))
    np.testing.assert_array_equal(fused.backward(dout), relu.backward(pool.backward(dout)))


def test_relu_gradients(rng):
    """ReLU: dx = dout where x > 0, else 0."""
    check_layer(ReLU(), distinct_values(rng, (3, 2, 5, 7)), rng)


def test_flatten_gradients_and_order(rng):
    """Flatten keeps (C, H, W) order, and its backward is just the reshape back."""
    x = rng.standard_normal((2, 3, 4, 5))
    out = Flatten().forward(x)
    assert out[1, 2 * 20 + 3 * 5 + 4] == x[1, 2, 3, 4]
    check_layer(Flatten(), x, rng)


def test_dense_gradients(rng):
    """Dense: dW = x.T @ dout, db = sum of dout over the batch, dx = dout @ W.T."""
    layer = Dense(13, 7, rng=rng)
    layer.params["b"] = rng.standard_normal(7)
    check_layer(layer, rng.standard_normal((5, 13)), rng)


def test_dropout_gradients(rng):
    """Dropout in training mode: the gradient flows through the kept units, scaled by 1/(1-p).
    The mask is replayed by re-seeding the layer's generator before every forward pass."""
    layer = Dropout(0.4, rng=np.random.default_rng(0))

    def same_mask():
        layer.rng = np.random.default_rng(0)

    check_layer(layer, rng.standard_normal((6, 11)), rng, reset=same_mask)


def test_dropout_keeps_the_expected_value_and_is_identity_in_evaluation(rng):
    """Inverted dropout: E[out] = x while training, and exactly x when train=False."""
    layer = Dropout(0.5, rng=rng)
    x = np.ones((400, 500), dtype=np.float32)
    assert abs(layer.forward(x, train=True).mean() - 1.0) < 0.01
    np.testing.assert_array_equal(layer.forward(x, train=False), x)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_gradient(smoothing, rng):
    """dL/dz = (p - t) / N for the mean loss, with one-hot or smoothed targets t."""
    loss = SoftmaxCrossEntropy(label_smoothing=smoothing)
    z = rng.standard_normal((6, 9)) * 3
    y = rng.integers(0, 9, size=6)
    loss.forward(z, y)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(z, y), z)
    assert relative_error(analytic, numeric) < TOLERANCE


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    """log-sum-exp with the maximum subtracted: logits of 1e4 give a finite loss and gradient,
    where exp(1e4) alone would overflow to inf."""
    loss = SoftmaxCrossEntropy()
    z = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]])
    value = loss.forward(z, np.array([0, 0]))
    assert np.isfinite(value) and abs(value - 1e4 / 2) < 1e-6  # second row is wrong by a margin of 1e4
    assert np.all(np.isfinite(loss.backward()))


def test_softmax_cross_entropy_value(rng):
    """The loss is the mean of -log softmax(z)[label], computed here the naive way."""
    z = rng.standard_normal((4, 5))
    y = np.array([0, 4, 2, 2])
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(4), y]))
    assert abs(SoftmaxCrossEntropy().forward(z, y) - expected) < 1e-12
