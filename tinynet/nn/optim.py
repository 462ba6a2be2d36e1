"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay, and learning-rate
schedules. Everything is written out; nothing is imported from a deep-learning framework."""

import math

import numpy as np

from ..errors import ArgumentError


class SGD:
    """SGD on a model's ``parameters()`` (name, param, grad), updating the parameters in place.

    For each parameter p with gradient g (weight decay only on weights, not biases: ndim > 1):
        g = g + weight_decay * p
        v = momentum * v + g                      (v starts at 0)
        p = p - lr * (g + momentum * v)           if nesterov
        p = p - lr * v                            otherwise (momentum = 0 gives plain SGD)
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        if nesterov and momentum <= 0:
            raise ArgumentError("Nesterov momentum needs momentum > 0")
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.velocity = {}

    def step(self, model):
        for name, p, g in model.parameters():
            if self.weight_decay and p.ndim > 1:
                g = g + self.weight_decay * p
            if self.momentum:
                v = self.velocity.get(name)
                if v is None:
                    v = self.velocity[name] = np.zeros_like(p)
                v *= self.momentum
                v += g
                g = g + self.momentum * v if self.nesterov else v
            p -= self.lr * g

    def state_dict(self):
        """Velocity arrays by parameter name (for checkpoints)."""
        return dict(self.velocity)

    def load_state_dict(self, velocity):
        self.velocity = {name: np.array(v) for name, v in velocity.items()}


SCHEDULES = ("constant", "step", "cosine", "one-cycle")


def learning_rate(schedule, base_lr, step, total_steps):
    """The learning rate for optimiser step ``step`` (0-based) of ``total_steps``.

    constant:  base_lr
    step:      base_lr, times 0.1 from 50% of training, times 0.01 from 75%
    cosine:    base_lr * (1 + cos(pi * t)) / 2, with t = step / total_steps
    one-cycle: linear warm-up from base_lr / 25 to base_lr over the first 30% of training, then
               cosine annealing down to base_lr / 1e4 (Smith & Topin, 2017)
    """
    t = min(step / max(total_steps, 1), 1.0)
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * (0.01 if t >= 0.75 else 0.1 if t >= 0.5 else 1.0)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "one-cycle":
        warm = 0.3
        start, end = base_lr / 25.0, base_lr / 1e4
        if t < warm:
            return start + (base_lr - start) * t / warm
        return end + (base_lr - end) * 0.5 * (1.0 + math.cos(math.pi * (t - warm) / (1.0 - warm)))
    raise ArgumentError(f"unknown learning-rate schedule {schedule!r}; expected one of {SCHEDULES}")
