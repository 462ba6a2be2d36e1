"""A batch of no images is a batch: every layer, the loss, ``Sequential``, ``DataParallel``, a
``Predictor`` and the metrics answer it with empty results of the right shapes (NaN where a mean
over nothing is asked for), with no error and no warning. (``Flatten`` raised ValueError on it, so
every model did.)"""

import warnings

import numpy as np
import pytest

from tinynet import Predictor
from tinynet.nn import reference
from tinynet.nn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, LogitAdjustment,
                               MaxPool2D, ReLU, ReLUMaxPool2D, SoftmaxCrossEntropy, softmax)
from tinynet.nn.model import lenet
from tinynet.nn.parallel import DataParallel
from tinynet.predict.metrics import (confusion_matrix, evaluate, format_report, per_class_metrics,
                                     predict_proba, top_k_accuracy)
from tinynet.predict.predictor import BUNDLED_MODEL

EMPTY_IMAGES = np.zeros((0, 28, 28), np.uint8)
NO_LABELS = np.zeros(0, np.int64)


@pytest.fixture(autouse=True)
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Mean of empty slice" and the like are failures here
        yield


# (make the layer from a generator, the input shape of one image), for every layer and plain twin
LAYERS = {
    "Conv2D": (lambda rng: Conv2D(2, 3, 3, rng=rng, padding=1), (2, 8, 8)),
    "MaxPool2D": (lambda rng: MaxPool2D(2), (3, 8, 8)),
    "ReLUMaxPool2D": (lambda rng: ReLUMaxPool2D(2), (3, 8, 8)),
    "ReLU": (lambda rng: ReLU(), (5,)),
    "Flatten": (lambda rng: Flatten(), (3, 4, 4)),
    "Dense": (lambda rng: Dense(5, 4, rng=rng), (5,)),
    "Dropout": (lambda rng: Dropout(0.5, rng=rng), (5,)),
    "LogitAdjustment": (lambda rng: LogitAdjustment([0.2, 0.8]), (2,)),
    "BatchNorm2D": (lambda rng: BatchNorm2D(3), (3, 5, 5)),
    "BatchNorm1D": (lambda rng: BatchNorm1D(5), (5,)),
    "reference.BatchNorm2D": (lambda rng: reference.BatchNorm2D(3), (3, 5, 5)),
    "reference.BatchNorm1D": (lambda rng: reference.BatchNorm1D(5), (5,)),
    "reference.Conv2D": (lambda rng: reference.Conv2D(2, 3, 3, rng=rng), (2, 8, 8)),
    "reference.MaxPool2D": (lambda rng: reference.MaxPool2D(2), (3, 8, 8)),
}


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("train", [True, False])
def test_every_layer_passes_an_empty_batch_forward_and_back(name, train, rng):
    make, shape = LAYERS[name]
    layer = make(rng)
    one = layer.forward(np.ones((1, *shape), np.float32), train)  # the shape of one image's output
    out = layer.forward(np.zeros((0, *shape), np.float32), train)
    assert out.shape == (0, *one.shape[1:])
    dx = layer.backward(np.zeros(out.shape, np.float32))
    assert dx.shape == (0, *shape)
    for key, grad in layer.grads.items():  # the gradients of no images: zero
        assert grad.shape == layer.params[key].shape and not grad.any()


def test_the_loss_of_an_empty_batch_is_nan_and_its_gradient_empty():
    loss = SoftmaxCrossEntropy(label_smoothing=0.1)
    value = loss.forward(np.zeros((0, 4), np.float32), NO_LABELS)
    assert np.isnan(value)  # the mean of nothing: undefined, never a made-up 0
    assert loss.backward().shape == (0, 4)
    assert softmax(np.zeros((0, 4), np.float32)).shape == (0, 4)


@pytest.mark.parametrize("make", [lambda rng: lenet(rng=rng), lambda rng: reference.reference_lenet(rng=rng),
                                  lambda rng: DataParallel(lenet(rng=rng), threads=2)])
def test_models_pass_an_empty_batch(make, rng):
    model = make(rng)
    logits = model.forward(np.zeros((0, 1, 28, 28), np.float32), train=True)
    assert logits.shape == (0, 47)
    dx = model.backward(np.zeros((0, 47), np.float32))
    assert dx is None or dx.shape == (0, 1, 28, 28)
    if isinstance(model, DataParallel):
        model.close()


@pytest.mark.parametrize("tta", [False, True])
def test_a_predictor_answers_no_images_with_empty_results(tta):
    with Predictor.from_checkpoint(BUNDLED_MODEL, threads=2, tta=tta) as predictor:
        assert predictor.predict_proba(EMPTY_IMAGES).shape == (0, 47)
        assert predictor.predict_proba(EMPTY_IMAGES).dtype == np.float32
        assert predictor.predict(EMPTY_IMAGES).shape == (0,)
        assert predictor.predict_chars(EMPTY_IMAGES) == []
        indices, probabilities = predictor.top_k(EMPTY_IMAGES, 5)
        assert indices.shape == probabilities.shape == (0, 5)
        assert predictor.predict_files([]) == []
        assert predict_proba(predictor.parallel, EMPTY_IMAGES).shape == (0, 47)


def test_the_metrics_of_no_images():
    with Predictor.from_checkpoint(BUNDLED_MODEL, threads=1) as predictor:
        loss, accuracy, balanced = evaluate(predictor.parallel, EMPTY_IMAGES, NO_LABELS)
    assert np.isnan(loss) and np.isnan(accuracy) and np.isnan(balanced)
    assert np.isnan(top_k_accuracy(np.zeros((0, 47), np.float32), NO_LABELS, 5))
    confusion = confusion_matrix(NO_LABELS, NO_LABELS, 47)
    assert confusion.shape == (47, 47) and not confusion.any()
    precision, recall, f1, support = per_class_metrics(confusion)
    assert not (precision.any() or recall.any() or f1.any() or support.any())
    report = format_report(confusion, [str(k) for k in range(47)], float("nan"), 5)
    assert report.startswith("accuracy        nan  (0 of 0)\nbalanced acc.   nan")
