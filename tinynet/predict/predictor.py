"""Inference with a trained checkpoint: test sets, users' own images and arrays.

From Python::

    from tinynet.predict.predictor import Predictor
    predictor = Predictor.from_checkpoint("runs/my-run/best.npz")  # None: the latest run's best,
                                                                   # else the bundled model
    predictor.predict_chars(images)        # images: uint8 (N, 28, 28) or (28, 28) -> N characters
                                           # (any other size: the model's input, predictor.image_shape)
    labels, probs = predictor.top_k(images, 5)                     # (N, 5) each, best first
    for result in predictor.predict_files(["a.png", "b.jpg"]):     # errors reported, not raised
        print(result.path, result.error or result.top_k)

Image arrays, everywhere: upright, light ink (high values) on a dark (0) background, as the training
loader returns EMNIST; either uint8 in 0..255, or float in [0, 1] (scaled by 255 and rounded to
uint8); of the size the model takes (28 x 28 for the LeNet trained on EMNIST: whatever its data had,
for any other network). A single (H, W) image is a batch of one. Image files instead go through
``tinynet.predict.preprocess`` first, which accepts any size, framing and either polarity, and gives
the model's size.

The command line over it, ``python3 inference.py`` / ``tinynet-infer``, is ``tinynet.cli.infer``.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..datasets.idx import parse_mapping, read_idx_images, read_labels_of, stored_transposed
from ..errors import ArgumentError, TinynetError
from ..files.checkpoint import load_checkpoint
from ..files.npyfile import NpyHeaderError, read_npy_data, read_npy_header
from ..nn.model import input_shape
from ..nn.parallel import DataParallel
from .metrics import predict_proba as model_proba
from .metrics import top_k_indices
from .preprocess import ImageError, preprocess_file
from .tta import TTA

IDX_NAME = re.compile(r"(?P<name>.+)-(?P<split>train|test)-images-idx3-ubyte(?:\.gz)?")


class InputError(TinynetError, ValueError):
    """An input that cannot be used (or does not fit the checkpoint); the one-line message names
    the file and the fault."""


def as_images(array, source="images", size=(28, 28)):
    """uint8 (N, H, W) or (H, W), or float in [0, 1] of those shapes -> uint8 (N, H, W), where
    ``size`` is (H, W) (the model's input size).

    Floats are scaled by 255 and rounded. Raises :class:`InputError` naming ``source`` for any
    other shape or dtype, or for float values that are not finite or outside [0, 1].
    """
    a = np.asarray(array)
    size = tuple(size)
    if a.shape == size:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != size:
        h, w = size
        raise InputError(f"{source}: shape {a.shape}, expected (N, {h}, {w}) or ({h}, {w})"
                         + ("" if size == (28, 28) else " (the model's input size)"))
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


def load_npy(path, size=(28, 28)):
    """A ``.npy`` file -> uint8 (N, H, W) via :func:`as_images` (``size``: (H, W)); never unpickles,
    and checks the header's shape against the file's size before NumPy allocates the array
    (``tinynet.files.npyfile``)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype, nbytes = read_npy_header(f, os.fstat(f.fileno()).st_size)
            if dtype.hasobject:
                raise InputError(f"{path}: holds pickled Python objects, refused (save a plain uint8 "
                                 f"or float array)")
            array = read_npy_data(f, shape, fortran, dtype, nbytes)
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    except NpyHeaderError as e:
        raise InputError(f"{path}: {e}") from None
    return as_images(array, path, size)


# A LeNet trained on the resplit's train split, shipped inside the package (README: "The bundled
# model"; replaced only by the maintainers' ``bench/refresh_bundled.py``): what inference uses when no
# run is trained.
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / "lenet-emnist47.npz"


def latest_checkpoint(runs_dir="runs"):
    """``best.npz`` (else ``last.npz``) of the run folder under ``runs_dir`` whose checkpoint was
    written last; None when there is none."""
    runs_dir = Path(runs_dir)
    found = [p for run in (sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []) if run.is_dir()
             for p in (run / "best.npz", run / "last.npz") if p.is_file()]
    if not found:
        return None
    run = max(found, key=lambda p: p.stat().st_mtime).parent
    return run / "best.npz" if (run / "best.npz").is_file() else run / "last.npz"


def default_checkpoint(runs_dir="runs"):
    """The checkpoint to use when none is named: ``(path, where it comes from)``, the latest run's
    under ``runs_dir`` if there is one, else :data:`BUNDLED_MODEL`."""
    latest = latest_checkpoint(runs_dir)
    if latest is not None:
        return latest, f"the latest run under {runs_dir}"
    return BUNDLED_MODEL, "the model bundled with tinynet"


@dataclass
class FileResult:
    """The prediction for one image file; on failure ``error`` holds the one-line reason and
    ``image`` and ``top_k`` are empty."""

    path: Path
    image: np.ndarray | None = None  # uint8 (H, W): the preprocessed input the model saw
    top_k: list[tuple[str, float]] = field(default_factory=list)  # (character, probability), best first
    error: str | None = None

    @property
    def char(self):
        """The predicted character (None on failure)."""
        return self.top_k[0][0] if self.top_k else None


def load_model(path):
    """``(model, metadata)`` of a model file: a tinynet checkpoint (``load_checkpoint``), or an
    ONNX model when its name ends in ``.onnx`` (``tinynet.onnx.load_onnx``; needs
    ``tinynet[onnx]``). Raises ``CheckpointError`` for a file that is neither intact."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from ..onnx.importer import load_onnx  # only here: the onnx package is optional
        return load_onnx(path)
    model, meta, _, _ = load_checkpoint(path)
    return model, meta


class Predictor:
    """A trained model and its classes; every method takes images as :func:`as_images` does and
    predicts them in batches of ``batch_size``, each batch split over ``threads`` threads (None:
    every core; see ``tinynet/nn/parallel.py``). With ``tta``, every probability is the average over
    the image and slightly rotated copies of it (``tinynet.predict.tta``). ``image_shape``: the
    (H, W) of the images the model takes (``tinynet.nn.model.input_shape``).

    It owns a thread pool: ``close()`` it when done, or use it as a context manager
    (``with Predictor.from_checkpoint(path) as predictor: ...``). Several threads may share one:
    their batches take turns on the model (``DataParallel``'s lock), and every call answers bitwise
    as it would made alone (``model`` itself, used directly, serves one thread at a time)."""

    def __init__(self, model, classes, checkpoint=None, batch_size=1024, threads=None, tta=False):
        self.model, self.classes = model, tuple(classes)
        channels, *self.image_shape = input_shape(model)
        self.image_shape = tuple(self.image_shape)
        if channels != 1:
            raise InputError(f"{checkpoint or 'the model'}: takes images of {channels} channels; tinynet "
                             f"predicts single-channel images")
        self.checkpoint, self.batch_size = checkpoint, batch_size
        self.parallel = DataParallel(model, threads)
        self.net = TTA(self.parallel) if tta else self.parallel

    def close(self):
        """Shut down the prediction threads (the Predictor cannot predict afterwards)."""
        self.parallel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @classmethod
    def from_checkpoint(cls, path=None, runs_dir="runs", batch_size=1024, threads=None, tta=False):
        """Load ``path`` (None: :func:`default_checkpoint` of ``runs_dir``): a tinynet checkpoint,
        or an ONNX model (a ``.onnx`` file, read by ``tinynet.onnx.load_onnx``; needs
        ``tinynet[onnx]``). Raises ``CheckpointError`` for a file that is neither intact."""
        path = Path(path) if path is not None else default_checkpoint(runs_dir)[0]
        model, meta = load_model(path)
        return cls(model, meta["classes"], path, batch_size, threads, tta)

    def predict_proba(self, images):
        """Class probabilities float32 (N, K)."""
        return model_proba(self.net, as_images(images, size=self.image_shape), self.batch_size)

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
            raise ArgumentError(f"k must be in 1..{len(self.classes)}, got {k}")
        proba = self.predict_proba(images)
        indices = top_k_indices(proba, k)
        return indices, np.take_along_axis(proba, indices, axis=1)

    def predict_files(self, paths, k=5):
        """Preprocess image files (``tinynet.predict.preprocess``) and predict them in one batch: a
        :class:`FileResult` per path, in order. A file that cannot be read or holds no ink gets its
        ``error`` set instead of raising."""
        results = []
        for path in map(Path, paths):
            try:
                results.append(FileResult(path, image=preprocess_file(path, self.image_shape)))
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

    images: np.ndarray  # uint8 (N, H, W), upright
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


def load_idx_input(images_path, orientation=None):
    """Read an IDX images file and, when present beside it, its labels file (``images-idx3`` ->
    ``labels-idx1`` in the name) and mapping (``NAME-mapping.txt`` for ``NAME-SPLIT-images-...``).
    Labels are shifted to start at 0 as the mapping says; the images read upright, transposed or not
    as ``orientation`` or the data set's name says (``tinynet.datasets.idx``)."""
    images_path = Path(images_path)
    stem = images_path.name.removesuffix(".gz")
    labels_name = stem.replace("images-idx3", "labels-idx1")
    labels_path = next((p for p in (images_path.with_name(labels_name + ".gz"),
                                    images_path.with_name(labels_name)) if p.is_file()), None)
    m = IDX_NAME.fullmatch(images_path.name)
    mapping_path = images_path.with_name(f"{m['name']}-mapping.txt") if m else None
    if mapping_path is not None and not mapping_path.is_file():
        mapping_path = None
    images = read_idx_images(images_path, stored_transposed(m["name"] if m else stem, orientation))
    first, classes = parse_mapping(mapping_path) if mapping_path else (0, None)
    labels = read_labels_of(labels_path, images_path, len(images), first) if labels_path else None
    return IdxInput(images, labels, classes, stem.removesuffix("-images-idx3-ubyte"),
                    labels_path, mapping_path)


def check_fits(data, predictor):
    """InputError unless the images are of the size the model takes, the mapping's characters are
    the checkpoint's classes and every label is one of them."""
    if data.images.shape[1:] != predictor.image_shape:
        raise InputError(f"{predictor.checkpoint}: checkpoint does not match the data: its network takes "
                         f"{'x'.join(map(str, predictor.image_shape))} images, {data.name}'s are "
                         f"{'x'.join(map(str, data.images.shape[1:]))}")
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
