"""The ONNX operators tinynet imports (:data:`TRANSLATORS`): for each, the attributes it may have with
their defaults (any other attribute is refused), and a translator, a small function that turns one
node (or a group of nodes) into a layer spec and the shape of one image after it.

A translator takes a :class:`Step` (the node, its attributes, the shape at its input, the graph's
constants) and returns ``(spec, shape after it)``, or ``(None, shape)`` for a node that computes
nothing at evaluation; it raises :class:`Refused` (through ``step.need``) for a node tinynet cannot
import exactly. A spec is ``(kind, attributes, arrays)``, which ``build`` makes a tinynet layer of:
``("conv", {"stride", "padding"}, (W, b))``, ``("pool", {"size", "stride"}, ())``,
``("relu", {}, ())``, ``("flatten", {}, ())``, ``("dense", {}, (W, b))``,
``("batchnorm2d", {"eps", "momentum"}, (gamma, beta, mean, var))`` (``"batchnorm1d"`` on (N, F)
inputs) or ``("prior", {}, (offset,))``.

What PyTorch 2.x writes is read as such: the dynamo exporter's Reshape with allowzero 1 (when its
shape holds no 0), a MatMul and the Add of its bias as one dense layer (so is a Gemm without a bias
and the Add after it), and the TorchScript exporter's ``x.view(x.size(0), -1)`` (Shape, Gather,
Unsqueeze, Concat, Reshape) as a flatten: :func:`view_flatten` checks every node and constant of the
group; Gather, Unsqueeze and Concat anywhere else are refused by name.

To import another operator, write its translator and add one entry to :data:`TRANSLATORS`. A
translator for a pattern of several nodes (a node and the ones after it on the chain) looks at the
next node with ``step.peek_next()`` and takes it with ``step.take_next()`` (a :class:`Step` whose
shape the translator sets); the walker then goes on after the last node taken.
"""

import math
from typing import Callable, NamedTuple

import numpy as np

from ..nn.kernels import conv_output_size
from .common import MAX_SIDE, Refused


class Step:
    """One node on the chain as its translator sees it."""

    def __init__(self, node, where, attrs, output, consts, batch, peek_next, take_next):
        self.node = node            # the NodeProto
        self.where = where          # how messages name it, e.g. "node 0 (Conv '/conv1/Conv')"
        self.attrs = attrs          # its attributes as Python values, defaults filled in
        self.output = output        # the tensor it writes (its first output; any other is unused)
        self.consts = consts        # {name: array}: the graph's initializers and Constant outputs
        self.batch = batch          # the input's fixed batch size, or None
        self.peek_next = peek_next  # () -> the Step of the next node on the chain (checked), or None
        self.take_next = take_next  # () -> the same, taken: the walker goes on after it
        self.shape = None           # one image's shape at its input: set by whoever hands it over

    def need(self, condition, message):
        """Refuse the node, with ``message``, unless ``condition`` holds."""
        if not condition:
            raise Refused(f"{self.where}: {message}")

    def const(self, index, what):
        """The constant array the node takes as its input ``index`` (its ``what``), None when that
        input is absent; refused when it is a computed tensor."""
        node = self.node
        if len(node.input) <= index or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.consts:
            raise Refused(f"{self.where}: its {what} {name!r} is neither an initializer nor a Constant")
        return self.consts[name]


def attributes(node, where, attribute_types):
    """The node's attributes as Python values, defaults filled in; unknown ones refused.
    ``attribute_types``: onnx's ``AttributeProto``."""
    allowed = TRANSLATORS[node.op_type].attributes if node.op_type in TRANSLATORS else HEADS[node.op_type]
    values = dict(allowed)
    AP = attribute_types
    for a in node.attribute:
        if a.name not in allowed:
            raise Refused(f"{where}: attribute {a.name!r} is not supported")
        if a.type == AP.INT:
            values[a.name] = a.i
        elif a.type == AP.INTS:
            if len(a.ints) > 16:
                raise Refused(f"{where}: attribute {a.name!r} has {len(a.ints)} values")
            values[a.name] = list(a.ints)
        elif a.type == AP.FLOAT:
            values[a.name] = a.f
        elif a.type == AP.STRING:
            values[a.name] = a.s
        else:
            raise Refused(f"{where}: attribute {a.name!r} has an unsupported type")
    return values


# --- what Conv and MaxPool share ------------------------------------------------------------------

def _window(step, what):
    """``(kernel, stride, padding)`` of a Conv's or MaxPool's square window, checked."""
    attrs, need = step.attrs, step.need
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


def _spatial(step, k, s, p, what):
    """``(height, width)`` after a ``k`` x ``k`` window of stride ``s`` and padding ``p``, checked."""
    shape, need = step.shape, step.need
    need(len(shape) == 3, f"{what} needs a (C, H, W) input, but gets {shape}")
    oh, ow = (conv_output_size(x, k, s, p) for x in shape[1:])
    need(oh >= 1 and ow >= 1, f"its {k}x{k} window does not fit its {shape} input")
    need(oh <= MAX_SIDE and ow <= MAX_SIDE, f"its output would be {oh}x{ow}, too large")
    return oh, ow


# --- the translators ------------------------------------------------------------------------------

def conv(step):
    """Conv -> ``conv``: square kernel, equal strides, the same padding on every side, no groups or
    dilations; the bias may be absent (zeros), the kernel_shape too (the weight's shape says it)."""
    attrs, shape, need = step.attrs, step.shape, step.need
    W = step.const(1, "weight")
    if attrs["kernel_shape"] is None and W is not None:  # optional: the weight's shape says it
        attrs["kernel_shape"] = list(W.shape[2:])
    k, s, p = _window(step, "Conv")
    need(attrs["group"] == 1, f"group {attrs['group']}: tinynet imports ungrouped convolutions")
    need(W is not None and W.dtype == np.float32 and W.ndim == 4 and W.shape[2:] == (k, k),
         f"weight must be float32 (C_out, C_in, {k}, {k})")
    c_out, c_in = W.shape[:2]
    need(len(shape) == 3 and shape[0] == c_in,
         f"weight takes {c_in} channels, but its input has shape {shape}")
    b = step.const(2, "bias")
    if b is None:
        b = np.zeros(c_out, np.float32)
    need(b.dtype == np.float32 and b.shape == (c_out,), f"bias must be float32 ({c_out},)")
    oh, ow = _spatial(step, k, s, p, "Conv")
    return ("conv", {"stride": s, "padding": p}, (W, b)), (c_out, oh, ow)


def max_pool(step):
    """MaxPool -> ``pool``: a square window, no padding, floor mode."""
    attrs, need = step.attrs, step.need
    k, s, p = _window(step, "MaxPool")
    need(p == 0, "padded max-pooling is not supported")
    need(attrs["ceil_mode"] == 0, "ceil_mode 1 is not supported")
    need(attrs["storage_order"] == 0, "storage_order 1 is not supported")
    oh, ow = _spatial(step, k, s, 0, "MaxPool")
    return ("pool", {"size": k, "stride": s}, ()), (step.shape[0], oh, ow)


def relu(step):
    """Relu -> ``relu``."""
    return ("relu", {}, ()), step.shape


def identity(step):
    """Identity, Dropout -> nothing: the identity at evaluation, which is what tinynet runs (a
    Dropout in training mode is refused)."""
    training = step.const(2, "training_mode") if step.node.op_type == "Dropout" else None
    step.need(training is None or not training.any(), "a Dropout in training mode is not an inference graph")
    return None, step.shape


def flatten(step):
    """Flatten(axis=1) -> ``flatten``; nothing when the input is (N, F) already."""
    attrs, shape, need = step.attrs, step.shape, step.need
    if len(shape) == 1:
        need(attrs["axis"] in (1, -1), f"axis {attrs['axis']} of an (N, F) input")
        return None, shape
    need(attrs["axis"] == 1, f"axis {attrs['axis']}: tinynet imports Flatten(axis=1)")
    return ("flatten", {}, ()), (math.prod(shape),)


def reshape(step):
    """Reshape to (N, features) with a constant shape -> ``flatten`` (nothing when the input is
    (N, F) already). The batch may be spelled 0 (copied; not with allowzero 1, where 0 means an
    empty axis), -1, or the input's fixed batch size. PyTorch's dynamo exporter sets allowzero 1,
    which changes nothing for a shape that holds no 0."""
    shape, need = step.shape, step.need
    target = step.const(1, "shape")
    need(target is not None and target.dtype == np.int64 and target.shape == (2,),
         "tinynet imports a Reshape to (N, features) with a constant shape")
    allowzero = step.attrs["allowzero"]
    need(allowzero in (0, 1), f"allowzero {allowzero} is neither 0 nor 1")
    need(not (allowzero and 0 in target), f"allowzero 1 with a 0 in its shape {target.tolist()} "
         f"(an empty axis) is not supported")
    F = math.prod(shape)
    first, second = (int(v) for v in target)
    batch = first in (0, step.batch)  # 0 copies the batch size; a fixed batch may be spelled out
    need(batch and second in (F, -1) or first == -1 and second == F,
         f"reshapes to {[first, second]}; tinynet imports a reshape of "
         f"(N, {', '.join(map(str, shape))}) "
         f"to (N, {F})")
    return (("flatten", {}, ()) if len(shape) > 1 else None), (F,)


def view_flatten(step):
    """Shape, Gather, Unsqueeze, Concat, Reshape -> ``flatten``: ``x.view(x.size(0), -1)`` as
    PyTorch's TorchScript exporter writes it for a dynamic batch, the reshape's shape computed from
    the input's::

        s = Shape(x); n = Gather(s, 0, axis=0); u = Unsqueeze(n, axes=[0])
        c = Concat(u, [-1], axis=0); y = Reshape(x, c)

    ``x`` feeds both the Shape and the Reshape (the walker lets exactly this pair branch off one
    tensor). Every node and constant of the group is checked, and anything else is refused, naming
    the node that differs; the second entry may also be the number of features itself."""
    shape, need = step.shape, step.need
    need(step.attrs["start"] == 0 and step.attrs["end"] is None,
         "tinynet imports Shape without start or end, as x.view(x.size(0), -1) writes it")
    gather = _view_next(step, "Gather")
    index = gather.const(1, "index")
    gather.need(gather.attrs["axis"] == 0 and index is not None and index.dtype == np.int64
                and index.shape == () and index == 0, "tinynet imports Gather(shape, 0, axis=0) here: "
                "the batch size of x.view(x.size(0), -1)")
    unsqueeze = _view_next(gather, "Unsqueeze")
    axes = unsqueeze.attrs["axes"]  # an attribute before opset 13, an input since
    if axes is None:
        axes = unsqueeze.const(1, "axes")
        axes = None if axes is None or axes.dtype != np.int64 else axes.tolist()
    else:
        unsqueeze.need(len(unsqueeze.node.input) == 1, "Unsqueeze with axes both as attribute and input")
    unsqueeze.need(axes == [0], f"tinynet imports Unsqueeze(axes=[0]) here, not axes {axes}")
    concat = _view_next(unsqueeze, "Concat")
    F = math.prod(shape)
    wanted = f"tinynet imports Concat([batch], [-1], axis=0) here: the shape (N, -1) or (N, {F})"
    concat.need(concat.attrs["axis"] == 0 and list(concat.node.input[:1]) == [unsqueeze.output]
                and len(concat.node.input) == 2, wanted)
    rest = concat.const(1, "second part")
    concat.need(rest.dtype == np.int64 and rest.shape == (1,) and int(rest[0]) in (-1, F), wanted)
    reshape = _view_next(concat, "Reshape")
    reshape.need(list(reshape.node.input) == [step.node.input[0], concat.output],
                 "does not reshape the tensor the Shape measured")
    reshape.need(reshape.attrs["allowzero"] in (0, 1), f"allowzero {reshape.attrs['allowzero']}")
    return (("flatten", {}, ()) if len(shape) > 1 else None), (F,)


def _view_next(step, op):
    """The node after ``step`` in x.view(x.size(0), -1)'s group, which must be an ``op``."""
    after = step.take_next()
    step.need(after is not None and after.node.op_type == op,
              f"is followed by {after.where if after else 'nothing'}, not {op}: tinynet imports Shape only "
              f"as the start of x.view(x.size(0), -1) (Shape, Gather, Unsqueeze, Concat, Reshape)")
    return after


def only_in_view_flatten(step):
    """Gather, Unsqueeze, Concat on their own: refused (:func:`view_flatten` reads them in its group)."""
    step.need(False, f"tinynet imports {step.node.op_type} only within x.view(x.size(0), -1)'s "
                     f"Shape, Gather, Unsqueeze, Concat, Reshape")


def gemm(step):
    """Gemm -> ``dense``: alpha = beta = 1, transA 0, transB 0 or 1. Without a bias, an Add of a
    constant (out,) right after it is its bias (as PyTorch writes ``F.linear(x, W) + b``), else the
    bias is zeros."""
    attrs, shape, need = step.attrs, step.shape, step.need
    need(attrs["alpha"] == 1.0 and attrs["beta"] == 1.0 and attrs["transA"] == 0,
         "tinynet imports Gemm with alpha 1, beta 1 and transA 0")
    B = step.const(1, "weight")
    need(B is not None and B.dtype == np.float32 and B.ndim == 2, "weight must be a float32 matrix")
    W = np.ascontiguousarray(B.T) if attrs["transB"] else B
    need(len(shape) == 1 and W.shape[0] == shape[0],
         f"takes {W.shape[0]} features, but its input has shape {shape}")
    C = step.const(2, "bias")
    out = W.shape[1]
    if C is None:
        return ("dense", {}, (W, _bias_after(step, out))), (out,)
    need(C.dtype == np.float32 and C.shape in ((out,), (1, out)), f"bias must be float32 ({out},)")
    return ("dense", {}, (W, C.reshape(out))), (out,)


def matmul(step):
    """MatMul(x, W) of a constant float32 W (in, out) -> ``dense``, with an Add of a constant (out,)
    right after it as its bias (else zeros): ``x @ W + b`` as PyTorch writes an explicit matmul, and
    the TorchScript exporter a Linear without bias (W stored transposed, (in, out))."""
    shape, need = step.shape, step.need
    W = step.const(1, "weight")
    need(W is not None and W.dtype == np.float32 and W.ndim == 2,
         "tinynet imports MatMul(x, W) of a constant float32 matrix W")
    need(len(shape) == 1 and W.shape[0] == shape[0],
         f"takes {W.shape[0]} features, but its input has shape {shape}")
    out = W.shape[1]
    return ("dense", {}, (W, _bias_after(step, out))), (out,)


def _bias_after(step, out):
    """The bias of a Gemm without one, or of a MatMul: the constant float32 (out,) (or (1, out)) that
    an Add right after it adds, that Add taken; else zeros."""
    after = step.peek_next()
    if after is not None and after.node.op_type == "Add":
        inputs = list(after.node.input)
        c = after.const(inputs.index(step.output) ^ 1, "bias") if len(inputs) == 2 else None
        if c is not None and c.dtype == np.float32 and c.shape in ((out,), (1, out)):
            step.take_next()
            return c.reshape(out)
    return np.zeros(out, np.float32)


def batch_normalization(step):
    """BatchNormalization in inference form -> ``batchnorm2d`` (tinynet's BatchNorm2D) on an
    (N, C, H, W) input, ``batchnorm1d`` (BatchNorm1D) on (N, F): constant float32 (C,) scale, B, input_mean and input_var (>= 0),
    not in training mode. epsilon is kept as the float32 the file holds (its shortest decimal);
    momentum (ONNX's: the running statistics' weight, unused at inference) becomes tinynet's
    1 - momentum, to the 6 digits a float32 holds."""
    attrs, shape, need = step.attrs, step.shape, step.need
    need(attrs["training_mode"] == 0, "a BatchNormalization in training mode is not an inference graph")
    need(attrs["spatial"] == 1, "spatial 0 (statistics per position) is not supported")
    need(len(shape) in (1, 3), f"tinynet imports batch normalisation of (N, C, H, W) or (N, F), not of {shape}")
    channels = shape[0]
    arrays = [step.const(i, what) for i, what in enumerate(("scale", "B", "input_mean", "input_var"), 1)]
    need(all(a is not None and a.dtype == np.float32 and a.shape == (channels,) for a in arrays),
         f"scale, B, input_mean and input_var must be constant float32 ({channels},)")
    need(not (arrays[3] < 0).any(), "input_var holds negative values (a variance is >= 0)")
    eps = float(str(np.float32(attrs["epsilon"])))
    need(eps > 0, f"epsilon {attrs['epsilon']} is not positive")
    momentum = min(1.0, max(0.0, float(f"{1.0 - attrs['momentum']:.6g}")))
    kind = "batchnorm2d" if len(shape) == 3 else "batchnorm1d"
    return (kind, {"eps": eps, "momentum": momentum}, tuple(arrays)), shape


def add_sub(step):
    """Sub(logits, constant) or Add of a constant -> ``prior``, the class-prior correction (the
    walker and ``build`` check that it comes right after the last Gemm)."""
    n, shape, need = step.node, step.shape, step.need
    op = n.op_type
    need(len(n.input) == 2, f"{op} of {len(n.input)} inputs")
    data_first = n.input[0] not in step.consts
    need(op == "Add" or data_first, "tinynet imports Sub(logits, constant)")
    c = step.const(1 if data_first else 0, "constant")
    need(len(shape) == 1 and c is not None and c.dtype == np.float32
         and c.shape in (shape, (1,) + shape),
         f"tinynet imports {op} of a constant of shape ({shape[0] if shape else '?'},) "
         f"after the last Gemm (a class-prior correction)")
    value = c.reshape(shape) if op == "Sub" else -c.reshape(shape)
    return ("prior", {}, (value,)), shape


class Operator(NamedTuple):
    """An ONNX operator tinynet imports: its translator and the attributes it may have."""

    translate: Callable  # Step -> (spec or None, shape after it)
    attributes: dict     # {attribute: default}; any other attribute is refused


_WINDOW = {"kernel_shape": None, "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1],
           "auto_pad": b"NOTSET"}

# ONNX op (standard domain) -> its translator and attributes
TRANSLATORS = {
    "Conv": Operator(conv, {**_WINDOW, "group": 1}),
    "MaxPool": Operator(max_pool, {**_WINDOW, "ceil_mode": 0, "storage_order": 0}),
    "Relu": Operator(relu, {}),
    "Identity": Operator(identity, {}),
    "Dropout": Operator(identity, {"ratio": 0.5, "seed": 0}),
    "Flatten": Operator(flatten, {"axis": 1}),
    "Reshape": Operator(reshape, {"allowzero": 0}),
    "Gemm": Operator(gemm, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}),
    "MatMul": Operator(matmul, {}),
    "BatchNormalization": Operator(batch_normalization, {"epsilon": 1e-5, "momentum": 0.9, "spatial": 1,
                                                         "training_mode": 0}),
    "Shape": Operator(view_flatten, {"start": 0, "end": None}),
    "Gather": Operator(only_in_view_flatten, {"axis": 0}),
    "Unsqueeze": Operator(only_in_view_flatten, {"axes": None}),
    "Concat": Operator(only_in_view_flatten, {"axis": None}),
    "Add": Operator(add_sub, {}),
    "Sub": Operator(add_sub, {}),
}

# The final Softmax or LogSoftmax over the classes, and its attributes: the walker ends the chain
# there and drops it (tinynet's logits are its input)
HEADS = {"Softmax": {"axis": None}, "LogSoftmax": {"axis": None}}
