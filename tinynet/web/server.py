"""The hardening every tinynet HTTP server shares (the drawing page, ``tinynet.web.draw``; the
training page, ``tinynet.web.watch``): a standard-library ``HTTPServer`` whose connections are
answered by a fixed pool of worker threads, with a socket timeout on every connection, and answers
that are JSON ``{"error": "one line"}`` with a 4xx status for any bad request, including the ones
``http.server`` itself rejects (a request line it cannot parse, an unknown method, HTTP/2): bad
input never gets a 5xx. A 500 is kept for bugs, with the traceback on stderr; a 503 means busy.

- **Only its own origin.** A request whose ``Host`` header is not one of the server's own
  addresses (``127.0.0.1``, ``localhost``, ``[::1]``, the host it was bound to, and, when bound to
  every interface, the address the connection came in on; each with the server's port, or no
  port) gets 421; a request other than GET or HEAD whose ``Origin`` is present and not one of
  those (as ``http://HOST:PORT``) gets 403. So a web page on another site that the user visits
  cannot post to the server, nor read its answers by rebinding its own name to 127.0.0.1 (DNS
  rebinding); a browser always sends ``Host``, so a request without one (only hand-made clients
  send those) is let through.
- **Bounded work.** At most :attr:`JSONServer.max_connections` connections are answered at once,
  each by one of as many worker threads (started as needed, kept), and at most
  :attr:`JSONServer.max_waiting` more wait for a worker; a connection beyond those gets a quick
  ``503`` JSON answer with ``Retry-After``, written by the accepting thread without reading the
  request. No connection ever gets a thread of its own.

A server subclasses :class:`JSONServer` (giving ``socket_timeout``) and its handler subclasses
:class:`JSONHandler`, implementing ``route()`` (the path, or ``RequestError`` 404) and
``allowed(path)`` (the methods a path takes), and wrapping its work in ``self.answer(handler)``.
"""

import json
import queue
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

from ..errors import TinynetError

LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")  # what this machine calls itself, in a Host header
WILDCARDS = ("", "0.0.0.0", "::")  # bind addresses meaning every interface


class RequestError(TinynetError):
    """A request that gets a 4xx answer: ``status``, a one-line ``message``, extra ``headers``."""

    def __init__(self, status, message, headers=()):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class JSONServer(HTTPServer):
    """An HTTP server whose connections time out after ``socket_timeout`` seconds per read or
    write, answered by a fixed pool of worker threads (see the module docstring)."""

    request_queue_size = 128  # listen backlog (socketserver's 5 drops connections in a burst: 1 s retries)
    max_connections = 32  # connections answered at once, each by a worker thread
    max_waiting = 32      # connections accepted and waiting for a worker; beyond them, 503

    def __init__(self, address, handler, timeout):
        self.socket_timeout = timeout
        self.pending = queue.Queue()  # accepted connections for the workers; None stops one
        self.lock = threading.Lock()
        self.workers, self.active = [], 0  # the worker threads; connections accepted, not yet done
        super().__init__(address, handler)
        port = self.server_address[1]
        bound = address[0].lower()
        names = set(LOCAL_NAMES) | ({f"[{bound}]" if ":" in bound else bound} - set(WILDCARDS))
        self.own_hosts = frozenset(names | {f"{name}:{port}" for name in names})
        self.any_interface = bound in WILDCARDS

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def process_request(self, request, client_address):
        """Hand the connection to a worker (starting one if fewer than ``max_connections`` run and
        all are busy), or answer 503 when ``max_connections + max_waiting`` are taken."""
        with self.lock:
            full = self.active >= self.max_connections + self.max_waiting
            if not full:
                self.active += 1
                if len(self.workers) < min(self.active, self.max_connections):
                    worker = threading.Thread(target=self.work, daemon=True,
                                              name=f"tinynet-http-{len(self.workers)}")
                    self.workers.append(worker)
                    worker.start()
        if full:
            self.busy(request)
        else:
            self.pending.put((request, client_address))

    def work(self):
        """A worker thread: answer connections one after another until told to stop."""
        while (item := self.pending.get()) is not None:
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self.lock:
                    self.active -= 1

    def busy(self, request):
        """A 503 JSON answer for a connection beyond the pool and its queue, written without
        waiting (the request is not read, beyond what has already arrived), then closed."""
        body = json.dumps({"error": f"busy: {self.max_connections + self.max_waiting} requests are "
                                    f"being answered or waiting; try again in a second"}).encode()
        head = (f"HTTP/1.0 503 Service Unavailable\r\nServer: tinynet\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\nRetry-After: 1\r\nCache-Control: no-store\r\n"
                f"Connection: close\r\n\r\n").encode()
        try:
            request.setblocking(False)
            try:
                request.recv(65536)  # what has arrived: closing with unread data would reset the answer
            except (BlockingIOError, InterruptedError):
                pass
            request.send(head + body)  # fits an empty socket buffer: never blocks
        except OSError:
            pass
        self.shutdown_request(request)

    def server_close(self):
        """Close the listening socket and stop the workers (each after its current connection)."""
        super().server_close()
        with self.lock:
            for _ in self.workers:
                self.pending.put(None)
            self.workers = []


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
        """Run ``handler()`` for a request from the server's own origin (:meth:`check_caller`),
        turning a RequestError into its JSON error (and anything else into a 500 with the
        traceback on stderr)."""
        try:
            self.check_caller()
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

    def check_caller(self):
        """RequestError 421 for a ``Host`` that is not one of the server's own addresses, 403 for
        a request other than GET or HEAD whose ``Origin`` is not one of them (module docstring)."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            raise RequestError(HTTPStatus.BAD_REQUEST, "more than one Host header")
        if hosts and not self.own_host(hosts[0].strip().lower()):
            raise RequestError(HTTPStatus.MISDIRECTED_REQUEST,
                               f"Host {hosts[0][:100]!r} is not this server's address: it answers "
                               f"only pages of its own ({self.server.url})")
        origins = self.headers.get_all("Origin") or []
        if self.command not in ("GET", "HEAD") and origins:
            origin = origins[0].strip().lower()
            try:
                parts = urlsplit(origin)
                own = (len(origins) == 1 and parts.scheme == "http" and origin == f"http://{parts.netloc}"
                       and parts.port == self.server.server_address[1] and self.own_host(parts.netloc))
            except ValueError:  # a port that is not a number
                own = False
            if not own:
                raise RequestError(HTTPStatus.FORBIDDEN,
                                   f"Origin {origins[0][:100]!r} is another site: this server takes "
                                   f"{self.command} requests only from its own page ({self.server.url})")

    def own_host(self, host):
        """Whether ``host`` (``name`` or ``name:port``, lower case) is one of the server's own."""
        if host in self.server.own_hosts:
            return True
        if not self.server.any_interface:
            return False
        local = self.connection.getsockname()[0]  # bound everywhere: the address it came in on
        local = f"[{local}]" if ":" in local else local
        return host in (local, f"{local}:{self.server.server_address[1]}")

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
