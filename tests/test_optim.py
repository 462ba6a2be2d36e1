"""The SGD update rules and learning-rate schedules, checked against the equations written out by
hand for a couple of steps."""

import math

import numpy as np
import pytest

from tinynet.nn.layers import Dense
from tinynet.nn.model import Sequential
from tinynet.nn.optim import SGD, learning_rate


def one_layer_model(rng):
    model = Sequential([Dense(3, 2, rng=rng, name="fc")]).astype(np.float64)
    model.layers[0].params["b"][:] = [1.0, -1.0]
    return model


def set_grads(model, g):
    for layer in model.layers:
        layer.grads = {k: np.full_like(v, g) for k, v in layer.params.items()}


def test_plain_sgd(rng):
    """p <- p - lr * g."""
    model = one_layer_model(rng)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    set_grads(model, 2.0)
    SGD(lr=0.1).step(model)
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v, before[k] - 0.2)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_two_steps(nesterov, rng):
    """Constant gradient g = 1, momentum 0.9, lr 0.1:
    v1 = 1, v2 = 1.9; classical moves lr*v (0.1 then 0.19);
    Nesterov moves lr*(g + mu*v) (0.19 then 0.271)."""
    model = one_layer_model(rng)
    w0 = model.state_dict()["fc.W"].copy()
    opt = SGD(lr=0.1, momentum=0.9, nesterov=nesterov)
    for _ in range(2):
        set_grads(model, 1.0)
        opt.step(model)
    moved = 0.19 + 0.271 if nesterov else 0.1 + 0.19
    np.testing.assert_allclose(model.state_dict()["fc.W"], w0 - moved)
    np.testing.assert_allclose(opt.state_dict()["fc.W"], 1.9)


def test_weight_decay_applies_to_weights_not_biases(rng):
    """g <- g + wd * p for weights (ndim > 1); biases are not decayed."""
    model = one_layer_model(rng)
    w0 = model.state_dict()["fc.W"].copy()
    set_grads(model, 0.0)
    SGD(lr=0.5, weight_decay=0.1).step(model)
    np.testing.assert_allclose(model.state_dict()["fc.W"], w0 * (1 - 0.05))
    np.testing.assert_allclose(model.state_dict()["fc.b"], [1.0, -1.0])


class Parameters:
    """What SGD.step reads from a model: (name, param, grad) triples; here a weight matrix and a bias."""

    def __init__(self, rng):
        self.params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def parameters(self):
        for k in self.params:
            yield k, self.params[k], self.grads[k]


@pytest.mark.parametrize("momentum, nesterov, weight_decay",
                         [(0.0, False, 0.0), (0.0, False, 0.01), (0.9, False, 0.0), (0.9, False, 0.01),
                          (0.9, True, 0.0), (0.9, True, 0.01), (0.5, True, 0.1)])
def test_sgd_follows_the_written_recurrences(momentum, nesterov, weight_decay, rng):
    """Over 8 steps with random gradients, SGD.step equals docs/backprop.md's recurrences written
    out here: g = dL/dtheta + lambda * theta (weights only), v = mu * v + g, and
    theta -= eta * (g + mu * v) with Nesterov, eta * v with momentum, eta * g without."""
    model, lr = Parameters(rng), 0.1
    theta = {k: v.copy() for k, v in model.params.items()}
    v = {k: np.zeros_like(p) for k, p in theta.items()}
    sgd = SGD(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for _ in range(8):
        for k in theta:
            model.grads[k][...] = rng.standard_normal(theta[k].shape)
        for k in theta:  # the written recurrences
            g = model.grads[k] + (weight_decay * theta[k] if k == "W" else 0.0)
            v[k] = momentum * v[k] + g
            step = g + momentum * v[k] if nesterov else v[k] if momentum else g
            theta[k] = theta[k] - lr * step
        sgd.step(model)
        for k in theta:
            np.testing.assert_allclose(model.params[k], theta[k], rtol=1e-13, atol=1e-15)
    if momentum:
        np.testing.assert_allclose(sgd.state_dict()["W"], v["W"], rtol=1e-13)


def test_nesterov_parameters_are_the_look_ahead_points():
    """Sutskever's Nesterov takes the gradient at the look-ahead point theta - eta mu v; tinynet's
    parameters, after each step on f(theta) = sum(a * theta**2) / 2, are exactly those points
    (docs/backprop.md derives it)."""
    a, lr, mu = np.array([1.0, 10.0, 0.1]), 0.05, 0.9
    gradient = lambda theta: a * theta  # noqa: E731
    theta, v = np.array([1.0, -1.0, 2.0]), np.zeros(3)
    model = Parameters(np.random.default_rng(0))
    model.params = {"theta": theta.copy()}
    model.grads = {"theta": np.zeros(3)}
    sgd = SGD(lr=lr, momentum=mu, nesterov=True)
    for _ in range(30):
        v = mu * v + gradient(theta - lr * mu * v)  # the look-ahead form
        theta = theta - lr * v
        model.grads["theta"][...] = gradient(model.params["theta"])
        sgd.step(model)
        np.testing.assert_allclose(model.params["theta"], theta - lr * mu * v, rtol=1e-12, atol=1e-15)
    # and the two forms do differ from classical momentum on the same problem
    classical = Parameters(np.random.default_rng(0))
    classical.params = {"theta": np.array([1.0, -1.0, 2.0])}
    classical.grads = {"theta": np.zeros(3)}
    plain = SGD(lr=lr, momentum=mu)
    for _ in range(30):
        classical.grads["theta"][...] = gradient(classical.params["theta"])
        plain.step(classical)
    assert np.abs(classical.params["theta"] - model.params["theta"]).max() > 1e-3


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="momentum"):
        SGD(lr=0.1, nesterov=True)


@pytest.mark.parametrize("schedule, step, expected", [
    ("constant", 500, 0.1),
    ("step", 499, 0.1), ("step", 500, 0.01), ("step", 750, 0.001),
    ("cosine", 0, 0.1), ("cosine", 500, 0.05), ("cosine", 1000, 0.0),
    ("one-cycle", 0, 0.1 / 25), ("one-cycle", 300, 0.1), ("one-cycle", 1000, 0.1 / 1e4),
])
def test_learning_rate_schedules(schedule, step, expected):
    """Key points of each schedule over 1000 steps with base rate 0.1."""
    assert math.isclose(learning_rate(schedule, 0.1, step, 1000), expected, rel_tol=1e-9, abs_tol=1e-15)


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        learning_rate("linear", 0.1, 0, 10)
