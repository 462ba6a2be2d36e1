"""The tinynet model of an imported graph, and its description (``tinynet.nn.describe``), so that it
saves as a checkpoint, loads, resumes and predicts like any tinynet model.

The layer specs the translators made (``ops``) become a ``Sequential`` of layers named conv1, pool1,
fc1, ... in graph order. It is then given back as the network some description says, when that
description computes exactly the graph: first the ``architecture`` the file's metadata states
(tinynet's own export writes it: the layer names, dropout, class prior come back), then the presets
(the LeNet, the MLP) for its number of classes. Otherwise the model keeps the generic names and its
description is written down from it (``describe``)."""

import json

import numpy as np

from ..nn.describe import DescriptionError, check, describe
from ..nn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Flatten, LogitAdjustment, MaxPool2D, ReLU,
                         ReLUMaxPool2D)
from ..nn.model import PRESETS, EMNIST_INPUT, Sequential, build_model, expand
from .common import Refused


def build(specs, props, input_shape):
    """``(model, architecture)`` for ``specs`` on images of ``input_shape`` (C, H, W): the model of
    the first description (the file's stated one, then a preset) that computes exactly these
    layers, else generic layers and their own description. ``props``: the file's
    ``metadata_props``."""
    specs = _fuse_relu_pool(specs)
    if specs[-1][0] == "prior" and not any(s[0] == "dense" for s in specs[-2:-1]):
        raise Refused("tinynet imports the class-prior correction (Sub/Add) only right after a Gemm")
    if sum(s[0] == "prior" for s in specs) > 1:
        raise Refused("has more than one class-prior correction")
    generic = Sequential(_layers(specs), input_shape)
    try:
        own = describe(generic)  # checks the network against tinynet's bounds too
    except DescriptionError as e:
        raise Refused(f"is not a network tinynet can hold: {e}") from None
    offsets = [arrays[0].tobytes() for op, _, arrays in specs if op == "prior"]  # the file's, exactly
    for candidate in _candidates(props, generic, input_shape):
        model = _as_described(generic, own, candidate, offsets)
        if model is not None:
            return model, candidate
    return generic, own


def _layers(specs):
    """The layers of ``specs``, named conv1, pool1, fc1, ... in graph order, holding the graph's
    weights."""
    rng = np.random.default_rng(0)
    layers, count = [], {"conv": 0, "fc": 0, "stage": 0, "bn": 0}
    for op, attrs, arrays in specs:
        if op == "conv":
            W, b = arrays
            count["conv"] += 1
            layer = Conv2D(W.shape[1], W.shape[0], W.shape[2], rng=rng, name=f"conv{count['conv']}", **attrs)
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
        elif op in ("batchnorm2d", "batchnorm1d"):
            gamma, beta, mean, var = arrays
            count["bn"] += 1
            kind = BatchNorm2D if op == "batchnorm2d" else BatchNorm1D
            layer = kind(len(gamma), name=f"bn{count['bn']}", **attrs)
            layer.params = {"gamma": gamma, "beta": beta}
            layer.state = {"running_mean": mean, "running_var": var}
        else:
            layer = _prior_layer(*arrays)
        layer.grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
        layers.append(layer)
    if hasattr(layers[0], "compute_input_grad"):
        layers[0].compute_input_grad = False  # as build_model does: nobody needs the image's gradient
    return layers


def _prior_layer(offset):
    """The ``LogitAdjustment`` whose offset is ``offset`` (log of class frequencies): its prior
    exp(offset), whose offset may differ from the file's in the last bits (the prior is what a
    description keeps); refused when ``offset`` is not the log of frequencies that sum to 1."""
    prior = np.exp(offset.astype(np.float64))
    try:
        layer = LogitAdjustment(prior, name="prior")
    except ValueError:
        raise Refused("its class-prior correction (Sub/Add after the last Gemm) holds values whose "
                      "exponentials are not positive finite frequencies") from None
    if not np.allclose(layer.offset, offset, rtol=1e-6, atol=1e-6):
        raise Refused(f"its constant after the last Gemm is not a class-prior correction: the "
                      f"exponentials of log(prior) sum to 1, these to {prior.sum():.6g}")
    return layer


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


def _candidates(props, generic, input_shape):
    """The descriptions an imported graph may be: the metadata's ``architecture`` (when it is a
    JSON object), then each preset for its classes, input and class prior."""
    try:
        stated = json.loads(props.get("architecture", "null"))
    except ValueError:
        stated = None
    if isinstance(stated, dict):
        yield stated
    prior = next((layer.prior for layer in generic.layers if isinstance(layer, LogitAdjustment)), None)
    for name in PRESETS:
        preset = {"name": name, "num_classes": out_features(generic)}
        if prior is not None:
            preset["class_prior"] = prior
        if tuple(input_shape) != EMNIST_INPUT:
            preset["input"] = list(input_shape)
        yield preset


def _as_described(generic, own, candidate, offsets):
    """The model ``candidate`` describes, holding ``generic``'s weights, when it computes exactly
    what ``generic`` (described as ``own``) does, its class prior giving the file's offset
    (``offsets``: its bytes) or the one ``generic``'s gives; else None. Nothing is built before the
    candidate is known to have ``generic``'s shape."""
    try:
        plan = check(expand(candidate))
    except (DescriptionError, TypeError, ValueError):
        return None
    if _computes(plan.description) != _computes(own):
        return None
    model = build_model(plan.description)
    source = [layer for layer in generic.layers if layer.params]
    target = [layer for layer in model.layers if layer.params]
    for a, b in zip(source, target):
        b.params, b.grads, b.state = a.params, a.grads, a.state  # (state: batch normalisation's statistics)
    ours = [layer for layer in generic.layers if isinstance(layer, LogitAdjustment)]
    theirs = [layer for layer in model.layers if isinstance(layer, LogitAdjustment)]
    if ours and theirs[0].offset.tobytes() not in (ours[0].offset.tobytes(), *offsets):
        return None  # another prior: not this description's network
    if hasattr(model.layers[0], "compute_input_grad"):
        model.layers[0].compute_input_grad = False
    return model


def _computes(description):
    """What must agree for two descriptions to compute the same function at evaluation: the input
    and each layer's kind and settings, without names and dropout, a ReLU next to a max-pool counted
    as the fused ReLUMaxPool2D (the same values), a class prior by its length (its values are
    compared by the offsets they give), and batch normalisation by its eps as the float32 that
    computes with it (its momentum changes nothing at evaluation)."""
    layers = []
    for spec in description["layers"]:
        kind = spec["kind"]
        if kind == "Dropout":
            continue
        settings = {k: v for k, v in spec.items() if k not in ("kind", "name")}
        if kind == "LogitAdjustment":
            settings = {"classes": len(settings["prior"])}
        if kind in ("BatchNorm2D", "BatchNorm1D"):
            settings = {"eps": float(np.float32(settings["eps"]))}
        if layers and {layers[-1][0], kind} == {"ReLU", "MaxPool2D"}:
            pool = settings if kind == "MaxPool2D" else layers[-1][1]
            layers[-1] = ("ReLUMaxPool2D", pool)
            continue
        layers.append((kind, settings))
    return list(description["input"]), layers
