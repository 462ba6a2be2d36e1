"""What the network sees (tinynet.predict.explain): the saliency gradient against centred finite
differences in float64, the feature maps against a plain convolution, the input-gradient switch
left as training needs it, and the pictures (--explain's PNG, filters.png)."""

import numpy as np
import pytest
from PIL import Image

from conftest import require_resplit
from tinynet.files.checkpoint import load_checkpoint
from tinynet.datasets.idx import load_split
from tinynet.predict.explain import explain, look_inside, save_explanation, scaled_maps
from tinynet.nn.gradcheck import relative_error
from tinynet.predict.predictor import BUNDLED_MODEL
from tinynet.nn.model import lenet
from tinynet.files.plots import plot_filters


def float64_lenet(rng, dropout=0.25):
    """A random LeNet in float64 with random (nonzero) biases, so no unit sits exactly at a kink,
    and a class-prior correction after its last layer, as the strongest recipes train it."""
    model = lenet(47, rng=rng, init="he", dropout=dropout,
                  class_prior=rng.random(47) + 0.1).astype(np.float64)
    for name, p, _ in model.parameters():
        if name.endswith(".b"):
            p[...] = rng.normal(0, 0.1, p.shape)
    return model


@pytest.mark.parametrize("target", [None, 3])
def test_saliency_is_the_gradient_of_the_logit(rng, target):
    """d logit[c] / d pixel from the backward pass matches centred differences of the forward
    pass (float64, every one of the 784 pixels, relative error < 1e-6), for the top class and for
    another one; the dropout layer is inactive in both.

    The 2 x 784 perturbed images x +- h e_i go through the network as one batch (the same centred
    differences as ``tinynet.nn.gradcheck``, 1,568 forward passes in one call)."""
    model = float64_lenet(rng)
    x = rng.random((1, 1, 28, 28))
    logits, c, saliency, _ = look_inside(model, x, target)
    assert c == (int(logits.argmax()) if target is None else target)
    h = 1e-6
    steps = h * np.eye(784).reshape(784, 1, 28, 28)
    z = model.forward(np.concatenate([x + steps, x - steps]), train=False)[:, c]
    numeric = ((z[:784] - z[784:]) / (2 * h)).reshape(28, 28)
    assert saliency.shape == (28, 28) and np.abs(saliency).max() > 0
    assert relative_error(saliency, numeric) < 1e-6


def test_saliency_leaves_training_as_it_was(rng):
    """look_inside switches conv1's input gradient on for its own pass only: afterwards the switch
    is back off and a training backward skips the input gradient again (returns None)."""
    model = lenet(47, rng=rng)
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    look_inside(model, x[:1])
    assert model.layers[0].compute_input_grad is False
    model.forward(x)
    assert model.backward(np.ones((2, 47), np.float32)) is None


def test_feature_maps_are_the_convolutions_after_relu(rng):
    """conv1's maps equal max(0, W * x + b) computed plainly (sliding windows, einsum), and
    max-pooling conv2's maps 2x2 gives what the network's pool2 layer passes on."""
    model = float64_lenet(rng, dropout=0)
    x = rng.random((1, 1, 28, 28))
    _, _, _, maps = look_inside(model, x)
    W, b = model.layers[0].params["W"], model.layers[0].params["b"]
    windows = np.lib.stride_tricks.sliding_window_view(x[0, 0], (5, 5))  # (24, 24, 5, 5)
    expected = np.maximum(np.einsum("hwij,cij->chw", windows, W[:, 0]) + b[:, None, None], 0)
    assert maps["conv1"].shape == (20, 24, 24) and np.allclose(maps["conv1"], expected, atol=1e-12)
    out = x
    for layer in model.layers[:4]:  # conv1, pool1, conv2, pool2
        out = layer.forward(out, train=False)
    assert maps["conv2"].shape == (50, 8, 8)
    assert np.allclose(maps["conv2"].reshape(50, 4, 2, 4, 2).max(axis=(2, 4)), out[0])


def test_scaled_maps_each_peak_at_one():
    maps = np.array([[[0.0, 2.0], [1.0, 0.5]], [[0.0, 0.0], [0.0, 0.0]]])
    scaled = scaled_maps(maps)
    assert np.array_equal(scaled[0], [[0, 1], [0.5, 0.25]]) and np.array_equal(scaled[1], np.zeros((2, 2)))


def test_explanation_of_a_real_image(tmp_path):
    """On a real test image the bundled model's explanation has the documented shapes, its top 5
    are best first and agree with the saliency's class, and save_explanation writes a PNG."""
    test = load_split(require_resplit(), "emnist-bymerge-resplit", "test")
    model, meta, _, _ = load_checkpoint(BUNDLED_MODEL)
    e = explain(model, test.images[0], meta["classes"])
    probs = [p for _, p in e.top_k]
    assert len(e.top_k) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert e.top_k[0][0] == meta["classes"][test.labels[0]]
    assert e.saliency.shape == (28, 28) and e.filters.shape == (20, 1, 5, 5)
    assert {k: v.shape for k, v in e.feature_maps.items()} == {"conv1": (20, 24, 24), "conv2": (50, 8, 8)}
    save_explanation(e, tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as image:
        assert image.width > 800 and image.height > 500


def test_plot_filters(tmp_path, rng):
    plot_filters(lenet(47, rng=rng).layers[0].params["W"], tmp_path / "filters.png")
    with Image.open(tmp_path / "filters.png") as image:
        assert image.format == "PNG" and image.width >= 300
