"""Importing what PyTorch 2.x writes (tinynet/onnx/): the files PyTorch 2.13 exported in
tests/fixtures/onnx/ (their script, make_torch_fixtures.py, says how), so that these tests need no
PyTorch; external data beside the model, read safely; Reshape with allowzero 1; the
Shape-Gather-Unsqueeze-Concat-Reshape flatten; MatMul + Add as a dense layer; and, where PyTorch is
installed, a fresh export.

Agreement is ``max |a - b| / max |b|`` over all the logits of all the images, as in test_onnx.py.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX import needs the onnx package (tinynet[onnx])")
ort = pytest.importorskip("onnxruntime", reason="checking imports needs onnxruntime (tinynet[onnx])")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from tinynet.datasets.idx import to_float  # noqa: E402
from tinynet.datasets.load import load_sample  # noqa: E402
from tinynet.files.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from tinynet.nn.describe import describe  # noqa: E402
from tinynet.nn.layers import SoftmaxCrossEntropy  # noqa: E402
from tinynet.nn.optim import SGD  # noqa: E402
from tinynet.nn.step import train_step  # noqa: E402
from tinynet.onnx import OnnxError, load_onnx  # noqa: E402
from tinynet.onnx import tensors  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "onnx"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
FILES = sorted(MANIFEST["files"])
TOLERANCE = 1e-5
KINDS = {  # the layers each fixture network comes back as
    "lenet": ["Conv2D", "ReLUMaxPool2D", "Conv2D", "ReLUMaxPool2D", "Flatten", "Dense", "ReLU", "Dense"],
    "mlp": ["Flatten", "Dense", "ReLU", "Dense"],
    "strided": ["Conv2D", "ReLU", "Conv2D", "ReLU", "Conv2D", "ReLU", "Flatten", "Dense"],
    "matmul": ["MaxPool2D", "Flatten", "Dense", "ReLU", "Dense"],
    # PyTorch's default exports fold batch normalisation into the layer before it where they can:
    # the dynamo exporter into both convolutions and fc1, the TorchScript exporter into the
    # convolutions only, leaving fc1's BatchNorm1d a BatchNormalization
    "batchnorm.dynamo.onnx": ["Conv2D", "ReLUMaxPool2D", "Conv2D", "ReLUMaxPool2D", "Flatten", "Dense", "ReLU",
                              "Dense"],
    "batchnorm.torchscript.onnx": ["Conv2D", "ReLUMaxPool2D", "Conv2D", "ReLUMaxPool2D", "Flatten", "Dense",
                                   "BatchNorm1D", "ReLU", "Dense"],
}


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def sample():
    return load_sample()


@pytest.fixture(scope="module")
def images(sample):
    return to_float(sample.images)  # float32 (3760, 1, 28, 28): upright, / 255, light ink on dark


def relative_difference(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def logits_of(model, x, batch=512):
    return np.concatenate([model.forward(x[i:i + batch], train=False).copy() for i in range(0, len(x), batch)])


def onnxruntime_logits(path, x):
    """The graph's first output for every image, in batches its input takes (a fixed batch of 1 for
    the dynamo exporter's files)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    batch = first.shape[0] if isinstance(first.shape[0], int) else 256
    return np.concatenate([session.run(None, {first.name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def graph(name):
    return onnx.load(str(FIXTURES / name), load_external_data=False)


# --------------------------------------------------------------------- the files PyTorch wrote

def test_the_fixtures_are_what_pytorch_writes():
    """So that the tests below are about PyTorch's styles: external data, allowzero 1, the
    view-flatten group, MatMul + Add, each where its exporter writes it."""
    assert MANIFEST["torch"].startswith("2.13")
    ops = {name: [n.op_type for n in graph(name).graph.node] for name in FILES}
    for name, entry in MANIFEST["files"].items():
        g = graph(name)
        assert g.producer_name == "pytorch"
        external = [t.name for t in g.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert bool(external) == (entry["style"] == "dynamo"), name
        if entry["external_data"]:
            assert (FIXTURES / entry["external_data"]).is_file()
        if entry["style"] in ("dynamo", "inline"):
            reshape = next(n for n in g.graph.node if n.op_type == "Reshape")
            assert helper.get_attribute_value(reshape.attribute[0]) == 1  # allowzero
    for net in ("lenet", "matmul"):
        assert ops[f"{net}.torchscript.onnx"][ops[f"{net}.torchscript.onnx"].index("Shape"):][:8] == [
            "Shape", "Constant", "Gather", "Constant", "Unsqueeze", "Constant", "Concat", "Reshape"]
    assert ops["matmul.dynamo.onnx"][2:4] == ["MatMul", "Add"]
    assert "BatchNormalization" not in ops["batchnorm.dynamo.onnx"]
    assert ops["batchnorm.torchscript.onnx"][-4:] == ["Gemm", "BatchNormalization", "Relu", "Gemm"]
    assert ops["matmul.torchscript.onnx"][-1] == "MatMul"


@pytest.mark.parametrize("name", FILES)
def test_each_pytorch_export_imports_and_computes_what_pytorch_computed(name, images):
    model, meta = load_onnx(FIXTURES / name)
    network = MANIFEST["files"][name]["network"]
    assert [type(layer).__name__ for layer in model.layers] == KINDS.get(name, KINDS.get(network))
    assert meta["architecture"] == describe(model)  # a full description: it saves as a checkpoint
    pytorch = np.load(FIXTURES / f"{network}.logits.npy")
    ours = model.forward(images[MANIFEST["probe"]], train=False)
    assert relative_difference(ours, pytorch) <= TOLERANCE
    assert np.array_equal(ours.argmax(1), pytorch.argmax(1))


@pytest.mark.parametrize("network", ["lenet", "mlp", "strided", "matmul"])
def test_every_export_style_gives_the_same_weights(network):
    """The dynamo exporter's file (weights beside it), its inline twin and the TorchScript
    exporter's file hold the same network: the imports are bitwise the same."""
    styles = [name for name in FILES if MANIFEST["files"][name]["network"] == network]
    assert len(styles) >= 2
    models = [load_onnx(FIXTURES / name)[0] for name in styles]
    for other in models[1:]:
        for (a, p, _), (b, q, _) in zip(models[0].parameters(), other.parameters()):
            assert a == b and p.tobytes() == q.tobytes()


@pytest.mark.parametrize("name", ["lenet.dynamo.onnx", "strided.torchscript.onnx", "mlp.dynamo.onnx",
                                  "matmul.torchscript.onnx", "batchnorm.torchscript.onnx"])
def test_a_pytorch_export_agrees_with_onnxruntime_on_the_sample_and_saves_bitwise(name, sample, images,
                                                                                   tmp_path):
    """onnxruntime running PyTorch's file and tinynet running its import agree on the 3,760 real
    images of the shipped sample; the import saves as a checkpoint that loads and predicts bitwise."""
    model, meta = load_onnx(FIXTURES / name, classes=sample.classes)
    theirs, ours = onnxruntime_logits(FIXTURES / name, images), logits_of(model, images)
    difference = relative_difference(theirs, ours)
    assert difference <= TOLERANCE and np.array_equal(theirs.argmax(1), ours.argmax(1))
    assert (ours.argmax(1) == sample.labels).mean() > 0.25  # it learned: the argmaxes are not constants
    save_checkpoint(tmp_path / "c.npz", model, meta["architecture"], meta["classes"])
    again, again_meta, _, _ = load_checkpoint(tmp_path / "c.npz")
    assert again_meta["architecture"] == meta["architecture"] and again_meta["classes"] == list(sample.classes)
    assert np.array_equal(logits_of(again, images), ours)
    print(f"{name}: max relative logit difference {difference:.2g} on {len(images)} images")


def test_an_imported_network_resumes_training_bitwise(sample, images, tmp_path):
    """Train an imported network a few steps, save it with its optimiser state, load it and go on:
    the same weights as going on without saving."""
    model, meta = load_onnx(FIXTURES / "strided.dynamo.onnx", classes=sample.classes)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(images), 32) for _ in range(6)]
    optimizer, loss = SGD(0.01, momentum=0.9), SoftmaxCrossEntropy()
    for b in batches[:3]:
        train_step(model, loss, optimizer, images[b], sample.labels[b])
    save_checkpoint(tmp_path / "c.npz", model, meta["architecture"], meta["classes"],
                    optimizer=optimizer.state_dict())
    again, _, velocity, _ = load_checkpoint(tmp_path / "c.npz")
    resumed = SGD(0.01, momentum=0.9)
    resumed.load_state_dict(velocity)
    for b in batches[3:]:
        train_step(model, loss, optimizer, images[b], sample.labels[b])
        train_step(again, loss, resumed, images[b], sample.labels[b])
    for (name, p, _), (other, q, _) in zip(model.parameters(), again.parameters()):
        assert name == other and p.tobytes() == q.tobytes()


# ------------------------------------------------------------------ external data beside the model

def copy_fixture(name, folder):
    """The fixture ``name`` and its data file copied into ``folder``; returns the model's path."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / name, folder / name)
    shutil.copy(FIXTURES / f"{name}.data", folder / f"{name}.data")
    return folder / name


def with_entries(path, edit, tensor="fc1.weight"):
    """Rewrite the model at ``path`` after ``edit(entries)`` of one external tensor's
    external_data {key: value} (None deletes a key)."""
    proto = onnx.load(str(path), load_external_data=False)
    t = next(t for t in proto.graph.initializer if t.name == tensor)
    entries = {e.key: e.value for e in t.external_data}
    edit(entries)
    del t.external_data[:]
    for key, value in entries.items():
        if value is not None:
            entry = t.external_data.add()
            entry.key, entry.value = key, value
    path.write_bytes(proto.SerializeToString())
    return path


def test_external_data_is_read_from_the_model_folder_only(tmp_path, monkeypatch):
    """The model and its data file are the only files opened."""
    path = copy_fixture("lenet.dynamo.onnx", tmp_path / "here")
    opened = []
    real_open, real_os_open = open, os.open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    monkeypatch.setattr(os, "open", lambda f, *a, **k: opened.append(str(f)) or real_os_open(f, *a, **k))
    model, _ = load_onnx(path)
    assert set(opened) == {str(path), str(path) + ".data"}
    inline, _ = load_onnx(FIXTURES / "lenet.inline.onnx")
    for (_, p, _), (_, q, _) in zip(model.parameters(), inline.parameters()):
        assert p.tobytes() == q.tobytes()


def secret_beside(folder):
    (folder / "secret.bin").write_bytes(bytes(range(256)) * 64)
    return folder / "secret.bin"


@pytest.mark.parametrize("location, fault", [
    ("../lenet.dynamo.onnx.data", "not a file name in the model's folder"),
    ("sub/lenet.dynamo.onnx.data", "not a file name in the model's folder"),
    ("ABSOLUTE", "not a file name in the model's folder"),
    ("..", "not a file name in the model's folder"),
    ("", "not a file name in the model's folder"),
    ("a\\b", "not a file name in the model's folder"),
    ("lenet.dynamo.onnx", "is the model file itself"),
    ("missing.data", "'missing.data' is not in the model's folder"),
    ("link.data", "'link.data' is a link"),
    ("inside-link.data", "'inside-link.data' is a link"),
    ("folder.data", "is not a regular file"),
    ("fifo.data", "is not a regular file"),
])
def test_external_data_anywhere_else_is_refused(location, fault, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = secret_beside(outside)
    path = copy_fixture("lenet.dynamo.onnx", tmp_path / "model")
    (path.parent / "sub").mkdir()
    shutil.copy(path.parent / "lenet.dynamo.onnx.data", path.parent / "sub" / "lenet.dynamo.onnx.data")
    shutil.copy(path.parent / "lenet.dynamo.onnx.data", outside / "lenet.dynamo.onnx.data")
    (path.parent / "link.data").symlink_to(secret)
    (path.parent / "inside-link.data").symlink_to(path.parent / "lenet.dynamo.onnx.data")
    (path.parent / "folder.data").mkdir()
    os.mkfifo(path.parent / "fifo.data")  # opening it would block: it must never be opened
    location = str(secret) if location == "ABSOLUTE" else location
    with_entries(path, lambda e: e.update(location=location))
    opened = []
    real_os_open = os.open
    monkeypatch.setattr(os, "open", lambda f, *a, **k: opened.append(str(f)) or real_os_open(f, *a, **k))
    with pytest.raises(OnnxError, match=fault) as info:
        load_onnx(path)
    assert str(info.value).startswith(f"{path}: initializer 'fc1.weight'")
    assert not [f for f in opened if "lenet.dynamo.onnx.data" not in f or "sub" in f or "outside" in f]


@pytest.mark.parametrize("edit, fault", [
    (lambda e: e.update(offset="999999"), "do not fit the"),
    (lambda e: e.update(length="12"), "declares 6144 bytes of data but its external length is 12"),
    (lambda e: e.update(offset="-4"), "offset '-4' is not a number of bytes"),
    (lambda e: e.update(offset="1e3"), "offset '1e3' is not a number of bytes"),
    (lambda e: e.update(length=""), "length '' is not a number of bytes"),
    (lambda e: e.update(offset="9" * 40), "is not a number of bytes"),
    (lambda e: e.update(checksum="abc"), "external_data key 'checksum' is not supported"),
    (lambda e: e.update(location=None), "names no location"),
    (lambda e: e.update(length=None, offset="0"), "do not fit the"),  # the rest of the file is not its size
])
def test_external_data_ranges_are_checked_against_the_file_and_the_tensor(edit, fault, tmp_path):
    path = with_entries(copy_fixture("lenet.dynamo.onnx", tmp_path), edit)
    with pytest.raises(OnnxError, match=fault):
        load_onnx(path)


def test_external_data_without_length_reads_to_the_end_of_the_file(tmp_path):
    """ONNX's rule: no length means from the offset to the end of the file, which must then be
    exactly the tensor's size."""
    path = copy_fixture("lenet.dynamo.onnx", tmp_path)
    proto = onnx.load(str(path), load_external_data=False)
    t = next(t for t in proto.graph.initializer if t.name == "fc2.weight")
    entries = {e.key: e.value for e in t.external_data}
    start, size = int(entries["offset"]), int(entries["length"])
    (tmp_path / "last.data").write_bytes((tmp_path / "lenet.dynamo.onnx.data").read_bytes()[start:start + size])
    with_entries(path, lambda e: e.update(location="last.data", offset=None, length=None), tensor="fc2.weight")
    model, _ = load_onnx(path)
    original, _ = load_onnx(FIXTURES / "lenet.dynamo.onnx")
    assert model.state_dict()["fc2.W"].tobytes() == original.state_dict()["fc2.W"].tobytes()


def test_an_external_data_file_larger_than_the_cap_is_refused(tmp_path, monkeypatch):
    path = copy_fixture("lenet.dynamo.onnx", tmp_path)
    monkeypatch.setattr(tensors, "MAX_FILE_BYTES", (tmp_path / "lenet.dynamo.onnx.data").stat().st_size - 1)
    with pytest.raises(OnnxError, match="external data file 'lenet.dynamo.onnx.data' is larger than the"):
        load_onnx(path)


def test_a_tensor_both_inside_and_beside_is_refused(tmp_path):
    path = copy_fixture("lenet.dynamo.onnx", tmp_path)
    proto = onnx.load(str(path), load_external_data=False)
    t = next(t for t in proto.graph.initializer if t.name == "fc1.weight")
    t.raw_data = b"\0" * 6144
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(OnnxError, match="both in the model and in an external file"):
        load_onnx(path)
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.DEFAULT
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(OnnxError, match="has external_data entries but its data_location is not EXTERNAL"):
        load_onnx(path)


def test_a_data_file_that_was_cut_short_is_refused(tmp_path):
    path = copy_fixture("lenet.dynamo.onnx", tmp_path)
    data = tmp_path / "lenet.dynamo.onnx.data"
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(OnnxError, match="do not fit the 11852 bytes of 'lenet.dynamo.onnx.data'"):
        load_onnx(path)


LOCATIONS = st.sampled_from(["lenet.dynamo.onnx.data", "../lenet.dynamo.onnx.data", "/etc/passwd", "", ".",
                             "..", "lenet.dynamo.onnx", "x/../lenet.dynamo.onnx.data", "link.data",
                             "lenet.dynamo.onnx.data\0", "LENET.DYNAMO.ONNX.DATA", "~", "\u00e9.data"])
NUMBERS = st.one_of(st.integers(0, 20_000).map(str), st.sampled_from(["", "-1", "0x10", "1e3", " 1", "9" * 30]))


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]),
                                st.sampled_from(["location", "offset", "length", "checksum"]),
                                st.one_of(LOCATIONS, NUMBERS, st.none())), min_size=1, max_size=4))
def test_any_external_data_entries_load_or_are_refused_and_open_nothing_else(edits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("m")
    path = copy_fixture("lenet.dynamo.onnx", folder)
    (folder / "link.data").symlink_to(folder / "lenet.dynamo.onnx.data")
    proto = onnx.load(str(path), load_external_data=False)
    for name, key, value in edits:
        tensor = next(t for t in proto.graph.initializer if t.name == name)
        entries = {e.key: e.value for e in tensor.external_data}
        entries[key] = value
        del tensor.external_data[:]
        for k, v in entries.items():
            if v is not None:
                entry = tensor.external_data.add()
                entry.key, entry.value = k, v
    path.write_bytes(proto.SerializeToString())
    opened, real_os_open = [], os.open

    def recording_open(f, *a, **k):
        opened.append(str(f))
        return real_os_open(f, *a, **k)
    os.open = recording_open
    try:
        model, _ = load_onnx(path)
        assert model.forward(np.zeros((1, 1, 28, 28), np.float32), train=False).shape == (1, 47)
    except OnnxError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
    finally:
        os.open = real_os_open
    assert set(opened) <= {str(folder / "lenet.dynamo.onnx.data")}


# -------------------------------------------------------------------------- Reshape, allowzero 1

def edited_fixture(name, edit, tmp_path):
    """The inline or TorchScript fixture ``name`` after ``edit(proto)``, written to tmp_path."""
    proto = onnx.load(str(FIXTURES / name))
    edit(proto)
    path = tmp_path / name
    path.write_bytes(proto.SerializeToString())
    return path


def set_constant(name, value):
    def edit(proto):
        for t in proto.graph.initializer:
            if t.name == name:
                t.CopyFrom(numpy_helper.from_array(np.array(value, np.int64), name))
                return
        n = next(n for n in proto.graph.node if n.op_type == "Constant" and n.output[0] == name)
        n.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(value, np.int64)))
    return edit


def set_attribute(op, attr, value, which=0):
    def edit(proto):
        n = [n for n in proto.graph.node if n.op_type == op][which]
        keep = [a for a in n.attribute if a.name != attr]
        del n.attribute[:]
        n.attribute.extend(keep + ([helper.make_attribute(attr, value)] if value is not None else []))
    return edit


def reshape_shape_name(proto):
    return next(n for n in proto.graph.node if n.op_type == "Reshape").input[1]


@pytest.mark.parametrize("shape, allowzero, fault", [
    ([1, -1], 1, None),
    ([1, 96], 1, None),
    ([-1, 96], 1, None),
    ([0, 96], 0, None),                # 0 copies the batch size
    ([0, 96], 1, "allowzero 1 with a 0 in its shape \\[0, 96\\]"),
    ([0, -1], 1, "allowzero 1 with a 0 in its shape"),
    ([1, -1], 2, "allowzero 2 is neither 0 nor 1"),
    ([1, 95], 1, "reshapes to \\[1, 95\\]"),
])
def test_reshape_with_allowzero_1_where_its_shape_holds_no_0(shape, allowzero, fault, tmp_path):
    def edit(proto):
        set_constant(reshape_shape_name(proto), shape)(proto)
        set_attribute("Reshape", "allowzero", allowzero)(proto)
    path = edited_fixture("lenet.inline.onnx", edit, tmp_path)
    if fault is None:
        model, _ = load_onnx(path)
        assert [type(layer).__name__ for layer in model.layers] == KINDS["lenet"]
    else:
        with pytest.raises(OnnxError, match=fault):
            load_onnx(path)


# -------------------------------------------------- x.view(x.size(0), -1): the view-flatten group

def view_constant(proto, consumer):
    """The name of the constant input of the ``consumer`` op in the view-flatten group."""
    n = next(n for n in proto.graph.node if n.op_type == consumer)
    return n.input[1]


def set_view_constant(consumer, value):
    def edit(proto):
        set_constant(view_constant(proto, consumer), value)(proto)
    return edit


def swap_concat(proto):
    n = next(n for n in proto.graph.node if n.op_type == "Concat")
    n.input[0], n.input[1] = n.input[1], n.input[0]


def reshape_other_tensor(proto):
    """The Reshape takes the Shape's input's producer's input instead: a near miss of the branch."""
    r = next(n for n in proto.graph.node if n.op_type == "Reshape")
    s = next(n for n in proto.graph.node if n.op_type == "Shape")
    producer = next(n for n in proto.graph.node if s.input[0] in n.output)
    r.input[0] = producer.input[0]


def shape_of_other_tensor(proto):
    s = next(n for n in proto.graph.node if n.op_type == "Shape")
    producer = next(n for n in proto.graph.node if s.input[0] in n.output)
    s.input[0] = producer.input[0]


def third_user(proto):
    s = next(n for n in proto.graph.node if n.op_type == "Shape")
    proto.graph.node.append(helper.make_node("Relu", [s.input[0]], ["extra"]))


def unsqueeze_axes_attribute(axes):
    """Unsqueeze as opsets before 13 write it: axes an attribute, no second input."""
    def edit(proto):
        n = next(n for n in proto.graph.node if n.op_type == "Unsqueeze")
        del n.input[1:]
        n.attribute.extend([helper.make_attribute("axes", axes)])
    return edit


def gather_alone(proto):
    """A Gather on the chain outside the group: refused by name."""
    relu = [n for n in proto.graph.node if n.op_type == "Relu"][-1]
    relu.output[0], out = "pre_gather", relu.output[0]
    proto.graph.initializer.extend([numpy_helper.from_array(np.array(0, np.int64), "zero")])
    proto.graph.node.append(helper.make_node("Gather", ["pre_gather", "zero"], [out], axis=1))


@pytest.mark.parametrize("edit, fault", [
    (None, None),
    (unsqueeze_axes_attribute([0]), None),
    (set_view_constant("Concat", [96]), None),                       # x.view(x.size(0), 96)
    (set_view_constant("Gather", 1), "tinynet imports Gather\\(shape, 0, axis=0\\) here"),
    (set_view_constant("Gather", [0]), "tinynet imports Gather\\(shape, 0, axis=0\\) here"),
    (set_attribute("Gather", "axis", 1), "tinynet imports Gather\\(shape, 0, axis=0\\) here"),
    (set_view_constant("Unsqueeze", [1]), "tinynet imports Unsqueeze\\(axes=\\[0\\]\\) here, not axes \\[1\\]"),
    (unsqueeze_axes_attribute([1]), "not axes \\[1\\]"),
    (set_view_constant("Concat", [-2]), "tinynet imports Concat\\(\\[batch\\], \\[-1\\], axis=0\\) here"),
    (set_view_constant("Concat", [95]), "the shape \\(N, -1\\) or \\(N, 96\\)"),
    (set_view_constant("Concat", [-1, 1]), "tinynet imports Concat"),
    (set_attribute("Concat", "axis", 1), "tinynet imports Concat"),
    (swap_concat, "tinynet imports Concat"),
    (set_attribute("Shape", "start", 1), "Shape without start or end"),
    (set_attribute("Reshape", "allowzero", 3), "allowzero 3"),
    (reshape_other_tensor, "feeds 2 nodes|not on the path|takes"),
    (shape_of_other_tensor, "feeds 2 nodes"),
    (third_user, "feeds 3 nodes"),
    (gather_alone, "tinynet imports Gather only within x.view\\(x.size\\(0\\), -1\\)'s Shape, Gather"),
])
def test_the_view_flatten_group_is_a_flatten_and_its_near_misses_are_refused(edit, fault, images, tmp_path):
    path = edited_fixture("lenet.torchscript.onnx", edit or (lambda proto: None), tmp_path)
    if fault is None:
        model, _ = load_onnx(path)
        assert [type(layer).__name__ for layer in model.layers] == KINDS["lenet"]
        reference, _ = load_onnx(FIXTURES / "lenet.inline.onnx")
        assert np.array_equal(logits_of(model, images[:256]), logits_of(reference, images[:256]))
    else:
        with pytest.raises(OnnxError, match=fault) as info:
            load_onnx(path)
        assert str(info.value).startswith(f"{path}: ")


def test_the_view_flatten_group_on_the_input_itself(tmp_path, images):
    """An MLP whose first step is x.view(x.size(0), -1): the input feeds the Shape and the Reshape."""
    model, meta = load_onnx(FIXTURES / "matmul.torchscript.onnx")
    assert meta["architecture"]["layers"][:2] == [
        {"kind": "MaxPool2D", "name": "pool1", "size": 4, "stride": 4}, {"kind": "Flatten", "name": "flatten"}]

    def drop_pool(proto):
        pool = next(n for n in proto.graph.node if n.op_type == "MaxPool")
        for n in proto.graph.node:
            n.input[:] = [proto.graph.input[0].name if i == pool.output[0] else i for i in n.input]
        proto.graph.node.remove(pool)
        w = next(t for t in proto.graph.initializer if t.name == next(
            n for n in proto.graph.node if n.op_type == "MatMul").input[1])
        w.CopyFrom(numpy_helper.from_array(np.zeros((784, 16), np.float32), w.name))
    model, meta = load_onnx(edited_fixture("matmul.torchscript.onnx", drop_pool, tmp_path))
    assert [type(layer).__name__ for layer in model.layers] == ["Flatten", "Dense", "ReLU", "Dense"]


# ------------------------------------------------------------------------------- MatMul and Add

def test_matmul_then_add_is_one_dense_layer_and_a_lone_matmul_has_no_bias():
    model, _ = load_onnx(FIXTURES / "matmul.torchscript.onnx")
    proto = onnx.load(str(FIXTURES / "matmul.torchscript.onnx"))
    consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    matmuls = [n for n in proto.graph.node if n.op_type == "MatMul"]
    add = next(n for n in proto.graph.node if n.op_type == "Add")
    state = model.state_dict()
    assert state["fc1.W"].tobytes() == consts[matmuls[0].input[1]].tobytes()
    assert state["fc1.b"].tobytes() == consts[add.input[1]].tobytes()
    assert state["fc2.W"].tobytes() == consts[matmuls[1].input[1]].tobytes()  # stored (in, out) already
    assert not state["fc2.b"].any()  # nn.Linear(bias=False)


def move_add_bias(shape):
    def edit(proto):
        add = next(n for n in proto.graph.node if n.op_type == "Add")
        t = next(t for t in proto.graph.initializer if t.name == add.input[1])
        t.CopyFrom(numpy_helper.from_array(np.ones(shape, np.float32), t.name))
    return edit


def swap_add(proto):
    add = next(n for n in proto.graph.node if n.op_type == "Add")
    add.input[0], add.input[1] = add.input[1], add.input[0]


def computed_weight(proto):
    m = next(n for n in proto.graph.node if n.op_type == "MatMul")
    m.input[0], m.input[1] = m.input[1], m.input[0]


@pytest.mark.parametrize("edit, fault", [
    (swap_add, None),                        # b + x @ W: the same
    (move_add_bias((1, 16)), None),          # a (1, out) bias broadcasts the same
    (move_add_bias((1,)), "follows the class-prior correction|class-prior correction"),
    (move_add_bias((16, 1)), "class-prior correction"),
    (computed_weight, "MatMul\\(x, W\\) of a constant|neither an initializer nor a Constant"),
    (set_attribute("MatMul", "transB", 1), "attribute 'transB' is not supported"),
])
def test_matmul_and_add_near_misses(edit, fault, tmp_path):
    path = edited_fixture("matmul.torchscript.onnx", edit, tmp_path)
    if fault is None:
        model, _ = load_onnx(path)
        assert [type(layer).__name__ for layer in model.layers] == KINDS["matmul"]
    else:
        with pytest.raises(OnnxError, match=fault):
            load_onnx(path)


# ---------------------------------------------------------------- a fresh export, where torch is

def test_a_fresh_pytorch_export_imports(tmp_path, images):
    """With the PyTorch installed here (whatever its version): its default export (the dynamo
    exporter, external data), the data inside, and the TorchScript exporter with a dynamic batch,
    of a small conv net with padding, strides and a view-flatten; each imports and agrees."""
    torch = pytest.importorskip("torch", reason="a fresh export needs PyTorch (a dev install: "
                                                "pip install torch onnxscript); the committed fixtures "
                                                "test what PyTorch 2.13 wrote")
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.Conv2d(3, 5, 5, padding=2)
            self.fc1, self.fc2 = nn.Linear(5 * 7 * 7, 12), nn.Linear(12, 47)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 2)
            return self.fc2(torch.relu(self.fc1(x.view(x.size(0), -1))))

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.from_numpy(images[:64])
    with torch.no_grad():
        expected = net(x).numpy()
    calls = {"default.onnx": {}, "inline.onnx": {"external_data": False},
             "torchscript.onnx": {"dynamo": False, "input_names": ["input"],
                                  "dynamic_axes": {"input": {0: "N"}}}}
    for name, options in calls.items():
        try:
            torch.onnx.export(net, x[:1], str(tmp_path / name), **options)
        except Exception as e:  # e.g. onnxscript missing for the dynamo exporter
            pytest.skip(f"torch.onnx.export(..., {options}) failed here: {type(e).__name__}: {e}")
        model, meta = load_onnx(tmp_path / name)
        assert relative_difference(logits_of(model, images[:64]), expected) <= TOLERANCE
        assert meta["architecture"] == describe(model)
