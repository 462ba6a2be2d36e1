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
   The kinds include issue 42's: hostile images (POSTed here: 405), a foreign ``Host`` (421), a
   POST from another site's ``Origin`` (403).
3. Burst: ``--burst`` connections stall half-way, taking every worker and place in the queue,
   while 50 more requests come: each gets a quick 503 (bench/load.py's phase 3), and once the
   stalled ones close, requests are answered again.
4. After: a normal request answers 200; Ctrl-C stops the server with status 0; its stderr holds
   no traceback.

Exit status 0 when every target is met, 1 otherwise.
"""

import argparse
import importlib.util
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

from tinynet.testing.requests import (CLIENT_TIMEOUT, HOST, SECRET, WATCH_KINDS, get, make_runs,  # noqa: E402
                                      send_all, tally, watch_case, watch_checks)
from tinynet.web.watch import SOCKET_TIMEOUT  # noqa: E402

URL_LINE = re.compile(r"at http://127\.0\.0\.1:(\d+)/")


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
            plan = watch_checks()

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
            cases = [(WATCH_KINDS[i % len(WATCH_KINDS)], random.Random(f"{args.seed}:{i}")) for i in range(args.malformed)]
            body = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
            outcomes = send_all(port, cases, lambda kind, rng: watch_case(kind, rng, body))
            for t in stallers:
                t.join(CLIENT_TIMEOUT + 5)
            statuses, ends, five, not_json = tally(outcomes)
            leaks = sum(SECRET.encode() in b or b"tinynet-secret" in b for _, (_, b, _) in outcomes)
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
            wrong = Counter(k for k, (s, _, _) in outcomes if k in load.OTHER_SITE and s not in load.OTHER_SITE[k])
            print(f"  other sites' requests answered otherwise: {dict(wrong) or 0}")
            if wrong:
                failed.append("other-site requests not refused")
            if args.burst:
                load.check_burst(port, args.burst, failed)
            latency, error = get(port, *plan[1])
            print(f"after: {f'FAILED: {error}' if error else f'answered in {latency * 1000:.0f} ms'}")
            if error:
                failed.append("no normal answer afterwards")
        finally:
            load.stop_server(process, log, failed)
    print(f"total {time.monotonic() - started_all:.0f} s")
    print("all targets met" if not failed else f"TARGETS MISSED: {'; '.join(failed)}")
    return 1 if failed else 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench/watch_load.py", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=load.positive_int, default=16, help="concurrent clients (default: 16)")
    p.add_argument("--requests", type=load.positive_int, default=100, help="requests per client (default: 100)")
    p.add_argument("--malformed", type=load.positive_int, default=1000, help="broken requests (default: 1000)")
    p.add_argument("--stalls", type=int, default=16, help="clients that stall mid-request (default: 16)")
    p.add_argument("--burst", type=int, default=64,
                   help="connections stalled in the burst phase (default: 64; 0 skips the phase)")
    p.add_argument("--seed", type=int, default=0, help="seed of the broken requests")
    p.add_argument("--deadline", type=load.positive_int, default=900,
                   help="seconds after which the whole run is abandoned (default: 900)")
    args = p.parse_args(argv)
    load.set_deadline(args.deadline)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
