"""Checkpoints: one ``.npz`` file, written atomically, read without ever unpickling.

Layout of a checkpoint (any NumPy, or any zip + ``.npy`` reader, can read it):

- ``<layer>.<param>``: float32 parameter arrays, e.g. ``conv1.W`` (20, 1, 5, 5) - see the README's
  table for every name and shape;
- ``optimizer.<layer>.<param>``: the optimiser's momentum buffers (absent for plain SGD);
- ``extra.<name>``: other arrays a run needs to resume mid-epoch (the epoch's shuffled order);
- ``metadata``: a 0-d unicode array holding JSON: ``format``, ``format_version``,
  ``tinynet_version``, ``architecture``, ``classes``, ``input``, and whatever the trainer adds
  (recipe, epoch, step, metrics, random-generator states).

Writing goes to a temporary file in the same folder, which is flushed, fsync'ed and then renamed
over the final name: a crash leaves either the old checkpoint or the new one, never half of one.
Reading checks every array's header (dtype and shape) against the architecture *before* reading its
data, and never allows pickled objects, so a corrupt or hostile file cannot allocate without bound
or run code.
"""

import json
import lzma
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import TinynetError
from ..nn.model import build_model
from .atomic import atomic_write
from .npyfile import NpyHeaderError, read_npy_data, read_npy_header

FORMAT = "tinynet-checkpoint"
FORMAT_VERSION = 1
INPUT = {"shape": [1, 28, 28], "dtype": "float32", "scaling": "uint8 pixel / 255, in [0, 1]",
         "polarity": "light ink (high values) on a dark background (0)",
         "orientation": "upright (EMNIST's stored images transposed once at load)"}
MAX_METADATA_CHARS = 10_000_000
MAX_CLASSES = 10_000  # bounds the last layer a checkpoint can make us allocate (500 x 10,000 floats)
MAX_EXTRA_BYTES = 1 << 28  # all ``extra.*`` arrays together (an epoch's order of 33 million images)
# What a damaged zip member or .npy header can raise while it is read (zlib/lzma: corrupt compressed
# members; TokenError/TypeError: header text that is not a Python literal).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError,
                TypeError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError, struct.error,
                tokenize.TokenError)


class CheckpointError(TinynetError, ValueError):
    """A checkpoint that cannot be read or does not fit; the message names the file and the fault."""


def save_checkpoint(path, model, architecture, classes, metadata=None, optimizer=None, extra=None,
                    compress=False):
    """Write ``model``'s parameters and metadata to ``path`` atomically.

    ``optimizer``: arrays by parameter name (momentum buffers); ``extra``: other named arrays;
    ``compress``: deflate the zip members (smaller, slower to write; read the same way).

    Refuses (:class:`CheckpointError`, ``path`` untouched) weights or momentum holding NaN or
    infinity: :func:`load_checkpoint` could not read them back, and a diverged model must not
    replace a good checkpoint.
    """
    path = Path(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "tinynet_version": __version__,
            "architecture": architecture, "classes": list(classes), "input": INPUT, **(metadata or {})}
    arrays = dict(model.state_dict())
    arrays.update({f"optimizer.{k}": v for k, v in (optimizer or {}).items()})
    bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise CheckpointError(f"{path}: not saved: {', '.join(bad)} hold NaN or infinite values (a "
                              f"diverged model); the file there, if any, is unchanged")
    arrays.update({f"extra.{k}": v for k, v in (extra or {}).items()})
    arrays["metadata"] = np.array(json.dumps(meta))
    with atomic_write(path) as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)


def export_checkpoint(source, target):
    """Write an inference-only copy of checkpoint ``source`` to ``target`` (atomically): the
    weights, architecture and classes, the recipe and a short training record; no optimiser state,
    no resume data or random-generator states; compressed (a LeNet for 47 classes: ~1.7 MB).
    Returns its size in bytes; ``CheckpointError`` for a source that is not an intact checkpoint."""
    model, meta, _, _ = load_checkpoint(source)
    training = meta.get("training") or {}
    record = {"recipe": meta.get("recipe"), "exported_from": str(source),
              "training": {k: training[k] for k in ("epoch", "step", "best_val_accuracy") if k in training}}
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target, model, meta["architecture"], meta["classes"], record, compress=True)
    return Path(target).stat().st_size


def _read_member(zf, member, path, expected_shape=None, kinds="f", max_bytes=None):
    """Read one ``.npy`` member after checking its header (``tinynet.files.npyfile``) and its size
    against ``max_bytes``; never unpickles."""
    name = member[:-4]
    with zf.open(member) as f:
        try:
            shape, fortran, dtype, nbytes = read_npy_header(f)
            if dtype.hasobject or dtype.kind not in kinds:
                raise CheckpointError(f"{path}: array {name!r} has dtype {dtype}, expected kind {kinds!r}")
            if expected_shape is not None and shape != tuple(expected_shape):
                raise CheckpointError(f"{path}: array {name!r} has shape {shape}, "
                                      f"the architecture needs {tuple(expected_shape)}")
            if max_bytes is not None and nbytes > max_bytes:
                raise CheckpointError(f"{path}: array {name!r} of shape {shape} would take "
                                      f"{nbytes} bytes, more than the {max_bytes} allowed")
            return read_npy_data(f, shape, fortran, dtype, nbytes)
        except NpyHeaderError as e:
            raise CheckpointError(f"{path}: array {name!r}: {e}") from None


def load_checkpoint(path):
    """Read a checkpoint: returns ``(model, metadata, optimizer, extra)``.

    ``model`` is the architecture rebuilt with the stored weights; ``optimizer`` and ``extra`` are
    dicts of arrays (empty when absent). Raises :class:`CheckpointError` naming the file and the
    fault for anything that is not an intact tinynet checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        with zipfile.ZipFile(path) as zf:
            members = {m for m in zf.namelist()}
            if "metadata.npy" not in members:
                raise CheckpointError(f"{path}: not a tinynet checkpoint (no metadata entry)")
            meta_info = zf.getinfo("metadata.npy")
            if meta_info.file_size > 4 * MAX_METADATA_CHARS + 1024:
                raise CheckpointError(f"{path}: metadata entry is implausibly large")
            meta = _parse_metadata(_read_member(zf, "metadata.npy", path, (), kinds="U"), path)
            try:
                model = build_model(meta["architecture"])
            except (KeyError, TypeError, ValueError) as e:
                raise CheckpointError(f"{path}: unusable architecture {meta.get('architecture')!r} ({e})")
            expected = {name: p.shape for name, p, _ in model.parameters()}
            missing = sorted(f"{n}.npy" for n in expected if f"{n}.npy" not in members)
            if missing:
                raise CheckpointError(f"{path}: missing parameter arrays {', '.join(m[:-4] for m in missing)}")
            state = {n: _read_member(zf, f"{n}.npy", path, shape) for n, shape in expected.items()}
            optimizer = {n: _read_member(zf, f"optimizer.{n}.npy", path, expected[n])
                         for n in expected if f"optimizer.{n}.npy" in members}
            extra, budget = {}, MAX_EXTRA_BYTES
            for m in sorted(members):
                if m.startswith("extra.") and m.endswith(".npy"):
                    array = _read_member(zf, m, path, kinds="iuf", max_bytes=budget)
                    extra[m[len("extra."):-4]] = array
                    budget -= array.nbytes
    except CheckpointError:
        raise
    except _READ_ERRORS as e:
        message = " ".join(str(e).split())  # some (numpy's header checks) span several lines
        raise CheckpointError(f"{path}: not a readable tinynet checkpoint ({type(e).__name__}: {message})") from None
    for name, array in state.items():
        if not np.all(np.isfinite(array)):
            raise CheckpointError(f"{path}: parameter {name!r} holds NaN or infinite values")
    model.load_state_dict(state)
    return model, meta, optimizer, extra


def _parse_metadata(array, path):
    """Decode and validate the JSON metadata entry."""
    try:
        meta = json.loads(str(array))
    except ValueError as e:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tinynet checkpoint (metadata format is not {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('format_version')!r} "
                              f"is not supported (this tinynet reads version {FORMAT_VERSION})")
    classes = meta.get("classes")
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or not isinstance(classes, list) or len(classes) != arch.get("num_classes"):
        raise CheckpointError(f"{path}: metadata's classes do not match its architecture")
    if type(arch["num_classes"]) is not int or not 1 <= arch["num_classes"] <= MAX_CLASSES:
        raise CheckpointError(f"{path}: architecture has {arch['num_classes']!r} classes, expected an "
                              f"integer from 1 to {MAX_CLASSES}")
    if not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{path}: metadata's classes must be strings")
    try:
        "".join(classes).encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"{path}: metadata's classes hold lone surrogates (not printable text)") from None
    return meta
