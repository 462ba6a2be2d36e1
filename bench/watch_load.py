#!/usr/bin/env python3
"""Load and fault test of the training page's server (``tinynet watch``), on loopback only: the
drawing page's standards (bench/load.py, whose clients this reuses) for the training page.

    python3 bench/watch_load.py                     # 16 clients x 100, 1,000 malformed, 16 stalls
    python3 bench/watch_load.py --clients 4 --requests 20 --malformed 100 --stalls 2   # quick

Against a real ``python3 -m tinynet watch RUNS --port 0`` (a subprocess on 127.0.0.1) over a runs
folder made for it: a short toy run trained with the recorder, a run with damaged files (a
truncated ``steps.jsonl`` line, a corrupt ``snapshot.json``) and, beside the runs folder, a
secret file that a link inside it points to.

1. Load: ``--clients`` threads each send ``--requests`` GETs in turn over the page and the API
   (``/``, ``/api/runs``, a run's ``metrics`` and ``snapshot``, the damaged run's). A request
   fails unless it answers 200 with the right content.
2. Faults: ``--malformed`` broken requests from 8 threads: bench/load.py's kinds (truncated and
   absurd bodies and headers, random bytes, wrong methods, bad HTTP versions ...) and this
   server's own: path traversal in run names (``..``, ``%2e%2e``, ``%2F``, absolute paths, a link
   pointing outside, NUL bytes, non-UTF-8), bad queries. Meanwhile ``--stalls`` clients send half a
   request and stall; each must be cut off within the socket timeout (+5 s). Every answer must be
   a 2xx/4xx (no 5xx), errors JSON, and no answer may contain the secret file's text.
3. After: a normal request answers 200; Ctrl-C stops the server with status 0; its stderr holds
   no traceback.

Exit status 0 when every target is met, 1 otherwise.
"""

import argparse
import http.client
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load)

from tinynet.runlog import Recorder  # noqa: E402
from tinynet.training import TrainConfig, train  # noqa: E402
from tinynet.watch import SOCKET_TIMEOUT  # noqa: E402
from tinynet.testing import write_toy_dataset  # noqa: E402

HOST = load.HOST
SECRET = "tinynet-secret-7f3a: this file is outside the runs folder"
URL_LINE = re.compile(r"at http://127\.0\.0\.1:(\d+)/")
CLIENT_TIMEOUT = SOCKET_TIMEOUT + 20


def make_runs(folder):
    """A runs folder for the test: ``good`` (a short toy run with the recorder), ``damaged`` (a
    copy with a truncated step record and a corrupt snapshot) and ``escape``, a link to a folder
    outside holding a config.json and the secret (and ``good/leak.json``, a link to that file).
    Returns the runs folder."""
    folder = Path(folder)
    data = write_toy_dataset(folder / "data", n_train=300, n_test=60)
    runs = folder / "runs"
    config = TrainConfig(data_dir=str(data), dataset="tiny", epochs=2, batch_size=16)
    train(config, runs / "good", download=False, progress=False, log=lambda *a: None,
          callbacks=[Recorder(every=2, snapshot_every=5, sample=40, grid=12, budget=None)])
    damaged = runs / "damaged"
    damaged.mkdir()
    for name in ("config.json", "metrics.jsonl", "summary.json", "status.json"):
        (damaged / name).write_bytes((runs / "good" / name).read_bytes())
    steps = (runs / "good" / "steps.jsonl").read_bytes()
    (damaged / "steps.jsonl").write_bytes(steps + b'{"step": 999, "lo')
    (damaged / "snapshot.json").write_bytes((runs / "good" / "snapshot.json").read_bytes()[:500])
    outside = folder / "outside"
    outside.mkdir()
    (outside / "config.json").write_text(json.dumps({"secret": SECRET}))
    (outside / "secret.txt").write_text(SECRET)
    (runs / "escape").symlink_to(outside, target_is_directory=True)
    (runs / "good" / "leak.json").symlink_to(outside / "config.json")
    return runs


TRAVERSALS = ["/api/runs/../metrics", "/api/runs/%2e%2e/metrics", "/api/runs/%2E%2E/snapshot",
              "/api/runs/..%2F..%2Foutside/metrics", "/api/runs/%2Fetc%2Fpasswd/metrics",
              "/api/runs//etc/passwd/metrics", "/api/runs/escape/metrics", "/api/runs/escape/snapshot",
              "/api/runs/good%2F..%2F..%2Foutside/metrics", "/api/runs/good%00/metrics",
              "/api/runs/%ff%fe/metrics", "/api/runs/.%2e/metrics", "/api/runs/~/metrics",
              "/static/../../outside/secret.txt", "/static/%2e%2e/watch.py", "/..%2f..%2foutside%2fsecret.txt",
              "/api/runs/good/../../outside/secret.txt", "/api/runs/good/leak.json",
              "/api/runs/%5c..%5c/metrics", "/api/runs/" + "a" * 300 + "/metrics"]
BAD_QUERIES = ["/api/runs/good/metrics?after=x", "/api/runs/good/metrics?after=1e9", "/api/runs/good/metrics?x=1",
               "/api/runs/good/metrics?after=1&after=2&after=3&after=4&after=5", "/api/runs?x",
               "/api/runs/good/snapshot?after=1", "/api/runs/good/metrics?%zz", "/api/runs/good/metrics?after=" + "9" * 40]
WATCH_KINDS = ("traversal", "bad query")


def malformed_case(kind, rng, body):
    """``(bytes, close our sending side)`` for one broken request: bench/load.py's kinds, and
    this server's own (path traversal, bad queries)."""
    if kind in load.KINDS:
        return load.malformed_case(kind, rng, body)
    path = rng.choice(TRAVERSALS if kind == "traversal" else BAD_QUERIES)
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode("latin-1"), False


KINDS = load.KINDS + WATCH_KINDS


def get(port, path, check):
    """One GET: ``(latency in s, None or the failure)``; ``check(body)`` says what is wrong."""
    started = time.perf_counter()
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=CLIENT_TIMEOUT)
        connection.request("GET", path)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        latency = time.perf_counter() - started
        if response.status != 200:
            return latency, f"{path}: status {response.status}: {payload[:200]!r}"
        problem = check(payload)
        return latency, problem and f"{path}: {problem}"
    except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
        return time.perf_counter() - started, f"{path}: {type(e).__name__}: {e}"


def checks():
    """``[(path, check)]``: the requests of the load test and what each answer must hold."""
    def runs(p):
        names = {r["name"]: r["status"] for r in json.loads(p)["runs"]}
        return None if names == {"good": "finished", "damaged": "finished"} else f"runs {names}"

    def metrics(p):
        m = json.loads(p)
        return None if m["epoch_records"] and m["step_records"] and m["config"] else "incomplete metrics"

    def damaged(p):
        m = json.loads(p)
        return None if any("still being written" in x for x in m["problems"]) else "truncation not reported"

    def snapshot(p):
        return None if json.loads(p)["snapshot"]["filters"]["data"] else "no filters"

    def corrupt(p):
        s = json.loads(p)
        return None if s["snapshot"] is None and "corrupt" in s["problem"] else "corruption not reported"

    def page(p):
        return None if b"watch.js" in p else "not the page"
    return [("/", page), ("/api/runs", runs), ("/api/runs/good/metrics", metrics),
            ("/api/runs/good/metrics?after=10", metrics), ("/api/runs/good/snapshot", snapshot),
            ("/api/runs/damaged/metrics", damaged), ("/api/runs/damaged/snapshot", corrupt)]


def start_server(runs, log):
    """``(process, port)`` of ``python3 -m tinynet watch RUNS --port 0``."""
    process = subprocess.Popen([sys.executable, "-m", "tinynet", "watch", str(runs), "--port", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=log, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    load.SERVERS.append(process)
    line = process.stdout.readline()
    match = URL_LINE.search(line)
    if not match:
        process.kill()
        raise SystemExit(f"the server did not start: {line!r} (its stderr is in {log.name})")
    return process, int(match[1])


def run(args):
    failed = []
    started_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tinynet-watch-load-") as tmp, \
            tempfile.NamedTemporaryFile("w+", prefix="tinynet-watch-", suffix=".log") as log:
        runs = make_runs(tmp)
        process, port = start_server(runs, log)
        print(f"server pid {process.pid} on {HOST}:{port} over {runs}; load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        try:
            plan = checks()

            def client(c):
                return [get(port, *plan[(c + i) % len(plan)]) for i in range(args.requests)]
            t0, cpu0 = time.perf_counter(), load.cpu_seconds(process.pid)
            with ThreadPoolExecutor(args.clients) as pool:
                results = [r for rs in pool.map(client, range(args.clients)) for r in rs]
            seconds, cpu1 = time.perf_counter() - t0, load.cpu_seconds(process.pid)
            latencies = [t for t, _ in results]
            errors = Counter(e for _, e in results if e)
            print(f"load: {args.clients} clients x {args.requests} requests in {seconds:.1f} s "
                  f"({len(results) / seconds:.0f} requests/s): {sum(errors.values())} failures; latency "
                  f"p50 {load.percentile(latencies, 50):.0f} ms, p99 {load.percentile(latencies, 99):.0f} ms")
            if cpu0 is not None:  # what the page's polling costs a training process: 3 requests / 2 s
                per_request = (cpu1 - cpu0) / len(results)
                print(f"  server CPU time {per_request * 1000:.1f} ms per request: an open page (3 "
                      f"requests every 2 s) would take {per_request * 3 / 2:.2%} of a core")
            for e, n in errors.most_common(5):
                print(f"  {n} x {e}")
            if errors:
                failed.append("load failures")

            stalled = []
            stallers = [threading.Thread(target=load.stall, args=(port, i % 2 == 0, stalled))
                        for i in range(args.stalls)]
            for t in stallers:
                t.start()
            cases = [(KINDS[i % len(KINDS)], random.Random(f"{args.seed}:{i}")) for i in range(args.malformed)]
            body = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4

            def fault(case):
                kind, rng = case
                data, close_send = malformed_case(kind, rng, body)
                try:
                    return kind, load.exchange(port, data, close_send)
                except OSError as e:
                    return kind, (None, b"", f"client error {type(e).__name__}")
            with ThreadPoolExecutor(8) as pool:
                outcomes = list(pool.map(fault, cases))
            for t in stallers:
                t.join(CLIENT_TIMEOUT + 5)
            statuses = Counter(s for _, (s, _, how) in outcomes if how == "answered")
            ends = Counter(how for _, (_, _, how) in outcomes if how != "answered")
            five = sum(n for s, n in statuses.items() if s is None or s >= 500)
            leaks = sum(SECRET.encode() in b or b"tinynet-secret" in b for _, (_, b, _) in outcomes)
            not_json = [(k, s, b[:80]) for k, (s, b, how) in outcomes
                        if how == "answered" and s is not None and 400 <= s < 500 and not is_error_json(b)]
            alive = process.poll() is None
            print(f"malformed: {len(outcomes)} requests: statuses "
                  f"{dict(sorted(statuses.items(), key=lambda kv: str(kv[0])))}; without an answer "
                  f"{dict(ends) or 0}; {five} 5xx; {len(not_json)} error answers not JSON; {leaks} answers "
                  f"with the outside file's text; server {'alive' if alive else 'CRASHED'}")
            for item in not_json[:5]:
                print(f"  not JSON: {item}")
            load.report_stalls(stalled, args.stalls, SOCKET_TIMEOUT, failed)
            if five or not_json or leaks or not alive:
                failed.append("5xx, non-JSON errors, a leak or a crash")
            latency, error = get(port, *plan[1])
            print(f"after: {f'FAILED: {error}' if error else f'answered in {latency * 1000:.0f} ms'}")
            if error:
                failed.append("no normal answer afterwards")
        finally:
            load.stop_server(process, log, failed)
    print(f"total {time.monotonic() - started_all:.0f} s")
    print("all targets met" if not failed else f"TARGETS MISSED: {'; '.join(failed)}")
    return 1 if failed else 0


def is_error_json(body):
    try:
        return isinstance(json.loads(body)["error"], str)
    except (ValueError, KeyError, TypeError):
        return False


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench/watch_load.py", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=load.positive_int, default=16, help="concurrent clients (default: 16)")
    p.add_argument("--requests", type=load.positive_int, default=100, help="requests per client (default: 100)")
    p.add_argument("--malformed", type=load.positive_int, default=1000, help="broken requests (default: 1000)")
    p.add_argument("--stalls", type=int, default=16, help="clients that stall mid-request (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the broken requests")
    p.add_argument("--deadline", type=load.positive_int, default=900,
                   help="seconds after which the whole run is abandoned (default: 900)")
    args = p.parse_args(argv)
    load.set_deadline(args.deadline)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
