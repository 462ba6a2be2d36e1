"""tinynet speed benchmark: one table with throughput (of whole train.py runs and of training steps),
per-layer times, memory and start-up time, next to the same LeNet in PyTorch (when PyTorch is
installed) measured in the same run.

    python3 bench/speed.py                 # full run (a few minutes)
    python3 bench/speed.py --quick         # fewer repetitions, 1-epoch memory run
    python3 bench/speed.py --threads 2 --json bench-results.json

See bench/README.md for what each row measures. PyTorch is optional and never a dependency of
tinynet: without it the torch columns are left empty.

How it is measured
------------------
- tinynet and PyTorch each run in their own worker process (a subprocess of this script), so their
  thread pools (Numba's OpenMP, OpenBLAS, PyTorch's OpenMP) never compete inside one process. The
  parent sends both workers the same commands in turn (A/B, then B/A, ...), so slow phases of a
  shared, noisy machine hit both libraries alike. Each row is the MEDIAN over the rounds, and the
  speed-up is the median of the per-round ratios (paired, so drift cancels out).
- Both workers start from identical weights (tinynet's ``lenet`` initialisation, copied into the
  PyTorch model) and identical synthetic batches; their logits are compared as a sanity check that
  they compute the same network.
- Whole runs (the headline): one-epoch ``python3 train.py --val-fraction 0 --no-progress`` runs
  on N1 = 6,400 and N2 = 32,000 images of a synthetic Balanced-sized set, and
  ``bench/torch_train.py`` (a plain PyTorch loop doing the same) on the same files, interleaved;
  steady-state throughput (N2 - N1) / (t(N2) - t(N1)) from their wall times, so start-up, loading,
  checkpoints and the test evaluation cancel out; median of the per-round ratios.
- Memory: a subprocess ``python3 train.py`` on a synthetic EMNIST-Balanced-sized data set
  (112,800 train / 18,800 test images, IDX files written with ``tinynet.datasets.idx.write_idx``); its
  peak RSS comes from ``os.wait4`` (the child's own ``ru_maxrss``, what
  ``getrusage(RUSAGE_CHILDREN)`` reports when it is the only child) and its ``VmHWM`` is sampled
  at the end of each epoch to show whether memory grows from one epoch to the next.
- Start-up: a subprocess that imports tinynet (as ``train.py`` does), builds the LeNet and runs one
  training step, timed from process launch; cold with an empty ``NUMBA_CACHE_DIR`` (a fresh
  temporary folder, so no project file is touched), cached with the same folder again.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SEED_WEIGHTS = 0
SEED_DATA = 1
NUM_CLASSES = 47
TRAIN_BATCH = 128
INFER_BATCH = 1024
N_TRAIN_BATCHES = 8  # distinct training batches cycled through (same in both libraries)

# ------------------------------------------------------------------------------------ shared data


def synthetic_images(n, rng, chunk=8192):
    """uint8 (n, 28, 28) "random-ish" images: ~75% background zeros, the rest random intensities
    (EMNIST images are mostly black). Generated in chunks so the temporaries stay small."""
    out = np.empty((n, 28, 28), dtype=np.uint8)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        v = rng.integers(0, 1024, size=(m, 28, 28), dtype=np.uint16)
        out[start:start + m] = np.where(v < 768, 0, v - 768).astype(np.uint8)
    return out


def synthetic_labels(n, rng):
    return rng.integers(0, NUM_CLASSES, size=n).astype(np.int64)


def benchmark_batches():
    """The training batches (float32 NCHW + int64 labels) and the inference batch, identical in
    every worker (same seed)."""
    rng = np.random.default_rng(SEED_DATA)
    train = []
    for _ in range(N_TRAIN_BATCHES):
        x = synthetic_images(TRAIN_BATCH, rng).astype(np.float32)[:, None] / np.float32(255)
        train.append((np.ascontiguousarray(x), synthetic_labels(TRAIN_BATCH, rng)))
    xi = synthetic_images(INFER_BATCH, rng).astype(np.float32)[:, None] / np.float32(255)
    return train, np.ascontiguousarray(xi)


# ---------------------------------------------------------------------------------------- workers


class Worker:
    """Parent side of a worker process: JSON commands on its stdin, JSON answers on its stdout."""

    def __init__(self, kind, args, weights_path, tmp):
        self.kind = kind
        self.stderr_path = Path(tmp) / f"worker-{kind}.stderr"
        self.stderr = open(self.stderr_path, "w")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind,
               "--threads", str(args.threads), "--weights", str(weights_path)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, cwd=REPO)
        self.rusage = None

    def call(self, cmd, **kw):
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.stderr.flush()
            raise RuntimeError(f"{self.kind} worker died during {cmd!r}:\n"
                               + self.stderr_path.read_text()[-3000:])
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.kind} worker failed in {cmd!r}:\n{answer['error']}")
        return answer

    def close(self):
        """Stop the worker; returns its peak RSS in MB (from os.wait4, i.e. its own ru_maxrss)."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self.proc.stdin.close()
            except OSError:
                pass
            _, _, self.rusage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = 0
        self.stderr.close()
        return self.rusage.ru_maxrss / 1024 if self.rusage else None


def serve(handlers):
    """Worker side: answer JSON commands until "exit". Anything printed by libraries goes to
    stderr, so stdout carries only the protocol."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        if cmd == "exit":
            break
        try:
            answer = handlers[cmd](**msg)
        except Exception:  # report to the parent, which shows it
            import traceback
            answer = {"error": traceback.format_exc()}
        proto.write(json.dumps(answer) + "\n")
        proto.flush()


def timed_blocks(fn, reps, max_seconds=None, warm=1):
    """Run fn ``warm`` times untimed (the worker was idle while the other library ran), then
    ``reps`` times, or fewer (at least one) once ``max_seconds`` have passed; returns the total
    seconds of the timed calls and each call's seconds."""
    for _ in range(warm):
        fn()
    each = []
    start = time.perf_counter()
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        each.append(time.perf_counter() - t)
        if max_seconds and t + each[-1] - start > max_seconds:
            break
    return {"seconds": time.perf_counter() - start, "each": each}


def tinynet_worker(args):
    from tinynet.datasets.idx import to_float
    from tinynet.nn.convpool import backward_pool, forward_pool, fused
    from tinynet.nn.layers import Conv2D, MaxPool2D, SoftmaxCrossEntropy
    from tinynet.nn.model import lenet
    from tinynet.nn.optim import SGD
    from tinynet.nn.parallel import DataParallel

    model = lenet(NUM_CLASSES, rng=np.random.default_rng(SEED_WEIGHTS))
    with np.load(args.weights) as w:
        model.load_state_dict(dict(w))
    net = DataParallel(model, args.threads)
    optimizer = SGD(lr=0.01)
    loss_fn = SoftmaxCrossEntropy()
    batches, x_infer = benchmark_batches()
    state = {"i": 0}

    def step(x, y):
        logits = net.forward(x, train=True)
        loss_fn.forward(logits, y)
        net.backward(loss_fn.backward())
        optimizer.step(model)

    def next_step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        step(x, y)

    def info():
        import numba
        from threadpoolctl import threadpool_info
        return {"threads": net.threads, "slices": len(net.replicas), "numba": numba.__version__, "numpy": np.__version__,
                "blas": threadpool_info()}

    def logits():
        return {"logits": net.forward(batches[0][0], train=False)[:4].tolist()}

    def warmup(train_steps, infer_reps):
        for _ in range(train_steps):
            next_step()
        for _ in range(infer_reps):
            net.forward(x_infer, train=False)
        return {}

    def train(steps, max_seconds=None):
        return timed_blocks(next_step, steps, max_seconds)

    def infer(reps, max_seconds=None):
        return timed_blocks(lambda: net.forward(x_infer, train=False), reps, max_seconds)

    nets = {args.threads: net}

    def net_for(threads):
        if threads not in nets:
            nets[threads] = DataParallel(model, threads)
        return nets[threads]

    def infer_at(threads, reps, max_seconds=None):
        """Inference on the batch of INFER_BATCH at ``threads`` threads (its own DataParallel)."""
        at = net_for(threads)
        return timed_blocks(lambda: at.forward(x_infer, train=False), reps, max_seconds)

    def latency(threads, reps, max_seconds=None):
        """Seconds per call for one image: the model's forward pass (float32 in, logits out, as
        onnxruntime's run) and Predictor.predict_proba (uint8 in, probabilities out)."""
        from tinynet.predict.predictor import Predictor
        at = net_for(threads)
        one = x_infer[:1]
        predictor = Predictor(model, [str(k) for k in range(NUM_CLASSES)], threads=threads)
        image = np.round(x_infer[:1, 0] * 255).astype(np.uint8)
        try:
            return {"model": timed_blocks(lambda: at.forward(one, train=False), reps, max_seconds),
                    "predictor": timed_blocks(lambda: predictor.predict_proba(image), reps,
                                              max_seconds)}
        finally:
            predictor.close()

    def sgemm(threads, n=2048, reps=5):
        """GFLOP/s of NumPy's float32 matmul (n x n) @ (n x n) with ``threads`` BLAS threads: the
        machine's practical FLOP rate, from which the benchmark derives the FLOP bound."""
        from threadpoolctl import threadpool_limits
        rng = np.random.default_rng(0)
        a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
        out = np.empty_like(a)
        with threadpool_limits(threads, user_api="blas"):
            res = timed_blocks(lambda: np.matmul(a, b, out=out), reps)
        return {"gflops": 2 * n ** 3 / min(res["each"]) / 1e9}

    def layers(reps, max_seconds=None):
        """Median ms inside a training step: each layer's forward and backward as run on slice 0 of
        the batch (while the other threads run other slices), and the whole batch's forward,
        backward, loss, SGD step and step."""
        fwd = {layer.name: [] for layer in model.layers}
        bwd = {layer.name: [] for layer in model.layers}
        extra = {"forward": [], "backward": [], "loss (softmax + cross-entropy) fwd+bwd": [],
                 "SGD step": [], "whole step": []}

        def forward_timed(replica, h):
            """The forward pass as Sequential.forward runs it: a Conv2D followed by a max-pooling
            layer is one fused step (tinynet.nn.convpool.forward_pool), timed under the
            convolution's name."""
            layers, i = replica.layers, 0
            while i < len(layers):
                layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
                t = time.perf_counter()
                if isinstance(layer, Conv2D) and isinstance(after, MaxPool2D):
                    h = forward_pool(layer, h, after, True)
                    i += 2
                else:
                    h = layer.forward(h, True)
                    i += 1
                if replica is net.replicas[0]:  # slice 0's replica
                    fwd[layer.name].append(time.perf_counter() - t)
            return h

        def backward_timed(replica, d):
            """The backward pass as Sequential.backward runs it: a pooling layer and the Conv2D
            before it that ran forward fused in pooling order go back as one fused step
            (tinynet.nn.convpool.backward_pool), timed under the convolution's name."""
            layers, i = replica.layers, len(replica.layers) - 1
            while i >= 0:
                layer, t = layers[i], time.perf_counter()
                if i > 0 and fused(layers[i - 1], layer):
                    layer = layers[i - 1]
                    d = backward_pool(layer, layers[i], d)
                    i -= 2
                else:
                    d = layer.backward(d)
                    i -= 1
                if replica is net.replicas[0]:
                    bwd[layer.name].append(time.perf_counter() - t)
            return d

        begin = time.perf_counter()
        for r in range(reps):
            if max_seconds and r >= 5 and time.perf_counter() - begin > max_seconds:
                break
            x, y = batches[r % len(batches)]
            t_step = t = time.perf_counter()
            logits = np.concatenate(net.map_replicas(forward_timed, [(p,) for p in net.split(x)]))
            extra["forward"].append(time.perf_counter() - t)
            t = time.perf_counter()
            loss_fn.forward(logits, y)
            d = loss_fn.backward()
            extra["loss (softmax + cross-entropy) fwd+bwd"].append(time.perf_counter() - t)
            t = time.perf_counter()
            net.map_replicas(backward_timed, [(p,) for p in np.array_split(d, net.used)])
            net.sum_gradients()
            extra["backward"].append(time.perf_counter() - t)
            t = time.perf_counter()
            optimizer.step(model)
            extra["SGD step"].append(time.perf_counter() - t)
            extra["whole step"].append(time.perf_counter() - t_step)
        med = lambda v: float(np.median(v)) * 1e3 if v else None  # noqa: E731
        return {"layers": [{"name": layer.name, "type": type(layer).__name__,
                            "forward_ms": med(fwd[layer.name]), "backward_ms": med(bwd[layer.name])}
                           for layer in model.layers],
                "slice": len(net.split(batches[0][0])[0]),
                "forward_total_ms": med(extra.pop("forward")),
                "backward_total_ms": med(extra.pop("backward")),
                **{k + "_ms": med(v) for k, v in extra.items()}}

    def scaling(sizes, max_seconds=None):
        """images/s of the training loop (index, to_float, step) over in-memory data sets of
        growing size: one pass (epoch) over each."""
        rng = np.random.default_rng(SEED_DATA + 1)
        images = synthetic_images(max(sizes), rng)
        labels = synthetic_labels(max(sizes), rng)
        out = []
        for n in sizes:
            order = rng.permutation(n)
            each = []
            start = time.perf_counter()
            done = 0
            for b in range(0, n, TRAIN_BATCH):
                t = time.perf_counter()
                idx = order[b:b + TRAIN_BATCH]
                step(to_float(images[idx]), labels[idx])
                each.append(time.perf_counter() - t)
                done += len(idx)
                if max_seconds and t + each[-1] - start > max_seconds:
                    break  # a stalled machine: report the part done
            seconds = time.perf_counter() - start
            full = each[:n // TRAIN_BATCH] or each
            out.append({"images": n, "images_done": done, "stopped": done < n,
                        "seconds": seconds, "images_per_second": done / seconds,
                        "median_batch_images_per_second": TRAIN_BATCH / float(np.median(full))})
        return {"sizes": out}

    serve({"info": info, "logits": logits, "warmup": warmup, "train": train, "infer": infer,
           "layers": layers, "scaling": scaling, "infer_at": infer_at, "latency": latency,
           "sgemm": sgemm})


def torch_worker(args):
    import torch
    sys.path.insert(0, str(BENCH))
    from torch_lenet import load_tinynet_weights, torch_lenet

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    model = torch_lenet(NUM_CLASSES)
    with np.load(args.weights) as w:
        load_tinynet_weights(model, dict(w))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    np_batches, np_infer = benchmark_batches()
    batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in np_batches]
    x_infer = torch.from_numpy(np_infer)
    state = {"i": 0}

    def next_step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    def infer_once():
        model.eval()
        with torch.inference_mode():
            model(x_infer)

    def info():
        return {"torch": torch.__version__, "threads": torch.get_num_threads(),
                "interop_threads": torch.get_num_interop_threads(),
                "mkldnn": bool(torch.backends.mkldnn.is_available()),
                "cpu_capability": torch.backends.cpu.get_cpu_capability()}

    def logits():
        model.eval()
        with torch.inference_mode():
            return {"logits": model(batches[0][0])[:4].tolist()}

    def warmup(train_steps, infer_reps):
        for _ in range(train_steps):
            next_step()
        for _ in range(infer_reps):
            infer_once()
        return {}

    def train(steps, max_seconds=None):
        return timed_blocks(next_step, steps, max_seconds)

    def infer(reps, max_seconds=None):
        return timed_blocks(infer_once, reps, max_seconds)

    def infer_at(threads, reps, max_seconds=None):
        torch.set_num_threads(threads)
        try:
            return timed_blocks(infer_once, reps, max_seconds)
        finally:
            torch.set_num_threads(args.threads)

    def latency(threads, reps, max_seconds=None):
        one = x_infer[:1]

        def run():
            model.eval()
            with torch.inference_mode():
                model(one)
        torch.set_num_threads(threads)
        try:
            return {"model": timed_blocks(run, reps, max_seconds)}
        finally:
            torch.set_num_threads(args.threads)

    def phases(reps, max_seconds=None):
        """Median ms of forward, loss, backward and optimizer step in a training step."""
        t = {"forward": [], "loss": [], "backward": [], "step": [], "whole": []}
        model.train()
        begin = time.perf_counter()
        for r in range(reps):
            if max_seconds and r >= 5 and time.perf_counter() - begin > max_seconds:
                break
            x, y = batches[r % len(batches)]
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            t1 = time.perf_counter()
            loss = loss_fn(out, y)
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            optimizer.step()
            t4 = time.perf_counter()
            for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                t[k].append(v)
        return {k + "_ms": float(np.median(v)) * 1e3 for k, v in t.items()}

    serve({"info": info, "logits": logits, "warmup": warmup, "train": train, "infer": infer,
           "phases": phases, "infer_at": infer_at, "latency": latency})


def ort_worker(args):
    """onnxruntime running tinynet's own ONNX export of the same weights (tinynet.onnx.to_onnx),
    one InferenceSession per thread count: intra_op_num_threads = threads, inter_op_num_threads = 1,
    sequential execution, all graph optimisations (onnxruntime's default)."""
    import onnxruntime as ort
    from tinynet.nn.model import lenet
    from tinynet.onnx import to_onnx

    model = lenet(NUM_CLASSES, rng=np.random.default_rng(SEED_WEIGHTS))
    with np.load(args.weights) as w:
        model.load_state_dict(dict(w))
    graph = to_onnx(model, [str(k) for k in range(NUM_CLASSES)]).SerializeToString()
    batches, x_infer = benchmark_batches()
    sessions = {}

    def session(threads):
        if threads not in sessions:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            sessions[threads] = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        return sessions[threads]

    def run(threads, x):
        return session(threads).run(["logits"], {"image": x})[0]

    def info():
        return {"onnxruntime": ort.__version__, "providers": ort.get_available_providers()}

    def logits():
        return {"logits": run(args.threads, batches[0][0])[:4].tolist()}

    def warmup(train_steps, infer_reps):
        for threads in {1, args.threads}:
            for _ in range(infer_reps):
                run(threads, x_infer)
        return {}

    def infer_at(threads, reps, max_seconds=None):
        return timed_blocks(lambda: run(threads, x_infer), reps, max_seconds)

    def latency(threads, reps, max_seconds=None):
        one = x_infer[:1]
        return {"model": timed_blocks(lambda: run(threads, one), reps, max_seconds)}

    serve({"info": info, "logits": logits, "warmup": warmup, "infer_at": infer_at,
           "latency": latency})


# ---------------------------------------------------------------------------------- measurements


QUIET = 0.25  # a round counts as clean when other processes used at most this many cores
# OPENBLAS_CORETYPE pins NumPy's OpenBLAS to one CPU's kernels (see bench/README.md); the targets
# are lower then
PINNED = bool(os.environ.get("OPENBLAS_CORETYPE"))


def interleaved(workers, cmd, rounds, images_per_call, meter, budget, **kw):
    """Alternate the workers (A,B then B,A, ...) on ``cmd`` until ``rounds`` clean rounds (other
    processes used <= QUIET cores during both calls), or 2 x ``rounds`` rounds in all, or (after at
    least 3 rounds) ``budget`` seconds. Returns, per worker, the median images/s over the clean
    rounds (over all rounds when fewer than 3 were clean), and the median of the per-round ratios
    tinynet / torch."""
    pids = [w.proc.pid for w in workers]
    per = {w.kind: [] for w in workers}
    other = []
    r = 0
    start = time.perf_counter()
    while r < 2 * rounds and sum(o <= QUIET for o in other) < rounds:
        if r >= 3 and time.perf_counter() - start > budget:
            break
        order = workers if r % 2 == 0 else workers[::-1]
        worst = 0.0
        for w in order:
            mark = meter.start(pids)
            res = w.call(cmd, **kw)
            worst = max(worst, meter.stop(mark, pids) or 0.0)
            per[w.kind].append(images_per_call * len(res["each"]) / res["seconds"])
        other.append(worst)
        r += 1
    clean = [i for i, o in enumerate(other) if o <= QUIET]
    use = clean if len(clean) >= 3 else list(range(len(other)))
    out = {k: {"median": float(np.median([v[i] for i in use])), "rounds": v}
           for k, v in per.items()}
    out.update({"rounds_run": len(other), "rounds_clean": len(clean), "used_clean": use == clean,
                "other_cores_per_round": other})
    first = workers[0].kind
    out["ratios"] = {}
    for w in workers[1:]:  # tinynet / each peer, round by round
        ratios = [a / b for a, b in zip(per[first], per[w.kind])]
        out["ratios"][w.kind] = {"median": float(np.median([ratios[i] for i in use])),
                                 "rounds": ratios}
    if "torch" in out["ratios"]:
        out["ratio_median"] = out["ratios"]["torch"]["median"]
        out["ratio_rounds"] = out["ratios"]["torch"]["rounds"]
    return out


PEER_THREADS = (1, 2)  # thread counts of the inference comparison with onnxruntime
PEER_ROUNDS = 7


def peer_inference(workers, meter, budget):
    """Inference at batch INFER_BATCH on 1 and 2 threads, every worker (tinynet, onnxruntime and
    PyTorch when present) interleaved over PEER_ROUNDS rounds, and the latency of one image (the
    median call of each block of calls), interleaved the same way."""
    out = {"threads": {}}
    for threads in PEER_THREADS:
        out["threads"][str(threads)] = interleaved(
            workers, "infer_at", PEER_ROUNDS, INFER_BATCH, meter, budget, threads=threads, reps=5,
            max_seconds=2.0)
    lat = {w.kind: [] for w in workers}
    lat["tinynet_predictor"] = []
    for r in range(PEER_ROUNDS):
        for w in workers if r % 2 == 0 else workers[::-1]:
            res = w.call("latency", threads=max(PEER_THREADS), reps=400, max_seconds=0.5)
            lat[w.kind].append(float(np.median(res["model"]["each"])))
            if "predictor" in res:
                lat["tinynet_predictor"].append(float(np.median(res["predictor"]["each"])))
    out["latency_s"] = {k: {"median": float(np.median(v)), "rounds": v} for k, v in lat.items()}
    return out


def sgemm_rate(worker):
    """NumPy's float32 matmul rate on 1 and 2 BLAS threads (GFLOP/s), measured in the tinynet worker."""
    return {str(t): worker.call("sgemm", threads=t)["gflops"] for t in PEER_THREADS}


def write_balanced_sized_dataset(folder, rng, n_train=112_800, n_test=18_800):
    """A synthetic EMNIST-Balanced-sized data set (IDX, uncompressed, as tinynet.datasets.idx reads it)."""
    from tinynet.datasets.idx import write_idx
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images = synthetic_images(n, rng)
        labels = (np.arange(n) % NUM_CLASSES).astype(np.uint8)  # balanced, like the real split
        rng.shuffle(labels)
        write_idx(folder / f"emnist-balanced-{split}-images-idx3-ubyte", images)
        write_idx(folder / f"emnist-balanced-{split}-labels-idx1-ubyte", labels)
        del images
    chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"
    (folder / "emnist-balanced-mapping.txt").write_text(
        "".join(f"{k} {ord(c)}\n" for k, c in enumerate(chars)))


def proc_status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def balanced_dataset(tmp):
    """The synthetic Balanced-sized data set in ``tmp`` (written on first use) and the seconds
    that writing it took (0 when it was there already)."""
    data = Path(tmp) / "balanced"
    t = time.perf_counter()
    if not data.exists():
        write_balanced_sized_dataset(data, np.random.default_rng(SEED_DATA + 2))
    return data, time.perf_counter() - t


WHOLE_RUN_SIZES = (6_400, 32_000)  # N1, N2: training images of the short and the long run


def whole_run_commands(args, tmp, n, name):
    """The two commands of the whole-run comparison for ``n`` training images: ``train.py`` (the
    original recipe, one epoch, no validation split) and the plain PyTorch loop doing the same."""
    data, _ = balanced_dataset(tmp)
    common = ["--data-dir", str(data), "--dataset", "emnist-balanced", "--epochs", "1",
              "--limit", str(n), "--threads", str(args.threads)]
    return {"tinynet": [sys.executable, "train.py", *common, "--no-download", "--val-fraction", "0",
                        "--no-progress", "--runs-dir", str(Path(tmp) / "runs"), "--name", name],
            "torch": [sys.executable, str(BENCH / "torch_train.py"), *common,
                      "--out", str(Path(tmp) / f"{name}.pt")]}


def timed_process(cmd, meter, timeout=600):
    """Wall seconds of ``cmd`` from launch to exit, and the cores other processes used meanwhile."""
    mark = meter.start()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds, meter.stop(mark)


def whole_run(args, tmp, rounds, meter, with_torch):
    """Steady-state training throughput of whole runs, as a user gets it: (N2 - N1) / (t(N2) -
    t(N1)) from the wall times of one-epoch runs on N1 and N2 images (start-up, data loading,
    checkpoints, plots and the test evaluation are the same in both and cancel out). Each round
    runs tinynet N1, PyTorch N1, tinynet N2, PyTorch N2 (reversed in odd rounds), after one
    untimed run of each (Numba and disk caches); the ratio is the median of the per-round ratios."""
    kinds = ["tinynet"] + (["torch"] if with_torch else [])
    n1, n2 = WHOLE_RUN_SIZES
    for kind in kinds:
        timed_process(whole_run_commands(args, tmp, n1, "whole-warmup")[kind], meter)
    seconds = {k: {n: [] for n in WHOLE_RUN_SIZES} for k in kinds}
    other = []
    for r in range(rounds):
        order = [(kind, n) for n in WHOLE_RUN_SIZES for kind in kinds]
        worst = 0.0
        for kind, n in order if r % 2 == 0 else order[::-1]:
            t, o = timed_process(whole_run_commands(args, tmp, n, f"whole-{r}-{n}")[kind], meter)
            seconds[kind][n].append(t)
            worst = max(worst, o or 0.0)
        other.append(worst)
    speed = {k: [(n2 - n1) / (t2 - t1) for t1, t2 in zip(seconds[k][n1], seconds[k][n2])]
             for k in kinds}
    out = {"sizes": list(WHOLE_RUN_SIZES), "seconds": seconds, "other_cores_per_round": other,
           "commands": {k: shlex.join(c) for k, c in whole_run_commands(
               args, tmp, n2, "NAME").items()},
           **{k: {"median": float(np.median(v)), "rounds": v} for k, v in speed.items()}}
    if with_torch:
        out["ratio_rounds"] = [a / b for a, b in zip(speed["tinynet"], speed["torch"])]
        out["ratio_median"] = float(np.median(out["ratio_rounds"]))
    return out


def memory_run(args, tmp, epochs, timeout):
    """Peak RSS of ``python3 train.py`` for ``epochs`` epochs on a Balanced-sized synthetic set."""
    data, write_seconds = balanced_dataset(tmp)
    cmd = [sys.executable, "train.py", "--data-dir", str(data), "--dataset", "emnist-balanced",
           "--no-download", "--epochs", str(epochs), "--threads", str(args.threads),
           "--runs-dir", str(Path(tmp) / "runs"), "--name", "memory", "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines, epoch_hwm, loaded_hwm, samples = [], [], [], []

    def reader():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("training on "):  # data loaded, model built, before batch 1
                loaded_hwm.append(proc_status_kb(proc.pid, "VmHWM"))
            if re.match(r"epoch \d+/\d+:", line):  # epoch done: evaluated, saved, plotted
                epoch_hwm.append(proc_status_kb(proc.pid, "VmHWM"))

    ended = threading.Event()

    def sampler():  # peak so far, in case the run has to be stopped
        # (never proc.poll(): it could reap the child before os.wait4 below reads its rusage)
        while not ended.is_set():
            v = proc_status_kb(proc.pid, "VmHWM")
            if v:
                samples.append(v)
            time.sleep(0.5)

    threads = [threading.Thread(target=reader, daemon=True),
               threading.Thread(target=sampler, daemon=True)]
    for th in threads:
        th.start()
    timed_out = False
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout:
            timed_out = True
            proc.kill()  # our own child, by its pid
            _, status, rusage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    ended.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    threads[0].join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0 and not timed_out:
        raise RuntimeError("memory run failed: " + shlex.join(cmd) + "\n" + "\n".join(lines[-20:]))
    speeds = [float(m.group(1)) for line in lines
              for m in [re.search(r"s, (\d+) images/s", line)] if m]
    return {"command": shlex.join(cmd), "epochs": epochs, "train_images": 112_800,
            "test_images": 18_800, "timed_out": timed_out, "timeout_s": timeout,
            "peak_rss_mb": max([rusage.ru_maxrss] + samples) / 1024,
            "hwm_data_loaded_mb": loaded_hwm[0] / 1024 if loaded_hwm and loaded_hwm[0] else None,
            "hwm_after_epoch_mb": [None if v is None else v / 1024 for v in epoch_hwm],
            "epoch_images_per_second": speeds, "seconds": seconds,
            "dataset_write_seconds": write_seconds, "log_tail": lines[-3:]}


STARTUP_TINYNET = r"""
import time
t0 = time.perf_counter()
import sys, json
import tinynet
import tinynet.training.trainer  # what train.py imports (tqdm, matplotlib, the data code...)
from tinynet.nn.layers import SoftmaxCrossEntropy
from tinynet.nn.model import lenet
from tinynet.nn.optim import SGD
from tinynet.nn.parallel import DataParallel
import numpy as np
t1 = time.perf_counter()
model = lenet(47, rng=np.random.default_rng(0))
net = DataParallel(model, int(sys.argv[1]))
opt, loss = SGD(lr=0.01), SoftmaxCrossEntropy()
rng = np.random.default_rng(1)
x = rng.random((128, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 47, 128)
t2 = time.perf_counter()
loss.forward(net.forward(x, train=True), y)
net.backward(loss.backward())
opt.step(model)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "first_step_s": t3 - t2}), flush=True)
"""

STARTUP_TORCH = r"""
import time
t0 = time.perf_counter()
import sys, json
import torch
t1 = time.perf_counter()
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, sys.argv[2])
from torch_lenet import torch_lenet
model = torch_lenet(47)
opt, loss = torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.CrossEntropyLoss()
x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 47, (128,))
t2 = time.perf_counter()
opt.zero_grad()
loss(model(x), y).backward()
opt.step()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "first_step_s": t3 - t2}), flush=True)
"""


def start_once(code, threads, env):
    """Seconds from launching ``python3 -c code`` until it reports its first trained batch."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, str(threads), str(BENCH)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    seconds = time.perf_counter() - start
    _, err = proc.communicate()
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"start-up run failed:\n{err[-3000:]}")
    return {"seconds": seconds, **json.loads(line)}


def startup(args, tmp, cached_runs, with_torch):
    cache = Path(tmp) / "numba-cache"
    cache.mkdir()
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    cold = start_once(STARTUP_TINYNET, args.threads, env)
    cached = [start_once(STARTUP_TINYNET, args.threads, env) for _ in range(cached_runs)]
    out = {"numba_cache_dir": "fresh temporary folder (NUMBA_CACHE_DIR)", "cold": cold,
           "cached": cached, "cached_median_s": float(np.median([c["seconds"] for c in cached]))}
    if with_torch:
        runs = [start_once(STARTUP_TORCH, args.threads, dict(os.environ))
                for _ in range(cached_runs)]
        out["torch"] = runs
        out["torch_median_s"] = float(np.median([r["seconds"] for r in runs]))
    return out


# ------------------------------------------------------------------------- noise: other processes


class CpuMeter:
    """How many cores *other* processes used during a section: busy CPU time of the whole machine
    (/proc/stat, steal included) minus the CPU time of this script and its children."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK")

    def machine_busy(self):
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / self.tick

    def own(self, pids):
        t = os.times()
        total = t.user + t.system + t.children_user + t.children_system
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / self.tick
            except (OSError, ValueError, IndexError):
                pass
        return total

    def start(self, pids=()):
        return (time.perf_counter(), self.machine_busy(), self.own(pids))

    def stop(self, mark, pids=()):
        """Cores used by other processes since ``mark`` (0 = a quiet machine)."""
        wall, busy, own = mark
        now_busy = self.machine_busy()
        if busy is None or now_busy is None:
            return None
        return max(0.0, ((now_busy - busy) - (self.own(pids) - own)) / (time.perf_counter() - wall))


def git_state():
    """Commit of the working tree and whether tinynet/ has uncommitted changes (others may be
    editing it while this runs)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "tinynet", "train.py"],
                               cwd=REPO, text=True, capture_output=True, check=True).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else " (clean)")


# ------------------------------------------------------------------------------------------ table


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(rows, out=sys.stdout):
    """rows: lists of cells, or a string for a section line."""
    head = ["measurement", "tinynet", "pytorch", "speed-up", "onnxruntime", "vs ort", "target", "met"]
    # rows of 6 cells have no onnxruntime columns
    rows = [r if isinstance(r, str) or len(r) == 8 else [*r[:4], "", "", *r[4:]] for r in rows]
    cells = [r for r in rows if not isinstance(r, str)]
    widths = [max(len(str(c[i])) for c in cells + [head]) for i in range(len(head))]
    total = sum(widths) + 3 * (len(widths) - 1)
    line = lambda c: " | ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)  # noqa: E731
                                for i, (x, w) in enumerate(zip(c, widths)))
    print("=" * total, file=out)
    print(line(head), file=out)
    for r in rows:
        if isinstance(r, str):
            print("-" * total, file=out)
            if r:
                print(r, file=out)
        else:
            print(line(r), file=out)
    print("=" * total, file=out)


def met(ok, noisy=False):
    """The "met" cell; '?' marks a verdict taken while other processes were using the CPU."""
    return "-" if ok is None else ("yes" if ok else "NO") + ("?" if noisy else "")


def busy(res, section):
    v = res.get("other_cpu", {}).get(section)
    return v is not None and v > QUIET


def noise(res, section):
    v = res.get("other_cpu", {}).get(section)
    return "" if v is None else f" [other processes: {v:.1f} of {res['cpu_count']} cores]"


MFLOP_INFER = (24 * 24 * 20 * 25 + 8 * 8 * 50 * 500 + 800 * 500 + 500 * 47) * 2 / 1e6  # 4.62
MFLOP_TRAIN = 3 * MFLOP_INFER - 24 * 24 * 20 * 25 * 2 / 1e6  # forward, dW, dx but conv1's: 13.3


def peer_rows(res, with_torch):
    """Rows of the inference comparison at 1 and 2 threads (with onnxruntime) and the FLOP bound."""
    pr, rows = res.get("peers"), []
    if not pr:
        return rows
    gf = res.get("sgemm_gflops", {})
    rows.append(f"inference, batch {INFER_BATCH}, images/s at 1 and 2 threads; median of "
                f"{PEER_ROUNDS} interleaved rounds, ratios = median of per-round ratios; FLOP bound "
                f"= sgemm rate / {MFLOP_INFER:.2f} MFLOP per image" + noise(res, "peers"))
    for t, r in pr["threads"].items():
        ort, tor = r.get("ort"), r.get("torch")
        ratio = r["ratios"].get("ort", {}).get("median")
        tratio = r["ratios"].get("torch", {}).get("median")
        rows.append([f"  {t} thread{'s' if t != '1' else ''}", fmt(r["tinynet"]["median"], ".0f"),
                     fmt(tor and tor["median"], ".0f"), fmt(tratio, ".2f") + "x" if tratio else "-",
                     fmt(ort and ort["median"], ".0f"), fmt(ratio, ".2f") + "x" if ratio else "-",
                     ">= 1.0x onnxruntime", met(ratio >= 1.0 if ratio else None,
                                                not r["used_clean"])])
        if t in gf:
            bound = gf[t] * 1e3 / MFLOP_INFER
            share = lambda v: f"{100 * v / bound:.0f}%" if v else "-"  # noqa: E731
            rows.append([f"    FLOP bound {bound:,.0f} (sgemm {gf[t]:.0f} GFLOP/s): share",
                         share(r["tinynet"]["median"]), share(tor and tor["median"]), "",
                         share(ort and ort["median"]), "", "", ""])
    lat = pr["latency_s"]
    us = lambda k: fmt(lat[k]["median"] * 1e6, ".0f") if k in lat else "-"  # noqa: E731
    ratio = lat["ort"]["median"] / lat["tinynet"]["median"] if "ort" in lat else None
    tratio = lat["torch"]["median"] / lat["tinynet"]["median"] if "torch" in lat else None
    rows.append(["  one image, latency (us): the model's forward", us("tinynet"), us("torch"),
                 fmt(tratio, ".2f") + "x" if tratio else "-", us("ort"),
                 fmt(ratio, ".2f") + "x" if ratio else "-", "not slower", met(
                     ratio >= 1.0 if ratio else None, busy(res, "peers"))])
    rows.append(["  one image, latency (us): Predictor.predict_proba (uint8 in)",
                 us("tinynet_predictor"), "", "", "", "", "", ""])
    return rows


def build_rows(res, with_torch):
    rows = []
    tp = res.get("throughput")
    if tp:
        rows.append("throughput, images/s: median over interleaved rounds (clean = other processes "
                    f"<= {QUIET} cores); speed-up = median of per-round tinynet/pytorch ratios"
                    + noise(res, "throughput"))
        for key, label, target in (("train", f"training, batch {TRAIN_BATCH} (fwd+bwd+SGD)", 1.6),
                                   ("infer", f"inference, batch {INFER_BATCH}",
                                    2.5 if PINNED else 3.0)):
            r = tp[key]
            ratio = r.get("ratio_median")
            used = (f"{r['rounds_clean']} clean rounds" if r["used_clean"] else
                    f"all {r['rounds_run']} rounds, only {r['rounds_clean']} clean")
            rows.append([f"{label}; {used}", fmt(r["tinynet"]["median"], ".0f"),
                         fmt(r["torch"]["median"], ".0f") if with_torch else "-",
                         fmt(ratio, ".2f") + "x" if ratio else "-", f">= {target}x pytorch",
                         met(ratio >= target if ratio else None, not r["used_clean"])])
    rows += peer_rows(res, with_torch)
    wr = res.get("whole_run")
    if wr:
        n1, n2 = wr["sizes"]
        rows.append(f"whole runs, steady state: (N2 - N1) / (t(N2) - t(N1)) of one-epoch runs on "
                    f"N1 = {n1:,} and N2 = {n2:,} images, python3 train.py --val-fraction 0 "
                    f"--no-progress vs bench/torch_train.py; median of {len(wr['tinynet']['rounds'])} "
                    f"interleaved rounds" + noise(res, "whole_run"))
        ratio = wr.get("ratio_median")
        target = 1.5 if PINNED else 2.0
        rounds = " / ".join(f"{v:.2f}" for v in wr.get("ratio_rounds", []))
        rows.append(["  training images/s" + (f" (round ratios {rounds})" if rounds else ""),
                     fmt(wr["tinynet"]["median"], ".0f"),
                     fmt(wr["torch"]["median"], ".0f") if with_torch else "-",
                     fmt(ratio, ".2f") + "x" if ratio else "-", f">= {target}x pytorch",
                     met(ratio >= target if ratio else None, busy(res, "whole_run"))])
    ly = res.get("layers")
    if ly:
        rows.append(f"training step by layer, median ms per batch of {TRAIN_BATCH} (tinynet: forward / "
                    f"backward of slice 0, {ly['slice']} images, the other threads running other "
                    f"slices; totals for the whole batch)" + noise(res, "layers"))
        for k, layer in enumerate(ly["layers"]):
            # a pooling layer run inside the convolution's step: forward, and backward too when the
            # pair ran in pooling order
            after = ly["layers"][k + 1] if k + 1 < len(ly["layers"]) else None
            both = after and after["backward_ms"] is None
            label = (f"  {layer['name']} ({layer['type']})" if not (after and after["forward_ms"] is None)
                     else f"  {layer['name']} ({layer['type']}; {'both ways' if both else 'forward'}: "
                          f"+ {after['name']}, fused)")
            ms = lambda v: "(fused)" if v is None else f"{v:.2f}"  # noqa: E731
            rows.append([label, f"{ms(layer['forward_ms'])} / {ms(layer['backward_ms'])}", "", "", "", ""])
        ph = res.get("torch_phases") or {}
        t, p = ly["loss (softmax + cross-entropy) fwd+bwd_ms"], ph.get("loss_ms")
        rows.append(["  loss fwd+bwd (pytorch: fwd only)", f"{t:.2f}", fmt(p, ".2f"), "", "", ""])
        for name, key, tkey in (("  forward, whole batch", "forward_total_ms", "forward_ms"),
                                ("  backward, whole batch (pytorch: +loss bwd)", "backward_total_ms",
                                 "backward_ms"),
                                ("  SGD step", "SGD step_ms", "step_ms"),
                                ("  whole step", "whole step_ms", "whole_ms")):
            t, p = ly[key], ph.get(tkey)
            rows.append([name, f"{t:.2f}", fmt(p, ".2f"), f"{p / t:.2f}x" if p else "", "", ""])
    sc = res.get("scaling")
    if sc:
        wall = [s["images_per_second"] for s in sc["sizes"]]
        per_batch = [s["median_batch_images_per_second"] for s in sc["sizes"]]
        rows.append("tinynet epoch time vs data size: one pass of the training loop over N in-memory "
                    "images, images/s (wall / from median batch)" + noise(res, "scaling"))
        for s in sc["sizes"]:
            o = s.get("other_cores")
            note = f" [other: {o:.1f} cores]" if o is not None and o > QUIET else ""
            what = (f"  {s['images']:,} images in {s['seconds']:.1f} s" if not s.get("stopped") else
                    f"  {s['images']:,} images: STOPPED at {s['images_done']:,} after "
                    f"{s['seconds']:.0f} s")
            rows.append([what + note,
                         f"{s['images_per_second']:.0f} / {s['median_batch_images_per_second']:.0f}",
                         "", "", "", ""])
        spread_wall, spread = min(wall) / max(wall), min(per_batch) / max(per_batch)
        rows.append(["  slowest / fastest images/s", f"{spread_wall:.2f} / {spread:.2f}", "", "",
                     "linear: >= 0.80", met(spread >= 0.8, busy(res, "scaling") or any(
                         s.get("stopped") for s in sc["sizes"]))])
    mem = res.get("memory")
    if mem:
        rows.append(f"peak memory of python3 train.py, {mem['epochs']} epoch(s) on a synthetic "
                    f"Balanced-sized set (112,800 train / 18,800 test)" + noise(res, "memory"))
        label, verdict = "  peak RSS, whole run (MB)", met(mem["peak_rss_mb"] <= 600)
        if mem["timed_out"]:
            done = len(mem["hwm_after_epoch_mb"])
            label = (f"  peak RSS, STOPPED after {mem['timeout_s']:.0f} s in epoch {done + 1} "
                     f"(MB)")
            # before the first end of epoch (evaluation at batch 1024) the peak is not reached yet
            verdict = (("NO" if mem["peak_rss_mb"] > 600 else "incomplete") if not done
                       else met(mem["peak_rss_mb"] <= 600, True))
        rows.append([label, f"{mem['peak_rss_mb']:.0f}", "", "", "<= 600 MB", verdict])
        if mem.get("hwm_data_loaded_mb"):
            rows.append(["  peak RSS after loading data (MB)", f"{mem['hwm_data_loaded_mb']:.0f}",
                         "", "", "", ""])
        hwm = mem["hwm_after_epoch_mb"]
        for i, v in enumerate(hwm):
            rows.append([f"  peak RSS at end of epoch {i + 1} (MB)", fmt(v, ".0f"), "", "", "", ""])
        if len(hwm) >= 2 and None not in hwm[:2]:
            growth = hwm[1] - hwm[0]
            rows.append(["  growth epoch 1 -> 2 (MB)", f"{growth:+.0f}", "", "",
                         "~0 (so 20 epochs ok)", met(growth <= 10)])
        if mem["epoch_images_per_second"]:
            rows.append(["  train.py epoch throughput (images/s)",
                         " / ".join(f"{v:.0f}" for v in mem["epoch_images_per_second"]),
                         "", "", "", ""])
    wr = res.get("worker_peak_rss_mb")
    if wr:
        rows.append(["  benchmark worker peak RSS (MB)", fmt(wr.get("tinynet"), ".0f"),
                     fmt(wr.get("torch"), ".0f") if with_torch else "-", "", "", ""])
    st = res.get("startup")
    if st:
        rows.append("start-up: launch -> first training step done (imports, build, fwd+bwd+SGD)"
                    + noise(res, "startup"))
        c = st["cold"]
        rows.append([f"  cold (empty Numba cache; first step {c['first_step_s']:.1f} s)",
                     f"{c['seconds']:.1f} s", "", "", "", ""])
        k = min(st["cached"], key=lambda r: abs(r["seconds"] - st["cached_median_s"]))
        tmed = st.get("torch_median_s")
        rows.append([f"  cached (median of {len(st['cached'])}; import {k['import_s']:.1f} s, "
                     f"first step {k['first_step_s']:.2f} s)", f"{st['cached_median_s']:.1f} s",
                     fmt(tmed, ".1f") + " s" if tmed else "-",
                     f"{tmed / st['cached_median_s']:.2f}x" if tmed else "", "<= 3 s",
                     met(st["cached_median_s"] <= 3.0, busy(res, "startup"))])
    return rows


# ------------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--threads", type=int, default=2,
                   help="threads for both libraries (tinynet.nn.parallel.DataParallel, "
                        "torch.set_num_threads)")
    p.add_argument("--quick", action="store_true",
                   help="fewer repetitions, smaller scaling sizes, 1-epoch memory run")
    p.add_argument("--json", metavar="PATH", help="also save all results as JSON")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--no-ort", action="store_true", help="skip onnxruntime even if installed")
    p.add_argument("--skip", action="append", default=[],
                   choices=("throughput", "peers", "layers", "scaling", "whole-run", "memory", "startup"),
                   help="leave out a part (repeatable)")
    p.add_argument("--whole-run-rounds", type=int, default=3,
                   help="interleaved rounds of the whole-run comparison (each: tinynet and PyTorch "
                        "on 6,400 and 32,000 images)")
    p.add_argument("--memory-epochs", type=int, default=None,
                   help="epochs of the train.py memory run (default: 2, --quick: 1)")
    p.add_argument("--memory-timeout", type=float, default=240,
                   help="stop the memory run after this many seconds and report the peak so far")
    p.add_argument("--max-minutes", type=float, default=8.0,
                   help="overall time budget: on a machine stalled by other work, the memory run is "
                        "cut short (down to 60 s) so the whole benchmark ends near this")
    p.add_argument("--worker", choices=("tinynet", "torch", "ort"), help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def installed(module):
    """Whether ``module`` is installed (found without importing it into this process)."""
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def torch_available():
    return installed("torch")


def ort_available():
    """onnxruntime, and the onnx package that tinynet's export needs."""
    return installed("onnxruntime") and installed("onnx")


def main(argv=None):
    args = parse_args(argv)
    if args.worker == "tinynet":
        return tinynet_worker(args)
    if args.worker == "torch":
        return torch_worker(args)
    if args.worker == "ort":
        return ort_worker(args)
    if args.threads < 1:
        raise SystemExit("--threads must be at least 1")

    started = time.perf_counter()
    with_torch = not args.no_torch and torch_available()
    with_ort = not args.no_ort and ort_available()
    quick = args.quick
    cfg = {"rounds": 5 if quick else 15, "train_steps": 10 if quick else 20,
           "infer_reps": 3 if quick else 5, "layer_reps": 15 if quick else 40,
           "sizes": [2_500, 5_000, 10_000, 20_000] if quick else [5_000, 10_000, 20_000, 40_000],
           "memory_epochs": args.memory_epochs or (1 if quick else 2),
           "cached_runs": 1 if quick else 3,
           # time caps, so that a stalled machine cannot stretch the run much past ~5 minutes
           "block_max_s": 2.0, "train_budget_s": 25 if quick else 60,
           "infer_budget_s": 15 if quick else 30, "layers_max_s": 10 if quick else 15,
           "scaling_max_s": 15 if quick else 20}
    skip = set(args.skip)
    res = {"command": shlex.join([sys.executable] + sys.argv), "date": datetime.now().isoformat(
        timespec="seconds"), "config": cfg, "threads": args.threads, "with_torch": with_torch,
        "with_ort": with_ort, "loadavg_start": os.getloadavg(), "python": platform.python_version(),
        "platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "tinynet_source": git_state(), "other_cpu": {}}
    print(f"command: {res['command']}", flush=True)
    print(f"date: {res['date']}   threads: {args.threads}   mode: {'quick' if quick else 'full'}   "
          f"cpu: {res['cpu']} ({os.cpu_count()} logical)   load average: "
          + " ".join(f"{v:.2f}" for v in res["loadavg_start"]), flush=True)
    print(f"tinynet: {res['tinynet_source']}   python {res['python']}   {res['platform']}",
          flush=True)
    if not with_torch:
        why = "--no-torch given" if args.no_torch else "PyTorch is not installed"
        print(f"{why}: PyTorch columns are skipped (pip install torch to compare).", flush=True)
    if not with_ort:
        why = "--no-ort given" if args.no_ort else "onnxruntime (or onnx) is not installed"
        print(f"{why}: onnxruntime columns are skipped (pip install 'tinynet[onnx]' to compare).",
              flush=True)

    meter = CpuMeter()
    tmp = tempfile.mkdtemp(prefix="tinynet-bench-")
    workers = []
    ort_worker_ = None
    try:
        # identical initial weights for both libraries: tinynet's lenet() initialisation
        from tinynet.nn.model import lenet
        weights = Path(tmp) / "weights.npz"
        np.savez(weights, **lenet(NUM_CLASSES, rng=np.random.default_rng(SEED_WEIGHTS)).state_dict())

        need_workers = not {"throughput", "peers", "layers", "scaling"} <= skip
        if need_workers:
            progress("starting workers (Numba kernels load or compile)")
            workers.append(Worker("tinynet", args, weights, tmp))
            res["tinynet_info"] = workers[0].call("info")
            if with_torch:
                workers.append(Worker("torch", args, weights, tmp))
                try:
                    res["torch_info"] = workers[1].call("info")
                except RuntimeError as e:  # installed but broken: go on without it
                    workers.pop().proc.kill()
                    with_torch = res["with_torch"] = False
                    last = str(e).strip().splitlines()[-1]
                    print(f"PyTorch failed to start ({last}): PyTorch columns are skipped.",
                          flush=True)
            res["versions"] = {"numpy": np.__version__, "numba": res["tinynet_info"]["numba"],
                               "torch": res.get("torch_info", {}).get("torch")}
            print_info(res)
            if with_torch:  # same network? compare the logits of identical weights and inputs
                a = np.array(workers[0].call("logits")["logits"])
                b = np.array(workers[1].call("logits")["logits"])
                res["logits_max_abs_diff"] = float(np.abs(a - b).max())
            if with_ort and "peers" not in skip:
                ort_worker_ = Worker("ort", args, weights, tmp)
                try:
                    res["ort_info"] = ort_worker_.call("info")
                    a = np.array(workers[0].call("logits")["logits"])
                    b = np.array(ort_worker_.call("logits")["logits"])
                    res["ort_logits_max_abs_diff"] = float(np.abs(a - b).max())
                    ort_worker_.call("warmup", train_steps=0, infer_reps=3)
                except RuntimeError as e:  # installed but broken: go on without it
                    ort_worker_.proc.kill()
                    ort_worker_ = None
                    with_ort = res["with_ort"] = False
                    last = str(e).strip().splitlines()[-1]
                    print(f"onnxruntime failed to start ({last}): its columns are skipped.", flush=True)
            for w in workers:
                w.call("warmup", train_steps=10, infer_reps=3)
        pids = [w.proc.pid for w in workers + ([ort_worker_] if ort_worker_ else [])]

        def section(name, fn):
            mark = meter.start(pids)
            out = fn()
            res["other_cpu"][name] = meter.stop(mark, pids)
            return out

        if "throughput" not in skip:
            progress(f"throughput: {cfg['rounds']} interleaved rounds")
            res["throughput"] = section("throughput", lambda: {
                "rounds": cfg["rounds"],
                "train": interleaved(workers, "train", cfg["rounds"], TRAIN_BATCH, meter,
                                     cfg["train_budget_s"], steps=cfg["train_steps"],
                                     max_seconds=cfg["block_max_s"]),
                "infer": interleaved(workers, "infer", cfg["rounds"], INFER_BATCH, meter,
                                     cfg["infer_budget_s"], reps=cfg["infer_reps"],
                                     max_seconds=cfg["block_max_s"])})
        if "peers" not in skip and workers:
            progress(f"inference at 1 and 2 threads, and one image: {PEER_ROUNDS} interleaved "
                     f"rounds" + (" with onnxruntime" if ort_worker_ else ""))
            peers = workers[:1] + ([ort_worker_] if ort_worker_ else []) + workers[1:]
            res["peers"] = section("peers", lambda: peer_inference(peers, meter,
                                                                   cfg["infer_budget_s"]))
            res["sgemm_gflops"] = sgemm_rate(workers[0])
        if "layers" not in skip:
            progress("per-layer breakdown")
            res["layers"] = section("layers", lambda: workers[0].call(
                "layers", reps=cfg["layer_reps"], max_seconds=cfg["layers_max_s"]))
            if with_torch:
                res["torch_phases"] = workers[1].call("phases", reps=cfg["layer_reps"],
                                                      max_seconds=cfg["layers_max_s"])
        if "scaling" not in skip:
            progress(f"scaling over {cfg['sizes']} images")
            def scaling():
                sizes = []
                for n in cfg["sizes"]:
                    mark = meter.start(pids)
                    sizes += workers[0].call("scaling", sizes=[n],
                                             max_seconds=cfg["scaling_max_s"])["sizes"]
                    sizes[-1]["other_cores"] = meter.stop(mark, pids)
                return {"sizes": sizes}
            res["scaling"] = section("scaling", scaling)
        if workers:
            res["worker_peak_rss_mb"] = {w.kind: w.close() for w in workers}
            if ort_worker_:
                res["worker_peak_rss_mb"]["ort"] = ort_worker_.close()
                ort_worker_ = None
            workers, pids = [], []
        if "whole-run" not in skip:
            progress(f"whole runs: {args.whole_run_rounds} interleaved rounds of train.py on "
                     f"{' and '.join(f'{n:,}' for n in WHOLE_RUN_SIZES)} images")
            res["whole_run"] = section("whole_run", lambda: whole_run(
                args, tmp, args.whole_run_rounds, meter, with_torch))
        if "memory" not in skip:
            progress(f"memory: train.py, {cfg['memory_epochs']} epoch(s) on 112,800 images")
            left = args.max_minutes * 60 - (time.perf_counter() - started) - 45  # 45 s: start-up
            timeout = min(args.memory_timeout, max(60.0, left))
            res["memory"] = section("memory", lambda: memory_run(
                args, tmp, cfg["memory_epochs"], timeout))
        if "startup" not in skip:
            progress("start-up: cold and cached")
            res["startup"] = section("startup", lambda: startup(
                args, tmp, cfg["cached_runs"], with_torch))
    finally:
        for w in workers + ([ort_worker_] if ort_worker_ else []):
            try:
                w.close()
            except Exception:
                w.proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    res["loadavg_end"] = os.getloadavg()
    res["seconds"] = time.perf_counter() - started
    print(file=sys.stderr, flush=True)
    print_table(build_rows(res, with_torch))
    notes = []
    if "ort_logits_max_abs_diff" in res:
        notes.append(f"same network check: max |logits tinynet - onnxruntime| = "
                     f"{res['ort_logits_max_abs_diff']:.1e} (onnxruntime "
                     f"{res['ort_info']['onnxruntime']} on tinynet's own ONNX export, "
                     f"intra_op_num_threads = threads, inter_op_num_threads = 1, ORT_SEQUENTIAL)")
    if "logits_max_abs_diff" in res:
        notes.append(f"same network check: max |logits tinynet - pytorch| = "
                     f"{res['logits_max_abs_diff']:.1e} (identical weights and inputs)")
    notes.append("each library runs in its own worker process; pytorch: float32 NCHW, "
                 "torch.optim.SGD(lr=0.01), CrossEntropyLoss, inference in inference_mode()+eval()")
    if res.get("whole_run"):
        notes.append("whole runs (N = 6,400 and 32,000): "
                     + "  |  ".join(res["whole_run"]["commands"].values()))
    if res.get("memory"):
        notes.append(f"memory run: {res['memory']['command']}  ({res['memory']['seconds']:.0f} s); "
                     "20 epochs assumed not to grow memory if epoch 1 -> 2 does not")
    noisy = {k: v for k, v in res["other_cpu"].items() if v is not None and v > QUIET}
    if noisy:
        notes.append("WARNING: other processes were using the CPU during "
                     + ", ".join(f"{k} ({v:.1f} cores)" for k, v in noisy.items())
                     + "; those numbers are noisy, and a '?' marks verdicts taken then. With 2 "
                     "threads on 2 cores both libraries slow down many times over when another "
                     "process takes a core.")
    notes.append(f"load average start {' '.join(f'{v:.2f}' for v in res['loadavg_start'])}, end "
                 f"{' '.join(f'{v:.2f}' for v in res['loadavg_end'])}; benchmark took "
                 f"{res['seconds']:.0f} s")
    for n in notes:
        print(n)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"results saved to {args.json}")
    return 0


def progress(msg):
    print(f"[bench] {msg} ...", file=sys.stderr, flush=True)


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_info(res):
    ti = res["tinynet_info"]
    line = (f"numpy {ti['numpy']}   numba {ti['numba']}   tinynet: {ti['threads']} threads sharing "
            f"{ti['slices']} fixed slices of each batch (tinynet/nn/parallel.py)")
    if "torch_info" in res:
        t = res["torch_info"]
        line += (f"   torch {t['torch']} ({t['threads']} threads, {t['interop_threads']} interop, "
                 f"{t['cpu_capability']}, mkldnn {t['mkldnn']})")
    print(line)
    for b in ti["blas"]:
        print(f"BLAS: {b.get('internal_api')} {b.get('version')} {b.get('architecture', '')} "
              f"{b.get('threading_layer', '')} num_threads={b.get('num_threads')} "
              f"({Path(b.get('filepath', '')).name})")
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "NUMBA_", "MKL_"))}
    print("env: " + (" ".join(f"{k}={v}" for k, v in sorted(env.items())) or "(none)"), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
