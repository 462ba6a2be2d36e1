"""Shared test fixtures: where the real EMNIST data lives, and a seeded random generator."""

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESPLIT = SHARED_DATA / "emnist-bymerge-resplit"


@pytest.fixture
def rng():
    """A fresh, seeded generator per test: tests are repeatable and independent of each other."""
    return np.random.default_rng(1234)


def require_resplit():
    """Skip the calling test when the real data set (../shared/data) is not beside the project."""
    if not RESPLIT.is_dir():
        pytest.skip(f"real EMNIST data not found at {RESPLIT} (only present in the development workplace)")
    return RESPLIT


def require_dir(folder):
    """Skip the calling test when a folder of the development data (../shared/data) is absent."""
    if not folder.is_dir():
        pytest.skip(f"development data not found at {folder} (only present in the development workplace)")
    return folder
