"""The command line ``tinynet export`` (also ``python3 -m tinynet.cli.export``): write a checkpoint
for use elsewhere.

- ``tinynet export CHECKPOINT [--output FILE]``: an inference-only ``.npz`` copy of a checkpoint
  (``tinynet.files.checkpoint.export_checkpoint``); without ``--output`` it goes beside the
  checkpoint, named ``<checkpoint's stem>-export.npz`` (``runs/NAME/best.npz`` ->
  ``runs/NAME/best-export.npz``).
- ``tinynet export --onnx OUT [CHECKPOINT]``: an ONNX model (``tinynet.onnx.export.export_onnx``, needs
  ``tinynet[onnx]``); the checkpoint defaults to the one ``inference.py`` would use (the latest
  run's best under ``--runs-dir``, else the bundled model). docs/onnx.md describes the file.

Nothing it writes goes inside the installed tinynet package: an output there is refused, so no run
of a user's can replace the model tinynet ships (``tinynet/models/``). Refreshing that model is a
maintainer's job with its own command, ``python3 bench/refresh_bundled.py CHECKPOINT`` in a clone
of the repository (docs/accuracy.md, "The bundled model").
"""

import argparse
import sys
from pathlib import Path

from ..files.checkpoint import CheckpointError, export_checkpoint
from ..predict.predictor import default_checkpoint

PACKAGE = Path(__file__).resolve().parents[1]  # the installed tinynet package: never written to


def default_output(checkpoint):
    """Where ``tinynet export CHECKPOINT`` writes without ``--output``: beside the checkpoint,
    ``<its stem>-export.npz``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}-export.npz")


def check_outside_package(path):
    """``CheckpointError`` when ``path`` (followed through links) lies inside the tinynet package."""
    if Path(path).resolve().is_relative_to(PACKAGE):
        raise CheckpointError(f"{path}: inside the tinynet package ({PACKAGE}); tinynet export never "
                              f"writes there (the bundled model is refreshed by its maintainers' "
                              f"command); give --output a path of your own")


def main(argv=None, prog="python3 -m tinynet.cli.export"):
    """``tinynet export`` (also ``python3 -m tinynet.cli.export``); returns the exit status."""
    p = argparse.ArgumentParser(prog=prog,
                                description="Write a checkpoint for use elsewhere: an inference-only "
                                            "copy (.npz: no optimiser state, no resume data, "
                                            "compressed), or an ONNX model (--onnx).")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="the checkpoint to export, e.g. runs/<run>/best.npz (required for the .npz "
                        "copy; with --onnx the default is the one inference.py would use: the latest "
                        "run's best under --runs-dir, else the bundled model)")
    p.add_argument("--output", metavar="FILE", default=None,
                   help="where to write the .npz copy (default, when --onnx is not given: beside the "
                        "checkpoint, runs/NAME/best.npz -> runs/NAME/best-export.npz; never inside "
                        "the tinynet package)")
    p.add_argument("--onnx", metavar="OUT", default=None,
                   help="write an ONNX model (opset 13, float32 input 'image' (N, 1, 28, 28), outputs "
                        "'logits' and 'probabilities'; needs pip install 'tinynet[onnx]')")
    p.add_argument("--runs-dir", metavar="DIR", default="runs",
                   help="where to look for the latest run when --onnx is given without a checkpoint "
                        "(default: %(default)s)")
    args = p.parse_args(argv)
    if args.onnx is None and args.checkpoint is None:
        p.error("give the checkpoint to export (or --onnx OUT to write an ONNX model)")
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint, origin = default_checkpoint(args.runs_dir)
        print(f"checkpoint {checkpoint}: {origin}")
    output = args.output if args.output is not None or args.onnx is not None else default_output(checkpoint)
    try:
        for path in (args.onnx, output):
            if path is not None:
                check_outside_package(path)
        if args.onnx is not None:
            from ..onnx.export import export_onnx
            size = export_onnx(checkpoint, args.onnx)
            print(f"wrote {args.onnx} ({size} bytes, ONNX) from {checkpoint}")
        if output is not None:
            size = export_checkpoint(checkpoint, output)
            print(f"wrote {output} ({size / 1e6:.2f} MB) from {checkpoint}")
    except (CheckpointError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
