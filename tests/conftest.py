"""Shared test fixtures: where the real EMNIST data lives, and a seeded random generator."""

import argparse
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


def options_without_help(parser):
    """The options (and positionals) of an argparse ``parser`` that its ``--help`` does not
    describe: no help text, or not listed with that text after the usage block (the usage line
    names every option anyway, so finding an option's name in ``--help`` proves nothing)."""
    body = "".join(parser.format_help().split("\n\n", 1)[1].split())  # no whitespace: wrapping differs
    formatter = parser._get_formatter()
    undescribed = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        text = "" if action.help in (None, argparse.SUPPRESS) else "".join(formatter._expand_help(action).split())
        names = action.option_strings or [action.metavar or action.dest]
        if not text or text not in body or not all(name in body for name in names):
            undescribed.append("/".join(names))
    return undescribed
