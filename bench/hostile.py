#!/usr/bin/env python3
"""What each hostile input costs tinynet: the table in docs/reliability.md ("What an input may cost").

    python3 bench/hostile.py                   # every input, one fresh process each (a few minutes)
    python3 bench/hostile.py --only onnx       # the rows whose name holds "onnx"
    python3 bench/hostile.py --repeat 3        # each row 3 times: the median time, the largest peak
    python3 bench/hostile.py --only xxx --server   # the drawing page's server under its worst load

Each input is written to a temporary folder (tinynet.testing.hostile makes them), then read by the
tinynet function a user's input goes through, in a fresh Python process
(``tinynet.testing.hostile.measure``): its answer (the result's shape, or the error), the growth of
the process's peak resident memory during the call above what it held before (VmHWM reset before
the call; imports excluded), and the call's wall time. Prints a markdown table, with the machine,
the load average and the versions. Linux only.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tinynet.predict.predictor import BUNDLED_MODEL as BUNDLED  # noqa: E402
from tinynet.testing import hostile  # noqa: E402

PRE = "tinynet.predict.preprocess"
PAGE = ("tinynet.web.draw", "tinynet.files.checkpoint")


def cases(folder):
    """``[(name, write, call, preload, more arguments)]``: each hostile input; ``write()`` writes it
    into ``folder`` and returns its path."""
    rows = []

    def add(name, data, call, preload, suffix=".png", more=()):
        path = folder / f"{len(rows)}{suffix}"

        def write():
            if isinstance(data, Lazy):
                path.write_bytes(data())
            elif callable(data):  # writes the file itself
                data(path)
            else:
                path.write_bytes(data)
            return path
        rows.append((name, write, call, preload, more))

    for name, make in hostile.HOSTILE_IMAGES.items():
        add(f"image: {name}", Lazy(make), f"{PRE}:preprocess_file", (PRE,))
    add("image: bomb (100000x100000 declared)", hostile.declared_png(100_000, 100_000), f"{PRE}:preprocess_file", (PRE,))
    add("POST /api/predict: 16384x1024 stroke", Lazy(hostile.stroke_png, 16384, 1024), "tinynet.testing.hostile:answer_body",
        PAGE)
    add("POST /api/predict: 4096x4096 cross", Lazy(hostile.cross_png, 4096, 4096), "tinynet.testing.hostile:answer_body", PAGE)
    idx = "tinynet.datasets.idx:read_idx_images"
    add("IDX gzip: 200 MB of images in 0.2 MB", Lazy(hostile.idx_gzip_bomb, 200), idx, ("tinynet.datasets.idx",),
        "-images-idx3-ubyte.gz")
    add("IDX gzip: 64 MB of images in 0.06 MB (the most allowed)", Lazy(hostile.idx_gzip_bomb, 64), idx,
        ("tinynet.datasets.idx",), "-images-idx3-ubyte.gz")
    npy = "tinynet.predict.predictor:load_npy"
    add(".npy: header declares 10^12 x 28 bytes", hostile.npy_lying_header(), npy, ("tinynet.predict.predictor",),
        ".npy")
    add(".npy: 267 MB of uint8 images", lambda p: np.save(p, np.zeros((340_000, 28, 28), np.uint8)), npy,
        ("tinynet.predict.predictor",), ".npy")
    add(".npy: 533 MB of float64 images", lambda p: np.save(p, np.zeros((85_000, 28, 28))), npy,
        ("tinynet.predict.predictor",), ".npy")
    add("checkpoint: 10,000 classes, momentum, 256 MB resume data", hostile.write_checkpoint_at_bounds,
        "tinynet.files.checkpoint:load_checkpoint", ("tinynet.files.checkpoint",), ".npz")
    onnx = ("onnx", "tinynet.onnx.importer", "tinynet.predict.predictor")
    for kind in ("nodes", "attributes"):
        add(f"ONNX: 16 MB of empty {kind}", Lazy(hostile.flood_onnx, 16, kind), "tinynet.onnx.importer:load_onnx", onnx,
            ".onnx")
    add("ONNX: the costliest protobuf the byte check passes (128 MB)", Lazy(hostile.wire_bounds_onnx),
        "tinynet.onnx.importer:load_onnx", onnx, ".onnx")
    add("ONNX: 44 kB graph declaring 60 GB per image", Lazy(hostile.wide_conv_onnx), "tinynet.onnx.importer:load_onnx",
        onnx, ".onnx")
    predict = "tinynet.testing.hostile:load_and_predict"
    add("ONNX: the largest model imported, load + predict 1 image", Lazy(hostile.largest_onnx), predict, onnx, ".onnx")
    add("ONNX: the same, load + predict 1,024 images (a Predictor's batch)", Lazy(hostile.largest_onnx), predict,
        onnx, ".onnx", (1024,))
    add("checkpoint: the bundled LeNet, load + predict 1,024 images", Lazy(BUNDLED.read_bytes), predict,
        ("tinynet.predict.predictor",), ".npz", (1024,))
    return rows


class Lazy:
    """Bytes made only when the row is measured: ``Lazy(function, *args)()``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __call__(self):
        return self.function(*self.args)


def machine():
    """One line: processor, cores, memory, load average, Python and NumPy versions."""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "?"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB; load average {load}; Python "
            f"{platform.python_version()}, NumPy {np.__version__}; {time.strftime('%Y-%m-%d %H:%M')}")


def server_peak():
    """The drawing page's server (``inference.py --serve``, a subprocess) under its worst load: 64
    clients at once, 48 posting 10 MiB bodies of random bytes (each read whole, then refused) and
    16 the costliest accepted images. Prints the answers' statuses and the server's peak RSS above
    its idle RSS (its VmHWM reset after a warm-up request)."""
    import http.client
    import re
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    server = subprocess.Popen([sys.executable, str(ROOT / "inference.py"), "--serve", "--port", "0"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = next(int(m[1]) for line in server.stdout if (m := re.search(r"127\.0\.0\.1:(\d+)/", line)))

    def status(key):
        with open(f"/proc/{server.pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    def post(body):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            connection.request("POST", "/api/predict", body)
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as e:
            return type(e).__name__
        finally:
            connection.close()

    try:
        post(hostile.cross_png(280, 280))  # loads the kernels
        with open(f"/proc/{server.pid}/clear_refs", "w") as f:
            f.write("5")
        idle = status("VmRSS")
        bodies = ([os.urandom(10 << 20)] * 48 + [hostile.cross_png(4096, 4096)] * 8
                  + [hostile.stroke_png(16384, 1024)] * 8)
        started = time.perf_counter()
        with ThreadPoolExecutor(64) as pool:
            answers = Counter(pool.map(post, bodies))
        print(f"\nthe drawing page's server, 64 clients at once (48 x 10 MiB of random bytes, 16 of the "
              f"costliest images): answers {dict(answers)} in {time.perf_counter() - started:.1f} s; "
              f"server peak RSS {(status('VmHWM') - idle) / 2**20:.0f} MB above idle ({idle / 2**20:.0f} MB)")
    finally:
        server.terminate()
        server.wait()


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench/hostile.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="measure only the rows whose name holds this text")
    p.add_argument("--repeat", type=int, default=1, help="runs of each row (default: %(default)s)")
    p.add_argument("--server", action="store_true",
                   help="then the drawing page's server under its worst load (64 clients at once)")
    args = p.parse_args(argv)
    print(machine(), flush=True)
    print("\n| input | file | tinynet's answer | peak RSS above baseline | time |\n| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="tinynet-hostile-") as tmp:
        for name, write, call, preload, more in cases(Path(tmp)):
            if args.only.lower() not in name.lower():
                continue
            path = write()
            runs = [hostile.measure(call, str(path), *more, preload=preload) for _ in range(args.repeat)]
            answer = runs[0]["answer"].replace(str(path), "FILE").replace("|", "/")
            peaks = [r["peak"] for r in runs if r["peak"] is not None]
            seconds = [r["seconds"] for r in runs if r["seconds"] is not None]
            size = path.stat().st_size
            shown = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
            peak = f"{max(peaks) / 2**20:.0f} MB" if peaks else "?"
            took = f"{statistics.median(seconds):.2f} s" if seconds else "?"
            print(f"| {name} | {shown} | {answer[:160]} | {peak} | {took} |", flush=True)
    if args.server:
        server_peak()
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
