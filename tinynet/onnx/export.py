"""ONNX export: a tinynet model as an ONNX graph, for onnxruntime, onnxruntime-web, or any framework
that reads ONNX (:func:`to_onnx`, :func:`save_onnx`, :func:`export_onnx`).

The graph has one operator per step of the forward pass at evaluation time, opset 13, float32;
each tinynet layer class has its writer in :data:`WRITERS`::

    Conv2D          -> Conv (weights (C_out, C_in, k, k) and bias as they are; strides, pads)
    ReLUMaxPool2D   -> MaxPool then Relu (relu(maxpool(x)) = maxpool(relu(x)): the same values)
    MaxPool2D, ReLU -> MaxPool, Relu
    Flatten         -> Flatten (axis 1: the same (C, H, W) order as tinynet's)
    Dense           -> Gemm (B = W, (in, out), transB = 0, so out = x @ W + b as in tinynet)
    BatchNorm2D,    -> BatchNormalization, its inference form: scale = gamma, B = beta,
    BatchNorm1D        input_mean = running_mean, input_var = running_var, epsilon = eps (and
                       momentum = 1 - tinynet's momentum, ONNX's meaning; unused at inference)
    Dropout         -> nothing (the identity at evaluation)
    LogitAdjustment -> Sub (logits - log prior: the class-prior correction)

The graph's input ``image`` is float32 (N, C, H, W) in [0, 1], one image of the model's input shape
(``model.input_shape``; EMNIST's (1, 28, 28) for a model that does not say); its outputs are
``logits`` (N, K) and ``probabilities`` (N, K) = Softmax(logits). The model's ``metadata_props``
hold the class labels (``classes``, JSON), the expected input (``input``, JSON), the network's
description (``architecture``: the one given, else ``tinynet.nn.describe.describe(model)``), which
import reads back for the layer names and dropout, and tinynet's version.
Anything that cannot be written exactly (an unknown layer, shapes that do not chain, float64
parameters) raises :class:`OnnxError` instead of writing a different network.

The onnx package is optional (``pip install "tinynet[onnx]"``): it is imported only inside
:func:`to_onnx`, so the rest of tinynet never needs it.
"""

import json
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..files.atomic import atomic_write
from ..files.checkpoint import INPUT, load_checkpoint
from ..nn.describe import DescriptionError, describe
from ..nn.kernels import conv_output_size
from ..nn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, LogitAdjustment, MaxPool2D,
                         ReLU, ReLUMaxPool2D)
from ..nn.model import input_shape
from .common import INPUT_NAME, LOGITS, OPSET, PROBABILITIES, OnnxError, require_onnx


class _Graph:
    """The graph as it is written: its nodes and initializers so far, the tensor the next layer
    reads (``x``) and one image's shape there (``shape``)."""

    def __init__(self, helper, numpy_helper, shape):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []
        self.x, self.shape = INPUT_NAME, tuple(shape)  # shape: one image's (C, H, W) at the input

    def weight(self, layer, key, array):
        """Add parameter (or state) ``key`` of ``layer`` as an initializer named ``layer.key``;
        returns the name."""
        if array.dtype != np.float32:
            raise OnnxError(f"layer {layer.name!r}: parameter {key} is {array.dtype}; ONNX export "
                            f"writes float32 models (model.astype(np.float32) first)")
        name = f"{layer.name}.{key}"
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, output, name, **attributes):
        """Add an ``op`` node writing ``output``, which the next layer then reads."""
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=name, **attributes))
        self.x = output


# --- one writer per layer class: adds the layer's nodes to the graph and updates the shape ---------

def _conv(g, layer):
    """Conv2D -> Conv, its weights and bias as they are."""
    W = layer.params["W"]
    c_out, c_in, k, _ = W.shape
    if len(g.shape) != 3 or g.shape[0] != c_in:
        raise OnnxError(f"layer {layer.name!r}: a convolution of {c_in} channels cannot take "
                        f"an input of shape {g.shape}")
    s, p = layer.stride, layer.padding
    oh, ow = (conv_output_size(n, k, s, p) for n in g.shape[1:])
    if oh < 1 or ow < 1:
        raise OnnxError(f"layer {layer.name!r}: {k}x{k} kernel does not fit its {g.shape} input")
    g.node("Conv", [g.x, g.weight(layer, "W", W), g.weight(layer, "b", layer.params["b"])],
           layer.name, layer.name, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
    g.shape = (c_out, oh, ow)


def _max_pool(g, layer):
    """MaxPool2D -> MaxPool; ReLUMaxPool2D (``layer.relu``) -> MaxPool then Relu."""
    if len(g.shape) != 3:
        raise OnnxError(f"layer {layer.name!r}: max-pooling needs a (C, H, W) input, got {g.shape}")
    k, s = layer.size, layer.stride
    oh, ow = (conv_output_size(n, k, s, 0) for n in g.shape[1:])
    if oh < 1 or ow < 1:
        raise OnnxError(f"layer {layer.name!r}: {k}x{k} window does not fit its {g.shape} input")
    g.node("MaxPool", [g.x], f"{layer.name}.max" if layer.relu else layer.name, layer.name,
           kernel_shape=[k, k], strides=[s, s])
    if layer.relu:
        g.node("Relu", [g.x], layer.name, f"{layer.name}.relu")
    g.shape = (g.shape[0], oh, ow)


def _relu(g, layer):
    """ReLU -> Relu."""
    g.node("Relu", [g.x], layer.name, layer.name)


def _flatten(g, layer):
    """Flatten -> Flatten(axis=1): the same (C, H, W) order as tinynet's."""
    g.node("Flatten", [g.x], layer.name, layer.name, axis=1)
    g.shape = (math.prod(g.shape),)


def _dense(g, layer):
    """Dense -> Gemm with B = W (in, out) and transB = 0, so out = x @ W + b as in tinynet."""
    W = layer.params["W"]
    if g.shape != (W.shape[0],):
        raise OnnxError(f"layer {layer.name!r}: takes {W.shape[0]} features, but its input "
                        f"has shape {g.shape}")
    g.node("Gemm", [g.x, g.weight(layer, "W", W), g.weight(layer, "b", layer.params["b"])],
           layer.name, layer.name)
    g.shape = (W.shape[1],)


def _batchnorm(g, layer):
    """BatchNorm2D, BatchNorm1D -> BatchNormalization (inference: the running statistics), on an
    (N, C, H, W) or an (N, F) input."""
    channels = len(layer.params["gamma"])
    rank = 3 if isinstance(layer, BatchNorm2D) else 1
    if len(g.shape) != rank or g.shape[0] != channels:
        raise OnnxError(f"layer {layer.name!r}: normalises {channels} {'channels' if rank == 3 else 'features'}, "
                        f"but its input has shape {g.shape}")
    inputs = [g.x] + [g.weight(layer, key, array) for key, array in
                      (("gamma", layer.params["gamma"]), ("beta", layer.params["beta"]),
                       ("running_mean", layer.state["running_mean"]), ("running_var", layer.state["running_var"]))]
    g.node("BatchNormalization", inputs, layer.name, layer.name, epsilon=layer.eps, momentum=1.0 - layer.momentum)


def _dropout(g, layer):
    """Dropout -> nothing: the identity at evaluation."""


def _logit_adjustment(g, layer):
    """LogitAdjustment -> Sub(logits, offset): the class-prior correction, logits - log prior."""
    offset = layer.offset
    if g.shape != offset.shape:
        raise OnnxError(f"layer {layer.name!r}: corrects {offset.size} logits, but its input "
                        f"has shape {g.shape}")
    if offset.dtype != np.float32:
        raise OnnxError(f"layer {layer.name!r}: offset is {offset.dtype}; ONNX export writes "
                        f"float32 models")
    g.initializers.append(g.numpy_helper.from_array(offset, f"{layer.name}.offset"))
    g.node("Sub", [g.x, f"{layer.name}.offset"], layer.name, layer.name)


# tinynet layer class -> its writer; looked up by the exact class (a subclass may compute something else)
WRITERS = {Conv2D: _conv, MaxPool2D: _max_pool, ReLUMaxPool2D: _max_pool, ReLU: _relu, Flatten: _flatten,
           Dense: _dense, BatchNorm2D: _batchnorm, BatchNorm1D: _batchnorm, Dropout: _dropout,
           LogitAdjustment: _logit_adjustment}


# --- the model ------------------------------------------------------------------------------------

def to_onnx(model, classes, architecture=None, doc_string=None):
    """The ONNX ``ModelProto`` of ``model`` (a ``Sequential``) at evaluation time, for images of its
    input shape, with ``classes`` and its description (``architecture``, else ``describe(model)``
    when the model can be described) in its metadata; checked with ``onnx.checker`` (full check).
    Raises :class:`OnnxError` for a model it cannot write exactly."""
    onnx = require_onnx()
    from onnx import helper, numpy_helper

    classes = [str(c) for c in classes]
    shape = input_shape(model)
    if architecture is None:
        try:
            architecture = describe(model, shape)
        except DescriptionError:
            architecture = None  # a layer tinynet cannot describe: its writer (below) says which
    g = _Graph(helper, numpy_helper, shape)
    for layer in model.layers:
        write = WRITERS.get(type(layer))
        if write is None:
            *first, last = (kind.__name__ for kind in WRITERS)
            raise OnnxError(f"layer {layer.name!r}: {type(layer).__name__} has no ONNX export (tinynet "
                            f"writes {', '.join(first)} and {last})")
        write(g, layer)
    if g.shape != (len(classes),):
        raise OnnxError(f"the model's output has shape {g.shape} per image, but there are "
                        f"{len(classes)} classes")
    if not g.nodes:
        raise OnnxError("the model has no layer that computes anything")
    g.nodes[-1].output[0] = LOGITS
    g.nodes.append(helper.make_node("Softmax", [LOGITS], [PROBABILITIES], name="softmax", axis=1))
    onnx_model = _model(g, shape, len(classes), doc_string or _doc(classes, shape))
    helper.set_model_props(onnx_model, _properties(classes, architecture, shape))
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except onnx.checker.ValidationError as e:  # a bug in this module, never the user's input
        raise OnnxError(f"the exported graph fails onnx's checker: {e}") from None
    return onnx_model


def _model(g, shape, K, doc_string):
    """The ``ModelProto`` around graph ``g`` of images of ``shape`` and ``K`` classes: its inputs,
    outputs and opset."""
    from onnx import TensorProto

    helper = g.helper
    graph = helper.make_graph(
        g.nodes, "tinynet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["N", K]),
         helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", K])],
        initializer=g.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    onnx_model = helper.make_model(graph, opset_imports=opsets, producer_name="tinynet",
                                   producer_version=__version__, doc_string=doc_string)
    onnx_model.ir_version = helper.find_min_ir_version_for(opsets)  # older runtimes read it too
    return onnx_model


def _properties(classes, architecture, shape):
    """The model's ``metadata_props``: classes, input, outputs, tinynet's version, architecture."""
    props = {"classes": json.dumps(classes), "input": json.dumps({**INPUT, "shape": ["N", *shape]}),
             "outputs": json.dumps({LOGITS: "class scores (N, K), the class-prior correction applied "
                                            "when the model has one",
                                    PROBABILITIES: "softmax(logits) (N, K)"}),
             "tinynet_version": __version__}
    if architecture is not None:
        props["architecture"] = json.dumps(architecture)
    return props


def _doc(classes, shape):
    """The model's ``doc_string``: what it takes and gives, in a sentence or two."""
    return (f"A tinynet network for {len(classes)} classes of handwritten characters. Input "
            f"'{INPUT_NAME}': float32 (N, {', '.join(map(str, shape))}), pixels in [0, 1] (uint8 / 255), "
            f"light ink on a dark (0) background, upright, the character centred as in EMNIST. Outputs "
            f"'{LOGITS}' (N, K) and '{PROBABILITIES}' (N, K, softmax of the logits); the class "
            f"labels are in metadata 'classes' (JSON list).")


def save_onnx(model, classes, path, architecture=None):
    """Write ``model`` as an ONNX file to ``path`` atomically (:func:`to_onnx`); returns its size
    in bytes."""
    data = to_onnx(model, classes, architecture).SerializeToString()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(data)
    return path.stat().st_size


def export_onnx(checkpoint, target):
    """Write checkpoint ``checkpoint``'s model as an ONNX file ``target`` (atomically); returns its
    size in bytes. ``CheckpointError`` for a checkpoint that is not intact, :class:`OnnxError` for a
    model ONNX export cannot write exactly."""
    model, meta, _, _ = load_checkpoint(checkpoint)
    return save_onnx(model, meta["classes"], target, meta["architecture"])
