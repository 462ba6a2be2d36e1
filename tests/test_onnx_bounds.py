"""What reading an ONNX file may cost (issue 42): the protobuf's bytes are checked before protobuf
parses them (tinynet/onnx/wire.py), and the values and FLOPs a graph declares for one image are
bounded as it is walked, before anything is built (tinynet/onnx/work.py)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX import needs the onnx package (tinynet[onnx])")

from tinynet.nn.model import lenet  # noqa: E402
from tinynet.onnx import OnnxError, load_onnx, save_onnx  # noqa: E402
from tinynet.onnx import common, importer, wire, work  # noqa: E402
from tinynet.testing.hostile import CAN_MEASURE, flood_onnx, measure, wide_conv_onnx, wire_message  # noqa: E402

CLASSES = [str(i) for i in range(47)]


@pytest.fixture
def lenet_file(tmp_path):
    path = tmp_path / "lenet.onnx"
    save_onnx(lenet(47, rng=np.random.default_rng(0)), CLASSES, path)
    return path


def test_a_graph_declaring_enormous_work_is_refused_before_building(tmp_path, monkeypatch):
    """Issue 42's 44 kB graph (a 1x1 Conv of 925 channels with pads 2000, a MaxPool over the whole
    map, a Gemm): every tensor and side within bounds, so it was accepted, though one image needs
    15 billion values (60 GB). Now refused at the Conv, naming it and the count, without building
    a layer."""
    path = tmp_path / "wide.onnx"
    path.write_bytes(wide_conv_onnx())
    assert 40_000 < path.stat().st_size < 50_000
    monkeypatch.setattr(importer, "build", lambda *a: pytest.fail("built a model"))
    with pytest.raises(OnnxError, match=r"wide\.onnx: node 0 \(Conv\): would make the graph hold "
                                        r"15,024,149,984 values for one image .* more than the 1,048,576"):
        load_onnx(path)


def test_the_flops_of_one_image_are_bounded_too(lenet_file, monkeypatch):
    """With the FLOP bound just under a LeNet's 4.6 million, its import stops at the layer that
    passes it (fc1's Gemm: everything before it comes to 3.8 million)."""
    monkeypatch.setattr(work, "MAX_IMAGE_FLOPS", 4_000_000)
    with pytest.raises(OnnxError, match=r"\(Gemm 'fc1'\): would make the graph take 4,595,200 floating"):
        load_onnx(lenet_file)


def test_a_lenets_work_per_image(lenet_file, monkeypatch):
    """The figures docs and docstrings quote: a 47-class LeNet holds 74,007 values and takes
    4,642,700 FLOPs per image, far within both bounds."""
    totals = []
    add = work.Work.add

    def recording(self, where, spec, shape):
        add(self, where, spec, shape)
        totals.append((self.values, self.flops))

    monkeypatch.setattr(work.Work, "add", recording)
    load_onnx(lenet_file)
    assert totals[-1] == (74_007, 4_642_700)
    assert totals[-1][0] * 14 < work.MAX_IMAGE_VALUES and totals[-1][1] * 230 < work.MAX_IMAGE_FLOPS


@pytest.mark.skipif(not CAN_MEASURE, reason="measuring peak memory needs Linux's /proc")
@pytest.mark.parametrize("kind", ["nodes", "attributes"])
def test_a_flood_of_empty_messages_is_refused_before_protobuf_parses_it(tmp_path, kind):
    """16 MB of empty nodes, or of one node's empty attributes (2 bytes each on the wire): protobuf's
    parser took 1.2-1.5 GB for them (6.2 GB for 64 MB; the file cap was 256 MB), before any check
    of tinynet's ran. Now the bytes are walked first: refused, in a fresh process whose peak grows
    by less than 100 MB."""
    path = tmp_path / f"{kind}.onnx"
    path.write_bytes(flood_onnx(16, kind))
    got = measure("tinynet.onnx.importer:load_onnx", str(path), preload=("onnx", "tinynet.onnx.importer"),
                  limit=4 << 30)
    assert "more than 100000 protobuf messages" in got["answer"], got
    assert "refused before parsing it" in got["answer"] and got["peak"] < 100 << 20, got


def test_the_wire_walk_counts_fields_values_and_depth(lenet_file):
    """A tinynet LeNet's file is far within every bound; unpacked repeated values count one field
    each, packed ones by their values; nesting and malformed bytes are refused."""
    budget = wire._Budget()
    data = lenet_file.read_bytes()
    wire._walk(memoryview(data), 0, len(data), onnx.ModelProto.DESCRIPTOR, 0, budget)
    used = (wire.MAX_MESSAGES - budget.messages, wire.MAX_FIELDS - budget.fields, wire.MAX_VALUES - budget.values)
    assert used[0] < 100 and used[1] < 400 and used[2] < 100, used
    dims = b"\x08\x01" * (wire.MAX_FIELDS + 1)  # TensorProto.dims, unpacked
    initializer = wire_message(7, wire_message(5, dims))
    with pytest.raises(common.Refused, match="more than 200000 protobuf fields"):
        wire.check_wire(initializer, onnx.ModelProto.DESCRIPTOR)
    packed = wire_message(7, wire_message(5, wire_message(7, b"\x01" * (wire.MAX_VALUES + 1))))  # int64_data
    with pytest.raises(common.Refused, match="values in repeated fields"):
        wire.check_wire(packed, onnx.ModelProto.DESCRIPTOR)
    with pytest.raises(common.Refused, match="runs past the end"):
        wire.check_wire(wire_message(7, b"\x0a\x05ab"), onnx.ModelProto.DESCRIPTOR)
    with pytest.raises(common.Refused, match="wire type 3"):
        wire.check_wire(b"\x0b", onnx.ModelProto.DESCRIPTOR)


def test_the_file_cap_fits_the_largest_model_tinynet_imports():
    """The cap holds the largest model the tensor bound allows (float32 weights) twice over, and
    is no longer a multiple of it: 128 MB for 16.8 million weights."""
    largest = common.MAX_TENSOR_ELEMENTS * 4
    assert largest * 2 == common.MAX_FILE_BYTES == 128 << 20
