"""Atomic file writes: a file under its final name is always complete (old or new, never half)."""

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

TEMP_PREFIX = ".tmp-"
RANDOM_PART = "[a-z0-9_]{8}"  # what tempfile.mkstemp puts between the prefix and the suffix


@contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path`` for writing (``.tmp-<random>-<name>``: it keeps the
    name's ending, so e.g. a ``.gz`` can be checked before it is renamed).

    When the ``with`` block ends normally the file is flushed, fsync'ed and renamed over ``path``,
    and the folder is fsync'ed so that the rename survives a crash. When the block raises, the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode) as f:  # f.name is the temporary path
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def leftover_temporaries(folder, names):
    """The temporary files :func:`atomic_write` makes for files called ``names`` in ``folder``
    (``.tmp-<8 random characters>-<name>``) that are there now: what writes killed before their
    rename left behind. Names of any other form, a user's own ``.tmp-notes`` say, are not listed."""
    pattern = re.compile(re.escape(TEMP_PREFIX) + RANDOM_PART + "-(" + "|".join(map(re.escape, names)) + ")")
    return sorted(p for p in Path(folder).glob(f"{TEMP_PREFIX}*") if pattern.fullmatch(p.name))


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`): never a half-written file."""
    with atomic_write(path, "w") as f:
        f.write(text)
