"""Reference layers: the LeNet's maths written as plainly as NumPy allows. Read these first.

The fast layers in ``tinynet/nn/layers.py`` compute the same numbers with tricks: channels-last memory
behind NCHW-shaped views, im2col matrices and scratch buffers reused between calls, ReLU folded
into the max-pool kernel, a batch split over threads. Here there is none of that: every array is a
contiguous NCHW array, convolution is a sum over the kernel's offsets written with ``np.pad`` and
``einsum``, max-pooling compares the window's values one offset at a time, batch normalisation's backward
walks its computation graph node by node (the fast layer uses the compact formula that graph
simplifies to), and nothing is cached but what backward needs.

Same contract as the fast layers (``params`` / ``grads`` dicts, ``forward(x, train)`` caches,
``backward(dout)`` overwrites ``grads`` and returns dL/dx), the same parameter names and shapes,
and the same initialisation, so :func:`reference_lenet` and ``tinynet.nn.model.lenet`` built from
equal generators hold equal weights and a checkpoint's weights load into either.
``tests/test_reference.py`` gradient-checks these layers with the same ``check_layer`` as the fast
ones and shows that both LeNets give the same logits and gradients (float64, relative error
<= 1e-10).

``ReLU``, ``Flatten``, ``Dense``, ``Dropout`` and ``SoftmaxCrossEntropy`` have no fast variant:
the classes of ``tinynet/nn/layers.py`` are already plain NumPy and are used here as they are (on
contiguous NCHW input, ``Flatten`` is a reshape that moves no numbers).
"""

import numpy as np

from .layers import Dense, Dropout, Flatten, Layer, ReLU, SoftmaxCrossEntropy, init_weights
from .model import Sequential

__all__ = ["Conv2D", "MaxPool2D", "BatchNorm2D", "BatchNorm1D", "ReLU", "Flatten", "Dense", "Dropout",
           "SoftmaxCrossEntropy", "reference_lenet"]


def offsets(k, stride, OH, OW):
    """Yields ``(i, j, window)`` for each offset of a ``k x k`` window, in row-major order;
    ``x[window]`` is the strided view (N, C, OH, OW) of an NCHW array ``x`` holding, for every
    output position (h, w), the input pixel x[:, :, h*stride + i, w*stride + j] it sees there."""
    for i in range(k):
        for j in range(k):
            yield i, j, (slice(None), slice(None), slice(i, i + stride * OH, stride),
                         slice(j, j + stride * OW, stride))


class Conv2D(Layer):
    """2-D convolution (cross-correlation), stride ``stride``, zero padding ``padding``.

    x (N, C_in, H, W), weights W (C_out, C_in, k, k), bias b (C_out,) -> out (N, C_out, OH, OW),
    OH = (H + 2p - k) // s + 1. With xp = x zero-padded by p on each side:

        out[n, o, h, w] = b[o] + sum_{c, i, j} xp[n, c, h*s + i, w*s + j] * W[o, c, i, j]

    computed one kernel offset (i, j) at a time: the pixels every output sees at that offset form
    the strided slice xp[:, :, i::s, j::s] (N, C_in, OH, OW), and W[:, :, i, j] mixes its channels.
    """

    def __init__(self, in_channels, out_channels, kernel_size, *, rng, stride=1, padding=0,
                 init="he", name=None):
        super().__init__(name)
        self.stride, self.padding = stride, padding
        k = kernel_size
        self.params = {"W": init_weights(init, rng, (out_channels, in_channels, k, k),
                                         in_channels * k * k, out_channels * k * k),
                       "b": np.zeros(out_channels, dtype=np.float32)}
        self.grads = {key: np.zeros_like(v) for key, v in self.params.items()}

    def forward(self, x, train=True):
        W, b, p = self.params["W"], self.params["b"], self.padding
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        k = W.shape[2]
        OH = (xp.shape[2] - k) // self.stride + 1
        OW = (xp.shape[3] - k) // self.stride + 1
        out = np.zeros((x.shape[0], W.shape[0], OH, OW), dtype=np.result_type(x, W))
        for i, j, window in offsets(k, self.stride, OH, OW):
            out += np.einsum("nchw,oc->nohw", xp[window], W[:, :, i, j])
        out += b[None, :, None, None]
        self.cache = (x.shape, xp)
        return out

    def backward(self, dout):
        """dout (N, C_out, OH, OW) -> dx (N, C_in, H, W). Differentiating the sum above:

            dW[o, c, i, j] = sum_{n, h, w} dout[n, o, h, w] * xp[n, c, h*s + i, w*s + j]
            db[o]          = sum_{n, h, w} dout[n, o, h, w]
            dxp[n, c, h*s + i, w*s + j] += sum_o dout[n, o, h, w] * W[o, c, i, j]   (all i, j)

        and dx is dxp without its padding: a pixel seen at several offsets sums their gradients.
        """
        x_shape, xp = self.cache
        W, p = self.params["W"], self.padding
        dW = np.zeros_like(W, dtype=dout.dtype)
        dxp = np.zeros_like(xp, dtype=dout.dtype)
        for i, j, window in offsets(W.shape[2], self.stride, *dout.shape[2:]):
            dW[:, :, i, j] = np.einsum("nohw,nchw->oc", dout, xp[window])
            dxp[window] += np.einsum("nohw,oc->nchw", dout, W[:, :, i, j])  # one offset: no overlap
        self.grads["W"] = dW
        self.grads["b"] = dout.sum(axis=(0, 2, 3))
        return dxp[:, :, p:p + x_shape[2], p:p + x_shape[3]]


class MaxPool2D(Layer):
    """Max-pooling over ``size x size`` windows every ``stride`` pixels (default: stride = size).

    x (N, C, H, W) -> out (N, C, OH, OW), OH = (H - size) // stride + 1:

        out[n, c, h, w] = max_{i, j} x[n, c, h*stride + i, w*stride + j]

    The window's offsets (i, j) are visited in row-major order and the first maximum wins ties,
    the rule of the fast kernel (``tinynet/nn/kernels.py``), so both send a gradient to the same pixel.
    """

    def __init__(self, size, stride=None, name=None):
        super().__init__(name)
        self.size = size
        self.stride = size if stride is None else stride

    def forward(self, x, train=True):
        OH = (x.shape[2] - self.size) // self.stride + 1
        OW = (x.shape[3] - self.size) // self.stride + 1
        windows = list(offsets(self.size, self.stride, OH, OW))
        candidates = np.stack([x[window] for _, _, window in windows])  # (k*k, N, C, OH, OW)
        winner = candidates.argmax(axis=0)  # the offset of each window's first maximum
        self.cache = (x.shape, windows, winner)
        return np.take_along_axis(candidates, winner[None], axis=0)[0]

    def backward(self, dout):
        """dout (N, C, OH, OW) -> dx (N, C, H, W). Only the winner of a window affects its output:

            dx[n, c, h*stride + i, w*stride + j] += dout[n, c, h, w]   where (i, j) won window (h, w)

        and 0 elsewhere; a pixel that wins several (overlapping) windows sums their gradients.
        """
        x_shape, windows, winner = self.cache
        dx = np.zeros(x_shape, dtype=dout.dtype)
        for offset, (_, _, window) in enumerate(windows):
            dx[window] += np.where(winner == offset, dout, 0)  # one offset: each pixel at most once
        return dx


class BatchNorm2D(Layer):
    """Batch normalisation, one channel at a time over every image and position, written as the
    computation graph the backward pass walks through (``docs/backprop.md``). x (N, C, H, W) ->
    out (N, C, H, W), with the statistics over the axes ``axes`` (N, H, W) and M values each:

        x̄ = mean x          σ² = mean (x - x̄)²          x̂ = (x - x̄) / sqrt(σ² + ε)
        out = γ x̂ + β        (training: the batch's x̄ and σ²)
        out = γ (x - running_mean) / sqrt(running_var + ε) + β       (evaluation)

    and in training running = (1 - ρ) running + ρ batch (the variance unbiased, σ² M / (M - 1)),
    as the fast layer does. Same parameters (``gamma``, ``beta``) and state (``running_mean``,
    ``running_var``) as ``tinynet.nn.layers.BatchNorm2D``.
    """

    axes = (0, 2, 3)

    def __init__(self, channels, eps=1e-5, momentum=0.1, name=None):
        super().__init__(name)
        self.eps, self.momentum = eps, momentum
        self.params = {"gamma": np.ones(channels, dtype=np.float32), "beta": np.zeros(channels, dtype=np.float32)}
        self.grads = {key: np.zeros_like(v) for key, v in self.params.items()}
        self.state = {"running_mean": np.zeros(channels, dtype=np.float32),
                      "running_var": np.ones(channels, dtype=np.float32)}

    def per_channel(self, v):
        """A (C,) vector shaped to broadcast against the input: (1, C, 1, 1), or (1, C) for 1-D."""
        return v.reshape([1, -1] + [1] * (len(self.axes) - 1))

    def forward(self, x, train=True):
        gamma, beta = self.per_channel(self.params["gamma"]), self.per_channel(self.params["beta"])
        if train:
            M = x.size // x.shape[1]
            mean = x.mean(axis=self.axes, keepdims=True) if M else np.zeros_like(gamma)
            var = ((x - mean) ** 2).mean(axis=self.axes, keepdims=True) if M else np.zeros_like(gamma)
            if M:
                rho, unbiased = self.momentum, var * M / (M - 1) if M > 1 else var
                self.state["running_mean"][...] = (1 - rho) * self.state["running_mean"] + rho * mean.ravel()
                self.state["running_var"][...] = (1 - rho) * self.state["running_var"] + rho * unbiased.ravel()
        else:
            mean = self.per_channel(self.state["running_mean"])
            var = self.per_channel(self.state["running_var"])
        x_hat = (x - mean) / np.sqrt(var + self.eps)
        self.cache = (train, x, mean, var, x_hat)
        return gamma * x_hat + beta

    def backward(self, dout):
        """dout = G -> dx, node by node back through the graph of :meth:`forward` (sums over the
        M values of each channel):

            dγ = sum G x̂       dβ = sum G       dx̂ = G γ
            dσ² = sum dx̂ (x - x̄) * (-1/2) (σ² + ε)^(-3/2)
            dx̄ = -sum dx̂ / sqrt(σ² + ε)        (the term through σ², -2 dσ² mean(x - x̄), is 0)
            dx = dx̂ / sqrt(σ² + ε) + dσ² 2 (x - x̄) / M + dx̄ / M

        In evaluation x̄ and σ² are constants: dx = dx̂ / sqrt(running_var + ε) only.
        """
        train, x, mean, var, x_hat = self.cache
        M = x.size // x.shape[1]
        self.grads["gamma"] = (dout * x_hat).sum(axis=self.axes)
        self.grads["beta"] = dout.sum(axis=self.axes)
        dx_hat = dout * self.per_channel(self.params["gamma"])
        inv_std = 1.0 / np.sqrt(var + self.eps)
        if not train:
            return dx_hat * inv_std
        dvar = (dx_hat * (x - mean)).sum(axis=self.axes, keepdims=True) * -0.5 * inv_std ** 3
        dmean = -(dx_hat * inv_std).sum(axis=self.axes, keepdims=True)
        return dx_hat * inv_std + dvar * 2 * (x - mean) / max(M, 1) + dmean / max(M, 1)


class BatchNorm1D(BatchNorm2D):
    """Batch normalisation of features, x (N, F) -> out (N, F): :class:`BatchNorm2D`'s maths with
    the statistics over the batch alone (``axes`` = (0,), M = N)."""

    axes = (0,)


def reference_lenet(num_classes=47, *, rng, init="glorot", dropout=0.0):
    """The LeNet of ``tinynet.nn.model.lenet`` built from the plain layers, ReLU and pooling apart:

        conv1 -> relu1 -> pool1 -> conv2 -> relu2 -> pool2 -> flatten -> fc1 -> relu3
        [-> dropout] -> fc2

    Same parameter names, shapes and initial values (drawn from ``rng`` in the same order) as
    ``lenet(num_classes, rng=rng, init=init, dropout=dropout)``.
    """
    layers = [
        Conv2D(1, 20, 5, rng=rng, init=init, name="conv1"),
        ReLU(name="relu1"),
        MaxPool2D(2, name="pool1"),
        Conv2D(20, 50, 5, rng=rng, init=init, name="conv2"),
        ReLU(name="relu2"),
        MaxPool2D(2, name="pool2"),
        Flatten(name="flatten"),
        Dense(800, 500, rng=rng, init=init, name="fc1"),
        ReLU(name="relu3"),
    ]
    if dropout:
        layers.append(Dropout(dropout, rng=rng, name="dropout"))
    layers.append(Dense(500, num_classes, rng=rng, init="glorot", name="fc2"))
    return Sequential(layers)
