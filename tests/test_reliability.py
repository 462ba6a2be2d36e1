"""Reliability: broken files, killed training runs and bad checkpoints lose nothing and never crash.

This is the fast part, in the default suite: hypothesis-generated damage to IDX files, images,
checkpoints and .npy arrays (each must load or raise the project's own error with a one-line message
naming the file, without allocating more than a little memory and without unpickling anything); a
training run killed with SIGKILL three times, once in the middle of a checkpoint write, then resumed
to the end with exactly the weights of an uninterrupted run; broken training states on resume; and
every command line's ``--help`` and argument errors. The long runs are scripts, ``bench/fuzz.py``
(1000+ generated cases, CLIs as subprocesses, RSS limits) and ``bench/kill_resume.py`` (dozens of
kills); ``pytest -m slow`` runs both.
"""

import argparse
import gzip
import importlib.util
import io
import itertools
import json
import pickle
import shutil
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinynet import checkpoint as checkpoint_module
from tinynet.checkpoint import CheckpointError, load_checkpoint
from tinynet.cli import download as download_cli
from tinynet.cli import main as main_cli
from tinynet.cli import infer as infer_cli
from tinynet.cli import train as train_cli
from tinynet.data import DataError, load_split, read_idx_images, read_idx_labels
from tinynet.inference import InputError, load_npy
from tinynet.preprocess import ImageError, preprocess_file
from tinynet.training import train
from tinynet.data import write_idx
from toydata import write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_script(name):
    """Import bench/NAME.py (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = load_script("fuzz")
kill_resume = load_script("kill_resume")
_names = itertools.count()


# ---------------------------------------------------------------------------------------------
# Seeds: a tiny data set, an uninterrupted 3-epoch run on it, images, a .npy array


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds")
    data = write_toy_dataset(folder / "data", n_train=200, n_test=40)
    # The configuration bench/kill_resume.py trains with, 3 epochs: the killed runs' reference.
    args = train_cli.build_parser().parse_args(kill_resume.TRAIN_OPTIONS
                                               + ["--data-dir", str(data), "--epochs", "3"])
    train(train_cli.config_from_args(args), folder / "reference", download=False, progress=False,
          log=lambda *a: None)
    images = fuzz.make_image_seeds(folder / "images")
    rng = np.random.default_rng(0)
    idx_images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    write_idx(folder / "images-idx3-ubyte", idx_images)
    write_idx(folder / "labels-idx1-ubyte", np.arange(6, dtype=np.uint8) % 5)
    np.save(folder / "u8.npy", idx_images)
    work = folder / "work"
    work.mkdir()
    return {"folder": folder, "data": data, "run": folder / "reference", "images": images, "work": work,
            "checkpoint": (folder / "reference" / "last.npz").read_bytes()}


def fresh_path(seeds, name):
    """A new file path for one generated case (hypothesis reuses the module's fixture)."""
    folder = seeds["work"] / f"case{next(_names)}"
    folder.mkdir()
    return folder / name


def outcome(function, path, errors, limit_mb=64):
    """Run ``function(path)``: 'ok', or the message of one of ``errors``, which must be one line naming
    ``path``; no other exception, no warning that Python would print, and less than ``limit_mb`` of
    memory traced (NumPy's arrays too)."""
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
    shown = [w for w in caught if not issubclass(w.category, fuzz.QUIET_WARNINGS)]
    assert not shown, f"a warning would be printed on the command line: {shown[0].message}"
    return result


@st.composite
def damaged(draw, data, header=64):
    """``data`` truncated, bit-flipped (anywhere or in its first ``header`` bytes), overwritten,
    with bytes inserted, or replaced by random bytes or nothing."""
    how = draw(st.sampled_from(("truncate", "flip", "flip_header", "overwrite", "insert", "random", "empty")))
    if how == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if how in ("flip", "flip_header", "overwrite"):
        b = bytearray(data)
        top = min(header, len(b)) if how == "flip_header" else len(b)
        flips = st.lists(st.tuples(st.integers(0, top - 1), st.integers(0, 7)), min_size=1, max_size=8)
        for at, bit in draw(flips):
            b[at] = b[at] ^ (1 << bit) if how != "overwrite" else (b[at] + 1 + bit * 31) % 256
        return bytes(b)
    if how == "insert":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
    if how == "random":
        return draw(st.binary(max_size=2000))
    return b""


HUGE = st.sampled_from((0, 1, 27, 28, 29, 2**31, 2**32 - 1, 1_275_510_205)) | st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------------------------------------
# IDX files


@FUZZ
@given(data=st.data(), role=st.sampled_from(("images", "labels")), gz=st.booleans())
def test_damaged_idx_files_are_one_line_data_errors(seeds, data, role, gz):
    """Truncated, bit-flipped, overwritten or random IDX files (plain or gzipped, damaged before or
    after compression): DataError naming the file, a few MB of memory at most, never a crash."""
    folder = seeds["folder"]
    ndim = 3 if role == "images" else 1
    raw = (folder / f"{role}-idx{ndim}-ubyte").read_bytes()
    if gz and data.draw(st.booleans()):
        content = data.draw(damaged(gzip.compress(raw, mtime=0), header=16))
    else:
        content = data.draw(damaged(raw, header=4 + 4 * ndim))
        content = gzip.compress(content, mtime=0) if gz else content
    path = fresh_path(seeds, f"tiny-test-{role}-idx{ndim}-ubyte" + (".gz" if gz else ""))
    path.write_bytes(content)
    reader = read_idx_images if role == "images" else read_idx_labels
    outcome(reader, path, DataError)
    other = "labels-idx1" if role == "images" else "images-idx3"
    shutil.copy(folder / f"{other.split('-')[0]}-{other.split('-')[1]}-ubyte",
                path.parent / f"tiny-test-{other}-ubyte")
    shutil.copy(seeds["data"] / "tiny-mapping.txt", path.parent / "tiny-mapping.txt")
    outcome(lambda p: load_split(p.parent, "tiny", "test"), path, DataError)


@FUZZ
@given(magic=st.sampled_from((2051, 2049, 0x0803, 0x0D03)) | st.integers(0, 2**32 - 1),
       dims=st.lists(HUGE, min_size=3, max_size=3), gz=st.booleans(), body=st.integers(0, 3000))
def test_idx_headers_never_allocate_what_they_claim(seeds, magic, dims, gz, body):
    """Any header (including ones claiming 10^12 bytes of images) over a small body is refused from
    the header and the file's size, before anything of the claimed size is allocated."""
    content = struct.pack(">4I", magic, *dims) + bytes(body)
    path = fresh_path(seeds, "x-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    outcome(read_idx_images, path, DataError, limit_mb=8)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_claiming_10_12_items(seeds, gz):
    path = fresh_path(seeds, "x-images-idx3-ubyte" + (".gz" if gz else ""))
    content = struct.pack(">4I", 2051, 1_275_510_205, 28, 28) + bytes(784)
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    message = outcome(read_idx_images, path, DataError, limit_mb=4)  # gzip reads 1 MiB chunks
    assert "truncated" in message and "1275510205 images" in message


# ---------------------------------------------------------------------------------------------
# Images


@FUZZ
@given(data=st.data())
def test_damaged_images_are_one_line_image_errors(seeds, data):
    """Damaged PNG, JPEG, BMP, GIF, TIFF, WebP and PPM files: ImageError naming the file, or (when the
    damage is harmless) a 28x28 input."""
    name = data.draw(st.sampled_from(seeds["images"]))
    content = data.draw(damaged((seeds["folder"] / "images" / name).read_bytes(), header=128))
    path = fresh_path(seeds, name)
    path.write_bytes(content)
    outcome(preprocess_file, path, ImageError, limit_mb=256)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_float_image_with_nan_or_inf(seeds, value):
    """A float TIFF holding NaN is an ImageError, not a ValueError from deep inside; inf is clipped."""
    from PIL import Image

    a = np.asarray(fuzz.character(40), dtype=np.float32) / 255
    a[3, 3] = value
    path = fresh_path(seeds, "float.tif")
    Image.fromarray(a).save(path)
    result = outcome(preprocess_file, path, ImageError)
    assert ("NaN" in result) if np.isnan(value) else result == "ok"


# ---------------------------------------------------------------------------------------------
# Checkpoints


def members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


@FUZZ
@given(data=st.data())
def test_damaged_checkpoints_are_one_line_checkpoint_errors(seeds, data):
    """Byte-level damage anywhere, in the first bytes or in the zip's central directory."""
    raw = seeds["checkpoint"]
    where = data.draw(st.sampled_from(("anywhere", "directory")))
    if where == "directory":  # the last 2 kB: central directory and end record
        tail = data.draw(damaged(raw[-2048:], header=2048))
        content = raw[:-2048] + tail
    else:
        content = data.draw(damaged(raw, header=64))
    path = fresh_path(seeds, "last.npz")
    path.write_bytes(content)
    outcome(load_checkpoint, path, CheckpointError)


@FUZZ
@given(data=st.data())
def test_checkpoint_members_with_pickles_wrong_dtypes_or_lying_headers(seeds, data):
    """A member replaced by a pickled object (never unpickled: the marker file never appears), by an
    array of another dtype or shape, or by a header claiming a huge shape: a CheckpointError, with
    nothing of the claimed size allocated."""
    found = members(seeds["checkpoint"])
    name = data.draw(st.sampled_from(sorted(found) + ["extra.order.npy"]))
    path = fresh_path(seeds, "last.npz")
    marker = path.parent / "UNPICKLED"
    how = data.draw(st.sampled_from(("pickle", "dtype", "shape", "huge")))
    if how == "pickle":
        body = fuzz.npy_bytes(np.array([fuzz.Marker(marker)], dtype=object), allow_pickle=True)
    elif how == "dtype":
        dtype = data.draw(st.sampled_from(("<f8", "<f2", ">f4", "<i4", "|u1", "|b1", "<c8", "<U3", "|S4")))
        body = fuzz.npy_bytes(np.zeros(data.draw(st.sampled_from(((3,), (800, 500), ())))).astype(dtype))
    elif how == "shape":
        shape = tuple(data.draw(st.lists(st.integers(0, 9), max_size=4)))
        body = fuzz.npy_bytes(np.zeros(shape, np.float32))
    else:
        shape = tuple(data.draw(st.lists(HUGE | st.sampled_from((10**12, 2**62, 2**63 - 1, -1)),
                                         min_size=1, max_size=3)))
        dtype = data.draw(st.sampled_from(("<f4", "<i8", "<U1000000000")))
        body = fuzz.npy_raw(dtype, shape, bytes(data.draw(st.integers(0, 256))))
    found[name] = body
    path.write_bytes(fuzz.build_zip([(n, b, zipfile.ZIP_STORED) for n, b in found.items()]))
    result = outcome(load_checkpoint, path, CheckpointError)
    assert not marker.exists(), "a pickled object was unpickled"
    assert how != "pickle" or "dtype object" in result


def test_a_pickle_instead_of_a_checkpoint_is_never_unpickled(seeds):
    path = fresh_path(seeds, "last.npz")
    marker = path.parent / "UNPICKLED"
    path.write_bytes(pickle.dumps(fuzz.Marker(marker)))
    assert "not a readable tinynet checkpoint" in outcome(load_checkpoint, path, CheckpointError)
    assert not marker.exists()


def test_deflate_bomb_is_refused_before_it_is_inflated(seeds, monkeypatch):
    """An ``extra`` array whose deflated zeros would inflate past the limit is refused from its header
    (here with the limit lowered to 1 MiB and a 64 MiB bomb, so the test stays fast)."""
    monkeypatch.setattr(checkpoint_module, "MAX_EXTRA_BYTES", 1 << 20)
    monkeypatch.setattr(fuzz, "BOMB_BYTES", 64 << 20)
    monkeypatch.setattr(fuzz, "_BOMB", {})
    path = fresh_path(seeds, "last.npz")
    path.write_bytes(fuzz.bomb_zip([(n, b, zipfile.ZIP_STORED) for n, b in members(seeds["checkpoint"]).items()]))
    message = outcome(load_checkpoint, path, CheckpointError, limit_mb=16)
    assert "'extra.order'" in message and "more than the 1048576 allowed" in message


@pytest.mark.parametrize("num_classes", [checkpoint_module.MAX_CLASSES + 1, 0, 2.0, True])
def test_architecture_sizes_are_checked_before_building_the_model(seeds, num_classes):
    """A checkpoint cannot make the loader build a huge model (or a nonsensical one)."""
    found = members(seeds["checkpoint"])
    meta = json.loads(str(np.load(io.BytesIO(found["metadata.npy"]))))
    meta["architecture"]["num_classes"] = num_classes
    meta["classes"] = ["x"] * int(num_classes)
    found["metadata.npy"] = fuzz.npy_bytes(np.array(json.dumps(meta)))
    path = fresh_path(seeds, "last.npz")
    path.write_bytes(fuzz.build_zip([(n, b, zipfile.ZIP_STORED) for n, b in found.items()]))
    assert "classes" in outcome(load_checkpoint, path, CheckpointError, limit_mb=8)


# ---------------------------------------------------------------------------------------------
# .npy inputs of inference.py


@FUZZ
@given(data=st.data())
def test_damaged_npy_inputs_are_one_line_input_errors(seeds, data):
    raw = (seeds["folder"] / "u8.npy").read_bytes()
    if data.draw(st.booleans()):
        content = data.draw(damaged(raw, header=128))
    else:
        shape = tuple(data.draw(st.lists(HUGE | st.sampled_from((10**10, -1)), min_size=1, max_size=3)))
        content = fuzz.npy_raw(data.draw(st.sampled_from(("|u1", "<f4", "O"))), shape, raw[128:])
    path = fresh_path(seeds, "input.npy")
    path.write_bytes(content)
    outcome(load_npy, path, InputError, limit_mb=8)


# ---------------------------------------------------------------------------------------------
# Killed and resumed training


def test_sigkill_during_training_and_checkpoint_writes_loses_nothing(seeds, tmp_path):
    """train.py killed with SIGKILL three times -- right as a checkpoint's temporary file appears
    (twice: the third write of a fresh run, when a last.npz exists, and the first write after a
    resume) and mid-epoch -- and resumed each time: every checkpoint on disk always loads, at
    most the interrupted epoch is redone, the stale temporary files are removed on resume, and the
    finished run equals the uninterrupted one bit for bit (weights, momentum, best.npz, history)."""
    plans = [("write", 2, 0.0), ("training", 0.2), ("write", 0, 0.0)]
    stats = kill_resume.run_soak(tmp_path, kills=len(plans), epochs=3, seed=0, n_train=200, n_test=40,
                                 timeout=300, reference_run=seeds["run"], plans=plans, log=lambda *a: None)
    assert stats["failures"] == []
    assert stats["kills"] == len(plans)
    assert stats["kills_during_checkpoint_write"] >= 1
    assert stats["max_completed_epochs_redone_per_kill"] <= 1
    assert stats["identical_to_uninterrupted_run"] is True


def copy_run(seeds, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(seeds["run"], run)
    return run


def rewrite_last(run, change):
    found = members((run / "last.npz").read_bytes())
    meta = json.loads(str(np.load(io.BytesIO(found["metadata.npy"]))))
    replaced = change(meta)  # members to replace, or whatever the metadata edit returned
    found["metadata.npy"] = fuzz.npy_bytes(np.array(json.dumps(meta)))
    if isinstance(replaced, dict) and all(str(k).endswith(".npy") for k in replaced):
        found.update(replaced)
    (run / "last.npz").write_bytes(fuzz.build_zip([(n, b, zipfile.ZIP_STORED) for n, b in found.items()]))


def resume_error(run, capsys):
    code = train_cli.main(["--resume", str(run), "--no-progress", "--no-download"])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("change", [
    lambda m: m.pop("training"),
    lambda m: m.update(training="x"),
    lambda m: m["training"].update(epoch="2"),
    lambda m: m["training"].update(batch=-1),
    lambda m: m["training"].update(history=[1, 2, 3]),
    lambda m: m["training"].update(best_val_accuracy=None),
    lambda m: m.pop("rng_state"),
    lambda m: m["rng_state"].update(shuffle={"bit_generator": "MT19937"}),
    lambda m: {"extra.order.npy": fuzz.npy_bytes(np.arange(160) + 0.5)},
    lambda m: {"extra.order.npy": fuzz.npy_bytes(np.arange(160) + 10**6)},
], ids=["no-training", "training-not-a-dict", "epoch-str", "batch-negative", "history-not-records",
        "best-none", "no-rng-state", "wrong-rng", "order-float", "order-out-of-range"])
def test_resume_from_a_checkpoint_without_a_usable_training_state(seeds, tmp_path, capsys, change):
    """A last.npz that loads but whose training state is missing or wrong: one-line error, exit 1."""
    run = copy_run(seeds, tmp_path)
    rewrite_last(run, change)
    code, err = resume_error(run, capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert str(run / "last.npz") in err


def test_resume_with_a_corrupt_last_npz_is_one_line_from_train_py(seeds, tmp_path):
    """python3 train.py --resume RUN with a truncated last.npz: exit 1, `error: ...` on one line."""
    run = copy_run(seeds, tmp_path)
    (run / "last.npz").write_bytes((run / "last.npz").read_bytes()[:5000])
    proc = subprocess.run([sys.executable, "train.py", "--resume", str(run), "--no-progress", "--no-download"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {run / 'last.npz'}: ")


def test_resume_removes_stale_temporary_files_and_rewrites_the_history(seeds, tmp_path, capsys):
    """A kill can leave a half-written temporary file, and can come after last.npz was written but
    before metrics.jsonl: resuming removes the former and brings metrics.jsonl up to date."""
    run = copy_run(seeds, tmp_path)
    stale = run / ".tmp-abc123-last.npz"
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n")
    assert train_cli.main(["--resume", str(run), "--no-progress", "--no-download"]) == 0
    assert not stale.exists()
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_inference_with_a_broken_checkpoint_is_one_line(seeds, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(seeds["checkpoint"][:-100])
    code = infer_cli.main(["--input", str(seeds["folder"] / "images" / "char-L.png"), "--checkpoint", str(bad)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith(f"error: {bad}: ") and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Before training starts: run folder problems are one clear line


def test_unwritable_run_folder_is_one_line_from_the_cli(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = train_cli.main(["--runs-dir", str(blocker), "--name", "run", "--no-download", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "run folder is not writable" in err
    assert err.startswith(f"error: {blocker / 'run'}: ") and "Traceback" not in err


def test_too_little_free_disk_is_one_line_from_the_cli(tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, (10 << 30) - (5 << 20), 5 << 20))
    code = train_cli.main(["--runs-dir", str(tmp_path), "--name", "run", "--no-download", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "only 5 MB free on this disk" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Every command line: --help explains each option; wrong values are argparse errors (exit 2)


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def download_parser(monkeypatch):
    """The parser ``tinynet download`` builds (caught as it starts parsing)."""
    def capture(self, *args, **kwargs):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    try:
        download_cli.main([])
    except _Captured as c:
        return c.parser
    raise AssertionError("tinynet.cli.download.main did not parse its arguments")


def all_parsers(monkeypatch):
    parsers = {"train.py": train_cli.build_parser(), "inference.py": infer_cli.build_parser(),
               "bench/fuzz.py": fuzz.build_parser(), "bench/kill_resume.py": kill_resume.build_parser()}
    with monkeypatch.context() as m:
        parsers["tinynet download"] = download_parser(m)
    for name, parser in list(parsers.items()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command, sub in action.choices.items():
                    parsers[f"{name} {command}"] = sub
    return parsers


def test_every_option_of_every_command_line_has_help(monkeypatch):
    for name, parser in all_parsers(monkeypatch).items():
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            label = "/".join(action.option_strings) or action.dest
            assert action.help and action.help.strip() and action.help != argparse.SUPPRESS, \
                f"{name}: {label} has no help text"
            for option in action.option_strings:
                assert option in text, f"{name}: {option} missing from --help"


def test_help_names_each_default_once(monkeypatch):
    """No "(default: None)", and no option whose help gives its default twice (train.py's recipe
    options name their value in every recipe instead)."""
    for name, parser in all_parsers(monkeypatch).items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS):
                continue
            text = formatter._expand_help(action)
            label = "/".join(action.option_strings) or action.dest
            assert "(default: None)" not in text, f"{name}: {label}: {text}"
            assert text.count("default") <= 1, f"{name}: {label} names its default twice: {text}"
    assert train_cli.from_recipe("lr") == "[original: 0.01, strong: 0.05, unseen: 0.05]"
    assert train_cli.from_recipe("nesterov") == "[original: off, strong: on, unseen: on]"


@pytest.mark.parametrize("main, argv, message", [
    (train_cli.main, ["--batch-size", "-3"], "must be a positive integer"),
    (infer_cli.main, ["--input", "x", "--top-k", "0"], "must be a positive integer"),
    (infer_cli.main, ["--input", "x", "--output", "out.txt"], "must end in .csv or .json"),
    (download_cli.main, ["--split", "validation"], "invalid choice"),
    (fuzz.main, ["--cases", "0"], "must be a positive integer"),
    (fuzz.main, ["--kinds", "idx,video"], "unknown kind"),
    (kill_resume.main, ["--kills", "0"], "must be a positive integer"),
    (kill_resume.main, ["--write-fraction", "1.5"], "must be in [0, 1]"),
], ids=["train", "inference-top-k", "inference-output", "download-split",
        "fuzz-cases", "fuzz-kinds", "kill-resume-kills", "kill-resume-fraction"])
def test_wrong_values_are_argparse_errors(main, argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err and "Traceback" not in err


def test_the_tinynet_command_names_its_subcommands_and_refuses_unknown_ones(capsys):
    assert main_cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tinynet COMMAND") and all(f"  {c} " in out for c in main_cli.COMMANDS)
    assert main_cli.main([]) == 2 and "usage: tinynet" in capsys.readouterr().err
    assert main_cli.main(["dowload"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'dowload' (did you mean 'download'?)" in err and "Traceback" not in err
    for command in main_cli.COMMANDS:  # each subcommand's own --help, under its own name
        with pytest.raises(SystemExit) as info:
            main_cli.main([command, "--help"])
        assert info.value.code == 0 and capsys.readouterr().out.startswith(f"usage: tinynet {command} ")


# ---------------------------------------------------------------------------------------------
# The long runs (pytest -m slow)


@pytest.mark.slow
def test_fuzz_script_1000_cases():
    proc = subprocess.run([sys.executable, "bench/fuzz.py", "--cases", "1000"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert " 0 FAILURES" in proc.stdout


@pytest.mark.slow
def test_kill_resume_script():
    proc = subprocess.run([sys.executable, "bench/kill_resume.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
