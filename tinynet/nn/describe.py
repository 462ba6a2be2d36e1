"""A network as data: the description of a ``Sequential`` of tinynet's layers, checked (:func:`check`)
and built (:func:`build_layers`; ``tinynet.nn.model.build_model`` wraps it) here, and written down
from any such model (:func:`describe`). One table, :data:`KINDS`, says for every kind of layer what
its settings are, what shape it gives and how to build it.

The format
----------
A description is a JSON-able dict; checkpoints store it as their ``architecture``::

    {"input": [C, H, W],
     "layers": [{"kind": KIND, "name": NAME, SETTING: VALUE, ...}, ...]}

- ``input``: the shape of one image. tinynet's data has one channel: ``[1, H, W]`` (EMNIST: 28 x 28).
- ``kind``: the layer's class name, a key of :data:`KINDS`.
- ``name``: the layer's name, unique in the network: its parameters are ``NAME.W`` and ``NAME.b``
  (batch normalisation's ``NAME.gamma``, ``NAME.beta`` and its state ``NAME.running_mean``,
  ``NAME.running_var``), the checkpoint's array names. Letters, digits, ``_`` and ``-``, at most 64, not ``optimizer``
  or ``extra`` (the checkpoint's other arrays). Optional: a layer without one is named by its
  position (``"0"``, ``"1"``, ...), as ``Sequential`` names it.
- the settings: the keyword arguments of the layer's constructor, except what the chain of layers
  gives (a layer's input channels or features are the output of the layer before it) and what is
  not the network's shape (the initialisation, the random generator). A setting with a default may
  be left out; :func:`describe` writes every one.

    KIND             SETTINGS (default)                 ONE IMAGE: INPUT -> OUTPUT
    Conv2D           out_channels, kernel_size,         (C, H, W) -> (out_channels, OH, OW) with
                     stride (1), padding (0)            OH = (H + 2 padding - kernel_size) // stride + 1
    MaxPool2D        size, stride (= size)              (C, H, W) -> (C, (H - size) // stride + 1, ...)
    ReLUMaxPool2D    size, stride (= size)              as MaxPool2D (a ReLU fused in: same values)
    ReLU             -                                  any shape, unchanged
    Flatten          -                                  any shape -> (C * H * W,)
    Dense            out_features                       (F,) -> (out_features,)
    BatchNorm2D      eps (1e-5), momentum (0.1)         (C, H, W), unchanged (one gamma, beta per channel)
    BatchNorm1D      eps (1e-5), momentum (0.1)         (F,), unchanged (one gamma, beta per feature)
    Dropout          p (a probability in [0, 1))        any shape, unchanged
    LogitAdjustment  prior (K positive frequencies)     (K,) -> (K,)

Integers are JSON integers (``5``, not ``5.0``); ``p``, ``prior``, ``eps`` (> 0) and ``momentum``
(in [0, 1], the running statistics' update rate, PyTorch's meaning) are numbers. The last layer gives
the logits: one value per class, shape (K,).

The LeNet (``tinynet.nn.model.lenet(47)``), written out::

    {"input": [1, 28, 28], "layers": [
      {"kind": "Conv2D", "name": "conv1", "out_channels": 20, "kernel_size": 5, "stride": 1, "padding": 0},
      {"kind": "ReLUMaxPool2D", "name": "pool1", "size": 2, "stride": 2},
      {"kind": "Conv2D", "name": "conv2", "out_channels": 50, "kernel_size": 5, "stride": 1, "padding": 0},
      {"kind": "ReLUMaxPool2D", "name": "pool2", "size": 2, "stride": 2},
      {"kind": "Flatten", "name": "flatten"},
      {"kind": "Dense", "name": "fc1", "out_features": 500},
      {"kind": "ReLU", "name": "relu3"},
      {"kind": "Dense", "name": "fc2", "out_features": 47}]}

A *preset* is a named description, ``{"name": "lenet" | "mlp", "num_classes": K}`` with optionally
``"dropout": p``, ``"class_prior": [...]`` and ``"input": [1, H, W]``; ``tinynet.nn.model`` holds the
presets and turns one into its layers (``expand``). Either form goes wherever a description does.

Checking and building
---------------------
:func:`check` reads a description without allocating anything: every kind known, every setting
known, present (or defaulted) and of the right type and range, names valid and unique, the shapes
chaining from the input, the last layer giving (K,); and bounded what a network may cost, before it
is built: its parameters (:data:`MAX_PARAMETERS`), the values one image makes it hold over every
layer, outputs and scratch arrays together (:data:`MAX_IMAGE_VALUES`), the floating-point
operations of one image's forward pass (:data:`MAX_IMAGE_FLOPS`) and its layers
(:data:`MAX_LAYERS`). These are tinynet's one set of bounds on a network, whichever way it comes in
(a description, a checkpoint, an ONNX file). A fault raises :class:`DescriptionError` naming the
layer: ``layer 5 ('fc1', Dense): ...``.

:func:`build_layers` then draws the weights from ``rng``, layer by layer in order: ``init``
(``"glorot"`` or ``"he"``) for every layer but the last Dense one, which gives the logits and is
always Glorot-initialised (small initial logits: the loss starts near ln K). The first layer skips
the gradient of its input (nobody needs the image's). So the LeNet built from its description is
bitwise the LeNet ``lenet()`` has always built. The ``Sequential`` that ``build_model`` returns
knows its ``input_shape`` (the description's ``input``); ``tinynet.nn.model.input_shape(model)``
reads it, (1, 28, 28) for a model put together by hand that does not say.

Adding a kind of layer
----------------------
1. Write the layer (``tinynet/nn/layers.py`` has the examples): ``forward``, ``backward`` with the
   backprop equation in its docstring, ``params`` and ``grads``; keep each setting as an attribute
   named like its constructor argument. Check its gradient (``tinynet.nn.gradcheck.check_layer``).
2. Add one :class:`LayerKind` to :data:`KINDS` (in your own code: ``register(LayerKind(...))``):
   the layer's settings (each a :class:`Setting`: its check and its default), its output shape for
   an input shape, how to build it, and what it costs: its parameter count, its scratch values and
   its floating-point operations per image.

From then on every tool takes networks with that layer: descriptions, checkpoints (save, load,
resume), training, prediction, the drawing page. (ONNX export wants a writer too:
``tinynet.onnx.export.WRITERS``.)
"""

import math
import numbers
import re
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ArgumentError
from .layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, LogitAdjustment, MaxPool2D,
                     ReLU, ReLUMaxPool2D)

MAX_LAYERS = 1_000
# What a network may cost, checked before it is built (the LeNet for 47 classes: 449,617 parameters,
# 70,327 values and 4.6 million floating-point operations per image)
MAX_PARAMETERS = 1 << 24   # 16.8 million values, 64 MB of float32
MAX_IMAGE_VALUES = 1 << 20  # values one image makes the network hold, every layer's output and scratch (4 MB)
MAX_IMAGE_FLOPS = 1 << 30   # floating-point operations of one image's forward pass
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
RESERVED_NAMES = ("optimizer", "extra")  # the checkpoint's other arrays: optimizer.*, extra.*
REQUIRED = None  # Setting.default of a setting that must be given


class DescriptionError(ArgumentError):
    """A network description that cannot be built; the one-line message names the layer (its
    index, name and kind) and the fault."""


@dataclass(frozen=True)
class Setting:
    """One setting of a kind of layer: ``check(value)`` returns the value as the description keeps
    it or raises ValueError saying what it must be; ``default`` is the value when it is left out
    (:data:`REQUIRED`: it must be given; a function: computed from the other settings)."""

    check: Callable
    default: object = REQUIRED


@dataclass(frozen=True)
class LayerKind:
    """How one class of layer is described, checked and built (see the module docstring).

    - ``layer``: the class; its ``__name__`` is the description's ``kind``.
    - ``settings``: setting name -> :class:`Setting`, in the order descriptions write them.
    - ``output_shape(shape, settings)``: one image's output shape (a tuple of ints) for one image's
      input ``shape``; ValueError with a short reason when the layer cannot take that input.
    - ``build(shape, settings, rng, init, name)``: the layer, for inputs of ``shape``.
    - ``parameters(shape, settings)``: how many parameter values it holds (default: none).
    - ``scratch(shape, settings)``: the values of the scratch arrays it keeps per image (default:
      none), counted with its output in :data:`MAX_IMAGE_VALUES`.
    - ``flops(shape, settings)``: the floating-point operations of one image's forward pass
      (default: one per output value).
    """

    layer: type
    settings: dict
    output_shape: Callable
    build: Callable
    parameters: Callable = field(default=lambda shape, s: 0)
    scratch: Callable = field(default=lambda shape, s: 0)
    flops: Callable = field(default=None)  # None: one per output value


# --- the checks of settings' values ----------------------------------------------------------------

def positive_int(value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"must be an integer >= 0, got {value!r}")
    return int(value)


def probability(value):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value)
            or not 0 <= value < 1):
        raise ValueError(f"must be a number in [0, 1), got {value!r}")
    return float(value)


def positive_number(value):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value)
            or not value > 0):
        raise ValueError(f"must be a positive finite number, got {value!r}")
    return float(value)


def fraction(value):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value)
            or not 0 <= value <= 1):
        raise ValueError(f"must be a number in [0, 1], got {value!r}")
    return float(value)


def frequencies(value):
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
            or not all(math.isfinite(v) and v > 0 for v in value)):
        raise ValueError("must be a non-empty list of positive finite numbers")
    return [float(v) for v in value]


# --- shapes -------------------------------------------------------------------------------------------

def _planes(shape, what):
    """(C, H, W) of an image-shaped input; ValueError for a flat one."""
    if len(shape) != 3:
        raise ValueError(f"{what} needs (C, H, W) feature maps, but its input has shape {shape} "
                         f"(it cannot come after a Flatten or a Dense layer)")
    return shape


def _windows(side, window, stride, padding=0):
    """Outputs along one side of a sliding window (conv or pool); ValueError when none fits."""
    if side + 2 * padding < window:
        raise ValueError(f"its {window}x{window} window does not fit its input's side of {side}"
                         + (f" (+ padding {padding} on each edge)" if padding else ""))
    return (side + 2 * padding - window) // stride + 1


def conv_shape(shape, s):
    _, h, w = _planes(shape, "a convolution")
    k, stride, pad = s["kernel_size"], s["stride"], s["padding"]
    return (s["out_channels"], _windows(h, k, stride, pad), _windows(w, k, stride, pad))


def pool_shape(shape, s):
    c, h, w = _planes(shape, "max-pooling")
    return (c, _windows(h, s["size"], s["stride"]), _windows(w, s["size"], s["stride"]))


def same_shape(shape, s):
    return tuple(shape)


def flat_shape(shape, s):
    return (math.prod(shape),)


def _features(shape, what):
    if len(shape) != 1:
        raise ValueError(f"{what} takes a flat (features,) input, but its input has shape {shape}: "
                         f"put a Flatten before it")
    return shape[0]


def dense_shape(shape, s):
    _features(shape, "a Dense layer")
    return (s["out_features"],)


def channels_shape(shape, s):
    _planes(shape, "BatchNorm2D (batch normalisation per channel)")
    return tuple(shape)


def features_shape(shape, s):
    _features(shape, "BatchNorm1D (batch normalisation per feature)")
    return tuple(shape)


def prior_shape(shape, s):
    k = _features(shape, "a logit adjustment")
    if len(s["prior"]) != k:
        raise ValueError(f"its prior has {len(s['prior'])} entries for the {k} logits it corrects")
    return tuple(shape)


# --- the table ----------------------------------------------------------------------------------------

BATCHNORM_SETTINGS = {"eps": Setting(positive_number, 1e-5), "momentum": Setting(fraction, 0.1)}
# batch normalisation keeps x_hat (one value per output) for its backward pass; it takes a
# subtraction, a multiplication, a multiplication and an addition per value (x - mu, / sigma, gamma, beta)
BATCHNORM_NORMALISED = lambda shape, s: math.prod(shape)  # noqa: E731
BATCHNORM_FLOPS = lambda shape, s: 4 * math.prod(shape)  # noqa: E731
POOL_SETTINGS = {"size": Setting(positive_int), "stride": Setting(positive_int, lambda s: s["size"])}
POOL_WINNERS = lambda shape, s: math.prod(pool_shape(shape, s))  # noqa: E731 (the index of each maximum)
POOL_COMPARISONS = lambda shape, s: math.prod(pool_shape(shape, s)) * s["size"] ** 2  # noqa: E731

KINDS = {kind.layer.__name__: kind for kind in (
    LayerKind(Conv2D,
              {"out_channels": Setting(positive_int), "kernel_size": Setting(positive_int),
               "stride": Setting(positive_int, 1), "padding": Setting(non_negative_int, 0)},
              conv_shape,
              lambda shape, s, rng, init, name: Conv2D(shape[0], rng=rng, init=init, name=name, **s),
              parameters=lambda shape, s: s["out_channels"] * (shape[0] * s["kernel_size"] ** 2 + 1),
              # im2col's matrix: one row of kernel_size^2 * C values per output position
              scratch=lambda shape, s: math.prod(conv_shape(shape, s)[1:]) * shape[0] * s["kernel_size"] ** 2,
              # a multiply and an add per weight, at every output position
              flops=lambda shape, s: 2 * math.prod(conv_shape(shape, s)) * shape[0] * s["kernel_size"] ** 2),
    LayerKind(MaxPool2D, POOL_SETTINGS, pool_shape,
              lambda shape, s, rng, init, name: MaxPool2D(name=name, **s),
              scratch=POOL_WINNERS, flops=POOL_COMPARISONS),
    LayerKind(ReLUMaxPool2D, POOL_SETTINGS, pool_shape,
              lambda shape, s, rng, init, name: ReLUMaxPool2D(name=name, **s),
              scratch=POOL_WINNERS, flops=POOL_COMPARISONS),
    LayerKind(ReLU, {}, same_shape, lambda shape, s, rng, init, name: ReLU(name=name)),
    LayerKind(Flatten, {}, flat_shape, lambda shape, s, rng, init, name: Flatten(name=name)),
    LayerKind(Dense, {"out_features": Setting(positive_int)}, dense_shape,
              lambda shape, s, rng, init, name: Dense(shape[0], rng=rng, init=init, name=name, **s),
              parameters=lambda shape, s: (shape[0] + 1) * s["out_features"],
              flops=lambda shape, s: 2 * shape[0] * s["out_features"]),
    LayerKind(BatchNorm2D, BATCHNORM_SETTINGS, channels_shape,
              lambda shape, s, rng, init, name: BatchNorm2D(shape[0], name=name, **s),
              parameters=lambda shape, s: 2 * shape[0],  # gamma, beta (the running statistics: state)
              scratch=BATCHNORM_NORMALISED, flops=BATCHNORM_FLOPS),
    LayerKind(BatchNorm1D, BATCHNORM_SETTINGS, features_shape,
              lambda shape, s, rng, init, name: BatchNorm1D(shape[0], name=name, **s),
              parameters=lambda shape, s: 2 * shape[0],
              scratch=BATCHNORM_NORMALISED, flops=BATCHNORM_FLOPS),
    LayerKind(Dropout, {"p": Setting(probability)}, same_shape,
              lambda shape, s, rng, init, name: Dropout(rng=rng, name=name, **s)),
    LayerKind(LogitAdjustment, {"prior": Setting(frequencies)}, prior_shape,
              lambda shape, s, rng, init, name: LogitAdjustment(name=name, **s)),
)}


def register(kind):
    """Add a :class:`LayerKind` to :data:`KINDS` (your own layer, from your own code), replacing
    any of the same class name."""
    if not isinstance(kind, LayerKind):
        raise TypeError(f"register takes a LayerKind, not {type(kind).__name__}")
    KINDS[kind.layer.__name__] = kind


# --- checking ----------------------------------------------------------------------------------------

Plan = namedtuple("Plan", "description shapes parameters")
Plan.__doc__ = """What :func:`check` found: ``description`` written out in full (every setting, every
name), ``shapes`` (one image's shape before each layer, then the output: ``len(layers) + 1``
tuples) and ``parameters`` (how many values the weights hold)."""


def _where(index, name, kind):
    return f"layer {index} ({name!r}, {kind})"


def check(description):
    """The :class:`Plan` of a description (layer form: ``{"input", "layers"}``); DescriptionError
    naming the layer and the fault for one that cannot be built (see the module docstring).
    Allocates nothing that depends on the sizes it declares."""
    if not isinstance(description, dict):
        raise DescriptionError(f"a network description is a dict (a JSON object), not a "
                               f"{type(description).__name__}")
    unknown = sorted(map(str, set(description) - {"input", "layers"}))
    if unknown or "layers" not in description or "input" not in description:
        missing = "input" if "layers" in description else "layers"
        raise DescriptionError('a network description has exactly the keys "input" and "layers"'
                               + (f", not {', '.join(map(repr, unknown))}" if unknown else
                                  f", and this one has no {missing!r}"))
    shape = _input_shape(description["input"])
    layers = description["layers"]
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        raise DescriptionError(f'"layers" must be a list of 1 to {MAX_LAYERS} layers')
    written, shapes, names, cost = [], [shape], set(), Cost()
    for index, spec in enumerate(layers):
        spec = _layer_spec(index, spec, names)
        where = _where(index, spec["name"], spec["kind"])
        kind = KINDS[spec["kind"]]
        settings = {k: v for k, v in spec.items() if k not in ("kind", "name")}
        try:
            out = tuple(kind.output_shape(shape, settings))
            costs = (kind.parameters(shape, settings), kind.scratch(shape, settings),
                     math.prod(out) if kind.flops is None else kind.flops(shape, settings))
        except ValueError as e:
            raise DescriptionError(f"{where}: {e}") from None
        cost.add(where, out, *costs)
        written.append(spec)
        shapes.append(out)
        shape = out
    if len(shape) != 1:
        raise DescriptionError(f"{_where(len(layers) - 1, written[-1]['name'], written[-1]['kind'])}: the "
                               f"last layer must give the logits, one value per class (K,), not {shape}")
    return Plan({"input": list(shapes[0]), "layers": written}, shapes, cost.parameters)


class Cost:
    """What a network costs so far, layer by layer: parameter values, and for one image the values
    held (outputs and scratch) and the floating-point operations; :meth:`add` raises
    DescriptionError naming the layer where a total passes its bound (see the module docstring)."""

    def __init__(self):
        self.parameters = self.values = self.flops = 0

    def add(self, where, out, parameters, scratch, flops):
        self.parameters += parameters
        self.values += math.prod(out) + scratch
        self.flops += flops
        if self.parameters > MAX_PARAMETERS:
            raise DescriptionError(f"{where}: the network would hold more than {MAX_PARAMETERS:,} "
                                   f"parameter values")
        if self.values > MAX_IMAGE_VALUES:
            raise DescriptionError(f"{where}: with its output {out} (and scratch) the network would hold "
                                   f"{self.values:,} values for one image, more than {MAX_IMAGE_VALUES:,}")
        if self.flops > MAX_IMAGE_FLOPS:
            raise DescriptionError(f"{where}: the network would take {self.flops:,} floating-point "
                                   f"operations for one image, more than {MAX_IMAGE_FLOPS:,}")


def _input_shape(value):
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
                       for n in value)):
        raise DescriptionError(f'"input" must be one image\'s shape [C, H, W], three positive integers, '
                               f"got {value!r}"[:300])
    shape = tuple(int(n) for n in value)
    if math.prod(shape) > MAX_IMAGE_VALUES:
        raise DescriptionError(f'"input" {list(shape)} is more than {MAX_IMAGE_VALUES:,} values per image')
    return shape


def _layer_spec(index, spec, names):
    """One layer's entry written out in full: kind, name, then every setting (checked, defaults
    filled in); adds its name to ``names``."""
    if not isinstance(spec, dict):
        raise DescriptionError(f"layer {index}: must be a dict with a \"kind\", not a {type(spec).__name__}")
    kind_name, name = spec.get("kind"), spec.get("name", str(index))
    where = _where(index, name, kind_name)
    if not isinstance(kind_name, str) or kind_name not in KINDS:
        raise DescriptionError(f"{where}: unknown kind of layer (known: {', '.join(KINDS)})"[:500])
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise DescriptionError(f"{where}: a name is 1 to 64 letters, digits, '_' or '-', and not "
                               f"{' or '.join(RESERVED_NAMES)}"[:500])
    if name in names:
        raise DescriptionError(f"{where}: another layer already has this name (names must be unique)")
    names.add(name)
    kind = KINDS[kind_name]
    unknown = sorted(map(str, set(spec) - {"kind", "name"} - set(kind.settings)))
    if unknown:
        takes = ", ".join(kind.settings) or "no settings"
        raise DescriptionError(f"{where}: unknown setting {', '.join(map(repr, unknown))} "
                               f"({kind_name} takes {takes})"[:500])
    out = {"kind": kind_name, "name": name}
    for key, setting in kind.settings.items():
        if key in spec:
            try:
                out[key] = setting.check(spec[key])
            except ValueError as e:
                raise DescriptionError(f"{where}: {key} {e}"[:500]) from None
        elif setting.default is REQUIRED:
            raise DescriptionError(f"{where}: missing setting {key!r}")
        else:
            out[key] = setting.default(out) if callable(setting.default) else setting.default
    return out


# --- building and describing ---------------------------------------------------------------------------

def build_layers(description, rng, init="glorot"):
    """``(layers, input shape)`` of a description (layer form), checked first (:func:`check`); the
    weights drawn from ``rng`` in layer order, with ``init`` for all but the last Dense layer
    (Glorot: see the module docstring)."""
    plan = check(description)
    specs = plan.description["layers"]
    logits = max((i for i, spec in enumerate(specs) if spec["kind"] == "Dense"), default=None)
    layers = []
    for index, (spec, shape) in enumerate(zip(specs, plan.shapes)):
        settings = {k: v for k, v in spec.items() if k not in ("kind", "name")}
        layers.append(KINDS[spec["kind"]].build(shape, settings, rng, "glorot" if index == logits else init,
                                                spec["name"]))
    if hasattr(layers[0], "compute_input_grad"):
        layers[0].compute_input_grad = False  # the image's gradient: nobody needs it
    return layers, plan.shapes[0]


def describe(model, input_shape=None):
    """The description of ``model`` (a ``Sequential`` of layers whose kinds are in :data:`KINDS`),
    written out in full, for inputs of ``input_shape`` (C, H, W) (default: ``model.input_shape``).
    DescriptionError naming the layer for a layer of an unknown kind, or whose weights do not fit
    the layers before it."""
    shape = getattr(model, "input_shape", None) if input_shape is None else input_shape
    if shape is None:
        raise DescriptionError("the model does not say what input it takes: describe(model, (C, H, W)), "
                               "or build it with Sequential(layers, input_shape=(C, H, W))")
    specs = []
    for index, layer in enumerate(model.layers):
        kind = KINDS.get(type(layer).__name__)
        if kind is None or kind.layer is not type(layer):
            raise DescriptionError(f"{_where(index, layer.name, type(layer).__name__)}: not a kind of layer "
                                   f"tinynet knows how to describe; add it with "
                                   f"tinynet.nn.describe.register(LayerKind(...))")
        spec = {"kind": type(layer).__name__, "name": layer.name}
        spec.update({key: _plain(getattr(layer, key)) for key in kind.settings})
        specs.append(spec)
    plan = check({"input": list(shape), "layers": specs})
    for index, (layer, spec, before) in enumerate(zip(model.layers, plan.description["layers"], plan.shapes)):
        settings = {k: v for k, v in spec.items() if k not in ("kind", "name")}
        held = sum(p.size for p in layer.params.values())
        needs = KINDS[spec["kind"]].parameters(before, settings)
        if held != needs:
            raise DescriptionError(f"{_where(index, layer.name, spec['kind'])}: holds {held} parameter values, "
                                   f"but on its input of shape {before} it would hold {needs} (its weights "
                                   f"do not fit the layers before it)")
    return plan.description


def _plain(value):
    """A setting's value as JSON writes it (NumPy scalars and arrays, tuples: plain Python)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
