"""The hardening every tinynet HTTP server shares (the drawing page, ``tinynet.web.draw``; the
training page, ``tinynet.web.watch``): standard-library ``ThreadingHTTPServer`` with a socket timeout
on every connection, and answers that are JSON ``{"error": "one line"}`` with a 4xx status for any
bad request, including the ones ``http.server`` itself rejects (a request line it cannot parse, an
unknown method, HTTP/2): bad input never gets a 5xx. A 500 is kept for bugs, with the traceback on
stderr.

A server subclasses :class:`JSONServer` (giving ``socket_timeout``) and its handler subclasses
:class:`JSONHandler`, implementing ``route()`` (the path, or ``RequestError`` 404) and
``allowed(path)`` (the methods a path takes), and wrapping its work in ``self.answer(handler)``.
"""

import json
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import TinynetError


class RequestError(TinynetError):
    """A request that gets a 4xx answer: ``status``, a one-line ``message``, extra ``headers``."""

    def __init__(self, status, message, headers=()):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class JSONServer(ThreadingHTTPServer):
    """A threading HTTP server whose connections time out after ``socket_timeout`` seconds per
    read or write."""

    daemon_threads = True  # Ctrl-C does not wait for connections still open
    request_queue_size = 128  # listen backlog (socketserver's 5 drops connections in a burst: 1 s retries)

    def __init__(self, address, handler, timeout):
        self.socket_timeout = timeout
        super().__init__(address, handler)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def listen(make, host, port):
    """``make()`` (a server constructor bound to ``host:port``), with an ``OSError`` naming the
    address when it cannot listen there."""
    try:
        return make()
    except OSError as e:
        raise OSError(e.errno, f"cannot listen there ({e.strerror or e})", f"{host}:{port}") from None


class JSONHandler(BaseHTTPRequestHandler):
    """One connection: timeouts, JSON answers and JSON errors (see the module docstring)."""

    server_version = "tinynet"
    # Answers carry a status line even to requests too broken to say their HTTP version (http.server
    # would otherwise answer those the HTTP/0.9 way: a bare body).
    default_request_version = "HTTP/1.0"

    def setup(self):
        self.timeout = self.server.socket_timeout  # StreamRequestHandler applies it to the socket
        super().setup()

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, TimeoutError):  # the client went away or stalled mid-answer
            pass

    def route(self):
        """The request's path (without query); RequestError 404 for an unknown one."""
        raise NotImplementedError

    def allowed(self, path):
        """The methods ``path`` takes, e.g. ``"GET, HEAD"``."""
        return "GET, HEAD"

    def send_body(self, status, body, kind, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, payload, headers=()):
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_body(status, body, "application/json", (("Cache-Control", "no-store"), *headers))

    def send_error(self, code, message=None, detail=None):
        """http.server's own errors (a request it cannot parse, a method with no ``do_`` handler),
        as JSON. Its 5xx answers are about the request (an unknown method, HTTP/2 or later), so
        they become 405 (or 404 for an unknown path) and 400: bad input never gets a 5xx."""
        self.close_connection = True
        if code == HTTPStatus.NOT_IMPLEMENTED:  # a method with no do_ handler
            self.refuse()
            return
        if code >= 500:
            code = HTTPStatus.BAD_REQUEST
        self.send_json(code, {"error": message or HTTPStatus(code).phrase})

    def not_allowed(self, path):
        allowed = self.allowed(path)
        raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed on {path} "
                           f"(only {allowed})", [("Allow", allowed)])

    def answer(self, handler):
        """Run ``handler()``, turning a RequestError into its JSON error (and anything else into
        a 500 with the traceback on stderr)."""
        try:
            handler()
        except RequestError as e:
            self.close_connection = True
            self.send_json(e.status, {"error": e.message}, e.headers)
        except (ConnectionError, TimeoutError):
            raise
        except Exception:  # a bug: say so, keep serving
            self.log_error("internal error on %s %s", self.command, self.path[:200])
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error (a bug in tinynet)"})

    def refuse(self):
        """A method this server does not take: 405 (404 for an unknown path)."""
        self.answer(lambda: self.not_allowed(self.route()))


def serve_until_ctrl_c(server, what):
    """Print ``serving WHAT at URL``, serve until Ctrl-C, close. Returns 0 (an exit status)."""
    print(f"serving {what} at {server.url}  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0
