"""The kinds of value a setting takes, and what to say about a wrong one: shared by
``tinynet.training.config.TrainConfig`` (checked when a config is made) and the command lines' argparse
types (``tinynet/cli/__init__.py``), so that the Python API and the command line refuse the same
values with the same words."""

import math
import numbers
import os


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


# kind: (is a value acceptable, what it must be)
VALUE_KINDS = {
    "positive_int": (lambda v: _is_int(v) and v >= 1, "must be a positive integer"),
    "non_negative_int": (lambda v: _is_int(v) and v >= 0, "must be an integer >= 0"),
    "positive_float": (lambda v: _is_real(v) and 0 < v < math.inf, "must be a finite number > 0"),
    "non_negative_float": (lambda v: _is_real(v) and 0 <= v < math.inf, "must be a finite number >= 0"),
    "fraction": (lambda v: _is_real(v) and 0 <= v < 1, "must be in [0, 1)"),
    "bool": (lambda v: isinstance(v, bool), "must be True or False"),
    "path": (lambda v: isinstance(v, (str, os.PathLike)), "must be a folder path"),
    "name": (lambda v: isinstance(v, str) and v != "", "must be a non-empty string"),
}


def value_problem(kind, value):
    """What is wrong with ``value`` for a value kind of :data:`VALUE_KINDS` or a tuple of choices
    (argparse's wording), or None when it is fine."""
    if isinstance(kind, tuple):
        if value in kind:
            return None
        return f"invalid choice: {value!r} (choose from {', '.join(map(repr, kind))})"
    ok, must = VALUE_KINDS[kind]
    return None if ok(value) else f"{must}, got {value!r}"
