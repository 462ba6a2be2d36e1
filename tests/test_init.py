"""The initial weights follow the variances derived in docs/backprop.md ("Initial weights: Glorot
and He"): He normal N(0, 2 / fan_in), Glorot uniform U(-a, a) with a = sqrt(6 / (fan_in + fan_out))
and so variance 2 / (fan_in + fan_out), with the fans of a dense layer and of a convolution; and
the forward variance through a deep ReLU stack stays put with He and halves every layer with
Glorot (equal fans), as the derivation says."""

import numpy as np
import pytest

from tinynet.nn import reference
from tinynet.nn.layers import Conv2D, Dense, glorot_uniform, he_normal, init_weights


def sample_variance_within(w, variance, tolerance):
    """The sample variance of ``w`` (mean known to be 0) is within ``tolerance`` (relative) of
    ``variance``; the sampling error of n draws is about sqrt(2 / n) (normal) or less (uniform)."""
    got = float(np.mean(np.asarray(w, dtype=np.float64) ** 2))
    assert abs(got / variance - 1) < tolerance, f"sample variance {got:.4g}, formula {variance:.4g}"


@pytest.mark.parametrize("fan_in", [3, 75, 800])
def test_he_normal_has_variance_two_over_fan_in(fan_in, rng):
    w = he_normal(rng, (1_000_000,), fan_in)
    assert abs(w.mean()) < 5 * np.sqrt(2 / fan_in / 1e6)
    sample_variance_within(w, 2 / fan_in, 0.01)  # sampling error sqrt(2 / 1e6) = 0.14%


@pytest.mark.parametrize("fan_in, fan_out", [(3, 5), (500, 47), (800, 500)])
def test_glorot_uniform_has_the_limit_and_variance_of_the_formula(fan_in, fan_out, rng):
    limit = np.sqrt(6 / (fan_in + fan_out))
    w = glorot_uniform(rng, (1_000_000,), fan_in, fan_out)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.999 * limit  # U(-a, a), reaching a
    assert w.min() < -0.999 * limit
    sample_variance_within(w, limit ** 2 / 3, 0.01)
    sample_variance_within(w, 2 / (fan_in + fan_out), 0.01)


@pytest.mark.parametrize("init, variance", [("he", lambda fi, fo: 2 / fi),
                                            ("glorot", lambda fi, fo: 2 / (fi + fo))])
def test_layers_pass_their_fans(init, variance, rng):
    """Dense: fan_in = D_in, fan_out = D_out. Conv2D (fast and reference): fan_in = C_in k^2,
    fan_out = C_out k^2. Each layer's weights have the variance of the formula with those fans."""
    dense = Dense(1000, 300, rng=rng, init=init).params["W"]
    sample_variance_within(dense, variance(1000, 300), 0.02)
    for conv_class in (Conv2D, reference.Conv2D):
        conv = conv_class(64, 32, 5, rng=rng, init=init).params["W"]  # 51,200 weights
        sample_variance_within(conv, variance(64 * 25, 32 * 25), 0.03)
    assert init_weights(init, rng, (2, 2), 4, 4).dtype == np.float32


def test_he_keeps_the_forward_variance_through_relu_layers_and_glorot_halves_it():
    """E[z^2] of the pre-activations through 10 dense + ReLU layers of width 512 (float64): He's
    factor per layer is 1, Glorot's (equal fans) 1/2, as derived. One layer's ratio scatters by
    about 15% (one weight draw, and the samples' representations grow alike with depth), so the
    test bounds each ratio loosely and their geometric mean tightly."""
    rng = np.random.default_rng(0)
    for init, factor in (("he", 1.0), ("glorot", 0.5)):
        x = rng.standard_normal((1000, 512))
        z = x
        second_moments = []
        for _ in range(10):
            W = init_weights(init, rng, (512, 512), 512, 512).astype(np.float64)
            z = np.maximum(z, 0) @ W if second_moments else z @ W
            second_moments.append(np.mean(z ** 2))
        ratios = np.array(second_moments[1:]) / np.array(second_moments[:-1])
        assert np.all(np.abs(ratios / factor - 1) < 0.25), (init, ratios)  # one layer: +-15% is usual
        per_layer = (second_moments[-1] / second_moments[0]) ** (1 / 9)  # geometric mean of the ratios
        assert abs(per_layer / factor - 1) < 0.08, (init, per_layer)
