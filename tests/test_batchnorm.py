"""Batch normalisation (issue #40): tinynet's BatchNorm2D (after convolutions) and BatchNorm1D (after
dense layers), their plain twins, and how they join every tool.

- float64 gradient checks of the training and the evaluation pass, fast and plain, odd sizes;
- fast == plain (hypothesis), PyTorch's running-statistics convention written out, evaluation an
  affine map that does not depend on the batch;
- descriptions, checkpoints (the running statistics saved, restored and checked), DataParallel
  (ghost batches, the running statistics merged in slice order: the same model on any thread
  count), resume, train.py --model docs/lenet-batchnorm.json, Predictor and explain.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinynet import TrainConfig, Trainer, train
from tinynet.files.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinynet.nn import reference
from tinynet.nn.describe import DescriptionError, check, describe
from tinynet.nn.gradcheck import check_layer
from tinynet.nn.layers import BatchNorm1D, BatchNorm2D, Conv2D, SoftmaxCrossEntropy, softmax
from tinynet.nn.model import Sequential, build_model, lenet_description
from tinynet.nn.parallel import DataParallel

ROOT = Path(__file__).resolve().parents[1]
LENET_BN = json.loads((ROOT / "docs" / "lenet-batchnorm.json").read_text())
quiet = dict(progress=False, log=lambda *a: None)
SAMPLE = TrainConfig(dataset="sample", epochs=1, batch_size=64, lr=0.05, momentum=0.9, init="he", limit=640)

# (fast class, plain class, one input's shape): odd sizes throughout
KINDS = {"2D": (BatchNorm2D, reference.BatchNorm2D, (3, 5, 7)), "1D": (BatchNorm1D, reference.BatchNorm1D, (5,))}


def randomised(layer, rng, channels):
    """``layer`` with random gamma, beta and running statistics (a check at the initial 1, 0, 0, 1
    would miss a gamma or a running statistic used in the wrong place)."""
    layer.params["gamma"] = rng.uniform(0.5, 2.0, channels) * rng.choice([-1, 1], channels)
    layer.params["beta"] = rng.standard_normal(channels)
    layer.state["running_mean"] = rng.standard_normal(channels)
    layer.state["running_var"] = rng.uniform(0.2, 3.0, channels)
    return layer


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("plain", [False, True], ids=["fast", "plain"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [3, 7])
def test_gradients(kind, plain, train, batch, rng):
    """dx, dgamma and dbeta against centred differences in float64 with a random upstream gradient
    (relative error < 1e-7): in training, where the batch's statistics depend on every input, and
    in evaluation, where the running statistics are constants."""
    fast, slow, shape = KINDS[kind]
    layer = randomised((slow if plain else fast)(shape[0]), rng, shape[0])
    x = rng.standard_normal((batch, *shape)) * 2.0 + 0.5
    assert check_layer(layer, x, rng, train=train) < 1e-7


def test_the_gradient_check_catches_a_backward_that_ignores_the_statistics(rng):
    """The check can fail: a backward pass that treats the batch statistics as constants (the
    evaluation formula used in training) is off by far more than the tolerance."""
    layer = randomised(BatchNorm1D(4), rng, 4)
    layer.normalise_backward = lambda d2: d2 * layer.params["gamma"] * layer.cache[2]
    with pytest.raises(AssertionError, match="BatchNorm1D dx"):
        check_layer(layer, rng.standard_normal((6, 4)), rng)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), batch=st.integers(1, 9), seed=st.integers(0, 2**32 - 1),
       momentum=st.floats(0.0, 1.0), train=st.booleans())
def test_fast_equals_plain(kind, batch, seed, momentum, train):
    """The fast layer (channels-last, the compact backward formula) and its plain twin (NCHW, the
    graph walked node by node) give the same outputs, gradients and running statistics (float64)."""
    rng = np.random.default_rng(seed)
    fast_class, slow_class, shape = KINDS[kind]
    fast = randomised(fast_class(shape[0], momentum=momentum).astype(np.float64), rng, shape[0])
    slow = slow_class(shape[0], momentum=momentum).astype(np.float64)
    slow.params = {k: v.copy() for k, v in fast.params.items()}
    slow.state = {k: v.copy() for k, v in fast.state.items()}
    x = rng.standard_normal((batch, *shape)) * 3.0 - 1.0
    if kind == "2D":  # as a convolution leaves it: channels-last memory behind an NCHW view
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    out_fast, out_slow = fast.forward(x, train), slow.forward(x, train)
    np.testing.assert_allclose(out_fast, out_slow, rtol=1e-10, atol=1e-10)
    G = rng.standard_normal(out_fast.shape)
    np.testing.assert_allclose(fast.backward(G), slow.backward(G), rtol=1e-9, atol=1e-9)
    for key in ("gamma", "beta"):
        np.testing.assert_allclose(fast.grads[key], slow.grads[key], rtol=1e-9, atol=1e-9)
    for key in ("running_mean", "running_var"):
        np.testing.assert_allclose(fast.state[key], slow.state[key], rtol=1e-12, atol=1e-12)


def test_running_statistics_follow_pytorchs_convention(rng):
    """running = (1 - momentum) running + momentum * batch statistic, the variance unbiased
    (M / (M - 1)) for the running estimate and biased for normalising, over N, H and W per
    channel; written out here with plain NumPy for two steps."""
    layer = BatchNorm2D(3, momentum=0.2).astype(np.float64)
    mean, var = np.zeros(3), np.ones(3)
    for _ in range(2):
        x = rng.standard_normal((4, 3, 5, 6)) * [[[[1.0]], [[2.0]], [[0.5]]]] + 3.0
        out = layer.forward(x, train=True)
        M = 4 * 5 * 6
        batch_mean, batch_var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        mean = 0.8 * mean + 0.2 * batch_mean
        var = 0.8 * var + 0.2 * batch_var * M / (M - 1)
        np.testing.assert_allclose(layer.state["running_mean"], mean, rtol=1e-12)
        np.testing.assert_allclose(layer.state["running_var"], var, rtol=1e-12)
        expected = (x - batch_mean[:, None, None]) / np.sqrt(batch_var[:, None, None] + 1e-5)
        np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


def test_running_statistics_match_pytorch(rng):
    """The same numbers as torch.nn.BatchNorm2d and BatchNorm1d after three training steps, and
    the same evaluation outputs (float64)."""
    torch = pytest.importorskip("torch", reason="PyTorch is a dev-only tool (pip install torch==2.13.0)")
    for ours, theirs, shape in ((BatchNorm2D(4, momentum=0.3), torch.nn.BatchNorm2d(4, momentum=0.3), (5, 4, 3, 7)),
                                (BatchNorm1D(4), torch.nn.BatchNorm1d(4), (6, 4))):
        ours.astype(np.float64)
        theirs = theirs.double()
        for _ in range(3):
            x = rng.standard_normal(shape) * 2.0 + 1.0
            out = ours.forward(x, train=True)
            np.testing.assert_allclose(out, theirs.train()(torch.from_numpy(x)).detach().numpy(), rtol=1e-10,
                                       atol=1e-10)
        np.testing.assert_allclose(ours.state["running_mean"], theirs.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours.state["running_var"], theirs.running_var.numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours.forward(x, train=False), theirs.eval()(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_evaluation_is_an_affine_map_that_ignores_the_batch(kind, rng):
    """In evaluation an image's output is the same alone or in any batch, the running statistics
    do not move, and the output is gamma (x - running_mean) / sqrt(running_var + eps) + beta."""
    fast, _, shape = KINDS[kind]
    layer = randomised(fast(shape[0]), rng, shape[0]).astype(np.float32)
    x = rng.standard_normal((6, *shape)).astype(np.float32)
    before = {k: v.copy() for k, v in layer.state.items()}
    batch = layer.forward(x, train=False)
    alone = np.concatenate([layer.forward(x[i:i + 1], train=False) for i in range(6)])
    np.testing.assert_array_equal(batch, alone)
    assert all(np.array_equal(before[k], layer.state[k]) for k in before)
    values = {**layer.params, **layer.state}
    gamma, beta, mean, var = (values[k].astype(np.float64).reshape(-1, *[1] * len(shape[1:]))
                              for k in ("gamma", "beta", "running_mean", "running_var"))
    np.testing.assert_allclose(batch, gamma * (x - mean) / np.sqrt(var + 1e-5) + beta, rtol=1e-5, atol=1e-5)


def test_training_normalises_every_channel(rng):
    """In training (gamma 1, beta 0) every channel comes out with mean 0 and variance ~1 over the
    batch and positions, whatever its scale; the output is channels-last behind an NCHW view."""
    conv_like = (rng.standard_normal((8, 6, 6, 3)) * [1.0, 5.0, 30.0] + [-2.0, 0.0, 50.0]).astype(np.float32)
    x = conv_like.transpose(0, 3, 1, 2)
    out = BatchNorm2D(3).forward(x, train=True)
    assert out.shape == x.shape and out.transpose(0, 2, 3, 1).flags.c_contiguous
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-4)  # (var / (var + eps))


@pytest.mark.parametrize("eps, momentum, message", [(0, 0.1, "eps must be a positive"),
                                                    (float("nan"), 0.1, "eps must be a positive"),
                                                    (1e-5, 1.5, "momentum must be a number in"),
                                                    (1e-5, -0.1, "momentum must be a number in")])
def test_bad_settings_are_refused(eps, momentum, message):
    with pytest.raises(ValueError, match=message):
        BatchNorm2D(3, eps=eps, momentum=momentum)


# --- the description ------------------------------------------------------------------------

def test_the_batchnorm_lenet_description():
    """docs/lenet-batchnorm.json is the LeNet with a BatchNorm2D after each convolution and a
    BatchNorm1D after fc1, every setting written out: it builds, describes itself back the same,
    and holds 2 (gamma, beta) values per channel more than the LeNet."""
    plain = lenet_description(47)["layers"]
    assert [s for s in LENET_BN["layers"] if not s["kind"].startswith("BatchNorm")] == plain
    assert [LENET_BN["layers"][i]["kind"] for i in (1, 4, 8)] == ["BatchNorm2D", "BatchNorm2D", "BatchNorm1D"]
    model = build_model(LENET_BN)
    assert describe(model) == LENET_BN
    assert check(LENET_BN).parameters == check(lenet_description(47)).parameters + 2 * (20 + 50 + 500)
    assert sorted(dict(model.states())) == sorted(f"{bn}.{key}" for bn in ("bn1", "bn2", "bn3")
                                                  for key in ("running_mean", "running_var"))
    optimised = {name for name, _, _ in model.parameters()}
    assert {"bn1.gamma", "bn3.beta"} <= optimised and not any("running" in n for n in optimised)


@pytest.mark.parametrize("layers, message", [
    ([{"kind": "Flatten"}, {"kind": "BatchNorm2D"}, {"kind": "Dense", "out_features": 3}],
     r"layer 1 \('1', BatchNorm2D\): BatchNorm2D \(batch normalisation per channel\) needs \(C, H, W\)"),
    ([{"kind": "BatchNorm1D"}, {"kind": "Flatten"}, {"kind": "Dense", "out_features": 3}],
     r"layer 0 \('0', BatchNorm1D\): BatchNorm1D .* takes a flat \(features,\) input"),
    ([{"kind": "BatchNorm2D", "eps": -1}, {"kind": "Flatten"}, {"kind": "Dense", "out_features": 3}],
     r"layer 0 \('0', BatchNorm2D\): eps must be a positive finite number, got -1"),
    ([{"kind": "BatchNorm2D", "momentum": "0.1"}, {"kind": "Flatten"}, {"kind": "Dense", "out_features": 3}],
     r"momentum must be a number in \[0, 1\]"),
    ([{"kind": "BatchNorm2D", "gamma": 1}, {"kind": "Flatten"}, {"kind": "Dense", "out_features": 3}],
     r"unknown setting 'gamma' \(BatchNorm2D takes eps, momentum\)"),
])
def test_descriptions_that_cannot_hold_batch_normalisation_are_refused(layers, message):
    with pytest.raises(DescriptionError, match=message):
        check({"input": [2, 4, 4], "layers": layers})


# --- checkpoints ----------------------------------------------------------------------------

@pytest.fixture
def trained_bn(rng):
    """The batch-normalised LeNet after a few training steps: running statistics away from 0 and 1."""
    model = build_model(LENET_BN, np.random.default_rng(0))
    for _ in range(3):
        model.forward(rng.random((16, 1, 28, 28), dtype=np.float32), train=True)
    return model


def test_checkpoints_save_and_restore_the_running_statistics(trained_bn, tmp_path, rng):
    """The running statistics are saved as NAME.running_mean / NAME.running_var beside the
    parameters (no optimiser entry: they are not trained) and come back bitwise, so evaluation
    after loading gives bitwise the same logits."""
    path = tmp_path / "bn.npz"
    save_checkpoint(path, trained_bn, LENET_BN, [str(k) for k in range(47)], optimizer={})
    with np.load(path) as f:
        assert f["bn2.running_var"].dtype == np.float32 and f["bn2.running_var"].shape == (50,)
        np.testing.assert_array_equal(f["bn3.running_mean"], trained_bn.state_dict()["bn3.running_mean"])
    loaded = load_checkpoint(path)[0]
    for name, array in trained_bn.state_dict().items():
        assert loaded.state_dict()[name].tobytes() == array.tobytes(), name
    x = rng.random((9, 1, 28, 28), dtype=np.float32)
    assert loaded.forward(x, train=False).tobytes() == trained_bn.forward(x, train=False).tobytes()


@pytest.mark.parametrize("damage, message", [
    (lambda a: a.pop("bn2.running_var"), "missing arrays bn2.running_var"),
    (lambda a: a.update({"bn1.running_mean": np.zeros(3, np.float32)}),
     r"array 'bn1.running_mean' has shape \(3,\), the architecture needs \(20,\)"),
    (lambda a: a["bn3.running_mean"].__setitem__(0, np.nan), "array 'bn3.running_mean' holds NaN"),
    (lambda a: a["bn1.running_var"].__setitem__(4, -1.0),
     "layer 'bn1': its running_var holds negative values"),
    (lambda a: a.update({"bn1.running_var": a["bn1.running_var"].astype(np.int32)}), "expected kind 'f'"),
])
def test_damaged_running_statistics_are_clear_errors(trained_bn, tmp_path, damage, message):
    path = tmp_path / "bn.npz"
    save_checkpoint(path, trained_bn, LENET_BN, [str(k) for k in range(47)])
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    damage(arrays)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_an_old_lenet_checkpoint_loads_bitwise_as_before():
    """A LeNet has no state: main's checkpoint from before batch normalisation loads with the same
    arrays, and nothing but its parameters."""
    path = ROOT / "tests" / "fixtures" / "main-623bf7c-lenet.npz"
    model = load_checkpoint(path)[0]
    assert list(model.states()) == []
    with np.load(path) as f:
        for name, array in model.state_dict().items():
            assert f[name].tobytes() == array.tobytes()


# --- data parallelism -------------------------------------------------------------------------

def test_data_parallel_merges_the_slices_statistics_into_the_whole_batchs():
    """Training forward on 2 slices: the first BatchNorm (whose input does not depend on the
    slicing) ends with the running statistics of one unsplit pass, up to float rounding; the
    replicas left them to the model, and evaluation reads the model's."""
    x = np.random.default_rng(1).random((37, 1, 28, 28), dtype=np.float32)
    whole = build_model(LENET_BN, np.random.default_rng(0))
    sliced = build_model(LENET_BN, np.random.default_rng(0))
    whole.forward(x, train=True)
    with DataParallel(sliced, 2) as net:
        net.forward(x, train=True)
        assert all(not r.layers[1].update_running for r in net.replicas)
        for key in ("running_mean", "running_var"):
            np.testing.assert_allclose(sliced.layers[1].state[key], whole.layers[1].state[key], rtol=1e-5,
                                       atol=1e-6)
            assert net.replicas[1].layers[1].state[key] is sliced.layers[1].state[key]
        np.testing.assert_allclose(net.forward(x, train=False), sliced.forward(x, train=False), rtol=1e-5,
                                   atol=1e-6)


def test_slices_are_ghost_batches():
    """Each slice is normalised with its own statistics: a training pass of DataParallel equals
    the model run on each slice alone."""
    rng = np.random.default_rng(2)
    model = Sequential([Conv2D(1, 3, 3, rng=rng, name="conv"), BatchNorm2D(3, name="bn")], (1, 6, 6))
    x = rng.random((8, 1, 6, 6), dtype=np.float32)
    alone = np.concatenate([model.forward(part, train=True) for part in np.array_split(x, 2)])
    with DataParallel(model, 2) as net:
        assert net.forward(x, train=True).tobytes() == alone.tobytes()


def test_training_gives_the_same_model_on_any_thread_count(tmp_path):
    """The batch-normalised LeNet trained on the shipped sample (momentum, augmentation, dropout)
    ends with bitwise the same parameters and running statistics on 1, 2, 3 and 4 threads."""
    config = replace(SAMPLE, limit=448, augment=True, dropout=0.2)
    models = {}
    for threads in (1, 2, 3, 4):
        train(replace(config, threads=threads), tmp_path / f"threads-{threads}", network=LENET_BN, **quiet)
        models[threads] = load_checkpoint(tmp_path / f"threads-{threads}" / "last.npz")[0].state_dict()
    assert "bn3.running_var" in models[1]
    for threads in (2, 3, 4):
        assert all(models[threads][k].tobytes() == models[1][k].tobytes() for k in models[1]), threads


# --- training, resuming, predicting -----------------------------------------------------------

def test_a_batchnorm_lenet_resumes_exactly(tmp_path):
    """Interrupted mid-epoch (a checkpoint saved after 3 steps) and resumed, the run ends with
    bitwise the parameters, running statistics and momentum of a run straight through."""
    config = replace(SAMPLE, epochs=2, limit=448, augment=True)
    train(config, tmp_path / "straight", network=LENET_BN, **quiet)
    resumed = tmp_path / "resumed"
    with Trainer(config, tmp_path / "mid", network=LENET_BN, **quiet) as trainer:
        for _ in range(3):
            trainer.step()
        resumed.mkdir()
        trainer.save_checkpoint(resumed / "last.npz")
        (resumed / "config.json").write_text((tmp_path / "mid" / "config.json").read_text())
    train(config, resumed, resume=True, **quiet)
    a, _, velocity_a, _ = load_checkpoint(tmp_path / "straight" / "last.npz")
    b, _, velocity_b, _ = load_checkpoint(resumed / "last.npz")
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert velocity_a.keys() == velocity_b.keys() and "bn1.gamma" in velocity_a
    assert all(velocity_a[k].tobytes() == velocity_b[k].tobytes() for k in velocity_a)


def test_train_py_predictor_and_explain_take_the_batchnorm_lenet(tmp_path, capsys):
    """train.py --model docs/lenet-batchnorm.json on the sample; its checkpoint predicts through
    Predictor (batch and one image alike: evaluation uses the running statistics) and explain
    draws it."""
    from tinynet.cli.train import main as train_main
    from tinynet.datasets.load import sample_splits
    from tinynet.predict.explain import explain, save_explanation
    from tinynet.predict.predictor import Predictor

    train_main(["--dataset", "sample", "--model", str(ROOT / "docs" / "lenet-batchnorm.json"), "--epochs", "1",
                "--limit", "256", "--runs-dir", str(tmp_path), "--name", "bn", "--no-progress"])
    checkpoint = tmp_path / "bn" / "last.npz"
    assert [s["kind"] for s in load_checkpoint(checkpoint)[1]["architecture"]["layers"]][1] == "BatchNorm2D"
    images = sample_splits()["test"].images[:20]
    predictor = Predictor.from_checkpoint(checkpoint)
    batch = predictor.predict_proba(images)
    one = np.concatenate([predictor.predict_proba(images[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(one, batch[:3], rtol=1e-5, atol=1e-7)
    explanation = explain(predictor.model, images[0], predictor.classes)
    assert set(explanation.feature_maps) == {"conv1", "conv2"}
    save_explanation(explanation, tmp_path / "explain.png")
    assert (tmp_path / "explain.png").stat().st_size > 1000


def test_a_step_moves_gamma_and_beta_but_never_trains_the_running_statistics(rng):
    """One SGD step changes gamma and beta; the optimiser's velocity has no running statistics;
    and the trainer's weight decay (on ndim > 1 arrays only) leaves gamma and beta alone."""
    from tinynet.nn.optim import SGD
    from tinynet.nn.step import train_step

    model = build_model(LENET_BN, np.random.default_rng(0))
    optimizer = SGD(0.1, momentum=0.9, weight_decay=0.5)
    x, y = rng.random((8, 1, 28, 28), dtype=np.float32), rng.integers(0, 47, 8)
    gamma = model.layers[1].params["gamma"].copy()
    train_step(model, SoftmaxCrossEntropy(), optimizer, x, y)
    assert not np.array_equal(model.layers[1].params["gamma"], gamma)
    assert set(optimizer.velocity) == {name for name, _, _ in model.parameters()}


@pytest.mark.parametrize("kind", KINDS)
def test_a_batch_of_no_images_changes_no_running_statistic(kind, rng):
    """No rows: nothing to average, so the running statistics stay (no NaN, no warning), and a
    batch of one image moves them (its variance 0: x̂ = 0, the output is beta)."""
    fast, _, shape = KINDS[kind]
    layer = randomised(fast(shape[0]), rng, shape[0]).astype(np.float32)
    before = {k: v.copy() for k, v in layer.state.items()}
    layer.forward(np.zeros((0, *shape), np.float32), train=True)
    assert all(np.array_equal(before[k], layer.state[k]) for k in before)
    out = layer.forward(rng.standard_normal((1, *shape)).astype(np.float32), train=True)
    assert np.all(np.isfinite(layer.state["running_var"])) and not np.array_equal(before["running_mean"],
                                                                                   layer.state["running_mean"])
    if kind == "1D":
        np.testing.assert_array_equal(out[0], layer.params["beta"])


# --- ONNX ---------------------------------------------------------------------------------------

def onnx_packages():
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package (tinynet[onnx])")
    ort = pytest.importorskip("onnxruntime", reason="checking exports needs onnxruntime (tinynet[onnx])")
    return onnx, ort


@pytest.fixture(scope="module")
def sample_bn(tmp_path_factory):
    """The batch-normalised LeNet trained for one epoch on the sample's training images (so that its
    running statistics and predictions mean something), with the sample's 752 test images and
    248 of its training images: 1,000 real images."""
    from tinynet.datasets.load import sample_splits

    folder = tmp_path_factory.mktemp("bn")
    train(replace(SAMPLE, limit=None, lr=0.1), folder / "run", network=LENET_BN, **quiet)
    model, meta, _, _ = load_checkpoint(folder / "run" / "last.npz")
    splits = sample_splits()
    images = np.concatenate([splits["test"].images, splits["train"].images[:248]])
    labels = np.concatenate([splits["test"].labels, splits["train"].labels[:248]])
    return model, meta, images, labels, folder


def test_onnxruntime_runs_the_exported_batchnorm_lenet_as_tinynet_does(sample_bn):
    """Exported as BatchNormalization (scale = gamma, B = beta, the running statistics, epsilon),
    the network gives in onnxruntime the logits tinynet gives in evaluation on 1,000 real images:
    max relative difference <= 1e-5, the same predictions."""
    onnx, ort = onnx_packages()
    from tinynet.datasets.idx import to_float
    from tinynet.onnx import save_onnx

    model, meta, images, labels, folder = sample_bn
    path = folder / "bn.onnx"
    save_onnx(model, meta["classes"], path, meta["architecture"])
    graph = onnx.load(path).graph
    nodes = [n for n in graph.node if n.op_type == "BatchNormalization"]
    assert [n.name for n in nodes] == ["bn1", "bn2", "bn3"]
    assert list(nodes[0].input[1:]) == ["bn1.gamma", "bn1.beta", "bn1.running_mean", "bn1.running_var"]
    assert abs(onnx.helper.get_attribute_value(nodes[0].attribute[0]) - 1e-5) < 1e-12  # epsilon
    x = to_float(images)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(["logits"], {"image": x})[0]
    ours = model.forward(x, train=False)
    difference = float(np.abs(theirs - ours).max() / np.abs(ours).max())
    assert difference <= 1e-5 and np.array_equal(theirs.argmax(1), ours.argmax(1))
    assert (ours.argmax(1) == labels).mean() > 0.3  # it learned: the predictions are not constants
    print(f"BatchNorm LeNet: onnxruntime vs tinynet, max relative logit difference {difference:.2g} "
          f"on {len(x)} images")


def test_export_import_save_load_predict_is_bitwise(sample_bn):
    """ONNX -> tinynet gives back the description, the parameters and the running statistics
    bitwise; that import saves as a checkpoint that loads and predicts bitwise."""
    onnx_packages()
    from tinynet.datasets.idx import to_float
    from tinynet.onnx import load_onnx, save_onnx

    model, meta, images, _, folder = sample_bn
    save_onnx(model, meta["classes"], folder / "again.onnx", meta["architecture"])
    back, back_meta = load_onnx(folder / "again.onnx")
    assert back_meta["architecture"] == LENET_BN
    assert all(back.state_dict()[k].tobytes() == v.tobytes() for k, v in model.state_dict().items())
    save_checkpoint(folder / "imported.npz", back, back_meta["architecture"], back_meta["classes"])
    loaded = load_checkpoint(folder / "imported.npz")[0]
    x = to_float(images)
    assert loaded.forward(x, train=False).tobytes() == model.forward(x, train=False).tobytes()


def test_an_import_without_tinynets_metadata_is_named_generically(sample_bn):
    """Without the architecture metadata (another tool's export), the layers come back as conv1,
    bn1, pool1, ... with eps as the file's float32 holds it and momentum = 1 - ONNX's."""
    onnx, _ = onnx_packages()
    from tinynet.onnx import load_onnx, to_onnx

    model, meta, _, _, folder = sample_bn
    proto = to_onnx(model, meta["classes"])
    del proto.metadata_props[:]
    onnx.save(proto, folder / "bare.onnx")
    back, back_meta = load_onnx(folder / "bare.onnx")
    names = [layer.name for layer in back.layers if type(layer).__name__.startswith("BatchNorm")]
    assert names == ["bn1", "bn2", "bn3"]
    assert back.layers[1].eps == 1e-5 and back.layers[1].momentum == 0.1
    assert all(back.state_dict()[k].tobytes() == v.tobytes() for k, v in model.state_dict().items())


def batchnorm_graph(onnx, opset=13, var=(1.0, 2.0), **attributes):
    """BatchNormalization of a (N, 2, 3, 3) input with constant statistics, Flatten, Gemm to 3
    logits, Softmax."""
    from onnx import TensorProto, helper, numpy_helper

    arrays = {"scale": [1.0, 2.0], "B": [0.5, -0.5], "mean": [0.1, 0.2], "var": list(var)}
    arrays.update(W=np.linspace(-1, 1, 54).reshape(18, 3), b=[0.0, 0.1, 0.2])
    inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in arrays.items()]
    node = helper.make_node("BatchNormalization", ["x", "scale", "B", "mean", "var"], ["y"], **attributes)
    flat = helper.make_node("Flatten", ["y"], ["f"], axis=1)
    gemm = helper.make_node("Gemm", ["f", "W", "b"], ["logits"])
    soft = helper.make_node("Softmax", ["logits"], ["p"], axis=1)
    graph = helper.make_graph([node, flat, gemm, soft], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 3])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 3])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset, var, attributes, fault", [
    (15, (1.0, 2.0), {"training_mode": 1}, "a BatchNormalization in training mode is not an inference graph"),
    (13, (1.0, -2.0), {}, "input_var holds negative values"),
    (13, (1.0, 2.0), {"epsilon": 0.0}, "epsilon 0.0 is not positive"),
    (7, (1.0, 2.0), {"spatial": 0}, "spatial 0"),
])
def test_batchnormalization_that_tinynet_cannot_run_exactly_is_refused(opset, var, attributes, fault, tmp_path):
    """Training mode, a negative variance, epsilon 0, statistics per position: each refused by
    name; the same graph without the fault imports as a BatchNorm2D that computes what
    onnxruntime does."""
    onnx, ort = onnx_packages()
    from tinynet.onnx import OnnxError, load_onnx

    onnx.save(batchnorm_graph(onnx), tmp_path / "good.onnx")
    model = load_onnx(tmp_path / "good.onnx")[0]
    assert type(model.layers[0]).__name__ == "BatchNorm2D"
    x = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "good.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(softmax(model.forward(x, train=False)), session.run(["p"], {"x": x})[0], rtol=1e-6,
                               atol=1e-7)

    onnx.save(batchnorm_graph(onnx, opset, var, **attributes), tmp_path / "bn.onnx")
    with pytest.raises(OnnxError, match=fault):
        load_onnx(tmp_path / "bn.onnx")
