"""Tests of tinynet.predict.predictor and inference.py: test sets, image files and arrays, from Python and
from the command line, on the real resplit EMNIST data with a briefly trained model."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import RESPLIT, require_resplit
from tinynet.files.checkpoint import save_checkpoint
from tinynet.cli.infer import build_parser, main
from tinynet.datasets.idx import load_split
from tinynet.predict.predictor import BUNDLED_MODEL, InputError, Predictor, as_images
from tinynet.nn.model import build_model
from tinynet.predict.metrics import (confusion_matrix, format_report, most_confused, per_class_metrics,
                                     top_k_accuracy)
from tinynet import TrainConfig, load_sample, train
from tinynet.datasets.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
NAME = "emnist-bymerge-resplit"
CSV_COLUMNS = ["index", "true", "correct", "predicted", "probability", "top_k", "top_k_probabilities"]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """best.npz of a LeNet trained once per session for 1 epoch on 20,000 real images (~9 s;
    about 78% test accuracy)."""
    data = require_resplit()
    run = tmp_path_factory.mktemp("train") / "run"
    train(TrainConfig(data_dir=str(data), dataset=NAME, epochs=1, limit=20000, lr=0.05,
                      momentum=0.9, init="he"), run, progress=False, download=False,
          log=lambda *a: None)
    return run / "best.npz"


@pytest.fixture(scope="session")
def predictor(checkpoint):
    return Predictor.from_checkpoint(checkpoint)


@pytest.fixture(scope="session")
def test_set():
    """The real resplit test split: 18,800 upright uint8 images, labels, 47 classes."""
    return load_split(require_resplit(), NAME, "test")


def run_main(capsys, *argv):
    """Run inference's main in-process: (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def write_mini_set(folder, test_set, n=1000, name="mini", labels=True, mapping=True):
    """The first n test images written the EMNIST way as NAME-test-*; returns the images path."""
    folder.mkdir(parents=True, exist_ok=True)
    images_path = folder / f"{name}-test-images-idx3-ubyte.gz"
    write_idx(images_path, test_set.images[:n].transpose(0, 2, 1))
    if labels:
        write_idx(folder / f"{name}-test-labels-idx1-ubyte.gz", test_set.labels[:n].astype(np.uint8))
    if mapping:
        shutil.copy(RESPLIT / f"{NAME}-mapping.txt", folder / f"{name}-mapping.txt")
    return images_path


def printed_accuracy(out):
    return float(re.search(r"^accuracy\s+([\d.]+)", out, re.M).group(1))


def assert_valid_png(path, size=None):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        assert size is None or image.size == size


def test_cli_evaluates_the_resplit_test_set(checkpoint, test_set, predictor):
    """`inference.py --input DATA_FOLDER` on all 18,800 real test images: prints accuracy, top-5
    accuracy, a 47-row per-class table with the mapping's characters and the most confused pairs;
    writes predictions.csv (one row per image, accuracy agreeing with the printout and with the
    Python API), confusion.png and errors.png beside the checkpoint, and says where."""
    result = subprocess.run([sys.executable, "inference.py", "--input", str(RESPLIT),
                             "--checkpoint", str(checkpoint)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    accuracy = printed_accuracy(out)
    top5 = float(re.search(r"^top-5 accuracy\s+([\d.]+)", out, re.M).group(1))
    assert accuracy <= top5 <= 1
    table = re.findall(r"^\s+(\S+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(\d+)$", out, re.M)
    assert [c for c, _ in table] == list(test_set.classes)
    assert sum(int(s) for _, s in table) == 18800
    assert "most confused" in out and re.search(r"^  \S -> \S: \d+ \(", out, re.M)
    out_dir = checkpoint.parent / f"inference-{NAME}-test"
    assert str(out_dir) in out
    with open(out_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == CSV_COLUMNS and len(rows) == 18800
    assert [r["true"] for r in rows[:50]] == [test_set.classes[k] for k in test_set.labels[:50]]
    assert all(len(r["top_k"].split()) == 5 and r["top_k"].split()[0] == r["predicted"] for r in rows)
    csv_accuracy = np.mean([r["correct"] == "True" for r in rows])
    api_accuracy = np.mean(predictor.predict(test_set.images) == test_set.labels)
    assert abs(csv_accuracy - accuracy) < 1e-4 and abs(api_accuracy - accuracy) < 1e-4
    assert_valid_png(out_dir / "confusion.png")
    assert_valid_png(out_dir / "errors.png")


def test_predictor_api(predictor, test_set):
    """Predictor: classes from the checkpoint; predict / predict_proba / predict_chars / top_k agree
    with each other; a (28, 28) image is a batch of one; float input in [0, 1] gives the same
    answers as uint8; k outside 1..K is refused."""
    images, labels = test_set.images[:500], test_set.labels[:500]
    assert predictor.classes == test_set.classes
    proba = predictor.predict_proba(images)
    assert proba.shape == (500, 47) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    predicted = predictor.predict(images)
    assert np.array_equal(predicted, proba.argmax(axis=1))
    assert np.mean(predicted == labels) > 0.5  # trained briefly; chance is about 0.05
    assert predictor.predict_chars(images) == [test_set.classes[k] for k in predicted]
    indices, probs = predictor.top_k(images, 3)
    assert indices.shape == probs.shape == (500, 3)
    assert np.array_equal(indices[:, 0], predicted) and np.all(np.diff(probs, axis=1) <= 0)
    assert np.allclose(probs, np.take_along_axis(proba, indices, axis=1))
    assert predictor.predict_chars(images[7]) == [predictor.classes[predicted[7]]]
    assert np.array_equal(predictor.predict(images / 255.0), predicted)
    for k in (0, 48):
        with pytest.raises(ValueError, match="k must be in 1..47"):
            predictor.top_k(images, k)


@pytest.mark.parametrize("tta, calls_per_thread", [(False, 50), (True, 10)])
def test_a_predictor_shared_by_threads_answers_as_it_does_serially(tta, calls_per_thread):
    """4 threads x 50 calls on different batches of the shipped sample give bitwise the answers of
    the same calls made one at a time (the replicas' caches and scratch buffers are shared: without
    the lock, about 1 call in 20 came back wrong). With test-time augmentation too (fewer calls:
    each is three forward passes)."""
    sample = load_sample()
    rng = np.random.default_rng(0)
    batches = [sample.images[rng.choice(len(sample.images), int(rng.integers(1, 65)), replace=False)]
               for _ in range(4 * calls_per_thread)]
    with Predictor.from_checkpoint(BUNDLED_MODEL, threads=2, tta=tta) as predictor:
        serial = [predictor.predict_proba(batch) for batch in batches]
        start = threading.Barrier(4)

        def calls(t):  # thread t makes calls t, t + 4, t + 8, ...
            start.wait()
            return {i: predictor.predict_proba(batches[i]) for i in range(t, len(batches), 4)}

        with ThreadPoolExecutor(4) as pool:
            shared = {i: p for answers in pool.map(calls, range(4)) for i, p in answers.items()}
    assert sorted(shared) == list(range(len(batches)))
    wrong = [i for i, a in enumerate(serial) if not np.array_equal(a, shared[i])]
    assert not wrong, f"{len(wrong)} of {len(batches)} calls differ from serial ones, e.g. call {wrong[0]}"


@pytest.mark.parametrize("array, fault", [
    (np.zeros((2, 32, 32), np.uint8), r"shape \(2, 32, 32\), expected \(N, 28, 28\) or \(28, 28\)"),
    (np.zeros(784, np.uint8), r"shape \(784,\)"),
    (np.zeros((2, 28, 28), np.int64), "dtype int64, expected uint8 .* or float"),
    (np.full((28, 28), 2.0), r"float values must be in \[0, 1\], found 2..2"),
    (np.full((28, 28), np.nan), "must be finite, found NaN or infinity"),
])
def test_as_images_refuses_bad_arrays(array, fault):
    """Arrays of the wrong shape or dtype, or floats outside [0, 1], get an InputError that says
    what was found and what is expected."""
    with pytest.raises(InputError, match=fault):
        as_images(array)


def test_metrics_math():
    """Confusion matrix (np.bincount), per-class precision / recall / F1 with 0 where undefined,
    top-k accuracy and most confused pairs, on a small worked example."""
    labels, predicted = np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2])
    confusion = confusion_matrix(labels, predicted, 4)
    assert confusion.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    precision, recall, f1, support = per_class_metrics(confusion)
    assert np.allclose(precision, [1, 0.5, 0.5, 0]) and np.allclose(recall, [2 / 3, 0.5, 1, 0])
    assert np.allclose(f1, [0.8, 0.5, 2 / 3, 0]) and support.tolist() == [3, 2, 1, 0]
    assert most_confused(confusion) == [(0, 1, 1), (1, 2, 1)]
    proba = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    assert top_k_accuracy(proba, np.array([1, 0, 0]), 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(proba, np.array([1, 0, 0]), 2) == pytest.approx(2 / 3)
    report = format_report(confusion, ("a", "b", "c", "d"), 0.9, 2)
    assert "accuracy        0.6667  (4 of 6)" in report and "top-2 accuracy  0.9000" in report
    assert "a -> b: 1 (33.3%)" in report and "macro avg     0.6667  0.7222" in report


def test_idx_file_with_labels_and_mapping_beside_it(tmp_path, capsys, checkpoint, test_set, predictor):
    """An IDX images file as --input finds its labels and mapping beside it: the report's accuracy
    is the API's on the same images; --output writes the same predictions as JSON. The folder form
    with --dataset and --split reads the same file."""
    images_path = write_mini_set(tmp_path / "data", test_set)
    status, out, _ = run_main(capsys, "--input", images_path, "--checkpoint", checkpoint,
                              "--output-dir", tmp_path / "report", "--output", tmp_path / "p.json")
    assert status == 0
    expected = np.mean(predictor.predict(test_set.images[:1000]) == test_set.labels[:1000])
    assert printed_accuracy(out) == pytest.approx(expected, abs=1e-4)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "confusion.png", "errors.png", "predictions.csv"]
    records = json.loads((tmp_path / "p.json").read_text())
    assert len(records) == 1000 and list(records[0]) == CSV_COLUMNS
    assert records[3]["predicted"] == predictor.predict_chars(test_set.images[3])[0]
    status, out2, _ = run_main(capsys, "--input", tmp_path / "data", "--dataset", "mini", "--split",
                               "test", "--checkpoint", checkpoint, "--output-dir", tmp_path / "r2")
    assert status == 0 and printed_accuracy(out2) == printed_accuracy(out)


def test_tta_on_a_test_set(tmp_path, capsys, checkpoint, test_set):
    """--tta: the first line says so, and the report's accuracy is that of the API's predictor with
    test-time augmentation (probabilities averaged over rotated views, tests/test_tta.py)."""
    images_path = write_mini_set(tmp_path / "data", test_set)
    status, out, _ = run_main(capsys, "--input", images_path, "--checkpoint", checkpoint, "--tta",
                              "--output-dir", tmp_path / "report")
    assert status == 0 and "test-time augmentation)" in out.splitlines()[0]
    tta = Predictor.from_checkpoint(checkpoint, tta=True)
    expected = np.mean(tta.predict(test_set.images[:1000]) == test_set.labels[:1000])
    assert printed_accuracy(out) == pytest.approx(expected, abs=1e-4)


def test_idx_file_without_labels_predicts_only(tmp_path, capsys, checkpoint, test_set):
    """Without a labels file beside the images, predictions are written and no accuracy claimed."""
    images_path = write_mini_set(tmp_path, test_set, n=200, labels=False)
    status, out, _ = run_main(capsys, "--input", images_path, "--checkpoint", checkpoint,
                              "--output-dir", tmp_path / "report")
    assert status == 0 and "no labels file" in out and "accuracy " not in out
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["predictions.csv"]
    with open(tmp_path / "report" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 200 and "true" not in rows[0]


def redraw(image, index):
    """A 28x28 EMNIST image as a user's file would hold it: upscaled 3x to 84x84, off-centre on a
    120x180 canvas (position varies), every other one dark ink on light paper."""
    big = np.asarray(Image.fromarray(image).resize((84, 84), Image.Resampling.BICUBIC))
    canvas = np.zeros((120, 180), np.uint8)
    top, left = 6 + index % 20, 50 + index % 40
    canvas[top:top + 84, left:left + 84] = big
    return Image.fromarray(255 - canvas if index % 2 == 0 else canvas)


def test_image_files_come_back_to_their_labels(tmp_path, capsys, checkpoint, predictor, test_set):
    """300 real test images written as PNG, JPEG and BMP files (both polarities, off-centre,
    larger than 28x28) and read back through the CLI are classified about as accurately as the
    same images given as arrays (measured: 77.3% vs 78.0%, 95% identical answers), for each
    polarity; --save-preprocessed writes the 28x28 inputs the model saw."""
    picks = np.linspace(0, len(test_set.labels) - 1, 300).astype(int)
    images, labels = test_set.images[picks], test_set.labels[picks]
    folder = tmp_path / "photos"
    folder.mkdir()
    for n, image in enumerate(images):
        redraw(image, n).save(folder / f"{n:03d}{('.png', '.jpg', '.bmp')[n % 3]}", quality=92)
    status, out, err = run_main(capsys, "--input", folder, "--checkpoint", checkpoint,
                                "--output", tmp_path / "p.csv", "--save-preprocessed", tmp_path / "seen")
    assert status == 0 and err == ""
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "predicted", "probability", "top_k", "top_k_probabilities"]
    from_files = np.array([predictor.classes.index(r["predicted"]) for r in rows])
    assert [int(Path(r["file"]).stem) for r in rows] == list(range(300))
    from_arrays = predictor.predict(images)
    assert np.mean(from_files == from_arrays) > 0.85
    for polarity in (0, 1):
        sel = np.arange(300) % 2 == polarity
        file_acc = np.mean(from_files[sel] == labels[sel])
        array_acc = np.mean(from_arrays[sel] == labels[sel])
        assert abs(file_acc - array_acc) < 0.08, (polarity, file_acc, array_acc)
    assert len(out.splitlines()) >= 300 and re.search(r"^\S+000\.png  \S   (\S:[\d.]+  ){4}\S:[\d.]+$",
                                                        out, re.M)
    seen = sorted((tmp_path / "seen").iterdir())
    assert len(seen) == 300 and seen[0].name == "000.png"
    assert_valid_png(seen[0], (28, 28))
    assert predictor.predict(np.asarray(Image.open(seen[5])))[0] == from_files[5]


def test_explain_writes_one_picture_per_image(tmp_path, capsys, checkpoint, test_set):
    """--explain DIR: one PNG per image file (named after it; the full name when two share a
    stem), showing input, top-k, saliency, filters and feature maps; a blank file is skipped."""
    for n, name in enumerate(("a.png", "a.jpg", "b.bmp")):
        redraw(test_set.images[n], n).save(tmp_path / name)
    Image.new("L", (50, 50), 255).save(tmp_path / "blank.png")
    status, out, err = run_main(capsys, "--input", tmp_path, "--checkpoint", checkpoint,
                                "--explain", tmp_path / "why")
    assert status == 0 and "blank.png: no ink" in err
    assert sorted(p.name for p in (tmp_path / "why").iterdir()) == ["a.jpg.png", "a.png.png", "b.png"]
    assert f"wrote 3 explanations (input, top-5, saliency, filters, feature maps) to {tmp_path / 'why'}" in out
    with Image.open(tmp_path / "why" / "b.png") as image:
        assert image.format == "PNG" and image.width > 800
    with pytest.raises(SystemExit) as exit_info:
        main(["--input", str(tmp_path), "--checkpoint", str(checkpoint), "--explain", "x", "--tta"])
    assert exit_info.value.code == 2 and "--tta and --explain do not go together" in capsys.readouterr().err


def test_predict_files_reports_errors_without_raising(tmp_path, predictor, test_set):
    """predict_files returns a result per path, in order: good files predicted, a corrupt file,
    a missing file and a blank page carry a one-line error naming the file."""
    redraw(test_set.images[0], 0).save(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("L", (50, 50), 255).save(tmp_path / "blank.png")
    paths = [tmp_path / n for n in ("good.png", "corrupt.png", "missing.jpg", "blank.png")]
    good, corrupt, missing, blank = predictor.predict_files(paths, k=3)
    assert good.error is None and len(good.top_k) == 3 and good.image.shape == (28, 28)
    assert good.char == predictor.predict_chars(good.image)[0]
    for result, fault in ((corrupt, "corrupt.png: "), (missing, "missing.jpg: cannot access"),
                          (blank, "blank.png: no ink")):
        assert fault in result.error and "\n" not in result.error
        assert result.char is None and result.image is None


def test_cli_skips_a_corrupt_image_among_good_ones(tmp_path, checkpoint, test_set):
    """End to end: an unreadable image and an empty file in a folder are each reported on their
    own stderr line and skipped; the good images are predicted and the exit status is 0."""
    for n in range(3):
        redraw(test_set.images[n], n).save(tmp_path / f"good{n}.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image extension: ignored in a folder")
    result = subprocess.run([sys.executable, "inference.py", "--input", str(tmp_path),
                             "--checkpoint", str(checkpoint)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"^\S+good\d\.png  \S ", result.stdout, re.M)) == 3
    assert re.search(r"^skipped: \S+broken\.jpg: ", result.stderr, re.M)
    assert re.search(r"^skipped: \S+empty\.png: empty file$", result.stderr, re.M)
    assert "predicted 3 of 5 files" in result.stderr and "Traceback" not in result.stderr


def test_nothing_processed_exits_non_zero(tmp_path, capsys, checkpoint):
    """When every image is bad (or a lone file is not an image) the exit status is 1."""
    (tmp_path / "a.png").write_bytes(b"garbage")
    Image.new("L", (40, 40), 0).save(tmp_path / "b.png")  # black page: no ink
    status, _, err = run_main(capsys, "--input", tmp_path, "--checkpoint", checkpoint)
    assert status == 1 and err.count("skipped: ") == 2 and "nothing could be predicted" in err
    (tmp_path / "c.txt").write_text("hello")
    status, _, err = run_main(capsys, "--input", tmp_path / "c.txt", "--checkpoint", checkpoint)
    assert status == 1 and "c.txt: not an image file" in err


def test_npy_arrays(tmp_path, capsys, checkpoint, predictor, test_set):
    """A .npy of uint8 (N, 28, 28), of one (28, 28) image, or of floats in [0, 1] is predicted like
    the same images through the API; --output writes CSV rows by index."""
    images = test_set.images[:20]
    np.save(tmp_path / "u8.npy", images)
    np.save(tmp_path / "one.npy", images[4])
    np.save(tmp_path / "f32.npy", (images / 255).astype(np.float32))
    expected = predictor.predict_chars(images)
    for name in ("u8", "f32"):
        status, out, _ = run_main(capsys, "--input", tmp_path / f"{name}.npy", "--checkpoint",
                                  checkpoint, "--output", tmp_path / f"{name}.csv")
        assert status == 0 and re.findall(r"^\d+  (\S)   ", out, re.M) == expected
        with open(tmp_path / f"{name}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["index"] for r in rows] == [str(i) for i in range(20)]
        assert [r["predicted"] for r in rows] == expected
    status, out, _ = run_main(capsys, "--input", tmp_path / "one.npy", "--checkpoint", checkpoint)
    assert status == 0 and re.findall(r"^0  (\S)   ", out, re.M) == [expected[4]]


@pytest.mark.parametrize("content, fault", [
    (np.zeros((3, 32, 32), np.uint8), r"bad\.npy: shape \(3, 32, 32\), expected \(N, 28, 28\)"),
    (np.zeros((3, 28, 28), np.int32), r"bad\.npy: dtype int32, expected uint8 \(0\.\.255\) or float"),
    (np.full((3, 28, 28), 255.0), r"bad\.npy: float values must be in \[0, 1\], found 255..255"),
    (np.array([{"x": 1}], dtype=object), r"bad\.npy: holds pickled Python objects, refused"),
    (np.zeros((0, 28, 28), np.uint8), r"bad\.npy: holds no images"),
    (b"just text", r"bad\.npy: not a \.npy file"),
    ("truncated", r"bad\.npy: corrupt \.npy file"),
])
def test_bad_npy_is_a_one_line_error(tmp_path, capsys, checkpoint, content, fault):
    """Wrong shape, wrong dtype, floats outside [0, 1], a pickled object array (never unpickled),
    no images, a non-.npy file or a truncated one: exit 1 with one stderr line naming the file."""
    path = tmp_path / "bad.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):  # "truncated"
        np.save(path, np.zeros((5, 28, 28), np.uint8))
        path.write_bytes(path.read_bytes()[:1000])
    else:
        np.save(path, content, allow_pickle=True)
    status, _, err = run_main(capsys, "--input", path, "--checkpoint", checkpoint)
    assert status == 1 and len(err.splitlines()) == 1 and re.search(fault, err), err


def test_not_a_checkpoint(tmp_path, capsys, test_set):
    """A text file, a zip that is not a tinynet checkpoint, or a missing file as --checkpoint:
    exit 1 with a one-line error naming it, no traceback."""
    np.save(tmp_path / "x.npy", test_set.images[:2])
    (tmp_path / "notes.npz").write_text("hello")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    for name, fault in (("notes.npz", "not a readable tinynet checkpoint"),
                        ("other.npz", "not a tinynet checkpoint"), ("gone.npz", "no such checkpoint")):
        status, _, err = run_main(capsys, "--input", tmp_path / "x.npy", "--checkpoint", tmp_path / name)
        assert status == 1 and len(err.splitlines()) == 1
        assert err.startswith(f"error: {tmp_path / name}: ") and fault in err


def test_checkpoint_that_does_not_match_the_data(tmp_path, capsys, checkpoint, test_set):
    """A 26-class checkpoint on the 47-class test set, and a 47-class checkpoint on data whose
    mapping names other characters: exit 1, one line saying what differs."""
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    architecture = {"name": "lenet", "num_classes": 26}
    save_checkpoint(tmp_path / "letters.npz", build_model(architecture), architecture, letters)
    status, _, err = run_main(capsys, "--input", RESPLIT, "--checkpoint", tmp_path / "letters.npz",
                              "--output-dir", tmp_path / "out")
    assert status == 1 and len(err.splitlines()) == 1
    assert "does not match the data: it has 26 classes but" in err and "maps 47" in err
    images_path = write_mini_set(tmp_path / "data", test_set, n=50)
    mapping = tmp_path / "data" / "mini-mapping.txt"
    mapping.write_text(mapping.read_text().replace("10 65", "10 64"))  # class 10: "@", not "A"
    status, _, err = run_main(capsys, "--input", images_path, "--checkpoint", checkpoint,
                              "--output-dir", tmp_path / "out")
    assert status == 1 and "its class 10 is 'A' but" in err and "maps 10 to '@'" in err


def test_default_checkpoint_is_the_latest_runs_best(tmp_path, capsys, checkpoint, test_set):
    """Without --checkpoint, the run under --runs-dir whose checkpoint was written last is used,
    its best.npz (last.npz when it has no best.npz yet)."""
    np.save(tmp_path / "x.npy", test_set.images[:2])
    runs = tmp_path / "runs"
    for run, name, age in (("old", "best.npz", 100), ("new", "best.npz", 10), ("new", "last.npz", 10)):
        (runs / run).mkdir(parents=True, exist_ok=True)
        shutil.copy(checkpoint, runs / run / name)
        os.utime(runs / run / name, (0, 1e9 - age))
    status, out, _ = run_main(capsys, "--input", tmp_path / "x.npy", "--runs-dir", runs)
    assert status == 0 and f"checkpoint {runs / 'new' / 'best.npz'} (47 classes)" in out
    (runs / "stopped").mkdir()
    shutil.copy(checkpoint, runs / "stopped" / "last.npz")  # newest; stopped before any best.npz
    status, out, _ = run_main(capsys, "--input", tmp_path / "x.npy", "--runs-dir", runs)
    assert status == 0 and f"checkpoint {runs / 'stopped' / 'last.npz'}" in out


@pytest.mark.parametrize("runs", ["empty", "missing"])
def test_no_runs_uses_the_bundled_model(tmp_path, capsys, test_set, runs):
    """With no trained run under --runs-dir, inference uses the model bundled with tinynet and
    says so."""
    np.save(tmp_path / "x.npy", test_set.images[:2])
    (tmp_path / "empty").mkdir()
    status, out, _ = run_main(capsys, "--input", tmp_path / "x.npy", "--runs-dir", tmp_path / runs)
    assert status == 0
    assert f"checkpoint {BUNDLED_MODEL} (47 classes): the model bundled with tinynet" in out


def test_the_bundled_model_writes_its_reports_under_the_runs_dir(tmp_path, capsys, test_set):
    """Evaluating a data set with the bundled model writes predictions.csv, confusion.png and
    errors.png under --runs-dir, never into the installed package beside the model."""
    images = write_mini_set(tmp_path / "data", test_set, n=200)
    before = sorted(BUNDLED_MODEL.parent.iterdir())
    status, out, _ = run_main(capsys, "--input", images, "--runs-dir", tmp_path / "runs")
    assert status == 0 and "the model bundled with tinynet" in out
    report = tmp_path / "runs" / "inference-mini-test"
    assert {p.name for p in report.iterdir()} == {"predictions.csv", "confusion.png", "errors.png"}
    assert sorted(BUNDLED_MODEL.parent.iterdir()) == before


@pytest.mark.parametrize("extra, fault", [
    (["--top-k", "0"], "--top-k: must be a positive integer"),
    (["--top-k", "48"], "--top-k: the checkpoint has only 47 classes"),
    (["--batch-size", "x"], "--batch-size: invalid positive_int value"),
    (["--output", "p.txt"], "--output: must end in .csv or .json"),
    (["--split", "val"], "--split: invalid choice"),
    (["--save-preprocessed", "seen"], "--save-preprocessed does not apply to"),
    (["--output-dir", "out"], "--output-dir does not apply to"),
    (["--dataset", "mini"], "--dataset does not apply to"),
    (["--explain", "why"], "--explain does not apply to"),
    (["--port", "8080"], "--port does not apply to"),
])
def test_bad_options_are_argparse_errors(tmp_path, capsys, checkpoint, test_set, extra, fault):
    """Wrong option values, and options that do not apply to the input kind (here a .npy), exit 2
    with argparse's usage message."""
    np.save(tmp_path / "x.npy", test_set.images[:2])
    with pytest.raises(SystemExit) as exit_info:
        main(["--input", str(tmp_path / "x.npy"), "--checkpoint", str(checkpoint), *extra])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("usage: ") and fault in err


def test_help_documents_every_option_and_the_exit_status(capsys):
    """--help describes every option, the three input kinds, the .npy format and the exit status."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for action in build_parser()._actions:
        assert action.help and all(s in out for s in action.option_strings)
    for text in ("exit status", "nothing could be predicted", "uint8 (0..255) or float (0.0..1.0)",
                 "dark ink on light paper or the reverse", "NAME-SPLIT-images-idx3-ubyte"):
        assert text in out
