"""Checkpoints: a round trip keeps every array and the metadata; writing is atomic; reading refuses
anything that is not an intact tinynet checkpoint with a one-line error, and never unpickles."""

import io
import json
import zipfile

import numpy as np
import pytest

from tinynet.files.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinynet.nn.model import lenet

ARCH = {"name": "lenet", "num_classes": 5, "dropout": 0.0}
CLASSES = list("ABCDE")


@pytest.fixture
def saved(tmp_path, rng):
    model = lenet(5, rng=rng)
    velocity = {name: rng.standard_normal(p.shape).astype(np.float32) for name, p, _ in model.parameters()}
    path = tmp_path / "model.npz"
    save_checkpoint(path, model, ARCH, CLASSES, {"epoch": 3}, velocity, {"order": np.arange(7)})
    return path, model, velocity


def test_round_trip(saved):
    """Weights, optimiser state, extra arrays and metadata come back exactly as saved."""
    path, model, velocity = saved
    loaded, meta, opt, extra = load_checkpoint(path)
    for name, p in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], p)
        np.testing.assert_array_equal(opt[name], velocity[name])
    np.testing.assert_array_equal(extra["order"], np.arange(7))
    assert meta["epoch"] == 3 and meta["classes"] == CLASSES and meta["architecture"] == ARCH


def test_plain_numpy_can_read_the_weights(saved):
    """Other tools need no tinynet: np.load with allow_pickle=False gives the arrays by name."""
    path, model, _ = saved
    with np.load(path, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["conv1.W"], model.state_dict()["conv1.W"])
        assert json.loads(str(f["metadata"]))["format"] == "tinynet-checkpoint"


def test_write_leaves_no_temporary_files(saved):
    """The temporary file is renamed into place: afterwards only the checkpoint itself is there."""
    path, _, _ = saved
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]


def test_failed_write_keeps_the_old_checkpoint(saved, rng):
    """If writing fails midway, the previous checkpoint under that name is untouched."""
    path, model, _ = saved
    before = path.read_bytes()
    bad_arch = {"name": "lenet", "num_classes": 5, "dropout": 0.0, "oops": object()}  # not JSON
    with pytest.raises(TypeError):
        save_checkpoint(path, model, bad_arch, CLASSES)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]


@pytest.mark.parametrize("where", ["weights", "momentum"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_never_saved(saved, where, value):
    """A diverged model (a NaN or infinite weight or momentum value) is refused, naming the array,
    and the checkpoint already under that name stays as it was: loadable."""
    path, model, velocity = saved
    before = path.read_bytes()
    if where == "weights":
        model.layers[0].params["W"][0, 0, 2, 2] = value
    else:
        velocity["fc1.b"][7] = value
    name = "conv1.W" if where == "weights" else "optimizer.fc1.b"
    with pytest.raises(CheckpointError, match=rf"model.npz: not saved: {name} hold NaN or infinite values"):
        save_checkpoint(path, model, ARCH, CLASSES, {"epoch": 4}, velocity)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]
    load_checkpoint(path)


def rewrite(path, drop=(), replace=None):
    """Copy a checkpoint's zip members, dropping or replacing some."""
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.namelist():
            if item in drop:
                continue
            dst.writestr(item, (replace or {}).get(item, src.read(item)))
    path.write_bytes(buf.getvalue())


def npy_bytes(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b""), "not a readable tinynet checkpoint"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "not a readable tinynet checkpoint"),
    (lambda p: p.write_text("hello"), "not a readable tinynet checkpoint"),
    (lambda p: rewrite(p, drop={"metadata.npy"}), "no metadata entry"),
    (lambda p: rewrite(p, drop={"fc1.W.npy"}), "missing parameter arrays fc1.W"),
    (lambda p: rewrite(p, replace={"fc1.W.npy": npy_bytes(np.zeros((3, 3), np.float32))}),
     r"array 'fc1.W' has shape \(3, 3\), the architecture needs \(800, 500\)"),
    (lambda p: rewrite(p, replace={"fc1.b.npy": npy_bytes(np.zeros(500, np.int64))}),
     "array 'fc1.b' has dtype int64"),
    (lambda p: rewrite(p, replace={"fc1.b.npy": npy_bytes(np.array([{"evil": 1}] * 500, dtype=object),
                                                          allow_pickle=True)}),
     "array 'fc1.b' has dtype object"),
    (lambda p: rewrite(p, replace={"metadata.npy": npy_bytes(np.array("{not json"))}), "not valid JSON"),
    (lambda p: rewrite(p, replace={"metadata.npy": npy_bytes(np.array('{"format": "other"}'))}),
     "not a tinynet checkpoint"),
    (lambda p: rewrite(p, replace={"fc1.b.npy": npy_bytes(np.full(500, np.nan, np.float32))}),
     "parameter 'fc1.b' holds NaN"),
])
def test_bad_checkpoints_are_clear_errors(saved, damage, message):
    """Each kind of damage gives a CheckpointError that names the file and the fault."""
    path, _, _ = saved
    damage(path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_pickled_metadata_is_never_unpickled(saved):
    """A pickled object in place of the metadata is refused by its header, before any unpickling."""
    path, _, _ = saved

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    rewrite(path, replace={"metadata.npy": npy_bytes(np.array([Boom()], dtype=object), allow_pickle=True)})
    with pytest.raises(CheckpointError, match="dtype object"):
        load_checkpoint(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.npz")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)
