"""A convolution and the max-pooling after it, run as one step: what ``Sequential``
(``tinynet/nn/model.py``) runs for a ``Conv2D`` followed by a ``MaxPool2D`` or ``ReLUMaxPool2D``.

The numbers are those of the two layers one after the other (``tests/test_layers.py`` checks it);
what changes is how often the convolution's output goes through memory. Each chunk of images is
convolved and pooled while it is still in cache, with the convolution's bias added as the pooling
reads it, so the convolution's output is never written out whole.

When the pooling windows tile the convolution's output (stride = size; while training, also the
output's height and width multiples of the size, as in the LeNet) the im2col matrix is built in
*pooling order* (``im2col_pooled_numba`` in ``tinynet/nn/kernels.py``): the matmul then returns each
window's size*size candidates as size*size contiguous blocks, and pooling is an elementwise
maximum of those blocks, a loop over long runs of numbers, where pooling window by window loops
over one pixel's few channels at a time. Training keeps, for each output, the block its maximum
came from; backward routes the gradient back into the same blocks
(``maxpool_blocks_backward_numba``), and the convolution's backward takes that gradient in the
rows of its pooling-order im2col matrix. Otherwise (overlapping windows) the convolution's output
is pooled window by window (``maxpool_forward_numba``).

Both layers keep what their own backward needs, as if each had run its own forward: after a fused
pass, ``Conv2D.backward`` and ``MaxPool2D.backward`` may still be run one at a time.
"""

import numpy as np

from .kernels import (conv_output_size, im2col_pooled_numba, maxpool_blocks_backward_numba,
                      maxpool_blocks_numba, maxpool_blocks_winners_numba, maxpool_forward_numba)
from .layers import channels_last, chunk_images


def forward_pool(conv, x, pool, train=True):
    """``pool.forward(conv.forward(x, train))`` in one go: x (N, C_in, H, W) -> the pooled
    convolution (N, C_out, PH, PW), channels-last in memory; both layers cache what their backward
    needs."""
    if pool.stride == pool.size:
        OH, OW = (conv_output_size(n, conv.kernel_size, conv.stride, conv.padding) for n in x.shape[2:])
        if not train or (OH % pool.size == 0 and OW % pool.size == 0):
            return forward_pooling_order(conv, x, pool, train)
    pooled, pool.cache = pool_with_winners(conv, x, pool, train)
    return pooled.transpose(0, 3, 1, 2)


def backward_pool(conv, pool, dout):
    """``conv.backward(pool.backward(dout))`` after :func:`forward_pool` (see :func:`fused`):
    the pooled gradient dout (N, C_out, PH, PW) goes to each window's winning block, in pooling
    order, and from there through the convolution's backward."""
    winners = pool.cache
    (N, P, C), B = winners.winner.shape, winners.size * winners.size
    dblocks = conv.buffer("dconv", (N, B, P, C), dout.dtype)
    maxpool_blocks_backward_numba(channels_last(dout).reshape(N, P, C), winners.winner, dblocks)
    return conv.backward_rows(dblocks.reshape(N * B * P, C))


def fused(conv, pool):
    """True when ``pool``'s forward ran fused with ``conv``'s in pooling order (training), so
    that :func:`backward_pool` is their backward."""
    cache = getattr(pool, "cache", None)
    return isinstance(cache, PoolingOrderWinners) and cache.conv is conv


def forward_pooling_order(conv, x, pool, train):
    """:func:`forward_pool` when the windows tile the convolution's output: each chunk's im2col
    matrix in pooling order, its matmul pooled elementwise (outputs that no window reads are
    skipped). While training, the chunks fill the whole batch's matrix, kept for backward, and
    each window's winning block is kept (:func:`maxpool_blocks_winners_numba`). For evaluation one
    chunk-sized matrix is reused and no winners are kept (:func:`maxpool_blocks_numba`): a
    backward pass after evaluation (a saliency map) is rare, so ``pool`` is left a way to find its
    winners again, from this input, when its backward asks for them."""
    x_nhwc, OH, OW, W2 = conv.geometry(x)
    N, k, size, c_out = len(x), conv.kernel_size, pool.size, W2.shape[0]
    B, P = size * size, (OH // size) * (OW // size)
    step = chunk_images(N, B * P * W2.shape[1] * x.itemsize)
    cols = conv.buffer("cols" if train else "chunk_cols", ((N if train else step) * B * P, W2.shape[1]),
                       x.dtype)
    out = conv.buffer("conv", (step * B * P, c_out), x.dtype)
    pooled = np.empty((N, P, c_out), dtype=x.dtype)
    winner = pool.buffer("winner", (N, P, c_out), np.int32) if train else None
    for n0 in range(0, N, step):
        n1 = min(N, n0 + step)
        rows = cols[n0 * B * P:n1 * B * P] if train else cols[:(n1 - n0) * B * P]
        im2col_pooled_numba(x_nhwc[n0:n1], k, k, conv.stride, conv.padding, size, rows)
        blocks = np.matmul(rows, W2.T, out=out[:len(rows)]).reshape(n1 - n0, B, P, c_out)
        if train:
            maxpool_blocks_winners_numba(blocks, conv.params["b"], pool.relu, pooled[n0:n1],
                                         winner[n0:n1])
        else:
            maxpool_blocks_numba(blocks, conv.params["b"], pool.relu, pooled[n0:n1])
    if train:
        conv.cache = (x_nhwc.shape, cols, W2, size)
        pool.cache = PoolingOrderWinners(conv, winner, size, (N, OH, OW, c_out))
    else:
        conv.cache = (x_nhwc.shape, x_nhwc, W2, None)
        pool.cache = lambda: pool_with_winners(conv, x, pool, False)[1]  # called by pool.backward
    return pooled.reshape(N, OH // size, OW // size, c_out).transpose(0, 3, 1, 2)


def pool_with_winners(conv, x, pool, train):
    """The convolution of ``x`` pooled by ``pool`` window by window, channels-last ``(N, PH, PW,
    C_out)``, and the cache ``pool.backward`` reads: the convolution output's shape and each
    window's winner (``maxpool_forward_numba``)."""
    pooled = argmax = None
    for n0, n1, out in conv.convolve(x, train):
        if pooled is None:
            N, OH, OW, C = len(x), *out.shape[1:]
            shape = (N, conv_output_size(OH, pool.size, pool.stride, 0),
                     conv_output_size(OW, pool.size, pool.stride, 0), C)
            pooled = np.empty(shape, dtype=out.dtype)
            argmax = pool.buffer("argmax", shape, np.int32)
        maxpool_forward_numba(out, pool.size, pool.stride, pool.relu, pooled[n0:n1],
                              argmax[n0:n1], conv.params["b"])
    return pooled, ((N, OH, OW, C), argmax)


class PoolingOrderWinners:
    """A pooling layer's cache after :func:`forward_pooling_order` while training: ``winner``
    (N, P, C), the block of each window's maximum (-1: no gradient), for :func:`backward_pool`.
    Called, as ``MaxPool2D.backward`` run on its own calls it, it gives the cache that layer's own
    forward would have made: the convolution output's shape and each window's winner as a flat
    index h*OW + w."""

    def __init__(self, conv, winner, size, conv_shape):
        self.conv, self.winner, self.size, self.shape = conv, winner, size, conv_shape

    def __call__(self):
        N, OH, OW, C = self.shape
        s, (PH, PW) = self.size, (OH // self.size, OW // self.size)
        won = self.winner.reshape(N, PH, PW, C).astype(np.int32)
        a, e = np.divmod(won, s)
        ph, pw = np.arange(PH)[:, None, None], np.arange(PW)[None, :, None]
        argmax = np.where(won >= 0, (ph * s + a) * OW + pw * s + e, -1).astype(np.int32)
        return self.shape, argmax
