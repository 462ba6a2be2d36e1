"""EMNIST datasets: find, check and load IDX files.

A dataset is addressed by a folder and a name. ``data_dir="data"`` and
``name="emnist-balanced"`` mean these files, each plain or gzipped (``.gz``)::

    data/emnist-balanced-train-images-idx3-ubyte[.gz]   magic 2051, N x H x W uint8 (28 x 28)
    data/emnist-balanced-train-labels-idx1-ubyte[.gz]   magic 2049, N uint8
    data/emnist-balanced-test-images-idx3-ubyte[.gz]
    data/emnist-balanced-test-labels-idx1-ubyte[.gz]
    data/emnist-balanced-mapping.txt                    "label ascii-code" per line

This works for every EMNIST split (balanced, bymerge, byclass, letters, digits,
mnist) and for any other single-channel set named and laid out the same way:
MNIST, Fashion-MNIST or KMNIST files renamed ``NAME-SPLIT-...`` with a mapping
file beside them. Images may have any height and width from 1 to
:data:`MAX_SIDE` pixels (every image of a file the same).

Orientation: every EMNIST IDX file (the ``mnist`` split's too) stores each image
transposed; MNIST, Fashion-MNIST and KMNIST store them upright. Every image array
this module returns is upright: ``images[n, row, col]`` with row 0 at the top. How
a set's files store them (:func:`stored_transposed`): as its ``orientation``
says when one is given (``"transposed"`` or ``"upright"``; ``--orientation`` on
the command lines); else upright when its name starts with ``mnist``,
``fashion``, ``kmnist`` or ``qmnist``, and transposed (EMNIST's way, tinynet's
default) for every other name. A model trained on images read the wrong way
round learns sideways characters and reads upright drawings badly: the training
log names the orientation used.

Labels: class ``k`` of a loaded ``Split`` is ``classes[k]``, and labels always run
``0..K-1``. EMNIST Letters numbers its 26 classes from 1 in its files; its labels
are shifted down by the mapping's first label at load. A mapping line may give
several character codes (Letters gives upper and lower case: ``1 65 97``); the
class name is then all of them (``"Aa"``).

Every problem with the files raises ``DataError`` (a ``ValueError``) with a
one-line message naming the file and what is wrong. IDX headers are checked with
``struct`` against the file's size before any array is allocated, and gzip files
are decompressed only as far as the header says they should go, which may be at most
``MAX_GZIP_RATIO`` (64) times the gzip's size (or 64 MB).

Getting the files: ``python3 -m tinynet download --dataset NAME --data-dir DIR``
(``tinynet.datasets.download``, command line in ``tinynet.cli.download``).
"""

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import idx2numpy
import numpy as np

from ..errors import ArgumentError, TinynetError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
MAX_SIDE = 1024  # largest height or width of an IDX image tinynet reads (EMNIST: 28)
ORIENTATIONS = ("transposed", "upright")
UPRIGHT_NAMES = ("mnist", "fashion", "kmnist", "qmnist")  # sets stored upright, by the start of their name
SPLITS = ("train", "test")
MAX_MAPPING_BYTES = 1 << 20
MAX_DEFLATE_RATIO = 1032  # deflate never expands data more than this
# A gzipped IDX file may inflate to MAX_GZIP_RATIO times its size (EMNIST's images: 3-4 times, its
# labels 1.4), or to FREE_INFLATE bytes whatever its size; beyond, it is refused from its header,
# before inflating: 1 MB of gzipped zeros can otherwise claim 1 GB of images
MAX_GZIP_RATIO = 64
FREE_INFLATE = 64 << 20
_CHUNK = 1 << 20


class DataError(TinynetError, ValueError):
    """A dataset file is missing or not what it should be (message names the file)."""


@dataclass(frozen=True, eq=False)  # arrays: compare fields yourself
class Split:
    """One split of a dataset, in memory.

    images:  uint8 (N, H, W), upright (EMNIST: 28 x 28)
    labels:  int64 (N,), in 0..len(classes)-1
    classes: the character(s) of each label, from the mapping file
    source:  where it came from (path of the images file)
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str


def idx_filenames(name, split):
    """Plain (not gzipped) file names of one split: {'images', 'labels', 'mapping'}."""
    return {
        "images": f"{name}-{split}-images-idx3-ubyte",
        "labels": f"{name}-{split}-labels-idx1-ubyte",
        "mapping": f"{name}-mapping.txt",
    }


def _how_to_get(data_dir, name):
    """The commands that put dataset ``name`` into ``data_dir``."""
    base = f"python3 -m tinynet download --dataset {name} --data-dir {data_dir}"
    return (f"get them with `{base}` (downloads the NIST EMNIST archive) or "
            f"`{base} --from PATH` (PATH: a gzip.zip or a folder you already have)")


def dataset_paths(data_dir, name, split):
    """Paths of one split's files: {'images': Path, 'labels': Path, 'mapping': Path}.

    An IDX file may be plain or ``.gz`` (the ``.gz`` is used when both exist).
    Raises DataError listing every name looked for when any is missing.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    found, missing = {}, []
    for kind, filename in idx_filenames(name, split).items():
        candidates = [filename] if kind == "mapping" else [filename + ".gz", filename]
        path = next((data_dir / c for c in candidates if (data_dir / c).exists()), None)
        if path is None:
            missing.append(" or ".join(candidates))
        found[kind] = path
    if missing:
        state = ("" if data_dir.is_dir() else " (not a folder)" if data_dir.exists()
                 else " (no such folder)")
        raise DataError(f"{data_dir}/{state}: missing {'; '.join(missing)}; "
                        f"{_how_to_get(data_dir, name)}")
    return found


def stored_transposed(name, orientation=None):
    """Whether dataset ``name``'s IDX files store images transposed (see the module docstring):
    ``orientation`` (``"transposed"`` or ``"upright"``) when given, else by the name."""
    if orientation is not None:
        if orientation not in ORIENTATIONS:
            raise ArgumentError(f"orientation must be one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
        return orientation == "transposed"
    return not name.lower().startswith(UPRIGHT_NAMES)


def read_idx_images(path, transposed=True):
    """Images of an IDX file (plain or .gz) as uint8 (N, H, W), upright: transposed back when the
    file stores them ``transposed`` (EMNIST's files do). Height and width 1 to :data:`MAX_SIDE`,
    checked from the header, before the images are read."""
    path = Path(path)
    stored = _read_idx(path, IMAGES_MAGIC, _check_image_size)
    return np.ascontiguousarray(stored.transpose(0, 2, 1)) if transposed else stored


def _check_image_size(path, dims):
    if not all(1 <= side <= MAX_SIDE for side in dims[1:]):
        raise DataError(f"{path}: image size {dims[1]}x{dims[2]} is not one tinynet reads "
                        f"(height and width from 1 to {MAX_SIDE} pixels)")


def read_idx_labels(path):
    """Labels of an IDX file (plain or .gz) as int64 (N,), values as stored."""
    return _read_idx(Path(path), LABELS_MAGIC).astype(np.int64)


def write_idx(path, array):
    """Write a uint8 array as an IDX file, gzipped (reproducibly: no timestamp) when ``path`` ends
    with ``.gz``.

    The array is written as given, with no transposition: to store upright images the EMNIST way,
    pass ``images.transpose(0, 2, 1)``. The magic number is 0x0800 + ndim.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 255:
        raise ArgumentError(f"write_idx takes uint8 arrays of 1..255 dimensions, "
                         f"got {array.dtype} with {array.ndim}")
    header = struct.pack(f">HBB{array.ndim}I", 0, 0x08, array.ndim, *array.shape)
    data = header + np.ascontiguousarray(array).tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    Path(path).write_bytes(data)


def read_mapping(path):
    """Characters by label from a mapping file (``label code [code ...]`` per line).

    Entry k of the result belongs to the k-th label counting from the file's
    first label (0 for most splits, 1 for EMNIST Letters).
    """
    return parse_mapping(Path(path))[1]


def load_split(data_dir, name, split, orientation=None):
    """Load one split ('train' or 'test') of dataset ``name`` from ``data_dir``, its images upright
    (``orientation``: how the files store them, see :func:`stored_transposed`).

    Checks that images and labels have the same count and that every label is
    in the mapping's range. Labels are shifted to start at 0 (see module doc).
    """
    paths = dataset_paths(data_dir, name, split)
    first, classes = parse_mapping(paths["mapping"])
    images = read_idx_images(paths["images"], stored_transposed(name, orientation))
    labels = read_labels_of(paths["labels"], paths["images"], len(images), first, classes, paths["mapping"])
    return Split(images, labels, classes, str(paths["images"]))


def read_labels_of(labels_path, images_path, count, first=0, classes=None, mapping_path=None):
    """The labels of the ``count`` images of ``images_path``, from the IDX file ``labels_path``,
    shifted to start at 0 (``first`` is the mapping's first label); DataError when the counts
    differ or, given the mapping's ``classes``, when a label is outside its range."""
    labels = read_idx_labels(labels_path)
    if len(labels) != count:
        raise DataError(f"{labels_path}: count mismatch: {len(labels)} labels but "
                        f"{images_path} holds {count} images")
    if classes is not None and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < first or high >= first + len(classes):
            bad = low if low < first else high
            raise DataError(f"{labels_path}: label {bad} out of range: {mapping_path} "
                            f"maps labels {first}..{first + len(classes) - 1}")
    return labels - first


def train_val_split(labels, val_fraction, seed):
    """Stratified, deterministic split of a training set into train and validation.

    labels: int (N,). From each class, round(val_fraction * class count) indices,
    chosen at random with ``np.random.default_rng(seed)``, go to validation.
    Returns (train_idx, val_idx): sorted int64 index arrays, disjoint, covering 0..N-1.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ArgumentError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # by class, random within class
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    rank = np.arange(len(order)) - np.repeat(starts, counts)  # position within its class
    n_val = np.rint(val_fraction * counts).astype(np.int64)
    is_val = rank < np.repeat(n_val, counts)
    return np.sort(order[~is_val]), np.sort(order[is_val])


def to_float(images_uint8):
    """uint8 (N, H, W) -> float32 (N, 1, H, W) scaled to [0, 1]."""
    return np.divide(images_uint8[:, None], np.float32(255), dtype=np.float32)


def _read_idx(path, magic, check_dims=None):
    """Array of an unsigned-byte IDX file whose magic must be ``magic``.

    The header is checked first (also by ``check_dims(path, dims)`` when given); the file must
    then hold exactly the bytes the header announces (gzip: once decompressed), no fewer and no more.
    """
    ndim = magic & 0xFF
    try:
        with open(path, "rb") as f:
            if path.name.endswith(".gz"):
                return _read_idx_gzip(f, path, magic, ndim, check_dims)
            return _read_idx_plain(f, path, magic, ndim, check_dims)
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an IDX file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None


def _read_idx_plain(f, path, magic, ndim, check_dims=None):
    size = os.fstat(f.fileno()).st_size
    dims = _check_header(path, f.read(4 + 4 * ndim), magic, ndim, check_dims)
    expected = 4 + 4 * ndim + math.prod(dims)
    if size < expected:
        raise DataError(f"{path}: truncated: {_describe(dims)} ({expected} bytes) but the "
                        f"file holds {size} bytes")
    if size > expected:
        raise DataError(f"{path}: trailing data: {_describe(dims)} ({expected} bytes) but "
                        f"the file holds {size} bytes")
    f.seek(0)
    return idx2numpy.convert_from_file(f)


def _read_idx_gzip(f, path, magic, ndim, check_dims=None):
    compressed = os.fstat(f.fileno()).st_size
    if compressed == 0:
        raise DataError(f"{path}: empty file")
    stream = _GunzipReader(f, path)
    data = stream.read(4 + 4 * ndim)
    if len(data) < 4 + 4 * ndim:
        stream.check_complete()
    dims = _check_header(path, bytes(data), magic, ndim, check_dims)
    expected = 4 + 4 * ndim + math.prod(dims)
    if expected > compressed * MAX_DEFLATE_RATIO:
        raise DataError(f"{path}: truncated: {_describe(dims)} ({expected} bytes) but "
                        f"{compressed} gzipped bytes cannot hold that many")
    if expected > max(FREE_INFLATE, compressed * MAX_GZIP_RATIO):
        raise DataError(f"{path}: refused: {_describe(dims)} ({expected} bytes) from {compressed} "
                        f"gzipped bytes, more than {MAX_GZIP_RATIO} times as many (real images "
                        f"compress 3-4 times; a gzip bomb, or store the file uncompressed)")
    data += stream.read(expected - len(data))
    if len(data) < expected:
        stream.check_complete()
        raise DataError(f"{path}: truncated: {_describe(dims)} ({expected} bytes) but "
                        f"the gzip stream holds {len(data)} bytes")
    if stream.read(1):
        raise DataError(f"{path}: trailing data: {_describe(dims)} ({expected} bytes) but "
                        f"the gzip stream holds more")
    stream.check_complete()
    return idx2numpy.convert_from_string(bytes(data))


def _check_header(path, header, magic, ndim, check_dims=None):
    """Dimensions from an IDX header; DataError unless it has the expected magic (and passes
    ``check_dims(path, dims)``)."""
    if not header:
        raise DataError(f"{path}: empty file")
    if len(header) < 4:
        raise DataError(f"{path}: truncated: {len(header)} bytes, too short for an IDX header")
    (found,) = struct.unpack(">I", header[:4])
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataError(f"{path}: wrong magic number {found} (0x{found:08x}), expected "
                        f"{magic} for an IDX {kind} file")
    if len(header) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated: {len(header)} bytes, too short for the "
                        f"{4 + 4 * ndim}-byte IDX header")
    dims = struct.unpack(f">{ndim}I", header[4:])
    if math.prod(max(d, 1) for d in dims) > np.iinfo(np.intp).max:  # even with 0 images NumPy refuses
        raise DataError(f"{path}: {_describe(dims)}, a shape too large for any array")
    if check_dims is not None:
        check_dims(path, dims)
    return dims


def _describe(dims):
    if len(dims) == 3:
        return f"header says {dims[0]} images of {dims[1]}x{dims[2]}"
    return f"header says {dims[0]} labels"


class _GunzipReader:
    """Decompresses a gzip file only as far as asked (never more than ``n`` bytes a read)."""

    def __init__(self, f, path):
        self.f, self.path = f, path
        self.inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def read(self, n):
        """Up to ``n`` decompressed bytes; fewer only where the gzip stream ends."""
        out = bytearray()
        while len(out) < n and not self.inflater.eof:
            chunk = self.inflater.unconsumed_tail or self.f.read(_CHUNK)
            try:
                got = self.inflater.decompress(chunk, n - len(out))
            except zlib.error as e:
                raise DataError(f"{self.path}: corrupt gzip: {e}") from None
            if not chunk and not got:
                break
            out += got
        return out

    def check_complete(self):
        """DataError unless the gzip stream has ended, intact, with nothing after it."""
        if not self.inflater.eof:
            raise DataError(f"{self.path}: corrupt gzip: compressed stream is truncated "
                            f"(no end-of-stream marker)")
        if self.inflater.unused_data or self.f.read(1):
            raise DataError(f"{self.path}: corrupt gzip: unexpected bytes after the end "
                            f"of the gzip stream")


def parse_mapping(path):
    """(first label, characters by label) of a mapping file; labels must be consecutive."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MAPPING_BYTES + 1)
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a mapping file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if not raw:
        raise DataError(f"{path}: empty file")
    if len(raw) > MAX_MAPPING_BYTES:
        raise DataError(f"{path}: larger than {MAX_MAPPING_BYTES} bytes, not a mapping file")
    try:
        lines = raw.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a mapping file: holds non-ASCII bytes") from None
    labels, classes = [], []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [int(v) for v in fields]
        except ValueError:
            values = []
        if len(values) < 2 or not all(0 <= v <= 0x10FFFF for v in values):
            raise DataError(f"{path}: line {number}: expected `label ascii-code`, "
                            f"got {line.strip()[:40]!r}")
        labels.append(values[0])
        classes.append("".join(chr(c) for c in values[1:]))
    if not labels:
        raise DataError(f"{path}: no `label ascii-code` lines")
    if labels != list(range(labels[0], labels[0] + len(labels))):
        raise DataError(f"{path}: labels must be consecutive and increasing, got "
                        f"{labels[:3]}...")
    return labels[0], tuple(classes)
