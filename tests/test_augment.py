"""Augmentation (tinynet/datasets/augment.py): the Numba warp agrees with its NumPy twin."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.datasets.augment import affine_transform_numba, affine_transform_reference, random_affine_matrices


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(4, 12), st.integers(0, 2**32 - 1))
def test_affine_transform_matches_reference(n, size, seed):
    """Bilinear warps by random transforms (pixels near and outside the border included)."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, 1, size, size))
    matrices = random_affine_matrices(rng, n, size=size, max_shift=size / 3)
    fast = affine_transform_numba(images, matrices, np.full_like(images, np.nan))
    np.testing.assert_allclose(fast, affine_transform_reference(images, matrices), rtol=1e-12, atol=1e-12)
