"""Class-prior correction, balanced accuracy and external validation (training for balanced use)."""

import json

import numpy as np
import pytest

from tinynet.files.checkpoint import load_checkpoint
from tinynet.cli.infer import main as infer_main
from tinynet.cli.train import main as train_main
from tinynet.nn.gradcheck import check_layer
from tinynet.nn.layers import LogitAdjustment
from tinynet.nn.model import lenet
from tinynet.predict.metrics import evaluate
from tinynet import TrainConfig, TrainingError, train
from tinynet.testing.datasets import write_toy_dataset


def quiet(*args):
    pass


@pytest.mark.parametrize("train_mode", [True, False])
def test_logit_adjustment_gradients(train_mode, rng):
    layer = LogitAdjustment(rng.uniform(0.1, 3.0, 7), name="prior")
    check_layer(layer, rng.standard_normal((5, 7)), rng, train=train_mode)


def test_logit_adjustment_subtracts_the_log_prior_only_when_evaluating():
    counts = np.array([300.0, 100.0, 600.0])
    layer = LogitAdjustment(counts)
    z = np.zeros((1, 3), np.float32)
    assert np.array_equal(layer.forward(z, train=True), z)
    np.testing.assert_allclose(layer.forward(z, train=False), [-np.log([0.3, 0.1, 0.6])], rtol=1e-6)
    # a frequent class needs more evidence: equal logits now favour the rare class
    assert layer.forward(z, train=False).argmax() == 1


@pytest.mark.parametrize("prior", [[0.5, 0.5], [1.0, 0.0, 2.0], [1.0, float("nan"), 1.0]])
def test_bad_class_priors_are_refused(prior, rng):
    with pytest.raises(ValueError):
        lenet(3, rng=rng, class_prior=prior)


def test_balanced_accuracy_is_the_mean_recall():
    class Fixed:  # predicts class 0 for everything
        def forward(self, x, train=False):
            return np.tile([1.0, 0.0], (len(x), 1)).astype(np.float32)

    labels = np.array([0, 0, 0, 1])  # accuracy 3/4, but class 1's recall is 0
    _, acc, balanced = evaluate(Fixed(), np.zeros((4, 28, 28), np.uint8), labels)
    assert acc == 0.75 and balanced == 0.5


@pytest.fixture
def toy(tmp_path):
    return str(write_toy_dataset(tmp_path / "data"))


def test_external_validation_and_class_prior_in_a_run(toy, tmp_path, capsys):
    """--val-data scores every epoch on another set; --class-balance prior stores the training
    set's class frequencies in the checkpoint, the loaded model applies them, and inference.py
    says the checkpoint is corrected."""
    config = TrainConfig(data_dir=toy, dataset="tiny", epochs=2, batch_size=32, lr=0.05,
                         val_data=toy, val_dataset="tiny", class_balance="prior", best_by="external")
    summary = train(config, tmp_path / "run", download=False, progress=False, log=quiet)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all({"external_loss", "external_accuracy", "val_balanced_accuracy"} <= r.keys() for r in records)
    best = max(records, key=lambda r: r["external_accuracy"])
    assert summary["best_by"] == "external_accuracy"
    assert summary["best_val_accuracy"] == best["external_accuracy"]
    model, meta, _, _ = load_checkpoint(tmp_path / "run" / "last.npz")
    prior = np.array(meta["architecture"]["class_prior"])
    assert prior.shape == (5,) and abs(prior.sum() - 1) < 1e-9
    assert isinstance(model.layers[-1], LogitAdjustment)
    np.testing.assert_allclose(model.layers[-1].offset, np.log(prior), rtol=1e-6)
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28), np.uint8))
    capsys.readouterr()
    checkpoint = str(tmp_path / "run" / "last.npz")
    assert infer_main(["--input", str(tmp_path / "x.npy"), "--checkpoint", checkpoint]) == 0
    assert "(5 classes, class-prior corrected)" in capsys.readouterr().out.splitlines()[0]


def test_external_set_with_other_classes_is_an_error(toy, tmp_path):
    other = str(write_toy_dataset(tmp_path / "other", classes=4))
    config = TrainConfig(data_dir=toy, dataset="tiny", epochs=1, val_data=other, val_dataset="tiny")
    with pytest.raises(TrainingError, match="classes do not match"):
        train(config, tmp_path / "run", download=False, progress=False, log=quiet)


@pytest.mark.parametrize("argv, message", [
    (["--val-data", "x"], "go together"),
    (["--best-by", "external"], "needs --val-data"),
])
def test_train_cli_checks_validation_options(argv, message, capsys):
    with pytest.raises(SystemExit):
        train_main(argv + ["--no-download"])
    assert message in capsys.readouterr().err


def test_class_balanced_sampling_draws_classes_equally(rng):
    from tinynet.training.data import epoch_order
    labels = np.repeat([0, 1, 2], [900, 90, 10])
    train_idx = np.arange(len(labels))
    order = epoch_order(train_idx, labels, "sample", rng)
    assert order.shape == train_idx.shape
    counts = np.bincount(labels[order], minlength=3)
    assert np.all(np.abs(counts - 1000 / 3) < 60), counts
    assert np.array_equal(np.sort(epoch_order(train_idx, labels, "none", rng)), train_idx)


def test_class_balanced_sampling_resumes_exactly(toy, tmp_path):
    """A run with --class-balance sample stopped after one epoch and resumed equals a straight run."""
    config = TrainConfig(data_dir=toy, dataset="tiny", epochs=2, batch_size=32, lr=0.05, class_balance="sample")
    train(config, tmp_path / "straight", download=False, progress=False, log=quiet)
    train(TrainConfig(**{**config.__dict__, "epochs": 1}), tmp_path / "resumed", download=False,
          progress=False, log=quiet)
    train(config, tmp_path / "resumed", resume=True, download=False, progress=False, log=quiet)
    a = load_checkpoint(tmp_path / "straight" / "last.npz")[0].state_dict()
    b = load_checkpoint(tmp_path / "resumed" / "last.npz")[0].state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
