"""What both servers (the drawing page, tinynet.web.draw; the training page, tinynet.web.watch)
share from tinynet.web.server against other sites and floods (issue 42): a Host that is not the
server's own gets 421, a cross-origin POST 403, both as JSON; the page's own requests still work;
connections are answered by a bounded pool of threads, with a quick 503 JSON beyond its queue."""

import http.client
import json
import socket
import threading
import time

import pytest

from tinynet.files.checkpoint import load_checkpoint
from tinynet.predict.predictor import BUNDLED_MODEL
from tinynet.testing.requests import blank_png
from tinynet.web import draw, watch


@pytest.fixture(scope="module")
def bundled():
    model, meta, _, _ = load_checkpoint(BUNDLED_MODEL)
    return model, meta["classes"]


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(params=["draw", "watch"])
def server(request, bundled, tmp_path):
    if request.param == "draw":
        made = draw.make_server(*bundled, BUNDLED_MODEL, port=0, timeout=2.0)
    else:
        made = watch.make_server(tmp_path, port=0, timeout=2.0)
    serve(made)
    yield made
    made.shutdown()
    made.server_close()


def ask(server, method, path, headers, body=None):
    """``(status, headers, body)`` of one request sent with exactly ``headers`` (http.client's own
    Host header is left out: ``headers`` says it, or there is none)."""
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for key, value in headers.items():
        connection.putheader(key, value)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    answer = response.status, dict(response.getheaders()), response.read()
    connection.close()
    return answer


def own_names(server):
    port = server.server_address[1]
    return [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost", "LOCALHOST:" + str(port)]


def test_the_servers_own_names_are_answered(server):
    """Host 127.0.0.1, localhost or [::1] with the server's port (or none), or no Host at all
    (only hand-made clients send none; browsers always do): the page."""
    for host in own_names(server):
        assert ask(server, "GET", "/", {"Host": host})[0] == 200, host
    assert ask(server, "GET", "/", {})[0] == 200


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1:1", "localhost:{port}0",
                                  "127.0.0.1.evil.example:{port}", "0.0.0.0:{port}", "", "127.0.0.1:{port}@evil"])
def test_a_foreign_host_gets_421_json(server, host):
    """A page on another site, its name rebound to 127.0.0.1 (DNS rebinding), sends its own name
    as Host: 421 with a JSON error naming it, for the page, the API and a POST alike."""
    host = host.format(port=server.server_address[1])
    for method, path in (("GET", "/"), ("HEAD", "/"), ("GET", "/api/runs"), ("POST", "/api/predict")):
        status, headers, body = ask(server, method, path, {"Host": host}, b"x" if method == "POST" else None)
        assert status == 421 and headers["Content-Type"] == "application/json", (method, path, status)
        if method != "HEAD":
            assert "is not this server's address" in json.loads(body)["error"]


def test_two_host_headers_are_refused(server):
    port = server.server_address[1]
    status, _, body = ask(server, "GET", "/", {"Host": f"127.0.0.1:{port}"} | {"host": "evil.example"})
    assert status in (400, 421) and json.loads(body)["error"]


def test_the_drawing_page_takes_posts_only_from_its_own_origin(bundled):
    """A POST with Origin http://127.0.0.1:PORT (the page's own fetch) is answered; one from
    another site, another port, https, or ``null`` (a sandboxed frame, a file) gets 403 JSON."""
    server = serve(draw.make_server(*bundled, BUNDLED_MODEL, port=0, timeout=2.0))
    try:
        port = server.server_address[1]
        host = {"Host": f"127.0.0.1:{port}"}
        body = blank_png()
        for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
            status, _, answer = ask(server, "POST", "/api/predict", host | {"Origin": origin}, body)
            assert status == 422 and "no ink" in json.loads(answer)["error"], origin  # reached the model
        for origin in ("http://evil.example", f"http://evil.example:{port}", f"https://127.0.0.1:{port}",
                       "http://127.0.0.1:1", "null", f"http://127.0.0.1:{port}/path", "http://127.0.0.1:x"):
            status, headers, answer = ask(server, "POST", "/api/predict", host | {"Origin": origin}, body)
            assert status == 403 and headers["Content-Type"] == "application/json", origin
            assert "another site" in json.loads(answer)["error"]
        # a cross-site GET of the page is harmless (the browser keeps its answer from the other site)
        assert ask(server, "GET", "/", host | {"Origin": "http://evil.example"})[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def stall(server):
    """A connection that sends half a request head and waits: it holds a worker until the
    server's socket timeout cuts it off."""
    s = socket.create_connection(server.server_address[:2], timeout=30)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return s


def http_threads():
    return [t for t in threading.enumerate() if t.name.startswith("tinynet-http")]


def test_a_flood_gets_quick_503s_and_never_a_thread_per_connection(server):
    """With 2 workers and 2 places in the queue, 4 stalled connections take them all: the next
    ones get 503 JSON with Retry-After at once, and no more than 2 worker threads ever run; once
    the socket timeout has cut the stalled ones off, requests are answered again."""
    server.max_connections, server.max_waiting = 2, 2
    before = len(http_threads())
    stalled = [stall(server) for _ in range(4)]
    time.sleep(0.3)  # let the server accept them all
    try:
        for _ in range(5):
            started = time.perf_counter()
            status, headers, body = ask(server, "GET", "/", {})
            assert status == 503 and headers["Retry-After"] == "1", status
            assert "busy" in json.loads(body)["error"] and time.perf_counter() - started < 1.5
        assert len(http_threads()) - before <= 2
    finally:
        for s in stalled:
            s.close()
    deadline = time.monotonic() + 15
    while ask(server, "GET", "/", {})[0] != 200:
        assert time.monotonic() < deadline, "still busy after the stalled connections closed"
        time.sleep(0.2)


def test_many_clients_at_once_are_answered_by_a_bounded_pool(bundled):
    """40 clients at once, each with its own connection, get their answers; the connections are
    answered by at most 32 worker threads (ThreadingHTTPServer started one per connection)."""
    server = serve(draw.make_server(*bundled, BUNDLED_MODEL, port=0, timeout=5.0))
    before = len(http_threads())
    peak = []
    barrier = threading.Barrier(40)

    def client(_):
        barrier.wait(10)
        status = ask(server, "GET", "/api/model", {})[0]
        peak.append(len(http_threads()) - before)
        return status

    try:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(40) as pool:
            statuses = list(pool.map(client, range(40)))
        assert statuses == [200] * 40
        assert 1 <= max(peak) <= server.max_connections
    finally:
        server.shutdown()
        server.server_close()


def test_hostile_images_get_their_answers_from_the_drawing_page(bundled):
    """Issue 42's hostile images posted to the page: thin ones and a decompression bomb's header
    refused from the header (400), specks that vanish when downsampled 422 (they were an
    IndexError: a 500), and the costliest accepted images answered (200); never a 5xx."""
    from tinynet.testing.requests import hostile_images

    server = serve(draw.make_server(*bundled, BUNDLED_MODEL, port=0, timeout=10.0))
    try:
        for name, (body, status) in hostile_images().items():
            got, headers, answer = ask(server, "POST", "/api/predict", {}, body)
            assert got == status and headers["Content-Type"] == "application/json", (name, got, answer[:200])
            assert ("top_k" if status == 200 else "error") in json.loads(answer), name
    finally:
        server.shutdown()
        server.server_close()
