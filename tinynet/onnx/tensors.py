"""The tensors of an ONNX file being imported, read as NumPy arrays only after checking them: each
tensor's element type must be one tinynet imports, its declared shape the one the bytes that hold it
have, and all tensors together within :data:`MAX_TENSOR_ELEMENTS` (checked before anything is
allocated).

A tensor's data is inside the model file, or in a file beside it (ONNX's external data, as
PyTorch's default exporter writes the larger weights to ``model.onnx.data``). Such a file is read
only when it is a plain file name in the model's own folder (no folder part, no ``..``, not the
model itself), a regular file and not a link, of at most :data:`MAX_FILE_BYTES` bytes, and the
tensor's offset and length lie inside it and hold exactly its declared shape: nothing else is
opened, and nothing outside those bytes is read."""

import math
import os
import stat

import numpy as np

from .common import MAX_FILE_BYTES, MAX_TENSOR_ELEMENTS, MAX_TENSORS, Refused

_EXTERNAL_KEYS = {"location", "offset", "length"}


class TensorReader:
    """Reads one model's ``TensorProto`` objects, within one budget of elements for all of them."""

    def __init__(self, onnx, model_path=None):
        self.TP = onnx.TensorProto
        self.elements = 0  # tensor elements read so far, bounded by MAX_TENSOR_ELEMENTS
        self.model_path = model_path  # the model file, whose folder external data is read from

    def array(self, tensor, where):
        """A ``TensorProto`` as a NumPy array, after checking where its data lives, its type and that
        its declared shape matches the bytes that hold it."""
        TP = self.TP
        external = tensor.data_location == TP.EXTERNAL
        if len(tensor.external_data) and not external:
            raise Refused(f"{where} has external_data entries but its data_location is not EXTERNAL")
        if tensor.HasField("segment"):
            raise Refused(f"{where} is a segment of a tensor, which tinynet does not read")
        dtypes = {TP.FLOAT: (np.dtype("<f4"), "float_data"), TP.INT64: (np.dtype("<i8"), "int64_data"),
                  TP.BOOL: (np.dtype("?"), "int32_data")}
        if tensor.data_type not in dtypes:
            name = TP.DataType.Name(tensor.data_type) if tensor.data_type in TP.DataType.values() \
                else str(tensor.data_type)
            raise Refused(f"{where} has element type {name}; tinynet imports float32 weights "
                          f"(and int64 shapes, bool flags)")
        dims = list(tensor.dims)
        if len(dims) > 8 or any(d < 0 for d in dims):
            raise Refused(f"{where} has an invalid shape {dims}")
        count = math.prod(dims)  # Python ints: a huge shape cannot wrap around to a small count
        if count > MAX_TENSOR_ELEMENTS or self.elements + count > MAX_TENSOR_ELEMENTS:
            raise Refused(f"{where} declares shape {dims} ({count} elements): more than the "
                          f"{MAX_TENSOR_ELEMENTS} tinynet reads from one model")
        self.elements += count
        dtype, field = dtypes[tensor.data_type]
        if external:
            if tensor.raw_data or len(getattr(tensor, field)):
                raise Refused(f"{where} keeps its data both in the model and in an external file")
            values = np.frombuffer(self.external(tensor, where, count * dtype.itemsize), dtype=dtype)
        elif tensor.raw_data:
            if len(tensor.raw_data) != count * dtype.itemsize:
                raise Refused(f"{where} declares shape {dims} but holds {len(tensor.raw_data)} bytes "
                              f"(expected {count * dtype.itemsize})")
            values = np.frombuffer(tensor.raw_data, dtype=dtype)
        else:
            stored = getattr(tensor, field)
            if len(stored) != count:
                raise Refused(f"{where} declares shape {dims} but holds {len(stored)} values")
            values = np.array(stored, dtype=dtype)
        values = values.astype(dtype.newbyteorder("="), copy=True).reshape(dims)
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            raise Refused(f"{where} holds NaN or infinite values")
        return values

    def external(self, tensor, where, size):
        """The ``size`` bytes of ``tensor``'s external data, after checking the file and the range
        that hold them (see the module's docstring)."""
        entries = {}
        for e in tensor.external_data:
            if e.key not in _EXTERNAL_KEYS or e.key in entries:
                raise Refused(f"{where}: external_data key {e.key[:40]!r} is "
                              f"{'given twice' if e.key in entries else 'not supported'}")
            entries[e.key] = e.value
        offset = _number(entries.get("offset", "0"), where, "offset")
        length = _number(entries["length"], where, "length") if "length" in entries else None
        if length is not None and length != size:
            raise Refused(f"{where} declares {size} bytes of data but its external length is {length}")
        with self.open_beside(entries.get("location"), where) as (f, file_size):
            end = offset + size
            if end > file_size or length is None and end != file_size:
                raise Refused(f"{where}: bytes {offset} to {end} of its external data do not fit the "
                              f"{file_size} bytes of {entries['location']!r}")
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise Refused(f"{where}: its external data file {entries['location']!r} ended early")
        return data

    def open_beside(self, location, where):
        """The external data file ``location`` (a plain name in the model's folder) opened for
        reading, with its size: a context manager of ``(file, size)``."""
        if location is None:
            raise Refused(f"{where} keeps its data in an external file but names no location")
        if self.model_path is None:
            raise Refused(f"{where} keeps its data in an external file, and this model has no folder")
        plain = (0 < len(location) <= 255 and "\0" not in location and "\\" not in location
                 and os.path.basename(location) == location and location not in (".", "..")
                 and not os.path.isabs(location))
        if not plain:
            raise Refused(f"{where}: external data location {location[:80]!r} is not a file name in the "
                          f"model's folder; tinynet reads external data only from there")
        if location == self.model_path.name:
            raise Refused(f"{where}: external data location {location!r} is the model file itself")
        return _BesideFile(self.model_path.parent / location, where, location)

    def constants(self, graph):
        """{name: array} of the initializers and Constant nodes' outputs."""
        if len(graph.sparse_initializer):
            raise Refused("holds sparse initializers, which tinynet does not import")
        if len(graph.initializer) > MAX_TENSORS:
            raise Refused(f"holds {len(graph.initializer)} initializers, more than {MAX_TENSORS}")
        found = {}
        for t in graph.initializer:
            if t.name in found:
                raise Refused(f"initializer {t.name!r} is defined twice")
            found[t.name] = self.array(t, f"initializer {t.name!r}")
        for n in graph.node:
            if is_constant(n):
                if len(n.output) != 1 or len(n.attribute) != 1 or n.attribute[0].name != "value":
                    raise Refused(f"Constant node {n.name!r}: tinynet reads Constant nodes with one "
                                  f"'value' tensor")
                if n.output[0] in found:
                    raise Refused(f"tensor {n.output[0]!r} is defined twice")
                found[n.output[0]] = self.array(n.attribute[0].t, f"Constant {n.output[0]!r}")
        return found


def is_constant(node):
    """Whether ``node`` is a standard Constant node (whose output is one of the graph's constants)."""
    return node.op_type == "Constant" and node.domain in ("", "ai.onnx")


def _number(text, where, what):
    """A decimal number of bytes from an external_data entry, checked."""
    if not (0 < len(text) <= 15 and text.isdigit() and text.isascii()):
        raise Refused(f"{where}: external data {what} {text[:40]!r} is not a number of bytes")
    return int(text)


class _BesideFile:
    """An external data file opened without following a link: a regular file of at most
    :data:`MAX_FILE_BYTES` bytes (``with`` gives ``(file, size)``)."""

    def __init__(self, path, where, location):
        self.path, self.where, self.location = path, where, location
        self.file = None

    def __enter__(self):
        where, name = self.where, self.location
        try:
            before = os.lstat(self.path)
        except OSError:
            raise Refused(f"{where}: its external data file {name!r} is not in the model's folder") from None
        if not stat.S_ISREG(before.st_mode):
            kind = "a link" if stat.S_ISLNK(before.st_mode) else "not a regular file"
            raise Refused(f"{where}: its external data file {name!r} is {kind}; tinynet reads external "
                          f"data only from regular files in the model's folder")
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        except OSError as e:
            raise Refused(f"{where}: cannot read its external data file {name!r}: "
                          f"{e.strerror or e}") from None
        self.file = os.fdopen(fd, "rb")
        after = os.fstat(fd)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(after.st_mode):
            self.file.close()
            raise Refused(f"{where}: its external data file {name!r} changed while it was opened")
        if after.st_size > MAX_FILE_BYTES:
            self.file.close()
            raise Refused(f"{where}: its external data file {name!r} is larger than the "
                          f"{MAX_FILE_BYTES} bytes tinynet reads")
        return self.file, after.st_size

    def __exit__(self, *exc):
        self.file.close()
