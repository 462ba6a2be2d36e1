"""Files read through a cache, for servers that poll files other processes write: a file is read
again only when its inode, size or modification time changed, and a JSON-lines file that grew is
read from where the last read stopped, so polling a long run's logs costs little. Nothing here
raises for a missing, unreadable or corrupt file: it comes back as a ``problem`` (one line) beside
what could be read."""

import json
import os
import threading

MAX_JSON_BYTES = 8 * 1024 * 1024  # larger JSON files are refused


class _Lines:
    """What has been read of one JSON-lines file: up to byte ``offset`` of inode ``inode``."""

    def __init__(self, inode):
        self.inode = inode
        self.offset = 0    # bytes read: the file's complete lines so far
        self.records = []  # the records kept
        self.bad = 0       # lines skipped as corrupt


class FileCache:
    """JSON and JSON-lines files read through a cache; safe to share between threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.cache = {}  # path -> (key, (value, problem))
        self.jsonl = {}  # path -> _Lines

    @staticmethod
    def _key(path):
        """``(inode, size, mtime_ns)`` of ``path``, or None when it cannot be stat'ed."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def read_json(self, path, name):
        """``(value or None, problem or None)`` of the JSON file ``path``; ``(None, None)`` when it is
        missing. ``name`` is how problems name the file."""
        key = self._key(path)
        if key is None:
            return None, None
        with self.lock:
            cached = self.cache.get(path)
            if cached and cached[0] == key:
                return cached[1]
        if key[1] > MAX_JSON_BYTES:
            value = None, f"{name} is too large ({key[1]} bytes)"
        else:
            try:
                with open(path, "rb") as f:
                    value = json.loads(f.read(MAX_JSON_BYTES + 1)), None
            except OSError as e:
                value = None, f"{name} cannot be read ({e.strerror or e})"
            except ValueError as e:  # also UnicodeDecodeError
                value = None, f"{name} is corrupt ({' '.join(str(e).split())[:120]})"
        with self.lock:
            self.cache[path] = key, value
        return value

    def read_jsonl(self, path, name, key_field=None):
        """``(records, problems)`` of the JSON-lines file ``path`` (``([], [])`` when it is missing):
        the records that parse as JSON objects; a line that does not is skipped and counted in
        ``problems`` (the last line, still being written when it has no newline yet, is left for the
        next read). With ``key_field``, a record whose key is not above the previous one's (a
        resumed run logging again) replaces the records it repeats. ``name`` is how problems name
        the file."""
        key = self._key(path)
        if key is None:
            return [], []
        inode, size, _ = key
        with self.lock:
            lines = self.jsonl.get(path)
            if lines is None or lines.inode != inode or size < lines.offset:  # new or rewritten file
                lines = self.jsonl[path] = _Lines(inode)
            if size > lines.offset:
                try:
                    with open(path, "rb") as f:
                        f.seek(lines.offset)
                        data = f.read(size - lines.offset)
                except OSError as e:
                    return list(lines.records), [f"{name} cannot be read ({e.strerror or e})"]
                _add_lines(lines, data, key_field)
            records, bad = list(lines.records), lines.bad
            pending = size - lines.offset
        problems = [f"{name}: {bad} corrupt record{'s' * (bad != 1)} skipped"] if bad else []
        if pending:
            problems.append(f"{name}: a record still being written (or truncated, {pending} bytes)")
        return records, problems


def _add_lines(lines, data, key_field):
    """Add the complete lines of ``data`` (the bytes after ``lines.offset``) to ``lines``; an
    incomplete last line is left for the next read."""
    complete = data.rfind(b"\n") + 1
    lines.offset += complete
    records = lines.records
    for line in data[:complete].splitlines():
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError
        except ValueError:
            lines.bad += 1
            continue
        if key_field is not None:
            k = record.get(key_field)
            if not isinstance(k, (int, float)):
                lines.bad += 1
                continue
            while records and records[-1][key_field] >= k:
                records.pop()
        records.append(record)
