"""Data augmentation: random small affine transforms (shift, rotation, scale, shear) of a batch.

Each image gets its own random transform A (a 2x3 matrix mapping output pixel coordinates to input
coordinates, about the image centre); the output pixel takes the bilinearly interpolated input value
there, and 0 (background) outside the image:

    out[n, y, x] = bilinear(img[n], A[n] @ [x, y, 1])

Characters stay characters under these small transforms, so the network learns to ignore exactly
the variations (position, slant, size) that handwriting has anyway.
"""

import numpy as np
from numba import njit


def random_affine_matrices(rng, n, size=28, max_shift=2.0, max_rotation_deg=10.0, max_scale=0.1,
                           max_shear=0.15):
    """(n, 2, 3) inverse maps for uniformly drawn shifts (px), rotations, scales and shears, about
    the centre of images of ``size`` pixels a side (or ``(height, width)``)."""
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, n))
    scale = rng.uniform(1 - max_scale, 1 + max_scale, n)
    shear = rng.uniform(-max_shear, max_shear, n)
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    cos, sin = np.cos(angle), np.sin(angle)
    # forward map = shift o rotate o shear o scale about the centre; we need its inverse
    fwd = np.empty((n, 2, 2))
    fwd[:, 0, 0] = scale * cos
    fwd[:, 0, 1] = scale * (cos * shear - sin)
    fwd[:, 1, 0] = scale * sin
    fwd[:, 1, 1] = scale * (sin * shear + cos)
    inv = np.linalg.inv(fwd)
    height, width = (size, size) if np.ndim(size) == 0 else size
    c = np.array([(width - 1) / 2.0, (height - 1) / 2.0])  # (x, y)
    offset = c - np.einsum("nij,nj->ni", inv, c + shift)
    return np.concatenate([inv, offset[:, :, None]], axis=2)


@njit(nogil=True, cache=True)
def affine_transform_numba(images, matrices, out):
    """Fill ``out`` (n, 1, H, W) with ``images`` (n, 1, H, W) warped by the (n, 2, 3) inverse maps."""
    n, _, h, w = images.shape
    for k in range(n):
        a, b, c = matrices[k, 0, 0], matrices[k, 0, 1], matrices[k, 0, 2]
        d, e, f = matrices[k, 1, 0], matrices[k, 1, 1], matrices[k, 1, 2]
        for y in range(h):
            for x in range(w):
                sx = a * x + b * y + c
                sy = d * x + e * y + f
                x0 = int(np.floor(sx))
                y0 = int(np.floor(sy))
                fx = sx - x0
                fy = sy - y0
                value = 0.0
                for dy in range(2):
                    yy = y0 + dy
                    if yy < 0 or yy >= h:
                        continue
                    wy = fy if dy else 1.0 - fy
                    for dx in range(2):
                        xx = x0 + dx
                        if 0 <= xx < w:
                            value += wy * (fx if dx else 1.0 - fx) * images[k, 0, yy, xx]
                out[k, 0, y, x] = value
    return out


def affine_transform_reference(images, matrices):
    """NumPy twin of :func:`affine_transform_numba`: returns the warped (n, 1, H, W) images."""
    n, _, h, w = images.shape
    ys, xs = np.mgrid[0:h, 0:w]
    grid = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])            # (3, H*W): x, y, 1
    src = matrices @ grid                                                # (n, 2, H*W)
    sx, sy = src[:, 0], src[:, 1]
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    # pad by one pixel of background so that every corner lookup is in range
    padded = np.pad(images[:, 0], ((0, 0), (1, 1), (1, 1))).reshape(n, -1)
    pw = w + 2

    def corner(dy, dx):
        yy = np.clip(y0 + dy + 1, 0, h + 1)
        xx = np.clip(x0 + dx + 1, 0, w + 1)
        inside = (y0 + dy >= -1) & (y0 + dy <= h) & (x0 + dx >= -1) & (x0 + dx <= w)
        return np.where(inside, np.take_along_axis(padded, yy * pw + xx, axis=1), 0)

    out = ((1 - fy) * ((1 - fx) * corner(0, 0) + fx * corner(0, 1))
           + fy * ((1 - fx) * corner(1, 0) + fx * corner(1, 1)))
    return out.reshape(n, 1, h, w).astype(images.dtype)


def augment_batch(images, rng, strength=1.0, map_rows=None):
    """A randomly transformed copy of a float batch (n, 1, H, W); ``strength`` scales every range
    (1: shifts +-2 px, rotations +-10 deg, scaling +-10%, shear +-0.15).

    The transforms are drawn from ``rng`` for the whole batch, here. ``map_rows(fn, *arrays)``
    (e.g. ``DataParallel.map_rows``) may warp slices of the rows in several threads: each image's
    warp depends only on that image and its matrix, so the result is the same."""
    matrices = random_affine_matrices(rng, len(images), size=images.shape[-2:], max_shift=2.0 * strength,
                                      max_rotation_deg=10.0 * strength, max_scale=0.1 * strength,
                                      max_shear=0.15 * strength)

    def warp(images, matrices):
        return affine_transform_numba(images, matrices, np.empty_like(images))

    return warp(images, matrices) if map_rows is None else map_rows(warp, images, matrices)
