"""The base of every error tinynet raises, and the two general errors of the maths core.

Every exception class tinynet defines derives from :class:`TinynetError`, so one
``except TinynetError`` catches whatever tinynet refuses. Each also keeps the built-in base it
has always had, so code written against that still works:

    ==========================  ======================  =========================================
    error                       also a                  raised for
    ==========================  ======================  =========================================
    ``ArgumentError``           ``ValueError``          a setting or argument tinynet cannot use
    ``ClosedError``             ``RuntimeError``        an object used after ``close()``
    ``DataError``               ``ValueError``          a data set's files (``tinynet.datasets``)
    ``CheckpointError``         ``ValueError``          a checkpoint file (``tinynet.files``)
    ``OnnxError``               ``CheckpointError``     an ONNX export or import (``tinynet.onnx``)
    ``InputError``              ``ValueError``          an input to predict (``tinynet.predict``)
    ``ImageError``              ``ValueError``          an image file (``tinynet.predict``)
    ``ConfigError``             ``ValueError``          a ``TrainConfig`` (``tinynet.training``)
    ``TrainingError``           ``RuntimeError``        a run that cannot start or go on
    ==========================  ======================  =========================================

(and a few narrower ones beside them; ``tests/test_errors.py`` lists every one). This module is
the package's lowest floor: it imports nothing, and every folder may import it.
"""


class TinynetError(Exception):
    """The base of every error tinynet raises: ``except TinynetError`` catches any of them."""


class ArgumentError(TinynetError, ValueError):
    """A setting or an argument tinynet cannot use (a dropout probability outside [0, 1), a label
    outside the model's classes, an unknown schedule); the message names it and what it must be."""


class ClosedError(TinynetError, RuntimeError):
    """An object that owns threads (``DataParallel``, ``Predictor``, ``Trainer``) used after
    ``close()``."""
