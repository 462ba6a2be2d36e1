"""ONNX export and import (tinynet/onnx/, ``tinynet export --onnx``, ``Predictor`` on .onnx).

Equality with onnxruntime is measured on the 3,760 real images of the shipped sample as
``max |onnx - tinynet| / max |tinynet|`` over all the logits of all the images (the largest error,
relative to the largest logit), and must be below 1e-5, with the same argmax for every image.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package (tinynet[onnx])")
ort = pytest.importorskip("onnxruntime", reason="checking exports needs onnxruntime (tinynet[onnx])")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from tinynet.files.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from tinynet.cli.main import main as tinynet_main  # noqa: E402
from tinynet.datasets.idx import to_float  # noqa: E402
from tinynet.datasets.load import load_sample  # noqa: E402
from tinynet.predict.explain import look_inside  # noqa: E402
from tinynet.predict.predictor import BUNDLED_MODEL, Predictor  # noqa: E402
from tinynet.nn.layers import (Conv2D, Dense, Dropout, Flatten, Layer, LogitAdjustment, MaxPool2D,  # noqa: E402
                               ReLU, ReLUMaxPool2D, SoftmaxCrossEntropy)
from tinynet.nn.describe import describe  # noqa: E402
from tinynet.nn.model import Sequential, build_model, input_shape, lenet, mlp  # noqa: E402
from tinynet.onnx import OnnxError, load_onnx, save_onnx, to_onnx  # noqa: E402
from tinynet.nn.optim import SGD  # noqa: E402
from tinynet.nn.step import train_step  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matmuls (batches of 32) run many times slower with a multi-threaded BLAS on a busy
    machine; the limit is lifted again after each test."""
    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def sample():
    return load_sample()


@pytest.fixture(scope="module")
def images(sample):
    return to_float(sample.images)  # float32 (3760, 1, 28, 28)


@pytest.fixture(scope="module")
def bundled():
    model, meta, _, _ = load_checkpoint(BUNDLED_MODEL)
    return model, meta


def tinynet_logits(model, x, batch=512):
    return np.concatenate([model.forward(x[i:i + batch], train=False).copy()
                           for i in range(0, len(x), batch)])


def onnxruntime_outputs(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits", "probabilities"], {"image": x})


def relative_difference(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def assert_runs_the_same(model, classes, path, x, architecture=None):
    """Export, run in onnxruntime, compare; import and compare the weights bitwise and the
    description; save the import as a checkpoint, load it and predict bitwise the same. Returns the
    relative logit difference."""
    save_onnx(model, classes, path, architecture)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    ours = tinynet_logits(model, x)
    logits, probs = onnxruntime_outputs(path, x)
    difference = relative_difference(logits, ours)
    assert difference < TOLERANCE
    assert np.array_equal(logits.argmax(axis=1), ours.argmax(axis=1))
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    back, meta = load_onnx(path)
    assert meta["classes"] == list(classes)
    a, b = model.state_dict(), back.state_dict()
    params = lambda m: [p for layer in m.layers for p in layer.params.values()]  # noqa: E731
    assert len(params(model)) == len(params(back))
    for p, q in zip(params(model), params(back)):
        assert p.dtype == q.dtype and p.shape == q.shape and p.tobytes() == q.tobytes()
    assert a.keys() == b.keys()
    own = describe(model, input_shape(model))
    assert meta["architecture"] == (architecture if architecture is not None else own)
    assert describe(back) == own
    # the same batch through both: BLAS may round differently for another number of rows
    np.testing.assert_array_equal(tinynet_logits(back, x[:256]), tinynet_logits(model, x[:256]))
    save_checkpoint(path.with_suffix(".npz"), back, meta["architecture"], meta["classes"])
    again, _, _, _ = load_checkpoint(path.with_suffix(".npz"))
    np.testing.assert_array_equal(tinynet_logits(again, x), tinynet_logits(back, x))
    return difference


# ------------------------------------------------------------------------------------ proven equal

def test_bundled_model_exports_and_runs_the_same_in_onnxruntime(bundled, images, sample, tmp_path):
    model, meta = bundled
    diff = assert_runs_the_same(model, meta["classes"], tmp_path / "lenet.onnx", images,
                                meta["architecture"])
    print(f"bundled model: max relative logit difference {diff:.3g}, "
          f"{(tmp_path / 'lenet.onnx').stat().st_size} bytes")


def small_net(rng, classes=47):
    """Other widths, padding, a 3x3 conv, an unfused ReLU + 3x3/2 pool, dropout."""
    conv1 = Conv2D(1, 8, 5, rng=rng, padding=2, name="conv1")
    conv1.compute_input_grad = False
    return Sequential([conv1, ReLUMaxPool2D(2, name="pool1"), Conv2D(8, 16, 3, rng=rng, name="conv2"),
                       ReLU(name="relu2"), MaxPool2D(3, stride=2, name="pool2"), Flatten(name="flatten"),
                       Dense(16 * 5 * 5, 64, rng=rng, name="fc1"), ReLU(name="relu3"),
                       Dropout(0.25, rng=rng, name="dropout"),
                       Dense(64, classes, rng=rng, init="glorot", name="fc2")])


def test_freshly_trained_small_model_runs_the_same_in_onnxruntime(sample, images, tmp_path):
    rng = np.random.default_rng(7)
    net = small_net(rng)
    optimizer, loss = SGD(0.05, momentum=0.9), SoftmaxCrossEntropy()
    for _ in range(300):
        batch = rng.integers(0, len(images), 32)
        train_step(net, loss, optimizer, images[batch], sample.labels[batch])
    accuracy = (tinynet_logits(net, images).argmax(axis=1) == sample.labels).mean()
    assert accuracy > 0.3  # it did learn: the argmax comparison below is not between constants
    diff = assert_runs_the_same(net, sample.classes, tmp_path / "small.onnx", images)
    print(f"trained small model: max relative logit difference {diff:.3g}")


def test_class_prior_model_runs_the_same_in_onnxruntime(bundled, images, tmp_path):
    model, meta = bundled
    prior = np.random.default_rng(3).integers(50, 5000, size=47).tolist()
    architecture = {"name": "lenet", "num_classes": 47, "class_prior": prior}
    corrected = lenet(47, rng=np.random.default_rng(0), class_prior=prior)
    corrected.load_state_dict(model.state_dict())
    diff = assert_runs_the_same(corrected, meta["classes"], tmp_path / "prior.onnx", images, architecture)
    back, back_meta = load_onnx(tmp_path / "prior.onnx")
    assert isinstance(back.layers[-1], LogitAdjustment)
    assert back.layers[-1].offset.tobytes() == corrected.layers[-1].offset.tobytes()
    graph = onnx.load(str(tmp_path / "prior.onnx")).graph
    assert [n.op_type for n in graph.node][-2:] == ["Sub", "Softmax"]
    print(f"class-prior model: max relative logit difference {diff:.3g}")


@pytest.mark.parametrize("classes", [2, 10, 62])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("prior", [False, True])
def test_every_lenet_build_model_describes_round_trips(classes, dropout, prior, images, tmp_path):
    rng = np.random.default_rng(classes)
    class_prior = rng.uniform(0.1, 3, size=classes).tolist() if prior else None
    architecture = {"name": "lenet", "num_classes": classes}
    if dropout:
        architecture["dropout"] = dropout
    if prior:
        architecture["class_prior"] = class_prior
    model = lenet(classes, rng=rng, dropout=dropout, class_prior=class_prior)
    labels = [f"c{i}" for i in range(classes)]
    assert_runs_the_same(model, labels, tmp_path / "m.onnx", images[:300], architecture)
    back, meta = load_onnx(tmp_path / "m.onnx")
    assert [type(la) for la in back.layers] == [type(la) for la in model.layers]  # dropout kept
    assert meta["architecture"] == architecture


@pytest.mark.parametrize("stride, padding, pool", [(1, 1, 2), (2, 0, 1), (1, 3, 3)])
def test_other_strides_paddings_and_pools_export(stride, padding, pool, images, tmp_path):
    rng = np.random.default_rng(5)
    conv = Conv2D(1, 6, 5, rng=rng, stride=stride, padding=padding, name="c")
    side = (28 + 2 * padding - 5) // stride + 1
    side = (side - pool) // pool + 1
    net = Sequential([conv, ReLUMaxPool2D(pool, name="p"), Flatten(name="f"),
                      Dense(6 * side * side, 12, rng=rng, name="d"), ReLU(name="r"),
                      Dense(12, 5, rng=rng, name="out")])
    assert_runs_the_same(net, "abcde", tmp_path / "m.onnx", images[:200])


def train_briefly(net, sample, images, steps=200, seed=7):
    """A few hundred SGD steps on the sample, so that predictions mean something."""
    rng = np.random.default_rng(seed)
    optimizer, loss = SGD(0.05, momentum=0.9), SoftmaxCrossEntropy()
    for _ in range(steps):
        batch = rng.integers(0, len(images), 32)
        train_step(net, loss, optimizer, images[batch], sample.labels[batch])
    return net


STRIDED = {"input": [1, 28, 28], "layers": [  # stride-2 convolutions with padding, no pooling
    {"kind": "Conv2D", "name": "conv1", "out_channels": 8, "kernel_size": 5, "stride": 2, "padding": 2},
    {"kind": "ReLU", "name": "relu1"},
    {"kind": "Conv2D", "name": "conv2", "out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1},
    {"kind": "ReLU", "name": "relu2"},
    {"kind": "Flatten", "name": "flatten"},
    {"kind": "Dense", "name": "fc1", "out_features": 47}]}


@pytest.mark.parametrize("network", ["fresh lenet", "mlp", "strided"])
def test_more_networks_run_the_same_in_onnxruntime_and_save_bitwise(network, sample, images, tmp_path):
    """A freshly built LeNet (random weights), the MLP preset and a stride-2 padded conv net without
    pooling (each trained briefly): onnxruntime agrees on the 3,760 sample images, and the import
    saves, loads and predicts bitwise (assert_runs_the_same)."""
    rng = np.random.default_rng(11)
    if network == "fresh lenet":
        net, architecture = lenet(47, rng=rng), {"name": "lenet", "num_classes": 47}
    elif network == "mlp":
        architecture = {"name": "mlp", "num_classes": 47, "dropout": 0.25}
        net = train_briefly(mlp(47, rng=rng, dropout=0.25), sample, images)
    else:
        net, architecture = train_briefly(build_model(STRIDED, rng), sample, images), STRIDED
    if network != "fresh lenet":
        assert (tinynet_logits(net, images).argmax(1) == sample.labels).mean() > 0.3
    diff = assert_runs_the_same(net, sample.classes, tmp_path / "m.onnx", images, architecture)
    print(f"{network}: max relative logit difference {diff:.3g}")


def every_kind(shape):
    """A network with every kind of layer and non-default settings, for images of ``shape``."""
    return {"input": list(shape), "layers": [
        {"kind": "Conv2D", "name": "c1", "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1},
        {"kind": "ReLUMaxPool2D", "name": "rp", "size": 3, "stride": 1},
        {"kind": "Conv2D", "name": "c2", "out_channels": 4, "kernel_size": 2, "stride": 1, "padding": 0},
        {"kind": "ReLU", "name": "r"},
        {"kind": "MaxPool2D", "name": "mp", "size": 2, "stride": 2},
        {"kind": "Flatten", "name": "f"},
        {"kind": "Dense", "name": "d1", "out_features": 9},
        {"kind": "ReLU", "name": "r2"},
        {"kind": "Dropout", "name": "drop", "p": 0.3},
        {"kind": "Dense", "name": "d2", "out_features": 5},
        {"kind": "LogitAdjustment", "name": "adj", "prior": [1.0, 2.0, 3.0, 0.5, 7.25]}]}


def images_of(images, shape):
    """Sample images padded (zeros: background) or cropped to (1, H, W), one per row."""
    _, h, w = shape
    out = np.zeros((len(images), 1, h, w), np.float32)
    ch, cw = min(h, 28), min(w, 28)
    out[:, :, (h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw] = \
        images[:, :, (28 - ch) // 2:(28 - ch) // 2 + ch, (28 - cw) // 2:(28 - cw) // 2 + cw]
    return out


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 32, 20), (1, 17, 40)])
def test_every_layer_kind_with_its_settings_exports_for_any_input_size(shape, images, tmp_path):
    description = every_kind(shape)
    net = build_model(description, np.random.default_rng(4))
    x = images_of(images[:1000], shape)
    path = tmp_path / "every.onnx"
    assert_runs_the_same(net, "abcde", path, x)
    proto = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", *shape]
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["architecture"]) == description
    assert json.loads(props["input"])["shape"] == ["N", *shape]
    assert [n.op_type for n in proto.graph.node] == ["Conv", "MaxPool", "Relu", "Conv", "Relu", "MaxPool",
                                                     "Flatten", "Gemm", "Relu", "Gemm", "Sub", "Softmax"]
    conv = proto.graph.node[0]
    assert {a.name: helper.get_attribute_value(a) for a in conv.attribute} == {
        "kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    back, meta = load_onnx(path)
    assert meta["architecture"] == description and back.input_shape == shape
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in net.layers]  # dropout kept


def test_without_its_metadata_an_export_imports_as_the_same_network_under_generic_names(images, tmp_path):
    """A reader that drops metadata_props loses the names and the dropout, not the network."""
    net = build_model(every_kind((1, 32, 20)), np.random.default_rng(4))
    proto = to_onnx(net, "abcde")
    del proto.metadata_props[:]
    back, meta = load_onnx(write(proto, tmp_path / "bare.onnx"))
    assert [spec["name"] for spec in meta["architecture"]["layers"]] == [
        "conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "relu3", "fc2", "prior"]
    assert meta["architecture"]["layers"][3] == {"kind": "ReLUMaxPool2D", "name": "pool2", "size": 2,
                                                 "stride": 2}
    x = images_of(images[:256], (1, 32, 20))
    np.testing.assert_array_equal(tinynet_logits(back, x), tinynet_logits(net, x))


def test_a_stated_architecture_that_does_not_fit_the_graph_is_not_believed(bundled, tmp_path):
    """The metadata's architecture is only used when it describes exactly the graph's network."""
    model, meta = bundled
    proto = to_onnx(model, meta["classes"], {"name": "lenet", "num_classes": 47, "class_prior": [1.0] * 47})
    back, back_meta = load_onnx(write(proto, tmp_path / "m.onnx"))
    assert back_meta["architecture"] == {"name": "lenet", "num_classes": 47}
    other = {"input": [1, 28, 28], "layers": [{"kind": "Flatten"}, {"kind": "Dense", "out_features": 47}]}
    proto = to_onnx(model, meta["classes"], other)
    back, back_meta = load_onnx(write(proto, tmp_path / "m.onnx"))
    assert back_meta["architecture"] == {"name": "lenet", "num_classes": 47}


class Doubler(Layer):
    def forward(self, x, train=True):
        return 2 * x


@pytest.mark.parametrize("fault, build", [
    ("Doubler has no ONNX export", lambda rng: Sequential(
        [Conv2D(1, 2, 5, rng=rng), Doubler(), Flatten(), Dense(2 * 24 * 24, 3, rng=rng)])),
    ("takes 100 features", lambda rng: Sequential(
        [Conv2D(1, 2, 5, rng=rng), Flatten(), Dense(100, 3, rng=rng)])),
    ("convolution of 3 channels", lambda rng: Sequential(
        [Conv2D(3, 2, 5, rng=rng), Flatten(), Dense(2 * 24 * 24, 3, rng=rng)])),
    ("there are 4 classes", lambda rng: Sequential(
        [Conv2D(1, 2, 5, rng=rng), Flatten(), Dense(2 * 24 * 24, 3, rng=rng)])),
    ("writes float32 models", lambda rng: Sequential(
        [Conv2D(1, 2, 5, rng=rng), Flatten(), Dense(2 * 24 * 24, 4, rng=rng)]).astype(np.float64)),
])
def test_what_export_cannot_write_exactly_is_refused(fault, build, tmp_path):
    with pytest.raises(OnnxError, match=fault):
        save_onnx(build(np.random.default_rng(0)), "abcd", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file


def test_metadata_holds_the_classes_and_the_input(bundled):
    model, meta = bundled
    proto = to_onnx(model, meta["classes"], meta["architecture"])
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == meta["classes"]
    expected = json.loads(props["input"])
    assert expected["shape"] == ["N", 1, 28, 28] and expected["dtype"] == "float32"
    assert "light ink" in expected["polarity"] and "upright" in expected["orientation"]
    assert json.loads(props["architecture"]) == meta["architecture"]
    assert "float32 (N, 1, 28, 28)" in proto.doc_string and "light ink on a dark" in proto.doc_string
    assert proto.producer_name == "tinynet" and proto.ir_version == 7
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 13)]
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]


# ----------------------------------------------------------------- the command line and Predictor

def test_export_command_writes_onnx_from_the_default_checkpoint(tmp_path, capsys):
    out = tmp_path / "out" / "model.onnx"
    assert tinynet_main(["export", "--onnx", str(out), "--runs-dir", str(tmp_path / "none")]) == 0
    assert "the model bundled with tinynet" in capsys.readouterr().out
    back, meta = load_onnx(out)
    assert meta["architecture"]["num_classes"] == 47


def test_export_command_names_the_checkpoint_or_writes_both(bundled, tmp_path, capsys):
    npz, onnx_path = tmp_path / "copy.npz", tmp_path / "m.onnx"
    assert tinynet_main(["export", str(BUNDLED_MODEL), "--onnx", str(onnx_path), "--output", str(npz)]) == 0
    assert npz.is_file() and onnx_path.is_file()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert tinynet_main(["export", str(bad), "--onnx", str(tmp_path / "x.onnx")]) == 1
    assert str(bad) in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()
    with pytest.raises(SystemExit) as exit_info:
        tinynet_main(["export"])
    assert exit_info.value.code == 2


def test_python_m_tinynet_export_onnx(tmp_path):
    out = tmp_path / "m.onnx"
    proc = subprocess.run([sys.executable, "-m", "tinynet", "export", "--onnx", str(out), str(BUNDLED_MODEL)],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and out.stat().st_size > 1_000_000


def test_predictor_reads_an_onnx_model_as_it_reads_its_checkpoint(sample, tmp_path):
    path = tmp_path / "m.onnx"
    assert tinynet_main(["export", "--onnx", str(path), str(BUNDLED_MODEL)]) == 0
    a = Predictor.from_checkpoint(BUNDLED_MODEL, threads=1)
    b = Predictor.from_checkpoint(path, threads=1)
    assert a.classes == b.classes
    np.testing.assert_array_equal(a.predict_proba(sample.images[:500]), b.predict_proba(sample.images[:500]))


# ----------------------------------------------------------------------------------------- import

def torch_style_lenet(rng, widths=(20, 50, 500), classes=10, flatten="Reshape", head=None,
                      padding=0, batch=1, opset=17, ir_version=8):
    """A LeNet graph shaped as torch.onnx.export writes one: Conv with bias, Relu, MaxPool, a
    Reshape with a constant shape (or Flatten), Gemm with transB = 1, numbered tensor names, a
    fixed batch size; optionally a final (Log)Softmax."""
    c1, c2, hidden = widths
    side = ((28 + 2 * padding - 4) // 2 - 4) // 2
    features = c2 * side * side
    f32 = lambda *shape: rng.normal(0, 0.1, size=shape).astype(np.float32)  # noqa: E731
    weights = {"conv1.weight": f32(c1, 1, 5, 5), "conv1.bias": f32(c1), "conv2.weight": f32(c2, c1, 5, 5),
               "conv2.bias": f32(c2), "fc1.weight": f32(hidden, features), "fc1.bias": f32(hidden),
               "fc2.weight": f32(classes, hidden), "fc2.bias": f32(classes)}
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["/conv1/Conv_output_0"],
                         name="/conv1/Conv", dilations=[1, 1], group=1, kernel_shape=[5, 5],
                         pads=[padding] * 4, strides=[1, 1]),
        helper.make_node("Relu", ["/conv1/Conv_output_0"], ["/Relu_output_0"], name="/Relu"),
        helper.make_node("MaxPool", ["/Relu_output_0"], ["/pool/MaxPool_output_0"], name="/pool/MaxPool",
                         ceil_mode=0, kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2]),
        helper.make_node("Conv", ["/pool/MaxPool_output_0", "conv2.weight", "conv2.bias"],
                         ["/conv2/Conv_output_0"], name="/conv2/Conv", dilations=[1, 1], group=1,
                         kernel_shape=[5, 5], pads=[0, 0, 0, 0], strides=[1, 1]),
        helper.make_node("Relu", ["/conv2/Conv_output_0"], ["/Relu_1_output_0"], name="/Relu_1"),
        helper.make_node("MaxPool", ["/Relu_1_output_0"], ["/pool_1/MaxPool_output_0"], name="/pool_1/MaxPool",
                         ceil_mode=0, kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2]),
    ]
    if flatten == "Reshape":
        nodes.append(helper.make_node("Constant", [], ["/Constant_output_0"], name="/Constant",
                                      value=numpy_helper.from_array(np.array([-1, features], np.int64))))
        nodes.append(helper.make_node("Reshape", ["/pool_1/MaxPool_output_0", "/Constant_output_0"],
                                      ["/Reshape_output_0"], name="/Reshape", allowzero=0))
    else:
        nodes.append(helper.make_node("Flatten", ["/pool_1/MaxPool_output_0"], ["/Reshape_output_0"],
                                      name="/Flatten", axis=1))
    nodes += [
        helper.make_node("Gemm", ["/Reshape_output_0", "fc1.weight", "fc1.bias"], ["/fc1/Gemm_output_0"],
                         name="/fc1/Gemm", alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Relu", ["/fc1/Gemm_output_0"], ["/Relu_2_output_0"], name="/Relu_2"),
        helper.make_node("Gemm", ["/Relu_2_output_0", "fc2.weight", "fc2.bias"],
                         ["output" if head is None else "/fc2/Gemm_output_0"], name="/fc2/Gemm",
                         alpha=1.0, beta=1.0, transB=1),
    ]
    if head is not None:
        nodes.append(helper.make_node(head, ["/fc2/Gemm_output_0"], ["output"], name=f"/{head}", axis=1))
    graph = helper.make_graph(nodes, "main_graph",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 28, 28])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, classes])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="pytorch", producer_version="2.5.0")
    model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    return model, weights


def write(proto, path):
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.parametrize("flatten", ["Reshape", "Flatten"])
@pytest.mark.parametrize("head", [None, "Softmax", "LogSoftmax"])
def test_a_torch_style_lenet_imports_as_tinynets_lenet(flatten, head, images, tmp_path):
    proto, weights = torch_style_lenet(np.random.default_rng(1), flatten=flatten, head=head)
    path = write(proto, tmp_path / "torch.onnx")
    model, meta = load_onnx(path)
    assert meta["architecture"] == {"name": "lenet", "num_classes": 10}
    assert meta["classes"] == [str(i) for i in range(10)]
    state = model.state_dict()
    assert state["conv1.W"].tobytes() == weights["conv1.weight"].tobytes()
    np.testing.assert_array_equal(state["fc1.W"], weights["fc1.weight"].T)
    assert state["fc1.W"].flags.c_contiguous
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images[:64]
    theirs = np.concatenate([session.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    ours = tinynet_logits(model, x)
    if head is not None:  # the graph's output is the (log-)softmax: compare log-probabilities
        shifted = ours - ours.max(1, keepdims=True)
        ours = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        theirs = np.log(theirs) if head == "Softmax" else theirs
    assert relative_difference(theirs, ours) < TOLERANCE
    # it trains: forward and backward run, and the gradient of the loss is finite and not zero
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(x, train=True), np.arange(len(x)) % 10)
    model.backward(loss.backward())
    assert all(np.isfinite(g).all() for _, _, g in model.parameters())
    assert np.abs(model.layers[0].grads["W"]).sum() > 0
    # the drawing page's and --explain's look inside: saliency down to the pixels
    logits, target, saliency, maps = look_inside(model, x[:1])
    assert saliency.shape == (28, 28) and set(maps) == {"conv1", "conv2"}
    # and it saves as a tinynet checkpoint that loads back the same
    save_checkpoint(tmp_path / "c.npz", model, meta["architecture"], meta["classes"])
    again, _, _, _ = load_checkpoint(tmp_path / "c.npz")
    np.testing.assert_array_equal(tinynet_logits(again, x), tinynet_logits(model, x))


def test_a_classic_lenet5_imports_with_its_own_description(images, tmp_path):
    """Other widths and a padded conv1 (LeNet-5: 6, 16, 120; 84 is left out): not build_model's
    LeNet, so its layers are named in graph order and its description written down from them; it
    predicts, trains, explains, and saves as a checkpoint that loads back bitwise."""
    proto, _ = torch_style_lenet(np.random.default_rng(2), widths=(6, 16, 120), padding=2, batch=4,
                                 opset=11, ir_version=6, flatten="Flatten")
    path = write(proto, tmp_path / "lenet5.onnx")
    model, meta = load_onnx(path, classes="0123456789")
    assert meta["classes"] == list("0123456789")
    assert [type(la).__name__ for la in model.layers] == [
        "Conv2D", "ReLUMaxPool2D", "Conv2D", "ReLUMaxPool2D", "Flatten", "Dense", "ReLU", "Dense"]
    assert meta["architecture"] == describe(model) and meta["architecture"]["input"] == [1, 28, 28]
    assert meta["architecture"]["layers"][0] == {"kind": "Conv2D", "name": "conv1", "out_channels": 6,
                                                 "kernel_size": 5, "stride": 1, "padding": 2}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images[:64]
    theirs = np.concatenate([session.run(None, {"input": x[i:i + 4]})[0] for i in range(0, len(x), 4)])
    assert relative_difference(theirs, tinynet_logits(model, x)) < TOLERANCE
    predictor = Predictor.from_checkpoint(path, threads=1)
    assert predictor.classes == tuple(str(i) for i in range(10))
    assert predictor.predict(np.zeros((3, 28, 28), np.uint8)).shape == (3,)
    assert look_inside(model, x[:1])[2].shape == (28, 28)
    save_checkpoint(tmp_path / "c.npz", model, meta["architecture"], meta["classes"])
    again, again_meta, _, _ = load_checkpoint(tmp_path / "c.npz")
    assert again_meta["architecture"] == meta["architecture"]
    np.testing.assert_array_equal(tinynet_logits(again, x), tinynet_logits(model, x))


def mlp_graph(rng, shape=(1, 20, 24), hidden=7, classes=4, tail=None):
    """An MLP graph without any convolution, for images of ``shape``: Flatten, Gemm, Relu, Gemm
    (transB 1, as PyTorch writes Linear), then ``tail`` (op, constant) if given."""
    features = int(np.prod(shape))
    f32 = lambda *s: rng.normal(0, 0.1, size=s).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for n, a in [("w1", f32(hidden, features)), ("b1", f32(hidden)),
                                                         ("w2", f32(classes, hidden)), ("b2", f32(classes))]]
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y" if tail is None else "z"], transB=1)]
    if tail is not None:
        op, constant = tail
        inits.append(numpy_helper.from_array(constant, "c"))
        nodes.append(helper.make_node(op, ["z", "c"], ["y"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("tail", [None, "prior"])
def test_a_network_without_convolutions_on_images_of_another_size_imports_and_saves(tail, tmp_path):
    rng = np.random.default_rng(8)
    log_prior = np.log(np.array([0.1, 0.2, 0.3, 0.4])).astype(np.float32)
    path = write(mlp_graph(rng, tail=("Sub", log_prior) if tail else None), tmp_path / "mlp.onnx")
    model, meta = load_onnx(path)
    assert model.input_shape == (1, 20, 24) and meta["input"]["shape"] == ["N", 1, 20, 24]
    assert meta["architecture"] == describe(model) and meta["architecture"]["input"] == [1, 20, 24]
    assert [spec["kind"] for spec in meta["architecture"]["layers"]] == [
        "Flatten", "Dense", "ReLU", "Dense"] + (["LogitAdjustment"] if tail else [])
    x = rng.uniform(0, 1, size=(300, 1, 20, 24)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert relative_difference(session.run(None, {"x": x})[0], tinynet_logits(model, x)) < TOLERANCE
    save_checkpoint(tmp_path / "c.npz", model, meta["architecture"], meta["classes"])
    again, _, _, _ = load_checkpoint(tmp_path / "c.npz")
    np.testing.assert_array_equal(tinynet_logits(again, x), tinynet_logits(model, x))


def test_a_constant_after_the_last_gemm_that_is_no_log_prior_is_refused(tmp_path):
    """A class-prior correction subtracts log(prior), whose exponentials sum to 1; another
    constant would not survive being written down as a prior."""
    rng = np.random.default_rng(8)
    path = write(mlp_graph(rng, tail=("Sub", np.ones(4, np.float32))), tmp_path / "m.onnx")
    with pytest.raises(OnnxError, match="is not a class-prior correction: .* these to 10.87"):
        load_onnx(path)


def test_a_gemm_without_bias_takes_the_add_after_it_as_its_bias(tmp_path):
    """PyTorch's dynamo exporter writes F.linear(x, W) + b as Gemm(x, W) then Add(b): one dense
    layer, not a class-prior correction (b is no log prior)."""
    rng = np.random.default_rng(8)
    bias = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    proto = mlp_graph(rng, tail=("Add", bias))
    del proto.graph.node[3].input[2:]  # the last Gemm without its bias
    path = write(proto, tmp_path / "m.onnx")
    model, meta = load_onnx(path)
    assert [spec["kind"] for spec in meta["architecture"]["layers"]] == ["Flatten", "Dense", "ReLU", "Dense"]
    assert model.state_dict()["fc2.b"].tobytes() == bias.tobytes()
    x = rng.uniform(0, 1, size=(200, 1, 20, 24)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert relative_difference(session.run(None, {"x": x})[0], tinynet_logits(model, x)) < TOLERANCE


def test_the_input_shape_is_the_graphs_whatever_the_metadata_says(bundled, tmp_path):
    model, meta = bundled
    proto = to_onnx(model, meta["classes"])
    entry = next(p for p in proto.metadata_props if p.key == "input")
    entry.value = json.dumps({**json.loads(entry.value), "shape": ["N", 3, 64, 64]})
    back, back_meta = load_onnx(write(proto, tmp_path / "m.onnx"))
    assert back_meta["input"]["shape"] == ["N", 1, 28, 28] and back.input_shape == (1, 28, 28)
    assert "light ink" in back_meta["input"]["polarity"]


def test_an_add_of_three_inputs_is_refused(tmp_path):
    rng = np.random.default_rng(8)
    proto = mlp_graph(rng, tail=("Add", np.log(np.full(4, 0.25, np.float32))))
    proto.graph.node[-1].input.append("c")
    with pytest.raises(OnnxError, match="Add of 3 inputs"):
        load_onnx(write(proto, tmp_path / "m.onnx"))


# ---------------------------------------------------------------------------- refused, never crash

def small_torch(rng=None):
    return torch_style_lenet(rng or np.random.default_rng(0), widths=(2, 3, 4), classes=3)[0]


def edited(edit):
    proto = small_torch()
    edit(proto)
    return proto


def init(proto, name):
    return next(t for t in proto.graph.initializer if t.name == name)


def node(proto, name):
    return next(n for n in proto.graph.node if n.name == name)


def set_external(proto):
    t = init(proto, "fc1.weight")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"


def set_huge(proto):
    t = init(proto, "fc2.weight")
    del t.dims[:]
    t.dims.extend([1 << 31, 1 << 31])


def set_huge_float_data(proto):
    t = init(proto, "conv1.weight")
    del t.dims[:]
    t.dims.extend([1 << 40])


def set_op(op):
    def edit(proto):
        node(proto, "/Relu_1").op_type = op
    return edit


def set_attr(node_name, attr, value):
    def edit(proto):
        n = node(proto, node_name)
        keep = [a for a in n.attribute if a.name != attr]
        del n.attribute[:]
        n.attribute.extend(keep + [helper.make_attribute(attr, value)])
    return edit


def set_reshape(shape):
    def edit(proto):
        c = node(proto, "/Constant")
        c.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(shape, np.int64)))
    return edit


def set_nan(proto):
    t = init(proto, "conv2.bias")
    t.CopyFrom(numpy_helper.from_array(np.full(3, np.nan, np.float32), "conv2.bias"))


def set_weight_shape(proto):
    t = init(proto, "fc1.weight")
    t.CopyFrom(numpy_helper.from_array(np.zeros((4, 47), np.float32), "fc1.weight"))


def set_second_input(proto):
    proto.graph.input.extend([helper.make_tensor_value_info("other", TensorProto.FLOAT, [1])])


def set_branch(proto):
    proto.graph.node.extend([helper.make_node("Relu", ["/conv1/Conv_output_0"], ["side"])])
    proto.graph.output.extend([helper.make_tensor_value_info("side", TensorProto.FLOAT, None)])


def set_cycle(proto):
    node(proto, "/Relu").input[0] = "/pool/MaxPool_output_0"


def set_input_shape(proto):
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"


def set_opset(proto):
    proto.opset_import[0].version = 99


def set_domain(proto):
    node(proto, "/Relu_2").domain = "com.example"


def set_int8(proto):
    t = init(proto, "fc2.bias")
    t.data_type = TensorProto.INT8


@pytest.mark.parametrize("edit, fault", [
    (set_external, "is not a file name in the model's folder"),
    (set_huge, "declares shape"),
    (set_huge_float_data, "declares shape"),
    (set_op("Sigmoid"), "operator Sigmoid is not one tinynet imports"),
    (set_op("Loop"), "operator Loop"),
    (set_domain, "operator com.example::Relu"),
    (set_attr("/conv1/Conv", "group", 2), "group 2"),
    (set_attr("/conv1/Conv", "dilations", [2, 2]), "dilations"),
    (set_attr("/conv1/Conv", "pads", [1, 2, 1, 2]), "same padding on every side"),
    (set_attr("/conv1/Conv", "strides", [0, 0]), "strides"),
    (set_attr("/conv1/Conv", "pads", [1 << 40] * 4), "pads"),
    (set_attr("/pool/MaxPool", "ceil_mode", 1), "ceil_mode"),
    (set_attr("/pool/MaxPool", "kernel_shape", [40, 40]), "does not fit"),
    (set_attr("/fc1/Gemm", "alpha", 2.0), "alpha 1"),
    (set_attr("/fc1/Gemm", "transA", 1), "transA 0"),
    (set_attr("/Relu", "bogus", 1), "attribute 'bogus'"),
    (set_reshape([-1, 47]), "reshapes to"),
    (set_reshape([1, 2, 3]), "Reshape to \\(N, features\\)"),
    (set_nan, "NaN"),
    (set_weight_shape, "takes 47 features, but its input has shape \\(48,\\)"),
    (set_second_input, "has 2 inputs"),
    (set_branch, "feeds 2 nodes"),
    (set_cycle, "not on the path from the input"),
    (set_input_shape, "has shape \\[1, 1, '\\?', 28\\]; tinynet models take \\(N, C, H, W\\) images"),
    (set_opset, "opset 99"),
    (set_int8, "element type INT8"),
])
def test_hostile_or_unsupported_graphs_are_refused_naming_the_file(edit, fault, tmp_path):
    path = write(edited(edit), tmp_path / "hostile.onnx")
    with pytest.raises(OnnxError, match=fault) as info:
        load_onnx(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_files_that_are_not_onnx_models_are_refused(tmp_path):
    cases = {"empty.onnx": b"", "text.onnx": b"hello, world\n", "zip.onnx": BUNDLED_MODEL.read_bytes()}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(OnnxError, match=f"^{tmp_path / name}: "):
            load_onnx(tmp_path / name)
    with pytest.raises(OnnxError, match="no such file"):
        load_onnx(tmp_path / "missing.onnx")
    with pytest.raises(OnnxError, match="is not a file"):
        load_onnx(tmp_path)
    no_graph = helper.make_model(helper.make_graph([], "g", [], []))
    no_graph.ClearField("graph")
    with pytest.raises(OnnxError, match="no graph"):
        load_onnx(write(no_graph, tmp_path / "nograph.onnx"))


def test_metadata_classes_must_fit(bundled, tmp_path):
    model, meta = bundled
    proto = to_onnx(model, meta["classes"])
    next(p for p in proto.metadata_props if p.key == "classes").value = json.dumps(["a", "b"])
    with pytest.raises(OnnxError, match="names 2 classes but the model has 47 outputs"):
        load_onnx(write(proto, tmp_path / "m.onnx"))


def only_loads_or_refuses(path):
    """The property every damaged file must have: load_onnx either returns a model that runs, or
    raises OnnxError naming the file; nothing else escapes."""
    try:
        model, meta = load_onnx(path)
    except OnnxError as e:
        assert str(e).startswith(f"{path}: ")
        return False
    out = model.forward(np.zeros((1, 1, 28, 28), np.float32), train=False)
    assert out.shape == (1, len(meta["classes"]))
    return True


SMALL = small_torch().SerializeToString()
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(cut=st.integers(0, len(SMALL) - 1))
def test_truncated_files_are_refused(cut, tmp_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(SMALL[:cut])
    only_loads_or_refuses(path)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(1, 255)), min_size=1, max_size=8))
def test_files_with_damaged_bytes_load_or_are_refused(flips, tmp_path):
    data = bytearray(SMALL)
    for where, xor in flips:
        data[where] ^= xor
    path = tmp_path / "flipped.onnx"
    path.write_bytes(bytes(data))
    only_loads_or_refuses(path)


NAMES = st.sampled_from(["input", "output", "conv1.weight", "fc1.bias", "/Relu_output_0",
                         "/Constant_output_0", "/pool/MaxPool_output_0", "", "x"])
INTS = st.one_of(st.integers(-3, 60), st.sampled_from([1 << 31, 1 << 40, -(1 << 40), 1 << 62]))


@st.composite
def hostile_edits(draw):
    """A few structural edits of a valid model: the parts a hostile file controls."""
    proto = small_torch()
    g = proto.graph
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["dims", "dtype", "op", "attr", "input", "drop", "raw", "location",
                                     "output", "float_data"]))
        if kind in ("dims", "dtype", "raw", "location", "float_data"):
            t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
            if kind == "dims":
                del t.dims[:]
                t.dims.extend(draw(st.lists(INTS, max_size=5)))
            elif kind == "dtype":
                t.data_type = draw(st.integers(0, 25))
            elif kind == "raw":
                t.raw_data = draw(st.binary(max_size=64))
            elif kind == "float_data":
                t.ClearField("raw_data")
                t.float_data.extend(draw(st.lists(st.floats(width=32), max_size=20)))
            else:
                t.data_location = draw(st.integers(0, 1))
        else:
            n = g.node[draw(st.integers(0, len(g.node) - 1))]
            if kind == "op":
                n.op_type = draw(st.sampled_from(["Conv", "Relu", "MaxPool", "Gemm", "Flatten", "Reshape",
                                                  "Softmax", "Add", "Sub", "Identity", "Dropout", "Constant",
                                                  "If", "Scan", "AveragePool", "Tanh"]))
            elif kind == "attr":
                name = draw(st.sampled_from(["kernel_shape", "strides", "pads", "axis", "transB", "group",
                                             "alpha", "value"]))
                value = draw(st.one_of(INTS, st.lists(INTS, min_size=1, max_size=5), st.floats(-3, 3)))
                keep = [a for a in n.attribute if a.name != name]
                del n.attribute[:]
                n.attribute.extend(keep + [helper.make_attribute(name, value)])
            elif kind == "input":
                if n.input and draw(st.booleans()):
                    n.input[0] = draw(NAMES)
                else:
                    n.input.append(draw(NAMES))
            elif kind == "output":
                n.output[0] = draw(NAMES)
            else:
                g.node.remove(n)
    return proto.SerializeToString()


@FUZZ
@given(data=hostile_edits())
def test_structurally_hostile_graphs_load_or_are_refused(data, tmp_path):
    path = tmp_path / "hostile.onnx"
    path.write_bytes(data)
    only_loads_or_refuses(path)


def test_tinynet_works_without_onnx_installed():
    """onnx is optional: with it missing, tinynet (and tinynet.onnx itself) import, checkpoints load,
    and ONNX export or import say which extra to install."""
    code = (
        "import sys; sys.modules['onnx'] = None\n"
        "import tinynet, tinynet.predict.predictor, tinynet.onnx as o\n"
        "from tinynet.predict.predictor import Predictor, BUNDLED_MODEL\n"
        "p = Predictor.from_checkpoint(BUNDLED_MODEL, threads=1)\n"
        "try:\n"
        "    o.to_onnx(p.model, p.classes)\n"
        "except ImportError as e:\n"
        "    print('export:', e)\n"
        "try:\n"
        "    o.load_onnx('model.onnx')\n"
        "except o.OnnxError as e:\n"
        "    print('import:', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert "export: ONNX export and import needs the onnx package: pip install 'tinynet[onnx]'" in proc.stdout
    assert "import: model.onnx: reading an ONNX model needs the onnx package" in proc.stdout


@pytest.mark.parametrize("shape, accepted", [([1, 48], True), ([0, -1], True), ([1, -1], True),
                                             ([-1, 48], True), ([2, 24], False), ([-1, -1], False)])
def test_reshape_to_n_features_with_a_fixed_batch(shape, accepted, tmp_path):
    """The small torch-style model's input has a fixed batch of 1 and 3 x 4 x 4 = 48 features."""
    path = write(edited(set_reshape(shape)), tmp_path / "m.onnx")
    if accepted:
        model, _ = load_onnx(path)
        assert any(isinstance(layer, Flatten) for layer in model.layers)
    else:
        with pytest.raises(OnnxError, match="reshapes to"):
            load_onnx(path)


def varint(n):
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def test_deeply_nested_protobuf_is_refused(tmp_path):
    """5,000 graphs nested in node attributes (ModelProto.graph = 7, GraphProto.node = 1,
    NodeProto.attribute = 5, AttributeProto.g = 6): protobuf's depth limit, reported as ours."""
    field = lambda number, payload: varint(number << 3 | 2) + varint(len(payload)) + payload  # noqa: E731
    graph = b""
    for _ in range(5000):
        graph = field(1, field(5, field(6, graph)))
    path = tmp_path / "deep.onnx"
    path.write_bytes(field(7, graph))
    with pytest.raises(OnnxError, match="not an ONNX model"):
        load_onnx(path)


def test_dropout_is_skipped_at_evaluation_but_not_in_training_mode(tmp_path):
    def with_dropout(training):
        def edit(proto):
            n = node(proto, "/Relu_2")
            n.output[0] = "/Relu_2_pre"
            proto.graph.initializer.extend([numpy_helper.from_array(np.array(0.5, np.float32), "ratio"),
                                            numpy_helper.from_array(np.array(training), "mode")])
            proto.graph.node.insert(list(proto.graph.node).index(n) + 1, helper.make_node(
                "Dropout", ["/Relu_2_pre", "ratio", "mode"], ["/Relu_2_output_0"], name="/dropout"))
        return edit
    model, meta = load_onnx(write(edited(with_dropout(False)), tmp_path / "eval.onnx"))
    assert len(model.layers) == 8
    assert "Dropout" not in {spec["kind"] for spec in meta["architecture"]["layers"]}
    with pytest.raises(OnnxError, match="Dropout in training mode"):
        load_onnx(write(edited(with_dropout(True)), tmp_path / "train.onnx"))


def test_conv_without_kernel_shape_takes_it_from_the_weight(tmp_path):
    def edit(proto):
        n = node(proto, "/conv1/Conv")
        keep = [a for a in n.attribute if a.name != "kernel_shape"]
        del n.attribute[:]
        n.attribute.extend(keep)
    model, meta = load_onnx(write(edited(edit), tmp_path / "m.onnx"))
    assert model.layers[0].params["W"].shape == (2, 1, 5, 5)
    assert meta["input"]["shape"] == ["N", 1, 28, 28]  # no metadata: what tinynet's models take


def test_external_data_is_refused_without_opening_any_other_file(tmp_path, monkeypatch):
    secret = tmp_path / "weights.bin"
    secret.write_bytes(np.zeros(4 * 47, np.float32).tobytes())

    def edit(proto):
        set_external(proto)
        init(proto, "fc1.weight").external_data[0].value = str(secret)
    path = write(edited(edit), tmp_path / "m.onnx")
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    with pytest.raises(OnnxError, match="is not a file name in the model's folder"):
        load_onnx(path)
    assert opened == [str(path)]


def test_the_drawing_page_serves_an_imported_model(sample, tmp_path):
    import threading
    import urllib.request

    from PIL import Image

    from tinynet.web.draw import make_server
    proto, _ = torch_style_lenet(np.random.default_rng(2), widths=(6, 16, 120), padding=2, flatten="Flatten")
    path = write(proto, tmp_path / "lenet5.onnx")
    model, meta = load_onnx(path)
    Image.fromarray(255 - sample.images[0]).save(tmp_path / "a.png")
    server = make_server(model, meta["classes"], path, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        info = json.loads(urllib.request.urlopen(f"{url}/api/model", timeout=60).read())
        request = urllib.request.Request(f"{url}/api/predict", data=(tmp_path / "a.png").read_bytes(),
                                         method="POST")
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert info["checkpoint"] == "lenet5.onnx" and info["classes"] == [str(i) for i in range(10)]
    assert len(answer["top_k"]) == 5 and set(answer["feature_maps"]) == {"conv1", "conv2"}


def test_too_many_nodes_or_too_large_a_file_is_refused(tmp_path, monkeypatch):
    def many_identities(proto):
        g = proto.graph
        g.node[-1].output[0] = "chain0"
        g.node.extend(helper.make_node("Identity", [f"chain{i}"], [f"chain{i + 1}"]) for i in range(1000))
        g.node[-1].output[0] = "output"
    with pytest.raises(OnnxError, match="has 1011 nodes, more than the 1000"):
        load_onnx(write(edited(many_identities), tmp_path / "many.onnx"))
    path = write(small_torch(), tmp_path / "small.onnx")
    monkeypatch.setattr("tinynet.onnx.importer.MAX_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(OnnxError, match="larger than the"):
        load_onnx(path)


@pytest.mark.parametrize("head", [None, "Softmax"])
def test_a_translator_can_read_the_nodes_after_its_own(head, tmp_path, monkeypatch):
    """The walker hands a translator the nodes after its own (``step.peek_next()``, ``take_next()``),
    for operators that come as a pattern of several nodes, and goes on after the last node taken:
    here a Relu translator that takes the MaxPool after it, and a Gemm translator that looks at the
    node after it (the final Softmax, or the end) without taking it, read the same model."""
    from tinynet.onnx import ops
    path = write(torch_style_lenet(np.random.default_rng(1), head=head)[0], tmp_path / "torch.onnx")
    plain, plain_meta = load_onnx(path)
    seen = []

    def relu_then_pool(step):
        after = step.peek_next()
        if after is None or after.node.op_type != "MaxPool":
            return ops.relu(step)
        assert step.take_next() is after
        after.shape = step.shape
        (_, attrs, arrays), shape = ops.max_pool(after)
        seen.append("relupool")
        return ("relupool", attrs, arrays), shape

    def gemm_looking_ahead(step):
        after = step.peek_next()
        seen.append(after.node.op_type if after is not None else None)
        return ops.gemm(step)

    monkeypatch.setitem(ops.TRANSLATORS, "Relu", ops.Operator(relu_then_pool, {}))
    gemm = ops.TRANSLATORS["Gemm"]
    monkeypatch.setitem(ops.TRANSLATORS, "Gemm", gemm._replace(translate=gemm_looking_ahead))
    model, meta = load_onnx(path)
    assert seen == ["relupool", "relupool", "Relu", head]
    assert [type(layer) for layer in model.layers] == [type(layer) for layer in plain.layers]
    assert meta == plain_meta
    for a, b in zip(model.state_dict().values(), plain.state_dict().values()):
        assert np.array_equal(a, b)
