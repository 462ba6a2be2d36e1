"""The plain reference layers (tinynet/nn/reference.py): gradient-checked like the fast ones, equal to
them layer by layer, and the fast LeNet equals the reference LeNet on a real EMNIST batch (the
sample shipped with tinynet, so the check runs on any clone)."""

import numpy as np
import pytest

from tinynet.nn import layers as fast
from tinynet.nn import reference
from tinynet.datasets.idx import to_float
from tinynet.datasets.load import load_sample
from tinynet.nn.gradcheck import check_layer, distinct_values, relative_error
from tinynet.nn.model import lenet


CONV_CASES = [  # input shape, kernel, stride, padding: the cases of the fast Conv2D's checks
    ((2, 3, 7, 9), 3, 1, 0),   # odd sizes
    ((2, 2, 8, 7), 3, 2, 1),   # stride 2 with padding
    ((3, 1, 9, 9), 5, 1, 2),   # 'same' padding, one input channel like conv1
    ((1, 4, 6, 6), 2, 3, 0),   # stride larger than the kernel: some pixels get no gradient
]


@pytest.mark.parametrize("shape, kernel, stride, padding", CONV_CASES)
def test_reference_conv2d_gradients(shape, kernel, stride, padding, rng):
    layer = reference.Conv2D(shape[1], 5, kernel, stride=stride, padding=padding, rng=rng)
    layer.params["b"] = rng.standard_normal(5)
    check_layer(layer, rng.standard_normal(shape), rng)


@pytest.mark.parametrize("shape, size, stride", [
    ((2, 3, 8, 8), 2, 2), ((2, 2, 7, 9), 2, 2), ((1, 2, 7, 7), 3, 2)])
def test_reference_maxpool_gradients(shape, size, stride, rng):
    check_layer(reference.MaxPool2D(size, stride), distinct_values(rng, shape), rng)


@pytest.mark.parametrize("shape, kernel, stride, padding", CONV_CASES)
def test_fast_conv2d_equals_reference(shape, kernel, stride, padding, rng):
    """Same weights, same input: same output, dx, dW and db (float64)."""
    plain = reference.Conv2D(shape[1], 4, kernel, stride=stride, padding=padding, rng=rng).astype(np.float64)
    plain.params["b"] = rng.standard_normal(4)
    quick = fast.Conv2D(shape[1], 4, kernel, stride=stride, padding=padding, rng=rng).astype(np.float64)
    quick.params = {k: v.copy() for k, v in plain.params.items()}
    x = rng.standard_normal(shape)
    out = plain.forward(x)
    assert relative_error(quick.forward(x), out) < 1e-13
    dout = rng.standard_normal(out.shape)
    assert relative_error(quick.backward(dout), plain.backward(dout)) < 1e-13
    for k in plain.grads:
        assert relative_error(quick.grads[k], plain.grads[k]) < 1e-13, k


@pytest.mark.parametrize("shape, size, stride", [((2, 3, 8, 8), 2, 2), ((2, 2, 7, 9), 3, 2)])
def test_fast_maxpool_equals_reference_with_ties(shape, size, stride, rng):
    """Inputs with many ties (few distinct values): both pick the same winner in every window,
    the first maximum in row-major order, so outputs are identical and gradients too, but for the
    order in which a pixel that wins several overlapping windows adds their gradients (rounding).
    The fused ReLU + max-pool equals reference ReLU then reference max-pool."""
    x = rng.integers(-2, 3, shape).astype(np.float64)
    plain_pool = reference.MaxPool2D(size, stride)
    out = plain_pool.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = plain_pool.backward(dout)
    quick = fast.MaxPool2D(size, stride)
    np.testing.assert_array_equal(quick.forward(x), out)
    np.testing.assert_allclose(quick.backward(dout), dx, rtol=1e-14, atol=1e-14)

    relu, pooled = reference.ReLU(), reference.MaxPool2D(size, stride)
    fused = fast.ReLUMaxPool2D(size, stride)
    np.testing.assert_array_equal(fused.forward(x), pooled.forward(relu.forward(x)))
    np.testing.assert_allclose(fused.backward(dout), relu.backward(pooled.backward(dout)),
                               rtol=1e-14, atol=1e-14)


def test_reference_maxpool_ties_go_to_the_first_maximum():
    layer = reference.MaxPool2D(2)
    layer.forward(np.zeros((1, 1, 2, 4)))
    np.testing.assert_array_equal(layer.backward(np.array([[[[1.0, 2.0]]]])),
                                  [[[[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])


def test_reference_lenet_starts_with_the_fast_lenets_weights():
    plain = reference.reference_lenet(rng=np.random.default_rng(3), init="he", dropout=0.25)
    quick = lenet(rng=np.random.default_rng(3), init="he", dropout=0.25)
    assert plain.state_dict().keys() == quick.state_dict().keys()
    for name, value in quick.state_dict().items():
        np.testing.assert_array_equal(plain.state_dict()[name], value, err_msg=name)


def test_fast_lenet_equals_reference_lenet_on_a_real_batch(rng):
    """The whole fast LeNet (channels-last memory, im2col, fused ReLU + pool, reused buffers) and the
    plain one, same float64 weights, 64 real EMNIST images (the first 64 of the shipped sample):
    logits, loss and every parameter gradient agree to a relative error <= 1e-10. (conv1 of the fast
    LeNet skips its input gradient, so only parameter gradients are compared.)"""
    sample = load_sample()
    x, labels = to_float(sample.images[:64]).astype(np.float64), sample.labels[:64]
    quick = lenet(47, rng=np.random.default_rng(0)).astype(np.float64)
    plain = reference.reference_lenet(47, rng=np.random.default_rng(1)).astype(np.float64)
    weights = {name: p + (0.05 * rng.standard_normal(p.shape) if name.endswith(".b") else 0)
               for name, p in quick.state_dict().items()}  # non-zero biases: ReLUs cut mid-range
    quick.load_state_dict(weights)
    plain.load_state_dict(weights)

    results = {}
    for name, net in (("fast", quick), ("reference", plain)):
        loss_fn = fast.SoftmaxCrossEntropy()
        logits = net.forward(x, train=True)
        loss = loss_fn.forward(logits, labels)
        net.backward(loss_fn.backward())
        results[name] = logits, loss, {n: g.copy() for n, _, g in net.parameters()}

    (fast_logits, fast_loss, fast_grads), (ref_logits, ref_loss, ref_grads) = results.values()
    assert relative_error(fast_logits, ref_logits) <= 1e-10
    assert abs(fast_loss - ref_loss) <= 1e-10 * abs(ref_loss)
    assert fast_grads.keys() == ref_grads.keys()
    for name in ref_grads:
        assert np.abs(ref_grads[name]).max() > 0, name
        err = relative_error(fast_grads[name], ref_grads[name])
        assert err <= 1e-10, f"{name}: relative error {err:.2e}"
