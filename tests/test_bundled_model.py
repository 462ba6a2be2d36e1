"""The model bundled with tinynet (package data, the default when no run has been trained): its
size and contents, its accuracy on real data, and the export step that makes it."""

import fnmatch
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, require_resplit
from tinynet.files.checkpoint import CheckpointError, export_checkpoint, load_checkpoint, save_checkpoint
from tinynet.cli.export import main as export_main
from tinynet.datasets.idx import load_split
from tinynet.predict.predictor import BUNDLED_MODEL, Predictor
from tinynet.nn.model import lenet

REPO = Path(__file__).resolve().parents[1]
# Accuracy the bundled model must reach (README, "The bundled model", gives what it does reach).
MIN_TEST_ACCURACY = 0.87  # the resplit's test split (writers shared with its train split)
MIN_UNSEEN_ACCURACY = 0.88  # emnist-balanced-unseen (writers never seen in training)
MAX_BYTES = 2_000_000


def test_bundled_model_is_small_and_inference_only():
    """At most 2 MB, compressed, no optimiser state or resume data; loads as any checkpoint."""
    assert BUNDLED_MODEL.stat().st_size <= MAX_BYTES
    with zipfile.ZipFile(BUNDLED_MODEL) as zf:
        names = zf.namelist()
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    assert not [n for n in names if n.startswith(("optimizer.", "extra."))]
    model, meta, optimizer, extra = load_checkpoint(BUNDLED_MODEL)
    assert optimizer == {} and extra == {} and len(meta["classes"]) == 47
    assert "rng_state" not in meta and meta["recipe"]["dataset"] == "emnist-bymerge-resplit"


@pytest.mark.parametrize("folder, name, minimum", [
    ("emnist-bymerge-resplit", "emnist-bymerge-resplit", MIN_TEST_ACCURACY),
    ("emnist-balanced-unseen", "emnist-balanced-unseen", MIN_UNSEEN_ACCURACY),
])
def test_bundled_model_accuracy_on_real_data(folder, name, minimum):
    require_resplit()
    if not (SHARED_DATA / folder).is_dir():
        pytest.skip(f"{SHARED_DATA / folder} not found (only present in the development workplace)")
    test = load_split(SHARED_DATA / folder, name, "test")
    predictor = Predictor.from_checkpoint(BUNDLED_MODEL)
    assert predictor.classes == test.classes
    accuracy = float(np.mean(predictor.predict(test.images) == test.labels))
    assert accuracy >= minimum, f"{name}: accuracy {accuracy:.4f} < {minimum}"


def test_export_keeps_the_weights_and_drops_the_rest(tmp_path, rng, capsys):
    """export_checkpoint (python3 -m tinynet.cli.export) of a checkpoint with momentum buffers, resume data
    and random-generator states writes the same weights and classes without them, compressed."""
    model = lenet(47, rng=rng, dropout=0.25)
    classes = [chr(ord("A") + i % 26) + str(i) for i in range(47)]
    arch = {"name": "lenet", "num_classes": 47, "dropout": 0.25}
    meta = {"recipe": {"dataset": "toy"}, "rng_state": {"init": "..."},
            "training": {"epoch": 3, "step": 30, "batch": 0, "history": [{"epoch": 1}],
                         "best_val_accuracy": 0.5}}
    momentum = {name: np.ones_like(p) for name, p, _ in model.parameters()}
    save_checkpoint(tmp_path / "last.npz", model, arch, classes, meta, momentum, {"order": np.arange(10)})
    assert export_main([str(tmp_path / "last.npz"), "--output", str(tmp_path / "m.npz")]) == 0
    assert "wrote" in capsys.readouterr().out
    exported, new_meta, optimizer, extra = load_checkpoint(tmp_path / "m.npz")
    assert optimizer == {} and extra == {} and new_meta["classes"] == classes
    assert new_meta["training"] == {"epoch": 3, "step": 30, "best_val_accuracy": 0.5}
    assert "rng_state" not in new_meta and new_meta["exported_from"] == str(tmp_path / "last.npz")
    for (name, a, _), (_, b, _) in zip(model.parameters(), exported.parameters()):
        assert np.array_equal(a, b), name
    assert (tmp_path / "m.npz").stat().st_size < (tmp_path / "last.npz").stat().st_size / 2
    assert export_main([str(tmp_path / "missing.npz"), "--output", str(tmp_path / "x.npz")]) == 1
    assert "missing.npz: no such checkpoint file" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        export_checkpoint(tmp_path / "nothing.npz", tmp_path / "y.npz")


def test_package_data_lists_the_model_and_the_page():
    """pyproject.toml's package data covers the bundled model, the shipped sample and every file of
    the page, so a non-editable ``pip install .`` has them."""
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tinynet"]
    package = REPO / "tinynet"
    files = [BUNDLED_MODEL, *sorted((package / "web" / "static").iterdir()),
             *sorted((package / "datasets" / "sample").iterdir())]
    for path in files:
        rel = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel


def test_a_users_export_never_writes_into_the_package(tmp_path, rng, capsys):
    """Issue 42: ``tinynet export runs/NAME/best.npz`` without --output replaced the bundled model
    (its --help named that as the default), silently: a 2-epoch run's 6% model took the place of
    the 0.89 one. Now it writes ``best-export.npz`` beside the checkpoint; an --output or --onnx
    inside the package (the bundled model's own path included, or the default output of the
    bundled model itself) is refused with exit status 1; and the bundled model is untouched."""
    shipped = BUNDLED_MODEL.read_bytes()
    package_files = sorted(p for p in BUNDLED_MODEL.parent.iterdir())
    model = lenet(47, rng=rng)
    save_checkpoint(tmp_path / "best.npz", model, {"name": "lenet", "num_classes": 47},
                    [str(i) for i in range(47)])
    try:
        assert export_main([str(tmp_path / "best.npz")]) == 0
        assert f"wrote {tmp_path / 'best-export.npz'}" in capsys.readouterr().out
        exported, _, _, _ = load_checkpoint(tmp_path / "best-export.npz")
        assert np.array_equal(exported.state_dict()["conv1.W"], model.state_dict()["conv1.W"])
        inside = [["--output", str(BUNDLED_MODEL)], ["--output", str(BUNDLED_MODEL.parent / "other.npz")],
                  ["--output", str(REPO / "tinynet" / ".." / "tinynet" / "x.npz")],
                  ["--onnx", str(BUNDLED_MODEL.parent / "m.onnx")]]
        for options in inside:
            assert export_main([str(tmp_path / "best.npz"), *options]) == 1, options
            assert "inside the tinynet package" in capsys.readouterr().err, options
        assert export_main([str(BUNDLED_MODEL)]) == 1  # its default output is beside it: in the package
        assert "give --output a path of your own" in capsys.readouterr().err
        link = tmp_path / "models-link"
        link.symlink_to(BUNDLED_MODEL.parent, target_is_directory=True)
        assert export_main([str(tmp_path / "best.npz"), "--output", str(link / "lenet-emnist47.npz")]) == 1
        assert "inside the tinynet package" in capsys.readouterr().err
    finally:
        changed = BUNDLED_MODEL.read_bytes() != shipped
        if changed:  # put back what a failing run replaced, then fail
            BUNDLED_MODEL.write_bytes(shipped)
    assert not changed, "the bundled model was overwritten"
    assert sorted(p for p in BUNDLED_MODEL.parent.iterdir()) == package_files


def test_export_help_names_no_default_inside_the_package(capsys):
    with pytest.raises(SystemExit):
        export_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "best-export.npz" in text and "bundled model, " not in text and "lenet-emnist47" not in text
