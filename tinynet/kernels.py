"""The hot loops: im2col / col2im and max-pooling, each as a Numba kernel with a plain NumPy twin.

Every fast kernel here (``*_numba``) has a slow, obviously-correct NumPy reference (``*_reference``)
right below it, and ``tests/test_kernels.py`` checks that the two agree on random shapes. Read the
reference to understand what a kernel computes; read the kernel to see how it is made fast.

Layouts (NCHW throughout, see ``tinynet/layers.py``):

- ``im2col`` turns an input ``x`` of shape ``(N, C, H, W)`` into a matrix ``cols`` of shape
  ``(N*OH*OW, C*kH*kW)``: row ``r = (n*OH + oh)*OW + ow`` is the receptive field of output position
  ``(oh, ow)`` of image ``n``, column ``k = (c*kH + i)*kW + j`` its pixel at kernel offset ``(i, j)`` of
  channel ``c``. That is the layout the convolution's matrix multiply wants:
  ``cols @ W.reshape(C_out, C*kH*kW).T`` is the whole convolution for the whole batch in one large
  BLAS call, and each row is written (and, in col2im, read) contiguously.
- ``col2im`` is its adjoint: it scatters a ``cols``-shaped gradient back onto ``(N, C, H, W)``,
  *adding* where receptive fields overlap. The kernel runs in parallel over images, so no two
  threads ever write the same pixel (race-free, no atomics, no ``np.add.at``).
- ``maxpool_forward`` takes windows of ``size x size`` every ``stride`` pixels (no padding, output
  ``floor((H - size) / stride) + 1``) and records, for each output, the flat index ``h*W + w`` of the
  winning input pixel. Ties go to the *first* maximum in row-major order within the window, so the
  gradient of a tie goes to exactly one, deterministically chosen, input. With ``relu=True`` the
  kernel computes ``relu(maxpool(x))`` (equal to ``maxpool(relu(x))``, since both are monotone) and
  marks outputs that ReLU clipped with index ``-1``, so their gradient is dropped.
- ``maxpool_backward`` routes each output gradient to its recorded winner (adding where
  overlapping windows share a winner).
"""

import numpy as np
from numba import njit, prange


def conv_output_size(size, kernel, stride, padding):
    """Output length of a convolution or pooling along one axis: floor((size + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


# --------------------------------------------------------------------------------------------- im2col

@njit(parallel=True, cache=True)
def im2col_numba(x, kh, kw, stride, padding, cols):
    """Fill ``cols`` (N*OH*OW, C*kH*kW) from ``x`` (N, C, H, W); zero padding is implicit.

    Parallel over images; each output position's patch is written as one contiguous row. Patches
    that lie wholly inside the image (all of them when padding is 0) skip the bounds checks.
    """
    N, C, H, W = x.shape
    OH = (H + 2 * padding - kh) // stride + 1
    OW = (W + 2 * padding - kw) // stride + 1
    for n in prange(N):
        for oh in range(OH):
            for ow in range(OW):
                r = (n * OH + oh) * OW + ow
                h0 = oh * stride - padding
                w0 = ow * stride - padding
                inside = h0 >= 0 and w0 >= 0 and h0 + kh <= H and w0 + kw <= W
                k = 0
                for c in range(C):
                    for i in range(kh):
                        h = h0 + i
                        if inside:
                            for j in range(kw):
                                cols[r, k + j] = x[n, c, h, w0 + j]
                        else:
                            for j in range(kw):
                                w = w0 + j
                                cols[r, k + j] = x[n, c, h, w] if 0 <= h < H and 0 <= w < W else 0.0
                        k += kw
    return cols


def im2col_reference(x, kh, kw, stride, padding):
    """NumPy twin of :func:`im2col_numba`: returns ``cols`` of shape (N*OH*OW, C*kH*kW)."""
    N, C, H, W = x.shape
    OH = conv_output_size(H, kh, stride, padding)
    OW = conv_output_size(W, kw, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((N, OH, OW, C, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # every output position's pixel at kernel offset (i, j): a strided slice of the input
            window = xp[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]  # (N, C, OH, OW)
            cols[:, :, :, :, i, j] = window.transpose(0, 2, 3, 1)
    return cols.reshape(N * OH * OW, C * kh * kw)


# --------------------------------------------------------------------------------------------- col2im

@njit(parallel=True, cache=True)
def col2im_numba(cols, kh, kw, stride, padding, dx):
    """Overwrite ``dx`` (N, C, H, W) with the sum of ``cols`` (N*OH*OW, C*kH*kW) over receptive fields.

    Parallel over images ``n``: each thread owns whole images, so writes never race.
    """
    N, C, H, W = dx.shape
    OH = (H + 2 * padding - kh) // stride + 1
    OW = (W + 2 * padding - kw) // stride + 1
    for n in prange(N):
        dx[n] = 0.0
        for oh in range(OH):
            for ow in range(OW):
                r = (n * OH + oh) * OW + ow
                h0 = oh * stride - padding
                w0 = ow * stride - padding
                inside = h0 >= 0 and w0 >= 0 and h0 + kh <= H and w0 + kw <= W
                k = 0
                for c in range(C):
                    for i in range(kh):
                        h = h0 + i
                        if inside:
                            for j in range(kw):
                                dx[n, c, h, w0 + j] += cols[r, k + j]
                        else:
                            for j in range(kw):
                                w = w0 + j
                                if 0 <= h < H and 0 <= w < W:
                                    dx[n, c, h, w] += cols[r, k + j]
                        k += kw
    return dx


def col2im_reference(cols, x_shape, kh, kw, stride, padding):
    """NumPy twin of :func:`col2im_numba`: returns ``dx`` of shape ``x_shape`` (N, C, H, W)."""
    N, C, H, W = x_shape
    OH = conv_output_size(H, kh, stride, padding)
    OW = conv_output_size(W, kw, stride, padding)
    dxp = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    c6 = cols.reshape(N, OH, OW, C, kh, kw)
    for i in range(kh):
        for j in range(kw):
            # within one (i, j) the strided slice touches each pixel at most once, so += is safe
            dxp[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] += c6[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, padding:padding + H, padding:padding + W]


# -------------------------------------------------------------------------------------------- maxpool

@njit(parallel=True, cache=True)
def maxpool_forward_numba(x, size, stride, relu, out, argmax):
    """Fill ``out`` and ``argmax`` (N, C, OH, OW) from ``x`` (N, C, H, W); see the module docstring."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        for oh in range(OH):
            for ow in range(OW):
                h0 = oh * stride
                w0 = ow * stride
                best = x[n, c, h0, w0]
                where = h0 * W + w0
                for i in range(size):
                    for j in range(size):
                        v = x[n, c, h0 + i, w0 + j]
                        if v > best:  # strict: the first maximum wins ties
                            best = v
                            where = (h0 + i) * W + w0 + j
                if relu and not best > 0.0:
                    best = 0.0
                    where = -1
                out[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = where
    return out, argmax


def maxpool_forward_reference(x, size, stride, relu=False):
    """NumPy twin of :func:`maxpool_forward_numba`: returns ``(out, argmax)``, each (N, C, OH, OW)."""
    N, C, H, W = x.shape
    OH = conv_output_size(H, size, stride, 0)
    OW = conv_output_size(W, size, stride, 0)
    out = np.full((N, C, OH, OW), -np.inf, dtype=x.dtype)
    argmax = np.zeros((N, C, OH, OW), dtype=np.int32)
    for i in range(size):          # visit window offsets in row-major order ...
        for j in range(size):
            v = x[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
            better = v > out       # ... and replace only on a strict improvement: first maximum wins
            out = np.where(better, v, out)
            rows = np.arange(OH)[:, None] * stride + i
            cols = np.arange(OW)[None, :] * stride + j
            argmax = np.where(better, rows * W + cols, argmax).astype(np.int32)
    if relu:
        clipped = ~(out > 0)
        out = np.where(clipped, 0, out).astype(x.dtype)
        argmax = np.where(clipped, -1, argmax).astype(np.int32)
    return out, argmax


@njit(parallel=True, cache=True)
def maxpool_backward_numba(dout, argmax, dx):
    """Overwrite ``dx`` (N, C, H, W) with ``dout`` (N, C, OH, OW) routed to the recorded winners."""
    N, C, H, W = dx.shape
    OH, OW = dout.shape[2], dout.shape[3]
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        dx[n, c] = 0.0
        for oh in range(OH):
            for ow in range(OW):
                where = argmax[n, c, oh, ow]
                if where >= 0:
                    dx[n, c, where // W, where % W] += dout[n, c, oh, ow]
    return dx


def maxpool_backward_reference(dout, argmax, x_shape):
    """NumPy twin of :func:`maxpool_backward_numba`: returns ``dx`` of shape ``x_shape``."""
    N, C, H, W = x_shape
    dx = np.zeros((N * C, H * W), dtype=dout.dtype)
    flat_dout = dout.reshape(N * C, -1)
    flat_arg = argmax.reshape(N * C, -1)
    for p in range(flat_arg.shape[1]):  # one output position at a time: no duplicate targets per step
        winners = flat_arg[:, p]
        keep = winners >= 0
        dx[np.nonzero(keep)[0], winners[keep]] += flat_dout[keep, p]
    return dx.reshape(x_shape)
