"""Reliability: killed training runs and bad checkpoints lose nothing and never crash.

A training run killed with SIGKILL three times, once in the middle of a checkpoint write, then
resumed to the end with exactly the weights of an uninterrupted run (``bench/kill_resume.py`` with
explicit kills, as a subprocess); broken training states on resume; run folder problems; every
command line's ``--help`` and argument errors. Broken files of every kind are the fuzzer's
(tests/test_fuzz.py); the long runs: ``bench/kill_resume.py`` (dozens of kills; ``pytest -m slow``)
and ``TINYNET_FUZZ_CASES=1000 python3 -m pytest tests/test_fuzz.py``.
"""

import argparse
import importlib
import io
import json
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from conftest import options_without_help
from filebytes import build_zip, character, npy_bytes, zip_members

from tinynet.cli import download as download_cli
from tinynet.cli import infer as infer_cli
from tinynet.cli import main as main_cli
from tinynet.cli import train as train_cli
from tinynet.testing.datasets import write_toy_dataset
from tinynet import train

ROOT = Path(__file__).resolve().parents[1]
TRAIN_OPTIONS = ["--dataset", "tiny", "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9",
                 "--augment", "--dropout", "0.3", "--lr-schedule", "cosine", "--val-fraction", "0.2",
                 "--seed", "3", "--no-progress", "--no-download"]  # bench/kill_resume.py's


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """A tiny data set, an uninterrupted 3-epoch run on it, an image."""
    folder = tmp_path_factory.mktemp("seeds")
    data = write_toy_dataset(folder / "data", n_train=200, n_test=40)
    args = train_cli.build_parser().parse_args(TRAIN_OPTIONS + ["--data-dir", str(data), "--epochs", "3"])
    train(train_cli.config_from_args(args), folder / "reference", download=False, progress=False,
          log=lambda *a: None)
    character(40).save(folder / "char-L.png")
    return {"folder": folder, "data": data, "run": folder / "reference", "image": folder / "char-L.png",
            "checkpoint": (folder / "reference" / "last.npz").read_bytes()}


# ---------------------------------------------------------------------------------------------
# Killed and resumed training


def test_sigkill_during_training_and_checkpoint_writes_loses_nothing(seeds, tmp_path):
    """train.py killed with SIGKILL three times -- right as a checkpoint's temporary file appears
    (twice: the third write of a fresh run, when a last.npz exists, and the first write after a
    resume) and mid-epoch -- and resumed each time: every checkpoint on disk always loads, at
    most the interrupted epoch is redone, the stale temporary files are removed on resume, and the
    finished run equals the uninterrupted one bit for bit (weights, momentum, best.npz, history)."""
    proc = subprocess.run([sys.executable, "bench/kill_resume.py", "--epochs", "3", "--n-train", "200",
                           "--n-test", "40", "--plan", "write:2", "--plan", "training:0.2", "--plan", "write:0",
                           "--timeout", "300", "--json", str(tmp_path / "stats.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["failures"] == []
    assert stats["kills"] == 3
    assert stats["kills_during_checkpoint_write"] >= 1
    assert stats["max_completed_epochs_redone_per_kill"] <= 1
    assert stats["identical_to_uninterrupted_run"] is True


def copy_run(seeds, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(seeds["run"], run)
    return run


def rewrite_last(run, change):
    found = zip_members((run / "last.npz").read_bytes())
    meta = json.loads(str(np.load(io.BytesIO(found["metadata.npy"]))))
    replaced = change(meta)  # members to replace, or whatever the metadata edit returned
    found["metadata.npy"] = npy_bytes(np.array(json.dumps(meta)))
    if isinstance(replaced, dict) and all(str(k).endswith(".npy") for k in replaced):
        found.update(replaced)
    (run / "last.npz").write_bytes(build_zip(found))


def resume_error(run, capsys):
    code = train_cli.main(["--resume", str(run), "--no-progress", "--no-download"])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("change", [
    lambda m: m.pop("training"),
    lambda m: m.update(training="x"),
    lambda m: m["training"].update(epoch="2"),
    lambda m: m["training"].update(batch=-1),
    lambda m: m["training"].update(history=[1, 2, 3]),
    lambda m: m["training"].update(best_val_accuracy=None),
    lambda m: m.pop("rng_state"),
    lambda m: m["rng_state"].update(shuffle={"bit_generator": "MT19937"}),
    lambda m: {"extra.order.npy": npy_bytes(np.arange(160) + 0.5)},
    lambda m: {"extra.order.npy": npy_bytes(np.arange(160) + 10**6)},
], ids=["no-training", "training-not-a-dict", "epoch-str", "batch-negative", "history-not-records",
        "best-none", "no-rng-state", "wrong-rng", "order-float", "order-out-of-range"])
def test_resume_from_a_checkpoint_without_a_usable_training_state(seeds, tmp_path, capsys, change):
    """A last.npz that loads but whose training state is missing or wrong: one-line error, exit 1."""
    run = copy_run(seeds, tmp_path)
    rewrite_last(run, change)
    code, err = resume_error(run, capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert str(run / "last.npz") in err


def test_resume_with_a_corrupt_last_npz_is_one_line_from_train_py(seeds, tmp_path):
    """python3 train.py --resume RUN with a truncated last.npz: exit 1, `error: ...` on one line."""
    run = copy_run(seeds, tmp_path)
    (run / "last.npz").write_bytes((run / "last.npz").read_bytes()[:5000])
    proc = subprocess.run([sys.executable, "train.py", "--resume", str(run), "--no-progress", "--no-download"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {run / 'last.npz'}: ")


def test_resume_removes_stale_temporary_files_and_rewrites_the_history(seeds, tmp_path, capsys):
    """A kill can leave a half-written temporary file, and can come after last.npz was written but
    before metrics.jsonl: resuming removes the former and brings metrics.jsonl up to date."""
    run = copy_run(seeds, tmp_path)
    stale = run / ".tmp-abc12_89-last.npz"  # as tinynet.files.atomic names it: 8 random characters
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n")
    assert train_cli.main(["--resume", str(run), "--no-progress", "--no-download"]) == 0
    assert not stale.exists()
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_inference_with_a_broken_checkpoint_is_one_line(seeds, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(seeds["checkpoint"][:-100])
    code = infer_cli.main(["--input", str(seeds["image"]), "--checkpoint", str(bad)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith(f"error: {bad}: ") and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Before training starts: run folder problems are one clear line


def test_unwritable_run_folder_is_one_line_from_the_cli(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = train_cli.main(["--runs-dir", str(blocker), "--name", "run", "--no-download", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "run folder is not writable" in err
    assert err.startswith(f"error: {blocker / 'run'}: ") and "Traceback" not in err


def test_too_little_free_disk_is_one_line_from_the_cli(tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, (10 << 30) - (5 << 20), 5 << 20))
    code = train_cli.main(["--runs-dir", str(tmp_path), "--name", "run", "--no-download", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "only 5 MB free on this disk" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Every command line: --help explains each option; wrong values are argparse errors (exit 2)


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def captured_parser(monkeypatch, main):
    """The parser ``main([])`` builds (caught as it starts parsing)."""
    def capture(self, *args, **kwargs):
        raise _Captured(self)

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", capture)
        try:
            main([])
        except _Captured as c:
            return c.parser
    raise AssertionError(f"{main} did not parse its arguments")


def all_parsers(monkeypatch):
    """Every command line's parser: train.py, inference.py and each ``tinynet`` subcommand."""
    parsers = {"train.py": captured_parser(monkeypatch, train_cli.main),
               "inference.py": captured_parser(monkeypatch, infer_cli.main)}
    for name, (module, _) in main_cli.COMMANDS.items():
        command = importlib.import_module(f"tinynet.cli.{module}")
        parsers[f"tinynet {name}"] = captured_parser(
            monkeypatch, lambda argv, command=command, name=name: command.main(argv, prog=f"tinynet {name}"))
    for name, parser in list(parsers.items()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command, sub in action.choices.items():
                    parsers[f"{name} {command}"] = sub
    return parsers


def test_every_option_of_every_command_line_has_help(monkeypatch):
    """Each command line's --help lists every option with its help text."""
    parsers = all_parsers(monkeypatch)
    assert {"tinynet serve", "tinynet infer", "tinynet export", "tinynet download"} <= set(parsers)
    for name, parser in parsers.items():
        assert options_without_help(parser) == [], f"{name}: options without help"


def test_help_names_each_default_once(monkeypatch):
    """No "(default: None)", and no option whose help gives its default twice (train.py's recipe
    options name their value in every recipe instead)."""
    for name, parser in all_parsers(monkeypatch).items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS):
                continue
            text = formatter._expand_help(action)
            label = "/".join(action.option_strings) or action.dest
            assert "(default: None)" not in text, f"{name}: {label}: {text}"
            assert text.count("default") <= 1, f"{name}: {label} names its default twice: {text}"
    assert train_cli.from_recipe("lr") == "[original: 0.01, strong: 0.05, unseen: 0.05]"
    assert train_cli.from_recipe("nesterov") == "[original: off, strong: on, unseen: on]"


@pytest.mark.parametrize("main, argv, message", [
    (train_cli.main, ["--batch-size", "-3"], "must be a positive integer"),
    (infer_cli.main, ["--input", "x", "--top-k", "0"], "must be a positive integer"),
    (infer_cli.main, ["--input", "x", "--output", "out.txt"], "must end in .csv or .json"),
    (download_cli.main, ["--split", "validation"], "invalid choice"),
], ids=["train", "inference-top-k", "inference-output", "download-split"])
def test_wrong_values_are_argparse_errors(main, argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err and "Traceback" not in err


def test_the_tinynet_command_names_its_subcommands_and_refuses_unknown_ones(capsys):
    assert main_cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tinynet COMMAND") and all(f"  {c} " in out for c in main_cli.COMMANDS)
    assert main_cli.main([]) == 2 and "usage: tinynet" in capsys.readouterr().err
    assert main_cli.main(["dowload"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'dowload' (did you mean 'download'?)" in err and "Traceback" not in err
    for command in main_cli.COMMANDS:  # each subcommand's own --help, under its own name
        with pytest.raises(SystemExit) as info:
            main_cli.main([command, "--help"])
        assert info.value.code == 0 and capsys.readouterr().out.startswith(f"usage: tinynet {command} ")


# ---------------------------------------------------------------------------------------------
# The long runs (pytest -m slow)


@pytest.mark.slow
def test_kill_resume_script():
    proc = subprocess.run([sys.executable, "bench/kill_resume.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
