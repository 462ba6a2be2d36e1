"""Layers with explicit forward and backward passes.

Conventions (used everywhere in tinynet):

- Images are NCHW: ``(N, C, H, W)``; the network input is float32 ``(N, 1, H, W)`` in [0, 1]
  (28 x 28 for EMNIST).
  That is the *shape* (and how you index them). In memory, the convolution and pooling layers
  store their outputs channels-last, ``(N, H, W, C)``, the layout their kernels and matmuls work in,
  and return them as NCHW-shaped views (``channels_last`` below undoes the view for free).
- Conv weights are ``(C_out, C_in, kH, kW)``, conv biases ``(C_out,)``.
- Flatten keeps ``(C, H, W)`` order (NumPy's C order), so feature ``c*H*W + h*W + w``.
- Dense weights are ``(in, out)`` and a dense layer computes ``x @ W + b``.
- Every layer holds ``params`` and ``grads``: dicts from a name (``"W"``, ``"b"``) to an array of
  the same shape. ``backward`` **overwrites** ``grads`` (it never accumulates), using what the most
  recent ``forward`` cached; so call ``forward`` then ``backward`` once per batch.
- A layer may also hold ``state``: arrays that are not parameters (batch normalisation's running
  mean and variance): the optimiser never sees them, training updates them in ``forward``, and
  checkpoints save and restore them beside the parameters (``NAME.running_mean``...).
- ``forward(x, train)``: ``train`` only matters to layers that behave differently while training
  (dropout, batch normalisation). ``backward(dout)`` takes dL/d(output) and returns dL/d(input).
- A layer keeps each of its settings as an attribute named like its constructor's argument
  (``Conv2D.kernel_size``, ``Dense.out_features``, ``Dropout.p``...; the sizes its weights fix are
  properties): ``tinynet.nn.describe`` reads them to write a network down as data, and builds
  layers back from that description.

Each backward docstring gives the backprop equation it implements. The gradient checks in
``tests/test_layers.py`` compare every one of them with centred finite differences.
"""

import math

import numpy as np

from ..errors import ArgumentError
from .kernels import (col2im_numba, conv_output_size, im2col_numba, maxpool_backward_numba,
                      maxpool_forward_numba, to_pooling_order)


# Bytes of im2col matrix per chunk of images (Conv2D.convolve): small enough that each chunk's
# matrix and matmul output are still in cache (L2 and L3) when the matmul and the pooling read
# them; measured on a 2-core AMD EPYC (512 KB L2 per core), 256 KB to 1 MB were best.
CHUNK_BYTES = 1 << 20


def chunk_images(n, bytes_per_image):
    """Images per chunk: as many as fit in CHUNK_BYTES of im2col matrix, at least one, at most n."""
    return max(1, min(n, CHUNK_BYTES // max(1, bytes_per_image)))


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
        self.state = {}  # arrays that are not parameters (running statistics): saved, not trained
        self._buffers = {}

    def buffer(self, key, shape, dtype):
        """A scratch array reused between batches (reallocated only when shape or dtype change)."""
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[key] = np.empty(shape, dtype=dtype)
        return buf

    def astype(self, dtype):
        """Convert parameters and state (and drop cached buffers) to ``dtype``, e.g. float64 for
        gradient checks."""
        self.params = {k: v.astype(dtype) for k, v in self.params.items()}
        self.state = {k: v.astype(dtype) for k, v in self.state.items()}
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

    Memory layout: ``out2``, read as (N, OH, OW, C_out), is returned transposed to NCHW shape
    without copying, so activations stay channels-last in memory from layer to layer (the next
    layer's kernels read them as they are). The batch is convolved a chunk of images at a time
    (:meth:`convolve`), each chunk's im2col matrix and matmul small enough to stay in cache.
    Followed by a max-pooling layer, it runs fused with it (``tinynet/nn/convpool.py``).
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
        # skips a matmul and a col2im in backward (build_model() does so for a first Conv2D).
        self.compute_input_grad = True

    @property
    def in_channels(self):
        return self.params["W"].shape[1]

    @property
    def out_channels(self):
        return self.params["W"].shape[0]

    def forward(self, x, train=True):
        """x (N, C_in, H, W) -> out (N, C_out, OH, OW): a new array, channels-last in memory."""
        out = None
        for n0, n1, conv in self.convolve(x, train):
            if out is None:
                out = np.empty((len(x), *conv.shape[1:]), dtype=conv.dtype)
            np.add(conv, self.params["b"], out=out[n0:n1])  # + b while the chunk is in cache
        return out.transpose(0, 3, 1, 2)

    def geometry(self, x):
        """``(x channels-last (N, H, W, C_in), OH, OW, W2)`` for an input ``x`` (N, C_in, H, W),
        with W2 = the weights as (C_out, kH*kW*C_in), columns in im2col's (i, j, c) order."""
        W = self.params["W"]
        c_out, _, k, _ = W.shape
        x_nhwc = channels_last(x)
        _, H, Wd, _ = x_nhwc.shape
        OH = conv_output_size(H, k, self.stride, self.padding)
        OW = conv_output_size(Wd, k, self.stride, self.padding)
        return x_nhwc, OH, OW, W.transpose(0, 2, 3, 1).reshape(c_out, -1)

    def convolve(self, x, train):
        """Yields ``(n0, n1, conv)`` for consecutive chunks of images: ``conv`` (n1 - n0, OH, OW,
        C_out) holds images n0..n1-1 convolved, *without* the bias, in a scratch buffer that the
        next chunk overwrites. Each chunk's im2col matrix is about CHUNK_BYTES, so it is still in
        cache when its matmul reads it. While training, the chunks fill one im2col matrix for the
        whole batch, which backward needs; otherwise one chunk-sized matrix is reused and backward
        (explain's saliency maps run one) rebuilds it from the cached input."""
        x_nhwc, OH, OW, W2 = self.geometry(x)
        N, (c_out, _, k, _) = len(x_nhwc), self.params["W"].shape
        per_image = OH * OW
        step = chunk_images(N, per_image * W2.shape[1] * x.itemsize)
        if train:
            cols = self.buffer("cols", (N * per_image, W2.shape[1]), x.dtype)
        else:
            cols = self.buffer("chunk_cols", (step * per_image, W2.shape[1]), x.dtype)
        conv = self.buffer("conv", (step * per_image, c_out), x.dtype)
        self.cache = (x_nhwc.shape, cols if train else x_nhwc, W2, None)
        for n0 in range(0, max(N, 1), step):  # (an empty batch: one empty chunk)
            n1 = min(N, n0 + step)
            rows = slice(n0 * per_image, n1 * per_image) if train else slice(0, (n1 - n0) * per_image)
            im2col_numba(x_nhwc[n0:n1], k, k, self.stride, self.padding, cols[rows])
            part = conv[:(n1 - n0) * per_image]
            np.matmul(cols[rows], W2.T, out=part)
            yield n0, n1, part.reshape(n1 - n0, OH, OW, c_out)

    def backward(self, dout):
        """dout (N, C_out, OH, OW) -> dx (N, C_in, H, W), or None if ``compute_input_grad`` is off.

        With D = dout as (N*OH*OW, C_out), one row per output position (a view: dout is
        channels-last in memory):
            dW2 = D.T @ X          (the same matmul as a dense layer's dW = x.T @ dout)
            db  = D summed over its rows
            dX  = D @ W2,  dx = col2im(dX)   (each input pixel sums the gradients of every
                                              output whose receptive field contains it)
        The rows of D are taken in the order of the cached im2col matrix X: im2col's, or pooling
        order after a training pass fused with a max-pooling (``tinynet/nn/convpool.py``).
        """
        x_shape, cols, W2, pool = self.cache
        c_out, _, k, _ = self.params["W"].shape
        if cols.ndim == 4:  # the forward pass ran for evaluation: cached its input, not its im2col
            x_nhwc = cols
            cols = np.empty((len(x_nhwc) * dout.shape[2] * dout.shape[3], W2.shape[1]), x_nhwc.dtype)
            self.cache = (x_shape, im2col_numba(x_nhwc, k, k, self.stride, self.padding, cols), W2, None)
        d = channels_last(dout)
        return self.backward_rows(d.reshape(-1, c_out) if pool is None else to_pooling_order(d, pool))

    def backward_rows(self, d2):
        """:meth:`backward` from D (N*OH*OW, C_out), its rows in the order of the cached im2col
        matrix. dX is computed and scattered a chunk of images at a time, so it never leaves the
        cache."""
        x_shape, cols, W2, pool = self.cache
        c_out, c_in, k, _ = self.params["W"].shape
        dW2 = d2.T @ cols
        self.grads["W"] = np.ascontiguousarray(dW2.reshape(c_out, k, k, c_in).transpose(0, 3, 1, 2))
        # db = column sums of D, written as ones @ D: for a tall, narrow D (73,728 x 20 in conv1)
        # BLAS does this several times faster than d2.sum(axis=0)
        self.grads["b"] = np.ones(len(d2), dtype=d2.dtype) @ d2
        if not self.compute_input_grad:
            return None
        N = x_shape[0]
        per_image = len(d2) // max(N, 1)
        step = chunk_images(N, per_image * W2.shape[1] * d2.itemsize)
        dcols = self.buffer("dcols", (step * per_image, W2.shape[1]), d2.dtype)
        dx = np.empty(x_shape, dtype=d2.dtype)
        for n0 in range(0, N, step):
            n1 = min(N, n0 + step)
            part = dcols[:(n1 - n0) * per_image]
            np.matmul(d2[n0 * per_image:n1 * per_image], W2, out=part)
            col2im_numba(part, k, k, self.stride, self.padding, dx[n0:n1], pool or 1)
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
        if callable(self.cache):  # after an evaluation pass fused with its convolution: find the winners
            self.cache = self.cache()
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
        return x.reshape(len(x), math.prod(x.shape[1:]))  # (not -1: NumPy cannot infer it for 0 images)

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

    @property
    def in_features(self):
        return self.params["W"].shape[0]

    @property
    def out_features(self):
        return self.params["W"].shape[1]

    def forward(self, x, train=True):
        self.cache = x
        out = x @ self.params["W"]
        out += self.params["b"]  # in place: no second (N, out) array
        return out

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


def check_batchnorm_settings(eps, momentum):
    """ArgumentError for an ``eps`` that is not a positive finite number or a ``momentum`` (the
    running statistics' update rate) outside [0, 1]."""
    if not (isinstance(eps, (int, float, np.floating)) and math.isfinite(eps) and eps > 0):
        raise ArgumentError(f"batch normalisation's eps must be a positive finite number, got {eps!r}")
    if not (isinstance(momentum, (int, float, np.floating)) and 0.0 <= momentum <= 1.0):
        raise ArgumentError(f"batch normalisation's momentum must be a number in [0, 1], got {momentum!r}")


class BatchNorm(Layer):
    """Batch normalisation of the columns of a matrix (M, C): the maths :class:`BatchNorm2D` and
    :class:`BatchNorm1D` share (the symbols of ``docs/notation.md``; the derivation is in
    ``docs/backprop.md`` and ``notebooks/build_a_layer.ipynb``).

    Training (``train=True``), for each channel c over the M values of the batch:

        x̄_c = mean of x[:, c]            σ²_c = mean of (x[:, c] - x̄_c)²     (biased: / M)
        x̂ = (x - x̄_c) / sqrt(σ²_c + ε)    out = γ_c x̂ + β_c

    and the running statistics move towards the batch's, at rate ρ = ``momentum`` (PyTorch's
    convention, so imports and exports agree with it and with ONNX):

        running_mean = (1 - ρ) running_mean + ρ x̄_c
        running_var  = (1 - ρ) running_var  + ρ σ²_c M / (M - 1)     (unbiased; M = 1: σ²_c)

    Evaluation (``train=False``) uses the running statistics instead of the batch's, so the layer
    is a fixed affine map, out = x * scale + shift with scale = γ / sqrt(running_var + ε) and
    shift = β - running_mean * scale, and an image's output does not depend on its batch.

    Parameters ``gamma`` (γ, ONNX's ``scale``, starts at 1) and ``beta`` (β, ONNX's ``B``, starts
    at 0); state ``running_mean`` (starts at 0) and ``running_var`` (starts at 1), ONNX's
    ``input_mean`` and ``input_var``. A batch of no rows gives no rows and changes nothing.
    ``update_running``: False on ``tinynet.nn.parallel``'s replicas, which only keep their slice's
    statistics (``batch_statistics``: count, mean, biased variance) for the model to merge.
    """

    def __init__(self, channels, eps=1e-5, momentum=0.1, name=None):
        super().__init__(name)
        check_batchnorm_settings(eps, momentum)
        self.eps, self.momentum = float(eps), float(momentum)
        self.params = {"gamma": np.ones(channels, dtype=np.float32),
                       "beta": np.zeros(channels, dtype=np.float32)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.state = {"running_mean": np.zeros(channels, dtype=np.float32),
                      "running_var": np.ones(channels, dtype=np.float32)}
        self.update_running = True
        self.batch_statistics = None

    def state_fault(self):
        """What is wrong with the running statistics (a negative variance, which no batch can
        give), or None; checkpoints are checked with it when read."""
        if (self.state["running_var"] < 0).any():
            return "its running_var holds negative values (a variance is >= 0)"
        return None

    def normalise(self, x2, train):
        """x2 (M, C) -> out (M, C), a new array; caches what :meth:`normalise_backward` needs."""
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not train:
            scale = gamma / np.sqrt(self.state["running_var"] + self.eps)
            self.cache = (False, x2, scale)
            out = x2 * scale
            out += beta - self.state["running_mean"] * scale
            return out
        M = len(x2)
        mean = x2.mean(axis=0) if M else np.zeros_like(gamma)
        centred = x2 - mean
        var = np.einsum("mc,mc->c", centred, centred) / max(M, 1)  # (biased: the batch's own)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        x_hat = centred
        x_hat *= inv_std
        self.cache = (True, x_hat, inv_std)
        self.batch_statistics = (M, mean, var)
        if self.update_running:
            self.update_running_statistics([self.batch_statistics])
        return x_hat * gamma + beta

    def update_running_statistics(self, statistics):
        """Move the running statistics towards a batch's, given as ``(count, mean, biased
        variance)`` of one batch or of the consecutive slices it was cut into (``DataParallel``),
        merged in slice order into the whole batch's (the slices' sums of squares about the
        batch's mean); a batch of no rows changes nothing. Updates the arrays in place."""
        statistics = [s for s in statistics if s[0] > 0]
        if not statistics:
            return
        if len(statistics) == 1:
            M, mean, var = statistics[0]
        else:
            M = sum(n for n, _, _ in statistics)
            mean = sum(n * m.astype(np.float64) for n, m, _ in statistics) / M
            var = sum(n * (v + (m.astype(np.float64) - mean) ** 2) for n, m, v in statistics) / M
        rho, running = self.momentum, self.state
        unbiased = var * (M / (M - 1)) if M > 1 else var
        running["running_mean"][...] = (1 - rho) * running["running_mean"] + rho * mean
        running["running_var"][...] = (1 - rho) * running["running_var"] + rho * unbiased

    def normalise_backward(self, d2):
        """d2 = G (M, C) -> dx (M, C); fills dgamma and dbeta.

        Training (the batch statistics depend on x, so every row's gradient involves the others':
        the derivation is in ``docs/backprop.md``), with sums over the M rows:
            dbeta  = sum G        dgamma = sum G x̂
            dx     = γ / (M sqrt(σ² + ε)) * (M G - sum G - x̂ sum(G x̂))
        Evaluation (fixed statistics: an affine map):
            dbeta  = sum G        dgamma = sum G x̂     dx = G γ / sqrt(running_var + ε)
        """
        train, held, scale = self.cache
        if not train:  # held: the input; x̂ of the running statistics, rebuilt here
            x_hat = (held - self.state["running_mean"]) / np.sqrt(self.state["running_var"] + self.eps)
            self.grads["beta"] = d2.sum(axis=0)
            self.grads["gamma"] = np.einsum("mc,mc->c", d2, x_hat)
            return d2 * scale
        x_hat, inv_std, M = held, scale, len(d2)
        self.grads["beta"] = dbeta = d2.sum(axis=0)
        self.grads["gamma"] = dgamma = np.einsum("mc,mc->c", d2, x_hat)
        dx = d2 * M
        dx -= dbeta
        dx -= x_hat * dgamma
        dx *= self.params["gamma"] * inv_std / max(M, 1)
        return dx


class BatchNorm2D(BatchNorm):
    """Batch normalisation after a convolution: one γ, β and pair of statistics per channel, over
    the batch and every position, x (N, C, H, W) -> out (N, C, H, W) (:class:`BatchNorm` has the
    maths). Works channels-last in memory like Conv2D: the input read as (N*H*W, C) (a free view of
    a convolution's output), the output returned as an NCHW-shaped view of channels-last memory."""

    @property
    def channels(self):
        return len(self.params["gamma"])

    def forward(self, x, train=True):
        x_nhwc = channels_last(x)
        out = self.normalise(x_nhwc.reshape(-1, x_nhwc.shape[3]), train)
        return out.reshape(x_nhwc.shape).transpose(0, 3, 1, 2)

    def backward(self, dout):
        """dout (N, C, H, W) -> dx (N, C, H, W): :meth:`BatchNorm.normalise_backward` on the
        N*H*W rows of channels (M = N*H*W):
            dx = γ / (M sqrt(σ² + ε)) (M G - sum G - x̂ sum(G x̂))   (training)
            dx = G γ / sqrt(running_var + ε)                          (evaluation)
        """
        d_nhwc = channels_last(dout)
        dx = self.normalise_backward(d_nhwc.reshape(-1, d_nhwc.shape[3]))
        return dx.reshape(d_nhwc.shape).transpose(0, 3, 1, 2)


class BatchNorm1D(BatchNorm):
    """Batch normalisation after a dense layer: one γ, β and pair of statistics per feature, over
    the batch, x (N, F) -> out (N, F) (:class:`BatchNorm` has the maths)."""

    @property
    def features(self):
        return len(self.params["gamma"])

    def forward(self, x, train=True):
        return self.normalise(x, train)

    def backward(self, dout):
        """dout (N, F) -> dx (N, F), with M = N (:meth:`BatchNorm.normalise_backward`):
            dx = γ / (N sqrt(σ² + ε)) (N G - sum G - x̂ sum(G x̂))    (training)
            dx = G γ / sqrt(running_var + ε)                           (evaluation)
        """
        return self.normalise_backward(dout)


class LogitAdjustment(Layer):
    """Class-prior correction of the logits, for a model trained on unbalanced classes and used on
    balanced ones (logit adjustment: Menon et al., 2021, "Long-tail learning via logit adjustment").

    A model trained with cross-entropy on a set whose classes have frequencies ``prior`` learns
    ``p_train(k | x) ~ prior[k] * p(x | k)``. With every class equally likely, the same evidence
    gives ``p(k | x) ~ p(x | k)``, so the logits are corrected by the log prior:

        out = z - log(prior)      (evaluation, ``train=False``)
        out = z                   (training: the loss sees the training set as it is)

    No parameters: ``prior`` is fixed by the training set's label counts (kept as given, a list of
    floats, for the network's description; only ``offset`` is used).
    """

    def __init__(self, prior, name=None):
        super().__init__(name)
        prior = np.asarray(prior, dtype=np.float64)
        if prior.ndim != 1 or not np.all(np.isfinite(prior)) or not np.all(prior > 0):
            raise ArgumentError("class prior must be a list of positive finite frequencies")
        self.prior = prior.tolist()
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


def check_labels(labels, num_classes, count=None):
    """``labels`` as an integer array of shape (count,), or ArgumentError naming the first label
    outside [0, num_classes): NumPy would take a label of -1 as class K-1 without a word."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.ndim != 1 or count not in (None, len(labels)):
        shape = f"({'N' if count is None else count},)"
        raise ArgumentError(f"labels must be integers of shape {shape}, got {labels.dtype} of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ArgumentError(f"label {bad} is outside [0, {num_classes}): there are {num_classes} "
                            f"classes, labelled 0 to {num_classes - 1}")
    return labels


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
        """Returns the mean loss (a Python float; NaN for an empty batch, the mean of nothing);
        keeps the probabilities in ``self.probs``. ArgumentError for labels that are not N
        integers in [0, K)."""
        N, K = logits.shape
        labels = check_labels(labels, K, N)
        shifted, _, total = _shifted_exp(logits)
        log_p = shifted - np.log(total)
        self.probs = np.exp(log_p)  # (not e / total: these bits keep every earlier run resumable exactly)
        self.labels = labels
        eps = self.label_smoothing
        nll = -log_p[np.arange(N), labels]
        loss = (1.0 - eps) * nll - eps * log_p.mean(axis=1) if eps else nll
        return float(loss.mean()) if N else math.nan

    def backward(self):
        """dL/dlogits = (p - t) / N, shape (N, K)."""
        N, K = self.probs.shape
        eps = self.label_smoothing
        grad = self.probs - eps / K
        grad[np.arange(N), self.labels] -= 1.0 - eps
        return grad / N
