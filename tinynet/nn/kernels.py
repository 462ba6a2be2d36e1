"""The hot loops: im2col / col2im and max-pooling, each as a Numba kernel with a plain NumPy twin.

Every fast kernel here (``*_numba``) has a slow, obviously-correct NumPy reference (``*_reference``)
right below it, and ``tests/test_kernels.py`` checks that the two agree on random shapes. Read the
reference to understand what a kernel computes; read the kernel to see how it is made fast.

Layouts. The kernels work on images stored **channels-last**, ``(N, H, W, C)`` (NHWC): the C values
of one pixel sit side by side in memory. The layers keep NCHW *shapes* (``tinynet/nn/layers.py`` hands
the kernels ``x.transpose(0, 2, 3, 1)``, which is free when the data is already channels-last in
memory, as every activation inside the LeNet is).

- ``im2col`` turns ``x`` of shape ``(N, H, W, C)`` into a matrix ``cols`` of shape
  ``(N*OH*OW, kH*kW*C)``: row ``r = (n*OH + oh)*OW + ow`` is the receptive field of output position
  ``(oh, ow)`` of image ``n``, column ``k = (i*kW + j)*C + c`` its pixel at kernel offset ``(i, j)`` in
  channel ``c``. That is the layout the convolution's matrix multiply wants: ``cols @ W2.T`` (W2 the
  weights in the same (i, j, c) order) is the whole convolution for the whole batch in one BLAS call,
  and its result, one row of C_out values per output position, is again channels-last. Channels-last
  also makes the copies long: each kernel row ``i`` of a patch is ``kW*C`` consecutive numbers in
  ``x`` and in ``cols`` (100 for conv2) instead of ``C`` separate runs of ``kW``.
- ``col2im`` is its adjoint: it scatters a ``cols``-shaped gradient back onto ``(N, H, W, C)``,
  *adding* where receptive fields overlap.
- ``maxpool_forward`` takes windows of ``size x size`` every ``stride`` pixels (no padding, output
  ``floor((H - size) / stride) + 1``) and records, for each output, the flat index ``h*W + w`` of the
  winning pixel within its channel. Ties go to the *first* maximum in row-major order within the
  window, so the gradient of a tie goes to exactly one, deterministically chosen, input. A NaN
  beats every number (the window's first NaN wins, as with ``np.argmax``), so a NaN anywhere in a
  window comes out: pooling never hides one. With ``relu=True`` the kernel computes
  ``relu(maxpool(x))`` (equal to ``maxpool(relu(x))``, since both are monotone; NaN stays NaN as
  ``np.maximum(NaN, 0)`` does) and marks outputs that ReLU clipped, and NaN outputs (ReLU's mask
  ``x > 0`` is False for NaN), with index ``-1``, so their gradient is dropped.
- ``maxpool_backward`` routes each output gradient to its recorded winner (adding where
  overlapping windows share a winner).
- *Pooling order* (``im2col_pooled``, ``maxpool_blocks*``, ``col2im`` with ``pool``): when a
  ``pool x pool`` max-pooling with stride ``pool`` follows the convolution, im2col's rows can be
  grouped by their offset inside the pooling window, so that the matmul returns each window's
  candidates as pool*pool contiguous blocks, and pooling (with or without its winners) and its
  backward become elementwise passes over long runs of numbers (``tinynet/nn/convpool.py``).

Threads. Each kernel runs in the thread that calls it and releases the GIL (``nogil``): tinynet's
parallelism is a split of the batch into slices, each run by one thread with its own buffers
(``tinynet/nn/parallel.py``), so every thread owns whole images and no two threads ever write the same
pixel (race-free, no atomics, no ``np.add.at``).
"""

import numpy as np
from numba import njit


TILE = 64  # rows per pass of maxpool_blocks_numba


def conv_output_size(size, kernel, stride, padding):
    """Output length of a convolution or pooling along one axis: floor((size + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


# --------------------------------------------------------------------------------------------- im2col

@njit(nogil=True, cache=True, inline="always")
def copy_patch_5x5(image, h0, w0, row):
    """``row[0:25]`` = the 5x5 patch of the one-channel ``image`` (H, W) at (h0, w0), in (i, j)
    order. The LeNet's first layer (5x5 kernels on a one-channel image) spends most of its im2col
    here: with the sizes fixed, the compiler unrolls these loops into straight copies (about 3x
    faster than the general loops below, whose runs are only 5 numbers long)."""
    for i in range(5):
        for j in range(5):
            row[i * 5 + j] = image[h0 + i, w0 + j]


@njit(nogil=True, cache=True)
def im2col_numba(x, kh, kw, stride, padding, cols):
    """Fill ``cols`` (N*OH*OW, kH*kW*C) from ``x`` (N, H, W, C); zero padding is implicit.

    Each kernel row of a patch that lies inside the image is one run of kW*C consecutive numbers,
    copied without bounds checks; only patches that overlap the padding check each pixel.
    """
    N, H, W, C = x.shape
    OH = (H + 2 * padding - kh) // stride + 1
    OW = (W + 2 * padding - kw) // stride + 1
    run = kw * C
    rows = x.reshape(N, H, W * C)  # one image row per row: pixel w, channel c at w*C + c
    if C == 1 and kh == 5 and kw == 5 and padding == 0:  # the LeNet's conv1
        for n in range(N):
            for oh in range(OH):
                for ow in range(OW):
                    copy_patch_5x5(rows[n], oh * stride, ow * stride, cols[(n * OH + oh) * OW + ow])
        return cols
    for n in range(N):
        for oh in range(OH):
            h0 = oh * stride - padding
            for ow in range(OW):
                r = (n * OH + oh) * OW + ow
                w0 = ow * stride - padding
                inside = w0 >= 0 and w0 + kw <= W
                for i in range(kh):
                    h = h0 + i
                    k = i * run
                    if inside and 0 <= h < H:
                        start = w0 * C
                        for t in range(run):
                            cols[r, k + t] = rows[n, h, start + t]
                    else:
                        for j in range(kw):
                            w = w0 + j
                            ok = 0 <= h < H and 0 <= w < W
                            for c in range(C):
                                cols[r, k + j * C + c] = rows[n, h, w * C + c] if ok else 0.0
    return cols


def im2col_reference(x, kh, kw, stride, padding):
    """NumPy twin of :func:`im2col_numba`: ``x`` (N, H, W, C) -> ``cols`` (N*OH*OW, kH*kW*C)."""
    N, H, W, C = x.shape
    OH = conv_output_size(H, kh, stride, padding)
    OW = conv_output_size(W, kw, stride, padding)
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    cols = np.empty((N, OH, OW, kh, kw, C), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # every output position's pixel at kernel offset (i, j): a strided slice of the input
            cols[:, :, :, i, j, :] = xp[:, i:i + stride * OH:stride, j:j + stride * OW:stride, :]
    return cols.reshape(N * OH * OW, kh * kw * C)


@njit(nogil=True, cache=True)
def im2col_pooled_numba(x, kh, kw, stride, padding, pool, cols):
    """Fill ``cols`` (N * pool*pool * PH*PW, kH*kW*C) with the receptive fields of the convolution
    outputs that a ``pool x pool`` max-pooling (stride ``pool``) reads, in *pooling order*: image n's
    rows come as pool*pool blocks, block ``b = a*pool + e`` holding, for every pooling window
    (ph, pw) of the image in order, the receptive field of output (ph*pool + a, pw*pool + e), the
    window's pixel at offset (a, e) (row ``((n*pool*pool + b)*PH + ph)*PW + pw``). The matmul of
    such a matrix gives each window's pool*pool candidates as pool*pool contiguous blocks per
    image, which :func:`maxpool_blocks_numba` (evaluation) and :func:`maxpool_blocks_winners_numba`
    (training) pool elementwise. PH = OH // pool, PW = OW // pool: outputs that no window reads are
    not computed."""
    N, H, W, C = x.shape
    OH = (H + 2 * padding - kh) // stride + 1
    OW = (W + 2 * padding - kw) // stride + 1
    PH, PW = OH // pool, OW // pool
    run = kw * C
    rows = x.reshape(N, H, W * C)
    for n in range(N):
        for a in range(pool):
            for e in range(pool):
                for ph in range(PH):
                    h0 = (ph * pool + a) * stride - padding
                    r0 = ((n * pool * pool + a * pool + e) * PH + ph) * PW
                    if C == 1 and kh == 5 and kw == 5 and padding == 0:  # the LeNet's conv1
                        if stride == 1 and pool == 2:  # (constants: about 1.5x faster)
                            for pw in range(PW):
                                copy_patch_5x5(rows[n], h0, 2 * pw + e, cols[r0 + pw])
                        else:
                            for pw in range(PW):
                                copy_patch_5x5(rows[n], h0, (pw * pool + e) * stride, cols[r0 + pw])
                        continue
                    for pw in range(PW):
                        r = r0 + pw
                        w0 = (pw * pool + e) * stride - padding
                        inside = w0 >= 0 and w0 + kw <= W
                        for i in range(kh):
                            h = h0 + i
                            k = i * run
                            if inside and 0 <= h < H:
                                start = w0 * C
                                for t in range(run):
                                    cols[r, k + t] = rows[n, h, start + t]
                            else:
                                for j in range(kw):
                                    w = w0 + j
                                    ok = 0 <= h < H and 0 <= w < W
                                    for c in range(C):
                                        cols[r, k + j * C + c] = rows[n, h, w * C + c] if ok else 0.0
    return cols


def to_pooling_order(a, pool):
    """``a`` (N, OH, OW, X), one row of X numbers per convolution output, -> its rows in pooling
    order (N * pool*pool * PH*PW, X), as :func:`im2col_pooled_numba` orders them (outputs that no
    window reads left out). NumPy; a copy."""
    N, OH, OW, X = a.shape
    PH, PW = OH // pool, OW // pool
    a6 = a[:, :PH * pool, :PW * pool].reshape(N, PH, pool, PW, pool, X)
    return np.ascontiguousarray(a6.transpose(0, 2, 4, 1, 3, 5)).reshape(-1, X)


def from_pooling_order(rows, shape, pool):
    """The inverse of :func:`to_pooling_order`: rows in pooling order -> (N, OH, OW, X) of
    ``shape``, zero at the outputs that no window reads. NumPy; a copy."""
    N, OH, OW, X = shape
    PH, PW = OH // pool, OW // pool
    out = np.zeros(shape, dtype=rows.dtype)
    blocks = rows.reshape(N, pool, pool, PH, PW, X).transpose(0, 3, 1, 4, 2, 5)
    out[:, :PH * pool, :PW * pool] = blocks.reshape(N, PH * pool, PW * pool, X)
    return out


def im2col_pooled_reference(x, kh, kw, stride, padding, pool):
    """NumPy twin of :func:`im2col_pooled_numba`: the rows of :func:`im2col_reference` reordered."""
    N, H, W, C = x.shape
    OH = conv_output_size(H, kh, stride, padding)
    OW = conv_output_size(W, kw, stride, padding)
    return to_pooling_order(im2col_reference(x, kh, kw, stride, padding).reshape(N, OH, OW, -1), pool)


# --------------------------------------------------------------------------------------------- col2im

@njit(nogil=True, cache=True)
def col2im_numba(cols, kh, kw, stride, padding, dx, pool=1):
    """Overwrite ``dx`` (N, H, W, C) with the sum of ``cols`` (N*OH*OW, kH*kW*C) over receptive fields.

    With ``pool`` > 1 the rows of ``cols`` are in pooling order (:func:`im2col_pooled_numba`; with
    ``pool`` = 1 that is im2col's order), and the outputs that no window reads contribute nothing.
    """
    N, H, W, C = dx.shape
    OH = (H + 2 * padding - kh) // stride + 1
    OW = (W + 2 * padding - kw) // stride + 1
    PH, PW = OH // pool, OW // pool
    run = kw * C
    dx[...] = 0.0
    rows = dx.reshape(N, H, W * C)
    for n in range(N):
        # row r is output (oh, ow) = (ph*pool + a, pw*pool + e); with pool = 1, r = (n*OH + oh)*OW + ow
        for a in range(pool):
            for e in range(pool):
                for ph in range(PH):
                    h0 = (ph * pool + a) * stride - padding
                    for pw in range(PW):
                        r = ((n * pool * pool + a * pool + e) * PH + ph) * PW + pw
                        w0 = (pw * pool + e) * stride - padding
                        inside = w0 >= 0 and w0 + kw <= W
                        for i in range(kh):
                            h = h0 + i
                            k = i * run
                            if inside and 0 <= h < H:
                                start = w0 * C
                                for t in range(run):
                                    rows[n, h, start + t] += cols[r, k + t]
                            elif 0 <= h < H:
                                for j in range(kw):
                                    w = w0 + j
                                    if 0 <= w < W:
                                        for c in range(C):
                                            rows[n, h, w * C + c] += cols[r, k + j * C + c]
    return dx


def col2im_reference(cols, x_shape, kh, kw, stride, padding, pool=1):
    """NumPy twin of :func:`col2im_numba`: returns ``dx`` of shape ``x_shape`` (N, H, W, C)."""
    N, H, W, C = x_shape
    OH = conv_output_size(H, kh, stride, padding)
    OW = conv_output_size(W, kw, stride, padding)
    if pool > 1:  # back to im2col's order, zero for the outputs no window reads
        cols = from_pooling_order(cols, (N, OH, OW, cols.shape[1]), pool).reshape(N * OH * OW, -1)
    dxp = np.zeros((N, H + 2 * padding, W + 2 * padding, C), dtype=cols.dtype)
    c6 = cols.reshape(N, OH, OW, kh, kw, C)
    for i in range(kh):
        for j in range(kw):
            # within one (i, j) the strided slice touches each pixel at most once, so += is safe
            dxp[:, i:i + stride * OH:stride, j:j + stride * OW:stride, :] += c6[:, :, :, i, j, :]
    return dxp[:, padding:padding + H, padding:padding + W, :]


# -------------------------------------------------------------------------------------------- maxpool

@njit(nogil=True, cache=True)
def maxpool_forward_numba(x, size, stride, relu, out, argmax, bias=None):
    """Fill ``out`` and ``argmax`` (N, OH, OW, C) from ``x`` (N, H, W, C); see the module docstring.

    With ``bias`` (C,), the kernel pools ``x + bias`` (each value gets its channel's bias before
    it is compared): the convolution's bias added on the way in, so the convolution's output never
    needs a pass of its own (``Conv2D.forward_pool`` in ``tinynet/nn/layers.py``).
    The innermost loops run over channels, i.e. over consecutive numbers in memory, and choose
    with selects instead of branches, so that they vectorise.
    """
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                h0 = oh * stride
                w0 = ow * stride
                best = out[n, oh, ow]
                where = argmax[n, oh, ow]
                first = x[n, h0, w0]
                for c in range(C):
                    best[c] = first[c] if bias is None else first[c] + bias[c]
                    where[c] = h0 * W + w0
                for i in range(size):
                    for j in range(size):
                        if i + j == 0:
                            continue
                        pixel = x[n, h0 + i, w0 + j]
                        index = (h0 + i) * W + w0 + j
                        for c in range(C):
                            v = pixel[c] if bias is None else pixel[c] + bias[c]
                            m = best[c]
                            # strict: the first maximum wins ties; a NaN wins over any number
                            # (and the first NaN over later ones), so no NaN is ever hidden
                            take = v > m or (v != v and m == m)
                            best[c] = v if take else m
                            where[c] = index if take else where[c]
                if relu:
                    for c in range(C):
                        m = best[c]
                        clip = m <= 0.0  # False for NaN: NaN stays NaN, as ReLU keeps it
                        nan = m != m     # ReLU's mask (x > 0) is False there: no gradient
                        best[c] = 0.0 if clip else m
                        where[c] = -1 if clip or nan else where[c]
    return out, argmax


def maxpool_forward_reference(x, size, stride, relu=False, bias=None):
    """NumPy twin of :func:`maxpool_forward_numba`: ``x`` (N, H, W, C) -> ``(out, argmax)``, each
    (N, OH, OW, C)."""
    N, H, W, C = x.shape
    if bias is not None:
        x = x + bias
    OH = conv_output_size(H, size, stride, 0)
    OW = conv_output_size(W, size, stride, 0)
    out = np.full((N, OH, OW, C), -np.inf, dtype=x.dtype)
    argmax = np.zeros((N, OH, OW, C), dtype=np.int32)
    for i in range(size):          # visit window offsets in row-major order ...
        for j in range(size):
            v = x[:, i:i + stride * OH:stride, j:j + stride * OW:stride, :]
            # ... and replace only on a strict improvement (the first maximum wins), or with the
            # window's first NaN (np.argmax's rule: NaN is never hidden)
            better = (v > out) | (np.isnan(v) & ~np.isnan(out)) if (i, j) != (0, 0) else np.ones(
                v.shape, dtype=bool)
            out = np.where(better, v, out)
            rows = np.arange(OH)[:, None, None] * stride + i
            cols = np.arange(OW)[None, :, None] * stride + j
            argmax = np.where(better, rows * W + cols, argmax).astype(np.int32)
    if relu:
        clipped = out <= 0  # NaN is not <= 0: it stays NaN (np.maximum(NaN, 0) is NaN) ...
        out = np.where(clipped, 0, out).astype(x.dtype)
        # ... but gets no gradient, as ReLU's mask x > 0 is False for NaN
        argmax = np.where(clipped | np.isnan(out), -1, argmax).astype(np.int32)
    return out, argmax


@njit(nogil=True, cache=True)
def maxpool_blocks_numba(blocks, bias, relu, out):
    """``out`` (N, P, C) = the elementwise maximum of each image's ``blocks`` (N, B, P, C) + ``bias``
    (C,), then ReLU when ``relu``: max-pooling of a convolution computed in pooling order
    (:func:`im2col_pooled_numba`), for evaluation (no winners: nothing will route a gradient).
    NaN wins, as in :func:`maxpool_forward_numba`, and stays NaN through ReLU.

    The loops run over ``TILE`` rows * C numbers at once, with the bias repeated for each row of
    a tile (a loop over 20 channels at a time is several times slower); 2x2 pooling (B = 4) reads
    its four blocks in one pass."""
    N, B, P, C = blocks.shape
    rows = max(1, min(P, TILE))
    add = tiled_bias(bias, rows)
    for n in range(N):
        src = blocks[n].reshape(B, P * C)
        flat = out[n].reshape(P * C)
        for start in range(0, P * C, rows * C):
            stop = min(start + rows * C, P * C)
            o = flat[start:stop]
            first = src[0, start:stop]
            if B == 4:
                b1, b2, b3 = src[1, start:stop], src[2, start:stop], src[3, start:stop]
                for t in range(stop - start):
                    m = first[t]
                    v = b1[t]
                    m = v if (v > m) | (v != v) else m
                    v = b2[t]
                    m = v if (v > m) | (v != v) else m
                    v = b3[t]
                    m = v if (v > m) | (v != v) else m
                    m += add[t]
                    o[t] = 0.0 if relu and m <= 0.0 else m
                continue
            for t in range(stop - start):
                o[t] = first[t]
            for b in range(1, B):
                other = src[b, start:stop]
                for t in range(stop - start):
                    v = other[t]
                    m = o[t]
                    o[t] = v if (v > m) | (v != v) else m
            for t in range(stop - start):
                m = o[t] + add[t]
                o[t] = 0.0 if relu and m <= 0.0 else m
    return out


@njit(nogil=True, cache=True)
def tiled_bias(bias, rows):
    """``bias`` (C,) repeated ``rows`` times: (rows * C,), to add to ``rows`` channels-last rows."""
    C = bias.shape[0]
    add = np.empty(rows * C, dtype=bias.dtype)
    for r in range(rows):
        for c in range(C):
            add[r * C + c] = bias[c]
    return add


def maxpool_blocks_reference(blocks, bias, relu):
    """NumPy twin of :func:`maxpool_blocks_numba`: blocks (N, B, P, C), bias (C,) -> (N, P, C)."""
    out = blocks[:, 0]
    for b in range(1, blocks.shape[1]):
        block = blocks[:, b]
        out = np.where((block > out) | np.isnan(block), block, out)
    out = out + bias  # max(x) + b == max(x + b): rounding is monotone
    return np.where(out <= 0, 0, out).astype(blocks.dtype) if relu else out


@njit(nogil=True, cache=True)
def maxpool_blocks_winners_numba(blocks, bias, relu, out, winner):
    """:func:`maxpool_blocks_numba` for training: ``out`` (N, P, C) and ``winner`` (N, P, C) int32,
    the block (0..B-1, the window's pixel a*pool + e) each maximum came from, by the rules of
    :func:`maxpool_forward_numba`: each candidate gets its channel's bias before it is compared,
    the first maximum wins ties, the first NaN wins over any number, and with ``relu`` a clipped
    or NaN output has winner -1 (no gradient). 2x2 pooling (B = 4) is one pass over its four
    blocks; other sizes take a pass per block."""
    N, B, P, C = blocks.shape
    rows = max(1, min(P, TILE))
    add = tiled_bias(bias, rows)
    for n in range(N):
        src = blocks[n].reshape(B, P * C)
        flat, won = out[n].reshape(P * C), winner[n].reshape(P * C)
        for start in range(0, P * C, rows * C):
            stop = min(start + rows * C, P * C)
            o, w = flat[start:stop], won[start:stop]
            if B == 4:
                s0, s1, s2, s3 = src[0, start:stop], src[1, start:stop], src[2, start:stop], src[3, start:stop]
                for t in range(stop - start):
                    m, k = s0[t] + add[t], 0
                    v = s1[t] + add[t]
                    take = (v > m) | ((v != v) & (m == m))
                    m = v if take else m
                    k = 1 if take else k
                    v = s2[t] + add[t]
                    take = (v > m) | ((v != v) & (m == m))
                    m = v if take else m
                    k = 2 if take else k
                    v = s3[t] + add[t]
                    take = (v > m) | ((v != v) & (m == m))
                    m = v if take else m
                    k = 3 if take else k
                    if relu:
                        clip = m <= 0.0  # False for NaN: NaN stays NaN, with no gradient
                        k = -1 if clip | (m != m) else k
                        m = 0.0 if clip else m
                    o[t], w[t] = m, k
                continue
            first = src[0, start:stop]
            for t in range(stop - start):
                o[t], w[t] = first[t] + add[t], 0
            for b in range(1, B):
                other = src[b, start:stop]
                for t in range(stop - start):
                    v, m = other[t] + add[t], o[t]
                    take = (v > m) | ((v != v) & (m == m))
                    o[t] = v if take else m
                    w[t] = b if take else w[t]
            if relu:
                for t in range(stop - start):
                    m = o[t]
                    clip = m <= 0.0  # False for NaN: NaN stays NaN, with no gradient
                    o[t] = 0.0 if clip else m
                    w[t] = -1 if clip | (m != m) else w[t]
    return out, winner


def maxpool_blocks_winners_reference(blocks, bias, relu):
    """NumPy twin of :func:`maxpool_blocks_winners_numba`: blocks (N, B, P, C), bias (C,) ->
    ``(out, winner)``, each (N, P, C)."""
    out = blocks[:, 0] + bias
    winner = np.zeros(out.shape, dtype=np.int32)
    for b in range(1, blocks.shape[1]):
        v = blocks[:, b] + bias
        take = (v > out) | (np.isnan(v) & ~np.isnan(out))
        out, winner = np.where(take, v, out), np.where(take, b, winner)
    if relu:
        none = (out <= 0) | np.isnan(out)
        out, winner = np.where(out <= 0, 0, out).astype(blocks.dtype), np.where(none, -1, winner)
    return out, winner


@njit(nogil=True, cache=True)
def maxpool_blocks_backward_numba(dout, winner, dblocks):
    """Overwrite ``dblocks`` (N, B, P, C) with ``dout`` (N, P, C) routed to each window's winner
    (:func:`maxpool_blocks_winners_numba`): ``dblocks[n, b] = dout[n]`` where ``winner[n] == b``,
    0 elsewhere: the gradient of the convolution's outputs, in pooling order."""
    N, B, P, C = dblocks.shape
    for n in range(N):
        d, won = dout[n].reshape(P * C), winner[n].reshape(P * C)
        target = dblocks[n].reshape(B, P * C)
        for b in range(B):
            row = target[b]
            for t in range(P * C):
                row[t] = d[t] if won[t] == b else 0.0
    return dblocks


def maxpool_blocks_backward_reference(dout, winner, B):
    """NumPy twin of :func:`maxpool_blocks_backward_numba`: -> dblocks (N, B, P, C)."""
    return np.stack([np.where(winner == b, dout, 0) for b in range(B)], axis=1).astype(dout.dtype)


@njit(nogil=True, cache=True)
def maxpool_backward_numba(dout, argmax, dx):
    """Overwrite ``dx`` (N, H, W, C) with ``dout`` (N, OH, OW, C) routed to the recorded winners."""
    N, H, W, C = dx.shape
    OH, OW = dout.shape[1], dout.shape[2]
    dx[...] = 0.0
    pixels = dx.reshape(N, H * W, C)  # the flat index h*W + w that argmax records
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                for c in range(C):
                    where = argmax[n, oh, ow, c]
                    if where >= 0:
                        pixels[n, where, c] += dout[n, oh, ow, c]
    return dx


def maxpool_backward_reference(dout, argmax, x_shape):
    """NumPy twin of :func:`maxpool_backward_numba`: returns ``dx`` of shape ``x_shape`` (N, H, W, C)."""
    N, H, W, C = x_shape
    dx = np.zeros((N, H * W, C), dtype=dout.dtype)
    flat_dout = dout.reshape(N, -1, C)
    flat_arg = argmax.reshape(N, -1, C)
    n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for p in range(flat_arg.shape[1]):  # one output position at a time: no duplicate targets per step
        winners = flat_arg[:, p, :]
        keep = winners >= 0
        dx[n[keep], winners[keep], c[keep]] += flat_dout[:, p, :][keep]
    return dx.reshape(x_shape)


# ------------------------------------------------------------------------------------------ SGD step

@njit(nogil=True, cache=True)
def sgd_update_numba(p, g, v, lr, momentum, nesterov, weight_decay):
    """One SGD step of a parameter, in place, in one pass: ``p``, ``g`` and (when ``momentum``)
    ``v`` are flat arrays of the parameter, its gradient and its velocity; the scalars have the
    arrays' dtype (the caller converts them, as NumPy converts a Python float in ``lr * g``), so
    every product and sum is rounded exactly as in :func:`sgd_update_reference`:

        d = g + weight_decay * p;  v = momentum * v + d (as v *= momentum; v += d)
        p = p - lr * (d + momentum * v)   if nesterov,   p - lr * v  with momentum,   p - lr * d
    """
    for i in range(p.size):
        d = g[i] + weight_decay * p[i] if weight_decay != 0 else g[i]
        if momentum != 0:
            vi = v[i] * momentum
            vi = vi + d
            v[i] = vi
            d = d + momentum * vi if nesterov else vi
        p[i] = p[i] - lr * d


def sgd_update_reference(p, g, v, lr, momentum, nesterov, weight_decay):
    """NumPy twin of :func:`sgd_update_numba` (the update as ``tinynet.nn.optim.SGD`` wrote it
    before it had a kernel), in place."""
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        v *= momentum
        v += g
        g = g + momentum * v if nesterov else v
    p -= lr * g
