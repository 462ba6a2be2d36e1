"""Checkpoints: one ``.npz`` file, written atomically, read without ever unpickling.

Layout of a checkpoint (any NumPy, or any zip + ``.npy`` reader, can read it):

- ``<layer>.<param>``: float32 parameter arrays, e.g. ``conv1.W`` (20, 1, 5, 5) - see the README's
  table for every name and shape;
- ``<layer>.<state>``: float32 arrays a layer keeps that are not parameters, e.g. batch
  normalisation's ``bn1.running_mean`` and ``bn1.running_var`` (C,): read and checked like the
  parameters (a network without such layers has none, so every older checkpoint reads as before);
- ``optimizer.<layer>.<param>``: the optimiser's momentum buffers (absent for plain SGD);
- ``extra.<name>``: other arrays a run needs to resume mid-epoch (the epoch's shuffled order);
- ``metadata``: a 0-d unicode array holding JSON: ``format``, ``format_version``,
  ``tinynet_version``, ``architecture`` (the network's description, ``tinynet.nn.describe``: its
  layers, or a preset such as ``{"name": "lenet", "num_classes": 47, "dropout": 0.0}``), ``classes``,
  ``input``, and whatever the trainer adds (recipe, epoch, step, metrics, random-generator states).

Writing goes to a temporary file in the same folder, which is flushed, fsync'ed and then renamed
over the final name: a crash leaves either the old checkpoint or the new one, never half of one.
Reading checks the architecture (``tinynet.nn.describe.check``: known layers, shapes that chain,
bounded sizes) before building the model, then every array's header (dtype and shape) against the
model *before* reading its data, and never allows pickled objects, so a corrupt or hostile file
cannot allocate without bound or run code. Any network of tinynet's layers saves and loads; every
checkpoint written so far (all of them LeNets, in the preset form) loads as it always has.
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
from ..errors import ArgumentError, TinynetError
from ..nn.describe import check, describe
from ..nn.model import build_model, expand
from .atomic import atomic_write
from .npyfile import NpyHeaderError, read_npy_data, read_npy_header

FORMAT = "tinynet-checkpoint"
FORMAT_VERSION = 1
INPUT = {"shape": [1, 28, 28], "dtype": "float32", "scaling": "uint8 pixel / 255, in [0, 1]",
         "polarity": "light ink (high values) on a dark background (0)",
         "orientation": "upright (EMNIST's stored images transposed once at load)"}
MAX_METADATA_CHARS = 10_000_000
MAX_CLASSES = 10_000  # classes a checkpoint may have (its layers are bounded by tinynet.nn.describe)
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

    ``architecture``: the model's description (layers or preset, ``tinynet.nn.describe``), or None
    to write ``describe(model)``; its logits must be one per class of ``classes``.
    ``optimizer``: arrays by parameter name (momentum buffers); ``extra``: other named arrays;
    ``compress``: deflate the zip members (smaller, slower to write; read the same way).

    Refuses (:class:`CheckpointError`, ``path`` untouched) weights or momentum holding NaN or
    infinity: :func:`load_checkpoint` could not read them back, and a diverged model must not
    replace a good checkpoint.
    """
    path = Path(path)
    if architecture is None:
        architecture = describe(model)
    plan = check(expand(architecture))
    if plan.shapes[-1] != (len(classes),):
        raise ArgumentError(f"the architecture gives {plan.shapes[-1][0]} logits for {len(classes)} classes")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "tinynet_version": __version__,
            "architecture": architecture, "classes": list(classes),
            "input": {**INPUT, "shape": list(plan.shapes[0])}, **(metadata or {})}
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
            model = _model_of(meta, path)
            expected = {name: a.shape for name, a in model.state_dict().items()}  # parameters and state
            trained = {name: p.shape for name, p, _ in model.parameters()}
            missing = sorted(f"{n}.npy" for n in expected if f"{n}.npy" not in members)
            if missing:
                what = "parameter arrays" if all(m[:-4] in trained for m in missing) else "arrays"
                raise CheckpointError(f"{path}: missing {what} {', '.join(m[:-4] for m in missing)}")
            state = {n: _read_member(zf, f"{n}.npy", path, shape) for n, shape in expected.items()}
            optimizer = {n: _read_member(zf, f"optimizer.{n}.npy", path, trained[n])
                         for n in trained if f"optimizer.{n}.npy" in members}
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
            what = "parameter" if name in trained else "array"
            raise CheckpointError(f"{path}: {what} {name!r} holds NaN or infinite values")
    model.load_state_dict(state)
    for layer in model.layers:
        fault = layer.state_fault() if hasattr(layer, "state_fault") else None
        if fault:
            raise CheckpointError(f"{path}: layer {layer.name!r}: {fault}")
    return model, meta, optimizer, extra


def _model_of(meta, path):
    """The model the metadata's architecture describes (freshly initialised), after checking that
    it can be built within tinynet's bounds and gives one logit per class."""
    try:
        plan = check(expand(meta["architecture"]))
    except ValueError as e:  # tinynet.nn.describe.DescriptionError: names the layer and the fault
        raise CheckpointError(f"{path}: unusable architecture: {e}") from None
    logits, classes = plan.shapes[-1][0], len(meta["classes"])
    if logits != classes:
        raise CheckpointError(f"{path}: metadata's classes do not match its architecture (the network "
                              f"gives {logits} logits, the metadata has {classes} classes)")
    return build_model(plan.description)


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
    if not isinstance(meta.get("architecture"), dict) or not isinstance(classes, list):
        raise CheckpointError(f"{path}: metadata's classes do not match its architecture")
    if not 1 <= len(classes) <= MAX_CLASSES:
        raise CheckpointError(f"{path}: metadata has {len(classes)} classes, expected from 1 to {MAX_CLASSES}")
    if not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{path}: metadata's classes must be strings")
    try:
        "".join(classes).encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"{path}: metadata's classes hold lone surrogates (not printable text)") from None
    return meta
