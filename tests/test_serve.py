"""The drawing page's server (tinynet.web.draw, ``inference.py --serve``) over loopback: the page and
its files, real test images coming back with their labels, every kind of bad request getting its
4xx and a JSON error, concurrent requests, stalled clients, and the command line."""

import base64
import http.client
import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require_resplit
from tinynet.files.checkpoint import load_checkpoint
from tinynet.datasets.idx import load_split
from tinynet.cli.infer import main
from tinynet.nn.model import build_model
from tinynet.predict.predictor import BUNDLED_MODEL
from tinynet.predict.preprocess import preprocess_file
from tinynet.web.draw import MAX_BODY_BYTES, make_server

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundled():
    model, meta, _, _ = load_checkpoint(BUNDLED_MODEL)
    return model, meta["classes"]


def start(model, classes, timeout=10.0):
    server = make_server(model, classes, BUNDLED_MODEL, port=0, timeout=timeout)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server(bundled):
    server = start(*bundled)
    yield server
    server.shutdown()
    server.server_close()


def request(server, method, path, body=None, headers=None):
    """``(status, headers, body bytes)`` of one request."""
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    connection.request(method, path, body, headers or {})
    response = connection.getresponse()
    answer = response.status, dict(response.getheaders()), response.read()
    connection.close()
    return answer


def png(array):
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


def predict(server, body):
    status, headers, payload = request(server, "POST", "/api/predict", body)
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(payload)


def test_the_page_and_its_files_are_served_and_local(server):
    """GET / is the page; its script and style come from the package; nothing is fetched from
    another site (no CDN: the page works offline)."""
    for path, kind, marker in (("/", "text/html", b'<canvas id="pad"'),
                               ("/static/app.js", "text/javascript", b"/api/predict"),
                               ("/static/style.css", "text/css", b"#pad")):
        status, headers, body = request(server, "GET", path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and marker in body
        assert not re.search(rb"(src|href)=\"?(https?:)?//|url\(|@import|https?://", body), path


def test_model_endpoint(server, bundled):
    status, _, body = request(server, "GET", "/api/model")
    info = json.loads(body)
    assert status == 200 and info["checkpoint"] == BUNDLED_MODEL.name
    assert info["classes"] == list(bundled[1])
    filters = np.array(info["filters"])
    assert filters.shape == (20, 5, 5) and np.abs(filters).max() == 1.0
    assert np.allclose(filters * info["filters_scale"], bundled[0].layers[0].params["W"][:, 0], atol=1e-3)


def test_model_endpoint_describes_the_lenet(server, bundled):
    """The bundled LeNet's convolutions (weights within the uint8 rounding), input and layers."""
    info = json.loads(request(server, "GET", "/api/model")[2])
    model = bundled[0]
    assert info["input_shape"] == [1, 28, 28] and [c["name"] for c in info["convolutions"]] == ["conv1", "conv2"]
    for entry, conv in zip(info["convolutions"], (model.layers[0], model.layers[2])):
        data = np.frombuffer(base64.b64decode(entry["data"]), np.uint8).reshape(entry["shape"])
        assert entry["shape"] == list(conv.params["W"].shape) and (entry["stride"], entry["padding"]) == (1, 0)
        assert np.allclose((data / 127.5 - 1) * entry["scale"], conv.params["W"], atol=entry["scale"] / 127)
    assert [(layer["name"], layer["output"]) for layer in info["network"]][:2] == [("conv1", [20, 24, 24]),
                                                                                 ("pool1", [20, 12, 12])]
    assert sum(layer["parameters"] for layer in info["network"]) == 449_617  # the LeNet's weights, 47 classes


TWO_CONVS_24x20 = {"input": [1, 24, 20], "layers": [
    {"kind": "Conv2D", "name": "c1", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1},
    {"kind": "ReLU", "name": "r1"},
    {"kind": "Conv2D", "name": "c2", "out_channels": 10, "kernel_size": 3, "stride": 1, "padding": 1},
    {"kind": "ReLUMaxPool2D", "name": "p2", "size": 2, "stride": 2}, {"kind": "Flatten", "name": "f"},
    {"kind": "Dense", "name": "fc", "out_features": 47}]}


@pytest.mark.parametrize("architecture, maps", [
    ({"name": "mlp", "num_classes": 47}, {}),
    (TWO_CONVS_24x20, {"c1": [6, 12, 10], "c2": [10, 12, 10]}),
], ids=["no-convolution", "two-convolutions-24x20"])
def test_the_page_api_for_any_network(bundled, architecture, maps):
    """A network without a convolution: no filters (null), no feature maps ({}), its layers; one
    with two convolutions on 24x20 images: both convolutions' weights, both feature maps, and the
    drawing preprocessed to 24x20 (input and saliency of that size)."""
    model = build_model(architecture, np.random.default_rng(0))
    server = start(model, bundled[1])
    try:
        info = json.loads(request(server, "GET", "/api/model")[2])
        status, answer = predict(server, png(np.pad(np.full((30, 8), 255, np.uint8), 20)))
    finally:
        server.shutdown()
        server.server_close()
    size = architecture.get("input", [1, 28, 28])
    assert info["input_shape"] == size and len(info["network"]) == len(model.layers)
    assert [c["name"] for c in info["convolutions"]] == list(maps)
    assert (info["filters"] is None) == (not maps) and (info["filters_scale"] is None) == (not maps)
    assert info["network"][-1]["output"] == [47]
    assert status == 200 and np.array(answer["input"]).shape == tuple(size[1:])
    assert np.array(answer["saliency"]).shape == tuple(size[1:])
    assert {name: m["shape"] for name, m in answer["feature_maps"].items()} == maps


def test_real_test_images_come_back_with_their_labels(server, bundled, tmp_path):
    """300 real test images, written as PNG files, posted one by one: the answers' top-1 accuracy
    is the model's own on those images (within 3 points: the page preprocesses the PNG, as
    ``inference.py`` does an image file); each answer has the contract's fields, and ``input`` is
    exactly what ``preprocess_file`` makes of the same file."""
    test = load_split(require_resplit(), "emnist-bymerge-resplit", "test")
    model, classes = bundled
    images, labels = test.images[:300], test.labels[:300]
    direct = (model.forward(images[:, None] / np.float32(255), train=False).argmax(axis=1) == labels).mean()
    hits = 0
    for i, (image, label) in enumerate(zip(images, labels)):
        status, answer = predict(server, png(image))
        assert status == 200
        chars = [c for c, _ in answer["top_k"]]
        probs = [p for _, p in answer["top_k"]]
        assert len(chars) == 5 and probs == sorted(probs, reverse=True) and set(chars) <= set(classes)
        hits += chars[0] == classes[label]
        if i < 3:
            (tmp_path / "x.png").write_bytes(png(image))
            seen = np.array(answer["input"], dtype=np.uint8)
            assert np.array_equal(seen, preprocess_file(tmp_path / "x.png"))
            saliency = np.array(answer["saliency"])
            assert saliency.shape == (28, 28) and np.abs(saliency).max() == 1.0
            for name, shape in (("conv1", [20, 24, 24]), ("conv2", [50, 8, 8])):
                maps = answer["feature_maps"][name]
                data = np.frombuffer(base64.b64decode(maps["data"]), np.uint8)
                assert maps["shape"] == shape and data.size == np.prod(shape)
    assert hits / len(labels) >= direct - 0.03, (hits / len(labels), direct)


def blank_png():
    return png(np.full((40, 40), 255, np.uint8))


@pytest.mark.parametrize("method, path, body, headers, status, words", [
    ("POST", "/api/predict", b"", {}, 400, "empty body"),
    ("POST", "/api/predict", b"hello, not an image", {}, 400, "not an image"),
    ("POST", "/api/predict", b"\x89PNG\r\n\x1a\n" + b"\0" * 50, {}, 400, "request body"),
    ("POST", "/api/predict", "blank", {}, 422, "no ink"),
    ("POST", "/api/predict", None, {"Content-Length": str(MAX_BODY_BYTES + 1)}, 413, "over the limit"),
    ("POST", "/api/predict", None, {"Content-Length": "12abc"}, 400, "not a number"),
    ("POST", "/api/predict", b"hello", {"Content-Length": "0" * 30 + "5"}, 400, "not an image"),
    ("POST", "/api/predict", None, {}, 411, "Content-Length"),
    ("GET", "/nothing-here", None, {}, 404, "no such page"),
    ("POST", "/api/nothing", b"x", {}, 404, "no such page"),
    ("GET", "/api/predict", None, {}, 405, "only POST"),
    ("PUT", "/api/predict", b"x", {}, 405, "only POST"),
    ("POST", "/", b"x", {}, 405, "only GET"),
    ("DELETE", "/", None, {}, 405, "only GET"),
    ("BREW", "/", None, {}, 405, "not allowed"),
])
def test_bad_requests_get_a_4xx_and_a_json_error(server, method, path, body, headers, status, words):
    """Each kind of bad request: its status, ``{"error": "..."}`` as JSON naming the fault, and
    the server still answers the next request."""
    body = blank_png() if body == "blank" else body
    if body is None and method == "POST" and "Content-Length" not in headers:
        headers = {"Transfer-Encoding": "identity"}  # http.client would add a Content-Length: 0
    got, response_headers, payload = request(server, method, path, body, headers)
    assert got == status and response_headers["Content-Type"] == "application/json"
    error = json.loads(payload)["error"]
    assert words in error and "\n" not in error
    if status == 405:
        assert response_headers["Allow"] in ("POST", "GET, HEAD")
    assert request(server, "GET", "/")[0] == 200


def raw(server, data, shutdown=False, timeout=5):
    """Send raw bytes on a new connection: everything the server answers before closing it."""
    with socket.create_connection(server.server_address[:2], timeout=timeout) as s:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    return received


def test_oversized_body_is_refused_before_it_is_read(server):
    """A Content-Length over the limit gets 413 at once, without the server waiting for the body."""
    started = time.perf_counter()
    answer = raw(server, f"POST /api/predict HTTP/1.1\r\nContent-Length: {10**12}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.0 413 ") and time.perf_counter() - started < 3
    assert b'"error"' in answer


@pytest.mark.parametrize("data, status", [
    (b"POST /api/predict HTTP/1.1\r\nContent-Length: 5000\r\n\r\n\x89PNG", 400),  # body cut short
    (b"complete garbage\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 400),  # http.server's 505: about the request, so a 400
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
])
def test_malformed_requests_get_a_4xx_with_a_status_line(server, data, status):
    answer = raw(server, data, shutdown=True)
    assert answer.startswith(f"HTTP/1.0 {status} ".encode()), answer[:100]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]


def test_concurrent_requests_get_their_own_answers(server, bundled):
    """8 threads posting different drawings at once: every answer is the one that drawing gets
    alone (the layers' caches and buffers are not shared between requests)."""
    rng = np.random.default_rng(5)
    bodies = []
    for _ in range(8):
        a = np.zeros((28, 28), np.uint8)
        r, c = rng.integers(4, 20, 2)
        a[r:r + 6, 4:24] = 255
        a[4:24, c:c + 5] = 255
        bodies.append(png(a))
    alone = [predict(server, b)[1] for b in bodies]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda i: predict(server, bodies[i % 8])[1], range(48)))
    for i, answer in enumerate(together):
        assert answer == alone[i % 8]


def test_a_stalled_client_is_cut_off_and_others_are_served(bundled):
    """A client that sends half a request and stalls is disconnected after the socket timeout;
    meanwhile other requests are answered."""
    server = start(*bundled, timeout=0.5)
    try:
        with socket.create_connection(server.server_address[:2], timeout=10) as stalled:
            stalled.sendall(b"POST /api/predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n\x89PNG")
            started = time.perf_counter()
            assert request(server, "GET", "/")[0] == 200
            answer = b""
            while chunk := stalled.recv(65536):
                answer += chunk
            assert time.perf_counter() - started < 5 and answer.startswith(b"HTTP/1.0 408 ")
    finally:
        server.shutdown()
        server.server_close()


def test_serve_command_prints_the_url_and_stops_on_ctrl_c(tmp_path):
    """``inference.py --serve --top-k 3`` with no run trained: says it uses the bundled model,
    prints the URL, serves the page, answers a prediction with 3 characters, and Ctrl-C (SIGINT)
    stops it with exit status 0."""
    process = subprocess.Popen([sys.executable, "inference.py", "--serve", "--port", "0", "--top-k", "3",
                                "--runs-dir", str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        assert "lenet-emnist47.npz" in first and "bundled" in first
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", process.stdout.readline())
        connection = http.client.HTTPConnection("127.0.0.1", int(url[1]), timeout=30)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.request("POST", "/api/predict", png(np.eye(28, dtype=np.uint8) * 255))
        assert len(json.loads(connection.getresponse().read())["top_k"]) == 3
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()


def test_a_port_in_use_is_a_one_line_error(server, capsys, tmp_path):
    port = server.server_address[1]
    assert main(["--serve", "--port", str(port), "--runs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: 127.0.0.1:{port}: cannot listen there (Address already in use)\n"


@pytest.mark.parametrize("argv, fault", [
    (["--serve", "--input", "x.png"], "give either --input PATH or --serve"),
    ([], "give either --input PATH or --serve"),
    (["--serve", "--explain", "out"], "--explain does not apply to --serve"),
    (["--serve", "--tta"], "--tta does not apply to --serve"),
    (["--serve", "--port", "70000"], "--port: must be a port number"),
])
def test_serve_options(capsys, argv, fault):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and fault in capsys.readouterr().err
