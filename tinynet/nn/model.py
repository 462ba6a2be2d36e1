"""A ``Sequential`` container, the presets (the LeNet that tinynet trains, an MLP) and
``build_model``: a model from a network's description (``tinynet.nn.describe`` has the format),
which is also what a checkpoint stores."""

import numbers

import numpy as np

from ..errors import ArgumentError
from .convpool import backward_pool, forward_pool, fused
from .describe import DescriptionError, build_layers, frequencies, probability
from .layers import Conv2D, MaxPool2D


class Sequential:
    """Layers applied one after another; backward runs them in reverse.

    Parameters are addressed as ``"<layer name>.<param name>"`` (e.g. ``"conv1.W"``): the names used
    by the optimiser state and by checkpoints. Layers without a name get ``"<index>"``.
    ``input_shape``: one image's shape (C, H, W), when known (``build_model`` sets it; a model you
    put together yourself may give it, which lets ``tinynet.nn.describe.describe`` write it down).
    """

    def __init__(self, layers, input_shape=None):
        self.layers = list(layers)
        self.input_shape = None if input_shape is None else tuple(int(n) for n in input_shape)
        for i, layer in enumerate(self.layers):
            if layer.name is None:
                layer.name = str(i)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ArgumentError(f"layer names must be unique, got {names}")

    def forward(self, x, train=True):
        """x (N, C, H, W) -> logits (N, num_classes).

        A ``Conv2D`` followed by a max-pooling layer runs as one step (``tinynet/nn/convpool.py``:
        the same numbers up to rounding, without writing the convolution's whole output to
        memory); every other layer runs on its own."""
        layers, i = self.layers, 0
        while i < len(layers):
            layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, Conv2D) and isinstance(after, MaxPool2D):
                x = forward_pool(layer, x, after, train)
                i += 2
            else:
                x = layer.forward(x, train)
                i += 1
        return x

    def backward(self, dout):
        """dL/dlogits -> dL/dx (None when the first layer skips its input gradient); fills grads.
        A convolution and the pooling after it that ran forward as one step in pooling order
        run backward as one step too (``tinynet/nn/convpool.py``)."""
        layers, i = self.layers, len(self.layers) - 1
        while i >= 0:
            if i > 0 and fused(layers[i - 1], layers[i]):
                dout = backward_pool(layers[i - 1], layers[i], dout)
                i -= 2
            else:
                dout = layers[i].backward(dout)
                i -= 1
        return dout

    def parameters(self):
        """Yields ``(name, param, grad)`` for every parameter array, in layer order."""
        for layer in self.layers:
            for key, value in layer.params.items():
                yield f"{layer.name}.{key}", value, layer.grads[key]

    def states(self):
        """Yields ``(name, array)`` for every array of layer state that is not a parameter (batch
        normalisation's ``"bn1.running_mean"``...), in layer order: saved in checkpoints beside the
        parameters, never trained."""
        for layer in self.layers:
            for key, value in getattr(layer, "state", {}).items():
                yield f"{layer.name}.{key}", value

    def state_dict(self):
        """Parameter arrays by name, then the layers' state arrays (the arrays themselves, not copies)."""
        return {**{name: p for name, p, _ in self.parameters()}, **dict(self.states())}

    def load_state_dict(self, state):
        """Copy arrays into the parameters and the layers' state; names and shapes must match exactly."""
        expected = {name: a.shape for name, a in self.state_dict().items()}
        got = {name: tuple(np.shape(a)) for name, a in state.items()}
        if expected != got:
            raise ArgumentError(f"parameters do not match the model: expected {expected}, got {got}")
        for name, value in self.state_dict().items():
            value[...] = state[name]

    def astype(self, dtype):
        """Convert every layer's parameters to ``dtype`` (float64 for gradient checks)."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def __repr__(self):
        return "Sequential(\n" + "".join(f"  {layer!r}\n" for layer in self.layers) + ")"


def first_conv(model):
    """The model's first ``Conv2D`` layer (conv1 in the LeNet); None when it has none."""
    return next((layer for layer in model.layers if isinstance(layer, Conv2D)), None)


def convolutions(model):
    """The model's ``Conv2D`` layers, in order."""
    return [layer for layer in model.layers if isinstance(layer, Conv2D)]


EMNIST_INPUT = (1, 28, 28)  # one EMNIST image: what a model that does not say takes


def input_shape(model):
    """One image's shape (C, H, W) that ``model`` takes: its ``input_shape``, or for a model that
    does not say (one put together by hand) EMNIST's (1, 28, 28)."""
    return getattr(model, "input_shape", None) or EMNIST_INPUT


# --- presets: named descriptions ------------------------------------------------------------------

def _conv(name, channels, kernel):
    return {"kind": "Conv2D", "name": name, "out_channels": channels, "kernel_size": kernel, "stride": 1,
            "padding": 0}


def _dense(name, features):
    return {"kind": "Dense", "name": name, "out_features": features}


def lenet_description(num_classes=47, dropout=0.0, class_prior=None, input_shape=EMNIST_INPUT):
    """The description of the LeNet of the original recipe (see :func:`lenet`)."""
    layers = [_conv("conv1", 20, 5), {"kind": "ReLUMaxPool2D", "name": "pool1", "size": 2, "stride": 2},
              _conv("conv2", 50, 5), {"kind": "ReLUMaxPool2D", "name": "pool2", "size": 2, "stride": 2},
              {"kind": "Flatten", "name": "flatten"}, _dense("fc1", 500), {"kind": "ReLU", "name": "relu3"},
              _dense("fc2", num_classes)]
    return with_dropout_and_prior({"input": list(input_shape), "layers": layers}, dropout, class_prior)


def mlp_description(num_classes=47, dropout=0.0, class_prior=None, input_shape=EMNIST_INPUT):
    """The description of the MLP preset (see :func:`mlp`)."""
    layers = [{"kind": "Flatten", "name": "flatten"}, _dense("fc1", 300), {"kind": "ReLU", "name": "relu1"},
              _dense("fc2", 100), {"kind": "ReLU", "name": "relu2"}, _dense("fc3", num_classes)]
    return with_dropout_and_prior({"input": list(input_shape), "layers": layers}, dropout, class_prior)


def with_dropout_and_prior(description, dropout=0.0, class_prior=None):
    """``description`` (layer form) with what a training recipe adds to a network: a ``Dropout``
    layer named ``dropout`` of probability ``dropout`` (when > 0) right before the last Dense
    layer (the one that gives the logits), and a ``LogitAdjustment`` named ``prior`` for
    ``class_prior`` (when given) after the last layer. DescriptionError when the network has no
    Dense layer to put the dropout before, or already has a layer of that name."""
    layers = description.get("layers")
    if not isinstance(layers, list):
        return description  # not a description: check() says why
    layers = list(layers)
    names = {spec.get("name") for spec in layers if isinstance(spec, dict)
             and isinstance(spec.get("name"), str)}
    if dropout:
        denses = [i for i, spec in enumerate(layers) if isinstance(spec, dict) and spec.get("kind") == "Dense"]
        last = denses[-1] if denses else None
        if last is None or "dropout" in names:
            raise DescriptionError("dropout: the recipe's Dropout layer goes before the network's last Dense "
                                   + ("layer, and it has none" if last is None else "layer, named "
                                      "'dropout', and the network already has a layer of that name"))
        layers.insert(last, {"kind": "Dropout", "name": "dropout", "p": float(dropout)})
    if class_prior is not None:
        if "prior" in names:
            raise DescriptionError("class prior: the recipe's LogitAdjustment layer is named 'prior', and the "
                                   "network already has a layer of that name")
        layers.append({"kind": "LogitAdjustment", "name": "prior", "prior": [float(v) for v in class_prior]})
    return {**description, "layers": layers}


PRESETS = {"lenet": lenet_description, "mlp": mlp_description}
PRESET_KEYS = ("name", "num_classes", "dropout", "class_prior", "input")


def expand(architecture):
    """The layer form of a description: itself, or a preset's layers (``{"name": "lenet",
    "num_classes": 47, ...}``: see the module docstring of ``tinynet.nn.describe``). Checks the
    preset's values; the layers themselves are checked when built."""
    if not isinstance(architecture, dict):
        raise DescriptionError(f"a network description is a dict (a JSON object), not a "
                               f"{type(architecture).__name__}")
    if "name" not in architecture:
        return architecture
    name = architecture["name"]
    if not isinstance(name, str) or name not in PRESETS:
        raise DescriptionError(f"unknown preset {name!r}"[:200] + f" (the presets: {', '.join(PRESETS)})")
    unknown = sorted(map(str, set(architecture) - set(PRESET_KEYS)))
    if unknown:
        raise DescriptionError(f"preset {name!r}: unknown key {', '.join(map(repr, unknown))}"[:300]
                               + f" (a preset takes {', '.join(PRESET_KEYS)})")
    return PRESETS[name](**_preset_values(name, architecture))


def _preset_values(name, architecture):
    """The keyword arguments of preset ``name``'s description function, checked."""
    K = architecture.get("num_classes")
    if not isinstance(K, numbers.Integral) or isinstance(K, bool) or K < 1:
        raise DescriptionError(f"preset {name!r}: num_classes must be a positive integer, got {K!r}"[:300])
    values = {"dropout": architecture.get("dropout", 0.0), "class_prior": architecture.get("class_prior")}
    for key, check in (("dropout", probability), ("class_prior", frequencies)):
        try:
            values[key] = None if values[key] is None and key == "class_prior" else check(values[key])
        except ValueError as e:
            raise DescriptionError(f"preset {name!r}: {key} {e}") from None
    dropout, prior = values["dropout"], values["class_prior"]
    if prior is not None and len(prior) != K:
        raise DescriptionError(f"preset {name!r}: class prior has {len(prior)} entries for {K} classes")
    shape = architecture.get("input", EMNIST_INPUT)
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        raise DescriptionError(f"preset {name!r}: input must be one image's shape [C, H, W], "
                               f"got {shape!r}"[:300])
    return {"num_classes": int(K), "dropout": dropout, "class_prior": prior, "input_shape": shape}


def build_model(architecture, rng=None, init="glorot"):
    """The ``Sequential`` a description (layer form or preset; ``tinynet.nn.describe``) describes,
    freshly initialised from ``rng`` (default: ``np.random.default_rng(0)``) with ``init``
    (``"glorot"`` or ``"he"``; the last Dense layer always Glorot). DescriptionError (a
    ValueError) naming the layer for a description that cannot be built."""
    rng = rng if rng is not None else np.random.default_rng(0)
    layers, shape = build_layers(expand(architecture), rng, init)
    return Sequential(layers, shape)


def lenet(num_classes=47, *, rng, init="glorot", dropout=0.0, class_prior=None, input_shape=EMNIST_INPUT):
    """The LeNet of the original recipe, for (N, 1, 28, 28) inputs:

        conv1 20@5x5 -> ReLU -> pool 2   (N, 20, 12, 12)
        conv2 50@5x5 -> ReLU -> pool 2   (N, 50, 4, 4)
        flatten (800) -> fc1 500 -> ReLU [-> dropout] -> fc2 num_classes (logits)

    Each ReLU + pool pair is one fused ``ReLUMaxPool2D`` layer (same result, less work).
    ``init``: ``"glorot"`` (Keras's default, as in the original recipe) or ``"he"``; the output layer
    always uses Glorot, so the initial logits are small and the loss starts near ln(num_classes).
    ``dropout``: probability for the dropout layer before fc2 (0 = no dropout layer).
    ``class_prior``: the training set's class frequencies; when given, a ``LogitAdjustment`` layer
    after fc2 corrects the evaluation logits for equally likely classes (None = no correction).
    ``input_shape``: one image's (1, H, W) for other sizes (fc1 then takes what conv2 leaves).
    Built from :func:`lenet_description`: the preset ``{"name": "lenet", "num_classes": ...}``.
    """
    return build_model(lenet_description(num_classes, dropout, class_prior, input_shape), rng, init)


def mlp(num_classes=47, *, rng, init="glorot", dropout=0.0, class_prior=None, input_shape=EMNIST_INPUT):
    """A multilayer perceptron, the preset ``{"name": "mlp", ...}``: LeCun et al.'s LeNet-300-100
    (1998), no convolution at all:

        flatten (H*W) -> fc1 300 -> ReLU -> fc2 100 -> ReLU [-> dropout] -> fc3 num_classes (logits)

    The other arguments as :func:`lenet`'s."""
    return build_model(mlp_description(num_classes, dropout, class_prior, input_shape), rng, init)
