"""Importing what PyTorch 2.x writes (tinynet/onnx/), with the files PyTorch 2.13 exported in
tests/fixtures/onnx/ (their script, make_torch_fixtures.py, says how), so that these tests need no
PyTorch: Reshape with allowzero 1; the Shape-Gather-Unsqueeze-Concat-Reshape flatten; MatMul + Add
as a dense layer.

Agreement is ``max |a - b| / max |b|`` over all the logits of all the images, as in test_onnx.py.
"""

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX import needs the onnx package (tinynet[onnx])")
ort = pytest.importorskip("onnxruntime", reason="checking imports needs onnxruntime (tinynet[onnx])")
from onnx import helper, numpy_helper  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from tinynet.datasets.idx import to_float  # noqa: E402
from tinynet.datasets.load import load_sample  # noqa: E402
from tinynet.onnx import OnnxError, load_onnx  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "onnx"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
FILES = sorted(MANIFEST["files"])
TOLERANCE = 1e-5
KINDS = {  # the layers each fixture network comes back as
    "lenet": ["Conv2D", "ReLUMaxPool2D", "Conv2D", "ReLUMaxPool2D", "Flatten", "Dense", "ReLU", "Dense"],
    "mlp": ["Flatten", "Dense", "ReLU", "Dense"],
    "strided": ["Conv2D", "ReLU", "Conv2D", "ReLU", "Conv2D", "ReLU", "Flatten", "Dense"],
    "matmul": ["MaxPool2D", "Flatten", "Dense", "ReLU", "Dense"],
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


def logits_of(model, x, batch=512):
    return np.concatenate([model.forward(x[i:i + batch], train=False).copy() for i in range(0, len(x), batch)])


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
