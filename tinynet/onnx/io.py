"""ONNX import: an ONNX graph of a few operators as a tinynet model (:func:`load_onnx`). Export is
in ``export``, what both share in ``common``; the export functions are imported here too.

Import (:func:`load_onnx`) reads a plain chain of Conv, Relu, MaxPool, Flatten or Reshape (to
(N, features)), Gemm, optionally Sub/Add of a constant after the last Gemm (a class-prior
correction), Dropout/Identity (skipped) and a final Softmax or LogSoftmax (dropped: tinynet's
logits are its input): tinynet's own export, or a LeNet as ``torch.onnx.export`` writes it (Conv with
bias, Gemm with transB = 1, Flatten or Reshape with a constant shape). The file is read once, with
its size bounded; every tensor must be stored inside it (external data is refused: nothing outside
the file is read), its declared size is checked against the bytes that hold it, and anything else
is refused with an :class:`OnnxError` naming the file and the fault.

The onnx package is optional (``pip install "tinynet[onnx]"``): it is imported only inside these
functions, so the rest of tinynet never needs it.
"""

import json
import math
from pathlib import Path

import numpy as np

from ..files.checkpoint import MAX_CLASSES
from ..nn.kernels import conv_output_size
from ..nn.layers import Conv2D, Dense, Dropout, Flatten, LogitAdjustment, MaxPool2D, ReLU, ReLUMaxPool2D
from ..nn.model import Sequential, lenet
from .common import (IMAGE_SHAPE, MAX_FILE_BYTES, MAX_METADATA_CHARS, MAX_NODES, MAX_SIDE,
                     MAX_TENSOR_ELEMENTS, MAX_TENSORS, MIN_IMPORT_OPSET, NEEDS_ONNX, ONNX_INPUT, OnnxError,
                     require_onnx)
from .export import export_onnx, save_onnx, to_onnx  # noqa: F401 (callers import them from here)


# ------------------------------------------------------------------------------------------- import

def load_onnx(path, classes=None):
    """Read an ONNX file as a tinynet model: returns ``(model, metadata)``.

    ``model`` is a ``Sequential`` (a ``lenet`` with its layer names, its dropout and class prior when
    the graph is one, else layers named conv1, pool1, fc1, ... in graph order). ``metadata`` holds
    ``classes`` (the file's ``classes`` metadata, else ``classes``, else "0".."K-1"),
    ``architecture`` (the ``build_model`` description, or None when the graph is not one
    ``build_model`` makes: such a model predicts and trains, but cannot be saved as a checkpoint),
    ``input`` and the file's ``metadata_props`` as ``onnx_metadata``.
    Raises :class:`OnnxError` naming the file and the fault for anything else.
    """
    path = Path(path)
    try:
        onnx = require_onnx()
    except ImportError:
        raise OnnxError(f"{path}: reading an ONNX model {NEEDS_ONNX}") from None
    data = _read_bounded(path)
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError (and its C implementation's relatives)
        raise OnnxError(f"{path}: not an ONNX model (its protobuf does not parse: "
                        f"{' '.join(str(e).split()) or type(e).__name__})") from None
    try:
        return _Importer(onnx, proto, path).load(classes)
    except _Refused as e:
        raise OnnxError(f"{path}: {e}") from None


class _Refused(Exception):
    """A fault in the file; :func:`load_onnx` adds the file's name."""


def _read_bounded(path):
    if not path.exists():
        raise OnnxError(f"{path}: no such file")
    if not path.is_file():
        raise OnnxError(f"{path}: is not a file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise OnnxError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise OnnxError(f"{path}: larger than the {MAX_FILE_BYTES} bytes an ONNX model may have here")
    if not data:
        raise OnnxError(f"{path}: empty file, not an ONNX model")
    return data


# ONNX op -> {attribute: default}; any other attribute is refused
_ATTRIBUTES = {
    "Conv": {"kernel_shape": None, "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1],
             "group": 1, "auto_pad": b"NOTSET"},
    "MaxPool": {"kernel_shape": None, "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1],
                "ceil_mode": 0, "storage_order": 0, "auto_pad": b"NOTSET"},
    "Relu": {}, "Identity": {}, "Dropout": {"ratio": 0.5, "seed": 0},
    "Flatten": {"axis": 1}, "Reshape": {"allowzero": 0},
    "Gemm": {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
    "Add": {}, "Sub": {}, "Softmax": {"axis": None}, "LogSoftmax": {"axis": None},
}
_HEADS = ("Softmax", "LogSoftmax")


class _Importer:
    """One ONNX ``ModelProto`` checked and translated to tinynet layers (:func:`load_onnx`)."""

    def __init__(self, onnx, proto, path):
        self.onnx, self.proto, self.path = onnx, proto, path
        self.elements = 0  # tensor elements read so far, bounded by MAX_TENSOR_ELEMENTS

    # --- tensors ---------------------------------------------------------------------------------

    def array(self, tensor, where):
        """A ``TensorProto`` as a NumPy array, after checking where its data lives, its type and that
        its declared shape matches the bytes that hold it."""
        TP = self.onnx.TensorProto
        if tensor.data_location == TP.EXTERNAL or len(tensor.external_data):
            raise _Refused(f"{where} keeps its data in an external file; tinynet reads nothing "
                           f"outside the model file (save the model with its weights inside)")
        if tensor.HasField("segment"):
            raise _Refused(f"{where} is a segment of a tensor, which tinynet does not read")
        dtypes = {TP.FLOAT: (np.dtype("<f4"), "float_data"), TP.INT64: (np.dtype("<i8"), "int64_data"),
                  TP.BOOL: (np.dtype("?"), "int32_data")}
        if tensor.data_type not in dtypes:
            name = TP.DataType.Name(tensor.data_type) if tensor.data_type in TP.DataType.values() \
                else str(tensor.data_type)
            raise _Refused(f"{where} has element type {name}; tinynet imports float32 weights "
                           f"(and int64 shapes, bool flags)")
        dims = list(tensor.dims)
        if len(dims) > 8 or any(d < 0 for d in dims):
            raise _Refused(f"{where} has an invalid shape {dims}")
        count = math.prod(dims)  # Python ints: a huge shape cannot wrap around to a small count
        if count > MAX_TENSOR_ELEMENTS or self.elements + count > MAX_TENSOR_ELEMENTS:
            raise _Refused(f"{where} declares shape {dims} ({count} elements): more than the "
                           f"{MAX_TENSOR_ELEMENTS} tinynet reads from one model")
        self.elements += count
        dtype, field = dtypes[tensor.data_type]
        if tensor.raw_data:
            if len(tensor.raw_data) != count * dtype.itemsize:
                raise _Refused(f"{where} declares shape {dims} but holds {len(tensor.raw_data)} bytes "
                               f"(expected {count * dtype.itemsize})")
            values = np.frombuffer(tensor.raw_data, dtype=dtype)
        else:
            stored = getattr(tensor, field)
            if len(stored) != count:
                raise _Refused(f"{where} declares shape {dims} but holds {len(stored)} values")
            values = np.array(stored, dtype=dtype)
        values = values.astype(dtype.newbyteorder("="), copy=True).reshape(dims)
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            raise _Refused(f"{where} holds NaN or infinite values")
        return values

    def constants(self, graph):
        """{name: array} of the initializers and Constant nodes' outputs."""
        if len(graph.sparse_initializer):
            raise _Refused("holds sparse initializers, which tinynet does not import")
        if len(graph.initializer) > MAX_TENSORS:
            raise _Refused(f"holds {len(graph.initializer)} initializers, more than {MAX_TENSORS}")
        found = {}
        for t in graph.initializer:
            if t.name in found:
                raise _Refused(f"initializer {t.name!r} is defined twice")
            found[t.name] = self.array(t, f"initializer {t.name!r}")
        for n in graph.node:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                if len(n.output) != 1 or len(n.attribute) != 1 or n.attribute[0].name != "value":
                    raise _Refused(f"Constant node {n.name!r}: tinynet reads Constant nodes with one "
                                   f"'value' tensor")
                if n.output[0] in found:
                    raise _Refused(f"tensor {n.output[0]!r} is defined twice")
                found[n.output[0]] = self.array(n.attribute[0].t, f"Constant {n.output[0]!r}")
        return found

    # --- the graph -------------------------------------------------------------------------------

    def load(self, classes):
        proto = self.proto
        if not proto.HasField("graph"):
            raise _Refused("not an ONNX model (it has no graph)")
        graph = proto.graph
        if len(graph.node) > MAX_NODES:
            raise _Refused(f"has {len(graph.node)} nodes, more than the {MAX_NODES} tinynet imports")
        self.opset = self.check_opset()
        self.consts = self.constants(graph)
        source = self.check_input(graph)
        specs, logits, head = self.walk(graph, source)
        outputs = [o.name for o in graph.output]
        if not outputs or not set(outputs) <= {logits, head}:
            raise _Refused(f"graph outputs {outputs}: tinynet imports a graph whose outputs are its "
                           f"logits and/or their softmax")
        props = self.metadata()
        model, architecture = self.build(specs, props)
        K = _out_features(model)
        labels = self.labels(props, classes, K)
        return model, {"classes": labels, "architecture": architecture, "input": _stated_input(props),
                       "onnx_metadata": props}

    def check_opset(self):
        versions = {o.domain: o.version for o in self.proto.opset_import}
        version = versions.get("", versions.get("ai.onnx"))
        newest = self.onnx.defs.onnx_opset_version()
        if version is None:
            raise _Refused("declares no version of the standard ONNX operators (opset_import)")
        if not MIN_IMPORT_OPSET <= version <= newest:
            raise _Refused(f"uses opset {version}; tinynet imports opsets {MIN_IMPORT_OPSET} to {newest}")
        return version

    def check_input(self, graph):
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise _Refused(f"has {len(inputs)} inputs ({', '.join(i.name for i in inputs) or 'none'}); "
                           f"tinynet imports a model with one input image batch")
        x = inputs[0]
        t = x.type.tensor_type if x.type.HasField("tensor_type") else None
        if t is None or t.elem_type != self.onnx.TensorProto.FLOAT:
            raise _Refused(f"input {x.name!r} is not a float32 tensor")
        self.batch = None  # the input's fixed batch size, if it has one
        if t.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            self.batch = dims[0] if dims and dims[0] else None
            if len(dims) != 4 or any(d is not None and d != want for d, want in zip(dims[1:], IMAGE_SHAPE)):
                shown = ["?" if d is None else d for d in dims]
                raise _Refused(f"input {x.name!r} has shape {shown}; tinynet models take "
                               f"(N, {', '.join(map(str, IMAGE_SHAPE))}) images")
        return x.name

    def metadata(self):
        props = {}
        for p in self.proto.metadata_props:
            if len(p.key) + len(p.value) > MAX_METADATA_CHARS:
                raise _Refused(f"metadata entry {p.key[:40]!r} is implausibly large")
            props[p.key] = p.value
        return props

    def labels(self, props, classes, K):
        if "classes" in props:
            try:
                labels = json.loads(props["classes"])
            except ValueError as e:
                raise _Refused(f"metadata 'classes' is not JSON ({e})") from None
            if not isinstance(labels, list) or not all(isinstance(c, str) for c in labels):
                raise _Refused("metadata 'classes' is not a list of strings")
            if len(labels) != K:
                raise _Refused(f"metadata 'classes' names {len(labels)} classes but the model has "
                               f"{K} outputs")
            return labels
        if classes is not None:
            labels = [str(c) for c in classes]
            if len(labels) != K:
                raise _Refused(f"{len(labels)} classes were given but the model has {K} outputs")
            return labels
        return [str(i) for i in range(K)]

    def walk(self, graph, source):
        """Follow the single path of nodes from the input: ``(specs, logits name, head name)``, with
        a spec per layer: ``(op, attributes, constant inputs)``; ``head``: the Softmax's output, if
        there is one."""
        consumers, producers = {}, {}
        for i, n in enumerate(graph.node):
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                continue
            where = f"node {i} ({n.op_type}{' ' + repr(n.name) if n.name else ''})"
            if n.domain not in ("", "ai.onnx") or n.op_type not in _ATTRIBUTES:
                op = f"{n.domain}::{n.op_type}" if n.domain else n.op_type
                raise _Refused(f"{where}: operator {op} is not one tinynet imports "
                               f"({', '.join(sorted(_ATTRIBUTES))})")
            for name in n.input:
                if name and name not in self.consts:
                    consumers.setdefault(name, []).append(i)
            for name in n.output:
                if name in producers or name in self.consts or name == source:
                    raise _Refused(f"{where}: tensor {name!r} is defined twice")
                producers[name] = i
        specs, seen, current, head = [], set(), source, None
        shape = IMAGE_SHAPE
        while consumers.get(current):
            users = consumers[current]
            if len(users) != 1:
                raise _Refused(f"tensor {current!r} feeds {len(users)} nodes; tinynet imports a "
                               f"plain chain of layers")
            i = users[0]
            if i in seen:
                raise _Refused(f"the graph has a cycle through node {i}")
            seen.add(i)
            n = graph.node[i]
            where = f"node {i} ({n.op_type}{' ' + repr(n.name) if n.name else ''})"
            attrs = self.attributes(n, where)
            data = [name for name in n.input if name and name not in self.consts]
            if data != [current]:
                raise _Refused(f"{where}: takes {data} as computed inputs; tinynet imports layers of "
                               f"one input with constant weights")
            outputs = [name for name in n.output if name]
            if not outputs:
                raise _Refused(f"{where}: has no output")
            for extra in outputs[1:]:  # MaxPool's indices, Dropout's mask: allowed only when unused
                if extra in consumers or extra in {o.name for o in graph.output}:
                    raise _Refused(f"{where}: its second output {extra!r} is used; tinynet "
                                   f"imports only the first")
            if n.op_type in _HEADS:
                axis = attrs["axis"] if attrs["axis"] is not None else (-1 if self.opset >= 13 else 1)
                if len(shape) != 1 or axis not in (1, -1):
                    raise _Refused(f"{where}: tinynet imports a softmax over the classes (axis 1) "
                                   f"of (N, K) logits")
                if consumers.get(outputs[0]):
                    raise _Refused(f"{where}: its output feeds further nodes; the softmax must be last")
                head = outputs[0]
                break
            if specs and specs[-1][0] == "prior":
                raise _Refused(f"{where}: follows the class-prior correction; tinynet imports it only "
                               f"as the last layer")
            spec, shape = self.layer(n, attrs, where, shape)
            if spec is not None:
                specs.append(spec)
            current = outputs[0]
        skipped = [i for i, n in enumerate(graph.node) if i not in seen
                   and not (n.op_type == "Constant" and n.domain in ("", "ai.onnx"))]
        if skipped:
            n = graph.node[skipped[0]]
            raise _Refused(f"node {skipped[0]} ({n.op_type}) is not on the path from the input to "
                           f"the output; tinynet imports a plain chain of layers")
        if shape is None or len(shape) != 1:
            raise _Refused(f"the graph ends with a {shape} feature map per image; tinynet imports "
                           f"models that end with (N, K) logits")
        if not any(s[0] == "dense" for s in specs):
            raise _Refused("has no Gemm (dense) layer: tinynet imports models that end with one")
        if not specs or specs[0][0] != "conv":
            raise _Refused("does not start with a Conv; tinynet imports convolutional networks "
                           "(its drawing page and --explain look at the first convolution)")
        if not 1 <= shape[0] <= MAX_CLASSES:
            raise _Refused(f"has {shape[0]} outputs; tinynet imports models of 1 to {MAX_CLASSES} classes")
        return specs, current, head

    def attributes(self, node, where):
        """The node's attributes as Python values, defaults filled in; unknown ones refused."""
        allowed = _ATTRIBUTES[node.op_type]
        values = dict(allowed)
        AP = self.onnx.AttributeProto
        for a in node.attribute:
            if a.name not in allowed:
                raise _Refused(f"{where}: attribute {a.name!r} is not supported")
            if a.type == AP.INT:
                values[a.name] = a.i
            elif a.type == AP.INTS:
                if len(a.ints) > 16:
                    raise _Refused(f"{where}: attribute {a.name!r} has {len(a.ints)} values")
                values[a.name] = list(a.ints)
            elif a.type == AP.FLOAT:
                values[a.name] = a.f
            elif a.type == AP.STRING:
                values[a.name] = a.s
            else:
                raise _Refused(f"{where}: attribute {a.name!r} has an unsupported type")
        return values

    def const(self, node, index, where, what):
        if len(node.input) <= index or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.consts:
            raise _Refused(f"{where}: its {what} {name!r} is neither an initializer nor a Constant")
        return self.consts[name]

    def layer(self, n, attrs, where, shape):
        """``(spec or None, shape after it)`` for one node; see :meth:`walk`."""
        op = n.op_type

        def need(condition, message):
            if not condition:
                raise _Refused(f"{where}: {message}")

        def window(attrs, what):
            k = attrs["kernel_shape"]
            need(isinstance(k, list) and len(k) == 2 and k[0] == k[1] and k[0] >= 1,
                 f"{what} kernel_shape {k}: tinynet imports square 2-D kernels")
            s = attrs["strides"]
            need(isinstance(s, list) and len(s) == 2 and s[0] == s[1] and 1 <= s[0] <= MAX_SIDE,
                 f"strides {s}: tinynet imports equal strides from 1 to {MAX_SIDE}")
            p = attrs["pads"]
            need(attrs["auto_pad"] in (b"NOTSET", b"VALID"),
                 f"auto_pad {attrs['auto_pad']!r} is not supported")
            need(isinstance(p, list) and len(p) == 4 and len(set(p)) == 1 and 0 <= p[0] <= MAX_SIDE,
                 f"pads {p}: tinynet imports the same padding on every side")
            if attrs["auto_pad"] == b"VALID":
                need(p[0] == 0, "auto_pad VALID with pads")
            need(attrs["dilations"] == [1, 1], f"dilations {attrs['dilations']} are not supported")
            return k[0], s[0], p[0]

        def spatial(shape, k, s, p, what):
            need(len(shape) == 3, f"{what} needs a (C, H, W) input, but gets {shape}")
            oh, ow = (conv_output_size(x, k, s, p) for x in shape[1:])
            need(oh >= 1 and ow >= 1, f"its {k}x{k} window does not fit its {shape} input")
            need(oh <= MAX_SIDE and ow <= MAX_SIDE, f"its output would be {oh}x{ow}, too large")
            return oh, ow

        if op == "Conv":
            W = self.const(n, 1, where, "weight")
            if attrs["kernel_shape"] is None and W is not None:  # optional: the weight's shape says it
                attrs["kernel_shape"] = list(W.shape[2:])
            k, s, p = window(attrs, "Conv")
            need(attrs["group"] == 1, f"group {attrs['group']}: tinynet imports ungrouped convolutions")
            need(W is not None and W.dtype == np.float32 and W.ndim == 4 and W.shape[2:] == (k, k),
                 f"weight must be float32 (C_out, C_in, {k}, {k})")
            c_out, c_in = W.shape[:2]
            need(len(shape) == 3 and shape[0] == c_in,
                 f"weight takes {c_in} channels, but its input has shape {shape}")
            b = self.const(n, 2, where, "bias")
            if b is None:
                b = np.zeros(c_out, np.float32)
            need(b.dtype == np.float32 and b.shape == (c_out,), f"bias must be float32 ({c_out},)")
            oh, ow = spatial(shape, k, s, p, "Conv")
            return ("conv", {"stride": s, "padding": p}, (W, b)), (c_out, oh, ow)
        if op == "MaxPool":
            k, s, p = window(attrs, "MaxPool")
            need(p == 0, "padded max-pooling is not supported")
            need(attrs["ceil_mode"] == 0, "ceil_mode 1 is not supported")
            need(attrs["storage_order"] == 0, "storage_order 1 is not supported")
            oh, ow = spatial(shape, k, s, 0, "MaxPool")
            return ("pool", {"size": k, "stride": s}, ()), (shape[0], oh, ow)
        if op == "Relu":
            return ("relu", {}, ()), shape
        if op in ("Identity", "Dropout"):  # the identity at evaluation, which is what tinynet runs
            training = self.const(n, 2, where, "training_mode") if op == "Dropout" else None
            need(training is None or not training.any(),
                 "a Dropout in training mode is not an inference graph")
            return None, shape
        if op == "Flatten":
            if len(shape) == 1:
                need(attrs["axis"] in (1, -1), f"axis {attrs['axis']} of an (N, F) input")
                return None, shape
            need(attrs["axis"] == 1, f"axis {attrs['axis']}: tinynet imports Flatten(axis=1)")
            return ("flatten", {}, ()), (math.prod(shape),)
        if op == "Reshape":
            target = self.const(n, 1, where, "shape")
            need(target is not None and target.dtype == np.int64 and target.shape == (2,),
                 "tinynet imports a Reshape to (N, features) with a constant shape")
            need(attrs["allowzero"] == 0, "allowzero 1 is not supported")
            F = math.prod(shape)
            first, second = (int(v) for v in target)
            batch = first in (0, self.batch)  # 0 copies the batch size; a fixed batch may be spelled out
            need(batch and second in (F, -1) or first == -1 and second == F,
                 f"reshapes to {[first, second]}; tinynet imports a reshape of "
                 f"(N, {', '.join(map(str, shape))}) "
                 f"to (N, {F})")
            return (("flatten", {}, ()) if len(shape) > 1 else None), (F,)
        if op == "Gemm":
            need(attrs["alpha"] == 1.0 and attrs["beta"] == 1.0 and attrs["transA"] == 0,
                 "tinynet imports Gemm with alpha 1, beta 1 and transA 0")
            B = self.const(n, 1, where, "weight")
            need(B is not None and B.dtype == np.float32 and B.ndim == 2, "weight must be a float32 matrix")
            W = np.ascontiguousarray(B.T) if attrs["transB"] else B
            need(len(shape) == 1 and W.shape[0] == shape[0],
                 f"takes {W.shape[0]} features, but its input has shape {shape}")
            C = self.const(n, 2, where, "bias")
            out = W.shape[1]
            if C is None:
                C = np.zeros(out, np.float32)
            need(C.dtype == np.float32 and C.shape in ((out,), (1, out)), f"bias must be float32 ({out},)")
            return ("dense", {}, (W, C.reshape(out))), (out,)
        if op in ("Sub", "Add"):
            data_first = n.input[0] not in self.consts
            need(op == "Add" or data_first, "tinynet imports Sub(logits, constant)")
            c = self.const(n, 1 if data_first else 0, where, "constant")
            need(len(shape) == 1 and c is not None and c.dtype == np.float32
                 and c.shape in (shape, (1,) + shape),
                 f"tinynet imports {op} of a constant of shape ({shape[0] if shape else '?'},) "
                 f"after the last Gemm (a class-prior correction)")
            offset = c.reshape(shape) if op == "Sub" else -c.reshape(shape)
            return ("prior", {}, (offset,)), shape
        raise _Refused(f"{where}: operator {op} is not one tinynet imports")  # pragma: no cover

    # --- tinynet layers --------------------------------------------------------------------------

    def build(self, specs, props):
        """The ``Sequential`` for ``specs``: a ``lenet`` (with the architecture it came from) when
        the layers are exactly one, else generic layers and architecture None."""
        specs = _fuse_relu_pool(specs)
        if specs[-1][0] == "prior" and not any(s[0] == "dense" for s in specs[-2:-1]):
            raise _Refused("tinynet imports the class-prior correction (Sub/Add) only right after a Gemm")
        if sum(s[0] == "prior" for s in specs) > 1:
            raise _Refused("has more than one class-prior correction")
        rng = np.random.default_rng(0)
        layers, count = [], {"conv": 0, "fc": 0, "stage": 0}
        for op, attrs, arrays in specs:
            if op == "conv":
                W, b = arrays
                count["conv"] += 1
                layer = Conv2D(W.shape[1], W.shape[0], W.shape[2], rng=rng, name=f"conv{count['conv']}",
                               **attrs)
                if count["conv"] == 1 and not layers:
                    layer.compute_input_grad = False  # as in lenet(): nobody needs the image's gradient
                layer.params = {"W": W, "b": b}
            elif op in ("pool", "relupool"):
                count["stage"] += 1
                kind = ReLUMaxPool2D if op == "relupool" else MaxPool2D
                layer = kind(name=f"pool{count['stage']}", **attrs)
            elif op == "relu":
                count["stage"] += 1
                layer = ReLU(name=f"relu{count['stage']}")
            elif op == "flatten":
                layer = Flatten(name="flatten" if not any(isinstance(la, Flatten) for la in layers)
                                else f"flatten{len(layers)}")
            elif op == "dense":
                W, b = arrays
                count["fc"] += 1
                layer = Dense(W.shape[0], W.shape[1], rng=rng, name=f"fc{count['fc']}")
                layer.params = {"W": W, "b": b}
            else:  # prior
                (offset,) = arrays
                layer = LogitAdjustment(np.ones(offset.size), name="prior")
                layer.offset = np.ascontiguousarray(offset, dtype=np.float32)
            layer.grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
            layers.append(layer)
        generic = Sequential(layers)
        return _as_lenet(generic, props)


def _stated_input(props):
    """The ``input`` metadata (a JSON object) when the file has it, else what tinynet's models take."""
    try:
        stated = json.loads(props.get("input", "null"))
    except ValueError:
        stated = None
    return stated if isinstance(stated, dict) else dict(ONNX_INPUT)


def _fuse_relu_pool(specs):
    """Relu then MaxPool, or MaxPool then Relu, as one ``relupool`` (tinynet's ReLUMaxPool2D)."""
    out = []
    for spec in specs:
        if out and {out[-1][0], spec[0]} == {"relu", "pool"}:
            pool = out[-1] if out[-1][0] == "pool" else spec
            out[-1] = ("relupool", pool[1], ())
        else:
            out.append(spec)
    return out


def _out_features(model):
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    return dense[-1].params["W"].shape[1]


def _signature(model):
    """What must agree for two models to compute the same function with the same parameters."""
    sig = []
    for layer in model.layers:
        if isinstance(layer, Dropout):
            continue
        sig.append((type(layer).__name__, getattr(layer, "stride", None), getattr(layer, "padding", None),
                    getattr(layer, "size", None),
                    tuple((k, v.shape) for k, v in layer.params.items()),
                    layer.offset.shape if isinstance(layer, LogitAdjustment) else None))
    return sig


def _as_lenet(generic, props):
    """``(lenet, architecture)`` when ``generic`` is the LeNet that ``build_model`` makes (its
    dropout and class prior from the file's ``architecture`` metadata when that fits), else
    ``(generic, None)``."""
    K = _out_features(generic)
    prior = next((layer for layer in generic.layers if isinstance(layer, LogitAdjustment)), None)
    try:
        stated = json.loads(props.get("architecture", "{}"))
    except ValueError:
        stated = {}
    stated = stated if isinstance(stated, dict) else {}
    architecture = {"name": "lenet", "num_classes": K}
    dropout = stated.get("dropout", 0.0)
    if type(dropout) is float and 0.0 < dropout < 1.0:
        architecture["dropout"] = dropout
    if prior is not None:
        class_prior = stated.get("class_prior")
        if not _prior_gives(class_prior, prior.offset):
            class_prior = [float(v) for v in np.exp(prior.offset.astype(np.float64))]
        architecture["class_prior"] = class_prior
    try:
        reference = lenet(K, rng=np.random.default_rng(0), dropout=architecture.get("dropout", 0.0),
                          class_prior=architecture.get("class_prior"))
    except ValueError:
        return generic, None
    if _signature(reference) != _signature(generic):
        return generic, None
    source = [layer for layer in generic.layers if layer.params]
    target = [layer for layer in reference.layers if layer.params]
    for a, b in zip(source, target):
        b.params = a.params
        b.grads = a.grads
    if prior is not None:
        reference.layers[-1].offset = prior.offset  # exactly the file's, whatever exp/log rounding did
    return reference, architecture


def _prior_gives(class_prior, offset):
    """Whether ``class_prior`` (from metadata) is a list whose LogitAdjustment offset is ``offset``."""
    if not isinstance(class_prior, list) or len(class_prior) != offset.size:
        return False
    try:
        return np.array_equal(LogitAdjustment(class_prior).offset, offset)
    except (TypeError, ValueError):
        return False
