"""What an ONNX file's protobuf would cost to parse, checked on its raw bytes before protobuf parses
them (:func:`check_wire`).

Parsing builds an object for every message in the file and a slot for every value of a repeated
field, and the wire format spells an empty message in 2 bytes: a 16 MB file of empty nodes or
attributes made protobuf's parser take 1.2-1.5 GB (a 256 MB one, 20 GB), before any of tinynet's
checks could run. So the bytes are walked first, guided by the ``ModelProto`` schema: every field
is read (a message's fields are walked in turn; a string, a bytes field or a packed run of numbers
is stepped over, its values counted), and the file is refused as soon as it holds more than
:data:`MAX_MESSAGES` messages, :data:`MAX_FIELDS` fields, :data:`MAX_VALUES` values of repeated
fields or is nested deeper than :data:`MAX_DEPTH`. A model tinynet imports is far within these (a
LeNet exported by tinynet: 58 messages, 231 fields, 70 values, its weights in raw bytes); the walk
takes at most about a second and no memory beyond the file's bytes.
"""

import functools

import numpy as np

from .common import MAX_TENSOR_ELEMENTS, Refused

MAX_MESSAGES = 100_000  # messages of any type in the file (nodes, attributes, tensors, types, ...)
MAX_FIELDS = 200_000  # fields read one by one (each value of an unpacked repeated field is one)
MAX_VALUES = MAX_TENSOR_ELEMENTS + (1 << 20)  # values of repeated fields: the tensors, and some
MAX_DEPTH = 32  # messages inside messages (protobuf itself stops at 100)

_FIXED = {1: 8, 5: 4}  # wire types of fixed width: 64-bit, 32-bit


class _Budget:
    """What the walk may still read: refused as soon as a count passes its bound."""

    def __init__(self):
        self.messages, self.fields, self.values = MAX_MESSAGES, MAX_FIELDS, MAX_VALUES

    def spend(self, messages=0, fields=0, values=0):
        self.messages -= messages
        self.fields -= fields
        self.values -= values
        if min(self.messages, self.fields, self.values) < 0:
            what, bound = min(((self.messages, "messages", MAX_MESSAGES), (self.fields, "fields", MAX_FIELDS),
                               (self.values, "values in repeated fields", MAX_VALUES)))[1:]
            raise Refused(f"holds more than {bound} protobuf {what}, more than any model tinynet "
                          f"imports (refused before parsing it)")


def check_wire(data, descriptor):
    """Refuse ``data`` (the bytes of a ``descriptor`` message: ``onnx.ModelProto.DESCRIPTOR``) when
    parsing it would build more than the bounds allow, or when it is not well-formed protobuf
    (:class:`Refused`)."""
    view = memoryview(data)
    _walk(view, 0, len(view), descriptor, 0, _Budget())


def _walk(data, pos, end, descriptor, depth, budget):
    """Walk the fields of one ``descriptor`` message in ``data[pos:end]``."""
    if depth > MAX_DEPTH:
        raise Refused(f"not an ONNX model tinynet imports (its protobuf nests messages more than "
                      f"{MAX_DEPTH} deep; refused before parsing it)")
    fields = _fields(descriptor)
    read = repeated = 0  # fields read, values of repeated fields among them (spent in blocks)
    while pos < end:
        key = data[pos]
        pos += 1
        if key >= 0x80:
            key, pos = _varint(data, pos - 1, end)
        number, wire = key >> 3, key & 7
        field, is_repeated = fields.get(number, (None, False))
        read += 1
        if wire == 2:
            length = data[pos] if pos < end else 0x80
            pos += 1
            if length >= 0x80:
                length, pos = _varint(data, pos - 1, end)
            start, pos = pos, _skip(pos, length, end)
            _delimited(data, start, pos, field, depth, budget)
        else:
            if wire == 0:
                _, pos = _varint(data, pos, end)
            elif wire in _FIXED:
                pos = _skip(pos, _FIXED[wire], end)
            else:  # groups (3, 4) are not in ONNX's schema; 6 and 7 are not wire types
                raise Refused(f"not an ONNX model (protobuf wire type {wire} at byte {pos})")
            repeated += is_repeated
        if read == 4096:
            budget.spend(fields=read, values=repeated)
            read = repeated = 0
    budget.spend(fields=read, values=repeated)


def _delimited(data, start, end, field, depth, budget):
    """Count a length-delimited field: a message (walked), a packed run of numbers (its values
    counted) or a string or bytes (one value when repeated; its bytes are already in the file)."""
    if field is None:  # unknown to the schema: kept by protobuf as bytes
        return
    if field.type == field.TYPE_MESSAGE:
        budget.spend(messages=1)
        _walk(data, start, end, field.message_type, depth + 1, budget)
    elif field.type in (field.TYPE_STRING, field.TYPE_BYTES):
        budget.spend(values=int(_repeated(field)))
    elif field.type in (field.TYPE_FLOAT, field.TYPE_FIXED32, field.TYPE_SFIXED32):
        budget.spend(values=(end - start) // 4)
    elif field.type in (field.TYPE_DOUBLE, field.TYPE_FIXED64, field.TYPE_SFIXED64):
        budget.spend(values=(end - start) // 8)
    else:  # packed varints: one value ends at each byte below 0x80
        run = np.frombuffer(data, np.uint8, count=end - start, offset=start)
        budget.spend(values=int(np.count_nonzero(run < 0x80)))


@functools.cache
def _fields(descriptor):
    """{field number: (field, whether it is repeated)} of a message type."""
    return {number: (field, _repeated(field)) for number, field in descriptor.fields_by_number.items()}


def _repeated(field):
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 5; before, the label says
    return is_repeated if is_repeated is not None else field.label == field.LABEL_REPEATED


def _varint(data, pos, end):
    """The varint at ``data[pos]`` and the position after it."""
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise Refused("not an ONNX model (its protobuf ends inside a number)")


def _skip(pos, length, end):
    if length > end - pos:
        raise Refused("not an ONNX model (a protobuf field runs past the end of its message)")
    return pos + length
