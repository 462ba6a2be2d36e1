"""The tensors of an ONNX file being imported, read as NumPy arrays only after checking them: every
tensor's data must be inside the file (external data is refused: nothing outside the file is read),
its element type one tinynet imports, its declared shape the one the bytes that hold it have, and
all tensors together within :data:`MAX_TENSOR_ELEMENTS` (checked before anything is allocated)."""

import math

import numpy as np

from .common import MAX_TENSOR_ELEMENTS, MAX_TENSORS, Refused


class TensorReader:
    """Reads one model's ``TensorProto`` objects, within one budget of elements for all of them."""

    def __init__(self, onnx):
        self.TP = onnx.TensorProto
        self.elements = 0  # tensor elements read so far, bounded by MAX_TENSOR_ELEMENTS

    def array(self, tensor, where):
        """A ``TensorProto`` as a NumPy array, after checking where its data lives, its type and that
        its declared shape matches the bytes that hold it."""
        TP = self.TP
        if tensor.data_location == TP.EXTERNAL or len(tensor.external_data):
            raise Refused(f"{where} keeps its data in an external file; tinynet reads nothing "
                          f"outside the model file (save the model with its weights inside)")
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
        if tensor.raw_data:
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
