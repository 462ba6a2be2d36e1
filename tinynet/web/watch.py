"""The training page: a small HTTP server over a folder of runs (``tinynet watch RUNS_DIR``, and
``train.py --watch`` while it trains). It only reads run folders (``tinynet.web.runs``); what the
trainer writes there for it is ``tinynet.training.runlog``. The page is plain HTML, CSS and JavaScript
shipped in the package (``tinynet/web/static/watch.*``): no CDN, works offline. It polls the API every
2 seconds: live curves (running means every few dozen steps, validation each epoch), learning rate,
images/s and time left, conv1's filters, a grid of validation images with their predictions,
per-class recall, the most confused pairs; and several runs' curves overlaid, with their configs.

HTTP contract (docs/watch.md shows examples):

- ``GET /``: the page (``/static/watch.js``, ``/static/watch.css``).
- ``GET /api/runs``: ``{"runs": [{"name", "status" (running / finished / failed / stopped),
  "epochs_done", "epochs", "step", "val_accuracy", "updated", "problems"}, ...], "focus": the run
  being trained by this process or null}``.
- ``GET /api/runs/<name>/metrics[?after=STEP]``: the run's line as above plus ``config``,
  ``summary`` (null until it ends), ``epoch_records`` (``metrics.jsonl``) and ``step_records``
  (``steps.jsonl``, only those after step ``STEP`` when given).
- ``GET /api/runs/<name>/snapshot``: ``{"name", "snapshot", "problem"}``: the latest
  ``snapshot.json``, or null and why (none yet, corrupt).

A damaged file is never an error of the server: it is reported in ``problems`` / ``problem``.
Errors are JSON ``{"error": "one line"}`` with a 4xx status: 400 a malformed request or query; 404
an unknown path or run (run names are looked up among the runs folder's own entries: no name can
reach outside it); 405 a method other than GET or HEAD; 421 a ``Host`` header that is not the
server's own address (``tinynet.web.server``); 503 (with ``Retry-After``) when 64 connections are
being answered or waiting. Every socket has a timeout
(:data:`SOCKET_TIMEOUT`), so a stalled client holds only its own thread. Binds 127.0.0.1 unless
told otherwise.
"""

import re
import threading
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, unquote

from .runs import Runs
from .server import JSONHandler, JSONServer, RequestError, listen, serve_until_ctrl_c

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001
SOCKET_TIMEOUT = 10.0  # seconds a read or write on one connection may wait
STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": ("watch.html", "text/html; charset=utf-8"),
         "/static/watch.js": ("watch.js", "text/javascript; charset=utf-8"),
         "/static/watch.css": ("watch.css", "text/css; charset=utf-8")}
RUN_API = re.compile(r"/api/runs/([^/]+)/(metrics|snapshot)")


class WatchServer(JSONServer):
    """The page's server over the runs in ``runs_dir``; ``focus``: the run the page opens first."""

    def __init__(self, address, runs_dir, focus=None, timeout=SOCKET_TIMEOUT):
        self.runs = Runs(runs_dir)
        self.focus = focus
        self.pages = {path: ((STATIC / name).read_bytes(), kind) for path, (name, kind) in PAGES.items()}
        super().__init__(address, WatchHandler, timeout)


class WatchHandler(JSONHandler):
    """One connection: the page's files, the JSON API, JSON errors for everything else."""

    def route(self):
        path = self.path.split("?", 1)[0]
        if path in PAGES or path == "/api/runs" or RUN_API.fullmatch(path):
            return path
        raise RequestError(HTTPStatus.NOT_FOUND, f"no such page: {path[:200]}")

    def query(self):
        """The query's ``after`` (an int or None); RequestError 400 for anything else."""
        text = self.path.partition("?")[2]
        try:
            fields = parse_qs(text, strict_parsing=True, max_num_fields=4) if text else {}
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"malformed query: {text[:100]!r}") from None
        unknown = set(fields) - {"after"}
        if unknown:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown query field {sorted(unknown)[0][:40]!r}")
        after = fields.get("after", [None])[-1]
        if after is not None and not re.fullmatch(r"-?[0-9]{1,15}", after):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"after={after[:40]!r} is not a step number")
        return None if after is None else int(after)

    def do_GET(self):
        def handler():
            path = self.route()
            runs = self.server.runs
            if path in PAGES:
                self.send_body(HTTPStatus.OK, *self.server.pages[path])
                return
            if path == "/api/runs":
                self.query_is_empty()
                listed = [runs.summary(name) for name in runs.names()]
                self.send_json(HTTPStatus.OK, {"runs": [r for r in listed if r is not None],
                                               "focus": self.server.focus})
                return
            name, what = RUN_API.fullmatch(path).groups()
            try:
                name = unquote(name, errors="strict")
            except UnicodeDecodeError:
                raise RequestError(HTTPStatus.NOT_FOUND, "no such run (its name is not UTF-8)") from None
            after = self.query() if what == "metrics" else self.query_is_empty()
            answer = runs.metrics(name, after) if what == "metrics" else runs.snapshot(name)
            if answer is None:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no such run: {name[:100]!r}")
            self.send_json(HTTPStatus.OK, answer)
        self.answer(handler)

    def log_request(self, code="-", size="-"):
        """No line per request: the page polls every 2 s, beside a training run's own output
        (errors are still logged)."""

    do_HEAD = do_GET
    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = JSONHandler.refuse

    def query_is_empty(self):
        if "?" in self.path and self.path.partition("?")[2]:
            raise RequestError(HTTPStatus.BAD_REQUEST, "this path takes no query")


def make_server(runs_dir, host=DEFAULT_HOST, port=DEFAULT_PORT, focus=None, timeout=SOCKET_TIMEOUT):
    """A :class:`WatchServer` listening on ``host:port`` (port 0: any free one; see ``.url``); an
    ``OSError`` naming the address when it cannot listen there."""
    return listen(lambda: WatchServer((host, port), runs_dir, focus, timeout), host, port)


def serve_in_background(server):
    """Serve in a daemon thread (it dies with the process); returns the thread. The training
    page of ``train.py --watch``: the training thread never waits for it."""
    thread = threading.Thread(target=server.serve_forever, name="tinynet-watch", daemon=True)
    thread.start()
    return thread


def serve(runs_dir, host=DEFAULT_HOST, port=DEFAULT_PORT, focus=None):
    """Serve the page until Ctrl-C; prints the URL. Returns 0 (an exit status)."""
    return serve_until_ctrl_c(make_server(runs_dir, host, port, focus), f"the training page of {runs_dir}")
