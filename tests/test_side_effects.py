"""tinynet leaves its user's process as it found it: importing every module, predicting with a
``Predictor`` and training a few steps change neither the matplotlib backend, nor the BLAS thread
limits, nor the SIGINT / SIGTERM handlers, nor the warnings filters, and leave no thread running;
``train`` works from a thread other than the main one. Checked in a fresh subprocess (a process
whose state nothing else has touched), which reports what it saw after each stage."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SCRIPT = r"""
import importlib, json, pkgutil, signal, sys, threading, warnings
import matplotlib, numpy as np, threadpoolctl

# The user's own state, set before tinynet is imported: handlers of their own, BLAS on 2 threads.
def on_int(signum, frame): pass
def on_term(signum, frame): pass
signal.signal(signal.SIGINT, on_int)
signal.signal(signal.SIGTERM, on_term)
threadpoolctl.threadpool_limits(2, user_api="blas")
mutations = []  # every change of the warnings filters (warnings calls this on each one)
_mutated = warnings._filters_mutated
warnings._filters_mutated = lambda: (mutations.append(1), _mutated())[1]

def changes():  # since the last snapshot
    n = len(mutations)
    mutations.clear()
    return n

def snapshot():
    return {"backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),  # unresolved
            "blas": sorted((i["internal_api"], i["num_threads"]) for i in threadpoolctl.threadpool_info()
                           if i["user_api"] == "blas"),
            "signals": [getattr(signal.getsignal(s), "__name__", repr(signal.getsignal(s)))
                        for s in (signal.SIGINT, signal.SIGTERM)],
            "warnings": repr(warnings.filters), "warnings_changes": changes(),
            "threads": sorted(t.name for t in threading.enumerate())}

seen = {"before": snapshot()}
import tinynet
for info in pkgutil.walk_packages(tinynet.__path__, "tinynet."):
    if info.name != "tinynet.__main__":
        importlib.import_module(info.name)
seen["import"] = snapshot()

from tinynet.predict.predictor import Predictor
from tinynet.nn.model import lenet
images = np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.uint8)
with Predictor(lenet(47, rng=np.random.default_rng(0)), [str(k) for k in range(47)], threads=2) as p:
    p.predict(images)
    during = threadpoolctl.threadpool_info()  # between calls: the user's limits again
seen["predict"] = snapshot()

from tinynet.predict.preprocess import preprocess_file
from PIL import Image
path = sys.argv[1] + "/ink.png"
Image.fromarray(np.pad(np.full((20, 8), 255, np.uint8), 10)).save(path)
preprocess_file(path)
seen["decode"] = snapshot()

sys.path.insert(0, sys.argv[2])
from tinynet.testing.datasets import write_toy_dataset
from tinynet import TrainConfig, train
config = TrainConfig(data_dir=str(write_toy_dataset(sys.argv[1] + "/data")), dataset="tiny", epochs=1,
                     batch_size=32, limit=96, threads=2)
train(config, sys.argv[1] + "/run", download=False, progress=False, log=lambda *a: None)
seen["train"] = snapshot()

outcome = {}
def in_a_thread():
    try:
        outcome["status"] = train(config, sys.argv[1] + "/run2", download=False, progress=False,
                                  log=lambda *a: None)["status"]
    except BaseException as e:
        outcome["status"] = f"{type(e).__name__}: {e}"
thread = threading.Thread(target=in_a_thread, name="not-main")
thread.start()
thread.join()
seen["thread"] = snapshot()
seen["thread_status"] = outcome["status"]
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("side-effects")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(folder), str(TESTS)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


STAGES = ("import", "predict", "decode", "train", "thread")


def stages(seen, key):
    return {stage: seen[stage][key] for stage in STAGES}


def test_the_check_sees_the_users_state(seen):
    """The subprocess really set what the tests below compare (so they cannot pass by seeing nothing)."""
    assert seen["before"]["signals"] == ["on_int", "on_term"]
    assert seen["before"]["blas"] and all(n == 2 for _, n in seen["before"]["blas"])
    assert seen["before"]["threads"] == ["MainThread"]


def test_matplotlib_backend_is_left_alone(seen):
    assert stages(seen, "backend") == dict.fromkeys(STAGES, seen["before"]["backend"])


def test_blas_thread_limits_are_restored(seen):
    assert stages(seen, "blas") == dict.fromkeys(STAGES, seen["before"]["blas"])


def test_signal_handlers_are_restored(seen):
    assert stages(seen, "signals") == dict.fromkeys(STAGES, seen["before"]["signals"])


def test_warnings_filters_are_left_as_they_were(seen):
    assert stages(seen, "warnings") == dict.fromkeys(STAGES, seen["before"]["warnings"])
    assert stages(seen, "warnings_changes") == dict.fromkeys(STAGES, 0)  # not even for a moment


def test_no_thread_is_left_running(seen):
    """Predictor and the trainer close their thread pools."""
    assert stages(seen, "threads") == dict.fromkeys(STAGES, ["MainThread"])


def test_train_works_from_a_thread_other_than_the_main_one(seen):
    assert seen["thread_status"] == "finished"
