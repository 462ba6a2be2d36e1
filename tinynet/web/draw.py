"""The drawing page: a small HTTP server over a trained model (``inference.py --serve``).

Draw a character in the browser (mouse, touch or pen) or upload an image file; after each stroke
the page shows the input the model sees (28x28 for the LeNet; any network's own input size), the
top 5 characters, the saliency map and, for each convolution of the network, its filters and its
feature maps (a note says so where the network has none); and the network's layers
(``tinynet/predict/explain.py`` computes the pictures). The page is plain HTML, CSS and JavaScript
shipped in the package (``tinynet/web/static/``): no CDN, works offline.

HTTP contract (other tools may rely on it):

- ``GET /``: the page (``/static/app.js`` and ``/static/style.css`` are its script and style).
- ``GET /api/model``: what does not change from one drawing to the next, as JSON::

      {"checkpoint": "lenet-emnist47.npz",   the model's file name
       "classes": ["0", ..., "t"],           its characters by class
       "input_shape": [1, 28, 28],           one input image (C, H, W)
       "filters": [[[...]]],                 the first convolution's filters (C_out, kH, kW) (its
       "filters_scale": 0.62,                first input channel) divided by this largest absolute
                                             weight, so in [-1, 1]; both null without a convolution
       "convolutions": [{"name": "conv1", "layer": 0, "shape": [20, 1, 5, 5], "stride": 1,
                         "padding": 0, "scale": 0.62, "data": BASE64}, ...],
                                             every convolution's weights (C_out, C_in, kH, kW) divided
                                             by ``scale`` and stored as uint8 round((w + 1) * 127.5),
                                             row-major, base64-encoded; [] without one
       "network": [{"name": "conv1", "kind": "Conv2D", "output": [20, 24, 24], "parameters": 520},
                   ...]}                     its layers, one image's output shape after each; null
                                             when the model cannot be described
- ``POST /api/predict``: the body is the raw bytes of one image file (PNG, JPEG, anything Pillow
  reads) of at most :data:`MAX_BODY_BYTES`, sent with a ``Content-Length``. It goes through the
  same EMNIST-style preprocessing as image files given to ``inference.py --input``. The answer is
  ``application/json``::

      {"top_k": [["A", 0.93], ...],          k (character, probability) pairs, best first: 5
                                             unless the server was started with another k
       "input": [[0, 0, ...], ...],          the H x W uint8 input (upright, light ink on dark)
       "saliency": [[...], ...],             H x W d logit(top class) / d pixel, divided by
       "saliency_scale": 0.81,               this largest absolute value (so in [-1, 1])
       "feature_maps": {"conv1": {"shape": [20, 24, 24], "data": BASE64},
                        "conv2": {"shape": [50, 8, 8], "data": BASE64}},
                                             every convolution's, after ReLU, each map scaled to its
                                             own maximum as uint8 0..255, row-major bytes,
                                             base64-encoded ({} without a convolution)
      }

- Errors are JSON ``{"error": "one line"}`` with a 4xx status: 400 empty body, not a decodable
  image, a malformed request or ``Content-Length``; 404 unknown path; 405 wrong method; 408 body
  not received within :data:`SOCKET_TIMEOUT` seconds; 411 no ``Content-Length``; 413 body over
  :data:`MAX_BODY_BYTES` (refused from its ``Content-Length``, before reading it); 422 an image
  with no ink; 421 a ``Host`` header that is not the server's own address, 403 a POST whose
  ``Origin`` is another site (``tinynet.web.server``: the page answers only itself); 503 (with
  ``Retry-After``) when the server is busy. A 500 would be a bug in tinynet; bad input never
  causes one.

Concurrency: a fixed pool of worker threads answers the connections (``tinynet.web.server``: at
most 32 at once, 32 more waiting, a quick 503 beyond); reading the request and writing the answer
run side by side. The work in between (decoding, preprocessing,
the forward and backward pass, the answer's arrays) needs one of a pool of replicas of the model,
one per core (``tinynet.nn.parallel.replicate``: the same weights, each its own caches and scratch
buffers); requests wait for one, mostly in arrival order (``queue.Queue`` wakes the longest
waiter first), so a burst of clients queues instead of having every thread contend for the GIL
and the cores at once. BLAS runs single-threaded: for one image at a time, its threads cost more than they
save. Every socket has a timeout, so a client that sends half a request and stalls holds its
thread for at most :data:`SOCKET_TIMEOUT` seconds per read. Binds 127.0.0.1 (this machine only) unless told otherwise.
"""

import base64
import io
import json
import queue
import re
from http import HTTPStatus
from pathlib import Path

import numpy as np

from ..files.plots import signed_unit
from ..nn.describe import DescriptionError, check, describe
from ..nn.model import convolutions, input_shape
from ..nn.parallel import one_blas_thread, replicate, resolve_threads
from ..predict.explain import TOP_K, explain, scaled_maps
from ..predict.preprocess import ImageError, decode_image, preprocess
from .server import JSONHandler, JSONServer, RequestError, listen, serve_until_ctrl_c

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_BODY_BYTES = 10 * 1024 * 1024  # a phone photo fits; larger bodies get 413
SOCKET_TIMEOUT = 10.0  # seconds a read or write on one connection may wait
STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/static/style.css": ("style.css", "text/css; charset=utf-8")}
PREDICT = "/api/predict"
MODEL = "/api/model"


def prediction_json(explanation):
    """The ``POST /api/predict`` answer (see the module docstring) for an Explanation."""
    saliency, saliency_scale = signed_unit(explanation.saliency)
    maps = {}
    for name, m in explanation.feature_maps.items():
        data = np.round(scaled_maps(m) * 255).astype(np.uint8).tobytes()
        maps[name] = {"shape": list(m.shape), "data": base64.b64encode(data).decode()}
    return {"top_k": [[c, round(p, 5)] for c, p in explanation.top_k],
            "input": explanation.image.tolist(), "saliency": saliency, "saliency_scale": saliency_scale,
            "feature_maps": maps}


def model_json(model, classes, checkpoint_name):
    """The ``GET /api/model`` answer (see the module docstring)."""
    convs = convolutions(model)
    filters, filters_scale = signed_unit(convs[0].params["W"][:, 0]) if convs else (None, None)
    return {"checkpoint": checkpoint_name, "classes": list(classes), "input_shape": list(input_shape(model)),
            "filters": filters, "filters_scale": filters_scale,
            "convolutions": [conv_json(model, conv) for conv in convs], "network": network_json(model)}


def conv_json(model, conv):
    """One convolution's entry of ``GET /api/model``: its place, settings and weights."""
    W = conv.params["W"].astype(np.float64)
    scale = float(np.abs(W).max())
    data = np.round((W / (scale or 1.0) + 1) * 127.5).astype(np.uint8).tobytes()
    return {"name": conv.name, "layer": model.layers.index(conv), "shape": list(W.shape),
            "stride": conv.stride, "padding": conv.padding, "scale": scale,
            "data": base64.b64encode(data).decode()}


def network_json(model):
    """The model's layers with one image's output shape after each and their parameter counts;
    None for a model that cannot be described (``tinynet.nn.describe``)."""
    try:
        plan = check(describe(model, input_shape(model)))
    except DescriptionError:
        return None
    return [{"name": layer.name, "kind": type(layer).__name__, "output": list(shape),
             "parameters": int(sum(p.size for p in layer.params.values()))}
            for layer, shape in zip(model.layers, plan.shapes[1:])]


class PageServer(JSONServer):
    """The page's server: ``model`` (a ``Sequential``) and its ``classes``, the page's files, and
    the pool of model replicas requests take turns at (see the module docstring)."""

    def __init__(self, address, model, classes, checkpoint_name, timeout=SOCKET_TIMEOUT, top_k=TOP_K):
        self.model, self.classes, self.top_k = model, tuple(classes), top_k
        self.image_shape = input_shape(model)[1:]  # what preprocess makes of every image
        self.model_info = json.dumps(model_json(model, classes, checkpoint_name)).encode()
        self.replicas = queue.Queue()
        for _ in range(resolve_threads()):
            self.replicas.put(replicate(model))
        self.pages = {path: ((STATIC / name).read_bytes(), kind) for path, (name, kind) in PAGES.items()}
        super().__init__(address, PageHandler, timeout)

    def predict(self, body):
        """Image file bytes -> the JSON answer (a dict); RequestError for an unusable image.

        Holds a replica from decoding to the answer's arrays (see the module docstring)."""
        replica = self.replicas.get()
        try:
            try:
                gray = decode_image(io.BytesIO(body), "request body")
            except ImageError as e:
                raise RequestError(HTTPStatus.BAD_REQUEST, str(e)) from None
            try:
                image = preprocess(gray, self.image_shape)
            except ImageError as e:  # no ink
                raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"request body: {e}") from None
            with one_blas_thread:  # the requests' threads keep the cores busy
                return prediction_json(explain(replica, image, self.classes, self.top_k))
        finally:
            self.replicas.put(replica)


class PageHandler(JSONHandler):
    """One connection: the page's files, ``GET /api/model``, ``POST /api/predict``, and JSON errors
    for everything else."""

    def route(self):
        """The request's path without query; RequestError 404 for an unknown one."""
        path = self.path.split("?", 1)[0]
        if path not in PAGES and path not in (PREDICT, MODEL):
            raise RequestError(HTTPStatus.NOT_FOUND, f"no such page: {path[:200]}")
        return path

    def allowed(self, path):
        return "POST" if path == PREDICT else "GET, HEAD"

    def do_GET(self):
        def handler():
            path = self.route()
            if path == PREDICT:
                self.not_allowed(path)
            body, kind = ((self.server.model_info, "application/json") if path == MODEL
                          else self.server.pages[path])
            self.send_body(HTTPStatus.OK, body, kind)
        self.answer(handler)

    do_HEAD = do_GET

    def do_POST(self):
        def handler():
            path = self.route()
            if path != PREDICT:
                self.not_allowed(path)
            payload = self.server.predict(self.read_body())
            self.send_json(HTTPStatus.OK, payload)
        self.answer(handler)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = JSONHandler.refuse

    def read_body(self):
        """The request body, checked against its Content-Length before anything is read."""
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(HTTPStatus.LENGTH_REQUIRED,
                               "send the image with a Content-Length, not a Transfer-Encoding")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "no Content-Length header")
        if not re.fullmatch(r"[0-9]+", length.strip()):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"Content-Length {length[:40]!r} is not a number")
        digits = length.strip().lstrip("0")
        length = int(digits or "0") if len(digits) <= 18 else MAX_BODY_BYTES + 1  # no 60,000-digit ints
        if length > MAX_BODY_BYTES:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"body of {length} bytes is over the limit of {MAX_BODY_BYTES} bytes")
        if length == 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, "empty body: send the bytes of an image file")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT,
                               f"body not received within {self.server.socket_timeout:g} s") from None
        if len(body) < length:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"body ended after {len(body)} of the {length} bytes its Content-Length says")
        return body


def make_server(model, classes, checkpoint, host=DEFAULT_HOST, port=DEFAULT_PORT, timeout=SOCKET_TIMEOUT,
                top_k=TOP_K):
    """A :class:`PageServer` listening on ``host:port`` (port 0: any free one; see ``.url``),
    answering the ``top_k`` most probable characters; an ``OSError`` naming the address when it
    cannot listen there."""
    return listen(lambda: PageServer((host, port), model, classes, Path(checkpoint).name, timeout, top_k),
                  host, port)


def serve(model, classes, checkpoint, host=DEFAULT_HOST, port=DEFAULT_PORT, top_k=TOP_K):
    """Serve the page until Ctrl-C; prints the URL. Returns 0 (an exit status)."""
    return serve_until_ctrl_c(make_server(model, classes, checkpoint, host, port, top_k=top_k),
                              "the drawing page")
