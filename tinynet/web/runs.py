"""Reading run folders safely while they are being written: what the training page's server
(``tinynet.web.watch``) answers. Nothing here writes, and nothing raises for a damaged file: a
missing, truncated or corrupt file comes back as a ``problem`` (one line) beside what could be read.
The files are read through a cache (``filecache``): a file is read again only when it changed.

A run is a folder directly under the runs folder (no deeper, no hidden names) holding a
``config.json``, reached without leaving the runs folder (a symbolic link pointing elsewhere is not
a run). Its status, in this order:

1. ``status.json`` (written by ``tinynet.training.runlog.Recorder``) says ``finished``, ``stopped`` or
   ``failed``: that.
2. It says ``running``: ``stopped`` when the process that wrote it is gone (same host, process id
   no longer alive), or when nothing in the folder changed for :data:`STALE_SECONDS`
   (another host's run, or a process stuck for that long); else ``running``.
3. No ``status.json`` (a run trained without ``--watch``): ``summary.json``'s status
   (``finished``; ``interrupted`` reads as ``stopped``); without one, ``running`` when a file
   changed within :data:`STALE_SECONDS`, else ``stopped``.
"""

import os
import re
import socket
import time
from pathlib import Path

from ..training.runlog import END_STATUS, SNAPSHOT_FILE, STATUS_FILE, STEPS_FILE
from .filecache import FileCache

STALE_SECONDS = 600  # a "running" run silent for this long has stopped
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=,@-]{0,199}")
LIVE_FILES = ("metrics.jsonl", STEPS_FILE, SNAPSHOT_FILE, STATUS_FILE, "last.npz")


class Runs:
    """The runs under ``root``, read through a :class:`FileCache` that re-reads a file only when its
    size, modification time or inode changed (an appended ``steps.jsonl`` is read from where it was
    left), so polling a long run costs little. Safe to share between threads."""

    def __init__(self, root):
        self.root = Path(root)
        self.real_root = Path(os.path.realpath(self.root))
        self.files = FileCache()

    # -- finding runs, safely

    def names(self):
        """The runs' names, sorted (none when the runs folder is missing)."""
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError:
            return []
        return [e.name for e in entries if self.folder(e.name) is not None]

    def folder(self, name):
        """The real path of run ``name``, or None: not a run name, not directly under the runs
        folder once links are resolved, or no ``config.json`` there."""
        if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or name in (".", ".."):
            return None
        real = Path(os.path.realpath(self.root / name))
        if real.parent != self.real_root or not (real / "config.json").is_file():
            return None
        return real

    def file(self, folder, name):
        """``folder / name`` unless it is a link leading out of the run folder (then None)."""
        path = folder / name
        return path if Path(os.path.realpath(path)).parent == folder else None

    # -- reading the run's files

    def read_json(self, folder, name):
        """``(value or None, problem or None)`` of a JSON file of the run (:meth:`FileCache.read_json`)."""
        path = self.file(folder, name)
        if path is None:
            return None, f"{name} is a link out of the run folder"
        return self.files.read_json(path, name)

    def read_jsonl(self, folder, name, key_field=None):
        """``(records, problems)`` of a JSON-lines file of the run (:meth:`FileCache.read_jsonl`):
        the records that parse as JSON objects, read incrementally; with ``key_field``, a resumed
        run's repeated records replace the earlier ones."""
        path = self.file(folder, name)
        if path is None:
            return [], [f"{name} is a link out of the run folder"]
        return self.files.read_jsonl(path, name, key_field)

    # -- what the page asks for

    def status(self, folder):
        """``(status, problems)``: running, finished, failed or stopped (see the module docstring)."""
        recorded, problem = self.read_json(folder, STATUS_FILE)
        problems = [problem] if problem else []
        if isinstance(recorded, dict) and recorded.get("status") in ("finished", "stopped", "failed"):
            return recorded["status"], problems
        quiet = time.time() - self.updated(folder) > STALE_SECONDS
        if isinstance(recorded, dict) and recorded.get("status") == "running":
            pid = recorded.get("pid")
            if recorded.get("host") == socket.gethostname() and type(pid) is int and not alive(pid):
                return "stopped", problems + ["the training process is gone"]
            return ("stopped" if quiet else "running"), problems
        summary, problem = self.read_json(folder, "summary.json")
        if problem:
            problems.append(problem)
        if isinstance(summary, dict) and "status" in summary:
            return END_STATUS.get(summary["status"], "stopped"), problems
        return ("stopped" if quiet else "running"), problems

    def updated(self, folder):
        """The latest modification time (s since the epoch) of the run's files (0 if none)."""
        times = [0.0]
        for name in LIVE_FILES:
            try:
                times.append(os.stat(folder / name).st_mtime)
            except OSError:
                pass
        return max(times)

    def summary(self, name):
        """A run's line in ``GET /api/runs``, or None when ``name`` is not a run."""
        folder = self.folder(name)
        if folder is None:
            return None
        config, problem = self.read_json(folder, "config.json")
        problems = [problem] if problem else []
        config = config if isinstance(config, dict) else {}
        status, more = self.status(folder)
        epochs, more_problems = self.read_jsonl(folder, "metrics.jsonl")
        steps, step_problems = self.read_jsonl(folder, STEPS_FILE, "step")
        last = epochs[-1] if epochs else {}
        return {"name": name, "status": status, "epochs_done": len(epochs), "epochs": config.get("epochs"),
                "step": steps[-1].get("step") if steps else None,
                "val_accuracy": last.get("val_accuracy"), "updated": self.updated(folder),
                "problems": problems + more + more_problems + step_problems}

    def metrics(self, name, after=None):
        """``GET /api/runs/<name>/metrics``: the config, the epoch records and the step records (only
        those after step ``after`` when given), or None when ``name`` is not a run."""
        folder = self.folder(name)
        if folder is None:
            return None
        head = self.summary(name)
        config, _ = self.read_json(folder, "config.json")
        summary, _ = self.read_json(folder, "summary.json")
        epochs, _ = self.read_jsonl(folder, "metrics.jsonl")
        steps, _ = self.read_jsonl(folder, STEPS_FILE, "step")
        if after is not None:
            steps = [r for r in steps if r["step"] > after]
        return {**head, "config": config, "summary": summary, "epoch_records": epochs, "step_records": steps}

    def snapshot(self, name):
        """``GET /api/runs/<name>/snapshot``: ``{"name", "snapshot": the latest snapshot or null,
        "problem": why there is none, or null}``, or None when ``name`` is not a run."""
        folder = self.folder(name)
        if folder is None:
            return None
        value, problem = self.read_json(folder, SNAPSHOT_FILE)
        is_snapshot = isinstance(value, dict) and {"step", "filters", "grid"} <= value.keys()
        if value is not None and not is_snapshot:
            value, problem = None, f"{SNAPSHOT_FILE} is corrupt (not a snapshot record)"
        if value is None and problem is None:
            problem = f"no {SNAPSHOT_FILE} yet (a run trained without --watch has none)"
        return {"name": name, "snapshot": value, "problem": problem}


def alive(pid):
    """Whether process ``pid`` (> 0) exists on this machine."""
    if pid <= 0:  # 0 and negative numbers would name process groups
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # someone else's process
        return True
    except (ProcessLookupError, OverflowError):
        return False
    return True
