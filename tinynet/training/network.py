"""The network a run trains, from what the caller gives (``Trainer(..., network=...)``, ``train.py
--model``) and the run's data and recipe:

- ``None`` or a preset's name (``"lenet"``, ``"mlp"``): that preset for the data's classes and
  image size, with the recipe's dropout and, for ``class_balance="prior"``, the training labels'
  class prior (``tinynet.nn.model.PRESETS``);
- a description (``tinynet.nn.describe``; its ``"input"`` may be left out: the data's image size),
  to which the recipe adds the same dropout and prior layers
  (``tinynet.nn.model.with_dropout_and_prior``); a preset's own form (``{"name": "mlp"}``) too;
- a ``Sequential``: trained as it is, from the weights it has (in place: the caller's model is the
  run's), so the recipe may not ask for dropout or a prior it would have to add.

Whichever it is, the checkpoints store its description. A LeNet for 28 x 28 images is stored in the
preset form every checkpoint has had (``{"name": "lenet", "num_classes": 47, "dropout": 0.0}``), so
that older tinynet versions still read and resume new LeNet runs; any other network is stored
written out in full (its layers), which no change to a preset can ever alter.
"""

from ..nn.describe import DescriptionError, check, describe
from ..nn.model import EMNIST_INPUT, PRESETS, expand, with_dropout_and_prior
from .data import class_prior
from .errors import NetworkError


def run_architecture(network, config, data):
    """``(architecture, model)`` of a new run: the description its checkpoints store, and the
    ``Sequential`` given (None when the run builds it from the description). NetworkError (its
    message naming the layer) for a network that cannot be built or does not fit the data."""
    classes, shape = len(data.classes), data.input_shape
    prior = (class_prior(data.labels[data.train_idx], classes).tolist()
             if config.class_balance == "prior" else None)
    model = None
    try:
        if network is None or isinstance(network, str):
            architecture = _preset(network or "lenet", classes, shape, config.dropout, prior)
        elif isinstance(network, dict) and "name" in network:
            architecture = _preset(network["name"], classes, shape, config.dropout, prior, network)
        elif isinstance(network, dict):
            architecture = with_dropout_and_prior({"input": list(shape), **network}, config.dropout, prior)
        elif hasattr(network, "layers"):
            architecture, model = _as_given(network, config, shape, prior), network
        else:
            raise NetworkError(f"a network is a preset's name ({', '.join(PRESETS)}), a description (a dict) "
                               f"or a Sequential, not a {type(network).__name__}")
        plan = check(expand(architecture))
    except DescriptionError as e:
        raise NetworkError(str(e)) from None
    if plan.shapes[0] != shape:
        raise NetworkError(f"the network takes inputs of shape {plan.shapes[0]}, the data's images are "
                           f"{shape} (a description may leave its \"input\" out: the data's is used)")
    if plan.shapes[-1] != (classes,):
        raise NetworkError(f"the network gives {plan.shapes[-1][0]} logits, the data has {classes} classes "
                           f"(its last Dense layer needs out_features {classes})")
    return architecture, model


def _preset(name, classes, shape, dropout, prior, given=None):
    """The architecture of preset ``name`` for this data and recipe (``given``: the preset form the
    caller wrote, whose own values win)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise NetworkError(f"unknown preset {name!r} (the presets: {', '.join(PRESETS)})"[:300])
    architecture = {"name": name, "num_classes": classes, "dropout": dropout}
    if prior is not None:
        architecture["class_prior"] = prior
    if shape != EMNIST_INPUT:
        architecture["input"] = list(shape)
    architecture.update(given or {})
    if name == "lenet" and "input" not in architecture:
        return architecture  # the form every LeNet checkpoint has had (see the module docstring)
    return expand(architecture)


def _as_given(model, config, shape, prior):
    """The description of a ``Sequential`` a run trains as it is, for the data's input size."""
    if config.dropout or prior is not None:
        raise NetworkError("a Sequential is trained as it is: put Dropout and LogitAdjustment layers in it "
                           "yourself instead of asking the recipe for dropout or class_balance='prior' "
                           "(or give its description, describe(model), to have them added)")
    if getattr(model, "input_shape", None) is None:
        model.input_shape = shape
    return describe(model)

