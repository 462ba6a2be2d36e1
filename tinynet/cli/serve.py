"""``tinynet serve`` (and ``python3 inference.py --serve``): the drawing page over a trained model.

Draw a character in the browser and see the top-k, the input (28x28 for the LeNet), feature maps,
filters and saliency; the server and its HTTP API are ``tinynet.web.draw``. The model is loaded
directly from its checkpoint: the server keeps its own replicas, one per core, so no batch
predictor is built.
"""

import argparse
import sys

from ..files.checkpoint import CheckpointError
from ..nn.layers import LogitAdjustment
from ..predict.explain import TOP_K
from ..predict.predictor import default_checkpoint, load_model
from ..web.draw import DEFAULT_HOST, DEFAULT_PORT, serve
from . import add_checkpoint_options, pillow_quiet, positive_int


def port_number(text):
    """argparse type: a TCP port, 0..65535 (0: any free port)."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text}")
    return value


def build_parser(prog=None):
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the drawing page: draw a character in the browser and see what a trained\n"
                    "tinynet checkpoint makes of it (Ctrl-C stops).",
        epilog="exit status:\n  0  the server was stopped with Ctrl-C\n"
               "  1  the checkpoint is unusable, or the server cannot listen on its address\n"
               "  2  invalid options\n\n"
               "examples:\n  tinynet serve                             (http://127.0.0.1:8000/)\n"
               "  tinynet serve --host 0.0.0.0 --port 8080  (reachable from other machines)")
    add_checkpoint_options(p, "checkpoint to serve, or an ONNX model (a .onnx file, docs/onnx.md)")
    p.add_argument("--host", metavar="ADDRESS", default=DEFAULT_HOST,
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 "
                        "for every network interface)")
    p.add_argument("--port", metavar="N", type=port_number, default=DEFAULT_PORT,
                   help="TCP port, 0 for any free one (default: %(default)s)")
    p.add_argument("--top-k", type=positive_int, default=TOP_K, metavar="K",
                   help="how many of the most probable characters to answer and show "
                        "(default: %(default)s)")
    return p


@pillow_quiet()
def run(parser, checkpoint, runs_dir, host, port, top_k):
    """Load the checkpoint and serve it until Ctrl-C; the exit status. ``parser`` reports a
    --top-k larger than the checkpoint's classes."""
    path, origin = (checkpoint, None) if checkpoint is not None else default_checkpoint(runs_dir)
    try:
        model, meta = load_model(path)  # a checkpoint, or an ONNX model
        classes = meta["classes"]
        if top_k > len(classes):
            parser.error(f"argument --top-k: the checkpoint has only {len(classes)} classes, got {top_k}")
        corrected = any(isinstance(layer, LogitAdjustment) for layer in model.layers)
        print(f"checkpoint {path} ({len(classes)} classes" + (", class-prior corrected" if corrected else "")
              + ")" + (f": {origin}" if origin else ""))
        return serve(model, classes, path, host, port, top_k)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
    except OSError as e:  # a port in use, an address that is not this machine's
        print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr)
    return 1


def main(argv=None, prog=None):
    """``tinynet serve``; returns the exit status (see the --help epilog)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    return run(parser, args.checkpoint, args.runs_dir, args.host, args.port, args.top_k)
