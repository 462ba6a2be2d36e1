"""Layers with explicit forward and backward passes.

Conventions (used everywhere in tinynet):

- Images are NCHW: ``(N, C, H, W)``; the network input is float32 ``(N, 1, 28, 28)`` in [0, 1].
  That is the *shape* (and how you index them). In memory, the convolution and pooling layers
  store their outputs channels-last, ``(N, H, W, C)``, the layout their kernels and matmuls work in,
  and return them as NCHW-shaped views (``channels_last`` below undoes the view for free).
- Conv weights are ``(C_out, C_in, kH, kW)``, conv biases ``(C_out,)``.
- Flatten keeps ``(C, H, W)`` order (NumPy's C order), so feature ``c*H*W + h*W + w``.
- Dense weights are ``(in, out)`` and a dense layer computes ``x @ W + b``.
- Every layer holds ``params`` and ``grads``: dicts from a name (``"W"``, ``"b"``) to an array of
  the same shape. ``backward`` **overwrites** ``grads`` (it never accumulates), using what the most
  recent ``forward`` cached; so call ``forward`` then ``backward`` once per batch.
- ``forward(x, train)``: ``train`` only matters to layers that behave differently while training
  (dropout). ``backward(dout)`` takes dL/d(output) and returns dL/d(input).

Each backward docstring gives the backprop equation it implements. The gradient checks in
``tests/test_layers.py`` compare every one of them with centred finite differences.
"""

import numpy as np

from ..errors import ArgumentError
from .kernels import (col2im_numba, conv_output_size, im2col_numba, maxpool_backward_numba,
                      maxpool_forward_numba)


def he_normal(rng, shape, fan_in):
    """He (Kaiming) normal initialisation: N(0, 2 / fan_in), for layers followed by ReLU."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def glorot_uniform(rng, shape, fan_in, fan_out):
    """Glorot (Xavier) uniform initialisation: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def init_weights(init, rng, shape, fan_in, fan_out):
    """Initial weights by name: ``"he"`` (He normal) or ``"glorot"`` (Glorot uniform), as float32."""
    if init == "he":
        w = he_normal(rng, shape, fan_in)
    elif init == "glorot":
        w = glorot_uniform(rng, shape, fan_in, fan_out)
    else:
        raise ArgumentError(f"unknown initialisation {init!r}; expected 'he' or 'glorot'")
    return w.astype(np.float32)


def channels_last(x):
    """An NCHW-shaped array as a C-contiguous (N, H, W, C) array: a free view when it is stored
    channels-last (every activation inside the network is), a copy otherwise."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


class Layer:
    """Base class: a layer with no parameters. Subclasses fill ``params`` in ``__init__``."""

    def __init__(self, name=None):
        self.name = name
        self.params = {}
        self.grads = {}
        self._buffers = {}

    def buffer(self, key, shape, dtype):
        """A scratch array reused between batches (reallocated only when shape or dtype change)."""
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[key] = np.empty(shape, dtype=dtype)
        return buf

    def astype(self, dtype):
        """Convert parameters (and drop cached buffers) to ``dtype``, e.g. float64 for gradient checks."""
        self.params = {k: v.astype(dtype) for k, v in self.params.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._buffers = {}
        return self

    def __repr__(self):
        shapes = ", ".join(f"{k}={v.shape}" for k, v in self.params.items())
        return f"{type(self).__name__}({self.name or ''}{', ' if shapes and self.name else ''}{shapes})"


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every deep-learning library) via im2col + one matmul.

    Shapes: x (N, C_in, H, W) -> out (N, C_out, OH, OW) with OH = (H + 2p - kH) // s + 1.

    Forward, with X = im2col(x) of shape (N*OH*OW, kH*kW*C_in) (one receptive field per row, see
    ``tinynet/nn/kernels.py``) and W2 = W reordered to (C_out, kH*kW*C_in) in the same column order:
        out2 = X @ W2.T + b        (N*OH*OW, C_out): one row of channels per output position.

    Memory layout: ``out2`` *is* the output, read as (N, OH, OW, C_out) and returned transposed to
    NCHW shape without copying, so activations stay channels-last in memory from layer to layer
    (the next layer's kernels read them as they are).
    """

    def __init__(self, in_channels, out_channels, kernel_size, *, rng, stride=1, padding=0,
                 init="he", name=None):
        super().__init__(name)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        fan_in = in_channels * kernel_size * kernel_size
        fan_out = out_channels * kernel_size * kernel_size
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.params = {"W": init_weights(init, rng, shape, fan_in, fan_out),
                       "b": np.zeros(out_channels, dtype=np.float32)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        # The first layer's input is the image, whose gradient nobody needs: setting this to False
        # skips a matmul and a col2im in backward (lenet() does so for conv1).
        self.compute_input_grad = True

    def forward(self, x, train=True):
        W, b = self.params["W"], self.params["b"]
        c_out, _, k, _ = W.shape
        x_nhwc = channels_last(x)
        N, H, Wd, _ = x_nhwc.shape
        OH = conv_output_size(H, k, self.stride, self.padding)
        OW = conv_output_size(Wd, k, self.stride, self.padding)
        cols = self.buffer("cols", (N * OH * OW, W[0].size), x.dtype)
        im2col_numba(x_nhwc, k, k, self.stride, self.padding, cols)
        W2 = W.transpose(0, 2, 3, 1).reshape(c_out, -1)  # (C_out, kH*kW*C_in), columns in (i, j, c) order
        out2 = self.buffer("out2", (N * OH * OW, c_out), x.dtype)
        np.matmul(cols, W2.T, out=out2)
        out2 += b
        self.cache = (x_nhwc.shape, cols, W2)
        # Like ``cols``, ``out2`` is a scratch buffer that the next forward call overwrites (reusing
        # it saves ~20% at batch 1024): the caller uses the output before the next forward.
        return out2.reshape(N, OH, OW, c_out).transpose(0, 3, 1, 2)

    def backward(self, dout):
        """dout (N, C_out, OH, OW) -> dx (N, C_in, H, W), or None if ``compute_input_grad`` is off.

        With D = dout as (N*OH*OW, C_out), one row per output position (a view: dout is
        channels-last in memory):
            dW2 = D.T @ X          (the same matmul as a dense layer's dW = x.T @ dout)
            db  = D summed over its rows
            dX  = D @ W2,  dx = col2im(dX)   (each input pixel sums the gradients of every
                                              output whose receptive field contains it)
        """
        x_shape, cols, W2 = self.cache
        W = self.params["W"]
        c_out, c_in, k, _ = W.shape
        d2 = channels_last(dout).reshape(-1, c_out)
        dW2 = d2.T @ cols
        self.grads["W"] = np.ascontiguousarray(dW2.reshape(c_out, k, k, c_in).transpose(0, 3, 1, 2))
        # db = column sums of D, written as ones @ D: for a tall, narrow D (73,728 x 20 in conv1)
        # BLAS does this several times faster than d2.sum(axis=0)
        self.grads["b"] = np.ones(len(d2), dtype=d2.dtype) @ d2
        if not self.compute_input_grad:
            return None
        dcols = self.buffer("dcols", cols.shape, dout.dtype)
        np.matmul(d2, W2, out=dcols)
        dx = np.empty(x_shape, dtype=dout.dtype)
        col2im_numba(dcols, k, k, self.stride, self.padding, dx)
        return dx.transpose(0, 3, 1, 2)


class MaxPool2D(Layer):
    """Max-pooling over ``size x size`` windows every ``stride`` pixels (default: stride = size).

    Shapes: x (N, C, H, W) -> out (N, C, OH, OW) with OH = (H - size) // stride + 1.
    Ties go to the first maximum in row-major order (see ``tinynet/nn/kernels.py``). Works channels-last
    in memory, like Conv2D: reads its input and writes its output and gradients as (N, H, W, C).
    """

    relu = False

    def __init__(self, size, stride=None, name=None):
        super().__init__(name)
        self.size = size
        self.stride = size if stride is None else stride

    def forward(self, x, train=True):
        x_nhwc = channels_last(x)
        N, H, W, C = x_nhwc.shape
        OH = conv_output_size(H, self.size, self.stride, 0)
        OW = conv_output_size(W, self.size, self.stride, 0)
        out = np.empty((N, OH, OW, C), dtype=x.dtype)
        argmax = self.buffer("argmax", (N, OH, OW, C), np.int32)
        maxpool_forward_numba(x_nhwc, self.size, self.stride, self.relu, out, argmax)
        self.cache = (x_nhwc.shape, argmax)
        return out.transpose(0, 3, 1, 2)

    def backward(self, dout):
        """dout (N, C, OH, OW) -> dx (N, C, H, W): dx[winner of window] += dout[window], 0 elsewhere."""
        x_shape, argmax = self.cache
        dx = np.empty(x_shape, dtype=dout.dtype)
        maxpool_backward_numba(channels_last(dout), argmax, dx)
        return dx.transpose(0, 3, 1, 2)


class ReLUMaxPool2D(MaxPool2D):
    """ReLU followed by max-pooling, fused: out = relu(maxpool(x)) = maxpool(relu(x)).

    Pooling first means ReLU runs on a quarter of the values and the ReLU mask is just "did the
    window's maximum exceed 0". Backward: the winner gets dout where that maximum was > 0, and
    nothing gets anything elsewhere. ``tests/test_layers.py`` checks it equals ReLU then MaxPool2D.
    """

    relu = True


class ReLU(Layer):
    """out = max(x, 0), elementwise; any shape."""

    def forward(self, x, train=True):
        self.cache = x > 0
        return np.maximum(x, 0)

    def backward(self, dout):
        """dx = dout where x > 0, else 0 (the subgradient 0 is used at x = 0)."""
        return dout * self.cache


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) in (C, H, W) order; backward reshapes back.

    On a contiguous NCHW array that is a free view. Inside the LeNet its input is the last pool's
    NCHW-shaped view of channels-last memory, so the reshape copies the values into (C, H, W) order
    (50 x 4 x 4 per image: small).
    """

    def forward(self, x, train=True):
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        """dx = dout reshaped to the input's shape: flattening only reorders values, so each one's
        gradient goes back to where it came from."""
        return dout.reshape(self.cache)


class Dense(Layer):
    """Fully connected layer: x (N, in) -> out = x @ W + b, shape (N, out)."""

    def __init__(self, in_features, out_features, *, rng, init="he", name=None):
        super().__init__(name)
        self.params = {"W": init_weights(init, rng, (in_features, out_features), in_features, out_features),
                       "b": np.zeros(out_features, dtype=np.float32)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x, train=True):
        self.cache = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        """dout (N, out) -> dx (N, in).  dW = x.T @ dout;  db = sum_n dout;  dx = dout @ W.T."""
        x = self.cache
        self.grads["W"] = x.T @ dout
        self.grads["b"] = dout.sum(axis=0)
        return dout @ self.params["W"].T


class Dropout(Layer):
    """Inverted dropout: while training, zero each value with probability ``p`` and scale the rest
    by 1 / (1 - p), so evaluation (``train=False``) is the identity. Any shape.
    """

    def __init__(self, p, *, rng, name=None):
        super().__init__(name)
        if not 0.0 <= p < 1.0:
            raise ArgumentError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng

    def forward(self, x, train=True):
        if not train or self.p == 0.0:
            self.cache = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        self.cache = keep.astype(x.dtype) / (1.0 - self.p)
        return x * self.cache

    def backward(self, dout):
        """dx = dout * mask / (1 - p), with the same mask as the forward pass."""
        return dout if self.cache is None else dout * self.cache


class LogitAdjustment(Layer):
    """Class-prior correction of the logits, for a model trained on unbalanced classes and used on
    balanced ones (logit adjustment: Menon et al., 2021, "Long-tail learning via logit adjustment").

    A model trained with cross-entropy on a set whose classes have frequencies ``prior`` learns
    ``p_train(k | x) ~ prior[k] * p(x | k)``. With every class equally likely, the same evidence
    gives ``p(k | x) ~ p(x | k)``, so the logits are corrected by the log prior:

        out = z - log(prior)      (evaluation, ``train=False``)
        out = z                   (training: the loss sees the training set as it is)

    No parameters: ``prior`` is fixed by the training set's label counts.
    """

    def __init__(self, prior, name=None):
        super().__init__(name)
        prior = np.asarray(prior, dtype=np.float64)
        if prior.ndim != 1 or not np.all(np.isfinite(prior)) or not np.all(prior > 0):
            raise ArgumentError("class prior must be a list of positive finite frequencies")
        self.offset = np.log(prior / prior.sum()).astype(np.float32)

    def forward(self, x, train=True):
        return x if train else x - self.offset

    def backward(self, dout):
        """dx = dout: the offset is a constant, in either mode."""
        return dout

    def astype(self, dtype):
        self.offset = self.offset.astype(dtype)
        return super().astype(dtype)


def _shifted_exp(logits):
    """``(z - max z, exp(z - max z), the row sums of that exp)`` of logits z (N, K): the stable
    core of the softmax, shared by :func:`softmax` and :class:`SoftmaxCrossEntropy`."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return shifted, e, e.sum(axis=1, keepdims=True)


def softmax(logits):
    """Row-wise softmax probabilities (N, K): p = exp(z - max z) / sum_k exp(z_k - max z)."""
    _, e, total = _shifted_exp(logits)
    return e / total


class SoftmaxCrossEntropy:
    """Softmax and cross-entropy fused into one numerically stable loss.

    logits z (N, K), integer labels y (N,), targets t (N, K): one-hot, or with label smoothing eps
    t = (1 - eps) * onehot + eps / K.

        log p = z - logsumexp(z)          (computed as z - max(z) - log(sum(exp(z - max(z)))))
        L     = -(1/N) * sum_n sum_k t[n, k] * log p[n, k]
        dL/dz = (p - t) / N
    """

    def __init__(self, label_smoothing=0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ArgumentError(f"label smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits, labels):
        """Returns the mean loss (a Python float); keeps the probabilities in ``self.probs``."""
        N, K = logits.shape
        shifted, _, total = _shifted_exp(logits)
        log_p = shifted - np.log(total)
        self.probs = np.exp(log_p)  # (not e / total: these bits keep every earlier run resumable exactly)
        self.labels = labels
        eps = self.label_smoothing
        nll = -log_p[np.arange(N), labels]
        loss = (1.0 - eps) * nll - eps * log_p.mean(axis=1) if eps else nll
        return float(loss.mean())

    def backward(self):
        """dL/dlogits = (p - t) / N, shape (N, K)."""
        N, K = self.probs.shape
        eps = self.label_smoothing
        grad = self.probs - eps / K
        grad[np.arange(N), self.labels] -= 1.0 - eps
        return grad / N
