"""Test-time augmentation: predict each image as the average of the model's probabilities over a
few fixed, slightly transformed copies of it (the image itself among them).

    p(k | x) = (1/V) * sum_v softmax(f(T_v x))[k]

The transforms T_v are small versions of training's augmentation (``tinynet.datasets.augment``), so the model
has seen such copies; averaging over them smooths out a prediction that hangs on one exact
position or slant. It costs V forward passes per image.
"""

import numpy as np

from ..datasets.augment import affine_transform_numba
from ..errors import ArgumentError
from ..nn.layers import softmax

# The views: rotations in degrees about the image centre (0 = the image itself); chosen on the
# resplit's validation split (README: "Inference", --tta).
ROTATIONS = (0.0, -5.0, 5.0)


def rotation_matrix(degrees, size=28):
    """The (2, 3) inverse map (output -> input pixel coordinates) of a rotation about the centre."""
    a = np.deg2rad(degrees)
    inv = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # the rotation by -a
    centre = np.full(2, (size - 1) / 2.0)
    return np.concatenate([inv, (centre - inv @ centre)[:, None]], axis=1)


class TTA:
    """Wraps a model (or a ``DataParallel``): ``forward(x, train=False)`` returns the log of the
    averaged probabilities over the views, so everything that takes logits (softmax, argmax, the
    loss) works on it unchanged."""

    def __init__(self, model, rotations=ROTATIONS):
        self.model, self.rotations = model, tuple(rotations)

    @property
    def layers(self):
        """The wrapped model's layers (what code that inspects a model, e.g. for its class count, reads)."""
        return self.model.layers

    def forward(self, x, train=False):
        if train:
            raise ArgumentError("test-time augmentation is for predicting, not training")
        n, _, h, _ = x.shape
        proba = 0.0
        for degrees in self.rotations:
            view = x if degrees == 0 else affine_transform_numba(
                x, np.repeat(rotation_matrix(degrees, h)[None], n, axis=0), np.empty_like(x))
            proba = proba + softmax(self.model.forward(view, train=False))
        proba = proba / len(self.rotations)
        return np.log(np.maximum(proba, np.finfo(proba.dtype).tiny))  # no -inf where a probability underflowed
