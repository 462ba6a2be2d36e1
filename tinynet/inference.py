"""Inference with a trained checkpoint: test sets, users' own images and arrays, from Python or
from the command line (``python3 inference.py --input PATH``; every option in ``--help``).

From Python::

    from tinynet.inference import Predictor
    predictor = Predictor.from_checkpoint("runs/my-run/best.npz")  # None: the latest run's best
    predictor.predict_chars(images)        # images: uint8 (N, 28, 28) or (28, 28) -> N characters
    labels, probs = predictor.top_k(images, 5)                     # (N, 5) each, best first
    for result in predictor.predict_files(["a.png", "b.jpg"]):     # errors reported, not raised
        print(result.path, result.error or result.top_k)

Image arrays, everywhere: upright, light ink (high values) on a dark (0) background, as the training
loader returns EMNIST; either uint8 in 0..255, or float in [0, 1] (scaled by 255 and rounded to
uint8). A (28, 28) array is a batch of one. Image files instead go through
``tinynet.preprocess`` first, which accepts any size, framing and either polarity.

The command line takes three kinds of ``--input``:

- a data folder (``NAME-SPLIT-images-idx3-ubyte[.gz]``; ``--dataset``, ``--split``) or an IDX
  images file: predicts every image; when a labels file lies beside it (``...-labels-idx1-ubyte``),
  prints accuracy, top-k accuracy, a per-class precision / recall / F1 table and the most confused
  pairs, and writes ``predictions.csv``, ``confusion.png`` and ``errors.png`` to ``--output-dir``;
- an image file or a folder of image files: prints each file's top-k characters;
- a ``.npy`` array (N, 28, 28) or (28, 28), uint8 or float as above: prints each image's top-k.
"""

import argparse
import csv
import json
import math
import os
import re
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .checkpoint import CheckpointError, load_checkpoint
from .cli import positive_int
from .data import DataError, parse_mapping, read_idx_images, read_idx_labels
from .parallel import DataParallel
from .plots import plot_confusion, plot_image_grid
from .predict import confusion_matrix, format_report, top_k_accuracy, top_k_indices
from .predict import predict_proba as model_proba
from .preprocess import ImageError, preprocess_file

IDX_NAME = re.compile(r"(?P<name>.+)-(?P<split>train|test)-images-idx3-ubyte(?:\.gz)?")
IDX_SUFFIXES = ("idx3-ubyte", "idx3-ubyte.gz")
IMAGE_EXTENSIONS = frozenset(Image.registered_extensions())  # every format Pillow can open
ERRORS_SHOWN = 100  # misclassified images drawn in errors.png (the first ones, in data order)


class InputError(ValueError):
    """An input that cannot be used (or does not fit the checkpoint); the one-line message names
    the file and the fault."""


def as_images(array, source="images"):
    """uint8 (N, 28, 28) or (28, 28), or float in [0, 1] of those shapes -> uint8 (N, 28, 28).

    Floats are scaled by 255 and rounded. Raises :class:`InputError` naming ``source`` for any
    other shape or dtype, or for float values that are not finite or outside [0, 1].
    """
    a = np.asarray(array)
    if a.shape == (28, 28):
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise InputError(f"{source}: shape {a.shape}, expected (N, 28, 28) or (28, 28)")
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind != "f":
        raise InputError(f"{source}: dtype {a.dtype}, expected uint8 (0..255) or float (0..1)")
    if not np.isfinite(a).all():
        raise InputError(f"{source}: float values must be finite, found NaN or infinity")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise InputError(f"{source}: float values must be in [0, 1], found {a.min():g}..{a.max():g} "
                         f"(uint8 arrays hold 0..255)")
    return np.round(a * 255).astype(np.uint8)


def load_npy(path):
    """A ``.npy`` file -> uint8 (N, 28, 28) via :func:`as_images`; never unpickles, and checks the
    header's shape against the file's size before NumPy allocates the array."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise InputError(f"{path}: not a .npy file (no NumPy header)")
            f.seek(0)
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise InputError(f"{path}: corrupt .npy file (unknown format version {version})")
            size = os.fstat(f.fileno()).st_size
            if version != (1, 0):  # a 4-byte header length: check it before anything reads that much
                length = int.from_bytes(f.read(4), "little")
                if length > size - 12:
                    raise InputError(f"{path}: corrupt .npy file (its {length}-byte header would end "
                                     f"past the end of the {size}-byte file)")
                f.seek(8)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            count = math.prod(shape)
            held = size - f.tell()
            if count < 0 or (not dtype.hasobject and count * dtype.itemsize > held):
                raise InputError(f"{path}: corrupt .npy file (its header says shape {shape} of "
                                 f"{dtype}, but {held} bytes of data follow it)")
            f.seek(0)
            array = np.load(f, allow_pickle=False)
    except InputError:
        raise
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    except (ValueError, TypeError, SyntaxError, tokenize.TokenError) as e:  # a damaged header
        if "allow_pickle" in str(e):
            raise InputError(f"{path}: holds pickled Python objects, refused (save a plain uint8 "
                             f"or float array)") from None
        raise InputError(f"{path}: corrupt .npy file ({' '.join(str(e).split())})") from None
    return as_images(array, path)


def latest_checkpoint(runs_dir="runs"):
    """``best.npz`` (else ``last.npz``) of the run folder under ``runs_dir`` whose checkpoint was
    written last; :class:`InputError` saying how to get one when there is none."""
    runs_dir = Path(runs_dir)
    found = [p for run in (sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []) if run.is_dir()
             for p in (run / "best.npz", run / "last.npz") if p.is_file()]
    if not found:
        raise InputError(f"{runs_dir}: no trained run found (no run folder with best.npz or "
                         f"last.npz); train one first with `python3 train.py ...` (see "
                         f"--help) or name a checkpoint with --checkpoint PATH")
    run = max(found, key=lambda p: p.stat().st_mtime).parent
    return run / "best.npz" if (run / "best.npz").is_file() else run / "last.npz"


@dataclass
class FileResult:
    """The prediction for one image file; on failure ``error`` holds the one-line reason and
    ``image`` and ``top_k`` are empty."""

    path: Path
    image: np.ndarray | None = None  # uint8 (28, 28): the preprocessed input the model saw
    top_k: list[tuple[str, float]] = field(default_factory=list)  # (character, probability), best first
    error: str | None = None

    @property
    def char(self):
        """The predicted character (None on failure)."""
        return self.top_k[0][0] if self.top_k else None


class Predictor:
    """A trained model and its classes; every method takes images as :func:`as_images` does and
    predicts them in batches of ``batch_size``, each batch split over ``threads`` threads (None:
    every core; see ``tinynet/parallel.py``)."""

    def __init__(self, model, classes, checkpoint=None, batch_size=1024, threads=None):
        self.model, self.classes = model, tuple(classes)
        self.checkpoint, self.batch_size = checkpoint, batch_size
        self.net = DataParallel(model, threads)

    @classmethod
    def from_checkpoint(cls, path=None, runs_dir="runs", batch_size=1024, threads=None):
        """Load ``path`` (None: :func:`latest_checkpoint` of ``runs_dir``); raises
        ``CheckpointError`` for a file that is not an intact tinynet checkpoint."""
        path = Path(path) if path is not None else latest_checkpoint(runs_dir)
        model, meta, _, _ = load_checkpoint(path)
        return cls(model, meta["classes"], path, batch_size, threads)

    def predict_proba(self, images):
        """Class probabilities float32 (N, K)."""
        return model_proba(self.net, as_images(images), self.batch_size)

    def predict(self, images):
        """Predicted class indices int64 (N,)."""
        return self.predict_proba(images).argmax(axis=1)

    def predict_chars(self, images):
        """Predicted characters, a list of N strings."""
        return [self.classes[i] for i in self.predict(images)]

    def top_k(self, images, k=5):
        """The k most probable classes: ``(indices int64 (N, k), probabilities float32 (N, k))``,
        best first."""
        if not 1 <= k <= len(self.classes):
            raise ValueError(f"k must be in 1..{len(self.classes)}, got {k}")
        proba = self.predict_proba(images)
        indices = top_k_indices(proba, k)
        return indices, np.take_along_axis(proba, indices, axis=1)

    def predict_files(self, paths, k=5):
        """Preprocess image files (``tinynet.preprocess``) and predict them in one batch: a
        :class:`FileResult` per path, in order. A file that cannot be read or holds no ink gets its
        ``error`` set instead of raising."""
        results = []
        for path in map(Path, paths):
            try:
                results.append(FileResult(path, image=preprocess_file(path)))
            except ImageError as e:
                results.append(FileResult(path, error=str(e)))
        good = [r for r in results if r.error is None]
        if good:
            indices, probs = self.top_k(np.stack([r.image for r in good]), k)
            for r, idx, p in zip(good, indices, probs):
                r.top_k = [(self.classes[i], float(q)) for i, q in zip(idx, p)]
        return results


@dataclass
class IdxInput:
    """Images of an IDX file, with the labels and mapping found beside it (None when absent)."""

    images: np.ndarray  # uint8 (N, 28, 28), upright
    labels: np.ndarray | None  # int64 (N,), from 0
    classes: tuple[str, ...] | None  # from the mapping file
    name: str  # e.g. "emnist-balanced-test"
    labels_path: Path | None
    mapping_path: Path | None


def find_idx_images(folder, dataset=None, split="test"):
    """The ``NAME-SPLIT-images-idx3-ubyte[.gz]`` file in ``folder`` (``.gz`` when both exist);
    ``dataset`` names NAME, needed only when the folder holds several."""
    found = {}
    for path in sorted(Path(folder).iterdir()):
        m = IDX_NAME.fullmatch(path.name)
        if m and m["split"] == split and dataset in (None, m["name"]):
            found.setdefault(m["name"], []).append(path)
    if not found:
        raise InputError(f"{folder}: no {dataset or 'NAME'}-{split}-images-idx3-ubyte[.gz] file")
    if len(found) > 1:
        raise InputError(f"{folder}: holds {split} images of several datasets ({', '.join(found)}); "
                         f"choose one with --dataset")
    (paths,) = found.values()
    return max(paths, key=lambda p: p.suffix == ".gz")


def load_idx_input(images_path):
    """Read an IDX images file and, when present beside it, its labels file (``images-idx3`` ->
    ``labels-idx1`` in the name) and mapping (``NAME-mapping.txt`` for ``NAME-SPLIT-images-...``).
    Labels are shifted to start at 0 as the mapping says (``tinynet.data``)."""
    images_path = Path(images_path)
    stem = images_path.name.removesuffix(".gz")
    labels_name = stem.replace("images-idx3", "labels-idx1")
    labels_path = next((p for p in (images_path.with_name(labels_name + ".gz"),
                                    images_path.with_name(labels_name)) if p.is_file()), None)
    m = IDX_NAME.fullmatch(images_path.name)
    mapping_path = images_path.with_name(f"{m['name']}-mapping.txt") if m else None
    if mapping_path is not None and not mapping_path.is_file():
        mapping_path = None
    images = read_idx_images(images_path)
    first, classes = parse_mapping(mapping_path) if mapping_path else (0, None)
    labels = None
    if labels_path:
        labels = read_idx_labels(labels_path) - first
        if len(labels) != len(images):
            raise DataError(f"{labels_path}: count mismatch: {len(labels)} labels but "
                            f"{images_path} holds {len(images)} images")
    return IdxInput(images, labels, classes, stem.removesuffix("-images-idx3-ubyte"),
                    labels_path, mapping_path)


def check_fits(data, predictor):
    """InputError unless the mapping's characters are the checkpoint's classes and every label
    is one of them."""
    ours, theirs = predictor.classes, data.classes
    if theirs is not None and theirs != ours:
        if len(theirs) != len(ours):
            fault = f"it has {len(ours)} classes but {data.mapping_path} maps {len(theirs)}"
        else:
            k = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
            fault = f"its class {k} is {ours[k]!r} but {data.mapping_path} maps {k} to {theirs[k]!r}"
        raise InputError(f"{predictor.checkpoint}: checkpoint does not match the data: {fault}")
    if data.labels is not None and len(data.labels):
        bad = data.labels[(data.labels < 0) | (data.labels >= len(ours))]
        if bad.size:
            raise InputError(f"{data.labels_path}: label {bad[0]} is not one of the checkpoint's "
                             f"{len(ours)} classes ({predictor.checkpoint})")


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


def run_idx(predictor, images_path, args):
    """Evaluate (or, without labels, just predict) an IDX images file; returns the image count."""
    data = load_idx_input(images_path)
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
    out_dir = Path(args.output_dir or predictor.checkpoint.parent / f"inference-{data.name}")
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


def run_array(predictor, path, args):
    """Predict a .npy array and list each image's top-k; returns the image count."""
    images = load_npy(path)
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
    if args.save_preprocessed and good:
        out = Path(args.save_preprocessed)
        out.mkdir(parents=True, exist_ok=True)
        stems = [r.path.stem for r in good]
        for r in good:  # name.png; the full file name when two inputs share a stem
            name = r.path.stem if stems.count(r.path.stem) == 1 else r.path.name
            Image.fromarray(r.image).save(out / f"{name}.png")
        print(f"wrote the {len(good)} preprocessed 28x28 inputs to {out}")
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
  .npy array              shape (N, 28, 28) or (28, 28), upright, light ink on a dark background
                          (as EMNIST); dtype uint8 (0..255) or float (0.0..1.0); never unpickled

exit status:
  0  at least one input was predicted (unreadable or blank image files are reported on stderr,
     one line each, and skipped)
  1  nothing could be predicted, or the checkpoint or data is unusable or they do not match
  2  invalid options

examples:
  python3 inference.py --input data                 (test split of the data folder's dataset)
  python3 inference.py --input photos/ --output predictions.json --save-preprocessed seen/
  python3 inference.py --input digits.npy --checkpoint runs/my-run/best.npz --top-k 3
"""


def build_parser():
    p = argparse.ArgumentParser(
        prog="inference.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Predict EMNIST characters with a trained tinynet checkpoint: evaluate a test\n"
                    "set, or read your own images or arrays.")
    p.add_argument("--input", required=True, metavar="PATH",
                   help="data folder, IDX images file, image file, folder of images, or .npy array "
                        "(see input kinds below)")
    p.add_argument("--checkpoint", metavar="FILE", default=None,
                   help="checkpoint to use (default: best.npz of the latest run under --runs-dir)")
    p.add_argument("--runs-dir", metavar="DIR", default="runs",
                   help="where to look for the latest run when --checkpoint is not given "
                        "(default: %(default)s)")
    p.add_argument("--dataset", metavar="NAME", default=None,
                   help="data folder only: which dataset's files to read (default: the only one "
                        "in the folder)")
    p.add_argument("--split", choices=("train", "test"), default=None,
                   help="data folder only: which split to read (default: test)")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K",
                   help="how many of the most probable characters to list, and k of top-k accuracy "
                        "(default: %(default)s)")
    p.add_argument("--output", metavar="FILE", type=predictions_file, default=None,
                   help="also write the predictions to FILE: CSV or JSON, by its extension "
                        "(default: none)")
    p.add_argument("--output-dir", metavar="DIR", default=None,
                   help="data folder / IDX file only: where predictions.csv, confusion.png and "
                        "errors.png go (default: inference-NAME-SPLIT beside the checkpoint)")
    p.add_argument("--save-preprocessed", metavar="DIR", default=None,
                   help="image files only: write each 28x28 input the model saw to DIR as PNG "
                        "(default: none)")
    p.add_argument("--batch-size", type=positive_int, default=1024, metavar="N",
                   help="images per forward pass (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads, each running the network on a slice of every batch (default: all cores)")
    return p


def main(argv=None):
    """``inference.py``'s command line; returns the exit status (see the --help epilog)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    source = Path(args.input)
    try:
        kind = input_kind(source, args.dataset)
        folder_data = kind == "idx" and source.is_dir()
        for option, applies in (("--dataset", folder_data), ("--split", folder_data),
                                ("--output-dir", kind == "idx"),
                                ("--save-preprocessed", kind == "images")):
            if getattr(args, option[2:].replace("-", "_")) is not None and not applies:
                parser.error(f"{option} does not apply to {source}")
        predictor = Predictor.from_checkpoint(args.checkpoint, args.runs_dir, args.batch_size, args.threads)
        if args.top_k > len(predictor.classes):
            parser.error(f"argument --top-k: the checkpoint has only {len(predictor.classes)} classes, "
                         f"got {args.top_k}")
        print(f"checkpoint {predictor.checkpoint} ({len(predictor.classes)} classes)")
        if kind == "idx":
            images_path = (find_idx_images(source, args.dataset, args.split or "test")
                           if folder_data else source)
            done = run_idx(predictor, images_path, args)
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
