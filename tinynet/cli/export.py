"""The command line ``python3 -m tinynet.cli.export CHECKPOINT [--output FILE]``: write an
inference-only copy of a checkpoint (``tinynet.checkpoint.export_checkpoint``); without
``--output`` it replaces the model bundled with tinynet (``tinynet/models/lenet-emnist47.npz``;
README: "The bundled model")."""

import argparse
import sys

from ..checkpoint import CheckpointError, export_checkpoint
from ..inference import BUNDLED_MODEL


def main(argv=None, prog="python3 -m tinynet.cli.export"):
    """``tinynet export`` (also ``python3 -m tinynet.cli.export``); returns the exit status."""
    p = argparse.ArgumentParser(prog=prog,
                                description="Write an inference-only copy of a checkpoint (no "
                                            "optimiser state, no resume data, compressed).")
    p.add_argument("checkpoint", help="the checkpoint to export, e.g. runs/<run>/best.npz")
    p.add_argument("--output", metavar="FILE", default=str(BUNDLED_MODEL),
                   help="where to write it (default: the bundled model, %(default)s)")
    args = p.parse_args(argv)
    try:
        size = export_checkpoint(args.checkpoint, args.output)
    except (CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({size / 1e6:.2f} MB) from {args.checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
