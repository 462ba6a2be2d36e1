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
from tinynet.nn.convpool import backward_pool, forward_pool, fused
from tinynet.nn.layers import (Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, ReLUMaxPool2D,
                               SoftmaxCrossEntropy)
from tinynet.nn.model import lenet

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


def with_nan_and_inf(x, rng):
    """``x`` with about one value in ten NaN, and some +inf and -inf."""
    x = x.copy()
    u = rng.random(x.shape)
    x[u < 0.1] = np.nan
    x[(u >= 0.1) & (u < 0.15)] = np.inf
    x[(u >= 0.15) & (u < 0.2)] = -np.inf
    return x


@pytest.mark.parametrize("size, stride", [(2, 2), (3, 2), (2, 1)])
def test_fused_relu_maxpool_keeps_nan_and_inf_as_relu_then_maxpool(size, stride, rng):
    """NaN is never turned into a number: with NaN and infinities in the input, the fused layer
    gives what ReLU then MaxPool2D give (a window holding a NaN gives NaN: np.maximum(NaN, 0) is
    NaN, and in a window NaN beats every number), and routes the gradient the same way (none to
    a NaN, as ReLU's mask x > 0 is False there). The plain reference layers agree too."""
    from tinynet.nn import reference
    x = with_nan_and_inf(rng.integers(-3, 4, (2, 3, 9, 8)).astype(np.float64), rng)
    relu, pool, fused = ReLU(), MaxPool2D(size, stride), ReLUMaxPool2D(size, stride)
    expected = pool.forward(relu.forward(x))
    out = fused.forward(x)
    assert np.isnan(out).any() and np.isinf(out).any()
    np.testing.assert_array_equal(out, expected)
    plain_relu, plain_pool = reference.ReLU(), reference.MaxPool2D(size, stride)
    np.testing.assert_array_equal(plain_pool.forward(plain_relu.forward(x)), expected)
    dout = rng.standard_normal(out.shape)
    dx = fused.backward(dout)
    np.testing.assert_array_equal(dx, relu.backward(pool.backward(dout)))
    # (overlapping windows: the reference adds a pixel's gradients in another order; rounding)
    np.testing.assert_allclose(dx, plain_relu.backward(plain_pool.backward(dout)), rtol=1e-14,
                               atol=1e-14)


def test_maxpool_never_hides_a_nan(rng):
    """MaxPool2D: a NaN anywhere in a window (not only first) makes the window's output NaN, and
    the window's gradient goes to that NaN (the first one), as the reference layer (np.argmax)."""
    from tinynet.nn import reference
    x = rng.standard_normal((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan   # last pixel of the top-left window
    x[0, 0, 0, 3] = np.nan   # second pixel of the top-right window
    pool, plain = MaxPool2D(2), reference.MaxPool2D(2)
    out = pool.forward(x)
    np.testing.assert_array_equal(np.isnan(out[0, 0]), [[True, True], [False, False]])
    np.testing.assert_array_equal(out, plain.forward(x))
    dout = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(pool.backward(dout), plain.backward(dout))


@pytest.mark.parametrize("width", [10, 11])  # conv output 8 x 8: in pooling order; 8 x 9: not
@pytest.mark.parametrize("pool_class", [MaxPool2D, ReLUMaxPool2D])
def test_conv2d_and_pool_fused_equal_the_layers_one_after_the_other(pool_class, width, rng):
    """forward_pool (what Sequential.forward runs) == Conv2D.forward then the pooling layer's
    forward: the same output, and afterwards the same gradients, whether the two backward passes
    run fused (backward_pool, what Sequential.backward runs) or one layer at a time. Bitwise
    when pooling goes window by window (a conv output of 8 x 9); in pooling order (8 x 8, and
    always for evaluation) the matmuls sum the rows in another order: equal up to rounding."""
    conv = Conv2D(2, 3, 3, rng=rng).astype(np.float64)
    conv.params["b"] = rng.integers(-2, 3, 3).astype(np.float64)
    x = rng.integers(-2, 3, (3, 2, 10, width)).astype(np.float64)  # small integers: ties
    pool = pool_class(2)
    expected = pool.forward(conv.forward(x))
    dout = rng.standard_normal(expected.shape)
    dx = conv.backward(pool.backward(dout))
    grads = {k: v.copy() for k, v in conv.grads.items()}
    exact = width == 11
    same = np.testing.assert_array_equal if exact else (
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12))
    for fused_backward in (True, False):
        np.testing.assert_array_equal(forward_pool(conv, x, pool, True), expected)
        assert fused(conv, pool) == (not exact)
        if fused_backward and fused(conv, pool):
            same(backward_pool(conv, pool, dout), dx)
        else:
            same(conv.backward(pool.backward(dout)), dx)
        for k in grads:
            same(conv.grads[k], grads[k])
    np.testing.assert_allclose(forward_pool(conv, x, pool, False), expected, rtol=1e-12, atol=1e-12)
    # an evaluation pass keeps no argmax: a backward after it (a saliency map) finds the winners
    np.testing.assert_allclose(conv.backward(pool.backward(dout)), dx, rtol=1e-12)
    for k in grads:
        np.testing.assert_allclose(conv.grads[k], grads[k], rtol=1e-12)


def test_a_network_fused_in_pooling_order_trains_as_its_layers_one_by_one(rng):
    """The LeNet's shapes (conv outputs 24 x 24 and 8 x 8, both pooled in pooling order), float64:
    Sequential's fused forward and backward give the logits and every gradient that the layers run
    one by one give."""
    model = lenet(rng=rng).astype(np.float64)
    x = rng.random((4, 1, 28, 28))
    logits = model.forward(x)
    dlogits = rng.standard_normal(logits.shape)
    model.backward(dlogits)
    fused_grads = {name: g.copy() for name, _, g in model.parameters()}
    assert fused(model.layers[0], model.layers[1]) and fused(model.layers[2], model.layers[3])
    h = x
    for layer in model.layers:
        h = layer.forward(h, True)
    np.testing.assert_allclose(h, logits, rtol=1e-12, atol=1e-12)
    d = dlogits
    for layer in reversed(model.layers):
        d = layer.backward(d)
    for name, _, g in model.parameters():
        np.testing.assert_allclose(g, fused_grads[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_conv2d_backward_after_an_evaluation_forward(rng):
    """Backward after forward(train=False) (explain's saliency maps) rebuilds the im2col matrix it
    did not keep, and gives the same gradients as after a training forward."""
    conv = Conv2D(2, 3, 3, padding=1, rng=rng).astype(np.float64)
    x = rng.standard_normal((2, 2, 6, 5))
    dout = rng.standard_normal(conv.forward(x, train=True).shape)
    dx = conv.backward(dout)
    grads = {k: v.copy() for k, v in conv.grads.items()}
    conv.forward(x, train=False)
    np.testing.assert_allclose(conv.backward(dout), dx, rtol=1e-12)
    for k in grads:
        np.testing.assert_allclose(conv.grads[k], grads[k], rtol=1e-12)


def every_layer(rng):
    """One of each layer (fast and reference) with an input it takes, as (name, layer, shape)."""
    from tinynet.nn import reference
    from tinynet.nn.layers import LogitAdjustment
    return [
        ("Conv2D", Conv2D(2, 3, 3, rng=rng), (2, 2, 7, 6)),
        ("MaxPool2D", MaxPool2D(2), (2, 3, 6, 6)),
        ("ReLUMaxPool2D", ReLUMaxPool2D(2), (2, 3, 6, 6)),
        ("ReLU", ReLU(), (2, 5)),
        ("Flatten", Flatten(), (2, 3, 2, 2)),
        ("Dense", Dense(4, 3, rng=rng), (2, 4)),
        ("Dropout", Dropout(0.5, rng=rng), (2, 5)),
        ("LogitAdjustment", LogitAdjustment([0.2, 0.3, 0.5]), (2, 3)),
        ("reference.Conv2D", reference.Conv2D(2, 3, 3, rng=rng), (2, 2, 7, 6)),
        ("reference.MaxPool2D", reference.MaxPool2D(2), (2, 3, 6, 6)),
    ]


@pytest.mark.parametrize("train", [True, False])
def test_every_layers_forward_result_belongs_to_the_caller(train, rng):
    """A second forward call (other values, same shape) leaves the first call's result as it was:
    no layer returns a scratch buffer that it reuses."""
    for name, layer, shape in every_layer(rng):
        x1 = rng.standard_normal(shape).astype(np.float32)
        first = layer.forward(x1, train)
        kept = np.array(first, copy=True)
        layer.forward(rng.standard_normal(shape).astype(np.float32), train)
        np.testing.assert_array_equal(first, kept, err_msg=name)


@pytest.mark.parametrize("train", [True, False])
def test_fused_conv_pool_result_belongs_to_the_caller(train, rng):
    conv, pool = Conv2D(1, 4, 5, rng=rng), ReLUMaxPool2D(2)
    first = forward_pool(conv, rng.random((3, 1, 28, 28), dtype=np.float32), pool, train)
    kept = first.copy()
    forward_pool(conv, rng.random((3, 1, 28, 28), dtype=np.float32), pool, train)
    np.testing.assert_array_equal(first, kept)
