"""The requests tinynet's two servers are tested with (tests/test_watch.py, and the load benchmarks
bench/load.py and bench/watch_load.py), public for checking a server you run: broken requests of
every kind the servers must answer with a 4xx JSON error or close (never a 5xx, never a
traceback), hostile images and requests from another site (issue 42), path traversals, a burst
beyond the server's capacity, a client that reads whatever comes back, and a runs folder with a
good, a damaged and an escaping run for the training page. The library never imports it.
"""

import functools
import http.client
import io
import json
import re
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from ..web.draw import MAX_BODY_BYTES, SOCKET_TIMEOUT
from .datasets import write_toy_dataset
from .hostile import cross_png, declared_png, line_png, specks_png, stroke_png

HOST = "127.0.0.1"
CLIENT_TIMEOUT = SOCKET_TIMEOUT + 20  # a client gives up on an answer after this many seconds
SECRET = "tinynet-secret-7f3a: this file is outside the runs folder"


def blank_png():
    out = io.BytesIO()
    Image.new("L", (64, 64), 255).save(out, "PNG")
    return out.getvalue()


def post_head(length=None, extra=""):
    """The head of a POST /api/predict request, with ``Content-Length: length`` unless None."""
    head = f"POST /api/predict HTTP/1.1\r\nHost: {HOST}\r\n{extra}"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + "\r\n").encode("latin-1")


@functools.cache
def hostile_images():
    """``{name: (PNG bytes, the status the drawing page answers)}``: issue 42's hostile images
    (tinynet.testing.hostile), made once: thin ones refused from their header (400), specks that
    vanish (422), a decompression bomb's header (400), and the two costliest accepted (200, about
    a second of a core each)."""
    return {"16384x64 stroke": (stroke_png(16384, 64), 400), "16777216x1 line": (line_png(1 << 24), 400),
            "3000x3000 two specks": (specks_png(3000), 422), "bomb header": (declared_png(100_000, 100_000), 400),
            "16384x1024 stroke": (stroke_png(16384, 1024), 200), "4096x4096 cross": (cross_png(4096, 4096), 200)}


def predict_case(kind, rng, png):
    """``(bytes to send, close our sending side afterwards)`` for one broken request of ``kind``
    (one of ``PREDICT_KINDS``) to the drawing page's server; ``png`` is a valid body to spoil."""
    if kind == "truncated body":
        return post_head(len(png)) + png[:rng.randint(1, len(png) - 1)], True
    if kind == "Content-Length too short":
        return post_head(rng.randint(1, len(png) - 1)) + png, False
    if kind == "Content-Length too long":
        return post_head(len(png) + rng.randint(1, 10_000)) + png, True
    if kind == "Content-Length absurd":
        return post_head(rng.choice((MAX_BODY_BYTES + 1, 10**12, 10**30))), False
    if kind == "Content-Length not a number":
        return post_head(rng.choice(("abc", "-5", "1e3", "", " 12x", "0x10", "\u00b2"))) + png, False
    if kind == "no Content-Length":
        return post_head() + png, True
    if kind == "chunked":
        return post_head(extra="Transfer-Encoding: chunked\r\n") + b"10\r\n" + png[:16] + b"\r\n0\r\n\r\n", True
    if kind == "oversized header line":
        return post_head(len(png), extra=f"X-Big: {'a' * rng.randint(66_000, 200_000)}\r\n") + png, False
    if kind == "too many headers":
        extra = "".join(f"X-{i}: {i}\r\n" for i in range(rng.randint(101, 400)))
        return post_head(len(png), extra=extra) + png, False
    if kind == "oversized request line":
        return f"GET /{'x' * rng.randint(66_000, 150_000)} HTTP/1.1\r\n\r\n".encode(), False
    if kind == "random bytes":
        return rng.randbytes(rng.randint(1, 5000)), True
    if kind == "random body":
        body = rng.randbytes(rng.randint(1, 50_000))
        return post_head(len(body)) + body, False
    if kind == "blank image":
        body = blank_png()
        return post_head(len(body)) + body, False
    if kind == "empty body":
        return post_head(0), False
    if kind == "wrong method":
        line = rng.choice(("GET /api/predict", "DELETE /api/predict", "PUT /", "POST /",
                           "BREW /api/predict", "OPTIONS /static/app.js", "PATCH /api/predict"))
        return f"{line} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n".encode(), False
    if kind == "unknown path":
        line = rng.choice(("GET /etc/passwd", "GET /static/../serve.py", "POST /api/predictx",
                           "GET /%00", "GET /static/", "POST /api"))
        return f"{line} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n".encode(), False
    if kind == "bad HTTP version":
        version = rng.choice(("HTTP/2.0", "HTTP/9.9", "HTTP/x", "HTTP/1.1.1", "SPDY/3", "HTTP/1.1 extra"))
        return f"GET / {version}\r\n\r\n".encode(), False
    return other_site_case(kind, rng, png)


def other_site_case(kind, rng, png):
    """``predict_case`` for the hostile kinds of issue 42: a hostile image, and requests a page on
    another site would make (its own name as Host, as after DNS rebinding; its Origin on a POST)."""
    if kind == "hostile image":
        body, _ = hostile_images()[rng.choice(sorted(hostile_images()))]
        return post_head(len(body)) + body, False
    if kind == "foreign Host":
        host = rng.choice(("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost:1"))
        line = rng.choice(("GET /", "GET /api/model", "GET /api/runs", "POST /api/predict"))
        return f"{line} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode(), False
    if kind == "cross-origin POST":
        origin = rng.choice(("http://evil.example", "null", "https://127.0.0.1", "http://localhost:1"))
        return post_head(len(png), extra=f"Origin: {origin}\r\n") + png, False
    raise AssertionError(kind)


PREDICT_KINDS = ("truncated body", "Content-Length too short", "Content-Length too long",
         "Content-Length absurd", "Content-Length not a number", "no Content-Length", "chunked",
         "oversized header line", "too many headers", "oversized request line", "random bytes",
         "random body", "blank image", "empty body", "wrong method", "unknown path",
         "bad HTTP version", "hostile image", "foreign Host", "cross-origin POST")


def exchange(port, data, close_send, timeout=CLIENT_TIMEOUT):
    """Send ``data`` on a new connection and read until the server closes it: ``(status or None,
    body bytes, how it ended)``; how: "answered", "closed" (no answer) or "reset"."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        received = b""
        try:
            s.sendall(data)
            if close_send:
                s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            if not received:
                return None, b"", "reset"
    if not received:
        return None, b"", "closed"
    head, _, body = received.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    return (int(match[1]) if match else None), body, "answered"


def send_all(port, cases, make):
    """Each ``(kind, rng)`` of ``cases`` sent as ``make(kind, rng)`` (bytes, close our sending
    side) on its own connection, 8 at a time: ``[(kind, (status, body, how))]`` as ``exchange``
    gives, with how "client error ..." where our own side failed."""
    def one(case):
        kind, rng = case
        data, close_send = make(kind, rng)
        try:
            return kind, exchange(port, data, close_send)
        except OSError as e:
            return kind, (None, b"", f"client error {type(e).__name__}")

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, cases))


def burst(port, hold, extra, request=b"GET / HTTP/1.1\r\n\r\n"):
    """Over capacity: ``hold`` connections each send half a request and stall (taking the
    server's workers and its queue), then ``extra`` more send ``request`` at once. Returns
    ``(statuses, latencies of the 503 answers in s, statuses once the held connections closed)``:
    the ``extra`` answers' statuses (or how each ended) and, after the held connections are closed,
    8 more requests' statuses (the server must answer again within its socket timeout)."""
    held = []
    try:
        for _ in range(hold):
            s = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
            s.sendall(b"GET / HTTP/1.1\r\nX-Half: ")
            held.append(s)
        time.sleep(0.5)  # the server accepts them all

        def one(_):
            started = time.perf_counter()
            try:
                status, _, how = exchange(port, request, False)
            except OSError as e:
                status, how = None, f"client error {type(e).__name__}"
            return (status if how == "answered" else how), time.perf_counter() - started
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(extra)))
    finally:
        for s in held:
            s.close()
    after, deadline = [], time.monotonic() + SOCKET_TIMEOUT + 10
    while len(after) < 8 and time.monotonic() < deadline:
        status = exchange(port, request, False)[0]
        if status != 503:
            after.append(status)
        else:
            time.sleep(0.2)
    return [a for a, _ in answers], [t for a, t in answers if a == 503], after


def tally(outcomes):
    """``send_all``'s outcomes counted: ``(statuses, ends, five, not_json)``, the answers' status
    counts, how the unanswered ended, the 5xx answers (or answers without a status line), and the
    4xx answers whose body is not an ``{"error": "..."}`` JSON object (kind, status, body's start)."""
    statuses = Counter(s for _, (s, _, how) in outcomes if how == "answered")
    ends = Counter(how for _, (_, _, how) in outcomes if how != "answered")
    five = sum(n for s, n in statuses.items() if s is None or s >= 500)
    not_json = [(k, s, b[:80]) for k, (s, b, how) in outcomes
                if how == "answered" and s is not None and 400 <= s < 500 and not is_error_json(b)]
    return statuses, ends, five, not_json


def make_runs(folder):
    """A runs folder for the test: ``good`` (a short toy run with the recorder), ``damaged`` (a
    copy with a truncated step record and a corrupt snapshot) and ``escape``, a link to a folder
    outside holding a config.json and the secret (and ``good/leak.json``, a link to that file).
    Returns the runs folder."""
    from ..training.runlog import Recorder  # the training loop, only for this
    from ..training.config import TrainConfig
    from ..training.trainer import train

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


def watch_case(kind, rng, body):
    """``(bytes, close our sending side)`` for one broken request (one of ``WATCH_KINDS``) to the
    training page's server: the drawing page's kinds, and this server's own (path traversal, bad
    queries)."""
    if kind in PREDICT_KINDS:
        return predict_case(kind, rng, body)
    path = rng.choice(TRAVERSALS if kind == "traversal" else BAD_QUERIES)
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode("latin-1"), False


WATCH_KINDS = PREDICT_KINDS + ("traversal", "bad query")


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


def watch_checks():
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


def is_error_json(body):
    try:
        return isinstance(json.loads(body)["error"], str)
    except (ValueError, KeyError, TypeError):
        return False
