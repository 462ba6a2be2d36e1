"""The check cells of the notebooks' exercises: each ``check_*`` function takes your answer and says
"right", or "not yet" with what differs, or "not done yet" while the answer is still a stub.

Every check compares your answer with tinynet's own code (a layer's ``backward``, the optimiser,
the metrics) or with centred differences (``tinynet.nn.gradcheck``), on inputs it draws itself.
A check never raises: whatever your code does, it prints one verdict and returns it ("right",
"not yet" or "not done"), so a notebook with unanswered exercises still runs top to bottom.

The notebooks in this folder and their worked solutions in ``solutions/`` call the same functions.
"""

import numpy as np

from tinynet.datasets.idx import to_float
from tinynet.nn import layers, reference
from tinynet.nn.gradcheck import (check_layer, distinct_values, numerical_gradient,
                                  numerical_gradient_array, relative_error)
from tinynet.nn.kernels import conv_output_size
from tinynet.nn.model import Sequential, lenet
from tinynet.nn.optim import SGD
from tinynet.predict.explain import look_inside
from tinynet.predict.metrics import confusion_matrix


class NotAnswered(Exception):
    """The answer is still the stub (it returned None or raised NotImplementedError)."""


def verdict(title, test):
    """Run ``test()``; print and return "right", "not yet" (with what differs) or "not done"."""
    try:
        test()
    except (NotImplementedError, NotAnswered) as stub:
        detail = f" ({stub})" if str(stub) else ""
        print(f"{title}: not done yet{detail}. Write your answer in the cell above, run it, then run "
              "this cell again.")
        return "not done"
    except AssertionError as wrong:
        print(f"{title}: not yet: {wrong}")
        return "not yet"
    except Exception as error:  # the learner's code crashed: say so, never crash the notebook
        print(f"{title}: not yet: your code raised {type(error).__name__}: {error}")
        return "not yet"
    print(f"{title}: right")
    return "right"


def answer(value, name):
    """``value``, or NotAnswered when it is None (a stub that returns None)."""
    if value is None:
        raise NotAnswered(f"{name} returned None")
    return value


def same(name, got, expected, against, tolerance=1e-7):
    """AssertionError saying how ``got`` differs from ``expected`` (computed by ``against``)."""
    got = np.asarray(answer(got, name), dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        raise AssertionError(f"{name} has shape {got.shape}; {against} has shape {expected.shape}")
    if not np.all(np.isfinite(got)):
        raise AssertionError(f"{name} holds NaN or infinity")
    error = relative_error(got, expected) if np.abs(expected).max() > 0 else np.abs(got).max()
    if not error < tolerance:
        raise AssertionError(f"{name} differs from {against}: relative error {error:.1e} "
                             f"(right is below {tolerance:.0e})")


# ------------------------------------------------------------------ backprop_by_hand.ipynb

def check_relu_and_dropout(relu_backward, dropout_backward):
    """Exercise 1: dL/dx of ReLU and of inverted dropout, against the layers and centred differences."""
    def test():
        rng = np.random.default_rng(101)
        x = distinct_values(rng, (3, 4, 5))  # no value at ReLU's kink, none exactly 0
        G = rng.standard_normal(x.shape)
        relu = layers.ReLU()
        relu.forward(x)
        got = relu_backward(G, x)
        same("relu_backward(G, x)", got, relu.backward(G), "layers.ReLU().backward(G)")
        same("relu_backward(G, x)", got, numerical_gradient_array(lambda: np.maximum(x, 0), x, G),
             "the centred differences of max(x, 0)")

        p_drop = 0.3
        dropout = layers.Dropout(p_drop, rng=np.random.default_rng(7)).astype(np.float64)
        M = (dropout.forward(x, train=True) != 0).astype(np.float64)  # the mask the layer drew
        got = dropout_backward(G, M, p_drop)
        same("dropout_backward(G, M, p_drop)", got, dropout.backward(G), "layers.Dropout's backward")
        same("dropout_backward(G, M, p_drop)", got,
             numerical_gradient_array(lambda: x * M / (1 - p_drop), x, G),
             "the centred differences of x * M / (1 - p_drop)")
    return verdict("Exercise 1 (ReLU and dropout)", test)


def check_random_upstream(reversed_flatten, ones_check):
    """Exercise 2: a wrong Flatten passes a check with G = ones and fails check_layer."""
    def test():
        rng = np.random.default_rng(102)
        x = rng.standard_normal((2, 3, 4, 5))
        layer = reversed_flatten()
        layer.forward(x)
        G = rng.standard_normal((2, 60))
        same("ReversedFlatten().backward(G)", layer.backward(G), G[:, ::-1].reshape(x.shape),
             "G with its features reversed, reshaped to x's shape")
        error = answer(ones_check(reversed_flatten(), x), "ones_check")
        assert error < 1e-7, (f"ones_check(ReversedFlatten(), x) = {error:.1e}: with G = ones the "
                              "reversed gradient is all ones too, so the check should pass (< 1e-7)")
        error = ones_check(layers.Flatten(), x)
        assert error < 1e-7, f"ones_check(layers.Flatten(), x) = {error:.1e} on a right layer"

        class Doubled(layers.Flatten):  # wrong in a way that ones do catch
            def backward(self, dout):
                return 2 * super().backward(dout)
        error = ones_check(Doubled(), x)
        assert error > 0.1, (f"ones_check returned {error:.1e} for a Flatten whose gradient is twice "
                             "too large: it does not compare anything yet")
        try:
            check_layer(reversed_flatten(), x, rng)
        except AssertionError:
            return
        raise AssertionError("check_layer passed on ReversedFlatten: its backward is not wrong yet")
    return verdict("Exercise 2 (why a random upstream gradient)", test)


def check_extra_zeros(extra_zeros):
    """Exercise 3a: the rows of zeros G needs at the bottom, against the output-size formula."""
    def test():
        for H_in in range(3, 12):
            for k in (1, 2, 3, 5):
                for s in (1, 2, 3):
                    for P in (0, 1, 2):
                        if H_in + 2 * P < k:
                            continue
                        H_out = conv_output_size(H_in, k, s, P)
                        expected = H_in + 2 * P - (s * (H_out - 1) + k)
                        got = answer(extra_zeros(H_in, k, s, P), "extra_zeros")
                        assert got == expected, (f"extra_zeros(H_in={H_in}, k={k}, s={s}, P={P}) = {got}; "
                                                 f"but {expected} of the padded input's {H_in + 2 * P} "
                                                 "rows lie below the last window")
    return verdict("Exercise 3a (extra zeros at the bottom and right)", test)


def check_strided_input_gradient(conv_input_gradient):
    """Exercise 3b: dx by dilating, padding, flipping and correlating, against reference.Conv2D."""
    def test():
        rng = np.random.default_rng(103)
        cases = [((2, 3, 6, 6), 3, 2, 0),   # one extra zero row and column
                 ((1, 2, 7, 8), 3, 2, 1),   # padding; extra zeros in one direction only
                 ((2, 2, 8, 7), 2, 3, 0),   # stride > kernel: some pixels get no gradient
                 ((1, 3, 9, 9), 5, 2, 2),   # no extra zeros
                 ((1, 2, 6, 5), 3, 1, 1)]   # stride 1: the full correlation of the text
        for shape, k, s, P in cases:
            conv = reference.Conv2D(shape[1], 4, k, stride=s, padding=P, rng=rng).astype(np.float64)
            x = rng.standard_normal(shape)
            G = rng.standard_normal(conv.forward(x).shape)
            expected = conv.backward(G)
            got = conv_input_gradient(G, conv.params["W"].copy(), s, P, shape[2], shape[3])
            same(f"conv_input_gradient for input {shape}, k={k}, s={s}, P={P}", got, expected,
                 "reference.Conv2D.backward", tolerance=1e-10)
    return verdict("Exercise 3b (the strided input gradient)", test)


def check_average_pooling(avg_pool):
    """Exercise 4: average pooling's forward against a mean over windows, backward against check_layer."""
    def test():
        rng = np.random.default_rng(104)
        for shape in [(2, 3, 8, 6), (2, 2, 7, 9)]:  # the second: the last row and column are dropped
            x = rng.standard_normal(shape)
            H, W = shape[2] // 2 * 2, shape[3] // 2 * 2
            windows = x[:, :, :H, :W].reshape(shape[0], shape[1], H // 2, 2, W // 2, 2)
            same(f"AvgPool2D(2).forward on {shape}", avg_pool(2).forward(x), windows.mean(axis=(3, 5)),
                 "the mean of each 2x2 window", tolerance=1e-12)
            try:
                check_layer(avg_pool(2), x, rng)
            except AssertionError as error:
                raise AssertionError(f"check_layer(AvgPool2D(2), ...) on {shape} fails: {error}") from None
        net = Sequential([avg_pool(2), layers.Flatten(name="flatten")])  # it joins a network
        out = net.forward(rng.standard_normal((2, 1, 4, 4)))
        assert out.shape == (2, 4), f"Sequential([AvgPool2D(2), Flatten()]) gave shape {out.shape}"
        net.backward(np.ones_like(out))
    return verdict("Exercise 4 (average pooling)", test)


def check_first_maximum(winner):
    """Exercise 5: the first maximum in row-major order, against where both max-pool layers send G."""
    def test():
        rng = np.random.default_rng(105)
        for trial in range(300):
            k = int(rng.integers(2, 5))
            window = rng.integers(0, 3, (k, k)).astype(np.float64)  # values 0, 1, 2: many ties
            got = answer(winner(window.copy()), "winner(window)")
            for name, pool in (("layers.MaxPool2D", layers.MaxPool2D(k)),
                               ("reference.MaxPool2D", reference.MaxPool2D(k))):
                pool.forward(window[None, None])
                dx = pool.backward(np.ones((1, 1, 1, 1)))[0, 0]
                expected = tuple(int(a) for a in np.argwhere(dx == 1)[0])
                got = tuple(int(a) for a in got)
                assert got == expected, (f"winner(window) = {got} for the window\n{window}\n"
                                         f"but {name} sends the gradient to {expected}")
    return verdict("Exercise 5 (ties in the fast kernel)", test)


def check_label_smoothing_minimum(best_logit_gap):
    """Exercise 6: the logit gap at the loss's minimum, against the loss's gradient there."""
    def test():
        for K in (3, 10, 47):
            for eps in (0.05, 0.1, 0.3):
                gap = float(answer(best_logit_gap(eps, K), "best_logit_gap"))
                loss = layers.SoftmaxCrossEntropy(label_smoothing=eps)
                logits = np.zeros((1, K))
                logits[0, 0] = gap
                loss.forward(logits, np.array([0]))
                slope = loss.backward()[0, 0]
                assert abs(slope) < 1e-9, (f"best_logit_gap({eps}, {K}) = {gap:.4f}, but the loss's "
                                           f"gradient there is {slope:.1e}, not 0 (SoftmaxCrossEntropy)")
            gap = best_logit_gap(0.0, K)
            assert gap == np.inf, (f"best_logit_gap(0.0, {K}) = {gap}: without smoothing the loss "
                                   "keeps falling as the gap grows; return np.inf")
    return verdict("Exercise 6 (label smoothing)", test)


def check_whole_network(conv1_numerical_gradient):
    """Exercise 7: conv1.W's gradient of the whole LeNet's loss, against its backward pass."""
    def test():
        from tinynet.datasets.load import load_sample
        sample = load_sample()
        x, y = to_float(sample.images[:8]).astype(np.float64), sample.labels[:8]
        net = reference.reference_lenet(47, rng=np.random.default_rng(0)).astype(np.float64)
        loss = layers.SoftmaxCrossEntropy()
        loss.forward(net.forward(x), y)
        net.backward(loss.backward())
        analytic = net.layers[0].grads["W"].copy()
        before = net.layers[0].params["W"].copy()
        indices = np.random.default_rng(107).choice(analytic.size, 12, replace=False)
        got = answer(conv1_numerical_gradient(net, x, y, indices), "conv1_numerical_gradient")
        got = np.asarray(got, dtype=np.float64)
        assert got.shape == analytic.shape, (f"conv1_numerical_gradient returned shape {got.shape}, "
                                             f"expected conv1.W's {analytic.shape}")
        assert np.array_equal(net.layers[0].params["W"], before), \
            "conv1.W changed: restore every weight you perturb"
        same("conv1_numerical_gradient at the 12 indices", got.ravel()[indices],
             analytic.ravel()[indices], "the LeNet's backward pass", tolerance=1e-6)
    return verdict("Exercise 7 (a whole-network check)", test)


# ------------------------------------------------------------------ train_and_look_inside.ipynb

def check_saliency(class_saliency, net, images, labels):
    """Exercise 1: the saliency of the true class, against look_inside and centred differences."""
    def test():
        for index in range(3):
            x = to_float(images[index][None])
            got = class_saliency(net, x, int(labels[index]))
            logits, _, expected, _ = look_inside(net, x, target=int(labels[index]))
            same(f"class_saliency for image {index}", got, expected, "look_inside(..., target=label)",
                 tolerance=1e-5)
        # centred differences of the logit, in float64, on a new LeNet and a random image (a trained
        # network's weights, or blank areas of a real image, put ReLU kinks and max-pool ties within
        # h of many pixels, where a centred difference measures no derivative at all)
        rng = np.random.default_rng(106)
        double = lenet(len(logits), rng=rng).astype(np.float64)
        x, label = rng.random((1, 1, 28, 28)), int(labels[0])
        got = np.asarray(answer(class_saliency(double, x, label), "class_saliency"), dtype=np.float64)
        pixels = np.argsort(-np.abs(got).ravel())[:20]
        numeric = numerical_gradient(lambda: double.forward(x, train=False)[0, label], x[0, 0],
                                     indices=pixels)
        same("class_saliency at the 20 strongest pixels of a new float64 LeNet", got.ravel()[pixels],
             numeric.ravel()[pixels], "the centred differences of the logit", tolerance=1e-6)
    return verdict("Exercise 1 (the saliency of the true class)", test)


def check_confusion_matrix(my_confusion_matrix, labels, predicted, num_classes):
    """Exercise 2: a confusion matrix, against tinynet.predict.metrics.confusion_matrix."""
    def test():
        got = answer(my_confusion_matrix(labels, predicted, num_classes), "my_confusion_matrix")
        expected = confusion_matrix(labels, predicted, num_classes)
        same("my_confusion_matrix(labels, predicted, K)", got, expected,
             "tinynet.predict.metrics.confusion_matrix", tolerance=1e-12)
        rng = np.random.default_rng(108)
        true, guess = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
        same("my_confusion_matrix on random labels", my_confusion_matrix(true, guess, 5),
             confusion_matrix(true, guess, 5), "tinynet.predict.metrics.confusion_matrix",
             tolerance=1e-12)
    return verdict("Exercise 2 (the confusion matrix)", test)


def check_initial_loss(initial_loss, images, labels, num_classes):
    """Exercise 3: the loss at initialisation, against five freshly made LeNets on ``images``."""
    def test():
        got = float(answer(initial_loss(num_classes), "initial_loss"))
        x = to_float(images[:256])
        measured = [layers.SoftmaxCrossEntropy().forward(
            lenet(num_classes, rng=np.random.default_rng(seed)).forward(x, train=False), labels[:256])
            for seed in range(5)]
        mean = float(np.mean(measured))
        assert abs(got - mean) < 0.03 * mean, (
            f"initial_loss({num_classes}) = {got:.3f}, but new LeNets start at {mean:.3f} on average "
            f"({', '.join(f'{m:.3f}' for m in measured)})")
        other = float(answer(initial_loss(10), "initial_loss"))
        assert abs(other - np.log(10)) < 1e-9, (
            f"initial_loss(10) = {other:.4f}: with 10 classes the same reasoning gives another number")
    return verdict("Exercise 3 (the loss at initialisation)", test)


# ------------------------------------------------------------------ optimise_and_initialise.ipynb

class _Parameters:
    """A stand-in for a model: one parameter array and its gradient, as SGD.step reads them."""

    def __init__(self, theta):
        self.theta, self.grad = theta, np.zeros_like(theta)

    def parameters(self):
        yield "theta", self.theta, self.grad


def check_lookahead_nesterov(lookahead_nesterov):
    """Exercise 1: Nesterov in the look-ahead form, against tinynet's SGD(nesterov=True)."""
    def test():
        curvature = np.array([1.0, 10.0])
        gradient = lambda theta: curvature * theta  # of f(theta) = sum(curvature * theta**2) / 2
        lr, mu, steps = 0.05, 0.9, 25
        thetas, velocities = answer(lookahead_nesterov(gradient, np.array([1.0, 1.0]), lr, mu, steps),
                                    "lookahead_nesterov")
        assert len(thetas) == len(velocities) == steps + 1, (
            f"lookahead_nesterov returned {len(thetas)} thetas and {len(velocities)} velocities; "
            f"expected {steps + 1} of each (the start and every step)")
        model = _Parameters(np.array([1.0, 1.0]))
        sgd = SGD(lr=lr, momentum=mu, nesterov=True)
        for tau in range(1, steps + 1):
            model.grad[...] = gradient(model.theta)
            sgd.step(model)
            lookahead = np.asarray(thetas[tau]) - lr * mu * np.asarray(velocities[tau])
            same(f"theta - lr * mu * v after step {tau}", lookahead, model.theta,
                 "tinynet's parameters after the same steps of SGD(nesterov=True)", tolerance=1e-9)
    return verdict("Exercise 1 (Nesterov, the look-ahead form)", test)


def check_linear_init(linear_std):
    """Exercise 2: the weight spread that keeps a linear stack's signal, against an experiment."""
    def test():
        rng = np.random.default_rng(109)
        for fan_in in (16, 100, 400):
            got = float(answer(linear_std(fan_in), "linear_std"))
            x = rng.standard_normal((200, fan_in))
            spread = []
            for _ in range(30):
                x = x @ rng.normal(0.0, got, (fan_in, fan_in))
                spread.append(x.std())
            assert 0.5 < spread[-1] < 2.0, (
                f"with linear_std({fan_in}) = {got:.4f}, the signal's spread after 30 linear layers is "
                f"{spread[-1]:.2e}, not about 1")
            assert abs(got * np.sqrt(fan_in) - 1) < 1e-9, (
                f"linear_std({fan_in}) = {got:.5f}: close, but the derivation gives an exact formula")
    return verdict("Exercise 2 (initial weights for a linear stack)", test)


# ------------------------------------------------------------------ build_a_layer.ipynb

def _bn_layer(rng, features):
    """A float64 BatchNorm1D with random gamma, beta and running statistics."""
    layer = layers.BatchNorm1D(features).astype(np.float64)
    layer.params["gamma"] = rng.uniform(0.5, 2.0, features)
    layer.params["beta"] = rng.standard_normal(features)
    layer.state["running_mean"] = rng.standard_normal(features)
    layer.state["running_var"] = rng.uniform(0.2, 3.0, features)
    return layer


def check_batchnorm_eval_forward(batchnorm_eval_forward):
    """Exercise 1: the evaluation pass, against tinynet's BatchNorm1D(train=False)."""
    def test():
        rng = np.random.default_rng(111)
        layer = _bn_layer(rng, 5)
        x = rng.standard_normal((7, 5)) * 3.0 + 1.0
        got = batchnorm_eval_forward(x, layer.params["gamma"], layer.params["beta"], layer.state["running_mean"],
                                     layer.state["running_var"], 1e-5)
        same("batchnorm_eval_forward(x, ...)", got, layer.forward(x, train=False),
             "tinynet's BatchNorm1D.forward(x, train=False)", tolerance=1e-10)
        one = batchnorm_eval_forward(x[:1], layer.params["gamma"], layer.params["beta"],
                                     layer.state["running_mean"], layer.state["running_var"], 1e-5)
        same("batchnorm_eval_forward(x[:1], ...)", one, np.asarray(got)[:1],
             "the same image's output within the whole batch (evaluation must not depend on the batch)",
             tolerance=1e-12)
    return verdict("Exercise 1 (the evaluation pass)", test)


def check_running_update(update_running):
    """Exercise 2: the running statistics after a batch, against tinynet's BatchNorm1D."""
    def test():
        rng = np.random.default_rng(112)
        layer = _bn_layer(rng, 4)
        layer.momentum = 0.25
        mean, var = layer.state["running_mean"].copy(), layer.state["running_var"].copy()
        x = rng.standard_normal((6, 4)) * 2.0 - 0.5
        got = answer(update_running(mean.copy(), var.copy(), x, 0.25), "update_running")
        layer.forward(x, train=True)
        if not (isinstance(got, tuple) and len(got) == 2):
            raise AssertionError("update_running must return (new running mean, new running variance)")
        same("the new running mean", got[0], layer.state["running_mean"], "tinynet's BatchNorm1D after the batch",
             tolerance=1e-10)
        biased = 0.75 * var + 0.25 * x.var(axis=0)
        if np.allclose(np.asarray(got[1], np.float64), biased, rtol=1e-10):
            raise AssertionError("the new running variance uses the biased batch variance (divided by N); "
                                 "the running estimate takes the unbiased one, N / (N - 1) times it")
        same("the new running variance", got[1], layer.state["running_var"],
             "tinynet's BatchNorm1D after the batch", tolerance=1e-10)
    return verdict("Exercise 2 (the running statistics)", test)


def check_batchnorm_backward(batchnorm_backward):
    """Exercise 3: the compact training backward, against centred differences and tinynet's layer."""
    def test():
        rng = np.random.default_rng(113)
        layer = _bn_layer(rng, 3)
        x = rng.standard_normal((5, 3)) * 2.0 + 1.0
        G = rng.standard_normal((5, 3))
        gamma, eps = layer.params["gamma"], 1e-5
        mean, var = x.mean(axis=0), x.var(axis=0)
        x_hat = (x - mean) / np.sqrt(var + eps)
        got = answer(batchnorm_backward(G, x_hat, gamma, var, eps), "batchnorm_backward")
        if not (isinstance(got, tuple) and len(got) == 3):
            raise AssertionError("batchnorm_backward must return (dx, dgamma, dbeta)")
        forward = lambda: gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + layer.params["beta"]
        same("dgamma", got[1], (G * x_hat).sum(axis=0), "sum over the batch of G * x_hat", tolerance=1e-10)
        same("dbeta", got[2], G.sum(axis=0), "sum over the batch of G", tolerance=1e-10)
        same("dx", got[0], numerical_gradient_array(forward, x, G), "the centred differences of the "
             "training forward pass", tolerance=1e-7)
    return verdict("Exercise 3 (the backward pass, compact)", test)
