"""The assembled LeNet: shapes, the whole-network gradient, the loss at initialisation, and a
real-data sanity check (it can memorise a small training set)."""

import math

import numpy as np
import pytest

from tinynet.nn.gradcheck import numerical_gradient, relative_error
from tinynet.nn.layers import SoftmaxCrossEntropy
from tinynet.nn.model import lenet
from tinynet.nn.optim import SGD


def test_lenet_shapes_and_parameter_names(rng):
    """Every parameter tensor has the documented name and shape (these are the checkpoint names)."""
    model = lenet(47, rng=rng)
    shapes = {name: p.shape for name, p, _ in model.parameters()}
    assert shapes == {
        "conv1.W": (20, 1, 5, 5), "conv1.b": (20,),
        "conv2.W": (50, 20, 5, 5), "conv2.b": (50,),
        "fc1.W": (800, 500), "fc1.b": (500,),
        "fc2.W": (500, 47), "fc2.b": (47,),
    }
    assert all(p.dtype == np.float32 for _, p, _ in model.parameters())
    logits = model.forward(rng.random((3, 1, 28, 28), dtype=np.float32))
    assert logits.shape == (3, 47) and logits.dtype == np.float32


@pytest.mark.parametrize("init", ["glorot", "he"])
def test_whole_lenet_gradient(init, rng):
    """Backprop through the whole network: for every parameter tensor, a random sample of entries of
    dLoss/dparam matches centred differences of the loss to a relative error below 1e-6.

    The step is h = 1e-6 rather than 1e-5: with thousands of ReLU and max-pool decisions in the
    network, a larger step is more likely to push one of them across its kink, where a finite
    difference no longer measures the derivative. In float64 the smaller step still leaves the
    rounding error (~1e-16 * loss / h) far below the tolerance.
    """
    model = lenet(47, rng=rng, init=init).astype(np.float64)
    x = rng.random((2, 1, 28, 28))
    y = rng.integers(0, 47, size=2)
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(x), y)
    model.backward(loss.backward())

    def total_loss():
        return loss.forward(model.forward(x), y)

    for name, param, grad in model.parameters():
        idx = rng.choice(param.size, size=min(param.size, 12), replace=False)
        numeric = numerical_gradient(total_loss, param, h=1e-6, indices=idx).reshape(-1)[idx]
        err = relative_error(grad.reshape(-1)[idx], numeric)
        assert err < 1e-6, f"{name}: relative error {err:.2e}"


def test_initial_loss_is_ln_of_class_count(rng):
    """With small random weights the 47 class probabilities start out nearly equal, so the
    cross-entropy starts near -ln(1/47) = ln(47) = 3.85. A much larger value means the
    initialisation is too large (confidently wrong predictions)."""
    model = lenet(47, rng=rng)
    x = rng.random((256, 1, 28, 28), dtype=np.float32)
    loss = SoftmaxCrossEntropy().forward(model.forward(x), rng.integers(0, 47, 256))
    assert abs(loss - math.log(47)) < 0.15


def test_lenet_overfits_a_small_real_training_set():
    """On 256 real EMNIST images (the first 256 of the sample shipped with tinynet, so this runs on
    any clone) the LeNet reaches 100% training accuracy in 200 steps. A network that
    cannot memorise a tiny set has a bug in its gradients or its update."""
    from tinynet.datasets.idx import to_float
    from tinynet.datasets.load import load_sample

    sample = load_sample()
    rng = np.random.default_rng(0)
    x, y = to_float(sample.images[:256]), sample.labels[:256]
    model = lenet(47, rng=rng, init="he")
    loss, opt = SoftmaxCrossEntropy(), SGD(lr=0.05, momentum=0.9)
    for step in range(200):  # 100% from step 125 on (measured)
        batch = rng.choice(256, size=64, replace=False)
        loss.forward(model.forward(x[batch]), y[batch])
        model.backward(loss.backward())
        opt.step(model)
    accuracy = np.mean(model.forward(x, train=False).argmax(axis=1) == y)
    assert accuracy == 1.0, f"training accuracy after 200 steps: {accuracy:.3f}"


@pytest.mark.parametrize("train", [True, False])
def test_nan_weights_give_nan_logits(train, rng):
    """NaN is never turned into a number: with conv1's weights all NaN, every logit is NaN (the
    fused ReLU + max-pool keeps NaN, as ReLU then max-pooling do), in the model and split over
    threads."""
    from tinynet.nn.parallel import DataParallel
    model = lenet(47, rng=rng)
    model.layers[0].params["W"][...] = np.nan
    x = rng.random((5, 1, 28, 28), dtype=np.float32)
    assert np.isnan(model.forward(x, train=train)).all()
    with DataParallel(model, 2) as net:
        assert np.isnan(net.forward(x, train=train)).all()


@pytest.mark.parametrize("train", [True, False])
def test_sequential_forward_equals_the_layers_one_by_one(train, rng):
    """Sequential.forward runs each conv + pool pair as one fused step (in pooling order, which
    changes the matmuls' row blocking and summation order), and Sequential.backward the same pairs
    fused backward: the logits equal those of the layers called one after the other to float32
    rounding, and so do the gradients after it."""
    model = lenet(47, rng=rng)
    for layer in model.layers:
        if "b" in layer.params:
            layer.params["b"][...] = 0.1 * rng.standard_normal(layer.params["b"].shape)
    x = rng.random((6, 1, 28, 28), dtype=np.float32)
    h = x
    for layer in model.layers:
        h = layer.forward(h, train)
    one_by_one = h.copy()
    if train:
        d = rng.standard_normal(h.shape).astype(np.float32)
        model.backward(d)
        grads = {name: g.copy() for name, _, g in model.parameters()}
        np.testing.assert_allclose(model.forward(x, train), one_by_one, rtol=1e-5, atol=1e-6)
        model.backward(d)
        for name, _, g in model.parameters():
            scale = np.abs(grads[name]).max()
            np.testing.assert_allclose(g, grads[name], rtol=1e-4, atol=1e-5 * scale, err_msg=name)
    else:
        np.testing.assert_allclose(model.forward(x, train), one_by_one, rtol=1e-5, atol=1e-6)
