"""tinynet's command lines, the subcommands of ``tinynet`` (``main.py``): ``train`` (also ``train.py``,
``tinynet-train``), ``infer`` (also ``inference.py``, ``tinynet-infer``), ``serve`` (also
``inference.py --serve``), ``export`` and ``download``.

They are a leaf: they import the library, and no library module imports them. Below: the argparse
value types and options they share.
"""

import argparse
import contextlib
import warnings

from ..training.values import value_problem


def _checked(value, kind):
    """``value`` if it is a ``kind`` of value (``tinynet.training.values.VALUE_KINDS``: the same wording
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


def add_checkpoint_options(p, what="checkpoint to use"):
    """--checkpoint (its help starting with ``what``) and --runs-dir, which pick the model
    (``tinynet.predict.predictor.default_checkpoint``)."""
    p.add_argument("--checkpoint", metavar="FILE", default=None,
                   help=f"{what} (default: best.npz of the latest run under --runs-dir; with no run "
                        "there, the model bundled with tinynet)")
    p.add_argument("--runs-dir", metavar="DIR", default="runs",
                   help="where to look for the latest run when --checkpoint is not given "
                        "(default: %(default)s)")


@contextlib.contextmanager
def pillow_quiet():
    """Around a command line's work (a command line owns its process; the library never touches
    the warnings filters): Pillow's warnings (corrupt metadata it skips, an image over its pixel
    limit that tinynet refuses anyway) are not printed, since every problem with an image is
    reported as one ``error:`` line. Usable as a decorator."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        yield
