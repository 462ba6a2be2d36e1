"""The ``tinynet`` command (also ``python3 -m tinynet``): one subcommand per job, each with only its
own options and its own ``--help``.

A subcommand is a module of this package with ``main(argv=None, prog=None)`` returning the exit
status; ``COMMANDS`` below is the list. A module is imported only when its subcommand runs, so
``tinynet --help`` starts quickly. ``python3 train.py`` and ``python3 inference.py`` are the
``train`` and ``infer`` subcommands under their own names.
"""

import difflib
import importlib
import sys

from .. import __version__

# name: (module under tinynet.cli, one line for `tinynet --help`)
COMMANDS = {
    "train": ("train", "train a network (the LeNet, an MLP, yours) on IDX data or the sample (python3 train.py)"),
    "infer": ("infer", "predict characters: a test set, image files or a .npy array (python3 inference.py)"),
    "serve": ("serve", "the drawing page: draw a character, see what the model makes of it (inference.py --serve)"),
    "export": ("export", "write a checkpoint for use elsewhere: inference-only .npz, or ONNX (--onnx)"),
    "download": ("download", "get EMNIST data files, verified, from NIST or an archive you have"),
    "watch": ("watch", "serve a live page of training runs: curves, filters, predictions, runs compared"),
}


def usage():
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    return ("usage: tinynet COMMAND [options]    (tinynet COMMAND --help for a command's options)\n\n"
            "tinynet " + __version__ + ": from-scratch NumPy + Numba networks (a LeNet first) for "
            "handwritten characters.\n\ncommands:\n" + "\n".join(lines) + "\n")


def main(argv=None):
    """``tinynet COMMAND ...``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"tinynet {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"{usage()}\ntinynet: error: unknown command '{name}'{hint}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")
    return module.main(argv[1:], prog=f"tinynet {name}")


if __name__ == "__main__":
    raise SystemExit(main())
