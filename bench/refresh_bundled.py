#!/usr/bin/env python3
"""Maintainers only: replace the model bundled with tinynet (``tinynet/models/lenet-emnist47.npz``
in this clone of the repository) with an inference-only copy of a checkpoint.

    python3 bench/refresh_bundled.py runs/ablation/unseen-s1/best.npz

The user-facing ``tinynet export`` never writes inside the package; this script is the one way
to change what tinynet ships, run deliberately in a clone (it writes the source tree's file, which
then goes through review like any change; it never touches an installed copy). It prints what the
old and the new model record of their training (data set, seed, epoch, best validation accuracy) so that a
mistake shows; docs/accuracy.md ("The bundled model") says how the bundled model was made and
scored, and ``tests/test_bundled_model.py`` checks the result's size and accuracy.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tinynet.files.checkpoint import CheckpointError, export_checkpoint, load_checkpoint  # noqa: E402

BUNDLED = ROOT / "tinynet" / "models" / "lenet-emnist47.npz"


def describe(path):
    """One line of what checkpoint ``path`` records of its training, or why it cannot be read."""
    try:
        _, meta, _, _ = load_checkpoint(path)
    except CheckpointError as e:
        return f"unreadable ({e})"
    training = meta.get("training") or {}
    recipe = meta.get("recipe") or {}
    return (f"{len(meta['classes'])} classes, trained on {recipe.get('dataset', '?')} (seed "
            f"{recipe.get('seed', '?')}) to epoch {training.get('epoch', '?')}, best validation "
            f"accuracy {training.get('best_val_accuracy', '?')}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench/refresh_bundled.py", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="the checkpoint whose inference-only copy becomes the bundled model")
    args = p.parse_args(argv)
    print(f"bundled model now: {describe(BUNDLED) if BUNDLED.exists() else 'none'}")
    print(f"replacing it with: {args.checkpoint}: {describe(args.checkpoint)}")
    try:
        size = export_checkpoint(args.checkpoint, BUNDLED)
    except (CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {BUNDLED} ({size / 1e6:.2f} MB); check it with python3 -m pytest tests/test_bundled_model.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
