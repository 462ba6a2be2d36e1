"""The exercises' check functions (notebooks/checks.py) can say each of their three answers: "not
done" for a stub, "not yet" for a wrong answer (each check, on an answer wrong in the way a learner
might get it wrong), and never raise, whatever the answer does. That they say "right" for a right
answer is shown by the worked solutions (tests/test_notebooks.py runs them)."""

import sys
from pathlib import Path

import numpy as np
import pytest

from tinynet.datasets.load import load_sample
from tinynet.nn import layers
from tinynet.nn.model import lenet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))
import checks  # noqa: E402  (notebooks/checks.py, which the notebooks import as they run in that folder)


def stub(*args):
    raise NotImplementedError


class StubFlatten(layers.Flatten):
    def backward(self, dout):
        raise NotImplementedError


class StubPool(layers.Layer):
    def __init__(self, size, name=None):
        super().__init__(name)

    def forward(self, x, train=True):
        raise NotImplementedError


class WrongPool(layers.Layer):
    """Average pooling whose backward forgets to divide by the window's size."""

    def __init__(self, size, name=None):
        super().__init__(name)
        self.size = size

    def forward(self, x, train=True):
        k, (N, C, H, W) = self.size, x.shape
        self.cache = x.shape
        return x[:, :, :H // k * k, :W // k * k].reshape(N, C, H // k, k, W // k, k).mean(axis=(3, 5))

    def backward(self, dout):
        k, dx = self.size, np.zeros(self.cache)
        dx[:, :, :dout.shape[2] * k, :dout.shape[3] * k] = np.repeat(np.repeat(dout, k, axis=2), k, axis=3)
        return dx


@pytest.fixture(scope="module")
def data():
    sample = load_sample()
    return lenet(47, rng=np.random.default_rng(0)), sample.images[:200], sample.labels[:200]


def wrong_saliency(net, x, target):
    """Twice the saliency: right in every pixel's sign, wrong in size."""
    from tinynet.predict.explain import look_inside
    return 2 * look_inside(net, x, target=target)[2]


def swapped_confusion_matrix(labels, predicted, K):
    """Rows and columns swapped: predicted class by row."""
    return np.bincount(predicted * K + labels, minlength=K * K).reshape(K, K)


def last_maximum(window):
    return np.unravel_index(np.argmax(window[::-1, ::-1]), window.shape)


def standing_still(gradient, theta, lr, mu, steps):
    return [theta] * (steps + 1), [0 * theta] * (steps + 1)


def batch_statistics_in_evaluation(x, gamma, beta, mean, var, eps):
    """The training formula used in evaluation: the batch's statistics, not the running ones."""
    return gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + beta


def biased_running_update(mean, var, x, momentum):
    return (1 - momentum) * mean + momentum * x.mean(axis=0), (1 - momentum) * var + momentum * x.var(axis=0)


def constant_statistics_backward(G, x_hat, gamma, var, eps):
    """The evaluation backward used in training: the batch statistics treated as constants."""
    return G * gamma / np.sqrt(var + eps), (G * x_hat).sum(axis=0), G.sum(axis=0)


def cases(data):
    """Each check with a stub answer and with a wrong one: (check, stub arguments, wrong arguments)."""
    net, images, labels = data
    predicted = (labels + 1) % 47
    check = checks
    return {
        "relu_and_dropout": (check.check_relu_and_dropout, (stub, stub),
                             (lambda G, x: G, lambda G, M, p: G * M / (1 - p))),
        "relu_and_dropout, dropout without 1/(1-p)": (check.check_relu_and_dropout, (stub, stub),
                                                     (lambda G, x: G * (x > 0), lambda G, M, p: G * M)),
        "random_upstream": (check.check_random_upstream, (StubFlatten, stub),
                            (layers.Flatten, lambda layer, x: 0.0)),
        "extra_zeros": (check.check_extra_zeros, (stub,), (lambda H, k, s, P: (H - k) % s,)),
        "strided_input_gradient": (check.check_strided_input_gradient, (stub,),
                                   (lambda G, W, s, P, H, Wd: np.zeros((len(G), W.shape[1], H, Wd)),)),
        "average_pooling": (check.check_average_pooling, (StubPool,), (WrongPool,)),
        "first_maximum": (check.check_first_maximum, (stub,), (last_maximum,)),
        "label_smoothing_minimum": (check.check_label_smoothing_minimum, (lambda e, K: None,),
                                    (lambda e, K: np.log(K * (1 - e) / e) if e else np.inf,)),
        "whole_network": (check.check_whole_network, (stub,),
                          (lambda net, x, y, indices: np.zeros((20, 1, 5, 5)),)),
        "saliency": (check.check_saliency, (stub, net, images, labels),
                     (wrong_saliency, net, images, labels)),
        "confusion_matrix": (check.check_confusion_matrix, (stub, labels, predicted, 47),
                             (swapped_confusion_matrix, labels, predicted, 47)),
        "initial_loss": (check.check_initial_loss, (stub, images, labels, 47),
                         (lambda K: np.log(K - 1), images, labels, 47)),
        "lookahead_nesterov": (check.check_lookahead_nesterov, (stub,), (standing_still,)),
        "linear_init": (check.check_linear_init, (stub,), (lambda fan_in: np.sqrt(2 / fan_in),)),
        "batchnorm_eval_forward": (check.check_batchnorm_eval_forward, (stub,), (batch_statistics_in_evaluation,)),
        "running_update": (check.check_running_update, (stub,), (biased_running_update,)),
        "batchnorm_backward": (check.check_batchnorm_backward, (stub,), (constant_statistics_backward,)),
    }


NAMES = ["relu_and_dropout", "relu_and_dropout, dropout without 1/(1-p)", "random_upstream", "extra_zeros",
         "strided_input_gradient", "average_pooling", "first_maximum", "label_smoothing_minimum",
         "whole_network", "saliency", "confusion_matrix", "initial_loss", "lookahead_nesterov", "linear_init",
         "batchnorm_eval_forward", "running_update", "batchnorm_backward"]


def test_every_check_is_covered():
    found = sorted(name[len("check_"):] for name in dir(checks)
                   if name.startswith("check_") and getattr(checks, name).__module__ == "checks")
    assert found == sorted({name.split(",")[0] for name in NAMES})


@pytest.mark.parametrize("case", NAMES)
def test_a_check_says_not_done_for_a_stub_and_not_yet_for_a_wrong_answer(case, data, capsys):
    check, stub_args, wrong_args = cases(data)[case]
    assert check(*stub_args) == "not done"
    assert "not done yet" in capsys.readouterr().out
    assert check(*wrong_args) == "not yet"
    assert ": not yet: " in capsys.readouterr().out


def test_a_check_never_raises(capsys):
    def crashes(G, x):
        return G @ np.ones((3, 3, 3))  # a shape error, as a learner's first try might have
    assert checks.check_relu_and_dropout(crashes, crashes) == "not yet"
    assert "your code raised ValueError" in capsys.readouterr().out
