"""The tinynet model of an imported graph: the layer specs the translators made (``ops``) as a
``Sequential`` of layers named conv1, pool1, fc1, ... in graph order, given back as the ``lenet``
that ``build_model`` makes (its layer names, dropout and class prior) when it is exactly one."""

import json

import numpy as np

from ..nn.layers import Conv2D, Dense, Dropout, Flatten, LogitAdjustment, MaxPool2D, ReLU, ReLUMaxPool2D
from ..nn.model import Sequential, lenet
from .common import Refused


def build(specs, props):
    """``(model, architecture)`` for ``specs``: a ``lenet`` (with the architecture it came from) when
    the layers are exactly one, else generic layers and architecture None. ``props``: the file's
    ``metadata_props``."""
    specs = _fuse_relu_pool(specs)
    if specs[-1][0] == "prior" and not any(s[0] == "dense" for s in specs[-2:-1]):
        raise Refused("tinynet imports the class-prior correction (Sub/Add) only right after a Gemm")
    if sum(s[0] == "prior" for s in specs) > 1:
        raise Refused("has more than one class-prior correction")
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


def out_features(model):
    """The number of outputs of ``model``'s last Dense layer: its number of classes."""
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    return dense[-1].params["W"].shape[1]


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
    K = out_features(generic)
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
