"""Tests of tinynet.datasets.download against a small archive served on 127.0.0.1 (never the internet)."""

import gzip
import hashlib
import io
import re
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tinynet.datasets.idx import DataError, load_split
from tinynet.datasets.download import (OFFICIAL_URL, PUBLISHED_SHA256, dataset_files, ensure_dataset,
                                       fetch, install_from)
from tinynet.datasets.idx import write_idx

NAME = "emnist-tiny"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small archive laid out like NIST's gzip.zip: {'zip': bytes, 'files': {name: bytes}, 'sha256': ...}."""
    folder = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for name, n in ((NAME, 150), ("emnist-other", 5)):
        for split in ("train", "test"):
            write_idx(folder / f"{name}-{split}-images-idx3-ubyte.gz",
                      rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
            write_idx(folder / f"{name}-{split}-labels-idx1-ubyte.gz",
                      (np.arange(n) % 3).astype(np.uint8))
        (folder / f"{name}-mapping.txt").write_bytes(b"0 65\r\n1 66\r\n2 67\r\n")
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(f"gzip/{name}", data)
    return {"zip": buffer.getvalue(), "files": files, "folder": folder,
            "sha256": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}


class Server:
    """Serves one payload at /gzip.zip on 127.0.0.1, with Range support and scripted failures."""

    def __init__(self, payload):
        self.payload = payload
        self.drops = []         # byte offsets: each request reaching one sends up to it, then hangs up
        self.honour_range = True
        self.ranges = []        # the Range header of every request (None when absent)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.ranges.append(self.headers.get("Range"))
                if self.path != "/gzip.zip":
                    self.send_error(404)
                    return
                size, start = len(server.payload), 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and server.honour_range:
                    start = int(match.group(1))
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                stop = server.drops.pop(0) if server.drops and server.drops[0] > start else size
                self.wfile.write(server.payload[start:stop])
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/gzip.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tiny):
    s = Server(tiny["zip"])
    yield s
    s.close()


def quiet(_line):
    pass


def assert_installed(data_dir, tiny, splits=("train", "test")):
    for name in dataset_files(NAME, splits):
        assert (data_dir / name).read_bytes() == tiny["files"][name]
    assert not [p.name for p in data_dir.iterdir() if p.name.startswith(".")]  # no temp files


def test_download_extracts_only_the_requested_split(tmp_path, tiny, server):
    lines = []
    ensure_dataset(tmp_path, NAME, url=server.url, checksums=tiny["sha256"], out=lines.append)
    assert_installed(tmp_path, tiny)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        dataset_files(NAME) + ["emnist-gzip.zip"])
    assert (tmp_path / "emnist-gzip.zip").read_bytes() == tiny["zip"]
    assert sum("sha256 matches the published checksum" in line for line in lines) == 5
    assert len(load_split(tmp_path, NAME, "train").labels) == 150
    ensure_dataset(tmp_path, NAME, url=server.url, checksums=tiny["sha256"], out=quiet)
    assert server.ranges == [None]  # second call: everything present, nothing fetched


def test_interrupted_download_resumes_on_the_next_run(tmp_path, tiny, server):
    half = len(tiny["zip"]) // 2
    server.drops = [half]
    with pytest.raises(DataError) as info:
        ensure_dataset(tmp_path, NAME, url=server.url, checksums=tiny["sha256"], retries=0,
                       out=quiet)
    part = tmp_path / "emnist-gzip.zip.part"
    assert str(info.value) == (f"{server.url}: download interrupted at {half} bytes "
                               f"(connection closed before the end of {len(tiny['zip'])} bytes); "
                               f"{part} is kept: run the same command again to resume")
    assert part.stat().st_size == half
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emnist-gzip.zip.part"]
    ensure_dataset(tmp_path, NAME, url=server.url, checksums=tiny["sha256"], out=quiet)
    assert server.ranges == [None, f"bytes={half}-"]
    assert_installed(tmp_path, tiny)
    assert not part.exists()


def test_dropped_connections_are_resumed_within_one_call(tmp_path, tiny, server):
    size = len(tiny["zip"])
    server.drops = [size // 4, size // 2]
    lines = []
    ensure_dataset(tmp_path, NAME, url=server.url, checksums=tiny["sha256"], out=lines.append)
    assert server.ranges == [None, f"bytes={size // 4}-", f"bytes={size // 2}-"]
    assert sum("resuming" in line for line in lines) == 2
    assert_installed(tmp_path, tiny)


def test_server_ignoring_range_restarts_from_scratch(tmp_path, tiny, server):
    (tmp_path / "emnist-gzip.zip.part").write_bytes(b"stale bytes")
    server.honour_range = False
    ensure_dataset(tmp_path, NAME, url=server.url, checksums=tiny["sha256"], out=quiet)
    assert server.ranges == ["bytes=11-"]
    assert_installed(tmp_path, tiny)


def test_complete_part_file_is_finished_without_refetching(tmp_path, tiny, server):
    (tmp_path / "emnist-gzip.zip.part").write_bytes(tiny["zip"])
    fetch(server.url, tmp_path / "emnist-gzip.zip", out=quiet)  # server answers 416
    assert (tmp_path / "emnist-gzip.zip").read_bytes() == tiny["zip"]
    assert not (tmp_path / "emnist-gzip.zip.part").exists()


def test_bad_checksum_leaves_no_file(tmp_path, tiny, server):
    checksums = dict(tiny["sha256"], **{f"{NAME}-test-labels-idx1-ubyte.gz": "0" * 64})
    with pytest.raises(DataError) as info:
        ensure_dataset(tmp_path, NAME, url=server.url, checksums=checksums, out=quiet)
    actual = tiny["sha256"][f"{NAME}-test-labels-idx1-ubyte.gz"]
    assert str(info.value) == (
        f"{tmp_path}/emnist-gzip.zip:gzip/{NAME}-test-labels-idx1-ubyte.gz: sha256 mismatch: "
        f"got {actual}, published {'0' * 64}; {NAME}-test-labels-idx1-ubyte.gz not written "
        f"(damaged or not the official file)")
    assert not (tmp_path / f"{NAME}-test-labels-idx1-ubyte.gz").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_files_without_checksum_are_checked_by_parsing(tmp_path, tiny, server):
    lines = []
    ensure_dataset(tmp_path, NAME, url=server.url, checksums={}, splits=("test",),
                   out=lines.append)
    assert lines[1:] == [
        f"{tmp_path}/{NAME}-test-images-idx3-ubyte.gz: no published checksum known; "
        f"IDX parsed (150 images of 28x28)",
        f"{tmp_path}/{NAME}-test-labels-idx1-ubyte.gz: no published checksum known; "
        f"IDX parsed (150 labels)",
        f"{tmp_path}/{NAME}-mapping.txt: no published checksum known; mapping parsed (3 classes)"]
    assert not (tmp_path / f"{NAME}-train-images-idx3-ubyte.gz").exists()


def test_unparsable_file_without_checksum_is_not_written(tmp_path, tiny):
    source = tmp_path / "src"
    source.mkdir()
    for name in dataset_files(NAME, ("test",)):
        (source / name).write_bytes(tiny["files"][name])
    (source / f"{NAME}-test-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b junk")
    with pytest.raises(DataError) as info:
        install_from(source, tmp_path / "data", NAME, splits=("test",), checksums={}, out=quiet)
    assert str(info.value).startswith(f"{source}/{NAME}-test-images-idx3-ubyte.gz: corrupt gzip")
    assert not (tmp_path / "data" / f"{NAME}-test-images-idx3-ubyte.gz").exists()


def test_no_connection_says_how_to_supply_the_files(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/gzip.zip"
    with pytest.raises(DataError) as info:
        ensure_dataset(tmp_path, NAME, url=url, out=quiet)
    message = str(info.value)
    assert message.startswith(f"cannot download {url} (")
    assert (f"put {', '.join(dataset_files(NAME))} (from the EMNIST archive gzip.zip, folder "
            f"gzip/) into {tmp_path}/, or run `python3 -m tinynet download --dataset {NAME} "
            f"--data-dir {tmp_path} --from PATH`") in message
    assert "\n" not in message


def test_http_error(tmp_path, server):
    with pytest.raises(DataError, match=r"gzip\.zipx: HTTP error 404 Not Found; put "):
        ensure_dataset(tmp_path, NAME, url=server.url + "x", out=quiet)


def test_no_download_raises_without_network(tmp_path, server):
    with pytest.raises(DataError) as info:
        ensure_dataset(tmp_path, NAME, download=False, url=server.url, out=quiet)
    assert f"{NAME}-train-images-idx3-ubyte.gz" in str(info.value)
    assert "--from PATH" in str(info.value)
    assert server.ranges == []


def test_no_download_still_uses_an_archive_already_there(tmp_path, tiny):
    (tmp_path / "emnist-gzip.zip").write_bytes(tiny["zip"])
    ensure_dataset(tmp_path, NAME, download=False, url="http://127.0.0.1:9/none",
                   checksums=tiny["sha256"], out=quiet)
    assert_installed(tmp_path, tiny)


def test_only_missing_files_are_extracted(tmp_path, tiny, server):
    mapping = tmp_path / f"{NAME}-mapping.txt"
    mapping.write_bytes(b"0 88\n1 89\n2 90\n")  # the user's own; kept
    plain = tmp_path / f"{NAME}-test-labels-idx1-ubyte"  # unzipped copy counts as present
    plain.write_bytes(b"anything")
    ensure_dataset(tmp_path, NAME, url=server.url, checksums=tiny["sha256"], out=quiet)
    assert mapping.read_bytes() == b"0 88\n1 89\n2 90\n"
    assert not (tmp_path / f"{NAME}-test-labels-idx1-ubyte.gz").exists()


@pytest.mark.parametrize("layout", ["zip", "folder", "folder/gzip"])
def test_from_archive_or_folder(tmp_path, tiny, layout):
    if layout == "zip":
        source = tmp_path / "gzip.zip"
        source.write_bytes(tiny["zip"])
    else:
        source = tmp_path / "mine"
        (source / "gzip").mkdir(parents=True)
        for name, data in tiny["files"].items():
            (source / layout.removeprefix("folder").lstrip("/") / name).write_bytes(data)
    install_from(source, tmp_path / "data", NAME, checksums=tiny["sha256"], out=quiet)
    assert_installed(tmp_path / "data", tiny)


def test_from_folder_with_plain_idx_files(tmp_path, tiny):
    source = tmp_path / "plain"
    source.mkdir()
    for split in ("train", "test"):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{NAME}-{split}-{kind}-ubyte"
            (source / name).write_bytes(gzip.decompress(tiny["files"][name + ".gz"]))
    (source / f"{NAME}-mapping.txt").write_bytes(tiny["files"][f"{NAME}-mapping.txt"])
    install_from(source, tmp_path / "data", NAME, checksums=tiny["sha256"], out=quiet)
    assert len(load_split(tmp_path / "data", NAME, "test").labels) == 150


def test_archive_without_the_dataset(tmp_path, tiny):
    source = tmp_path / "gzip.zip"
    source.write_bytes(tiny["zip"])
    with pytest.raises(DataError) as info:
        install_from(source, tmp_path / "data", "emnist-balanced", splits=("test",), out=quiet)
    assert str(info.value) == (
        f"{source}: has no emnist-balanced-test-images-idx3-ubyte.gz, "
        f"emnist-balanced-test-labels-idx1-ubyte.gz, emnist-balanced-mapping.txt "
        f"(datasets it holds: emnist-other, emnist-tiny)")


def test_corrupt_archive(tmp_path, tiny):
    source = tmp_path / "gzip.zip"
    source.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"gzip\.zip: not a valid zip archive \("):
        install_from(source, tmp_path / "data", NAME, out=quiet)
    damaged = bytearray(tiny["zip"])
    member = tiny["files"][f"{NAME}-test-images-idx3-ubyte.gz"]
    damaged[damaged.index(member) + len(member) // 2] ^= 1  # the zip's CRC check fails
    source.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match=rf"gzip/{NAME}-test-images-idx3-ubyte.gz: corrupt \(Bad CRC-32"):
        install_from(source, tmp_path / "data", NAME, checksums={}, out=quiet)
    with pytest.raises(DataError, match="nowhere: no such file or folder"):
        install_from(tmp_path / "nowhere", tmp_path / "data", NAME, out=quiet)


def test_bad_dataset_name(tmp_path):
    with pytest.raises(DataError, match="not a dataset name"):
        ensure_dataset(tmp_path, "../etc", out=quiet)


def test_published_checksums():
    assert OFFICIAL_URL == "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
    assert PUBLISHED_SHA256["emnist-balanced-train-images-idx3-ubyte.gz"] == (
        "74295e75e4e9fa2c102147460ee7eb763653d5132d883a84fb88932bfb8d2db4")
    assert PUBLISHED_SHA256["emnist-bymerge-test-images-idx3-ubyte.gz"] == (
        "5e5815ec1b522089134435f7c55e75a00960b58414793593ffff23efc0821683")
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in PUBLISHED_SHA256.values())
    for split in ("balanced", "bymerge", "byclass", "letters", "digits", "mnist"):
        for name in dataset_files(f"emnist-{split}"):
            assert name in PUBLISHED_SHA256 or name.endswith("-mapping.txt"), name


def cli(*args):
    return subprocess.run([sys.executable, "-m", "tinynet", "download", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_command_line(tmp_path, tiny):
    source = tmp_path / "gzip.zip"
    source.write_bytes(tiny["zip"])
    done = cli("--dataset", NAME, "--data-dir", str(tmp_path / "data"), "--from", str(source),
               "--split", "test")
    assert done.returncode == 0, done.stderr
    assert "no published checksum known" in done.stdout
    assert done.stdout.endswith(f"{NAME} (test) is ready in {tmp_path}/data/\n")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(
        dataset_files(NAME, ("test",)))

    failed = cli("--dataset", NAME, "--data-dir", str(tmp_path / "data"), "--from",
                 str(tmp_path / "nowhere"))
    assert failed.returncode == 1
    assert failed.stderr == f"error: {tmp_path}/nowhere: no such file or folder\n"
