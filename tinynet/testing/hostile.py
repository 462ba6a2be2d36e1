"""Hostile inputs: small files that declare far more work than they hold (thin and huge images,
ONNX graphs, array and IDX headers, checkpoints), and :func:`measure`, which runs one of tinynet's
readers on one of them in a fresh Python process and reports its answer, its peak memory above
the process's baseline and its time. tinynet's tests assert the answers (and generous memory
bounds); ``bench/hostile.py`` measures the table in docs/reliability.md; the load benchmarks post
the images to the drawing page. The library never imports this module.
"""

import io
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

# --- images -----------------------------------------------------------------------------------


def png_bytes(image):
    """An image as the bytes of a PNG file, compressed as far as Pillow goes."""
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def stroke_png(width, height):
    """A PNG of ``width`` x ``height`` pixels: white paper, one dark horizontal stroke an eighth
    of the height thick across the middle three quarters. A 16384x64 one is 1.3 kB, a 65536x256
    one 17 kB: the thin images of issue 42, whose framing once asked for 5.3 GB and 40 GB."""
    image = Image.new("L", (width, height), 255)
    ImageDraw.Draw(image).line([(width // 8, height // 2), (width - width // 8, height // 2)],
                               fill=0, width=max(1, height // 8))
    return png_bytes(image)


def cross_png(width, height):
    """A PNG of ``width`` x ``height`` pixels holding a dark cross from corner to corner: the ink
    spans the whole image, so its crop is the largest there can be."""
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    thick = max(1, min(width, height) // 16)
    draw.line([(0, 0), (width - 1, height - 1)], fill=0, width=thick)
    draw.line([(0, height - 1), (width - 1, 0)], fill=0, width=thick)
    return png_bytes(image)


def specks_png(side=3000):
    """A PNG of ``side`` x ``side`` white pixels with two black ones near opposite corners: ink
    enough to find, too little to survive the downsampling (it once raised IndexError: a 500)."""
    image = Image.new("L", (side, side), 255)
    image.putpixel((5, 5), 0)
    image.putpixel((side - 10, side - 10), 0)
    return png_bytes(image)


def line_png(length, vertical=False):
    """A PNG one pixel thick and ``length`` long (at most 16,777,216: tinynet's pixel limit),
    dark from 1/8 to 7/8 of its length: the thinnest image there is."""
    image = Image.new("L", (length, 1), 255)
    ImageDraw.Draw(image).line([(length // 8, 0), (length - length // 8, 0)], fill=0)
    return png_bytes(image.transpose(Image.Transpose.ROTATE_90) if vertical else image)


def declared_png(width, height):
    """The bytes of a PNG whose header declares ``width`` x ``height`` pixels but which holds one
    row of them: a decompression bomb's header, refused from it."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(width + 1))) + chunk(b"IEND", b""))


# name -> a function making the bytes of a PNG file; every one within tinynet's pixel limit
HOSTILE_IMAGES = {
    "16384x64 stroke": lambda: stroke_png(16384, 64),
    "65536x256 stroke": lambda: stroke_png(65536, 256),
    "16777216x1 line": lambda: line_png(1 << 24),
    "16384x1024 stroke": lambda: stroke_png(16384, 1024),
    "1024x16384 cross": lambda: cross_png(1024, 16384),
    "4096x4096 cross": lambda: cross_png(4096, 4096),
    "3000x3000 two specks": specks_png,
}

# --- arrays, IDX files, checkpoints -------------------------------------------------------------


def idx_gzip_bomb(megabytes):
    """The bytes of a gzipped IDX images file whose header says ``megabytes`` MB of 28x28 images,
    all black: deflate squeezes them about 1,000 times (1 GB in 1 MB)."""
    import struct
    import zlib

    count = megabytes * 1_000_000 // 784
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [squeeze.compress(struct.pack(">IIII", 2051, count, 28, 28))]
    block, left = bytes(1 << 20), count * 784
    while left:
        parts.append(squeeze.compress(block[:min(left, len(block))]))
        left -= min(left, len(block))
    return b"".join(parts) + squeeze.flush()


def write_checkpoint_at_bounds(path):
    """Write the largest checkpoint tinynet reads: a LeNet of MAX_CLASSES (10,000) classes with its
    momentum buffers and MAX_EXTRA_BYTES (256 MB) of resume data, all zeros, compressed (a few
    MB on disk). Returns ``path``."""
    import numpy as np

    from ..files.checkpoint import MAX_CLASSES, MAX_EXTRA_BYTES, save_checkpoint
    from ..nn.model import lenet

    model = lenet(MAX_CLASSES, rng=np.random.default_rng(0))
    momentum = {name: np.zeros_like(p) for name, p, _ in model.parameters()}
    save_checkpoint(path, model, {"name": "lenet", "num_classes": MAX_CLASSES},
                    [str(i) for i in range(MAX_CLASSES)], optimizer=momentum,
                    extra={"order": np.zeros(MAX_EXTRA_BYTES // 8, np.int64)}, compress=True)
    return path


def npy_lying_header(shape=(10**6, 10**6, 28)):
    """The bytes of a ``.npy`` file whose header declares ``shape`` of uint8 but holds 100 bytes."""
    header = repr({"descr": "|u1", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(100)


# --- ONNX files -------------------------------------------------------------------------------


def _varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def wire_message(number, payload):
    """The protobuf wire bytes of field ``number`` holding ``payload`` (a length-delimited field:
    an embedded message, bytes or a packed array), as protobuf writes them."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def flood_onnx(megabytes, kind="nodes"):
    """The bytes of an ONNX ``ModelProto`` of about ``megabytes`` MB made of empty messages, 2
    bytes each on the wire: ``"nodes"`` (``graph { node {} node {} ... }``) or ``"attributes"``
    (one node with that many empty attributes). Parsing 16 MB of them took protobuf 1.2-1.5 GB."""
    count = megabytes * 1_000_000 // 2
    if kind == "nodes":
        graph = b"\x0a\x00" * count  # GraphProto.node = 1
    else:
        graph = wire_message(1, b"\x2a\x00" * count)  # NodeProto.attribute = 5
    return wire_message(7, graph)  # ModelProto.graph = 7


def wire_bounds_onnx():
    """The bytes of the costliest ONNX protobuf to parse that passes tinynet's check of the raw
    bytes (onnx/wire.py), within the 128 MB file cap: 99,990 empty nodes, one tensor of 2^24 +
    2^20 - 100 one-byte int64 values, and one of 108 MB of raw bytes."""
    from ..onnx.common import MAX_FILE_BYTES
    from ..onnx.wire import MAX_MESSAGES, MAX_VALUES

    nodes = b"\x0a\x00" * (MAX_MESSAGES - 10)  # GraphProto.node = 1
    packed = wire_message(5, wire_message(7, b"\x01" * (MAX_VALUES - 100)))  # initializer { int64_data }
    room = MAX_FILE_BYTES - len(nodes) - len(packed) - 100
    raw = wire_message(5, wire_message(9, bytes(room)))  # initializer { raw_data }
    return wire_message(7, nodes + packed + raw)


def wide_conv_onnx(channels=925, pads=2000, classes=10):
    """The bytes of an ONNX graph of a few kB (44 with the defaults) that declares enormous work:
    a 1x1 Conv of ``channels`` channels with ``pads`` on every side (each 28x28 image becomes
    ``channels`` maps of 4028x4028: 15 billion values, 60 GB), a MaxPool over the whole map,
    Flatten and a Gemm to ``classes`` logits. Every tensor and side is within tinynet's bounds.
    Needs the onnx package."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    side = 28 + 2 * pads
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("W", (channels, 1, 1, 1)), ("b", (channels,)),
                                   ("G", (classes, channels)), ("c", (classes,)))]
    nodes = [helper.make_node("Conv", ["image", "W", "b"], ["conv"], kernel_shape=[1, 1], pads=[pads] * 4),
             helper.make_node("MaxPool", ["conv"], ["pool"], kernel_shape=[side, side]),
             helper.make_node("Flatten", ["pool"], ["flat"]),
             helper.make_node("Gemm", ["flat", "G", "c"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                            ["N", 1, 28, 28])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
                              weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def largest_onnx(channels=640, classes=181):
    """The bytes of the largest ONNX model tinynet imports (67 MB): Conv 5x5 to ``channels`` maps,
    Relu, MaxPool 2, Flatten, Gemm to ``classes`` logits: 16.7 million float32 weights, just within
    the 2^24 of all tensors together, and 1.03 million values per image, just within 2^20.
    Needs the onnx package."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    features = channels * 12 * 12
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal(shape) * 0.01).astype(np.float32), name)
               for name, shape in (("W", (channels, 1, 5, 5)), ("b", (channels,)),
                                   ("G", (classes, features)), ("c", (classes,)))]
    nodes = [helper.make_node("Conv", ["image", "W", "b"], ["conv"], kernel_shape=[5, 5]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["pool"], ["flat"]),
             helper.make_node("Gemm", ["flat", "G", "c"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "largest", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                               ["N", 1, 28, 28])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
                              weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def load_and_predict(path, count=1):
    """Load a model file (``.npz`` or ``.onnx``) and predict ``count`` blank-ish images with it:
    the probabilities (what a user's first prediction costs, loading included)."""
    import numpy as np

    from ..predict.predictor import Predictor

    images = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    with Predictor.from_checkpoint(path, threads=1) as predictor:
        return predictor.predict_proba(images)


def answer_body(path):
    """What the drawing page's server does with one ``POST /api/predict`` whose body is the file at
    ``path`` (decoding, preprocessing, the forward and backward pass, the answer's JSON), without
    the socket: ``"200 <the top character and its probability>"``, or the error's status and
    message."""
    from ..files.checkpoint import load_checkpoint
    from ..predict.predictor import BUNDLED_MODEL
    from ..web.draw import MAX_BODY_BYTES, PageServer, RequestError

    model, meta, _, _ = load_checkpoint(BUNDLED_MODEL)
    server = PageServer(("127.0.0.1", 0), model, meta["classes"], BUNDLED_MODEL.name)
    try:
        with open(path, "rb") as f:
            body = f.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return "413 (refused from its Content-Length)"
        return f"200 {server.predict(body)['top_k'][0]}"
    except RequestError as e:
        return f"{int(e.status)} {e.message}"
    finally:
        server.server_close()


# --- measuring --------------------------------------------------------------------------------

_CHILD = r"""
import importlib, json, resource, sys, time

spec = json.loads(sys.argv[1])
for name in spec["preload"]:
    importlib.import_module(name)
module, _, name = spec["call"].partition(":")
function = getattr(importlib.import_module(module), name)
page = resource.getpagesize()


def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def describe(result):
    if isinstance(result, str):
        return result[:300]
    if hasattr(result, "shape") and hasattr(result, "dtype"):
        return f"array {tuple(result.shape)} {result.dtype}"
    if isinstance(result, tuple):
        return "(" + ", ".join(describe(r) for r in result) + ")"
    return type(result).__name__


if spec["limit"]:  # a safety net: a runaway allocation fails instead of taking the machine
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + spec["limit"], resource.RLIM_INFINITY))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from what the process holds now
base = status("VmRSS")
started = time.perf_counter()
try:
    answer = describe(function(*spec["args"]))
except BaseException as e:
    answer = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
seconds = time.perf_counter() - started
print(json.dumps({"answer": answer, "peak": status("VmHWM") - base, "seconds": seconds}))
"""


CAN_MEASURE = Path("/proc/self/clear_refs").exists()  # Linux: measure() needs to reset the peak


def measure(call, *args, preload=(), limit=8 << 30, timeout=600):
    """Run ``call`` (``"module:function"``) on ``args`` (JSON values: give paths as strings) in a
    fresh Python process (Linux): ``{"answer", "peak", "seconds"}``, its result's description or
    its exception as ``"Type: message"``, the growth of its peak resident memory (bytes) above what
    the process held before the call, and the call's wall time. ``preload``: modules imported
    before measuring (so their import does not count); ``limit``: bytes of address space the call
    may add (beyond it allocations fail: a safety net when measuring code that once ran away)."""
    spec = json.dumps({"call": call, "args": list(args), "preload": list(preload), "limit": limit})
    done = subprocess.run([sys.executable, "-c", _CHILD, spec], capture_output=True, text=True,
                          timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"answer": f"process died (status {done.returncode}): {done.stderr.strip()[-400:]}",
                "peak": None, "seconds": None}
    return json.loads(lines[-1])
