"""Your own network, your own data (issue #38): every tool takes any network built from tinynet's
layers, and the sample shipped with tinynet is a data set every command knows.

- Trainer, train() and train.py --model take a preset's name, a description (a JSON file) or a
  Sequential; a custom network resumes exactly; LeNet runs still store the preset form.
- Three networks (the LeNet, an MLP, a net of stride-2 padded convolutions without pooling) train
  on the sample, and save -> load -> predict is bitwise on 1,000 real images from it.
- IDX data sets of other sizes (20x20, 32x24), written here, train and predict (Predictor,
  inference.py), upright or transposed as their files say.
- --dataset sample works offline end to end: train.py (with --watch's recorder), inference.py.
- The pages and TensorBoard for networks without a convolution and with several.
- docs/library.md's "Your own network" example runs as written.
"""

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tinynet import TrainConfig, Trainer, TrainingError, train
from tinynet.cli.infer import main as infer_main
from tinynet.cli.train import main as train_main
from tinynet.datasets.idx import write_idx
from tinynet.datasets.load import load_dataset, sample_splits
from tinynet.files.checkpoint import load_checkpoint
from tinynet.nn.describe import describe
from tinynet.nn.model import build_model, mlp
from tinynet.predict.explain import explain, save_explanation
from tinynet.predict.predictor import Predictor
from tinynet.training.errors import NetworkError
from tinynet.training.runlog import Recorder

ROOT = Path(__file__).resolve().parents[1]
quiet = dict(progress=False, log=lambda *a: None)


def conv(name, channels, kernel, stride=1, padding=0):
    return {"kind": "Conv2D", "name": name, "out_channels": channels, "kernel_size": kernel, "stride": stride,
            "padding": padding}


# stride-2 convolutions with padding and no pooling; no "input": the data's size is used
STRIDED = {"layers": [conv("conv1", 8, 3, 2, 1), {"kind": "ReLU", "name": "relu1"}, conv("conv2", 16, 3, 2, 1),
                      {"kind": "ReLU", "name": "relu2"}, {"kind": "Flatten", "name": "flatten"},
                      {"kind": "Dense", "name": "fc1", "out_features": 64}, {"kind": "ReLU", "name": "relu3"},
                      {"kind": "Dense", "name": "fc2", "out_features": 47}]}
SAMPLE = TrainConfig(dataset="sample", epochs=1, batch_size=64, lr=0.05, momentum=0.9, init="he", limit=640)


def sample_images(n=1000):
    """``n`` real images of the shipped sample (its test split, then its training images)."""
    splits = sample_splits()
    return np.concatenate([splits["test"].images, splits["train"].images])[:n]


@pytest.mark.parametrize("network", ["lenet", "mlp", STRIDED], ids=["lenet", "mlp", "strided"])
def test_three_networks_train_on_the_sample_and_save_load_predict_bitwise(network, tmp_path):
    """Each trains 10 steps on the shipped sample; the checkpoint it writes loads as the same
    network (description, weights) and predicts bitwise the same probabilities as the trained model
    on 1,000 real images."""
    with Trainer(SAMPLE, tmp_path / "run", network=network, **quiet) as trainer:
        trainer.fit()
        model = trainer.model
    loaded, meta, _, _ = load_checkpoint(tmp_path / "run" / "last.npz")
    assert describe(loaded) == describe(model)
    images = sample_images()
    with Predictor(model, meta["classes"]) as trained, Predictor(loaded, meta["classes"]) as reloaded:
        before, after = trained.predict_proba(images), reloaded.predict_proba(images)
    assert len(images) == 1000 and np.array_equal(before, after)
    assert (tmp_path / "run" / "filters.png").exists() == (network != "mlp")


def test_lenet_runs_store_the_preset_form_and_other_networks_their_layers(tmp_path):
    """A LeNet on 28x28 images keeps the form every LeNet checkpoint has had (older tinynet reads
    it); an MLP, and a LeNet on 20x20 images, are stored written out."""
    prior = replace(SAMPLE, dropout=0.25, class_balance="prior", epochs=1, limit=64)
    train(prior, tmp_path / "lenet", **quiet)
    arch = load_checkpoint(tmp_path / "lenet" / "last.npz")[1]["architecture"]
    assert set(arch) == {"name", "num_classes", "dropout", "class_prior"} and arch["dropout"] == 0.25
    train(prior, tmp_path / "mlp", network="mlp", **quiet)
    layers = load_checkpoint(tmp_path / "mlp" / "last.npz")[1]["architecture"]["layers"]
    assert [s["kind"] for s in layers][-3:] == ["Dropout", "Dense", "LogitAdjustment"]


def test_trainer_and_train_take_a_description_or_a_sequential(tmp_path):
    """A description (without "input": the data's) and a Sequential, trained as it is and in
    place: the run's model is the caller's, its description in the checkpoints."""
    summary = train(replace(SAMPLE, dropout=0.1), tmp_path / "described", network=STRIDED, **quiet)
    assert summary["status"] == "finished"
    layers = load_checkpoint(tmp_path / "described" / "last.npz")[1]["architecture"]["layers"]
    assert [s["name"] for s in layers] == ["conv1", "relu1", "conv2", "relu2", "flatten", "fc1", "relu3",
                                          "dropout", "fc2"]  # the recipe's dropout before the last Dense
    model = mlp(47, rng=np.random.default_rng(1), init="he")
    start = model.state_dict()["fc1.W"].copy()
    with Trainer(SAMPLE, tmp_path / "given", network=model, **quiet) as trainer:
        assert trainer.model is model
        trainer.step()
    assert not np.array_equal(model.state_dict()["fc1.W"], start)
    with pytest.raises(NetworkError, match="a Sequential is trained as it is"):
        Trainer(replace(SAMPLE, dropout=0.2), tmp_path / "x", network=model, **quiet)


@pytest.mark.parametrize("network, message", [
    ({"layers": STRIDED["layers"][:-1] + [{"kind": "Dense", "name": "fc2", "out_features": 10}]},
     "the network gives 10 logits, the data has 47 classes"),
    ({"input": [1, 20, 20], **STRIDED}, r"the network takes inputs of shape \(1, 20, 20\), the data's images "
                                        r"are \(1, 28, 28\)"),
    ({"layers": [conv("c", 4, 40), {"kind": "Flatten"}, {"kind": "Dense", "out_features": 47}]},
     r"layer 0 \('c', Conv2D\): its 40x40 window does not fit"),
    ("resnet", "unknown preset 'resnet'"),
    (3, "a network is a preset's name"),
])
def test_a_network_that_does_not_fit_is_refused_before_any_work(network, message, tmp_path):
    with pytest.raises(NetworkError, match=message):
        train(SAMPLE, tmp_path / "run", network=network, **quiet)
    assert not (tmp_path / "run").exists()


def test_a_custom_network_resumes_exactly(tmp_path):
    """A strided net with dropout, interrupted after one epoch and resumed, ends with bitwise the
    weights of a run straight through."""
    config = replace(SAMPLE, epochs=2, limit=320, dropout=0.2, augment=True)
    train(config, tmp_path / "straight", network=STRIDED, **quiet)
    train(replace(config, epochs=1), tmp_path / "split", network=STRIDED, **quiet)
    train(config, tmp_path / "split", resume=True, **quiet)
    a = load_checkpoint(tmp_path / "straight" / "last.npz")[0].state_dict()
    b = load_checkpoint(tmp_path / "split" / "last.npz")[0].state_dict()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(TrainingError, match="a resumed run trains the network in its last.npz"):
        train(config, tmp_path / "split", resume=True, network="mlp", **quiet)


def test_train_py_model_takes_a_preset_and_a_json_file(tmp_path, capsys):
    """train.py --model mlp and --model FILE.json on --dataset sample (no folder, no download);
    a description that cannot be built is a one-line error naming the file and the layer; a
    --model that is neither is an argparse error."""
    common = ["--dataset", "sample", "--epochs", "1", "--limit", "128", "--batch-size", "64",
              "--runs-dir", str(tmp_path), "--no-progress"]
    assert train_main([*common, "--model", "mlp", "--name", "mlp"]) == 0
    assert "layers" in load_checkpoint(tmp_path / "mlp" / "last.npz")[1]["architecture"]
    (tmp_path / "net.json").write_text(json.dumps(STRIDED))
    assert train_main([*common, "--model", str(tmp_path / "net.json"), "--name", "file"]) == 0
    stored = load_checkpoint(tmp_path / "file" / "best.npz")[1]["architecture"]
    assert stored == {"input": [1, 28, 28], **STRIDED}
    broken = {"layers": [conv("c1", 4, 3), {"kind": "Dense", "name": "fc", "out_features": 47}]}
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    capsys.readouterr()
    assert train_main([*common, "--model", str(tmp_path / "broken.json"), "--name", "broken"]) == 1
    assert capsys.readouterr().err == (f"error: --model {tmp_path / 'broken.json'}: layer 1 ('fc', Dense): a "
                                       f"Dense layer takes a flat (features,) input, but its input has shape "
                                       f"(4, 26, 26): put a Flatten before it\n")
    for value, words in (("vgg", "neither a preset (lenet, mlp) nor a .json file"),
                         (str(tmp_path / "none.json"), "cannot read it")):
        with pytest.raises(SystemExit) as exit_info:
            train_main([*common, "--model", value])
        assert exit_info.value.code == 2 and words in capsys.readouterr().err


def write_set(folder, name, shape, n_train=240, n_test=60, classes=4, upright=False):
    """A small IDX data set of images of ``shape`` (H, W): each class a bright bar at its own
    height; stored transposed (EMNIST's way) unless ``upright``. Returns the upright test images."""
    rng = np.random.default_rng(0)
    h, w = shape
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, classes, n).astype(np.uint8)
        images = rng.integers(0, 30, (n, h, w)).astype(np.uint8)
        for i, label in enumerate(labels):
            top = 2 + label * (h - 4) // classes
            images[i, top:top + max(2, h // (2 * classes)), 2:w - 2] = 255
        stored = images if upright else images.transpose(0, 2, 1)
        write_idx(folder / f"{name}-{split}-images-idx3-ubyte.gz", stored)
        write_idx(folder / f"{name}-{split}-labels-idx1-ubyte.gz", labels)
    (folder / f"{name}-mapping.txt").write_text("".join(f"{k} {65 + k}\n" for k in range(classes)))
    return images


@pytest.mark.parametrize("shape, network, upright", [((20, 20), "lenet", False), ((32, 24), STRIDED, True),
                                                     ((20, 20), "mlp", True)])
def test_data_sets_of_other_sizes_train_and_predict(tmp_path, shape, network, upright, capsys):
    """IDX images of 20x20 or 32x24 (transposed, or upright under a name like MNIST's): the
    network's input size is the data's; Predictor and inference.py (the IDX file, read the way its
    name says, and a .npy array of that size) predict them; the LeNet learns the bars, also as
    inference.py reads them."""
    name = "mnist-bars" if upright else "bars"
    test = write_set(tmp_path, name, shape, upright=upright)
    network = network if isinstance(network, str) else {"layers": network["layers"][:-1] + [
        {"kind": "Dense", "name": "fc2", "out_features": 4}]}
    config = TrainConfig(data_dir=str(tmp_path), dataset=name, epochs=3, batch_size=32, lr=0.05,
                         momentum=0.9, init="he", augment=True)
    summary = train(config, tmp_path / "run", network=network, download=False, **quiet)
    model, meta, _, _ = load_checkpoint(tmp_path / "run" / "best.npz")
    assert model.input_shape == (1, *shape) and meta["input"]["shape"] == [1, *shape]
    if network == "lenet":
        assert summary["test_accuracy"] > 0.9, summary
    with Predictor.from_checkpoint(tmp_path / "run" / "best.npz") as predictor:
        assert predictor.image_shape == shape and predictor.predict(test).shape == (60,)
    checkpoint = str(tmp_path / "run" / "best.npz")
    capsys.readouterr()
    assert infer_main(["--input", str(tmp_path / f"{name}-test-images-idx3-ubyte.gz"), "--checkpoint",
                       checkpoint, "--output-dir", str(tmp_path / "report"), "--top-k", "2"]) == 0
    accuracy = float(capsys.readouterr().out.split("accuracy        ")[1].split()[0])
    assert accuracy == pytest.approx(summary["test_accuracy"])
    np.save(tmp_path / "x.npy", test[:3])
    assert infer_main(["--input", str(tmp_path / "x.npy"), "--checkpoint", checkpoint, "--top-k", "2"]) == 0


def test_inference_on_the_sample_and_the_wrong_size(tmp_path, capsys):
    """inference.py --dataset sample evaluates the shipped sample's test split with no --input and
    no folder; a checkpoint for 20x20 images refuses 28x28 data in one line."""
    assert infer_main(["--dataset", "sample", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "752 images from the sample predicted" in out and "accuracy" in out
    assert (tmp_path / "inference-sample-test" / "confusion.png").exists()
    assert infer_main(["--dataset", "sample", "--split", "train", "--runs-dir", str(tmp_path)]) == 0
    assert "3008 images from the sample" in capsys.readouterr().out
    small = tmp_path / "small.npz"
    from tinynet.files.checkpoint import save_checkpoint
    save_checkpoint(small, mlp(47, rng=np.random.default_rng(0), input_shape=(1, 20, 20)), None,
                    sample_splits()["test"].classes)
    assert infer_main(["--dataset", "sample", "--checkpoint", str(small)]) == 1
    assert "its network takes 20x20 images, sample-test's are 28x28" in capsys.readouterr().err


def test_train_py_on_the_sample_with_the_recorder_offline(tmp_path):
    """``train.py --dataset sample`` in a folder with no data and no network access needed: it
    trains, the watch recorder's snapshot shows the sample's images, and inference.py evaluates the
    run's checkpoint on the sample."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--dataset", "sample", "--epochs", "1",
                           "--limit", "256", "--batch-size", "64", "--name", "s", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "training on 256 images of sample (47 classes, 28x28)" in proc.stdout
    assert not (tmp_path / "data").exists()
    with Trainer(replace(SAMPLE, limit=128), tmp_path / "watched", network="mlp",
                 callbacks=[Recorder(budget=None)], **quiet) as trainer:
        trainer.fit()
    snap = json.loads((tmp_path / "watched" / "snapshot.json").read_text())
    assert snap["filters"] is None and snap["grid"]["shape"] == [28, 28] and len(snap["classes"]) == 47
    proc = subprocess.run([sys.executable, str(ROOT / "inference.py"), "--dataset", "sample"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0 and "runs/s/best.npz" in proc.stdout and "752 images" in proc.stdout


def test_load_dataset_sample_is_the_documented_split():
    """load_dataset("sample"): 3,008 and 752 images, 64 and 16 of each class, as SOURCE.md says."""
    splits = load_dataset("sample", "no such folder", download=False)
    assert [len(splits[s].labels) for s in ("train", "test")] == [3008, 752]
    assert set(np.bincount(splits["train"].labels)) == {64} and set(np.bincount(splits["test"].labels)) == {16}
    source = (ROOT / "tinynet" / "datasets" / "sample" / "SOURCE.md").read_text()
    assert "train_val_split(labels, 0.2, seed=0)" in source and "3,008 training images" in source


@pytest.mark.parametrize("architecture", [{"name": "mlp", "num_classes": 47},
                                          {"input": [1, 28, 28], **STRIDED}], ids=["mlp", "strided"])
def test_explain_draws_any_network(tmp_path, architecture):
    """--explain's picture for a network without a convolution (a note in place of the filters)
    and with two; the saliency is the input's size."""
    model = build_model(architecture, np.random.default_rng(0))
    image = sample_splits()["test"].images[0]
    explanation = explain(model, image, sample_splits()["test"].classes)
    assert explanation.saliency.shape == (28, 28)
    assert (explanation.filters is None) == ("name" in architecture)
    assert list(explanation.feature_maps) == ([] if "name" in architecture else ["conv1", "conv2"])
    save_explanation(explanation, tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_the_your_own_network_example_runs_as_written(tmp_path):
    """docs/library.md's "Your own network" code (build, train, save, export on the sample; a layer
    of one's own), run as it is in a fresh process: the checkpoint predicts the test accuracy the
    run reported, the ONNX file is written, the learner's Tanh layer builds and describes itself."""
    pytest.importorskip("onnx", reason="the example exports ONNX (the [onnx] extra)")
    section = (ROOT / "docs" / "library.md").read_text().split("## Your own network")[1].split("\n## ")[0]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    reported, predicted = lines[-4], lines[-2]
    assert float(reported) == float(predicted) > 0.5 and lines[-1] == "True"
    assert (tmp_path / "my-net.onnx").stat().st_size > 10_000


def test_the_tinynet_subcommands_know_the_sample(tmp_path, capsys):
    """tinynet download (nothing to do), train (an MLP), infer (the run's model on the sample's test
    split) and export, with --dataset sample and no data folder."""
    from tinynet.cli.main import main
    assert main(["download", "--dataset", "sample"]) == 0
    assert "sample ships with tinynet: nothing to download" in capsys.readouterr().out
    assert main(["train", "--dataset", "sample", "--model", "mlp", "--epochs", "1", "--limit", "64",
                 "--runs-dir", str(tmp_path), "--name", "t", "--no-progress"]) == 0
    assert main(["infer", "--dataset", "sample", "--runs-dir", str(tmp_path)]) == 0
    assert f"{tmp_path / 't' / 'best.npz'}" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "t" / "best.npz"), "--output", str(tmp_path / "x.npz")]) == 0
    assert load_checkpoint(tmp_path / "x.npz")[1]["architecture"]["layers"][1]["name"] == "fc1"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("network", [
    {}, {"layers": "abc"}, {"layers": [{"name": [1], "kind": "ReLU"}]}, {"name": [1]},
    {"name": "mlp", "num_classes": "x"}, {"layers": [5]}, {"input": "x", "layers": []},
    {"layers": [{"kind": "Flatten"}, {"kind": "Dense", "out_features": 47}], "extra": 1}])
@pytest.mark.parametrize("recipe", [{}, {"dropout": 0.5, "class_balance": "prior"}],
                         ids=["plain", "dropout-prior"])
def test_a_malformed_network_is_a_network_error_whatever_the_recipe(network, recipe):
    """What the recipe adds to a description (dropout, prior) never turns a malformed one into a
    TypeError or KeyError: NetworkError, one line."""
    from types import SimpleNamespace

    from tinynet.training.network import run_architecture
    data = SimpleNamespace(classes=tuple("abc"), input_shape=(1, 28, 28), labels=np.zeros(10, np.int64),
                           train_idx=np.arange(10))
    with pytest.raises(NetworkError) as error:
        run_architecture(network, TrainConfig(**recipe), data)
    assert "\n" not in str(error.value)
