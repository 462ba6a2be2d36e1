"""A run folder holds one run: a new run refuses a folder that holds another (only the command line
refused, and only when it saw a last.npz) unless asked to replace it, and then removes that run's
files and nothing else; and a run removes only the temporary files tinynet's own writes of its
files left behind, and only once it has started (every ``.tmp-*`` file of the folder was removed,
a user's too, even by a run that then failed to start)."""

import json

import numpy as np
import pytest

from tinynet import ArgumentError, Split, TrainConfig, Trainer, TrainingError, load_sample, train
from tinynet.cli.train import main as train_main
from tinynet.files.atomic import leftover_temporaries
from tinynet.testing.datasets import write_toy_dataset

CONFIG = TrainConfig(dataset="emnist-sample", epochs=1, batch_size=64, limit=128, val_fraction=0.1,
                     threads=1)


def quiet(*args):
    pass


def run_on_sample(run, config=CONFIG, **kwargs):
    return train_from(config, run, load_sample(), **kwargs)


def train_from(config, run, data, **kwargs):
    with Trainer(config, run, train_data=data, progress=False, log=quiet, **kwargs) as trainer:
        return trainer.fit()


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("leave", ["config.json", "last.npz"])
def test_a_new_run_refuses_a_folder_holding_another(tmp_path, leave):
    """Even a run that wrote only its config.json (killed in its first epoch) is a run: the folder
    is refused before any work, and left exactly as it was."""
    run = tmp_path / "run"
    run_on_sample(run)
    for name in {"config.json", "last.npz", "best.npz", "summary.json", "metrics.jsonl"} - {leave}:
        (run / name).unlink()
    before = contents(run)
    resume = "resume it \\(resume=True; train.py --resume\\), " if leave == "last.npz" else ""
    with pytest.raises(TrainingError, match=rf"run: already holds a run \({leave}\); {resume}replace it "
                                            rf"\(overwrite=True\), or train in another folder"):
        run_on_sample(run)
    with pytest.raises(TrainingError, match="already holds a run"):
        train(CONFIG, run, download=False, progress=False, log=quiet)
    assert contents(run) == before


def test_overwrite_replaces_the_runs_files_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    run_on_sample(run, TrainConfig(**{**vars(CONFIG), "epochs": 2}))
    (run / "steps.jsonl").write_text('{"step": 1}\n')  # as the live log leaves it
    (run / "notes.txt").write_text("mine")
    (run / "tensorboard").mkdir()
    summary = run_on_sample(run, overwrite=True)
    assert summary["epochs_done"] == 1
    records = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in records] == [1]  # not the replaced run's 2 epochs
    assert json.loads((run / "config.json").read_text())["epochs"] == 1
    assert not (run / "steps.jsonl").exists()
    assert (run / "notes.txt").read_text() == "mine" and (run / "tensorboard").is_dir()


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(ArgumentError, match="not both"):
        Trainer(CONFIG, tmp_path / "run", resume=True, overwrite=True, train_data=load_sample(),
                progress=False, log=quiet)


def test_only_tinynets_own_leftovers_are_removed_and_only_once_the_run_starts(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # what writes killed before their rename leave (atomic_write's names), and files of the user's
    leftovers = [run / ".tmp-k1ll3d_x-last.npz", run / ".tmp-abcdefgh-best.npz",
                 run / ".tmp-0123_567-metrics.jsonl"]
    users = [run / ".tmp-notes", run / ".tmp-abcdefgh-mydata.csv", run / ".tmp-abc-last.npz", run / "mine.txt"]
    for path in leftovers + users:
        path.write_text("x")
    assert leftover_temporaries(run, ["last.npz", "best.npz", "metrics.jsonl"]) == sorted(leftovers)

    sample = load_sample()
    broken = Split(sample.images, np.full(len(sample.labels), 47), sample.classes, sample.source)
    with pytest.raises(TrainingError, match="label 47 is outside"):
        train_from(CONFIG, run, broken)  # cannot start: touches nothing
    assert all(p.exists() for p in leftovers + users)

    train_from(CONFIG, run, sample)
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in users)


def test_the_command_line_refuses_a_folder_holding_a_config_json(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "data")
    (tmp_path / "runs" / "old").mkdir(parents=True)
    (tmp_path / "runs" / "old" / "config.json").write_text(json.dumps(vars(CONFIG)))
    with pytest.raises(SystemExit) as exit_status:
        train_main(["--data-dir", str(data), "--dataset", "tiny", "--runs-dir", str(tmp_path / "runs"),
                    "--name", "old", "--epochs", "1", "--no-progress", "--no-download"])
    assert exit_status.value.code == 2
    assert "old already holds a run; use another --name" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs" / "old").iterdir()) == ["config.json"]
