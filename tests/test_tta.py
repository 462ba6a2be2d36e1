"""Test-time augmentation (tinynet/predict/tta.py): the average of the model's probabilities over rotated views."""

import numpy as np
import pytest

from tinynet.datasets.augment import affine_transform_reference
from tinynet.predict.predictor import Predictor
from tinynet.nn.model import lenet
from tinynet.nn.layers import softmax
from tinynet.predict.tta import TTA, rotation_matrix


def test_a_quarter_turn_is_np_rot90(rng):
    """rotation_matrix's convention: 90 degrees turns the image a quarter turn, as np.rot90 does
    (anticlockwise as displayed, rows downwards), exactly on the pixel grid."""
    image = rng.random((1, 1, 7, 7))
    turned = affine_transform_reference(image, rotation_matrix(90.0, 7)[None])
    np.testing.assert_allclose(turned[0, 0], np.rot90(image[0, 0], k=-1), atol=1e-12)
    np.testing.assert_allclose(affine_transform_reference(image, rotation_matrix(0.0, 7)[None]), image, atol=1e-12)


def test_tta_averages_the_probabilities_of_the_views(rng):
    model = lenet(47, rng=rng)
    x = rng.random((5, 1, 28, 28)).astype(np.float32)
    views = [x] + [affine_transform_reference(x, np.repeat(rotation_matrix(d)[None], 5, axis=0)) for d in (-5.0, 5.0)]
    expected = np.mean([softmax(model.forward(v, train=False)) for v in views], axis=0)
    out = TTA(model, (0.0, -5.0, 5.0)).forward(x)
    np.testing.assert_allclose(np.exp(out), expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-5)
    single = TTA(model, (0.0,)).forward(x)
    np.testing.assert_allclose(softmax(single), softmax(model.forward(x, train=False)), rtol=1e-5, atol=1e-7)


def test_tta_predicts_an_empty_batch(rng):
    """Like the plain model, a TTA-wrapped one answers no images with a (0, K) array."""
    predictor = Predictor(lenet(47, rng=rng), [str(k) for k in range(47)], tta=True)
    assert predictor.predict_proba(np.zeros((0, 28, 28), np.uint8)).shape == (0, 47)


def test_tta_refuses_training(rng):
    with pytest.raises(ValueError, match="not training"):
        TTA(lenet(47, rng=rng)).forward(np.zeros((1, 1, 28, 28), np.float32), train=True)
