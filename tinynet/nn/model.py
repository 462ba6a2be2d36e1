"""A ``Sequential`` container, the LeNet that tinynet trains, and ``build_model`` (a model from the
architecture description a checkpoint stores)."""

import numpy as np

from ..errors import ArgumentError

from .layers import Conv2D, Dense, Dropout, Flatten, LogitAdjustment, ReLU, ReLUMaxPool2D


class Sequential:
    """Layers applied one after another; backward runs them in reverse.

    Parameters are addressed as ``"<layer name>.<param name>"`` (e.g. ``"conv1.W"``): the names used
    by the optimiser state and by checkpoints. Layers without a name get ``"<index>"``.
    """

    def __init__(self, layers):
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if layer.name is None:
                layer.name = str(i)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ArgumentError(f"layer names must be unique, got {names}")

    def forward(self, x, train=True):
        """x (N, 1, 28, 28) -> logits (N, num_classes)."""
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def backward(self, dout):
        """dL/dlogits -> dL/dx (None when the first layer skips its input gradient); fills grads."""
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def parameters(self):
        """Yields ``(name, param, grad)`` for every parameter array, in layer order."""
        for layer in self.layers:
            for key, value in layer.params.items():
                yield f"{layer.name}.{key}", value, layer.grads[key]

    def state_dict(self):
        """Parameter arrays by name (the arrays themselves, not copies)."""
        return {name: p for name, p, _ in self.parameters()}

    def load_state_dict(self, state):
        """Copy arrays into the parameters; names and shapes must match exactly."""
        expected = {name: p.shape for name, p, _ in self.parameters()}
        got = {name: tuple(np.shape(a)) for name, a in state.items()}
        if expected != got:
            raise ArgumentError(f"parameters do not match the model: expected {expected}, got {got}")
        for layer in self.layers:
            for key, value in layer.params.items():
                value[...] = state[f"{layer.name}.{key}"]

    def astype(self, dtype):
        """Convert every layer's parameters to ``dtype`` (float64 for gradient checks)."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def __repr__(self):
        return "Sequential(\n" + "".join(f"  {layer!r}\n" for layer in self.layers) + ")"


def first_conv(model):
    """The model's first ``Conv2D`` layer (conv1 in the LeNet)."""
    return next(layer for layer in model.layers if isinstance(layer, Conv2D))


def lenet(num_classes=47, *, rng, init="glorot", dropout=0.0, class_prior=None):
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
    """
    conv1 = Conv2D(1, 20, 5, rng=rng, init=init, name="conv1")
    conv1.compute_input_grad = False
    layers = [
        conv1,
        ReLUMaxPool2D(2, name="pool1"),
        Conv2D(20, 50, 5, rng=rng, init=init, name="conv2"),
        ReLUMaxPool2D(2, name="pool2"),
        Flatten(name="flatten"),
        Dense(800, 500, rng=rng, init=init, name="fc1"),
        ReLU(name="relu3"),
    ]
    if dropout:
        layers.append(Dropout(dropout, rng=rng, name="dropout"))
    layers.append(Dense(500, num_classes, rng=rng, init="glorot", name="fc2"))
    if class_prior is not None:
        if len(class_prior) != num_classes:
            raise ArgumentError(f"class prior has {len(class_prior)} entries for {num_classes} classes")
        layers.append(LogitAdjustment(class_prior, name="prior"))
    return Sequential(layers)


def build_model(architecture, rng=None, init="glorot"):
    """The model an ``architecture`` dict describes, e.g. ``{"name": "lenet", "num_classes": 47}``,
    freshly initialised (``init``, from ``rng``)."""
    if architecture.get("name") != "lenet":
        raise ArgumentError(f"unknown architecture {architecture.get('name')!r}")
    return lenet(architecture["num_classes"], rng=rng or np.random.default_rng(0), init=init,
                 dropout=architecture.get("dropout", 0.0), class_prior=architecture.get("class_prior"))
