"""The tinynet LeNet in PyTorch, for the speed comparison in bench/speed.py (PyTorch is optional
and never a dependency of tinynet).

Same architecture, float32, NCHW, as ``tinynet.nn.model.lenet`` without dropout:

    conv 20@5x5 (valid) -> ReLU -> maxpool 2 -> conv 50@5x5 (valid) -> ReLU -> maxpool 2
    -> flatten (800, in C,H,W order) -> dense 500 -> ReLU -> dense num_classes (logits)

``load_tinynet_weights`` copies a tinynet ``state_dict()`` into it, so both libraries can start
from identical weights (tinynet's dense weights are (in, out); PyTorch's Linear wants (out, in)).
"""

import numpy as np
import torch
from torch import nn


def torch_lenet(num_classes=47):
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(800, 500), nn.ReLU(),
        nn.Linear(500, num_classes))


# tinynet parameter name -> (index in the Sequential above, attribute, transpose?)
_MAPPING = {
    "conv1.W": (0, "weight", False), "conv1.b": (0, "bias", False),
    "conv2.W": (3, "weight", False), "conv2.b": (3, "bias", False),
    "fc1.W": (7, "weight", True), "fc1.b": (7, "bias", False),
    "fc2.W": (9, "weight", True), "fc2.b": (9, "bias", False),
}


def load_tinynet_weights(model, state):
    """Copy tinynet's ``{"conv1.W": array, ...}`` into ``model`` (from :func:`torch_lenet`)."""
    if set(state) != set(_MAPPING):
        raise ValueError(f"expected parameters {sorted(_MAPPING)}, got {sorted(state)}")
    with torch.no_grad():
        for name, (index, attr, transpose) in _MAPPING.items():
            value = np.asarray(state[name], dtype=np.float32)
            if transpose:
                value = value.T
            target = getattr(model[index], attr)
            if tuple(target.shape) != value.shape:
                raise ValueError(f"{name}: shape {value.shape} does not fit {tuple(target.shape)}")
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return model
