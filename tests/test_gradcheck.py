"""The gradient-check helpers themselves (tinynet/nn/gradcheck.py): right on arrays that are views
(``numerical_gradient`` perturbed a reshaped copy of them, and answered zeros), harmless to the layer
they check (``check_layer`` left it in float64, its parameter arrays no longer the model's), and
usable on a first layer whose backward returns None (it raised TypeError)."""

import numpy as np
import pytest

from tinynet.nn.gradcheck import (GradientCheckError, check_layer, gradient_errors, numerical_gradient,
                                  relative_error)
from tinynet.nn.layers import Conv2D, Dense, LogitAdjustment
from tinynet.nn.model import lenet


@pytest.mark.parametrize("view", ["transposed", "strided", "fortran"])
def test_numerical_gradient_perturbs_views_where_they_live(view, rng):
    base = rng.standard_normal((6, 8))
    x = {"transposed": base.T, "strided": base[::2, 1::3], "fortran": np.asfortranarray(base)}[view]
    assert not x.flags.c_contiguous
    before = x.copy()

    def f():
        return float(np.sum(np.sin(x) * (1 + np.arange(x.size)).reshape(x.shape)))

    grad = numerical_gradient(f, x)
    expected = np.cos(x) * (1 + np.arange(x.size)).reshape(x.shape)
    assert relative_error(grad, expected) < 1e-8
    np.testing.assert_array_equal(x, before)  # every entry put back
    some = numerical_gradient(f, x, indices=[0, 5, x.size - 1])
    picked = np.zeros(x.size, bool)
    picked[[0, 5, x.size - 1]] = True
    np.testing.assert_array_equal(some.reshape(-1) != 0, picked)  # C order of x's shape
    assert relative_error(some.reshape(-1)[picked], expected.reshape(-1)[picked]) < 1e-8


def test_check_layer_leaves_the_layer_as_it_was(rng):
    """Its own parameter arrays (still the model's, float32, unchanged), gradients, buffers and
    cache; and the caller's input array untouched."""
    model = lenet(5, rng=rng)
    conv2 = model.layers[2]
    x = rng.standard_normal((2, 20, 12, 12)).astype(np.float32)
    conv2.forward(x)
    before = {"params": dict(conv2.params), "grads": dict(conv2.grads), "buffers": dict(conv2._buffers),
              "cache": conv2.cache, "values": {k: v.copy() for k, v in conv2.params.items()}}
    x_before = x.copy()
    assert check_layer(conv2, x[:1, :, :7, :7], rng) < 1e-7
    for key in ("params", "grads", "buffers"):
        assert all(getattr(conv2, "_buffers" if key == "buffers" else key)[k] is v for k, v in before[key].items())
    assert conv2.cache is before["cache"]
    assert all(p.dtype == np.float32 for p in conv2.params.values())
    assert model.state_dict()["conv2.W"] is conv2.params["W"]
    for k, v in before["values"].items():
        np.testing.assert_array_equal(conv2.params[k], v)
    np.testing.assert_array_equal(x, x_before)


def test_check_layer_restores_a_layers_other_arrays_too(rng):
    layer = LogitAdjustment([0.1, 0.3, 0.6])
    check_layer(layer, rng.standard_normal((4, 3)), rng)
    assert layer.offset.dtype == np.float32


def test_a_first_layer_without_an_input_gradient_has_its_parameters_checked(rng):
    conv1 = Conv2D(1, 4, 3, rng=rng)
    conv1.compute_input_grad = False
    errors = gradient_errors(conv1, rng.standard_normal((2, 1, 6, 6)), rng)
    assert set(errors) == {"W", "b"} and max(errors.values()) < 1e-7  # no "x": not checked
    assert check_layer(conv1, rng.standard_normal((2, 1, 6, 6)), rng) < 1e-7


def test_a_wrong_parameter_gradient_of_a_first_layer_still_fails(rng):
    class BrokenConv(Conv2D):
        def backward(self, dout):
            result = super().backward(dout)
            self.grads["W"] = self.grads["W"] * 1.01  # 1% off
            return result

    conv1 = BrokenConv(1, 4, 3, rng=rng)
    conv1.compute_input_grad = False
    with pytest.raises(GradientCheckError, match="BrokenConv dW: relative error"):
        check_layer(conv1, rng.standard_normal((2, 1, 6, 6)), rng)


def test_a_failed_check_leaves_the_layer_as_it_was_too(rng):
    class BrokenDense(Dense):
        def backward(self, dout):
            return 2 * super().backward(dout)

    layer = BrokenDense(4, 3, rng=rng)
    params = dict(layer.params)
    with pytest.raises(AssertionError, match="BrokenDense dx"):
        check_layer(layer, rng.standard_normal((2, 4)), rng)
    assert all(layer.params[k] is v and v.dtype == np.float32 for k, v in params.items())
