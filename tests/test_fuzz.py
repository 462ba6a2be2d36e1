"""The fuzzer: hypothesis-generated broken IDX files, mapping files, images, checkpoints and .npy
arrays against tinynet's readers and command lines.

Every case must load, or raise the project's own error (DataError, ImageError, CheckpointError,
InputError) with a one-line message naming the file; a command line must exit 0, or 1 with
``error: `` lines naming the file and no traceback. Never another exception, a warning Python would
print, more than a little memory (tracemalloc sees NumPy's allocations, even of pages never
touched), or an unpickled object (a pickled :class:`filebytes.Marker` would create a file).

The default suite runs a few cases of each property, the same ones each time (derandomized). The long
run: ``TINYNET_FUZZ_CASES=1000 python3 -m pytest tests/test_fuzz.py`` -- that many cases of each
property, random, a failing case shrunk to a small one and replayed first on the next run
(hypothesis's example database); add ``--hypothesis-seed=N`` to repeat a run and
``--hypothesis-show-statistics`` for the outcomes.
"""

import contextlib
import gzip
import io
import itertools
import json
import os
import struct
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from filebytes import (QUIET_WARNINGS, Marker, bomb_zip, build_zip, character, npy_bytes, npy_raw,
                       pickled_npy, png_with_chunk, write_image_seeds, zip_members)
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from tinynet.files import checkpoint as checkpoint_module
from tinynet.files.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinynet.cli import infer as infer_cli
from tinynet.cli import train as train_cli
from tinynet.datasets.idx import DataError, load_split, read_idx_images, read_idx_labels, read_mapping, write_idx
from tinynet.predict.predictor import InputError, load_npy
from tinynet.nn.model import lenet
from tinynet.predict.preprocess import ImageError, preprocess_file
from tinynet.testing.datasets import write_toy_dataset

CASES = int(os.environ.get("TINYNET_FUZZ_CASES", "0"))
FUZZ = settings(max_examples=CASES or 12, derandomize=not CASES, deadline=None, database=None if not CASES else
                settings.default.database, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ERRORS = (DataError, ImageError, CheckpointError, InputError)
_names = itertools.count()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Valid files to break: a tiny data set, a checkpoint and its run folder, images, a .npy array."""
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    data = write_toy_dataset(folder / "data", n_train=200, n_test=20, gz=False)
    assert train_cli.main(["--data-dir", str(data), "--dataset", "tiny", "--epochs", "1", "--batch-size",
                           "32", "--val-fraction", "0.2", "--runs-dir", str(folder), "--name", "run",
                           "--no-progress", "--no-download"]) == 0
    images = rng_images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    np.save(folder / "u8.npy", rng_images)
    write_idx(folder / "images-idx3-ubyte", images)
    write_idx(folder / "labels-idx1-ubyte", np.arange(6, dtype=np.uint8) % 5)
    (folder / "work").mkdir()
    return {"folder": folder, "data": data, "run": folder / "run", "images": write_image_seeds(folder / "images"),
            "checkpoint": folder / "run" / "last.npz"}


def fresh_path(seeds, name):
    """A new file path for one generated case (hypothesis reuses the module's fixture)."""
    folder = seeds["work"] if "work" in seeds else seeds["folder"] / "work"
    folder = folder / f"case{next(_names)}"
    folder.mkdir()
    return folder / name


def outcome(function, path, errors=ERRORS, limit_mb=64):
    """Run ``function(path)``: 'ok', or the message of one of ``errors``, which must be one line naming
    ``path``; no other exception, no warning of tinynet's that Python would print (Pillow's own
    warnings reach the caller's filters; the command lines silence them), less than ``limit_mb`` of
    memory traced, no marker file of an unpickled object beside ``path``."""
    tracemalloc.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            function(path)
        result = "ok"
    except errors as e:
        result = str(e)
        assert "\n" not in result and str(path) in result, result
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit_mb << 20, f"{function.__name__}({path}) allocated {peak >> 20} MB"
    shown = [w for w in caught if not issubclass(w.category, QUIET_WARNINGS)
             and f"{os.sep}PIL{os.sep}" not in w.filename]
    assert not shown, f"a warning would be printed on the command line: {shown[0].message}"
    assert not (path.parent / "UNPICKLED").exists(), "a pickled object was unpickled"
    if currently_in_test_context():
        event("ok" if result == "ok" else "clean error")
    return result


def command_line(main, argv, path):
    """Run a command line's ``main`` in-process: exit 0, or 1 with only ``error:`` / ``skipped:`` /
    ``predicted N of M`` lines, naming ``path``."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    text = err.getvalue()
    if currently_in_test_context():
        event(f"{argv[0]} ... exit {code}")
    assert code in (0, 1) and "Traceback" not in text and "Warning" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    if code == 1:
        assert lines and all(line.startswith(("error: ", "skipped: ", "predicted ")) for line in lines), text
        assert str(path) in text, text


class Blob(bytes):
    """Bytes that print as their length (hypothesis prints a failing case's strategies)."""

    def __repr__(self):
        return f"<{len(self)} bytes>"


def damaged(data, header=64):
    """``data`` truncated, bit-flipped (anywhere or in its first ``header`` bytes), overwritten,
    with bytes inserted, deleted or appended, replaced by random bytes or nothing."""
    return _damaged(Blob(data), max(1, header))


@st.composite
def _damaged(draw, data, header):
    how = draw(st.sampled_from(("truncate", "flip", "flip_header", "overwrite", "insert", "delete",
                                "append", "random", "empty")))
    event(f"damage: {how}")
    if how == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if how in ("flip", "flip_header", "overwrite"):
        b = bytearray(data)
        top = min(header, len(b)) if how == "flip_header" else len(b)
        for at, bit in draw(st.lists(st.tuples(st.integers(0, top - 1), st.integers(0, 7)), min_size=1, max_size=8)):
            b[at] = b[at] ^ (1 << bit) if how != "overwrite" else (b[at] + 1 + bit * 31) % 256
        return bytes(b)
    if how == "insert":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
    if how == "delete":
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + data[at + draw(st.integers(1, 4096)):]
    if how == "append":
        return data + draw(st.binary(min_size=1, max_size=1000))
    if how == "random":
        return draw(st.binary(max_size=2000))
    return b""


HUGE = st.sampled_from((0, 1, 27, 28, 29, 2**31, 2**32 - 1, 1_275_510_205)) | st.integers(0, 2**32 - 1)
LYING_SHAPE = st.lists(HUGE | st.sampled_from((10**10, 10**12, 2**62, 2**63 - 1, -1)), max_size=3).map(tuple)


# ---------------------------------------------------------------------------------------------
# IDX files and mapping files


@FUZZ
@given(data=st.data(), role=st.sampled_from(("images", "labels")), gz=st.booleans())
def test_damaged_idx_files(seeds, data, role, gz):
    """Damaged IDX files (plain or gzipped, damaged before or after compression) or another header
    over the same body: a DataError naming the file, from the reader and from load_split."""
    folder, ndim = seeds["folder"], 3 if role == "images" else 1
    raw = (folder / f"{role}-idx{ndim}-ubyte").read_bytes()
    if data.draw(st.booleans()):
        dims = data.draw(st.lists(HUGE, min_size=ndim, max_size=ndim))
        magic = data.draw(st.sampled_from((2051, 2049, 0x0803, 0x0D03)) | st.integers(0, 2**32 - 1))
        raw = struct.pack(f">{1 + ndim}I", magic, *dims) + raw[4 + 4 * ndim:]
    if gz and data.draw(st.booleans()):
        content = data.draw(damaged(gzip.compress(raw, mtime=0), header=16))
    else:
        content = data.draw(damaged(raw, header=4 + 4 * ndim))
        content = gzip.compress(content, mtime=0) if gz else content
    path = fresh_path(seeds, f"tiny-test-{role}-idx{ndim}-ubyte" + (".gz" if gz else ""))
    path.write_bytes(content)
    outcome(read_idx_images if role == "images" else read_idx_labels, path, DataError, limit_mb=16)
    other = "labels-idx1" if role == "images" else "images-idx3"
    (path.parent / f"tiny-test-{other}-ubyte").write_bytes((folder / f"{other.split('-')[0]}-{other.split('-')[1]}-ubyte").read_bytes())
    (path.parent / "tiny-mapping.txt").write_bytes((seeds["data"] / "tiny-mapping.txt").read_bytes())
    outcome(lambda p: load_split(p.parent, "tiny", "test"), path, DataError, limit_mb=16)


@FUZZ
@given(data=st.data())
def test_damaged_mapping_files(seeds, data):
    """Damaged mapping files, or lines of any text (non-ASCII, huge codes, gaps, missing fields)."""
    raw = (seeds["data"] / "tiny-mapping.txt").read_bytes()
    lines = st.lists(st.sampled_from(("0 65", "1 66", "3 68", "0 1114112", "0 -5", "0 1e3", "0", "zero A",
                                      "0 65 extra", "\t ", "0 99999999999999999999999", "é 65", "\x00"))
                     | st.text(max_size=20), max_size=8)
    content = (data.draw(damaged(raw, header=16)) if data.draw(st.booleans())
               else "\n".join(data.draw(lines)).encode("utf-8", "surrogatepass"))
    path = fresh_path(seeds, "tiny-mapping.txt")
    path.write_bytes(content)
    outcome(read_mapping, path, DataError)


def test_idx_header_claiming_10_12_items(seeds):
    for gz in (False, True):
        path = fresh_path(seeds, "x-images-idx3-ubyte" + (".gz" if gz else ""))
        content = struct.pack(">4I", 2051, 1_275_510_205, 28, 28) + bytes(784)
        path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
        message = outcome(read_idx_images, path, DataError, limit_mb=4)  # gzip reads 1 MiB chunks
        assert "truncated" in message and "1275510205 images" in message


# ---------------------------------------------------------------------------------------------
# Images


def edit_header(data, name, draw):
    """``data`` (an image file) with a header field set to a drawn value: PNG IHDR dimensions (CRC
    kept valid), JPEG SOF fields, BMP header fields, GIF screen or image dimensions."""
    b = bytearray(data)
    value = draw(st.sampled_from((0, 1, 3, 255, 65535, 2**31 - 1, 100_000)) | st.integers(0, 2**32 - 1))
    if name.endswith(".png"):
        h = draw(st.sampled_from((0, 1, 65, 9000, 2**31 - 1)))
        return png_with_chunk(data, b"IHDR", lambda d: struct.pack(">II", value & 0x7FFFFFFF, h) + d[8:])
    if name.endswith(".jpg"):
        at = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        offset, fmt = draw(st.sampled_from(((4, ">B"), (5, ">H"), (7, ">H"), (9, ">B"))))
        struct.pack_into(fmt, b, at + offset, value & (0xFF if fmt == ">B" else 0xFFFF))
    elif name.endswith(".bmp"):
        offset, fmt = draw(st.sampled_from(((18, "<I"), (22, "<I"), (28, "<H"), (30, "<I"), (10, "<I"), (14, "<I"))))
        struct.pack_into(fmt, b, offset, value & (0xFFFF if fmt == "<H" else 0xFFFFFFFF))
    elif name.endswith(".gif"):
        at = draw(st.sampled_from((6, data.find(b"\x2c") + 5)))  # the screen, or the first image
        struct.pack_into("<HH", b, at, value & 0xFFFF, draw(st.integers(0, 65535)))
    return bytes(b)


@FUZZ
@given(data=st.data())
def test_damaged_images(seeds, data):
    """Damaged image files, lying header fields, files of another kind under an image's name,
    tiny, blank and non-finite images: an ImageError naming the file, or (when the damage is
    harmless) a 28x28 input; and inference.py on it exits 0 or 1 with one clear line."""
    from PIL import Image

    name = data.draw(st.sampled_from(seeds["images"]))
    raw = (seeds["folder"] / "images" / name).read_bytes()
    how = data.draw(st.sampled_from(("damage", "header", "foreign", "tiny", "blank", "nonfinite")))
    event(f"image: {how}")
    if how == "damage":
        content = data.draw(damaged(raw, header=128))
    elif how == "header":
        content = edit_header(raw, name, data.draw)
    elif how == "foreign":
        content = data.draw(st.sampled_from((seeds["checkpoint"].read_bytes()[:5000], (seeds["folder"] / "u8.npy").read_bytes(),
                                             (seeds["folder"] / "labels-idx1-ubyte").read_bytes())))
    else:
        w, h = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))) if how == "tiny" else (40, 40)
        a = np.asarray(character(40), dtype=np.float32)[:h, :w] / 255
        if how == "blank":
            a[:] = data.draw(st.integers(0, 255)) / 255
        if how == "nonfinite":
            a.flat[data.draw(st.lists(st.integers(0, a.size - 1), min_size=1))] = data.draw(
                st.sampled_from((np.nan, np.inf, -np.inf)))
        name = "x.tif"
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "TIFF")
        content = buf.getvalue()
    path = fresh_path(seeds, name)
    path.write_bytes(content)
    # Pillow decodes up to MAX_IMAGE_PIXELS (89 M) pixels: a lying header may make a big image
    outcome(preprocess_file, path, ImageError, limit_mb=1024)
    command_line(infer_cli.main, ["--input", str(path), "--checkpoint", str(seeds["run"] / "last.npz")], path)


# ---------------------------------------------------------------------------------------------
# Checkpoints


@FUZZ
@given(data=st.data())
def test_damaged_checkpoints(seeds, data):
    """Byte-level damage anywhere, in the first bytes or in the zip's central directory, or another
    kind of file: a CheckpointError naming it, from load_checkpoint and from inference.py."""
    raw = seeds["checkpoint"].read_bytes()
    where = data.draw(st.sampled_from(("anywhere", "directory", "foreign")))
    if where == "directory":  # the last 2 kB: central directory and end record
        content = raw[:-2048] + data.draw(damaged(raw[-2048:], header=2048))
    elif where == "foreign":
        content = data.draw(st.sampled_from(((seeds["folder"] / "u8.npy").read_bytes(), b"PK\x05\x06" + bytes(18),
                                             (seeds["folder"] / "images" / "char-L.png").read_bytes())))
    else:
        content = data.draw(damaged(raw, header=64))
    path = fresh_path(seeds, "last.npz")
    path.write_bytes(content)
    outcome(load_checkpoint, path, CheckpointError)
    command_line(infer_cli.main, ["--input", str(seeds["folder"] / "images" / "char-L.png"), "--checkpoint",
                                  str(path)], path)


@FUZZ
@given(data=st.data())
def test_checkpoint_members(seeds, data):
    """A member replaced by a pickled object (never unpickled), an array of another dtype or shape,
    a header claiming a huge shape or holding garbage, non-finite weights; members dropped,
    duplicated or added; every member recompressed (deflate, bzip2, lzma), maybe then damaged."""
    found = zip_members(seeds["checkpoint"].read_bytes())
    name = data.draw(st.sampled_from(sorted(found) + ["extra.order.npy"]))
    path = fresh_path(seeds, "last.npz")
    how = data.draw(st.sampled_from(("pickle", "dtype", "shape", "huge", "garbage_header", "nan", "missing",
                                     "duplicate", "added", "recompress")))
    event(f"member: {how}")
    members = dict(found)
    if how == "pickle":
        members[name] = pickled_npy(path.parent / "UNPICKLED")
    elif how == "dtype":
        dtype = data.draw(st.sampled_from(("<f8", "<f2", ">f4", "<i4", "|u1", "|b1", "<c8", "<U3", "|S4", "<M8[s]")))
        members[name] = npy_bytes(np.zeros(data.draw(st.sampled_from(((3,), (800, 500), ()))), dtype))
    elif how == "shape":
        members[name] = npy_bytes(np.zeros(tuple(data.draw(st.lists(st.integers(0, 9), max_size=4))), np.float32))
    elif how == "huge":
        body = bytes(data.draw(st.integers(0, 256)))
        members[name] = npy_raw(data.draw(st.sampled_from(("<f4", "<i8", "<U1000000000"))), data.draw(LYING_SHAPE), body)
    elif how == "garbage_header":
        text = data.draw(st.sampled_from(("{'descr': '<f4', 'fortran_order': False}", "[1, 2, 3]", "{'descr': 12, }",
                                          "__import__('os').system('touch UNPICKLED')",
                                          "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }" + " " * 20_000))
                         | st.text(max_size=80).filter(lambda t: "\n" not in t))
        members[name] = npy_raw(None, None, bytes(12), version=(2, 0) if len(text) > 60_000 else (1, 0),
                                header_text=text.encode("latin1", "replace").decode("latin1"))
    elif how == "nan" and name in found and name.endswith(".npy") and name != "metadata.npy":
        a = np.load(io.BytesIO(found[name])).copy()
        a.flat[:3] = data.draw(st.sampled_from((np.nan, np.inf, -np.inf)))
        members[name] = npy_bytes(a)
    elif how == "missing":
        members.pop(name, None)
    elif how in ("duplicate", "added"):
        other = data.draw(st.sampled_from((b"junk", pickled_npy(path.parent / "UNPICKLED"), npy_bytes(np.zeros(3)))))
        target = name if how == "duplicate" else data.draw(st.sampled_from(("extra.evil.npy", "notes.txt", "../x.npy")))
        members = list(members.items()) + [(target, other)]
    content = build_zip(members, data.draw(st.sampled_from((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                                           zipfile.ZIP_LZMA))) if how == "recompress" else zipfile.ZIP_STORED)
    if how == "recompress" and data.draw(st.booleans()):
        content = content[:64] + data.draw(damaged(content[64:-2000])) + content[-2000:]
    path.write_bytes(content)
    result = outcome(load_checkpoint, path, CheckpointError)
    assert how != "pickle" or "dtype object" in result


def metadata_edits(meta):
    """Strategy: the raw metadata.npy text (or array) of a checkpoint with broken metadata."""
    def edited(change):
        m = json.loads(json.dumps(meta))
        change(m)
        return json.dumps(m)

    def put(path, value):
        def change(m):
            target = m
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        return change

    values = st.sampled_from(("x", None, [], {}, 1.5, -1, 0, 2, True, 10**30, "\ud800", "é" * 100))
    return st.one_of(
        st.sampled_from(("{not json", "", "nul\x00", "[1, 2]", "null", "3", "[" * 100_000 + "]" * 100_000,
                         json.dumps(meta)[:-1] + ', "x": 1' + "9" * 6000 + "}")),
        st.tuples(st.sampled_from((("format",), ("format_version",), ("classes",), ("architecture",),
                                   ("architecture", "name"), ("architecture", "num_classes"),
                                   ("architecture", "dropout"), ("classes", 0))), values)
        .map(lambda kv: edited(put(*kv))),
        st.just(edited(lambda m: m.update(padding="x" * 10_500_000))),
        st.just(edited(lambda m: m["classes"].pop())),
        st.just(edited(lambda m: m["architecture"].update(num_classes=1_500_000) or m.update(classes=[""] * 1_500_000))))


@FUZZ
@given(data=st.data())
def test_checkpoint_metadata(seeds, data):
    """Metadata that is not JSON, deeply nested, oversized, of the wrong format or version, with
    wrong classes or an architecture of absurd size: a CheckpointError before any model is built."""
    found = zip_members(seeds["checkpoint"].read_bytes())
    meta = json.loads(str(np.load(io.BytesIO(found["metadata.npy"]))))
    text = data.draw(metadata_edits(meta))
    found["metadata.npy"] = npy_bytes(np.array(text) if data.draw(st.integers(0, 9)) else np.array([text, "x"]))
    path = fresh_path(seeds, "last.npz")
    path.write_bytes(build_zip(found))
    outcome(load_checkpoint, path, CheckpointError)


def test_a_pickle_instead_of_a_checkpoint_is_never_unpickled(seeds):
    import pickle

    path = fresh_path(seeds, "last.npz")
    path.write_bytes(pickle.dumps(Marker(path.parent / "UNPICKLED")))
    assert "not a readable tinynet checkpoint" in outcome(load_checkpoint, path, CheckpointError)


def test_deflate_bomb_is_refused_before_it_is_inflated(seeds, monkeypatch):
    """An ``extra`` array whose deflated zeros would inflate past the limit is refused from its header
    (here with the limit lowered to 1 MiB and a 64 MiB bomb, so the test stays fast)."""
    monkeypatch.setattr(checkpoint_module, "MAX_EXTRA_BYTES", 1 << 20)
    path = fresh_path(seeds, "last.npz")
    path.write_bytes(bomb_zip(zip_members(seeds["checkpoint"].read_bytes()), 64 << 20))
    message = outcome(load_checkpoint, path, CheckpointError, limit_mb=16)
    assert "'extra.order'" in message and "more than the 1048576 allowed" in message


@pytest.mark.parametrize("num_classes", [checkpoint_module.MAX_CLASSES + 1, 0, 2.0, True])
def test_architecture_sizes_are_checked_before_building_the_model(seeds, num_classes):
    """A checkpoint cannot make the loader build a huge model (or a nonsensical one)."""
    found = zip_members(seeds["checkpoint"].read_bytes())
    meta = json.loads(str(np.load(io.BytesIO(found["metadata.npy"]))))
    meta["architecture"]["num_classes"] = num_classes
    meta["classes"] = ["x"] * int(num_classes)
    found["metadata.npy"] = npy_bytes(np.array(json.dumps(meta)))
    path = fresh_path(seeds, "last.npz")
    path.write_bytes(build_zip(found))
    assert "classes" in outcome(load_checkpoint, path, CheckpointError, limit_mb=8)


@FUZZ
@given(data=st.data())
def test_resume_from_broken_training_states(seeds, data):
    """train.py --resume on a run whose last.npz has a missing or wrong training state, random
    generator states or shuffling order: exit 0 or 1 with one line naming last.npz."""
    found = zip_members(seeds["checkpoint"].read_bytes())
    meta = json.loads(str(np.load(io.BytesIO(found["metadata.npy"]))))
    state = meta["training"]
    how = data.draw(st.sampled_from(("training", "field", "rng", "order")))
    event(f"resume: {how}")
    value = data.draw(st.sampled_from(("x", None, [], {}, 1.5, -1, -10**6, 3, 10**6, [{}], [1, 2])))
    if how == "training":
        meta["training"] = value
    elif how == "field":
        state[data.draw(st.sampled_from(("epoch", "step", "batch", "best_val_accuracy", "history")))] = value
    elif how == "rng":
        meta.setdefault("rng_state", {})[data.draw(st.sampled_from(("init", "shuffle", "augment", "dropout")))] = \
            data.draw(st.sampled_from((value, {"bit_generator": "MT19937"},
                                       {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}})))
    else:
        found["extra.order.npy"] = npy_bytes(data.draw(st.sampled_from((np.arange(160) + 0.5, np.arange(160) + 10**6,
                                                                        np.arange(3)))))
        state["batch"] = 1
    found["metadata.npy"] = npy_bytes(np.array(json.dumps(meta)))
    run = fresh_path(seeds, "run")
    run.mkdir()
    (run / "config.json").write_bytes((seeds["run"] / "config.json").read_bytes())
    (run / "last.npz").write_bytes(build_zip(found))
    command_line(train_cli.main, ["--resume", str(run), "--no-progress", "--no-download"], run / "last.npz")


# ---------------------------------------------------------------------------------------------
# .npy inputs of inference.py


@FUZZ
@given(data=st.data())
def test_damaged_npy_inputs(seeds, data):
    """Damaged .npy files, headers claiming huge shapes, other dtypes, shapes, versions, Fortran
    order, non-finite values, pickled objects: an InputError naming the file, or images."""
    raw = (seeds["folder"] / "u8.npy").read_bytes()
    a = np.load(io.BytesIO(raw))
    path = fresh_path(seeds, "input.npy")
    how = data.draw(st.sampled_from(("damage", "lying", "dtype", "shape", "version", "fortran", "nonfinite", "pickled")))
    event(f"npy: {how}")
    if how == "damage":
        content = data.draw(damaged(raw, header=128))
    elif how == "lying":
        content = npy_raw(data.draw(st.sampled_from(("|u1", "<f4", "O"))), data.draw(LYING_SHAPE), raw[128:])
    elif how == "dtype":
        dtype = data.draw(st.sampled_from(("<f8", "<f2", "<i4", "|b1", "<c8", "<U3", "|V8", "<M8[s]")))
        content = npy_bytes(np.zeros(a.shape, dtype) if dtype in ("|V8", "<M8[s]", "<U3") else a.astype(dtype))
    elif how == "shape":
        content = npy_bytes(np.zeros(data.draw(st.sampled_from(((28,), (2, 28, 27), (1, 1, 28, 28), (0,), (3, 0, 28)))),
                                     np.uint8))
    elif how == "version":
        content = raw[:6] + bytes(data.draw(st.sampled_from(((2, 0), (3, 0), (0, 0), (255, 255), (1, 1))))) + raw[8:]
    elif how == "fortran":
        content = npy_bytes(np.asfortranarray(a))
    elif how == "nonfinite":
        f = (a / 255).astype(np.float32)
        f.flat[0] = data.draw(st.sampled_from((np.nan, np.inf, -np.inf)))
        content = npy_bytes(f)
    else:
        content = pickled_npy(path.parent / "UNPICKLED")
    path.write_bytes(content)
    outcome(load_npy, path, InputError, limit_mb=8)
    command_line(infer_cli.main, ["--input", str(path), "--checkpoint", str(seeds["run"] / "last.npz")], path)
