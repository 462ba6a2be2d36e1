"""tinynet's command lines: ``train`` (``train.py``, ``tinynet-train``), ``infer`` (``inference.py``,
``tinynet-infer``) and ``download`` (``python3 -m tinynet download``).

They are a leaf: they import the library, and no library module imports them. Below: the argparse
value types they share.
"""

import argparse

from ..values import value_problem


def _checked(value, kind):
    """``value`` if it is a ``kind`` of value (``tinynet.training.VALUE_KINDS``: the same wording
    as a TrainConfig's errors), else the argparse error."""
    problem = value_problem(kind, value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def positive_int(text):
    return _checked(int(text), "positive_int")


def non_negative_int(text):
    return _checked(int(text), "non_negative_int")


def non_negative_float(text):
    return _checked(float(text), "non_negative_float")


def fraction(text):
    return _checked(float(text), "fraction")


def positive_float(text):
    return _checked(float(text), "positive_float")
