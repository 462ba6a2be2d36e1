#!/usr/bin/env python3
"""Fuzz tinynet's file readers: IDX data files, image files, checkpoints and ``.npy`` arrays.

    python3 bench/fuzz.py                          # 1000 generated cases, seed 0 (a few minutes)
    python3 bench/fuzz.py --cases 5000 --seed 7    # more cases, another seed
    python3 bench/fuzz.py --only 17 --only 912     # re-run single cases of a seed, to debug them

Cases. Each case starts from a valid seed file and breaks it. The seeds, made afresh in a temporary
folder: a tiny EMNIST-format data set (IDX images and labels, plain and gzipped, and its mapping), a
checkpoint from a real one-epoch ``train.py`` run on it (plus one with an ``extra.order`` array and
one whose zip members are deflated), images of a synthetic character in a dozen formats and modes
(PNG L/RGB/RGBA/P/1/16-bit, JPEG with and without EXIF, BMP, animated GIF, float and LZW TIFF,
WebP, PPM) and ``.npy`` arrays. The mutations: truncation at a random offset, bit flips (anywhere,
or in the first bytes where headers are), random byte overwrites, insertions, deletions, trailing
garbage, splices with another file, an empty file, random bytes, a file of another kind or under
the wrong extension; per format, header fields overwritten (IDX magic and dimensions, including
headers claiming 10^12 items; PNG IHDR / JPEG SOF / BMP / GIF dimensions with valid CRCs; gzip
streams truncated, bit-flipped, concatenated, with bad CRCs); for checkpoints, zip members replaced
by pickled objects (whose unpickling would create a marker file), by arrays of the wrong dtype or
shape, by ``.npy`` headers claiming huge shapes or holding garbage, members dropped or duplicated,
NaN weights, metadata that is not JSON, deeply nested, of the wrong format or version, with an
architecture of 1.5 million classes, or without a resumable training state, deflate/bzip2/lzma
members (valid and corrupted), a 1 GiB deflate bomb, and zip-level corruption.

Checks. Every case runs in a worker process (``--worker``, started by this script) that calls the
library entry points in-process -- ``read_idx_images`` / ``read_idx_labels`` / ``read_mapping`` and
``load_split``; ``preprocess_file`` (``load_image`` + ``preprocess``); ``load_checkpoint`` and, for
checkpoint cases about the training state and a sample of the others, ``train.py --resume`` through
``tinynet.cli.train.main``; ``tinynet.inference.load_npy`` -- and, every ``--cli-every``-th case,
the command lines as subprocesses (``inference.py --input FILE``; ``inference.py --checkpoint
BAD.npz``; ``train.py --resume RUN`` with the broken ``last.npz``). A case passes when each call
either succeeds or raises the project's own error (DataError, ImageError, CheckpointError,
InputError; TrainingError for a resume) with a one-line message naming the file; a command line
must exit 0, or 1 with ``error: ...`` lines naming the file and nothing else on stderr (no
traceback, no warnings; only libtiff's own diagnostic lines, which the C library writes straight to
stderr, are tolerated and counted). Anything else is a FAILURE: another exception (MemoryError
included), a multi-line message or one that does not name the file, a Python warning escaping a
call (it would print on a command line), a peak RSS growth or a traced allocation peak
(tracemalloc, which also sees allocations whose pages are never touched) above ``--mem-limit-mb``
(each in-process call also runs under an RLIMIT_AS address-space limit), a marker file created by
unpickling, a case slower than ``--timeout``, or a crashed worker.

Output: a table of cases per kind and per mutation (ok / clean error / FAILURE), the details of
every failure, and exit status 1 when any case failed (0 otherwise, 2 for invalid options). The
cases depend only on ``--seed`` and the case number, so a run is repeatable.
"""

import argparse
import contextlib
import gc
import gzip
import io
import json
import os
import pickle
import random
import re
import resource
import selectors
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
import warnings
import zipfile
import zlib
from collections import Counter, deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "tests"):  # tinynet, and the tests' helpers (toydata)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import numpy as np  # noqa: E402

from tinynet.cli import positive_int  # noqa: E402

KINDS = ("idx", "image", "checkpoint", "npy")
KIND_WEIGHTS = (3, 3, 3, 1)
GENERIC = ("truncate", "bitflip", "header_bitflip", "bytes", "insert", "delete", "trailing",
           "random", "empty", "splice")
IDX_MUTATIONS = GENERIC + ("magic", "dims", "huge", "count", "swap", "foreign")
GZ_MUTATIONS = ("gz_truncate", "gz_bitflip", "gz_header", "gz_crc", "gz_concat", "gz_garbage")
MAPPING_MUTATIONS = GENERIC + ("nonascii", "bigcode", "gap", "oversized", "fields")
IMAGE_MUTATIONS = GENERIC + ("png_dims", "png_chunk", "jpeg_sof", "bmp_header", "gif_dims",
                             "wrong_ext", "tiny", "blank", "nonfinite", "exif")
CHECKPOINT_MUTATIONS = GENERIC + ("zip_struct", "pickled_member", "pickle_file", "npz_of_pickles",
                                  "dtype", "shape", "huge_shape", "npy_header", "missing",
                                  "duplicate", "extra_member", "nan", "metadata", "recompress",
                                  "corrupt_compressed", "zip_bomb", "resume_state", "foreign")
CHECKPOINT_WEIGHTS = {"metadata": 5, "resume_state": 4, "huge_shape": 2, "npy_header": 2}  # others 1
NPY_MUTATIONS = GENERIC + ("huge_shape", "pickled", "dtype", "shape", "npy_header", "version", "fortran",
                           "nonfinite", "foreign")
IN_PROCESS = ("read_idx_images", "read_idx_labels", "read_mapping", "load_split", "preprocess_file",
              "load_checkpoint", "train_resume", "load_npy")
# Warnings Python does not print by default; any other warning escaping a call is a failure.
QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
FORCE_CLI = ("metadata", "resume_state")  # checkpoint mutations whose cases always run the CLIs too
CLI_PREFIXES = ("error: ", "skipped: ", "predicted ")  # the only lines a failing CLI may print
# ... besides libtiff's own diagnostics, which the C library inside Pillow writes straight to the
# process's stderr for some corrupt TIFFs (e.g. "LZWDecode: Not enough data at scanline 0"); no
# Python API silences them. They are tolerated, and counted in the report.
LIBTIFF_LINE = re.compile(r"^(tempfile\.tif|TIFF\w*|\w+Decode|\w+Encode): ")
IMAGE_EXTS = (".png", ".jpg", ".bmp", ".gif", ".tif", ".webp", ".ppm")
BOMB_BYTES = 1 << 30  # the deflate bomb's claimed (and real) uncompressed size
HUGE_CLASSES = 1_500_000  # an architecture whose last layer alone would need 3 GB


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def build_parser():
    p = argparse.ArgumentParser(
        prog="bench/fuzz.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fuzz tinynet's readers (IDX files, images, checkpoints, .npy arrays) with "
                    "generated broken files;\nexit 1 if any case crashes, leaks memory, runs code "
                    "or gives an unclear error.",
        epilog="exit status: 0 no failure, 1 some case failed, 2 invalid options")
    p.add_argument("--cases", type=positive_int, default=1000, metavar="N",
                   help="number of generated cases (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the case generator; case i of a seed is always the same "
                        "(default: %(default)s)")
    p.add_argument("--only", type=non_negative_int, action="append", metavar="I",
                   help="run only case number I of the seed (repeatable), to reproduce a failure")
    p.add_argument("--kinds", default=",".join(KINDS), metavar="LIST",
                   help="comma-separated kinds of file to fuzz, of %s (default: all)" % ", ".join(KINDS))
    p.add_argument("--workers", type=positive_int, default=2, metavar="N",
                   help="worker processes running cases in parallel (default: %(default)s)")
    p.add_argument("--cli-every", type=non_negative_int, default=10, metavar="K",
                   help="also run the command lines as subprocesses on every K-th case; 0 = never "
                        "(default: %(default)s)")
    p.add_argument("--mem-limit-mb", type=positive_int, default=1024, metavar="MB",
                   help="largest allowed memory growth in one in-process call, as peak RSS or as "
                        "traced allocations; also the CLI's peak RSS over a normal run's "
                        "(default: %(default)s)")
    p.add_argument("--timeout", type=positive_int, default=180, metavar="S",
                   help="seconds a case may take before it counts as a hang (default: %(default)s)")
    p.add_argument("--keep", metavar="DIR", default=None,
                   help="copy the input files of failing cases to DIR (default: not kept)")
    p.add_argument("--worker", metavar="WORKDIR", default=None,
                   help="internal: run as a worker on the seeds in WORKDIR, reading case numbers "
                        "from stdin (started by this script itself)")
    return p


# ----------------------------------------------------------------------------------------------
# Seeds (made once by the parent process)


def character(size=64, char="A", light_ink=False):
    """A grayscale (L) image of a character: dark ink on white paper (or the reverse)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (size, size), 0 if light_ink else 255)
    draw = ImageDraw.Draw(image)
    ink = 255 if light_ink else 0
    try:
        font = ImageFont.load_default(size=int(size * 0.75))
        draw.text((size / 2, size / 2), char, fill=ink, font=font, anchor="mm")
    except (OSError, ValueError, TypeError):  # no FreeType: draw strokes instead
        draw.line([(size * 0.2, size * 0.85), (size * 0.5, size * 0.15), (size * 0.8, size * 0.85)],
                  fill=ink, width=max(2, size // 10))
        draw.line([(size * 0.32, size * 0.6), (size * 0.68, size * 0.6)], fill=ink, width=max(2, size // 10))
    return image


def make_image_seeds(folder):
    from PIL import Image, features

    folder.mkdir(parents=True, exist_ok=True)
    gray = character(64, "A")
    rgb = Image.merge("RGB", [gray.point(lambda v: v), gray.point(lambda v: v // 2 + 100),
                              gray.point(lambda v: 255 - (255 - v) // 3)])
    rgba = Image.new("RGBA", gray.size, (0, 0, 0, 0))
    rgba.putalpha(gray.point(lambda v: 255 - v))
    palette = gray.convert("P")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    arrays = np.asarray(gray)
    frames = [character(48, "B"), character(48, "C")]
    seeds = {
        "char-L.png": lambda p: gray.save(p),
        "char-light.png": lambda p: character(64, "K", light_ink=True).save(p),
        "char-RGB.png": lambda p: rgb.save(p),
        "char-RGBA.png": lambda p: rgba.save(p),
        "char-P.png": lambda p: palette.save(p, transparency=255),
        "char-1.png": lambda p: gray.convert("1").save(p),
        "char-I16.png": lambda p: Image.fromarray(arrays.astype(np.uint16) * 257).save(p),
        "char.jpg": lambda p: rgb.save(p, quality=90),
        "char-gray.jpg": lambda p: gray.save(p, quality=85),
        "char-exif.jpg": lambda p: gray.save(p, exif=exif),
        "char.bmp": lambda p: rgb.save(p),
        "char.gif": lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=50),
        "char-F.tif": lambda p: Image.fromarray(arrays.astype(np.float32) / 255).save(p),
        "char-lzw.tif": lambda p: gray.save(p, compression="tiff_lzw"),
        "char.ppm": lambda p: rgb.save(p),
    }
    if features.check("webp"):
        seeds["char.webp"] = lambda p: rgb.save(p, quality=80)
    for name, save in seeds.items():
        save(folder / name)
    return sorted(seeds)


def rezip(data, compression):
    """The zip in ``data`` with every member recompressed with ``compression``."""
    members = read_members(data)
    return build_zip([(name, body, compression) for name, body, _ in members])


def make_seeds(workdir):
    """Write every seed file under ``workdir/seeds`` and return the manifest (also saved as JSON)."""
    from tinynet.checkpoint import load_checkpoint, save_checkpoint
    from toydata import write_toy_dataset

    seeds = workdir / "seeds"
    data = write_toy_dataset(seeds / "data", n_train=200, n_test=20, gz=False)
    run = subprocess.run(
        [sys.executable, "train.py", "--data-dir", str(data), "--dataset", "tiny", "--epochs", "1",
         "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9", "--val-fraction", "0.2",
         "--runs-dir", str(seeds), "--name", "run", "--no-progress", "--no-download"],
        cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"fuzz.py: the seed training run failed:\n{run.stdout}{run.stderr}")
    model, meta, optimizer, _ = load_checkpoint(seeds / "run" / "last.npz")
    save_checkpoint(seeds / "ckpt-extra.npz", model, meta["architecture"], meta["classes"], meta,
                    optimizer, {"order": np.arange(160)})
    (seeds / "ckpt-deflated.npz").write_bytes(
        rezip((seeds / "run" / "last.npz").read_bytes(), zipfile.ZIP_DEFLATED))
    images = make_image_seeds(seeds / "images")
    npy = seeds / "npy"
    npy.mkdir()
    test_images = np.zeros((3, 28, 28), np.uint8)
    test_images[:, 8:20, 10:18] = 255
    np.save(npy / "u8.npy", test_images)
    np.save(npy / "f32.npy", (test_images[:2] / 255).astype(np.float32))
    np.save(npy / "one.npy", test_images[0])
    manifest = {"seeds": str(seeds), "data": str(data), "run": str(seeds / "run"),
                "checkpoints": ["run/last.npz", "ckpt-extra.npz", "ckpt-deflated.npz"],
                "images": images, "npy": ["u8.npy", "f32.npy", "one.npy"],
                "markers": str(workdir / "markers")}
    (workdir / "markers").mkdir()
    (workdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# ----------------------------------------------------------------------------------------------
# Byte-level helpers


class Marker:
    """Unpickling this creates the file ``path``: proof that something was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def npy_bytes(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_raw(descr, shape, body, fortran=False, version=(1, 0), header_text=None):
    """A .npy file with any header (even a lying one) in front of ``body``."""
    text = header_text if header_text is not None else (
        "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran, tuple(shape)))
    size_fmt = "<H" if version[0] == 1 else "<I"
    prefix = 6 + 2 + struct.calcsize(size_fmt)
    pad = -(prefix + len(text) + 1) % 64
    header = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY" + bytes(version) + struct.pack(size_fmt, len(header)) + header + body


def npy_split(data):
    """(version, header length field offset, header end) of a .npy file's bytes."""
    major = data[6]
    if major == 1:
        (length,) = struct.unpack("<H", data[8:10])
        return major, 8, 10 + length
    (length,) = struct.unpack("<I", data[8:12])
    return major, 8, 12 + length


def read_members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i), i.compress_type) for i in z.infolist()]


def build_zip(members):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are one of the mutations
        with zipfile.ZipFile(buf, "w") as z:
            for name, body, compression in members:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = compression
                z.writestr(info, body)
    return buf.getvalue()


def flip_bits(rng, data, lo=0, hi=None):
    b = bytearray(data)
    hi = len(b) if hi is None else min(hi, len(b))
    if hi <= lo:
        return bytes(b), "nothing to flip"
    n = rng.choice((1, 1, 1, 2, 3, 8, 32))
    for _ in range(n):
        b[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    return bytes(b), f"{n} bits flipped in [{lo}, {hi})"


def random_bytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def generic(rng, mutation, data, other):
    """Format-blind damage to ``data``; ``other`` is some other valid file (for splices)."""
    n = len(data)
    if mutation == "truncate":
        cut = rng.randrange(n) if n else 0
        return data[:cut], f"cut to {cut} of {n} bytes"
    if mutation == "bitflip":
        return flip_bits(rng, data)
    if mutation == "header_bitflip":
        return flip_bits(rng, data, 0, rng.choice((16, 64, 256)))
    if mutation == "bytes":
        b = bytearray(data)
        k = rng.choice((1, 4, 16, 256))
        value = rng.choice((None, 0x00, 0xFF))
        for _ in range(k):
            if b:
                b[rng.randrange(len(b))] = rng.getrandbits(8) if value is None else value
        return bytes(b), f"{k} bytes overwritten"
    if mutation == "insert":
        at, k = rng.randrange(n + 1), rng.choice((1, 7, 100, 5000))
        return data[:at] + random_bytes(rng, k) + data[at:], f"{k} bytes inserted at {at}"
    if mutation == "delete":
        at = rng.randrange(n) if n else 0
        k = rng.choice((1, 3, 64, 4096))
        return data[:at] + data[at + k:], f"{k} bytes deleted at {at}"
    if mutation == "trailing":
        k = rng.choice((1, 16, 1000))
        return data + random_bytes(rng, k), f"{k} bytes appended"
    if mutation == "random":
        k = rng.choice((1, 3, 8, 64, 1000, 20000))
        return random_bytes(rng, k), f"{k} random bytes"
    if mutation == "empty":
        return b"", "empty file"
    if mutation == "splice":
        a, b = rng.randrange(n + 1), rng.randrange(len(other) + 1)
        return data[:a] + other[b:], f"first {a} bytes, then another file from {b}"
    raise AssertionError(mutation)


# ----------------------------------------------------------------------------------------------
# Case generation (deterministic: depends only on the seed and the case number)


class Case:
    def __init__(self, index, kind, mutation, filename, data, note="", role=None, resume=False,
                 seed_name=""):
        self.index, self.kind, self.mutation = index, kind, mutation
        self.filename, self.data, self.note, self.role = filename, data, note, role
        self.resume, self.seed_name = resume, seed_name


class Generator:
    def __init__(self, manifest, seed):
        self.m = manifest
        self.seed = seed
        self.root = Path(manifest["seeds"])
        self.cache = {}

    def read(self, rel):
        if rel not in self.cache:
            self.cache[rel] = (self.root / rel).read_bytes()
        return self.cache[rel]

    def marker(self, index):
        return Path(self.m["markers"]) / f"UNPICKLED-case{index}"

    def any_other(self, rng):
        """Bytes of a random valid file of any kind."""
        choices = ([f"images/{n}" for n in self.m["images"]] + self.m["checkpoints"]
                   + [f"npy/{n}" for n in self.m["npy"]]
                   + ["data/tiny-test-images-idx3-ubyte", "data/tiny-test-labels-idx1-ubyte",
                      "data/tiny-mapping.txt"])
        name = rng.choice(choices)
        return self.read(name), name

    def case(self, index, kinds):
        rng = random.Random(f"tinynet-fuzz:{self.seed}:{index}")
        weights = [w if k in kinds else 0 for k, w in zip(KINDS, KIND_WEIGHTS)]
        kind = rng.choices(KINDS, weights)[0]
        return getattr(self, f"gen_{kind}")(rng, index)

    # IDX files and the mapping --------------------------------------------------------------

    def gen_idx(self, rng, index):
        role = rng.choices(("images", "labels", "mapping"), (9, 9, 2))[0]
        if role == "mapping":
            data = self.read("data/tiny-mapping.txt")
            mutation = rng.choice(MAPPING_MUTATIONS)
            if mutation in GENERIC:
                data, note = generic(rng, mutation, data, self.any_other(rng)[0])
            else:
                data, note = self.mapping_mutation(rng, mutation, data)
            return Case(index, "idx", mutation, "tiny-mapping.txt", data, note, role)
        ndim = 3 if role == "images" else 1
        plain = self.read(f"data/tiny-test-{role}-idx{ndim}-ubyte")
        gz = rng.random() < 0.5
        mutation = rng.choice(IDX_MUTATIONS + (GZ_MUTATIONS if gz else ()))
        if mutation in GZ_MUTATIONS:
            data, note = self.gz_mutation(rng, mutation, gzip.compress(plain, mtime=0))
        else:
            if mutation in GENERIC:
                data, note = generic(rng, mutation, plain, self.any_other(rng)[0])
            else:
                data, note = self.idx_mutation(rng, mutation, plain, role)
            if gz:
                data = gzip.compress(data, mtime=0)
                note += ", then gzipped"
        filename = f"tiny-test-{role}-idx{ndim}-ubyte" + (".gz" if gz else "")
        return Case(index, "idx", mutation + ("+gz" if gz and mutation not in GZ_MUTATIONS else ""),
                    filename, data, note, role)

    def idx_mutation(self, rng, mutation, data, role):
        ndim = 3 if role == "images" else 1
        dims = list(struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim]))
        body = data[4 + 4 * ndim:]

        def header(magic, dims):
            return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)

        magic = 2051 if role == "images" else 2049
        if mutation == "magic":
            new = rng.choice((rng.getrandbits(32), 2049 if role == "images" else 2051, 0x03080000,
                              0x0D03, 0x0804, 0x0802, 0))
            return header(new, dims) + body, f"magic {new}"
        if mutation == "dims":
            i = rng.randrange(ndim)
            dims[i] = rng.choice((0, 1, 27, 29, 2**31, 2**32 - 1, rng.getrandbits(32), rng.randrange(100)))
            return header(magic, dims) + body, f"dims {dims}"
        if mutation == "huge":  # a header claiming ~10^12 items (labels: the most 32 bits hold)
            if role == "images":
                dims = [rng.choice((1_275_510_205, 2**32 - 1)), 28, 28]
            else:
                dims = [rng.choice((10**9, 2**32 - 1))]
            return header(magic, dims) + body, f"dims {dims}"
        if mutation == "count":
            dims[0] = max(0, dims[0] + rng.choice((-1, 1, -dims[0], 1000)))
            return header(magic, dims) + body, f"count {dims[0]}"
        if mutation == "swap":
            other = "labels-idx1" if role == "images" else "images-idx3"
            return self.read(f"data/tiny-test-{other}-ubyte"), f"the {other} file instead"
        if mutation == "foreign":
            data, name = self.any_other(rng)
            return data, f"contents of {name}"
        raise AssertionError(mutation)

    def gz_mutation(self, rng, mutation, comp):
        if mutation == "gz_truncate":
            cut = rng.randrange(len(comp))
            return comp[:cut], f"gzip cut to {cut} of {len(comp)} bytes"
        if mutation == "gz_bitflip":
            return flip_bits(rng, comp, 10, len(comp) - 8)
        if mutation == "gz_header":
            return flip_bits(rng, comp, 0, 10)
        if mutation == "gz_crc":
            return flip_bits(rng, comp, len(comp) - 8)
        if mutation == "gz_concat":
            return comp + gzip.compress(random_bytes(rng, rng.choice((0, 5, 500)))), "two gzip members"
        if mutation == "gz_garbage":
            return comp + random_bytes(rng, rng.choice((1, 9, 300))), "garbage after the gzip stream"
        raise AssertionError(mutation)

    def mapping_mutation(self, rng, mutation, data):
        if mutation == "nonascii":
            at = rng.randrange(len(data))
            return data[:at] + rng.choice((b"\xff\xfe", "é".encode(), b"\x00")) + data[at:], "non-ASCII"
        if mutation == "bigcode":
            line = rng.choice((b"0 1114112\n", b"0 -5\n", b"0 99999999999999999999999\n", b"0 1e3\n"))
            return line + data.split(b"\n", 1)[1], f"line {line!r}"
        if mutation == "gap":
            return b"0 65\n1 66\n3 68\n", "labels 0, 1, 3"
        if mutation == "oversized":
            return b"0 65\n" * 300_000, "1.5 MB of lines"
        if mutation == "fields":
            line = rng.choice((b"0\n", b"zero A\n", b"\t \n" * 3, b"0 65 extra words\n"))
            return line + data, f"line {line!r}"
        raise AssertionError(mutation)

    # images -----------------------------------------------------------------------------------

    def gen_image(self, rng, index):
        from PIL import Image

        mutation = rng.choice(IMAGE_MUTATIONS)
        names = self.m["images"]
        wanted = {"png_dims": ".png", "png_chunk": ".png", "jpeg_sof": ".jpg", "bmp_header": ".bmp",
                  "gif_dims": ".gif", "exif": ".jpg"}.get(mutation)
        seed = rng.choice([n for n in names if wanted is None or n.endswith(wanted)])
        data = self.read(f"images/{seed}")
        filename = seed
        if mutation in GENERIC:
            data, note = generic(rng, mutation, data, self.any_other(rng)[0])
        elif mutation == "png_dims":
            w, h = rng.choice(((0, 0), (0, 50), (1, 1), (2**31 - 1, 2**31 - 1), (100_000, 100_000),
                               (9000, 9000), (65535, 1), (50, 2**31 - 1), (64, 65)))
            data = set_png_chunk(data, b"IHDR", lambda d: struct.pack(">II", w, h) + d[8:])
            note = f"IHDR says {w}x{h}"
        elif mutation == "png_chunk":
            chunks = [c for c, _, _ in png_chunks(data)]
            target = rng.choice(chunks)
            k = rng.choice((1, 4, 32))

            def damage(d):
                b = bytearray(d)
                for _ in range(k):
                    if b:
                        b[rng.randrange(len(b))] = rng.getrandbits(8)
                return bytes(b)

            data = set_png_chunk(data, target, damage)
            note = f"{k} bytes of {target.decode()} overwritten, CRC fixed"
        elif mutation == "jpeg_sof":
            at = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
            b = bytearray(data)
            field_ = rng.choice(("precision", "height", "width", "components"))
            value = rng.choice((0, 1, 3, 255, 65535, rng.getrandbits(16)))
            offset, fmt = {"precision": (4, ">B"), "height": (5, ">H"), "width": (7, ">H"),
                           "components": (9, ">B")}[field_]
            struct.pack_into(fmt, b, at + offset, value & (0xFF if fmt == ">B" else 0xFFFF))
            data, note = bytes(b), f"SOF {field_} = {value}"
        elif mutation == "bmp_header":
            b = bytearray(data)
            field_, offset, fmt = rng.choice((("width", 18, "<i"), ("height", 22, "<i"),
                                              ("bpp", 28, "<H"), ("compression", 30, "<I"),
                                              ("data offset", 10, "<I"), ("header size", 14, "<I")))
            value = rng.choice((0, 1, -1, 2**15, 2**31 - 1, -(2**31), 7, 33))
            if fmt != "<i":
                value &= 0xFFFF if fmt == "<H" else 0xFFFFFFFF
            struct.pack_into(fmt, b, offset, value)
            data, note = bytes(b), f"BMP {field_} = {value}"
        elif mutation == "gif_dims":
            b = bytearray(data)
            w, h = rng.choice(((0, 0), (65535, 65535), (1, 65535), (rng.getrandbits(16), rng.getrandbits(16))))
            at = data.find(b"\x2c") if rng.random() < 0.5 else 2  # image descriptor, or the screen
            struct.pack_into("<HH", b, at + 5 if at != 2 else 6, w, h)
            data, note = bytes(b), f"GIF {'image' if at != 2 else 'screen'} dims {w}x{h}"
        elif mutation == "wrong_ext":
            data, name = self.any_other(rng)
            filename = "file" + rng.choice(IMAGE_EXTS)
            note = f"contents of {name}"
        elif mutation == "tiny":
            w, h = rng.randint(1, 4), rng.randint(1, 4)
            mode = rng.choice(("L", "RGB", "RGBA", "F", "I;16", "1"))
            pixels = np.random.default_rng(rng.getrandbits(32)).random((h, w))
            image = image_from_unit(pixels, mode)
            filename = "tiny.tif" if mode == "F" else "tiny.png"
            data, note = image_bytes(image, filename), f"{w}x{h} {mode}"
        elif mutation == "blank":
            w, h = rng.randint(1, 200), rng.randint(1, 200)
            image = Image.new("L", (w, h), rng.randrange(256))
            filename = "blank.png"
            data, note = image_bytes(image, filename), f"uniform {w}x{h}"
        elif mutation == "nonfinite":
            a = np.asarray(character(40), dtype=np.float32) / 255
            g = np.random.default_rng(rng.getrandbits(32))
            value = rng.choice((np.nan, np.inf, -np.inf))
            if rng.random() < 0.3:
                a[:] = value
            else:
                a.flat[g.integers(0, a.size, rng.choice((1, 10, 400)))] = value
            filename = "float.tif"
            data, note = image_bytes(Image.fromarray(a), filename), f"float image with {value}"
        elif mutation == "exif":
            image = Image.open(io.BytesIO(data))
            exif = Image.Exif()
            value = rng.choice((0, 1, 3, 5, 8, 9, 255, 65535))
            exif[0x0112] = value
            data, note = image_bytes(image, filename, exif=exif), f"EXIF orientation {value}"
        else:
            raise AssertionError(mutation)
        return Case(index, "image", mutation, filename, data, note, seed_name=seed)

    # checkpoints ------------------------------------------------------------------------------

    def gen_checkpoint(self, rng, index):
        weights = [CHECKPOINT_WEIGHTS.get(m, 1) for m in CHECKPOINT_MUTATIONS]
        mutation = rng.choices(CHECKPOINT_MUTATIONS, weights)[0]
        seed = rng.choices(self.m["checkpoints"], (6, 2, 2))[0]
        data = self.read(seed)
        resume = mutation == "resume_state" or (seed != "ckpt-extra.npz" and rng.random() < 0.1)
        filename = "last.npz"
        if mutation in GENERIC:
            data, note = generic(rng, mutation, data, self.any_other(rng)[0])
        elif mutation == "foreign":
            data, note = self.any_other(rng)
            note = f"contents of {note}"
        elif mutation == "zip_struct":  # flip bits where zip headers live: local headers, the central directory
            end = data.rfind(b"PK\x05\x06")
            cd = data.rfind(b"PK\x01\x02", 0, end)
            regions = [(0, 64), (max(0, cd - 2000), len(data)), (end, len(data))]
            lo, hi = rng.choice(regions)
            data, note = flip_bits(rng, data, lo, hi)
        elif mutation == "pickle_file":
            data = pickle.dumps(Marker(self.marker(index)), protocol=rng.randrange(6))
            note = "a pickle, not a zip"
        elif mutation == "npz_of_pickles":
            members = read_members(data)
            evil = npy_bytes(np.array([Marker(self.marker(index))], dtype=object), allow_pickle=True)
            data = build_zip([(name, evil, zipfile.ZIP_STORED) for name, _, _ in members])
            note = "every member a pickled object array"
        else:
            data, note, resume2 = self.member_mutation(rng, mutation, data, index)
            resume = resume or resume2
        if mutation == "recompress" and rng.random() < 0.1:
            filename = "model" + rng.choice((".png", ".bin", ""))
        return Case(index, "checkpoint", mutation, filename, data, note, resume=resume, seed_name=seed)

    def member_mutation(self, rng, mutation, data, index):
        members = [list(m) for m in read_members(data)]
        names = [m[0] for m in members]
        meta = json.loads(str(np.load(io.BytesIO(dict((n, b) for n, b, _ in members)["metadata.npy"]))))

        def pick(prefer=None):
            pool = [i for i, n in enumerate(names) if prefer is None or n.startswith(prefer)]
            return rng.choice(pool or list(range(len(names))))

        def load(i):
            return np.load(io.BytesIO(members[i][1]), allow_pickle=False)

        def set_meta(new_meta, raw=None):
            i = names.index("metadata.npy")
            members[i][1] = raw if raw is not None else npy_bytes(np.array(json.dumps(new_meta)))

        resume = False
        if mutation == "pickled_member":
            i = pick(rng.choice((None, "metadata", "extra", "optimizer")))
            members[i][1] = npy_bytes(np.array([Marker(self.marker(index))], dtype=object), allow_pickle=True)
            note = f"{names[i]} is a pickled object array"
        elif mutation == "dtype":
            i = pick()
            a = load(i)
            dtype = rng.choice(("<f8", "<f2", ">f4", "<i4", "<i8", "|u1", "|b1", "<c8", "<U3", "|S4",
                                "|V8", "<M8[s]", "<m8[s]", "struct"))
            if dtype == "struct":
                b = np.zeros(a.shape, dtype=[("a", "<f4"), ("b", "<f4")])
            elif dtype in ("|V8", "<M8[s]", "<m8[s]", "<U3", "|S4") or a.dtype.kind == "U":
                b = np.zeros(a.shape, dtype=dtype)  # the JSON text of ``metadata`` casts to no number
            else:
                b = a.astype(dtype)
            members[i][1] = npy_bytes(b)
            note = f"{names[i]} as {dtype}"
        elif mutation == "shape":
            i = pick()
            a = load(i)
            shapes = [(a.size,), (1,) + a.shape, a.shape[::-1], (max(a.size // 2, 1),), (0,),
                      tuple(rng.randrange(1, 9) for _ in range(rng.randrange(1, 5)))]
            shape = rng.choice(shapes)
            members[i][1] = npy_bytes(np.resize(a.ravel() if a.ndim else a.reshape(1), shape).astype(a.dtype))
            note = f"{names[i]} reshaped to {shape}"
        elif mutation == "huge_shape":
            i = pick()
            _, _, end = npy_split(members[i][1])
            a = load(i)
            shape = rng.choice(((10**12,), (2**40, 2**40), (2**62, 4), (2**32, 2**32, 2**32), (0,),
                                (-1,), (), (2**63 - 1,)))
            descr = np.lib.format.dtype_to_descr(a.dtype)
            if names[i] == "metadata.npy" and rng.random() < 0.5:
                descr, shape = "<U1000000000", ()
            members[i][1] = npy_raw(descr, shape, members[i][1][end:])
            note = f"{names[i]} header claims {descr} {shape}"
        elif mutation == "npy_header":
            i = pick()
            body = bytearray(members[i][1])
            major, at, end = npy_split(body)
            how = rng.choice(("garbage", "version", "length", "literal", "object_struct", "long"))
            if how == "garbage":
                for _ in range(rng.choice((1, 3, 10))):
                    body[rng.randrange(at + 2, end)] = rng.choice(b"{}()[]',:0123456789 \n\x00\xffabc")
            elif how == "version":
                body[6:8] = bytes(rng.choice(((3, 0), (2, 0), (0, 0), (255, 255), (1, 1))))
            elif how == "length":
                struct.pack_into("<H", body, 8, rng.choice((0, 1, 65535, end - 10 + 64)))
            elif how == "literal":
                text = rng.choice(("{'descr': '<f4', 'fortran_order': True, 'shape': (500,), }",
                                   "{'descr': '<f4', 'fortran_order': False}",
                                   "{'descr': 'O', 'fortran_order': False, 'shape': (1,), }",
                                   "[1, 2, 3]", "{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,), }",
                                   "{'descr': 12, 'fortran_order': 0, 'shape': 'x', }",
                                   "__import__('os').system('touch %s')" % self.marker(index)))
                body = bytearray(npy_raw(None, None, bytes(body[end:]), header_text=text))
            elif how == "long":  # numpy refuses headers over 10,000 characters (a multi-line message)
                text = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }" + " " * 20_000
                body = bytearray(npy_raw(None, None, bytes(body[end:]), version=(2, 0), header_text=text))
            else:
                body = bytearray(npy_raw([("a", "O")], (1,), bytes(body[end:])))
            members[i][1] = bytes(body)
            note = f"{names[i]} header: {how}"
        elif mutation == "missing":
            i = pick()
            note = f"{names[i]} dropped"
            del members[i]
        elif mutation == "duplicate":
            i = pick()
            a = load(i)
            evil = npy_bytes(np.array([Marker(self.marker(index))], dtype=object), allow_pickle=True)
            other = rng.choice((npy_bytes(np.zeros_like(a)), b"junk", evil))
            members.insert(rng.randrange(len(members) + 1), [names[i], other, zipfile.ZIP_STORED])
            note = f"a second {names[i]}"
        elif mutation == "extra_member":
            name = rng.choice(("extra.evil.npy", "extra.order.npy", "notes.txt", "evil.npy", "../x.npy"))
            body = rng.choice((npy_bytes(np.array([Marker(self.marker(index))], dtype=object), allow_pickle=True),
                               npy_bytes(np.zeros(3, np.float32)), b"hello", npy_bytes(np.array("text"))))
            members.append([name, body, zipfile.ZIP_STORED])
            note = f"an added member {name}"
        elif mutation == "nan":
            i = pick(rng.choice(("conv", "fc", "optimizer")))
            a = load(i).copy()
            if a.dtype.kind == "f" and a.size:
                a.flat[np.random.default_rng(rng.getrandbits(32)).integers(0, a.size, 3)] = \
                    rng.choice((np.nan, np.inf, -np.inf))
            members[i][1] = npy_bytes(a)
            note = f"non-finite values in {names[i]}"
        elif mutation == "metadata":
            note = self.metadata_mutation(rng, meta, set_meta)
        elif mutation == "resume_state":
            note = self.resume_mutation(rng, meta, set_meta, members, names)
            resume = True
        elif mutation == "recompress":
            compression = rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA))
            members = [[n, b, compression] for n, b, _ in members]
            note = f"members recompressed with method {compression}"
        elif mutation == "corrupt_compressed":
            compression = rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA))
            data = build_zip([(n, b, compression) for n, b, _ in members])
            data, how = flip_bits(rng, data, 64, max(65, len(data) - 2000))
            return data, f"method {compression}, {how}", False
        elif mutation == "zip_bomb":
            return bomb_zip(members), f"extra.order: {BOMB_BYTES >> 20} MiB of deflated zeros", False
        else:
            raise AssertionError(mutation)
        return build_zip([tuple(m) for m in members]), note, resume

    def metadata_mutation(self, rng, meta, set_meta):
        how = rng.choice(("not_json", "json_list", "format", "version", "classes_mismatch",
                          "classes_types", "num_classes", "huge_classes", "architecture",
                          "deep_json", "big_int", "oversized", "as_bytes", "as_vector", "unicode"))
        meta = json.loads(json.dumps(meta))
        arch = meta["architecture"]
        if how == "not_json":
            set_meta(None, npy_bytes(np.array(rng.choice(("{not json", "", "nul\x00", "{\"a\": ")))))
        elif how == "json_list":
            set_meta(None, npy_bytes(np.array(rng.choice(("[1, 2]", "null", "3", "\"text\"")))))
        elif how == "format":
            meta["format"] = rng.choice(("other", None, 1))
            set_meta(meta)
        elif how == "version":
            meta["format_version"] = rng.choice((2, "1", None, 1.5, 0))
            set_meta(meta)
        elif how == "classes_mismatch":
            meta["classes"] = meta["classes"][:-1]
            set_meta(meta)
        elif how == "classes_types":
            meta["classes"] = rng.choice(([None, 1, {"a": 1}, [], "E"], "ABCDE", [1, 2, 3, 4, 5]))
            set_meta(meta)
        elif how == "num_classes":
            value = rng.choice((0, -1, 2.5, "5", True, None, 10**30, 5.0))
            arch["num_classes"] = value
            if isinstance(value, int) and 0 <= value <= 100:
                meta["classes"] = [chr(65 + k % 26) for k in range(value)]
            set_meta(meta)
        elif how == "huge_classes":
            arch["num_classes"] = HUGE_CLASSES
            meta["classes"] = [""] * HUGE_CLASSES
            set_meta(meta)
        elif how == "architecture":
            which = rng.choice(("name", "string", "missing", "dropout", "dropout_type", "extra_key"))
            if which == "name":
                arch["name"] = "resnet"
            elif which == "string":
                meta["architecture"] = "lenet"
            elif which == "missing":
                del meta["architecture"]
            elif which == "dropout":
                arch["dropout"] = rng.choice((1.5, -0.1, float("nan"), 1.0))
            elif which == "dropout_type":
                arch["dropout"] = rng.choice(("x", [0.1], {"p": 0.1}))
            else:
                arch["init"] = "he"
            set_meta(meta)
        elif how == "deep_json":
            depth = 100_000
            set_meta(None, npy_bytes(np.array("[" * depth + "]" * depth)))
        elif how == "big_int":
            text = json.dumps(meta)[:-1] + ', "x": 1' + "9" * 6000 + "}"
            set_meta(None, npy_bytes(np.array(text)))
        elif how == "oversized":
            meta["padding"] = "x" * 10_500_000
            set_meta(meta)
        elif how == "as_bytes":
            set_meta(None, npy_bytes(np.array(json.dumps(meta).encode())))
        elif how == "as_vector":
            set_meta(None, npy_bytes(np.array([json.dumps(meta), "x"])))
        else:
            meta["classes"][0] = rng.choice(("\ud800", "\x00", "é" * 100, "\n"))
            set_meta(meta)
        return f"metadata: {how}"

    def resume_mutation(self, rng, meta, set_meta, members, names):
        how = rng.choice(("no_training", "training_type", "field_type", "negative", "history",
                          "no_rng", "rng_garbage", "order_float", "order_range", "order_length",
                          "epoch_ahead", "batch_ahead"))
        meta = json.loads(json.dumps(meta))
        state = meta.get("training", {})
        if how == "no_training":
            meta.pop("training", None)
        elif how == "training_type":
            meta["training"] = rng.choice(([], "x", None, 3))
        elif how == "field_type":
            state[rng.choice(("epoch", "step", "batch", "best_val_accuracy", "history"))] = \
                rng.choice(("x", None, [], 1.5, {}))
        elif how == "negative":
            state[rng.choice(("epoch", "step", "batch"))] = -rng.choice((1, 10**6))
        elif how == "history":
            state["history"] = rng.choice(([{}], [1, 2], [{"epoch": 1}], "x"))
        elif how == "no_rng":
            meta.pop("rng_state", None)
        elif how == "rng_garbage":
            rng_state = meta.get("rng_state", {})
            name = rng.choice(("init", "shuffle", "augment", "dropout"))
            rng_state[name] = rng.choice(({}, {"bit_generator": "MT19937"}, "x",
                                          {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}}))
        elif how in ("order_float", "order_range", "order_length"):
            train = 160
            order = {"order_float": np.arange(train, dtype=np.float64) + 0.5,
                     "order_range": np.arange(train) + 10**6,
                     "order_length": np.arange(3)}[how]
            members.append(["extra.order.npy", npy_bytes(order), zipfile.ZIP_STORED])
            state["batch"] = 1
        elif how == "epoch_ahead":
            state["epoch"] = rng.choice((5, 10**6))
        elif how == "batch_ahead":
            state["batch"] = rng.choice((10**6, 3))
        set_meta(meta)
        return f"training state: {how}"

    # .npy arrays ------------------------------------------------------------------------------

    def gen_npy(self, rng, index):
        seed = rng.choice(self.m["npy"])
        data = self.read(f"npy/{seed}")
        mutation = rng.choice(NPY_MUTATIONS)
        _, _, end = npy_split(data)
        a = np.load(io.BytesIO(data))
        if mutation in GENERIC:
            data, note = generic(rng, mutation, data, self.any_other(rng)[0])
        elif mutation == "huge_shape":
            shape = rng.choice(((10**10, 28, 28), (10**6, 28, 28), (2**62, 28, 28), (2**40, 2**40),
                                (-1, 28, 28), (0, 28, 28)))
            data = npy_raw(np.lib.format.dtype_to_descr(a.dtype), shape, data[end:])
            note = f"header claims {shape}"
        elif mutation == "pickled":
            data = npy_bytes(np.array([Marker(self.marker(index))], dtype=object), allow_pickle=True)
            note = "a pickled object array"
        elif mutation == "dtype":
            dtype = rng.choice(("<f8", "<f2", "<i4", "|b1", "<c8", "<U3", "|V8", "<M8[s]"))
            b = np.zeros(a.shape, dtype) if dtype in ("|V8", "<M8[s]", "<U3") else a.astype(dtype)
            data, note = npy_bytes(b), f"dtype {dtype}"
        elif mutation == "shape":
            shape = rng.choice(((28,), (2, 28, 27), (1, 1, 28, 28), (0,), (3, 0, 28)))
            data, note = npy_bytes(np.zeros(shape, a.dtype)), f"shape {shape}"
        elif mutation == "npy_header":
            b = bytearray(data)
            if rng.random() < 0.2:  # numpy refuses headers over 10,000 characters
                text = "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 28, 28), }" + " " * 20_000
                data, note = npy_raw(None, None, data[end:], version=(2, 0), header_text=text), "20 kB header"
            else:
                for _ in range(rng.choice((1, 3, 10))):
                    b[rng.randrange(8, end)] = rng.choice(b"{}()[]',:0123456789 \n\x00\xffabc")
                data, note = bytes(b), "header bytes overwritten"
        elif mutation == "version":
            b = bytearray(data)
            b[6:8] = bytes(rng.choice(((2, 0), (3, 0), (0, 0), (255, 255), (1, 1))))
            data, note = bytes(b), f"format version {b[6]}.{b[7]}"
        elif mutation == "fortran":
            data, note = npy_bytes(np.asfortranarray(a)), "Fortran order"
        elif mutation == "nonfinite":
            f = (a / 255 if a.dtype == np.uint8 else a).astype(np.float32)
            f.flat[0] = rng.choice((np.nan, np.inf, -np.inf))
            data, note = npy_bytes(f), "non-finite value"
        elif mutation == "foreign":
            data, note = self.any_other(rng)
            note = f"contents of {note}"
        else:
            raise AssertionError(mutation)
        return Case(index, "npy", mutation, "input.npy", data, note, seed_name=seed)


def png_chunks(data):
    """(type, data offset, length) of each chunk of a PNG."""
    at, out = 8, []
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        out.append((data[at + 4:at + 8], at + 8, length))
        at += 12 + length
    return out


def set_png_chunk(data, kind, change):
    """The PNG with chunk ``kind``'s data replaced by ``change(data)``, its CRC made valid."""
    for ctype, start, length in png_chunks(data):
        if ctype == kind:
            new = change(data[start:start + length])
            chunk = struct.pack(">I", len(new)) + ctype + new + struct.pack(">I", zlib.crc32(ctype + new))
            return data[:start - 8] + chunk + data[start + length + 4:]
    return data


def image_from_unit(pixels, mode):
    from PIL import Image

    if mode == "F":
        return Image.fromarray(pixels.astype(np.float32))
    if mode == "I;16":
        return Image.fromarray((pixels * 65535).astype(np.uint16))
    gray = Image.fromarray((pixels * 255).astype(np.uint8))
    return gray.convert(mode)


def image_bytes(image, filename, **options):
    buf = io.BytesIO()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".tif": "TIFF", ".bmp": "BMP", ".gif": "GIF",
           ".webp": "WEBP", ".ppm": "PPM"}[Path(filename).suffix]
    if fmt == "JPEG" and image.mode not in ("L", "RGB", "CMYK"):
        image = image.convert("RGB")
    image.save(buf, fmt, **options)
    return buf.getvalue()


_BOMB = {}


def bomb_zip(members):
    """The checkpoint's members plus ``extra.order.npy``: a real int64 array of BOMB_BYTES zeros,
    deflated to about a thousandth of that (made once per process)."""
    if "member" not in _BOMB:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            info = zipfile.ZipInfo("extra.order.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w", force_zip64=True) as f:
                f.write(npy_raw("<i8", (BOMB_BYTES // 8,), b""))
                zeros = bytes(1 << 24)
                for _ in range(BOMB_BYTES >> 24):
                    f.write(zeros)
        _BOMB["member"] = buf.getvalue()
    # Append the other members to the bomb's zip (keeps the precompressed member as it is).
    buf = io.BytesIO(_BOMB["member"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "a") as z:
            for name, body, compression in members:
                if name != "extra.order.npy":
                    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = compression
                    z.writestr(info, body)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# Worker: runs cases in-process (and the CLIs as subprocesses), reports one JSON line per case


def status():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmHWM", "VmRSS", "VmSize")}


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


class Worker:
    def __init__(self, workdir, args):
        from tinynet.checkpoint import CheckpointError
        from tinynet.data import DataError
        from tinynet.inference import InputError
        from tinynet.preprocess import ImageError

        self.errors = (DataError, ImageError, CheckpointError, InputError)
        self.workdir = Path(workdir)
        self.manifest = json.loads((self.workdir / "manifest.json").read_text())
        self.gen = Generator(self.manifest, args.seed)
        self.args = args
        self.kinds = tuple(args.kinds.split(","))
        self.limit = args.mem_limit_mb << 20
        self.can_reset = reset_peak()
        self.cases = Path(tempfile.mkdtemp(prefix=f"w{os.getpid()}-", dir=self.workdir))
        self.markers = Path(self.manifest["markers"])
        self.cli_baseline = 0

    # -- one call ----------------------------------------------------------------------------

    def call(self, entry, arg, fuzzed):
        """Run one library entry point; returns (outcome, detail)."""
        from tinynet.checkpoint import load_checkpoint
        from tinynet.data import load_split, read_idx_images, read_idx_labels, read_mapping
        from tinynet.inference import load_npy
        from tinynet.preprocess import preprocess_file

        functions = {"read_idx_images": read_idx_images, "read_idx_labels": read_idx_labels,
                     "read_mapping": read_mapping, "load_checkpoint": load_checkpoint,
                     "preprocess_file": preprocess_file, "load_npy": load_npy}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if entry == "load_split":
                    load_split(arg, "tiny", "test")
                elif entry == "train_resume":
                    return self.resume_in_process(arg, fuzzed)
                else:
                    functions[entry](arg)
        except self.errors as e:
            return self.judge_message(str(e), fuzzed)
        except Exception as e:  # noqa: BLE001 - anything else is what we are looking for
            frame = traceback.extract_tb(e.__traceback__)[-1]
            return "failure", (f"{type(e).__name__}: {one_line(str(e))[:300]} "
                               f"(at {Path(frame.filename).name}:{frame.lineno})")
        except SystemExit as e:
            return "failure", f"SystemExit({e.code}) from {entry}"
        shown = [w for w in caught if not issubclass(w.category, QUIET_WARNINGS)]
        if shown:  # Python would print it (two lines) on a command line's stderr
            return "failure", (f"{entry} let a {shown[0].category.__name__} out: "
                               f"{one_line(str(shown[0].message))[:200]}")
        return "ok", ""

    def judge_message(self, message, fuzzed):
        if "\n" in message or "\r" in message:
            return "failure", f"multi-line message: {message[:300]!r}"
        if str(fuzzed) not in message:
            return "failure", f"message does not name {fuzzed}: {message[:300]}"
        return "error", message

    def resume_in_process(self, run_dir, fuzzed):
        from tinynet.cli.train import main as train_main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = train_main(["--resume", str(run_dir), "--no-progress", "--no-download"])
        return self.judge_cli(code, err.getvalue(), fuzzed, "train_main --resume")

    def judge_cli(self, code, stderr, fuzzed, what):
        if "Traceback" in stderr:
            return "failure", f"{what}: traceback on stderr: {stderr[-400:]!r}"
        if code == 0:
            return "ok", ""
        if code != 1:
            return "failure", f"{what}: exit status {code}: {stderr[-300:]!r}"
        lines = [line for line in stderr.splitlines() if line.strip()]
        libtiff = [line for line in lines if LIBTIFF_LINE.match(line)]
        lines = [line for line in lines if not LIBTIFF_LINE.match(line)]
        stray = [line for line in lines if not line.startswith(CLI_PREFIXES)]
        if stray:
            return "failure", f"{what}: unexpected stderr lines {stray[:3]!r}"
        if not any(line.startswith("error: ") for line in lines):
            return "failure", f"{what}: exit 1 without an 'error: ' line: {stderr[-300:]!r}"
        if str(fuzzed) not in stderr:
            return "failure", f"{what}: stderr does not name {fuzzed}: {stderr[-300:]!r}"
        error = next(line for line in lines if str(fuzzed) in line)
        return "error", (f"[libtiff printed {libtiff[0]!r}] " if libtiff else "") + error

    def cli(self, argv, fuzzed, what):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        try:
            proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                                  timeout=self.args.timeout)
        except subprocess.TimeoutExpired:
            return "failure", f"{what}: still running after {self.args.timeout} s"
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        outcome = self.judge_cli(proc.returncode, proc.stderr, fuzzed, what)
        if peak > before and peak > self.cli_baseline + self.limit:
            return "failure", f"{what}: peak RSS {peak >> 20} MB (baseline {self.cli_baseline >> 20} MB)"
        return outcome

    # -- one case ----------------------------------------------------------------------------

    def materialise(self, case, folder):
        """Write the case's files into ``folder``; returns (fuzzed path, in-process calls, CLI runs)."""
        m = self.manifest
        seeds = Path(m["seeds"])
        good_ckpt = str(seeds / "run" / "last.npz")
        if case.kind == "idx":
            for name in ("tiny-test-images-idx3-ubyte", "tiny-test-labels-idx1-ubyte", "tiny-mapping.txt"):
                shutil.copy(seeds / "data" / name, folder / name)
            if case.filename.endswith(".gz"):
                (folder / case.filename.removesuffix(".gz")).unlink()
            path = folder / case.filename
            path.write_bytes(case.data)
            reader = {"images": "read_idx_images", "labels": "read_idx_labels",
                      "mapping": "read_mapping"}[case.role]
            images = next(folder.glob("tiny-test-images-idx3-ubyte*"))
            return path, [(reader, path), ("load_split", folder)], [
                (["inference.py", "--input", str(images), "--checkpoint", good_ckpt,
                  "--output-dir", str(folder / "out")], "inference.py --input IDX")]
        if case.kind == "image":
            path = folder / case.filename
            path.write_bytes(case.data)
            return path, [("preprocess_file", path)], [
                (["inference.py", "--input", str(path), "--checkpoint", good_ckpt], "inference.py --input IMAGE")]
        if case.kind == "npy":
            path = folder / case.filename
            path.write_bytes(case.data)
            return path, [("load_npy", path)], [
                (["inference.py", "--input", str(path), "--checkpoint", good_ckpt], "inference.py --input NPY")]
        run = folder / "run"
        run.mkdir()
        shutil.copy(seeds / "run" / "config.json", run / "config.json")
        path = run / case.filename
        path.write_bytes(case.data)
        calls = [("load_checkpoint", path)]
        cli = [(["inference.py", "--input", str(seeds / "images" / "char-L.png"), "--checkpoint", str(path)],
                "inference.py --checkpoint BAD")]
        if case.filename == "last.npz":
            if case.resume:
                calls.append(("train_resume", run))
            cli.append((["train.py", "--resume", str(run), "--no-progress", "--no-download"],
                        "train.py --resume RUN"))
        return path, calls, cli

    def run_case(self, index):
        case = self.gen.case(index, self.kinds)
        folder = self.cases / f"case{index}"
        folder.mkdir()
        result = {"index": index, "kind": case.kind, "mutation": case.mutation, "note": case.note,
                  "seed_file": case.seed_name, "size": len(case.data), "checks": []}
        try:
            path, calls, clis = self.materialise(case, folder)
            mutation = case.mutation
            del case  # the bytes (a deflate bomb, say) should not count against the case's memory
            result["file"] = str(path)
            for entry, arg in calls:
                gc.collect()
                base = status()
                self.set_address_limit(base["VmSize"] + self.limit + (1 << 30))
                self.can_reset and reset_peak()
                tracemalloc.start()  # sees allocations whose pages are never touched, unlike RSS
                started = time.perf_counter()
                try:
                    outcome, detail = self.call(entry, arg, path)
                finally:
                    traced = tracemalloc.get_traced_memory()[1]
                    tracemalloc.stop()
                    self.set_address_limit(None)
                seconds = time.perf_counter() - started
                grown = status()["VmHWM"] - base["VmRSS"]
                if grown > self.limit:
                    outcome, detail = "failure", f"peak RSS grew by {grown >> 20} MB ({detail})"
                elif traced > self.limit:
                    outcome, detail = "failure", f"allocated {traced >> 20} MB (traced) ({detail})"
                result["checks"].append({"entry": entry, "outcome": outcome, "detail": detail,
                                         "seconds": round(seconds, 3), "peak_mb": max(grown, traced) >> 20})
            if self.args.cli_every and (index % self.args.cli_every == 0 or mutation in FORCE_CLI):
                for argv, what in clis:
                    started = time.perf_counter()
                    outcome, detail = self.cli(argv, path, what)
                    result["checks"].append({"entry": what, "outcome": outcome, "detail": detail,
                                             "seconds": round(time.perf_counter() - started, 3), "cli": True})
            marks = list(self.markers.iterdir())
            if marks:
                result["checks"].append({"entry": "marker", "outcome": "failure",
                                         "detail": f"code ran: unpickling created {marks[0].name}"})
                for mark in marks:
                    mark.unlink()
        finally:
            if self.args.keep and any(c["outcome"] == "failure" for c in result["checks"]):
                keep = Path(self.args.keep) / f"case{index}"
                shutil.copytree(folder, keep, dirs_exist_ok=True)
                result["kept"] = str(keep)
            shutil.rmtree(folder, ignore_errors=True)
        return result

    def set_address_limit(self, limit):
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if limit is None:
            resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        else:
            resource.setrlimit(resource.RLIMIT_AS, (min(limit, hard) if hard != resource.RLIM_INFINITY
                                                    else limit, hard))

    def self_check(self):
        """Every seed must load cleanly; returns a list of problems (empty when all is well)."""
        from tinynet.checkpoint import load_checkpoint
        from tinynet.data import load_split
        from tinynet.inference import load_npy
        from tinynet.preprocess import preprocess_file

        seeds = Path(self.manifest["seeds"])
        problems = []
        checks = ([(load_split, seeds / "data")]
                  + [(load_checkpoint, seeds / c) for c in self.manifest["checkpoints"]]
                  + [(preprocess_file, seeds / "images" / n) for n in self.manifest["images"]]
                  + [(load_npy, seeds / "npy" / n) for n in self.manifest["npy"]])
        for function, path in checks:
            try:
                function(path, "tiny", "test") if function is load_split else function(path)
            except Exception as e:  # noqa: BLE001
                problems.append(f"seed {path}: {type(e).__name__}: {e}")
        proc = subprocess.run([sys.executable, "inference.py", "--input", str(seeds / "images" / "char-L.png"),
                               "--checkpoint", str(seeds / "run" / "last.npz")],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            problems.append(f"inference.py on a seed failed: {proc.stderr[-500:]}")
        self.cli_baseline = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        return problems


def one_line(text):
    return " ".join(text.split())


def worker_main(args):
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # whatever the library prints must not disturb the protocol
    worker = Worker(args.worker, args)
    proto.write(json.dumps({"ready": True, "problems": worker.self_check(),
                            "peak_reset": worker.can_reset}) + "\n")
    for line in sys.stdin:
        index = int(line)
        try:
            result = worker.run_case(index)
        except Exception:  # noqa: BLE001 - a bug in the harness itself: report it, keep going
            result = {"index": index, "kind": "?", "mutation": "?", "harness_error": traceback.format_exc(),
                      "checks": [{"entry": "harness", "outcome": "failure", "detail": "harness error"}]}
        proto.write(json.dumps(result) + "\n")
    return 0


# ----------------------------------------------------------------------------------------------
# Parent: makes the seeds, drives the workers, prints the tables


class WorkerProcess:
    def __init__(self, number, workdir, args):
        self.number = number
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", str(workdir),
                "--seed", str(args.seed), "--kinds", args.kinds, "--cli-every", str(args.cli_every),
                "--mem-limit-mb", str(args.mem_limit_mb), "--timeout", str(args.timeout)]
        if args.keep:
            argv += ["--keep", args.keep]
        self.log = open(Path(workdir) / f"worker{number}.log", "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, bufsize=1, cwd=ROOT)
        self.case = None
        self.started = None
        hello = self.proc.stdout.readline()
        if not hello:
            raise SystemExit(f"fuzz.py: worker {number} did not start; see {self.log.name}")
        self.hello = json.loads(hello)

    def send(self, index):
        self.case, self.started = index, time.monotonic()
        self.proc.stdin.write(f"{index}\n")
        self.proc.stdin.flush()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()

    def stop(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.log.close()


def parent_main(args):
    kinds = tuple(args.kinds.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="tinynet-fuzz-"))
    started = time.monotonic()
    print(f"fuzz.py: seed {args.seed}, {len(args.only) if args.only else args.cases} cases of "
          f"{', '.join(kinds)}; workers {args.workers}; CLI runs on every "
          f"{args.cli_every or 'no'}-th case; memory limit {args.mem_limit_mb} MB; work folder {workdir}")
    make_seeds(workdir)
    print(f"seeds ready ({time.monotonic() - started:.0f} s)", flush=True)
    todo = deque(args.only if args.only else range(args.cases))
    total = len(todo)
    workers = [WorkerProcess(i, workdir, args) for i in range(min(args.workers, total))]
    problems = workers[0].hello["problems"]
    if problems:
        for w in workers:
            w.kill()
        raise SystemExit("fuzz.py: the seeds themselves do not load cleanly:\n  " + "\n  ".join(problems))
    if not workers[0].hello["peak_reset"]:
        print("note: /proc/self/clear_refs is not writable: peak RSS is measured per worker, not per case")
    results = []
    selector = selectors.DefaultSelector()
    next_report = 100
    try:
        while todo or any(w.case is not None for w in workers):
            for w in workers:
                if w.case is None and todo:
                    w.send(todo.popleft())
                    selector.register(w.proc.stdout, selectors.EVENT_READ, w)
            for key, _ in selector.select(timeout=1.0):
                w = key.data
                line = w.proc.stdout.readline()
                selector.unregister(w.proc.stdout)
                if line:
                    results.append(json.loads(line))
                    w.case = None
                else:  # the worker died in the middle of a case
                    code = w.proc.wait()
                    results.append(dead_worker_result(w.case, f"worker died (exit status {code}) "
                                                              f"running the case; see {w.log.name}"))
                    workers[workers.index(w)] = WorkerProcess(w.number, workdir, args)
            now = time.monotonic()
            for i, w in enumerate(workers):
                if w.case is not None and now - w.started > args.timeout + 60:
                    selector.unregister(w.proc.stdout)
                    w.kill()
                    results.append(dead_worker_result(w.case, f"hang: no result after {now - w.started:.0f} s"))
                    workers[i] = WorkerProcess(w.number, workdir, args)
            if len(results) >= next_report:
                failed = sum(case_outcome(r) == "FAILURE" for r in results)
                print(f"  {len(results)}/{total} cases, {failed} failures, {time.monotonic() - started:.0f} s",
                      flush=True)
                next_report += 100
    finally:
        for w in workers:
            w.stop()
    leftovers = list((workdir / "markers").iterdir())
    failed = report(results, leftovers, time.monotonic() - started)
    if failed:
        print(f"work folder kept for inspection: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def dead_worker_result(index, detail):
    return {"index": index, "kind": "?", "mutation": "?", "checks": [
        {"entry": "worker", "outcome": "failure", "detail": detail}]}


def case_outcome(result):
    outcomes = {c["outcome"] for c in result["checks"]}
    return "FAILURE" if "failure" in outcomes else "clean error" if "error" in outcomes else "ok"


def report(results, leftovers, seconds):
    results.sort(key=lambda r: r["index"])
    by_kind, by_mutation = {}, {}
    for r in results:
        outcome = case_outcome(r)
        for table, key in ((by_kind, r["kind"]), (by_mutation, (r["kind"], r["mutation"]))):
            table.setdefault(key, Counter())[outcome] += 1
    cli = Counter(c["outcome"] for r in results for c in r["checks"] if c.get("cli"))
    calls = Counter(c["entry"] for r in results for c in r["checks"])
    peak = max((c.get("peak_mb", 0) for r in results for c in r["checks"]), default=0)
    slowest = max(((c.get("seconds", 0), r["index"], c["entry"]) for r in results for c in r["checks"]),
                  default=(0, None, None))

    def row(name, counter, width):
        total = sum(counter.values())
        return (f"{name:<{width}} {total:>6} {counter['ok']:>6} {counter['clean error']:>12} "
                f"{counter['FAILURE']:>8}")

    print("\nper mutation")
    width = max([len(f"{k}/{m}") for k, m in by_mutation] + [20])
    print(f"{'kind/mutation':<{width}} {'cases':>6} {'ok':>6} {'clean error':>12} {'FAILURE':>8}")
    for (kind, mutation), counter in sorted(by_mutation.items()):
        print(row(f"{kind}/{mutation}", counter, width))
    print(f"\n{'kind':<12} {'cases':>6} {'ok':>6} {'clean error':>12} {'FAILURE':>8}")
    everything = Counter()
    for kind, counter in sorted(by_kind.items()):
        print(row(kind, counter, 12))
        everything.update(counter)
    print(row("total", everything, 12))
    in_process = {k: v for k, v in calls.items() if k in IN_PROCESS}
    print(f"\nin-process calls: {sum(in_process.values())} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(in_process.items()))})")
    print(f"command-line runs: {sum(cli.values())} (ok {cli['ok']}, clean error {cli['error']}, "
          f"FAILURE {cli['failure']})")
    print(f"largest memory growth in one in-process call (peak RSS or traced allocations): {peak} MB")
    print(f"slowest call: {slowest[0]:.1f} s (case {slowest[1]}, {slowest[2]})")
    libtiff = sum("[libtiff printed" in c["detail"] for r in results for c in r["checks"] if c.get("cli"))
    print(f"command-line runs where libtiff also printed its own diagnostic line: {libtiff}")
    print(f"marker files left by unpickling: {len(leftovers)}")
    failures = [r for r in results if case_outcome(r) == "FAILURE"]
    for r in failures:
        print(f"\nFAILURE case {r['index']} ({r['kind']}/{r['mutation']}: {r.get('note', '')}; "
              f"seed {r.get('seed_file', '')}){' kept in ' + r['kept'] if r.get('kept') else ''}")
        for c in r["checks"]:
            if c["outcome"] == "failure":
                print(f"  {c['entry']}: {c['detail']}")
        if r.get("harness_error"):
            print("  " + r["harness_error"].replace("\n", "\n  "))
    print(f"\n{len(results)} cases in {seconds:.0f} s: {everything['ok']} ok, {everything['clean error']} "
          f"clean errors, {everything['FAILURE']} FAILURES")
    return bool(failures or leftovers)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        parser.error(f"argument --kinds: unknown kind(s) {', '.join(bad)}; choose from {', '.join(KINDS)}")
    if args.worker:
        return worker_main(args)
    return parent_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
