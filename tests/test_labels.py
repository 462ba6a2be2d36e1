"""Labels outside [0, K) are refused where they enter, with a message naming the label and K: the
loss (NumPy would take a label of -1 as class K-1 without a word, and K as an IndexError from deep
inside), the metrics, and the trainer's in-memory data sets. (Files are checked against their
mapping when loaded: tests/test_data.py.)"""

import numpy as np
import pytest

from tinynet import ArgumentError, Split, TrainConfig, Trainer, TrainingError, load_sample
from tinynet.nn.layers import SoftmaxCrossEntropy
from tinynet.predict.metrics import confusion_matrix, top_k_accuracy

LOGITS = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


@pytest.mark.parametrize("bad", [-1, 3, 1000])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_loss_refuses_a_label_outside_the_classes(bad, smoothing):
    loss = SoftmaxCrossEntropy(smoothing)
    with pytest.raises(ArgumentError, match=rf"label {bad} is outside \[0, 3\): there are 3 classes"):
        loss.forward(LOGITS, np.array([0, 2, bad, 1]))
    assert loss.forward(LOGITS, np.array([0, 2, 2, 1])) > 0  # and takes the good ones


@pytest.mark.parametrize("labels, fault", [
    (np.array([0.0, 1.0, 2.0, 1.0]), r"integers of shape \(4,\), got float64 of shape \(4,\)"),
    (np.array([0, 1, 2]), r"integers of shape \(4,\), got int64 of shape \(3,\)"),
    (np.array([[0, 1], [2, 1]]), r"integers of shape \(4,\), got int64 of shape \(2, 2\)"),
])
def test_the_loss_refuses_labels_that_are_not_one_integer_per_row(labels, fault):
    with pytest.raises(ArgumentError, match=fault):
        SoftmaxCrossEntropy().forward(LOGITS, labels)


def test_the_metrics_refuse_labels_outside_the_classes():
    with pytest.raises(ArgumentError, match=r"label -1 is outside \[0, 3\)"):
        confusion_matrix(np.array([0, -1]), np.array([0, 1]), 3)
    with pytest.raises(ArgumentError, match=r"label 3 is outside \[0, 3\)"):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)
    with pytest.raises(ArgumentError, match=r"label -2 is outside \[0, 3\)"):
        top_k_accuracy(np.full((2, 3), 1 / 3), np.array([-2, 0]), 2)
    assert confusion_matrix(np.array([0, 2]), np.array([0, 1]), 3).tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]


@pytest.mark.parametrize("role", ["train_data", "test_data"])
@pytest.mark.parametrize("bad", [-1, 47])
def test_the_trainer_refuses_in_memory_labels_outside_the_classes(tmp_path, role, bad):
    """Before any training, naming the data set and the label; the run folder it made is gone."""
    sample = load_sample()
    labels = sample.labels.copy()
    labels[123] = bad
    broken = Split(sample.images, labels, sample.classes, sample.source)
    data = {"train_data": sample, "test_data": sample, role: broken}
    with pytest.raises(TrainingError, match=rf"{role} \(3760 images, 47 classes\): label {bad} is "
                                            rf"outside \[0, 47\)"):
        Trainer(TrainConfig(dataset="emnist-sample", epochs=1), tmp_path / "run", progress=False,
                log=lambda *a: None, **data)
    assert not (tmp_path / "run").exists()


def test_the_trainer_refuses_a_label_count_that_is_not_the_image_count(tmp_path):
    sample = load_sample()
    short = Split(sample.images, sample.labels[:-1], sample.classes, sample.source)
    with pytest.raises(TrainingError, match=r"train_data .*: labels must be integers of shape \(3760,\)"):
        Trainer(TrainConfig(dataset="emnist-sample", epochs=1), tmp_path / "run", progress=False,
                log=lambda *a: None, train_data=short)
