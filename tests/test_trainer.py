"""The training loop in parts (``Trainer``), the configuration that refuses bad values when it is
made, and the bugs of issue #33 (each test here failed before its fix). Learning itself is checked
on the small real sample that ships with tinynet, so every clone checks it."""

import json
from dataclasses import FrozenInstanceError, asdict, replace
from pathlib import Path

import numpy as np
import pytest

from tinynet.cli.train import main as train_main
from tinynet.datasets.idx import Split, train_val_split
from tinynet.datasets.load import load_sample
from tinynet.nn.model import build_model
from tinynet.predict.metrics import predict_proba
from tinynet import RECIPES, ConfigError, TrainConfig, Trainer, TrainingError, train
from test_training import quiet, tiny, weights  # noqa: F401 (tiny: the toy run's fixture)


def same_weights(a, b):
    a, b = weights(a), weights(b)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_the_trainer_in_parts_trains_exactly_as_train(tiny, tmp_path):
    """Steps one at a time, a checkpoint in the middle of an epoch, an evaluation, an epoch, and
    fit() for the rest end with bitwise the weights of one train() call; and a run resumed from
    the mid-epoch checkpoint saved by hand ends the same too."""
    train(tiny, tmp_path / "whole", download=False, progress=False, log=quiet)
    with Trainer(tiny, tmp_path / "parts", download=False, progress=False, log=quiet) as trainer:
        records = [trainer.step() for _ in range(3)]
        assert [r["step"] for r in records] == [1, 2, 3] and trainer.state["batch"] == 3
        trainer.save_checkpoint(tmp_path / "parts" / "last.npz")
        loss, accuracy, balanced = trainer.evaluate()
        assert np.isfinite(loss) and 0 <= accuracy <= 1 and 0 <= balanced <= 1
        record = trainer.run_epoch()
        assert record["epoch"] == 1 and trainer.state == {**trainer.state, "epoch": 1, "batch": 0}
        summary = trainer.fit()
    assert summary["status"] == "finished" and summary["epochs_done"] == 2
    assert same_weights(tmp_path / "whole" / "last.npz", tmp_path / "parts" / "last.npz")

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    with Trainer(tiny, tmp_path / "mid", download=False, progress=False, log=quiet) as trainer:
        for _ in range(3):
            trainer.step()
        trainer.save_checkpoint(resumed / "last.npz")
        (resumed / "config.json").write_text(json.dumps(asdict(tiny)))
    train(tiny, resumed, resume=True, download=False, progress=False, log=quiet)
    assert same_weights(tmp_path / "whole" / "last.npz", resumed / "last.npz")


def test_a_finished_epoch_must_be_ended_before_the_next_step(tiny, tmp_path):
    with Trainer(replace(tiny, epochs=1), tmp_path / "run", download=False, progress=False,
                 log=quiet) as trainer:
        while trainer.state["batch"] < trainer.batches_per_epoch:
            trainer.step()
        with pytest.raises(TrainingError, match="call end_epoch"):
            trainer.step()
        trainer.end_epoch()
        with pytest.raises(TrainingError, match="the run is finished"):
            trainer.step()


def test_training_learns_on_the_shipped_sample(tmp_path):
    """180 steps (4 epochs of 64 images) on three quarters of the real sample lift accuracy on the
    held-out quarter far above chance (1/47): measured 0.72-0.745 over seeds 0-4, in ~3 s."""
    sample = load_sample()
    train_idx, test_idx = train_val_split(sample.labels, 0.25, seed=0)
    part = lambda idx: Split(sample.images[idx], sample.labels[idx], sample.classes, sample.source)  # noqa: E731
    config = TrainConfig(dataset="emnist-sample", epochs=4, batch_size=64, lr=0.05, momentum=0.9, init="he",
                         lr_schedule="one-cycle", val_fraction=0.0)
    with Trainer(config, tmp_path / "run", train_data=part(train_idx), test_data=part(test_idx),
                 progress=False, log=quiet) as trainer:
        assert trainer.total_steps == 180
        summary = trainer.fit()
    assert summary["test_accuracy"] > 0.5, summary


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "epochs: must be a positive integer, got 0"),
    ({"batch_size": 2.5}, "batch_size: must be a positive integer, got 2.5"),
    ({"lr": -1}, "lr: must be a finite number > 0, got -1"),
    ({"lr": float("nan")}, "lr: must be a finite number > 0, got nan"),
    ({"val_fraction": 1.5}, "val_fraction: must be in [0, 1), got 1.5"),
    ({"weight_decay": -0.1}, "weight_decay: must be a finite number >= 0"),
    ({"lr_schedule": "linear"}, "lr_schedule: invalid choice: 'linear' (choose from 'constant', "),
    ({"init": "xavier"}, "init: invalid choice: 'xavier'"),
    ({"class_balance": "samples"}, "class_balance: invalid choice: 'samples' (choose from 'none', "
                                   "'prior', 'sample')"),
    ({"best_by": "test"}, "best_by: invalid choice: 'test'"),
    ({"augment": "yes"}, "augment: must be True or False"),
    ({"seed": -1}, "seed: must be an integer >= 0, got -1"),
    ({"threads": 0}, "threads: must be a positive integer, got 0"),
    ({"nesterov": True}, "nesterov needs momentum > 0"),
    ({"val_data": "elsewhere"}, "val_data and val_dataset go together"),
    ({"best_by": "external"}, "best_by external needs val_data"),
])
def test_the_config_refuses_what_training_cannot_use(changes, message):
    """Every field is checked when the config is made (also by dataclasses.replace), with the
    command line's wording: a misspelt class_balance no longer silently means none, and
    best_by="external" without validation data fails here, not after the first epoch."""
    with pytest.raises(ConfigError) as error:
        TrainConfig(**changes)
    assert message in str(error.value)
    with pytest.raises(ConfigError):
        replace(TrainConfig(), **changes)


def test_a_checked_config_cannot_be_changed_unchecked():
    """TrainConfig is frozen: ``cfg.lr = -5`` after the checks is refused; dataclasses.replace
    makes a changed copy and checks it; the normal forms still hold (floats, ints, text paths)."""
    config = TrainConfig(lr=0.05)
    with pytest.raises(FrozenInstanceError):
        config.lr = -5
    assert config.lr == 0.05
    with pytest.raises(ConfigError, match="lr: must be a finite number > 0, got -5"):
        replace(config, lr=-5)
    changed = replace(config, lr=1, data_dir=Path("elsewhere"))
    assert changed.lr == 1.0 and type(changed.lr) is float and changed.data_dir == "elsewhere"
    assert config.lr == 0.05 and hash(config) != hash(changed)


def test_a_refused_config_starts_no_work(tmp_path):
    with pytest.raises(ConfigError, match="best_by external needs val_data"):
        train(TrainConfig(data_dir=str(tmp_path), best_by="external"), tmp_path / "run", download=False,
              progress=False, log=quiet)
    assert not (tmp_path / "run").exists()


def test_the_config_accepts_paths_and_numbers_of_any_kind(tmp_path):
    config = TrainConfig(data_dir=tmp_path, lr=1, epochs=np.int64(3))
    assert config.data_dir == str(tmp_path) and config.lr == 1.0 and type(config.epochs) is int
    json.dumps(asdict(config))  # what config.json holds


def test_from_dict_refuses_unknown_keys_and_reads_every_old_config():
    with pytest.raises(ConfigError, match=r"unknown configuration key 'class_balanse' \(the fields are: "):
        TrainConfig.from_dict({"epochs": 3, "class_balanse": "sample"})
    assert TrainConfig.from_dict(asdict(TrainConfig(epochs=3))) == TrainConfig(epochs=3)
    first = {  # the keys of the first TrainConfig (e3e03dc); later versions only added fields
        "data_dir": "data", "dataset": "emnist-balanced", "epochs": 20, "batch_size": 128, "lr": 0.01,
        "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "lr_schedule": "constant",
        "augment": False, "label_smoothing": 0.0, "dropout": 0.0, "init": "glorot", "val_fraction": 0.1,
        "seed": 0, "limit": None, "threads": None}
    assert TrainConfig.from_dict(first) == TrainConfig()
    for recipe in RECIPES.values():
        TrainConfig.from_dict(asdict(TrainConfig(**recipe)))


def test_recipes_are_the_strong_one_and_its_variants():
    assert RECIPES["unseen"] == {**RECIPES["strong"], "epochs": 40, "class_balance": "sample",
                                 "best_by": "val-balanced"}


@pytest.mark.parametrize("argv, message", [
    (["--best-by", "external"], "--best-by external needs --val-data"),
    (["--val-data", "x"], "--val-data and --val-dataset go together"),
    (["--recipe", "strong", "--momentum", "0"], "--nesterov needs --momentum > 0"),
    (["--seed", "-1"], "must be an integer >= 0"),
])
def test_the_command_line_refuses_what_the_config_refuses(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_resume_with_threads_but_without_epochs_uses_the_threads(tiny, tmp_path, monkeypatch):
    """``--resume RUN --threads N`` without ``--epochs`` trains on N threads (it kept the saved
    count), and keeps the run's own epochs; ``--epochs`` alone keeps the saved threads."""
    run = tmp_path / "run"
    train(replace(tiny, epochs=1, threads=1), run, download=False, progress=False, log=quiet)
    seen = []
    monkeypatch.setattr("tinynet.cli.train.train", lambda config, *a, **k: seen.append(config) or
                        {"status": "finished"})
    assert train_main(["--resume", str(run), "--threads", "3"]) == 0
    assert train_main(["--resume", str(run), "--epochs", "4"]) == 0
    assert (seen[0].threads, seen[0].epochs) == (3, 1)
    assert (seen[1].threads, seen[1].epochs) == (1, 4)
    assert train_main(["--resume", str(tmp_path / "nothing")]) == 1


def test_predict_proba_of_no_images_with_a_class_prior_model():
    """An empty batch gives (0, K) probabilities; with a class-prior model (last layer without a
    bias) it raised KeyError: 'b'."""
    architecture = {"name": "lenet", "num_classes": 5, "dropout": 0.0, "class_prior": [0.2] * 5}
    model = build_model(architecture, np.random.default_rng(0))
    proba = predict_proba(model, np.zeros((0, 28, 28), np.uint8))
    assert proba.shape == (0, 5) and proba.dtype == np.float32


def test_softmax_is_written_once():
    import tinynet.nn.layers
    import tinynet.predict.metrics
    assert tinynet.predict.metrics.softmax is tinynet.nn.layers.softmax
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(tinynet.nn.layers.softmax(z).sum(axis=1), 1.0)


def test_the_main_api_is_importable_from_tinynet_and_loaded_only_when_used():
    import subprocess
    import sys

    import tinynet
    for name in tinynet.__all__:
        assert getattr(tinynet, name) is not None, name
    assert tinynet.Trainer is Trainer and tinynet.train is train and "Predictor" in dir(tinynet)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tinynet.nothing  # noqa: B018
    code = ("import sys, tinynet; before = sorted(m for m in sys.modules if m.startswith('tinynet.'));"
            "tinynet.Predictor; print(before, 'tinynet.training.trainer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    assert out.split() == ["[]", "False"], out
