"""``tinynet serve`` and its old spelling ``python3 inference.py --serve``: the same code, the model
loaded directly (no batch predictor), clear errors before anything listens."""

import socket

import pytest

from tinynet.cli import infer as infer_cli
from tinynet.cli import serve as serve_cli
from tinynet.predict.predictor import BUNDLED_MODEL


@pytest.fixture
def served(monkeypatch):
    """Replace the server loop: record what would be served instead of serving it."""
    calls = []
    monkeypatch.setattr(serve_cli, "serve", lambda model, classes, path, host, port, top_k:
                        calls.append((type(model).__name__, len(classes), str(path), host, port, top_k)) or 0)
    return calls


def test_tinynet_serve_and_inference_py_serve_serve_the_same(served, tmp_path):
    assert serve_cli.main(["--runs-dir", str(tmp_path), "--port", "8081", "--top-k", "3"], prog="tinynet serve") == 0
    assert infer_cli.main(["--serve", "--runs-dir", str(tmp_path), "--port", "8081", "--top-k", "3"]) == 0
    assert served[0] == served[1] == ("Sequential", 47, str(BUNDLED_MODEL), "127.0.0.1", 8081, 3)


def test_tinynet_serve_serves_an_onnx_model_as_inference_py_reads_one(served, tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (tinynet[onnx])")
    from tinynet.onnx import export_onnx
    path = tmp_path / "lenet.onnx"
    export_onnx(BUNDLED_MODEL, path)
    assert serve_cli.main(["--checkpoint", str(path), "--port", "0"], prog="tinynet serve") == 0
    assert served == [("Sequential", 47, str(path), "127.0.0.1", 0, 5)]


@pytest.mark.parametrize("argv, message", [
    (["--serve", "--tta"], "--tta does not apply to --serve"),
    (["--serve", "--threads", "2"], "--threads does not apply to --serve"),
    (["--input", "x.png", "--port", "80"], "--port does not apply to x.png"),
])
def test_inference_py_refuses_options_of_the_other_mode(argv, message, capsys, tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(SystemExit) as info:
        infer_cli.main([a.replace("x.png", str(tmp_path / "x.png")) for a in argv])
    assert info.value.code == 2 and message.replace("x.png", str(tmp_path / "x.png")) in capsys.readouterr().err


def test_tinynet_infer_has_no_server_options(capsys):
    with pytest.raises(SystemExit) as info:
        infer_cli.main(["--input", "x.png", "--serve"], prog="tinynet infer")
    assert info.value.code == 2 and "unrecognized arguments: --serve" in capsys.readouterr().err


def test_a_port_in_use_or_a_broken_checkpoint_is_one_line(capsys, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_cli.main(["--port", str(port), "--runs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: 127.0.0.1:{port}: cannot listen there")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    assert serve_cli.main(["--checkpoint", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}: ")
