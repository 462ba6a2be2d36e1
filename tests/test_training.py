"""The training loop: repeatable, resumable (also after Ctrl-C), and safe when the loss diverges.

These tests train on a tiny synthetic EMNIST-format dataset written to a temporary folder, so they
run anywhere in seconds; learning real characters (the sample shipped with tinynet) is tested in
test_model.py and, for docs/minimal_train.py, at the end of this file.
"""

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import options_without_help
from tinynet.files.checkpoint import load_checkpoint
from tinynet.cli.train import build_parser
from tinynet.cli.train import main as train_main
from tinynet.datasets.idx import DataError
from tinynet import TrainConfig, TrainingError, train
from tinynet.training.runfolder import check_run_dir
from tinynet.testing.datasets import write_sample_dataset, write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(tmp_path):
    return TrainConfig(data_dir=str(write_toy_dataset(tmp_path / "data")), dataset="tiny", epochs=2,
                       batch_size=32, lr=0.05, momentum=0.9, augment=True, dropout=0.3,
                       lr_schedule="cosine", val_fraction=0.2, seed=3)


def quiet(*args):
    pass


def weights(path):
    model = load_checkpoint(path)[0]
    return model.state_dict()


def test_run_folder_contents(tiny, tmp_path):
    """A run writes its configuration, one metrics record per epoch, curves, checkpoints, a summary
    and, at the end, a picture of conv1's filters."""
    result = train(tiny, tmp_path / "run", download=False, progress=False, log=quiet)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "curves.png", "last.npz",
                                              "best.npz", "summary.json", "filters.png"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert set(records[0]) >= {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}
    assert result["status"] == "finished" and 0 <= result["test_accuracy"] <= 1
    for picture in ("curves.png", "filters.png"):
        assert (run / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = load_checkpoint(run / "last.npz")[1]
    assert meta["training"]["epoch"] == 2 and meta["classes"] == list("ABCDE")


def test_run_without_validation_split(tiny, tmp_path):
    """--val-fraction 0 trains on every training image: each epoch's line says there is no
    validation split (not "val loss nan"), best.npz is the last epoch's weights, and the curves
    are still drawn."""
    lines = []
    train(replace(tiny, val_fraction=0.0), tmp_path / "run", download=False, progress=False,
          log=lines.append)
    assert "training on 600 images" in lines[0] and "validating on 0," in lines[0]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("| no validation split |" in line and "nan" not in line for line in epochs)
    best, last = weights(tmp_path / "run" / "best.npz"), weights(tmp_path / "run" / "last.npz")
    assert all(np.array_equal(best[k], last[k]) for k in last)
    assert (tmp_path / "run" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_weights(tiny, tmp_path):
    """--seed makes a run repeatable: two runs with the same configuration end with equal weights."""
    train(tiny, tmp_path / "a", download=False, progress=False, log=quiet)
    train(tiny, tmp_path / "b", download=False, progress=False, log=quiet)
    a, b = weights(tmp_path / "a" / "last.npz"), weights(tmp_path / "b" / "last.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_equals_straight_run(tiny, tmp_path):
    """2 epochs straight == 1 epoch, then resume for the 2nd: the checkpoint carries the weights,
    momentum, step count and every random generator's state, so nothing is replayed differently.
    (A constant learning rate here, because a schedule's length depends on --epochs; the Ctrl-C
    test below resumes a cosine schedule mid-epoch.)"""
    tiny = replace(tiny, lr_schedule="constant")
    train(tiny, tmp_path / "straight", download=False, progress=False, log=quiet)
    train(replace(tiny, epochs=1), tmp_path / "split", download=False, progress=False, log=quiet)
    train(replace(tiny, epochs=2), tmp_path / "split", resume=True, download=False, progress=False, log=quiet)
    a, b = weights(tmp_path / "straight" / "last.npz"), weights(tmp_path / "split" / "last.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_ctrl_c_saves_and_resume_finishes_the_same_run(tiny, tmp_path):
    """Ctrl-C (SIGINT) stops at the next batch, saves last.npz mid-epoch and prints the resume
    command; resuming finishes with exactly the weights of an uninterrupted run."""
    config = replace(tiny, epochs=3)
    train(config, tmp_path / "straight", download=False, progress=False, log=quiet)

    run = tmp_path / "interrupted"
    args = [sys.executable, "train.py", "--data-dir", config.data_dir, "--dataset", "tiny",
            "--epochs", "3", "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9", "--augment",
            "--dropout", "0.3", "--lr-schedule", "cosine", "--val-fraction", "0.2", "--seed", "3",
            "--runs-dir", str(tmp_path), "--name", "interrupted", "--no-progress", "--no-download"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # wait until epoch 1 is done, then interrupt during epoch 2
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert f"Resume with: python3 train.py --resume {run}" in out
    meta = load_checkpoint(run / "last.npz")[1]
    assert meta["training"]["batch"] > 0 or meta["training"]["epoch"] >= 1  # saved where it stopped

    assert train_main(["--resume", str(run), "--no-progress"]) == 0
    a, b = weights(tmp_path / "straight" / "last.npz"), weights(run / "last.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


class Recorder:
    """A callback that keeps every event it sees (``train(..., callbacks=[...])``)."""

    def __init__(self):
        self.events = []

    def on_start(self, trainer):
        self.events.append(("start", trainer.state["step"], len(trainer.val_labels), trainer.total_steps))

    def on_step(self, trainer, record):
        self.events.append(("step", record))

    def on_epoch(self, trainer, record):
        self.events.append(("epoch", record["epoch"]))

    def on_end(self, trainer, summary):
        self.events.append(("end", summary["status"]))


class Broken:
    def on_step(self, trainer, record):
        raise OSError("disk full")


def test_callbacks_see_every_step_and_epoch_and_a_broken_one_changes_nothing(tiny, tmp_path):
    """Callbacks observe start, each step, each epoch and the end, in order; one that raises is
    reported once and dropped, and the run's weights are bitwise those of a run without it."""
    seen, lines = Recorder(), []
    train(tiny, tmp_path / "a", download=False, progress=False, log=lines.append,
          callbacks=[Broken(), seen])
    train(tiny, tmp_path / "b", download=False, progress=False, log=quiet)
    steps = [e[1] for e in seen.events if e[0] == "step"]
    per_epoch = len(steps) // 2
    assert seen.events[0] == ("start", 0, 120, 2 * per_epoch) and seen.events[-1] == ("end", "finished")
    assert [e for e in seen.events if e[0] == "epoch"] == [("epoch", 1), ("epoch", 2)]
    assert seen.events.index(("epoch", 1)) == 1 + per_epoch  # after epoch 1's last step
    assert [s["step"] for s in steps] == list(range(1, 2 * per_epoch + 1))
    assert steps[0]["epoch"] == 1 and steps[0]["batch"] == 1 and steps[0]["images"] == 32
    assert all(np.isfinite(s["loss"]) and 0 <= s["accuracy"] <= 1 and s["lr"] > 0 for s in steps)
    assert sum("Broken.on_step failed (OSError: disk full)" in line for line in lines) == 1
    a, b = weights(tmp_path / "a" / "last.npz"), weights(tmp_path / "b" / "last.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_diverging_loss_stops_and_keeps_last_good_checkpoint(tiny, tmp_path):
    """A NaN or infinite loss stops the run with a clear message; last.npz stays the good one."""
    run = tmp_path / "run"
    train(replace(tiny, epochs=1), run, download=False, progress=False, log=quiet)
    good = weights(run / "last.npz")
    config = json.loads((run / "config.json").read_text())
    config["lr"] = 1e30  # the next update overflows the weights
    (run / "config.json").write_text(json.dumps(config))
    seen = Recorder()
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) .* training diverged; the last good "
                                            r"checkpoint .*last.npz \(epoch 1\) is kept"):
        train(replace(tiny, epochs=2), run, resume=True, download=False, progress=False, log=quiet,
              callbacks=[seen])
    assert seen.events[-1] == ("end", "failed")
    kept = weights(run / "last.npz")
    assert all(np.array_equal(good[k], kept[k]) for k in good)


def test_an_absurd_learning_rate_stops_at_that_step_and_last_npz_stays_loadable(tiny, tmp_path):
    """With lr = 1e300, ``lr * g`` overflows float32: the next update makes the weights infinite
    (NaN where a gradient is 0) while that step's loss, computed before the update, is still
    finite. Training stops at that very step, naming it and the weights, and never reports it as
    done; with one step per epoch, that step also ends an epoch, whose last.npz would otherwise
    hold the infinite weights (unloadable) in place of the good one."""
    run = tmp_path / "run"
    one_step_epochs = replace(tiny, epochs=1, limit=tiny.batch_size)  # the bad step ends epoch 2
    train(one_step_epochs, run, download=False, progress=False, log=quiet)
    good = weights(run / "last.npz")
    config = json.loads((run / "config.json").read_text())
    config["lr"] = 1e300
    (run / "config.json").write_text(json.dumps(config))
    seen = Recorder()
    with pytest.raises(TrainingError) as caught:
        train(replace(one_step_epochs, epochs=3), run, resume=True, download=False, progress=False,
              log=quiet, callbacks=[seen])
    assert re.fullmatch(r"weights \(all\) became NaN or infinite at epoch 2, batch 1 \(step 2\): "
                        r"training diverged; the last good checkpoint .*last\.npz \(epoch 1\) is kept\. "
                        r"Try a lower --lr\.", str(caught.value)), str(caught.value)
    # (not the loss: it was computed before the update, still finite; nor the gradients)
    assert [e[0] for e in seen.events] == ["start", "end"] and seen.events[-1] == ("end", "failed")
    kept = weights(run / "last.npz")  # loads: its weights are finite
    assert all(np.array_equal(good[k], kept[k]) for k in good)
    load_checkpoint(run / "best.npz")


def test_nan_weights_hidden_from_the_loss_still_stop_training(tiny, tmp_path):
    """conv1's weights all NaN: the fused ReLU + max-pool may pass over the NaN, so the logits and
    the loss can stay finite; the weight check stops the next step anyway, naming conv1.W."""
    from tinynet import Trainer

    run = tmp_path / "run"
    train(replace(tiny, epochs=1), run, download=False, progress=False, log=quiet)
    good = weights(run / "last.npz")
    with Trainer(replace(tiny, epochs=2), run, resume=True, download=False, progress=False,
                 log=quiet) as trainer:
        trainer.model.layers[0].params["W"][...] = np.nan
        with pytest.raises(TrainingError, match=r"weights \(conv1\.W(, [\w.]+)*\)"
                                                r".* became NaN or infinite at epoch 2, batch 1 \(step \d+\): training diverged"):
            trainer.step()
        with pytest.raises(Exception, match="NaN or infinite"):  # and no checkpoint takes them
            trainer.save_checkpoint(run / "last.npz")
    kept = weights(run / "last.npz")
    assert all(np.array_equal(good[k], kept[k]) for k in good)


@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf, "inf-inf", "overflow"])
def test_all_finite_finds_any_non_finite_value_and_only_those(poison):
    """The cheap check (a dot product of each array with itself) misses nothing, whatever the
    value and wherever it is, and a false alarm (squares of huge finite values overflow) is
    answered by the exact check."""
    from tinynet.training.divergence import all_finite

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in ((20, 1, 5, 5), (20,), (800, 500))]
    assert all_finite(arrays)
    for i, a in enumerate(arrays):
        for where in (0, a.size // 2, a.size - 1):
            copy = [b.copy() for b in arrays]
            flat = copy[i].reshape(-1)  # a view: writing it writes copy[i]
            if poison == "inf-inf":
                flat[where], flat[where - 1] = np.inf, -np.inf
            elif poison == "overflow":  # finite: 1e30 squared overflows float32
                flat[where] = 1e30
            else:
                flat[where] = poison
            assert all_finite(copy) is (poison == "overflow"), (poison, a.shape, where)


def test_unwritable_run_folder_is_refused_before_training(tmp_path):
    """A run folder that cannot be written is a clear error up front, not a crash after an hour."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(TrainingError, match="run folder is not writable"):
        check_run_dir(blocker / "run")


def test_too_little_free_disk_is_refused(tmp_path):
    """Training needs room for checkpoints; with less free space than required it does not start."""
    with pytest.raises(TrainingError, match="MB free on this disk"):
        check_run_dir(tmp_path, min_free_bytes=2**62)


def test_missing_data_is_one_line_error_without_traceback(tmp_path, capsys):
    """train.py on an empty data folder with --no-download says which files are missing, exit 1,
    and leaves no empty run folder behind (nor the runs folder it had to create)."""
    (tmp_path / "data").mkdir()
    code = train_main(["--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"),
                       "--no-download", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "emnist-balanced-train-images-idx3-ubyte" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_failed_start_keeps_a_run_folder_that_was_there(tmp_path):
    """Only folders this run created are removed: an existing (even empty) run folder stays."""
    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    with pytest.raises(DataError):
        train(TrainConfig(data_dir=str(tmp_path)), run, download=False, progress=False, log=quiet)
    assert run.is_dir()


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "must be a positive integer"),
    (["--lr", "-1"], "must be a finite number > 0"),
    (["--val-fraction", "1.5"], "must be in [0, 1)"),
    (["--lr-schedule", "linear"], "invalid choice"),
    (["--nesterov"], "--nesterov needs --momentum > 0"),
])
def test_bad_options_get_argparse_errors(argv, message, capsys):
    """Wrong values are rejected by the argument parser (exit 2) with a message naming the option."""
    with pytest.raises(SystemExit) as exit_info:
        train_main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_describes_every_option():
    """train.py --help lists every option with its own help text."""
    assert options_without_help(build_parser()) == []


def test_the_minimal_example_learns_on_real_data(tmp_path):
    """docs/minimal_train.py (train_step and the data loader, nothing else) on real characters: the
    sample shipped with tinynet split into 3,008 training and 752 test images (so this runs on any
    clone). 80 steps lift test accuracy far above chance (1/47, the classes being equal; measured 0.53)."""
    data = write_sample_dataset(tmp_path / "data")
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "minimal_train.py"), "--data-dir", str(data),
                           "--dataset", "sample", "--steps", "80", "--test-images", "500"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    accuracy = float(re.search(r"test accuracy ([0-9.]+) on 500 images", proc.stdout).group(1))
    assert accuracy > 0.2, proc.stdout
