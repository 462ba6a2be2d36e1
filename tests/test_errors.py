"""One base for tinynet's errors: every exception class the package defines derives from
``tinynet.errors.TinynetError`` and keeps the built-in base it always had (so ``except ValueError``
code goes on working), and the library raises no bare built-in exception where one of its own
errors belongs."""

import ast
import builtins
import importlib
from pathlib import Path

import pytest

import tinynet
from tinynet.errors import ArgumentError, ClosedError, TinynetError

PACKAGE = Path(tinynet.__file__).resolve().parent

# Every exception class defined in the package -> the built-in class it must also be (the one it
# had before TinynetError existed). A class missing here fails the test: add it with its base.
BUILT_IN_BASES = {
    "tinynet.errors.TinynetError": Exception,
    "tinynet.errors.ArgumentError": ValueError,
    "tinynet.errors.ClosedError": RuntimeError,
    "tinynet.nn.gradcheck.GradientCheckError": AssertionError,
    "tinynet.files.npyfile.NpyHeaderError": ValueError,
    "tinynet.files.checkpoint.CheckpointError": ValueError,
    "tinynet.datasets.idx.DataError": ValueError,
    "tinynet.datasets.download._Interrupted": Exception,
    "tinynet.onnx.common.OnnxError": ValueError,  # through CheckpointError
    "tinynet.onnx.common.Refused": Exception,
    "tinynet.predict.predictor.InputError": ValueError,
    "tinynet.predict.preprocess.ImageError": ValueError,
    "tinynet.training.errors.ConfigError": ValueError,
    "tinynet.training.errors.TrainingError": RuntimeError,
    "tinynet.training.tensorboard.TensorBoardUnavailable": RuntimeError,
    "tinynet.web.server.RequestError": Exception,
}

# Built-in exceptions the library may raise itself, and why: none of them is a refusal of the
# user's data or settings, which is what tinynet's own errors are for.
ALLOWED_BUILT_INS = {
    "TypeError": "an argument of the wrong type (Python's own convention)",
    "ImportError": "an optional package (onnx) is not installed; the message names the extra",
    "OSError": "a server cannot listen on its address (the socket's own error, with the address)",
    "AttributeError": "tinynet.__getattr__ for a name the package does not have",
    "SystemExit": "a command line's exit status",
    "KeyboardInterrupt": "a second Ctrl-C during fit(): the user's abort, as Python's own",
    "NotImplementedError": "a method a subclass must write (the servers' route)",
}
# Modules that raise a built-in inside a ``try`` whose ``except`` turns it into one of tinynet's
# errors (the message is composed in one place).
CONVERTED_INSIDE = {"tinynet.training.state": {"ValueError"}, "tinynet.web.filecache": {"ValueError"}}


def module_names():
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("tinynet",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__main__":
            continue  # running it would start the command line
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def defined_exceptions():
    """``{"module.Class": class}`` of every exception class defined in tinynet's modules."""
    found = {}
    for name in module_names():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__ == name):
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_the_walk_finds_the_errors_it_should():
    found = defined_exceptions()
    assert {"tinynet.datasets.idx.DataError", "tinynet.training.errors.TrainingError",
            "tinynet.errors.TinynetError"} <= found.keys()


def test_every_error_tinynet_defines_derives_from_tinynet_error_and_keeps_its_built_in_base():
    found = defined_exceptions()
    unlisted = sorted(found.keys() - BUILT_IN_BASES.keys())
    assert not unlisted, f"exception classes not in BUILT_IN_BASES (add each with its built-in base): {unlisted}"
    for name, cls in found.items():
        assert issubclass(cls, TinynetError), f"{name} does not derive from TinynetError"
        assert issubclass(cls, BUILT_IN_BASES[name]), f"{name} is no longer a {BUILT_IN_BASES[name].__name__}"


def test_tinynet_error_is_the_public_api():
    assert tinynet.TinynetError is TinynetError
    assert tinynet.ArgumentError is ArgumentError and tinynet.ClosedError is ClosedError
    assert issubclass(tinynet.CheckpointError, tinynet.TinynetError)


def built_in_raises(tree):
    """``(line, name)`` of each ``raise Name(...)`` / ``raise Name`` of a built-in exception."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and isinstance(getattr(builtins, target.id, None), type) \
                    and issubclass(getattr(builtins, target.id), BaseException):
                found.append((node.lineno, target.id))
    return found


def test_the_library_raises_its_own_errors_not_bare_built_ins():
    """A ``raise ValueError(...)`` in the library (not the testing helpers) is a refusal that
    ``except TinynetError`` would miss: it should be an ArgumentError or its folder's error."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if parts[0] == "testing":
            continue
        name = "tinynet." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for line, exc in built_in_raises(ast.parse(path.read_text())):
            if exc not in ALLOWED_BUILT_INS and exc not in CONVERTED_INSIDE.get(name, ()):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} raise {exc}")
    assert not bad, "bare built-in exceptions raised: " + "; ".join(bad)


def test_the_raise_scan_sees_built_ins():
    tree = ast.parse("raise ValueError('x')\nraise KeyError\nraise DataError('y')\nraise\n")
    assert built_in_raises(tree) == [(1, "ValueError"), (2, "KeyError")]


@pytest.mark.parametrize("make", [
    lambda: tinynet.nn.layers.Dropout(1.5, rng=None),
    lambda: tinynet.nn.optim.SGD(nesterov=True),
    lambda: tinynet.nn.optim.learning_rate("linear", 0.1, 0, 10),
    lambda: tinynet.nn.model.build_model({"name": "resnet"}),
    lambda: tinynet.nn.parallel.resolve_threads(0),
])
def test_the_maths_core_refuses_bad_settings_with_argument_errors(make):
    import tinynet.nn.model, tinynet.nn.optim, tinynet.nn.parallel  # noqa: E401,F401
    with pytest.raises(ArgumentError) as caught:
        make()
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TinynetError)


def test_a_closed_data_parallel_raises_closed_error():
    import numpy as np

    from tinynet.nn.model import lenet
    from tinynet.nn.parallel import DataParallel

    net = DataParallel(lenet(rng=np.random.default_rng(0)), threads=2)
    net.close()
    with pytest.raises(ClosedError, match="closed") as caught:
        net.forward(np.zeros((4, 1, 28, 28), np.float32), train=False)
    assert isinstance(caught.value, RuntimeError)
