"""Watching a run (issue 34): the recorder's files in the run folder (tinynet.training.runlog), reading run
folders however damaged (tinynet.web.runs), the training page's server and its JSON API
(tinynet.web.watch) over loopback with bad requests, path traversal and stalled clients, TensorBoard
event files read back, the command lines, and training that the page never changes: the same
weights bit for bit with and without ``--watch``, a stalled client or a dead server. The load and
fault volume (16 x 100, 1,000 malformed) is bench/watch_load.py; a small version runs here."""

import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tinynet.testing import requests as loadtest
from tinynet.training import runlog
from tinynet.web import runs as runs_module
from tinynet.cli import train as train_cli
from tinynet.cli import watch as watch_cli
from tinynet.training.runlog import Recorder, sample_indices
from tinynet.web.runs import Runs
from tinynet import TrainConfig, train
from tinynet.web.watch import make_server, serve_in_background
from tinynet.testing.datasets import write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
quiet = dict(download=False, progress=False, log=lambda *a: None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("watch") / "data", n_train=300, n_test=60)


def config(data, **changes):
    return TrainConfig(data_dir=str(data), dataset="tiny", epochs=2, batch_size=16, **changes)


def recorder():
    return Recorder(every=2, snapshot_every=5, sample=40, grid=12, budget=None)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """The bench's runs folder: ``good`` (recorded), ``damaged``, the ``escape`` link, a secret outside."""
    return loadtest.make_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def server(runs_dir):
    server = make_server(runs_dir, port=0, timeout=2.0)
    serve_in_background(server)
    yield server
    server.shutdown()
    server.server_close()


def get(server, path, method="GET"):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    connection.request(method, path)
    response = connection.getresponse()
    answer = response.status, dict(response.getheaders()), response.read()
    connection.close()
    return answer


def get_json(server, path):
    status, headers, body = get(server, path)
    assert headers["Content-Type"] == "application/json", (path, body[:200])
    return status, json.loads(body)


# ---------------------------------------------------------------------------------------------
# The recorder's files


def test_the_recorder_writes_steps_snapshots_and_status(runs_dir):
    good = runs_dir / "good"
    steps = [json.loads(line) for line in (good / "steps.jsonl").read_text().splitlines()]
    batches = -(-269 // 16)  # 300 images, 31 held out for validation
    assert [r["step"] for r in steps] == list(range(2, 2 * batches + 1, 2))
    assert {"loss", "accuracy", "lr", "images_per_second", "eta_seconds", "progress", "epoch"} <= steps[0].keys()
    assert steps[-1]["eta_seconds"] == 0 and steps[0]["progress"] == round(2 / batches, 4)
    assert all(0 <= r["accuracy"] <= 1 and r["loss"] > 0 for r in steps)
    status = json.loads((good / "status.json").read_text())
    assert status["status"] == "finished" and status["step"] == 2 * batches and status["pid"] == os.getpid()
    snap = json.loads((good / "snapshot.json").read_text())
    assert snap["step"] == 2 * batches and snap["epoch"] == 2 and len(snap["classes"]) == 5
    assert np.array(snap["filters"]["data"]).shape == (20, 5, 5)
    assert len(snap["grid"]["labels"]) == len(snap["grid"]["predicted"]) == 12
    assert len(snap["recall"]) == 5 and sum(snap["support"]) == snap["sample"] == 31  # the whole val split
    # the grid starts with one image of each class present in the sample
    assert sorted(snap["grid"]["labels"][:5]) == [0, 1, 2, 3, 4]


def test_sample_indices_are_spread_and_fixed():
    labels = np.repeat(np.arange(4), 25)[np.random.default_rng(0).permutation(100)]
    sample, grid = sample_indices(labels, size=20, grid=6)
    assert len(sample) == 20 and sample[0] == 0 and sample[-1] == 99
    assert sorted(set(labels[sample[grid[:4]]])) == [0, 1, 2, 3] and len(set(grid)) == 6
    assert sample_indices(labels[:3], size=20, grid=6)[0].tolist() == [0, 1, 2]


def test_snapshots_keep_within_the_budget(monkeypatch):
    """A snapshot that took 1 s (faked) waits for 1 / budget = 200 s of training before the next,
    between steps and after epochs alike (but the first epoch's end always gets one)."""
    taken, clock = [], [0.0]
    monkeypatch.setattr(runlog.time, "perf_counter", lambda: clock[0])

    class Paced(Recorder):
        def snapshot(self, trainer):
            taken.append(trainer.state["step"])
            self.snapped_at, self.snapshot_cost = clock[0], 1.0
    recorder = Paced(every=10, snapshot_every=10, budget=0.005)
    recorder.meter = type("Meter", (), {"add": lambda self, record: None})()
    trainer = type("Trainer", (), {"state": {"epoch": 0}})()
    for step in range(1, 501):  # one step per second, an epoch every 150 steps
        clock[0] = float(step)
        trainer.state["step"] = step
        recorder.on_step(trainer, {"step": step})
        if step % 150 == 0:
            trainer.state["epoch"] += 1
            recorder.on_epoch(trainer, {})
    assert taken == [10, 150, 350]  # after the first epoch always
    assert Paced(budget=None).due()


# ---------------------------------------------------------------------------------------------
# Reading run folders: statuses, damage


def fake_run(folder, status=None, **files):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"epochs": 3}))
    if status is not None:
        (folder / "status.json").write_text(json.dumps(status))
    for name, text in files.items():
        (folder / name.replace("_", ".")).write_text(text)
    return folder


def test_statuses(tmp_path):
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fake_run(tmp_path / "live", {"status": "running", "pid": os.getpid(), "host": host})
    fake_run(tmp_path / "killed", {"status": "running", "pid": dead.pid, "host": host})
    fake_run(tmp_path / "elsewhere", {"status": "running", "pid": 1, "host": host + "-other"})
    old = fake_run(tmp_path / "silent", {"status": "running", "pid": 1, "host": host + "-other"})
    fake_run(tmp_path / "failed", {"status": "failed", "error": "diverged"})
    fake_run(tmp_path / "ctrl-c", {"status": "stopped"})
    fake_run(tmp_path / "plain", summary_json=json.dumps({"status": "finished"}))
    fake_run(tmp_path / "plain-interrupted", summary_json=json.dumps({"status": "interrupted"}))
    fake_run(tmp_path / "plain-live", metrics_jsonl="")
    gone = fake_run(tmp_path / "plain-gone", metrics_jsonl="")
    past = time.time() - runs_module.STALE_SECONDS - 60
    for folder in (old, gone):
        for f in folder.iterdir():
            os.utime(f, (past, past))
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "config.json").write_text("{}")
    runs = Runs(tmp_path)
    got = {name: runs.summary(name)["status"] for name in runs.names()}
    assert got == {"live": "running", "killed": "stopped", "elsewhere": "running", "silent": "stopped",
                   "failed": "failed", "ctrl-c": "stopped", "plain": "finished",
                   "plain-interrupted": "stopped", "plain-live": "running", "plain-gone": "stopped"}


def test_a_growing_steps_file_is_read_incrementally_and_damage_is_reported(tmp_path):
    folder = fake_run(tmp_path / "r")
    runs = Runs(tmp_path)
    path = folder / "steps.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    records, problems = runs.read_jsonl(folder.resolve(), "steps.jsonl", "step")
    assert [r["step"] for r in records] == [1, 2] and "still being written" in problems[0]
    with open(path, "a") as f:
        f.write('ss": 0.5}\nnot json\n[1, 2]\n{"step": 2, "again": true}\n{"step": 3}\n')
    records, problems = runs.read_jsonl(folder.resolve(), "steps.jsonl", "step")
    # a resumed run's repeated steps replace the earlier ones
    assert records == [{"step": 1}, {"step": 2, "again": True}, {"step": 3}]
    assert problems == ["steps.jsonl: 2 corrupt records skipped"]
    path.write_text('{"step": 7}\n')  # a new, shorter file: read again from the start
    assert runs.read_jsonl(folder.resolve(), "steps.jsonl", "step") == ([{"step": 7}], [])


@pytest.mark.parametrize("content, words", [
    ("", "corrupt"), ("{", "corrupt"), ("[1, 2]", "not a snapshot"), ('{"step": 1}', "not a snapshot"),
    (b"\xff\xfe\x00", "corrupt"), (None, "no snapshot.json yet"),
])
def test_a_damaged_snapshot_is_reported_not_an_error(tmp_path, content, words):
    folder = fake_run(tmp_path / "r")
    if content is not None:
        (folder / "snapshot.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    answer = Runs(tmp_path).snapshot("r")
    assert answer["snapshot"] is None and words in answer["problem"]


# ---------------------------------------------------------------------------------------------
# The server and its API


def test_the_page_and_its_files_are_served_and_local(server):
    for path, kind, marker in (("/", "text/html", b'<canvas id="loss-chart"'),
                               ("/static/watch.js", "text/javascript", b"/api/runs"),
                               ("/static/watch.css", "text/css", b".grid")):
        status, headers, body = get(server, path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and marker in body
        assert not re.search(rb"(src|href)=\"?(https?:)?//|url\(|@import|https?://", body), path


def test_api_runs_and_metrics(server, runs_dir):
    status, listing = get_json(server, "/api/runs")
    assert status == 200 and listing["focus"] is None
    assert [(r["name"], r["status"], r["epochs_done"], r["epochs"]) for r in listing["runs"]] == [
        ("damaged", "finished", 2, 2), ("good", "finished", 2, 2)]
    status, metrics = get_json(server, "/api/runs/good/metrics")
    epochs = [json.loads(line) for line in (runs_dir / "good" / "metrics.jsonl").read_text().splitlines()]
    steps = [json.loads(line) for line in (runs_dir / "good" / "steps.jsonl").read_text().splitlines()]
    assert metrics["epoch_records"] == epochs and metrics["step_records"] == steps
    assert metrics["config"]["dataset"] == "tiny" and metrics["summary"]["status"] == "finished"
    assert metrics["problems"] == []
    status, later = get_json(server, "/api/runs/good/metrics?after=10")
    assert later["step_records"] == [r for r in steps if r["step"] > 10]
    status, snap = get_json(server, "/api/runs/good/snapshot")
    assert status == 200 and snap["problem"] is None and snap["snapshot"]["step"] == steps[-1]["step"]


def test_damaged_files_show_as_such(server):
    status, metrics = get_json(server, "/api/runs/damaged/metrics")
    assert status == 200 and any("still being written" in p for p in metrics["problems"])
    status, snap = get_json(server, "/api/runs/damaged/snapshot")
    assert status == 200 and snap["snapshot"] is None and "corrupt" in snap["problem"]


@pytest.mark.parametrize("path", loadtest.TRAVERSALS)
def test_no_file_outside_the_runs_folder_is_readable(server, path):
    """Run names with ``..``, ``%2e%2e``, ``%2F``, absolute paths, NUL, non-UTF-8, a link to a
    folder outside, a link to a file outside: a 4xx JSON error, never the outside file."""
    status, headers, body = get(server, path)
    assert 400 <= status < 500 and headers["Content-Type"] == "application/json", (path, status)
    assert b"tinynet-secret" not in body and json.loads(body)["error"]


def test_a_link_inside_a_run_pointing_outside_is_not_followed(tmp_path):
    folder = fake_run(tmp_path / "runs" / "r")
    (tmp_path / "secret.json").write_text(json.dumps({"step": 1, "filters": "tinynet-secret", "grid": 0}))
    (folder / "snapshot.json").symlink_to(tmp_path / "secret.json")
    answer = Runs(tmp_path / "runs").snapshot("r")
    assert answer["snapshot"] is None and "link out of the run folder" in answer["problem"]


@pytest.mark.parametrize("method, path, status, words", [
    ("GET", "/nothing", 404, "no such page"), ("GET", "/api/runs/nope/metrics", 404, "no such run"),
    ("GET", "/api/runs/good/other", 404, "no such page"), ("POST", "/api/runs", 405, "only GET"),
    ("DELETE", "/", 405, "only GET"), ("BREW", "/", 405, "not allowed"),
    ("GET", "/api/runs/good/metrics?after=x", 400, "not a step number"),
    ("GET", "/api/runs/good/metrics?since=1", 400, "unknown query field"),
    ("GET", "/api/runs?x=1", 400, "takes no query"),
])
def test_bad_requests_get_a_4xx_and_a_json_error(server, method, path, status, words):
    got, headers, body = get(server, path, method)
    assert got == status and headers["Content-Type"] == "application/json"
    assert words in json.loads(body)["error"]


def test_load_and_malformed_requests_small(server, runs_dir):
    """The bench's load and fault test, small: 4 clients x 25 requests with 0 failures; 2 x 19
    kinds of malformed requests (bench/load.py's and traversal / bad queries) with 0 5xx, JSON
    errors, no leak; the server still answers."""
    port = server.server_address[1]
    plan = loadtest.watch_checks()
    results = []
    lock = threading.Lock()

    def client(c):
        for i in range(25):
            outcome = loadtest.get(port, *plan[(c + i) % len(plan)])
            with lock:
                results.append(outcome)
    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 100 and [e for _, e in results if e] == []
    import random
    for i in range(2 * len(loadtest.WATCH_KINDS)):
        kind = loadtest.WATCH_KINDS[i % len(loadtest.WATCH_KINDS)]
        data, close = loadtest.watch_case(kind, random.Random(i), b"\x89PNG" + bytes(300))
        status, body, how = loadtest.exchange(port, data, close, timeout=30)
        assert how == "answered" and 400 <= status < 500, (kind, status, how)
        assert loadtest.is_error_json(body) and b"tinynet-secret" not in body, kind
    assert loadtest.get(port, *plan[1])[1] is None


def test_a_half_sent_request_is_cut_off_and_others_are_served(server):
    """A client that sends half a request and stalls is disconnected after the socket timeout
    (2 s here); meanwhile other requests are answered."""
    with socket.create_connection(server.server_address[:2], timeout=30) as stalled:
        stalled.sendall(b"GET /api/runs HTTP/1.1\r\nHost: x")
        assert get(server, "/api/runs")[0] == 200
        while stalled.recv(65536):
            pass  # returns b"" when the server closes the connection


# ---------------------------------------------------------------------------------------------
# Training is never changed by the page


TIMINGS = ("seconds", "images_per_second")


def weights(run, name="last.npz"):
    """A checkpoint's arrays, and its metadata without the timings (which no two runs share)."""
    with np.load(run / name) as saved:
        arrays = {k: saved[k] for k in saved.files if k != "metadata"}
        meta = json.loads(str(saved["metadata"]))
    for record in meta["training"]["history"]:
        for key in TIMINGS:
            record.pop(key)
    return arrays, meta


def test_training_is_bitwise_the_same_watched_or_not(data, tmp_path):
    """Weights and checkpoints are the same bit for bit: without callbacks; with the recorder,
    TensorBoard and a server with a stalled client and a polling client connected; and with a
    server shut down mid-run and a recorder whose snapshot fails (dropped, training goes on)."""
    plain = tmp_path / "runs" / "plain"
    train(config(data), plain, **quiet)

    watched = tmp_path / "runs" / "watched"
    server = make_server(tmp_path / "runs", port=0, timeout=60)
    serve_in_background(server)
    stalled = socket.create_connection(server.server_address[:2], timeout=60)
    stalled.sendall(b"GET /api/runs/watched/metrics HTTP/1.1\r\n")  # and nothing more
    polls = []

    class Poll:  # a client reading the page's API after every step, from the training thread
        def on_step(self, trainer, record):
            polls.append(get(server, "/api/runs/watched/metrics")[0])
    from tinynet.training.tensorboard import TensorBoardLog, TensorBoardUnavailable
    try:
        observers = [recorder(), TensorBoardLog(every=2), Poll()]
    except TensorBoardUnavailable:  # tensorboardX is an optional extra
        observers = [recorder(), Poll()]
    train(config(data), watched, callbacks=observers, **quiet)
    stalled.close()
    server.shutdown()
    server.server_close()
    assert set(polls) == {200} and len(polls) == 2 * 17

    broken = tmp_path / "runs" / "broken"
    server = make_server(tmp_path / "runs", port=0)
    serve_in_background(server)
    failing = recorder()
    failing.snapshot_every = 3

    class Kill:
        def on_step(self, trainer, record):
            if record["step"] == 4:
                server.shutdown()
                server.server_close()
                failing.labels = None  # the next snapshot raises: the recorder is dropped
    messages = []
    train(config(data), broken, callbacks=[Kill(), failing], **{**quiet, "log": messages.append})
    assert any("Recorder.on_step failed" in m for m in messages)

    for name in ("last.npz", "best.npz"):
        arrays, meta = weights(plain, name)
        for run in (watched, broken):
            got, got_meta = weights(run, name)
            assert got.keys() == arrays.keys() and got_meta == meta
            for key in arrays:
                assert np.array_equal(got[key], arrays[key]), (run.name, name, key)


# ---------------------------------------------------------------------------------------------
# TensorBoard


def read_events(path):
    """The Event protobufs of a TFRecord event file (length, crc, data, crc per record)."""
    from tensorboardX.proto.event_pb2 import Event
    events, data = [], path.read_bytes()
    at = 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        events.append(Event.FromString(data[at + 12:at + 12 + length]))
        at += 12 + length + 4
    return events


def test_tensorboard_event_file_reads_back(data, tmp_path):
    pytest.importorskip("tensorboardX", reason="tensorboardX is not installed (the [tensorboard] extra)")
    from tinynet.training.tensorboard import TensorBoardLog
    run = tmp_path / "run"
    train(config(data), run, callbacks=[TensorBoardLog(every=2)], **quiet)
    files = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    scalars, images, histograms = {}, {}, {}
    for event in read_events(files[0]):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
            elif value.HasField("image"):
                images.setdefault(value.tag, []).append((event.step, value.image))
            elif value.HasField("histo"):
                histograms.setdefault(value.tag, []).append((event.step, value.histo))
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [s for s, _ in scalars["step/loss"]] == list(range(2, 35, 2))
    assert [round(v, 5) for _, v in scalars["epoch/val_accuracy"]] == [round(r["val_accuracy"], 5) for r in history]
    assert [s for s, _ in scalars["epoch/val_accuracy"]] == [17, 34]
    assert [s for s, _ in images["conv1/filters"]] == [0, 17, 34]
    image = images["conv1/filters"][-1][1]
    assert (image.width, image.height) == (5 * 6 * 8 - 8, 4 * 6 * 8 - 8) and image.encoded_image_string[:4] == b"\x89PNG"
    assert {"weights/conv1.W", "weights/fc2.b"} <= histograms.keys()
    assert histograms["weights/conv1.W"][-1][1].num == 20 * 25


def test_tensorboard_and_the_snapshot_of_a_network_without_a_convolution(data, tmp_path):
    """An MLP: no filters image in TensorBoard and ``"filters": null`` in the snapshot (the page says
    why), everything else as for the LeNet; no filters.png in the run folder."""
    pytest.importorskip("tensorboardX", reason="tensorboardX is not installed (the [tensorboard] extra)")
    from tinynet.training.tensorboard import TensorBoardLog
    run = tmp_path / "run"
    train(config(data), run, callbacks=[TensorBoardLog(every=2), recorder()], network="mlp", **quiet)
    (events,) = (run / "tensorboard").glob("events.out.tfevents.*")
    tags = {value.tag for event in read_events(events) for value in event.summary.value}
    assert {"step/loss", "epoch/val_accuracy", "weights/fc1.W", "weights/fc3.b"} <= tags
    assert not [tag for tag in tags if tag.endswith("/filters")]
    snap = json.loads((run / "snapshot.json").read_text())
    assert snap["filters"] is None and snap["grid"]["shape"] == [28, 28] and snap["step"] == 34
    assert not (run / "filters.png").exists() and (run / "summary.json").exists()
    answer = Runs(tmp_path).snapshot("run")
    assert answer["problem"] is None and answer["snapshot"]["filters"] is None


def test_tensorboard_missing_is_a_clear_error(monkeypatch, data, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    code = train_cli.main(["--data-dir", str(data), "--dataset", "tiny", "--no-download", "--epochs", "1",
                           "--runs-dir", str(tmp_path), "--name", "x", "--tensorboard", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "--tensorboard needs tensorboardX" in err and 'pip install "tinynet[tensorboard]"' in err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# Command lines


def test_train_watch_prints_the_address_and_serves_while_training(data, tmp_path):
    """``train.py --watch --watch-port 0``: the address first, the page's API answering while the
    run trains, the run's status ``finished`` in its folder at the end, exit status 0."""
    process = subprocess.Popen(
        [sys.executable, "train.py", "--data-dir", str(data), "--dataset", "tiny", "--no-download",
         "--epochs", "2", "--batch-size", "16", "--runs-dir", str(tmp_path), "--name", "w", "--watch",
         "--watch-port", "0", "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        first = process.stdout.readline()
        port = int(re.fullmatch(r"watch this run at http://127\.0\.0\.1:(\d+)/\n", first)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/api/runs")
        listing = json.loads(connection.getresponse().read())
        assert listing["focus"] == "w"
        assert process.wait(120) == 0, process.stderr.read()
    finally:
        process.kill()
        process.wait()
    assert json.loads((tmp_path / "w" / "status.json").read_text())["status"] == "finished"


def test_watch_port_in_use_is_a_one_line_error_before_training(server, data, tmp_path, capsys):
    port = server.server_address[1]
    code = train_cli.main(["--data-dir", str(data), "--dataset", "tiny", "--no-download", "--epochs", "1",
                           "--runs-dir", str(tmp_path), "--name", "x", "--watch", "--watch-port", str(port)])
    assert code == 1
    assert capsys.readouterr().err == f"error: 127.0.0.1:{port}: cannot listen there (Address already in use)\n"
    assert not (tmp_path / "x").exists()


def test_tinynet_watch_prints_the_address_and_stops_on_ctrl_c(runs_dir):
    process = subprocess.Popen([sys.executable, "-m", "tinynet", "watch", str(runs_dir), "--port", "0"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        port = int(re.search(r"at http://127\.0\.0\.1:(\d+)/", process.stdout.readline())[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/api/runs")
        assert len(json.loads(connection.getresponse().read())["runs"]) == 2
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()


def test_tinynet_watch_given_one_run_opens_it(runs_dir, monkeypatch):
    served = []
    monkeypatch.setattr(watch_cli, "serve", lambda *args: served.append(args) or 0)
    assert watch_cli.main([str(runs_dir / "good"), "--port", "0"]) == 0
    assert served == [(runs_dir.resolve(), "127.0.0.1", 0, "good")]


def test_tinynet_watch_errors(tmp_path, capsys):
    assert watch_cli.main([str(tmp_path / "none")]) == 1
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        watch_cli.main(["--port", "70000"])
    assert exit_info.value.code == 2 and "must be a port number" in capsys.readouterr().err
