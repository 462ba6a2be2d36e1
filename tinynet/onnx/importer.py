"""ONNX import (:func:`load_onnx`): an ONNX graph of a few operators as a tinynet model.

It reads a chain of Conv, Relu, MaxPool, Flatten or Reshape (to (N, features)), Gemm, MatMul (with
the Add of its bias), BatchNormalization (inference form: tinynet's BatchNorm2D or BatchNorm1D), optionally Sub/Add of a constant after the last Gemm (a class-prior
correction), Dropout/Identity (skipped) and a final Softmax or LogSoftmax (dropped: tinynet's logits
are its input), on (N, C, H, W) images of a fixed size: tinynet's own export, and what PyTorch 2.x
writes by default (``ops`` lists each operator's translator): the dynamo exporter's files, whose
larger weights lie in a data file beside the model and whose Reshape has allowzero 1, and the
older TorchScript exporter's, whose ``x.view(x.size(0), -1)`` with a dynamic batch is a
Shape-Gather-Unsqueeze-Concat-Reshape group, the one branch the chain may have. The file is read
once, with its size bounded, and what parsing it would build is checked on its bytes before
protobuf parses them (``wire``); a tensor's data is read from the file or from a plain file beside
it, checked (``tensors``); the values and FLOPs the graph declares for one image are bounded as it
is walked, before anything is built (``work``); and anything else is refused with an
:class:`OnnxError` naming the file and the fault.

This module reads the file and checks the model as a whole (opset, input, outputs, metadata); its
walker follows the chain of nodes from the input, computing one image's shape after each step, and
hands each node to its operator's translator (``ops``), whose layer specs ``build`` makes the
tinynet model and its description of. The onnx package is optional (``pip install
"tinynet[onnx]"``): it is imported only when :func:`load_onnx` is called.
"""

import json
import math
from pathlib import Path

from ..files.checkpoint import INPUT, MAX_CLASSES
from ..nn.describe import MAX_IMAGE_VALUES
from .build import build, out_features
from .common import (IMAGE_SHAPE, MAX_FILE_BYTES, MAX_METADATA_CHARS, MAX_NODES, MAX_SIDE, MIN_IMPORT_OPSET,
                     NEEDS_ONNX, OnnxError, Refused, require_onnx)
from .ops import HEADS, TRANSLATORS, Step, attributes
from .tensors import TensorReader, is_constant
from .wire import check_wire
from .work import Work


def load_onnx(path, classes=None):
    """Read an ONNX file as a tinynet model: returns ``(model, metadata)``.

    ``model`` is a ``Sequential`` for the graph's image shape: the network the file's
    ``architecture`` metadata describes, when it describes exactly the graph (tinynet's export
    writes it: layer names, dropout and class prior come back), else a preset (the LeNet, the MLP)
    when the graph is one, else layers named conv1, pool1, fc1, ... in graph order. ``metadata``
    holds ``classes`` (the file's ``classes`` metadata, else ``classes``, else "0".."K-1"),
    ``architecture`` (the model's description, ``tinynet.nn.describe``: it saves as a checkpoint),
    ``input`` and the file's ``metadata_props`` as ``onnx_metadata``. External data is read only
    from beside ``path``.
    Raises :class:`OnnxError` naming the file and the fault for anything else.
    """
    path = Path(path)
    try:
        onnx = require_onnx()
    except ImportError:
        raise OnnxError(f"{path}: reading an ONNX model {NEEDS_ONNX}") from None
    data = _read_bounded(path)
    try:
        check_wire(data, onnx.ModelProto.DESCRIPTOR)  # what parsing would build, before it does
    except Refused as e:
        raise OnnxError(f"{path}: {e}") from None
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError (and its C implementation's relatives)
        raise OnnxError(f"{path}: not an ONNX model (its protobuf does not parse: "
                        f"{' '.join(str(e).split()) or type(e).__name__})") from None
    try:
        return _Importer(onnx, proto, path).load(classes)
    except Refused as e:
        raise OnnxError(f"{path}: {e}") from None


def _read_bounded(path):
    """The bytes of file ``path``, at most :data:`MAX_FILE_BYTES` of them, read once."""
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


class _Importer:
    """One ONNX ``ModelProto`` checked and translated to tinynet layers (:func:`load_onnx`)."""

    def __init__(self, onnx, proto, path=None):
        self.onnx, self.proto = onnx, proto
        self.path = path  # the model file, beside which its external data may lie

    def load(self, classes):
        """``(model, metadata)``, as :func:`load_onnx` returns them; :class:`Refused` for a fault."""
        proto = self.proto
        if not proto.HasField("graph"):
            raise Refused("not an ONNX model (it has no graph)")
        graph = proto.graph
        if len(graph.node) > MAX_NODES:
            raise Refused(f"has {len(graph.node)} nodes, more than the {MAX_NODES} tinynet imports")
        self.opset = self.check_opset()
        self.consts = TensorReader(self.onnx, self.path).constants(graph)
        source = self.check_input(graph)
        specs, logits, head = self.walk(graph, source)
        outputs = [o.name for o in graph.output]
        if not outputs or not set(outputs) <= {logits, head}:
            raise Refused(f"graph outputs {outputs}: tinynet imports a graph whose outputs are its "
                          f"logits and/or their softmax")
        props = _metadata(proto)
        model, architecture = build(specs, props, self.input_shape)
        labels = _labels(props, classes, out_features(model))
        return model, {"classes": labels, "architecture": architecture,
                       "input": _stated_input(props, self.input_shape), "onnx_metadata": props}

    def check_opset(self):
        """The version of the standard operators the model uses, if tinynet imports it."""
        versions = {o.domain: o.version for o in self.proto.opset_import}
        version = versions.get("", versions.get("ai.onnx"))
        newest = self.onnx.defs.onnx_opset_version()
        if version is None:
            raise Refused("declares no version of the standard ONNX operators (opset_import)")
        if not MIN_IMPORT_OPSET <= version <= newest:
            raise Refused(f"uses opset {version}; tinynet imports opsets {MIN_IMPORT_OPSET} to {newest}")
        return version

    def check_input(self, graph):
        """The name of the graph's one input, a float32 batch of images (N, C, H, W); one image's
        shape in ``self.input_shape`` (EMNIST's (1, 28, 28) when the graph does not say), its
        fixed batch size, if it has one, in ``self.batch``."""
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise Refused(f"has {len(inputs)} inputs ({', '.join(i.name for i in inputs) or 'none'}); "
                          f"tinynet imports a model with one input image batch")
        x = inputs[0]
        t = x.type.tensor_type if x.type.HasField("tensor_type") else None
        if t is None or t.elem_type != self.onnx.TensorProto.FLOAT:
            raise Refused(f"input {x.name!r} is not a float32 tensor")
        self.batch, self.input_shape = None, IMAGE_SHAPE
        if t.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            self.batch = dims[0] if dims and dims[0] else None
            shown = ["?" if d is None else d for d in dims]
            if len(dims) != 4 or not all(d is not None and 1 <= d <= MAX_SIDE for d in dims[1:]):
                raise Refused(f"input {x.name!r} has shape {shown}; tinynet models take (N, C, H, W) "
                              f"images of a fixed size (H and W from 1 to {MAX_SIDE})")
            if math.prod(dims[1:]) > MAX_IMAGE_VALUES:
                raise Refused(f"input {x.name!r} has shape {shown}: more than the {MAX_IMAGE_VALUES} values "
                              f"per image tinynet takes")
            self.input_shape = tuple(dims[1:])
        return x.name

    def walk(self, graph, source):
        """Follow the single path of nodes from the input, each translated by its operator's
        translator: ``(specs, logits name, head name)``, with a spec per layer:
        ``(op, attributes, constant inputs)``; ``head``: the Softmax's output, if there is one.
        Each spec's work for one image is added up and bounded as it comes (``work``)."""
        chain = _Chain(graph, self.consts, source, self.batch, self.onnx.AttributeProto)
        specs, shape, head, work = [], self.input_shape, None, Work()
        while (step := chain.next()) is not None:
            if step.node.op_type in HEADS:
                self.check_head(step, shape, chain)
                head = step.output
                break
            if specs and specs[-1][0] == "prior":
                raise Refused(f"{step.where}: follows the class-prior correction; tinynet imports it only "
                              f"as the last layer")
            step.shape = shape
            spec, shape = TRANSLATORS[step.node.op_type].translate(step)
            if spec is not None:
                work.add(step.where, spec, shape)  # one image's values and FLOPs, bounded
                specs.append(spec)
        skipped = chain.unvisited()
        if skipped:
            n = graph.node[skipped[0]]
            raise Refused(f"node {skipped[0]} ({n.op_type}) is not on the path from the input to "
                          f"the output; tinynet imports a plain chain of layers")
        self.check_end(specs, shape)
        return specs, chain.reached, head

    def check_head(self, step, shape, chain):
        """A final Softmax or LogSoftmax must be over the classes of (N, K) logits, and last."""
        axis = step.attrs["axis"]
        if axis is None:  # its default: the last axis since opset 13, axis 1 before
            axis = -1 if self.opset >= 13 else 1
        if len(shape) != 1 or axis not in (1, -1):
            raise Refused(f"{step.where}: tinynet imports a softmax over the classes (axis 1) "
                          f"of (N, K) logits")
        if chain.consumers.get(step.output):
            raise Refused(f"{step.where}: its output feeds further nodes; the softmax must be last")

    @staticmethod
    def check_end(specs, shape):
        """The chain must have a Gemm or MatMul (a dense layer) and end in (N, K) logits of 1 to
        MAX_CLASSES classes."""
        if shape is None or len(shape) != 1:
            raise Refused(f"the graph ends with a {shape} feature map per image; tinynet imports "
                          f"models that end with (N, K) logits")
        if not any(s[0] == "dense" for s in specs):
            raise Refused("has no Gemm or MatMul (dense) layer: tinynet imports models that end with one")
        if not 1 <= shape[0] <= MAX_CLASSES:
            raise Refused(f"has {shape[0]} outputs; tinynet imports models of 1 to {MAX_CLASSES} classes")


class _Chain:
    """The single path of nodes from the graph's input, followed a node at a time (:meth:`next`),
    each node checked as it is reached: the tensor before it feeds only it (or, once at a time,
    exactly a Shape and a Reshape of it: :meth:`fork`), it is not reached twice (a cycle), its one
    computed input is that tensor (the rest are constants; the Reshape closing a fork takes the
    forked tensor too), and only its first output is used."""

    def __init__(self, graph, consts, source, batch, attribute_types):
        self.graph, self.consts, self.batch, self.AP = graph, consts, batch, attribute_types
        self.consumers = _consumers(graph, consts, source)
        self.reached = source  # the tensor the path has reached: the last node passed's output
        self.last = None       # the node reached last; passed when the one after it is asked for
        self.ahead = []        # [the next node's Step (or None)] once peek() has looked at it
        self.seen = set()      # indices of the nodes reached
        self.join = None       # (Reshape node, tensor) of an open x.view(x.size(0), -1) branch

    def next(self):
        """The :class:`Step` of the next node on the path (its shape not set), after its checks, or
        None at the end of the path."""
        return self.ahead.pop() if self.ahead else self.advance()

    def peek(self):
        """What :meth:`next` will return, without taking it."""
        if not self.ahead:
            self.ahead.append(self.advance())
        return self.ahead[0]

    def advance(self):
        """Pass the node returned last and reach the next one: its :class:`Step`, or None."""
        if self.last is not None:
            self.reached = self.last.output
        users = self.consumers.get(self.reached)
        if not users:
            return None
        i = users[0] if len(users) == 1 else self.fork(users)
        if i in self.seen:
            raise Refused(f"the graph has a cycle through node {i}")
        self.seen.add(i)
        n = self.graph.node[i]
        where = _where(i, n)
        attrs = attributes(n, where, self.AP)
        data = [name for name in n.input if name and name not in self.consts]
        expected = [self.reached]
        if self.join is not None and self.join[0] == i:  # the Reshape closing the branch
            expected, self.join = [self.join[1], self.reached], None
        if data != expected:
            raise Refused(f"{where}: takes {data} as computed inputs; tinynet imports layers of "
                          f"one input with constant weights")
        outputs = [name for name in n.output if name]
        if not outputs:
            raise Refused(f"{where}: has no output")
        for extra in outputs[1:]:  # MaxPool's indices, Dropout's mask: allowed only when unused
            if extra in self.consumers or extra in {o.name for o in self.graph.output}:
                raise Refused(f"{where}: its second output {extra!r} is used; tinynet "
                              f"imports only the first")
        self.last = Step(n, where, attrs, outputs[0], self.consts, self.batch, self.peek, self.next)
        return self.last

    def fork(self, users):
        """The one branch tinynet follows: a tensor feeding a Shape and a Reshape of itself, as
        ``x.view(x.size(0), -1)`` does (``ops.view_flatten``). Returns the Shape node's index, after
        which the path goes on until the Reshape, which then takes that tensor and its new shape."""
        ops = sorted((self.graph.node[i].op_type, i) for i in users)
        if [op for op, _ in ops] != ["Reshape", "Shape"] or self.join is not None:
            raise Refused(f"tensor {self.reached!r} feeds {len(users)} nodes; tinynet imports a "
                          f"plain chain of layers (branching only into x.view(x.size(0), -1)'s "
                          f"Shape and Reshape)")
        (_, reshape), (_, shape) = ops
        if self.graph.node[reshape].input[0] != self.reached:
            raise Refused(f"tensor {self.reached!r} feeds a Shape and a Reshape, but is not what "
                          f"that Reshape reshapes")
        self.join = (reshape, self.reached)
        return shape

    def unvisited(self):
        """Indices of the nodes (other than Constants) the path did not reach."""
        return [i for i, n in enumerate(self.graph.node) if i not in self.seen and not is_constant(n)]


def _where(i, node):
    """How messages name node ``i``: ``node 3 (Relu '/Relu_1')``."""
    return f"node {i} ({node.op_type}{' ' + repr(node.name) if node.name else ''})"


def _consumers(graph, consts, source):
    """{tensor name: indices of the nodes that read it}, after checking that every node (but the
    Constants) is an operator tinynet imports and that no tensor is defined twice."""
    known = {**TRANSLATORS, **HEADS}
    consumers, producers = {}, {}
    for i, n in enumerate(graph.node):
        if is_constant(n):
            continue
        where = _where(i, n)
        if n.domain not in ("", "ai.onnx") or n.op_type not in known:
            op = f"{n.domain}::{n.op_type}" if n.domain else n.op_type
            raise Refused(f"{where}: operator {op} is not one tinynet imports "
                          f"({', '.join(sorted(known))})")
        for name in n.input:
            if name and name not in consts:
                consumers.setdefault(name, []).append(i)
        for name in n.output:
            if name in producers or name in consts or name == source:
                raise Refused(f"{where}: tensor {name!r} is defined twice")
            producers[name] = i
    return consumers


def _metadata(proto):
    """The model's ``metadata_props`` as a dict, each entry bounded in size."""
    props = {}
    for p in proto.metadata_props:
        if len(p.key) + len(p.value) > MAX_METADATA_CHARS:
            raise Refused(f"metadata entry {p.key[:40]!r} is implausibly large")
        props[p.key] = p.value
    return props


def _labels(props, classes, K):
    """The ``K`` class labels: the ``classes`` metadata, else ``classes``, else "0".."K-1"."""
    if "classes" in props:
        try:
            labels = json.loads(props["classes"])
        except ValueError as e:
            raise Refused(f"metadata 'classes' is not JSON ({e})") from None
        if not isinstance(labels, list) or not all(isinstance(c, str) for c in labels):
            raise Refused("metadata 'classes' is not a list of strings")
        if len(labels) != K:
            raise Refused(f"metadata 'classes' names {len(labels)} classes but the model has "
                          f"{K} outputs")
        return labels
    if classes is not None:
        labels = [str(c) for c in classes]
        if len(labels) != K:
            raise Refused(f"{len(labels)} classes were given but the model has {K} outputs")
        return labels
    return [str(i) for i in range(K)]


def _stated_input(props, shape):
    """The ``input`` metadata (a JSON object) when the file has it, else what tinynet's models take;
    its shape always the graph's, (N, *``shape``)."""
    try:
        stated = json.loads(props.get("input", "null"))
    except ValueError:
        stated = None
    return {**(stated if isinstance(stated, dict) else INPUT), "shape": ["N", *shape]}
