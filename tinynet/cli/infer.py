"""The command line of ``python3 inference.py`` (installed as ``tinynet-infer``): predict
characters with a trained checkpoint; every option and the exit codes are in ``--help``.

It takes three kinds of ``--input``:

- a data folder (``NAME-SPLIT-images-idx3-ubyte[.gz]``; ``--dataset``, ``--split``) or an IDX
  images file: predicts every image; when a labels file lies beside it (``...-labels-idx1-ubyte``),
  prints accuracy, top-k accuracy, a per-class precision / recall / F1 table and the most confused
  pairs, and writes ``predictions.csv``, ``confusion.png`` and ``errors.png`` to ``--output-dir``;
- an image file or a folder of image files: prints each file's top-k characters;
- a ``.npy`` array (N, 28, 28) or (28, 28) (or the model's own input size), uint8 (0..255) or
  float (0..1): prints each image's top-k.

Without ``--input``, ``--dataset sample`` evaluates the real sample shipped with tinynet (its test
split, 752 images; ``--split train``: its 3,008 training images), as a data folder's test set.

``--explain DIR`` (image files) also draws, per image, what the network sees (``tinynet.predict.explain``).
``python3 inference.py --serve [--host A] [--port N]`` serves the drawing page instead: the same as
``tinynet serve`` (``tinynet.cli.serve``), kept under ``inference.py`` (and ``tinynet-infer``) as the
README shows it; ``tinynet infer`` has only the prediction options.

The library under it is ``tinynet.predict.predictor`` (``Predictor``) and ``tinynet.predict.metrics`` (metrics).
"""

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..datasets.idx import ORIENTATIONS, DataError
from ..datasets.load import SAMPLE_DATASET, sample_splits
from ..files.checkpoint import CheckpointError
from ..files.plots import plot_confusion, plot_image_grid
from ..nn.layers import LogitAdjustment
from ..predict.explain import explain, save_explanation
from ..predict.metrics import confusion_matrix, format_report, top_k_accuracy, top_k_indices
from ..predict.predictor import (BUNDLED_MODEL, IdxInput, InputError, Predictor, check_fits,
                                 default_checkpoint, find_idx_images, load_idx_input, load_npy)
from ..web.draw import DEFAULT_HOST, DEFAULT_PORT
from . import add_checkpoint_options, pillow_quiet, positive_int
from . import serve as serve_cli

IDX_SUFFIXES = ("idx3-ubyte", "idx3-ubyte.gz")
IMAGE_EXTENSIONS = frozenset(Image.registered_extensions())  # every format Pillow can open
BATCH_SIZE = 1024  # images per forward pass unless --batch-size says otherwise
ERRORS_SHOWN = 100  # misclassified images drawn in errors.png (the first ones, in data order)


def prediction_records(classes, indices, probs, ids, id_name, labels=None):
    """One dict per prediction (for CSV / JSON) from top-k ``indices`` and ``probs`` (N, k)."""
    records = []
    for n, (ident, idx, p) in enumerate(zip(ids, indices, probs)):
        record = {id_name: ident}
        if labels is not None:
            record["true"] = classes[labels[n]]
            record["correct"] = bool(labels[n] == idx[0])
        record.update(predicted=classes[idx[0]], probability=round(float(p[0]), 4),
                      top_k=[classes[i] for i in idx],
                      top_k_probabilities=[round(float(q), 4) for q in p])
        records.append(record)
    return records


def write_predictions(path, records):
    """Write records as JSON (a ``.json`` path) or CSV (lists joined by spaces)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")  # one a line
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        for record in records:
            writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v
                             for k, v in record.items()})


def _listing_line(name, top_k):
    """``NAME  CHAR   c1:p1  c2:p2 ...`` for (character, probability) pairs, best first."""
    return f"{name}  {top_k[0][0]}   " + "  ".join(f"{c}:{p:.3f}" for c, p in top_k)


def run_idx(predictor, data, images_path, args):
    """Evaluate (or, without labels, just predict) the images of an IDX file or the sample
    (``data``: an ``IdxInput``, read from ``images_path``); returns the image count."""
    check_fits(data, predictor)
    if not len(data.images):
        raise InputError(f"{images_path}: holds no images")
    started = time.perf_counter()
    proba = predictor.predict_proba(data.images)
    seconds = time.perf_counter() - started
    print(f"{len(proba)} images from {images_path} predicted in {seconds:.1f} s "
          f"({len(proba) / seconds:.0f} images/s)")
    indices = top_k_indices(proba, args.top_k)
    records = prediction_records(predictor.classes, indices, np.take_along_axis(proba, indices, 1),
                                 range(len(proba)), "index", data.labels)
    # beside the checkpoint, but never inside the installed package: the bundled model's go to --runs-dir
    checkpoint = Path(predictor.checkpoint)
    beside = Path(args.runs_dir) if checkpoint.resolve() == BUNDLED_MODEL else checkpoint.parent
    out_dir = Path(args.output_dir or beside / f"inference-{data.name}")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / "predictions.csv", records)
    written = ["predictions.csv"]
    if data.labels is None:
        print(f"no labels file beside {images_path}: predictions only, no accuracy")
    else:
        predicted = indices[:, 0]
        confusion = confusion_matrix(data.labels, predicted, len(predictor.classes))
        print(format_report(confusion, predictor.classes,
                            top_k_accuracy(proba, data.labels, args.top_k), args.top_k))
        plot_confusion(confusion, predictor.classes, out_dir / "confusion.png")
        written.append("confusion.png")
        wrong = np.flatnonzero(predicted != data.labels)[:ERRORS_SHOWN]
        if wrong.size:
            titles = [f"{predictor.classes[data.labels[i]]}->{predictor.classes[predicted[i]]}"
                      for i in wrong]
            plot_image_grid(data.images[wrong], titles, out_dir / "errors.png")
            written.append(f"errors.png (first {wrong.size} mistakes, titled true->predicted)")
    if args.output:
        write_predictions(args.output, records)
    print(f"wrote {', '.join(written)} to {out_dir}" + (f"; predictions also to {args.output}"
                                                       if args.output else ""))
    return len(records)


def sample_input(split):
    """The shipped sample's ``split`` as an ``IdxInput`` (``--dataset sample`` without ``--input``)."""
    data = sample_splits()[split]
    return IdxInput(data.images, data.labels, data.classes, f"{SAMPLE_DATASET}-{split}", None, None)


def run_array(predictor, path, args):
    """Predict a .npy array and list each image's top-k; returns the image count."""
    images = load_npy(path, predictor.image_shape)
    if not len(images):
        raise InputError(f"{path}: holds no images")
    indices, probs = predictor.top_k(images, args.top_k)
    records = prediction_records(predictor.classes, indices, probs, range(len(images)), "index")
    for r in records:
        print(_listing_line(r["index"], list(zip(r["top_k"], r["top_k_probabilities"]))))
    if args.output:
        write_predictions(args.output, records)
        print(f"wrote {args.output}")
    return len(records)


def image_files(path):
    """``[path]`` for a file; for a folder, its files (not sub-folders, not hidden) whose
    extension Pillow reads, sorted by name."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"{path}: no image files (.png, .jpg, .bmp, ...) and no "
                         f"NAME-SPLIT-images-idx3-ubyte[.gz] data files")
    return files


def run_images(predictor, path, args):
    """Preprocess and predict image files, list each one's top-k, report failures on stderr;
    returns the number of files predicted."""
    results = predictor.predict_files(image_files(path), args.top_k)
    good = [r for r in results if r.error is None]
    for r in results:
        if r.error:
            print(f"skipped: {r.error}", file=sys.stderr)
        else:
            print(_listing_line(r.path, r.top_k))
    stems = [r.path.stem for r in good]  # output name.png; the full file name when two inputs share a stem
    names = [r.path.stem if stems.count(r.path.stem) == 1 else r.path.name for r in good]
    if args.save_preprocessed and good:
        out = Path(args.save_preprocessed)
        out.mkdir(parents=True, exist_ok=True)
        for r, name in zip(good, names):
            Image.fromarray(r.image).save(out / f"{name}.png")
        size = "x".join(map(str, predictor.image_shape))
        print(f"wrote the {len(good)} preprocessed {size} inputs to {out}")
    if args.explain and good:
        out = Path(args.explain)
        out.mkdir(parents=True, exist_ok=True)
        for r, name in zip(good, names):
            save_explanation(explain(predictor.model, r.image, predictor.classes, args.top_k),
                             out / f"{name}.png")
        print(f"wrote {len(good)} explanations (input, top-{args.top_k}, saliency, filters, "
              f"feature maps) to {out}")
    if args.output and good:
        records = [{"file": str(r.path), "predicted": r.char, "probability": round(r.top_k[0][1], 4),
                    "top_k": [c for c, _ in r.top_k],
                    "top_k_probabilities": [round(p, 4) for _, p in r.top_k]} for r in good]
        write_predictions(args.output, records)
        print(f"wrote {args.output}")
    if len(good) < len(results):
        print(f"predicted {len(good)} of {len(results)} files; {len(results) - len(good)} skipped",
              file=sys.stderr)
    return len(good)


def input_kind(path, dataset=None):
    """"idx" (data folder or IDX file), "array" (.npy) or "images" (image file or folder)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        has_idx = any(p.name.endswith(IDX_SUFFIXES) for p in path.iterdir())
        return "idx" if dataset or has_idx else "images"
    if path.suffix.lower() == ".npy":
        return "array"
    return "idx" if path.name.endswith(IDX_SUFFIXES) else "images"


def predictions_file(text):
    """argparse type: a path ending in .csv or .json."""
    if Path(text).suffix.lower() not in (".csv", ".json"):
        raise argparse.ArgumentTypeError(f"must end in .csv or .json, got {text}")
    return text


EPILOG = """\
input kinds:
  data folder / IDX file  NAME-SPLIT-images-idx3-ubyte[.gz], with NAME-SPLIT-labels-idx1-ubyte[.gz]
                          and NAME-mapping.txt beside it when present: accuracy, top-k accuracy,
                          per-class precision/recall/F1, most confused pairs; predictions.csv,
                          confusion.png and errors.png in --output-dir
  image file or folder    any format Pillow reads (PNG, JPEG, BMP, ...), one character per image,
                          dark ink on light paper or the reverse, any size: EMNIST-style
                          preprocessing, then each file's top-k characters
  .npy array              shape (N, 28, 28) or (28, 28) (or the model's input size), upright,
                          light ink on a dark background (as EMNIST);
                          dtype uint8 (0..255) or float (0.0..1.0); never unpickled
  --dataset sample        (no --input) the real sample shipped with tinynet: its test split (752
                          images; --split train: 3,008), evaluated as a data folder's

exit status:
  0  at least one input was predicted (unreadable or blank image files are reported on stderr,
     one line each, and skipped){serve_stopped}
  1  nothing could be predicted, or the checkpoint or data is unusable or they do not match{serve_fails}
  2  invalid options

examples:
  python3 inference.py --input data                 (test split of the data folder's dataset)
  python3 inference.py --dataset sample             (the sample shipped with tinynet: no download)
  python3 inference.py --input photos/ --output predictions.json --save-preprocessed seen/
  python3 inference.py --input digits.npy --checkpoint runs/my-run/best.npz --top-k 3
  python3 inference.py --input my_letter.png --explain why/   (saliency, feature maps: why/my_letter.png)
"""
SERVE_EPILOG = """\
  python3 inference.py --serve                      (the drawing page at http://127.0.0.1:8000/)
"""


def build_parser(prog=None, serve=None):
    """The parser of ``prog`` (None: ``inference.py``). ``serve`` (default: when ``prog`` is None)
    adds ``--serve``, ``--host`` and ``--port``, the drawing page's options that ``inference.py``
    has always had; ``tinynet infer`` leaves them to ``tinynet serve``."""
    serve = prog is None if serve is None else serve
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG.format(
            serve_stopped="; with --serve, the server was stopped with Ctrl-C" if serve else "",
            serve_fails=", or\n     --serve cannot listen on its address" if serve else "")
        + (SERVE_EPILOG if serve else ""),
        description="Predict EMNIST characters with a trained tinynet checkpoint: evaluate a test\n"
                    "set, or read your own images or arrays.")
    p.add_argument("--input", metavar="PATH", default=None,
                   help="data folder, IDX images file, image file, folder of images, or .npy array "
                        "(see input kinds below); or, instead, --dataset sample"
                        + (" or --serve" if serve else ""))
    if serve:
        add_serve_options(p)
    add_checkpoint_options(p, "checkpoint to use, or an ONNX model (a .onnx file, docs/onnx.md)")
    add_data_folder_options(p)
    add_output_options(p, serve)
    add_prediction_options(p, serve)
    return p


def add_serve_options(p):
    """``inference.py``'s --serve, --host and --port: the drawing page instead of predictions."""
    p.add_argument("--serve", action="store_true",
                   help="serve the drawing page instead (as tinynet serve does): draw a character "
                        "in the browser and see the top-k, the input (28x28 for the LeNet), feature "
                        "maps, filters and saliency (Ctrl-C stops)")
    p.add_argument("--host", metavar="ADDRESS", default=None,
                   help=f"--serve only: address to listen on (default: {DEFAULT_HOST}, this "
                        f"machine only)")
    p.add_argument("--port", metavar="N", type=serve_cli.port_number, default=None,
                   help=f"--serve only: TCP port, 0 for any free one (default: {DEFAULT_PORT})")


def add_data_folder_options(p):
    """--dataset, --split and --orientation: which files of a data folder to read, and how."""
    p.add_argument("--dataset", metavar="NAME", default=None,
                   help="data folder only: which dataset's files to read (default: the only one "
                        "in the folder); without --input, sample: the sample shipped with tinynet")
    p.add_argument("--split", choices=("train", "test"), default=None,
                   help="data folder or --dataset sample only: which split to read (default: test)")
    p.add_argument("--orientation", choices=ORIENTATIONS, default=None,
                   help="data folder or IDX file only: how the file stores each image, transposed "
                        "(EMNIST's way) or upright (MNIST's) (default: by the data set's name, as "
                        "train.py --orientation)")


def add_output_options(p, serve):
    """What is reported and written: --top-k, --output, --output-dir, --save-preprocessed, --explain."""
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K",
                   help="how many of the most probable characters to list"
                        + (" (with --serve: to answer and show)" if serve else "")
                        + ", and k of top-k accuracy (default: %(default)s)")
    p.add_argument("--output", metavar="FILE", type=predictions_file, default=None,
                   help="also write the predictions to FILE: CSV or JSON, by its extension "
                        "(default: none)")
    p.add_argument("--output-dir", metavar="DIR", default=None,
                   help="data folder / IDX file only: where predictions.csv, confusion.png and "
                        "errors.png go (default: inference-NAME-SPLIT beside the checkpoint; for the "
                        "bundled model, in --runs-dir)")
    p.add_argument("--save-preprocessed", metavar="DIR", default=None,
                   help="image files only: write each input the model saw (28x28 for EMNIST) to DIR "
                        "as PNG (default: none)")
    p.add_argument("--explain", metavar="DIR", default=None,
                   help="image files only: write one PNG per image to DIR showing the input, the "
                        "top-k, the saliency map, conv1's filters and the conv1 / conv2 feature maps "
                        "(default: none)")


def add_prediction_options(p, serve):
    """How the network runs: --tta, --batch-size, --threads."""
    p.add_argument("--tta", action="store_true", default=None,
                   help="test-time augmentation: average each image's probabilities over the image "
                        "and copies rotated by -5 and +5 degrees (3 forward passes; not with "
                        + ("--serve or " if serve else "") + "--explain)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help=f"images per forward pass (default: {BATCH_SIZE})")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads, each running the network on a slice of every batch (default: all cores)")


@pillow_quiet()
def main(argv=None, prog=None):
    """``python3 inference.py`` / ``tinynet infer``; returns the exit status (see the --help epilog)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    serving = getattr(args, "serve", False)  # (only inference.py has --serve)
    sample = args.input is None and args.dataset == SAMPLE_DATASET
    if serving == (args.input is not None or sample):
        parser.error("give either --input PATH or --serve (or --dataset sample, without --input)"
                     if hasattr(args, "serve") else "give --input PATH (or --dataset sample)")
    if serving:
        return serve_page(parser, args)
    source = Path(args.input or SAMPLE_DATASET)
    try:
        kind = "sample" if sample else input_kind(source, args.dataset)
        folder_data = kind == "idx" and source.is_dir()
        check_options(parser, args, source, kind, folder_data)
        predictor = load_predictor(parser, args)
        if kind == "sample":
            done = run_idx(predictor, sample_input(args.split or "test"), "the sample", args)
        elif kind == "idx":
            images_path = (find_idx_images(source, args.dataset, args.split or "test")
                           if folder_data else source)
            done = run_idx(predictor, load_idx_input(images_path, args.orientation), images_path, args)
        elif kind == "array":
            done = run_array(predictor, source, args)
        else:
            done = run_images(predictor, source, args)
    except (InputError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a folder that cannot be listed, an output that cannot be written
        print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 1
    if not done:
        print("error: nothing could be predicted", file=sys.stderr)
    return 0 if done else 1


def check_options(parser, args, source, kind, folder_data):
    """The argparse error for an option that does not apply to ``source`` (an input of ``kind``;
    ``folder_data``: a data folder), or for --tta with --explain."""
    for option, applies in (("--dataset", folder_data or kind == "sample"),
                            ("--split", folder_data or kind == "sample"),
                            ("--orientation", kind == "idx"), ("--output-dir", kind in ("idx", "sample")),
                            ("--save-preprocessed", kind == "images"),
                            ("--explain", kind == "images"), ("--host", False), ("--port", False)):
        if getattr(args, option[2:].replace("-", "_"), None) is not None and not applies:
            parser.error(f"{option} does not apply to {source}")
    if args.tta and args.explain:
        parser.error("--tta and --explain do not go together (an explanation is of one image)")


def load_predictor(parser, args):
    """The Predictor of --checkpoint (else the default checkpoint), checked against --top-k, after
    printing which checkpoint it is."""
    path, origin = ((args.checkpoint, None) if args.checkpoint is not None
                    else default_checkpoint(args.runs_dir))
    predictor = Predictor.from_checkpoint(path, args.runs_dir, args.batch_size or BATCH_SIZE,
                                          args.threads, bool(args.tta))
    if args.top_k > len(predictor.classes):
        parser.error(f"argument --top-k: the checkpoint has only {len(predictor.classes)} classes, "
                     f"got {args.top_k}")
    corrected = any(isinstance(layer, LogitAdjustment) for layer in predictor.model.layers)
    print(f"checkpoint {predictor.checkpoint} ({len(predictor.classes)} classes"
          + (", class-prior corrected" if corrected else "")
          + (", test-time augmentation" if args.tta else "") + ")"
          + (f": {origin}" if origin else ""))
    return predictor


def serve_page(parser, args):
    """``inference.py --serve``: ``tinynet serve`` with the options that apply to it."""
    for option in ("--dataset", "--split", "--orientation", "--output", "--output-dir",
                   "--save-preprocessed", "--explain", "--tta", "--batch-size", "--threads"):
        if getattr(args, option[2:].replace("-", "_")) is not None:
            parser.error(f"{option} does not apply to --serve")
    return serve_cli.run(parser, args.checkpoint, args.runs_dir, args.host or DEFAULT_HOST,
                         DEFAULT_PORT if args.port is None else args.port, args.top_k)
