"""A network is data (issue #38): descriptions build any Sequential of tinynet's layers and are
written back from one (describe(build(d)) == d); a description that cannot be built is refused,
before anything is allocated, with an error naming the layer; the presets build the LeNet bitwise
as it always was built; any such network saves and loads; and a layer of one's own joins by one
entry in the table of kinds."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.datasets.load import load_sample
from tinynet.files.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
import tinynet.nn.describe as describe_module
from tinynet.nn.describe import (KINDS, MAX_IMAGE_VALUES, MAX_PARAMETERS, DescriptionError, LayerKind, check, describe,
                                 register, same_shape)
from tinynet.nn.layers import Conv2D, Dense, Dropout, Flatten, Layer, LogitAdjustment, ReLU, ReLUMaxPool2D
from tinynet.nn.model import Sequential, build_model, expand, first_conv, lenet, mlp
from tinynet.predict.predictor import BUNDLED_MODEL, Predictor


def conv(name, channels, kernel, stride=1, padding=0):
    return {"kind": "Conv2D", "name": name, "out_channels": channels, "kernel_size": kernel, "stride": stride,
            "padding": padding}


def dense(name, features):
    return {"kind": "Dense", "name": name, "out_features": features}


def relu(name):
    return {"kind": "ReLU", "name": name}


FLATTEN = {"kind": "Flatten", "name": "flatten"}
# a net with stride-2 convolutions, padding and no pooling (issue #38's third network)
STRIDED = {"input": [1, 28, 28], "layers": [
    conv("conv1", 8, 3, 2, 1), relu("relu1"), conv("conv2", 16, 3, 2, 1), relu("relu2"), FLATTEN,
    dense("fc1", 64), relu("relu3"), {"kind": "Dropout", "name": "drop", "p": 0.1}, dense("fc2", 10)]}
EVERY_KIND = {"input": [1, 20, 24], "layers": [
    conv("c1", 4, 3, 1, 1), {"kind": "MaxPool2D", "name": "p1", "size": 3, "stride": 2}, relu("r1"),
    conv("c2", 6, 2), {"kind": "ReLUMaxPool2D", "name": "p2", "size": 2, "stride": 2}, FLATTEN,
    dense("fc", 5), {"kind": "LogitAdjustment", "name": "prior", "prior": [0.1, 0.2, 0.3, 0.2, 0.2]}]}


def old_lenet(num_classes=47, *, rng, init="glorot", dropout=0.0, class_prior=None):
    """tinynet.nn.model.lenet as it was at 623bf7c (before descriptions), verbatim but for the
    imports: the reference the presets must build bitwise."""
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
            raise ValueError(f"class prior has {len(class_prior)} entries for {num_classes} classes")
        layers.append(LogitAdjustment(class_prior, name="prior"))
    return Sequential(layers)


def assert_same_model(a, b):
    assert [(type(x), x.name) for x in a.layers] == [(type(y), y.name) for y in b.layers]
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and np.array_equal(sa[name], sb[name]), name


@pytest.mark.parametrize("init", ["glorot", "he"])
@pytest.mark.parametrize("dropout, prior", [(0.0, None), (0.25, None), (0.3, np.linspace(1, 3, 47))])
def test_the_lenet_preset_builds_bitwise_the_lenet_of_before(init, dropout, prior):
    """lenet(), build_model of the preset form every checkpoint so far stores, and build_model of
    the written-out layers all draw the same weights as the LeNet of 623bf7c, and compute the same
    logits (the first layer still skips the image's gradient; dropout and prior where they were)."""
    reference = old_lenet(47, rng=np.random.default_rng(5), init=init, dropout=dropout, class_prior=prior)
    preset = {"name": "lenet", "num_classes": 47, "dropout": dropout}
    if prior is not None:
        preset["class_prior"] = prior.tolist()
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    for model in (lenet(47, rng=np.random.default_rng(5), init=init, dropout=dropout, class_prior=prior),
                  build_model(preset, np.random.default_rng(5), init),
                  build_model(expand(preset), np.random.default_rng(5), init)):
        assert_same_model(model, reference)
        assert model.layers[0].compute_input_grad is False
        assert np.array_equal(model.forward(x, train=False), reference.forward(x, train=False))


@pytest.mark.parametrize("description", [
    STRIDED, EVERY_KIND, expand({"name": "lenet", "num_classes": 47}),
    expand({"name": "mlp", "num_classes": 10, "dropout": 0.5, "class_prior": [0.1] * 10, "input": [1, 16, 12]}),
])
def test_descriptions_round_trip(description):
    """describe(build(d)) == d for descriptions written out in full, and JSON keeps them as they are."""
    model = build_model(description, np.random.default_rng(0))
    assert describe(model) == description
    assert json.loads(json.dumps(describe(model))) == description
    n, (c, h, w) = 2, description["input"]
    logits = model.forward(np.random.default_rng(1).random((n, c, h, w), dtype=np.float32), train=False)
    assert logits.shape == (n, check(description).shapes[-1][0])


def test_settings_with_defaults_may_be_left_out_and_describe_writes_them():
    short = {"input": [1, 12, 12], "layers": [
        {"kind": "Conv2D", "out_channels": 3, "kernel_size": 3}, {"kind": "MaxPool2D", "size": 2},
        {"kind": "Flatten"}, {"kind": "Dense", "out_features": 4}]}
    full = describe(build_model(short))
    assert full["layers"] == [conv("0", 3, 3), {"kind": "MaxPool2D", "name": "1", "size": 2, "stride": 2},
                              {"kind": "Flatten", "name": "2"}, dense("3", 4)]
    assert check(short).description == full and check(short).shapes == [(1, 12, 12), (3, 10, 10), (3, 5, 5),
                                                                         (75,), (4,)]


def test_a_sequential_put_together_by_hand_is_described():
    """A model built from layers, not from a description: described for the input it is given
    (or its own input_shape), and refused where its weights do not fit the layers before it."""
    rng = np.random.default_rng(0)
    layers = [Flatten(name="flat"), Dense(400, 32, rng=rng, name="hidden"), ReLU(name="act"),
              Dense(32, 7, rng=rng, name="out")]
    description = describe(Sequential(layers), (1, 20, 20))
    assert description == {"input": [1, 20, 20], "layers": [
        {"kind": "Flatten", "name": "flat"}, dense("hidden", 32), relu("act"), dense("out", 7)]}
    assert describe(Sequential(layers, input_shape=(1, 20, 20))) == description
    with pytest.raises(DescriptionError, match=r"does not say what input it takes"):
        describe(Sequential(layers))
    with pytest.raises(DescriptionError, match=r"layer 1 \('hidden', Dense\): holds 12832 parameter values, but "
                                               r"on its input of shape \(784,\) it would hold 25120"):
        describe(Sequential(layers), (1, 28, 28))

    class Tanh(Layer):  # a learner's own layer, not (yet) in the table of kinds
        pass

    with pytest.raises(DescriptionError, match=r"layer 0 \('0', Tanh\): not a kind of layer tinynet knows"):
        describe(Sequential([Tanh(), Flatten(), Dense(4, 2, rng=rng)]), (1, 2, 2))


def broken(index, **changes):
    """STRIDED with layer ``index`` changed (a value of None removes that key)."""
    description = json.loads(json.dumps(STRIDED))
    spec = description["layers"][index]
    for key, value in changes.items():
        spec.pop(key) if value is None else spec.__setitem__(key, value)
    return description


@pytest.mark.parametrize("description, message", [
    (broken(0, kind="Conv3D"), r"layer 0 \('conv1', Conv3D\): unknown kind of layer \(known: Conv2D, "),
    (broken(0, kind=None), r"layer 0 \('conv1', None\): unknown kind of layer"),
    (broken(0, kernel_size=None), r"layer 0 \('conv1', Conv2D\): missing setting 'kernel_size'"),
    (broken(0, kernal_size=3), r"layer 0 \('conv1', Conv2D\): unknown setting 'kernal_size' \(Conv2D takes "
                               r"out_channels, kernel_size, stride, padding\)"),
    (broken(0, out_channels=8.0), r"layer 0 \('conv1', Conv2D\): out_channels must be a positive integer, got 8.0"),
    (broken(0, stride=0), r"layer 0 \('conv1', Conv2D\): stride must be a positive integer, got 0"),
    (broken(0, padding=-1), r"layer 0 \('conv1', Conv2D\): padding must be an integer >= 0, got -1"),
    (broken(0, kernel_size=31), r"layer 0 \('conv1', Conv2D\): its 31x31 window does not fit its input's side "
                                r"of 28 \(\+ padding 1 on each edge\)"),
    (broken(2, kernel_size=15, padding=0), r"layer 2 \('conv2', Conv2D\): its 15x15 window does not fit its "
                                           r"input's side of 14"),
    (broken(7, p=1.0), r"layer 7 \('drop', Dropout\): p must be a number in \[0, 1\), got 1.0"),
    (broken(7, p=True), r"layer 7 \('drop', Dropout\): p must be a number in \[0, 1\), got True"),
    (broken(5, out_features="64"), r"layer 5 \('fc1', Dense\): out_features must be a positive integer, got '64'"),
    (broken(5, name="relu1"), r"layer 5 \('relu1', Dense\): another layer already has this name"),
    (broken(5, name="fc.1"), r"layer 5 \('fc.1', Dense\): a name is 1 to 64 letters, digits"),
    (broken(5, name="optimizer"), r"layer 5 \('optimizer', Dense\): a name is .* not optimizer or extra"),
    (broken(4, kind="ReLU"), r"layer 5 \('fc1', Dense\): a Dense layer takes a flat \(features,\) input, but its "
                             r"input has shape \(16, 7, 7\): put a Flatten before it"),
    (dict(STRIDED, layers=STRIDED["layers"][:2]), r"layer 1 \('relu1', ReLU\): the last layer must give the "
                                                  r"logits, one value per class \(K,\), not \(8, 14, 14\)"),
    (dict(STRIDED, layers=[FLATTEN, conv("c", 2, 1)]), r"layer 1 \('c', Conv2D\): a convolution needs \(C, H, W\) "
                                                       r"feature maps, but its input has shape \(784,\)"),
    (dict(STRIDED, layers=STRIDED["layers"] + [{"kind": "LogitAdjustment", "name": "prior", "prior": [1] * 9}]),
     r"layer 9 \('prior', LogitAdjustment\): its prior has 9 entries for the 10 logits it corrects"),
    (dict(STRIDED, layers=STRIDED["layers"] + [{"kind": "LogitAdjustment", "name": "prior", "prior": [0] * 10}]),
     r"layer 9 \('prior', LogitAdjustment\): prior must be a non-empty list of positive finite numbers"),
    (dict(STRIDED, layers=["Conv2D"]), r"layer 0: must be a dict with a \"kind\", not a str"),
    (dict(STRIDED, layers=[]), r'"layers" must be a list of 1 to 1000 layers'),
    (dict(STRIDED, input=[28, 28]), r'"input" must be one image\'s shape \[C, H, W\]'),
    (dict(STRIDED, input=[1, 28, 0]), r'"input" must be one image\'s shape \[C, H, W\]'),
    (dict(STRIDED, inputs=[1, 28, 28]), r'exactly the keys "input" and "layers", not \'inputs\''),
    ({"layers": STRIDED["layers"]}, r'exactly the keys "input" and "layers", and this one has no \'input\''),
    ([1, 2], r"a network description is a dict \(a JSON object\), not a list"),
    ({"name": "resnet", "num_classes": 4}, r"unknown preset 'resnet' \(the presets: lenet, mlp\)"),
    ({"name": "lenet", "num_classes": 4, "hidden": 3}, r"preset 'lenet': unknown key 'hidden'"),
    ({"name": "lenet", "num_classes": 4.0}, r"preset 'lenet': num_classes must be a positive integer, got 4.0"),
    ({"name": "mlp", "num_classes": 4, "dropout": 2}, r"preset 'mlp': dropout must be a number in \[0, 1\)"),
    ({"name": "lenet", "num_classes": 4, "class_prior": [1, 1]}, r"preset 'lenet': class prior has 2 entries for 4"),
    ({"name": "lenet", "num_classes": 4, "input": [1, 8, 8]}, r"layer 2 \('conv2', Conv2D\): its 5x5 window does "
                                                              r"not fit its input's side of 2"),
])
def test_a_description_that_cannot_be_built_is_refused_naming_the_layer(description, message):
    with pytest.raises(DescriptionError, match=message) as error:
        build_model(description)
    assert "\n" not in str(error.value)


def test_sizes_are_bounded_before_anything_is_allocated(monkeypatch):
    """A description cannot make tinynet allocate or compute without bound: its parameters, the
    values one image makes it hold over every layer (outputs and im2col scratch), the floating-point
    operations of one image and the input are checked before any weight is drawn."""
    huge = broken(5, out_features=10**12)
    with pytest.raises(DescriptionError, match=rf"layer 5 \('fc1', Dense\): the network would hold more than "
                                               rf"{MAX_PARAMETERS:,} parameter values"):
        check(huge)
    with pytest.raises(DescriptionError, match=r"layer 0 \('conv1', Conv2D\): with its output \(100000, 14, 14\)"):
        check(broken(0, out_channels=100_000))
    with pytest.raises(DescriptionError, match=r"layer 0 \('conv1', Conv2D\): with its output .* \(and scratch\)"):
        check(dict(broken(0, kernel_size=63, padding=31, stride=1), input=[64, 28, 28]))
    deep = {"input": [1, 64, 64], "layers": [{"kind": "ReLU"}] * 999 + [{"kind": "Flatten"}]}
    with pytest.raises(DescriptionError, match=rf"layer \d+ \('\d+', ReLU\): .* values for one image, more "
                                               rf"than {MAX_IMAGE_VALUES:,}"):
        check(deep)  # each layer small, together more than one image may hold
    wide = {"input": [1, 28, 28], "layers": [{"kind": "Conv2D", "out_channels": 8, "kernel_size": 3},
                                             {"kind": "Flatten"}]}
    assert check(wide)  # 2 * 26 * 26 * 8 * 9 = 97,344 operations: within the bound ...
    monkeypatch.setattr(describe_module, "MAX_IMAGE_FLOPS", 97_343)
    with pytest.raises(DescriptionError, match=r"layer 0 \('0', Conv2D\): the network would take 97,344 "
                                               r"floating-point operations for one image"):
        check(wide)  # ... and one over it
    with pytest.raises(DescriptionError, match=rf'"input" \[1, 4096, 4096\] is more than {MAX_IMAGE_VALUES:,}'):
        check(dict(STRIDED, input=[1, 4096, 4096]))


def test_the_lenets_cost_is_what_the_bounds_are_measured_against():
    """The figures the bounds' comments quote: the LeNet for 47 classes holds 449,617 parameters,
    70,327 values and takes 4,639,020 floating-point operations for one image, far inside every
    bound (its ONNX graph counts 3,680 more of each in ``tinynet.onnx.work``: there each ReLU fused
    into a pool is a node of its own)."""
    plan = check(expand({"name": "lenet", "num_classes": 47}))
    assert plan.parameters == sum(p.size for _, p, _ in build_model(
        {"name": "lenet", "num_classes": 47}).parameters()) == 449_617
    cost = describe_module.Cost()
    for spec, shape, out in zip(plan.description["layers"], plan.shapes, plan.shapes[1:]):
        kind = KINDS[spec["kind"]]
        settings = {k: v for k, v in spec.items() if k not in ("kind", "name")}
        flops = kind.flops(shape, settings) if kind.flops else math.prod(out)
        cost.add(spec["name"], out, kind.parameters(shape, settings), kind.scratch(shape, settings), flops)
    assert (cost.values, cost.flops) == (70_327, 4_639_020)


def test_presets_fill_in_dropout_and_prior_where_the_lenet_had_them():
    """The MLP preset is LeNet-300-100; dropout goes before the last Dense layer and the prior after
    the last layer, in every preset."""
    description = expand({"name": "mlp", "num_classes": 5, "dropout": 0.5, "class_prior": [1, 2, 3, 4, 5]})
    assert [(s["kind"], s["name"]) for s in description["layers"]] == [
        ("Flatten", "flatten"), ("Dense", "fc1"), ("ReLU", "relu1"), ("Dense", "fc2"), ("ReLU", "relu2"),
        ("Dropout", "dropout"), ("Dense", "fc3"), ("LogitAdjustment", "prior")]
    assert check(description).parameters == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 5 + 5
    model = mlp(5, rng=np.random.default_rng(0))
    assert first_conv(model) is None and model.input_shape == (1, 28, 28)
    assert first_conv(lenet(5, rng=np.random.default_rng(0))).name == "conv1"


def test_every_kind_of_network_saves_and_loads(tmp_path):
    """save_checkpoint of any such network (its description written by describe() when none is
    given), load_checkpoint rebuilds it: the same description, weights and logits."""
    for description in (STRIDED, EVERY_KIND, expand({"name": "mlp", "num_classes": 3})):
        model = build_model(description, np.random.default_rng(3), "he")
        classes = [chr(65 + k) for k in range(check(description).shapes[-1][0])]
        path = tmp_path / "model.npz"
        save_checkpoint(path, model, None, classes)
        loaded, meta, _, _ = load_checkpoint(path)
        assert meta["architecture"] == description and meta["input"]["shape"] == description["input"]
        assert_same_model(loaded, model)
        c, h, w = description["input"]
        batch = np.random.default_rng(2).random((4, c, h, w), dtype=np.float32)
        assert np.array_equal(loaded.forward(batch, train=False), model.forward(batch, train=False))


def test_a_checkpoint_whose_architecture_cannot_be_built_is_a_clear_error(tmp_path):
    model = build_model(STRIDED)
    path = tmp_path / "model.npz"
    save_checkpoint(path, model, STRIDED, list("0123456789"))
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(str(arrays["metadata"]))
    meta["architecture"]["layers"][2]["kernel_size"] = 40
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=r"model.npz: unusable architecture: layer 2 \('conv2', Conv2D\): "
                                              r"its 40x40 window does not fit"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="the architecture gives 10 logits for 3 classes"):
        save_checkpoint(path, model, STRIDED, list("abc"))


class Scale(Layer):
    """A learner's own layer: out = x * s, one learnt scale per channel (or feature)."""

    def __init__(self, channels, *, rng, init="he", name=None):
        super().__init__(name)
        self.params = {"s": np.ones(channels, dtype=np.float32)}
        self.grads = {"s": np.zeros(channels, dtype=np.float32)}

    def _shaped(self, a):
        return a.reshape(-1, *([1] * (self.cache.ndim - 2))) if self.cache.ndim > 2 else a

    def forward(self, x, train=True):
        self.cache = x
        return x * self._shaped(self.params["s"])

    def backward(self, dout):
        """ds_c = sum over everything but the channel of dout * x; dx = dout * s."""
        axes = tuple(i for i in range(dout.ndim) if i != 1)
        self.grads["s"] = (dout * self.cache).sum(axis=axes)
        return dout * self._shaped(self.params["s"])


def test_a_layer_of_ones_own_joins_with_one_entry(tmp_path, monkeypatch):
    """register(LayerKind(...)) is all it takes for a new layer to be built from a description,
    described, saved, loaded and predicted with (the kind table is put back afterwards)."""
    monkeypatch.setattr("tinynet.nn.describe.KINDS", dict(KINDS))
    register(LayerKind(Scale, {}, same_shape, lambda shape, s, rng, init, name: Scale(shape[0], rng=rng, name=name),
                       parameters=lambda shape, s: shape[0]))
    description = {"input": [1, 28, 28], "layers": [
        conv("conv1", 4, 5), {"kind": "Scale", "name": "scale"}, relu("relu"), FLATTEN, dense("fc", 3)]}
    model = build_model(description, np.random.default_rng(0))
    model.layers[1].params["s"][:] = [0.5, 1, 2, 3]
    assert describe(model) == description
    save_checkpoint(tmp_path / "m.npz", model, None, list("abc"))
    loaded = load_checkpoint(tmp_path / "m.npz")[0]
    x = np.random.default_rng(1).random((2, 1, 28, 28), dtype=np.float32)
    assert np.array_equal(loaded.forward(x, train=False), model.forward(x, train=False))
    assert isinstance(loaded.layers[1], Scale) and loaded.state_dict()["scale.s"].tolist() == [0.5, 1, 2, 3]


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "main-623bf7c-lenet.npz"


def old_loaded(path):
    """The model 623bf7c's load_checkpoint made of ``path``: old_lenet of its preset, the arrays put in."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["metadata"]))
        arch = meta["architecture"]
        model = old_lenet(arch["num_classes"], rng=np.random.default_rng(0), dropout=arch.get("dropout", 0.0),
                          class_prior=arch.get("class_prior"))
        model.load_state_dict({name: f[name] for name in model.state_dict()})
    return model, meta


@pytest.mark.parametrize("path", [FIXTURE, BUNDLED_MODEL], ids=["written-by-623bf7c", "bundled"])
def test_checkpoints_written_before_load_and_predict_bitwise_the_same(path):
    """A training checkpoint written by 623bf7c's code (tests/fixtures/make_main_checkpoint.py) and
    the bundled model load as the same LeNet, with the same metadata, and give bitwise the
    probabilities the model of before gives on 1,000 real images of the shipped sample."""
    model, meta, optimizer, extra = load_checkpoint(path)
    reference, old_meta = old_loaded(path)
    assert meta == old_meta and meta["architecture"]["name"] == "lenet"
    assert_same_model(model, reference)
    images = load_sample().images[::3][:1000]
    with Predictor(model, meta["classes"]) as new, Predictor(reference, meta["classes"]) as old:
        assert np.array_equal(new.predict_proba(images), old.predict_proba(images))
    if path == FIXTURE:
        assert set(optimizer) == set(model.state_dict()) and extra["order"].tolist() == list(range(12))


@st.composite
def descriptions(draw):
    """A random description that can be built: convolutions and pools that fit the shrinking
    feature maps, activations, a flatten, dense layers, maybe dropout and a prior; names left out
    now and then (Sequential's rule), settings with defaults left out now and then."""
    h, w = draw(st.integers(4, 20)), draw(st.integers(4, 20))
    shape, layers = [1, h, w], []

    def maybe(spec, key, value, default):
        if value != default or draw(st.booleans()):
            spec[key] = value

    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.integers(1, min(h, w, 4)))
        pad = draw(st.integers(0, k // 2))
        stride = draw(st.integers(1, 2))
        spec = {"kind": "Conv2D", "out_channels": draw(st.integers(1, 4)), "kernel_size": k}
        maybe(spec, "stride", stride, 1)
        maybe(spec, "padding", pad, 0)
        layers.append(spec)
        h, w = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        if min(h, w) >= 2 and draw(st.booleans()):
            size = draw(st.integers(1, 2))
            spec = {"kind": draw(st.sampled_from(["MaxPool2D", "ReLUMaxPool2D"])), "size": size}
            maybe(spec, "stride", size, size)
            layers.append(spec)
            h, w = (h - size) // size + 1, (w - size) // size + 1
        elif draw(st.booleans()):
            layers.append({"kind": "ReLU"})
    layers.append({"kind": "Flatten"})
    for _ in range(draw(st.integers(0, 2))):
        layers += [{"kind": "Dense", "out_features": draw(st.integers(1, 8))}, {"kind": "ReLU"}]
    if draw(st.booleans()):
        layers.append({"kind": "Dropout", "p": draw(st.floats(0, 0.9))})
    classes = draw(st.integers(1, 6))
    layers.append({"kind": "Dense", "out_features": classes})
    if draw(st.booleans()):
        layers.append({"kind": "LogitAdjustment", "prior": draw(st.lists(st.floats(0.01, 10), min_size=classes,
                                                                         max_size=classes))})
    for i, spec in enumerate(layers):
        if draw(st.booleans()):
            spec["name"] = f"L{i}"
    return {"input": shape, "layers": layers}


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_descriptions_build_describe_and_save_back(data, tmp_path_factory):
    """Any buildable description: describe(build(d)) is d written out in full (check(d)); that is a
    fixed point, survives JSON and a checkpoint, and the model's logits have the planned shape."""
    description = data.draw(descriptions())
    plan = check(description)
    model = build_model(description, np.random.default_rng(0))
    assert describe(model) == plan.description == check(plan.description).description
    assert json.loads(json.dumps(plan.description)) == plan.description
    c, height, width = plan.shapes[0]
    logits = model.forward(np.random.default_rng(1).random((2, c, height, width), dtype=np.float32), train=False)
    assert logits.shape == (2, *plan.shapes[-1])
    path = tmp_path_factory.mktemp("ckpt") / "m.npz"
    save_checkpoint(path, model, None, [str(k) for k in range(plan.shapes[-1][0])])
    loaded = load_checkpoint(path)[0]
    assert describe(loaded) == plan.description
    assert np.array_equal(loaded.forward(np.ones((1, c, height, width), np.float32), train=False),
                          model.forward(np.ones((1, c, height, width), np.float32), train=False))


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True),
                 st.text(max_size=5), st.lists(st.integers(-1, 3), max_size=3), st.dictionaries(st.text(max_size=2),
                                                                                                st.integers(), max_size=2))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_change_to_a_description_builds_or_is_refused_in_one_line(data):
    """A description with any one value replaced by junk (a kind, a name, a setting, the input, a
    whole layer): either it still builds, or DescriptionError says why in one line; never
    anything else (no TypeError, no NumPy traceback, no huge allocation)."""
    description = json.loads(json.dumps(STRIDED))
    where = data.draw(st.sampled_from(["input", "layers", "layer", "key"]))
    if where in ("input", "layers"):
        description[where] = data.draw(JUNK)
    else:
        i = data.draw(st.integers(0, len(description["layers"]) - 1))
        if where == "layer":
            description["layers"][i] = data.draw(JUNK)
        else:
            key = data.draw(st.sampled_from(["kind", "name", "out_channels", "kernel_size", "stride", "padding",
                                             "out_features", "p", "prior", "size"]))
            description["layers"][i][key] = data.draw(JUNK)
    try:
        build_model(description)
    except DescriptionError as e:
        assert "\n" not in str(e) and len(str(e)) < 600
