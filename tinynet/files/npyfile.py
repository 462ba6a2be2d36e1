"""Reading a ``.npy`` header without trusting it: the one place where both checkpoint members
(``tinynet.files.checkpoint``) and ``.npy`` inputs (``tinynet.predict.predictor``) check what a header claims
before NumPy allocates anything, and never unpickle."""

import math
import tokenize

import numpy as np

from ..errors import TinynetError

VERSIONS = ((1, 0), (2, 0), (3, 0))


class NpyHeaderError(TinynetError, ValueError):
    """A header that cannot be trusted; the message is one line, without the file's name."""


def read_npy_header(f, size=None):
    """Read the magic string and header of the ``.npy`` stream ``f`` (positioned at its start):
    ``(shape, fortran_order, dtype, nbytes)``, leaving ``f`` at the first byte of data.

    ``size`` (the stream's total length, when known) lets a version 2/3 header's 4-byte length be
    checked before anything reads that much. Raises :class:`NpyHeaderError` for a stream that is
    not ``.npy``, an unknown version, a damaged header, a shape with a negative count, or -- with
    ``size`` -- fewer data bytes than the shape needs. A pickled (object) dtype is returned for the
    caller to refuse in its own words (:func:`read_npy_data` refuses it too).
    """
    start = f.tell()
    if f.read(6) != b"\x93NUMPY":
        raise NpyHeaderError("not a .npy file (no NumPy header)")
    version = tuple(f.read(2))
    if version not in VERSIONS:
        raise NpyHeaderError(f"corrupt .npy file (unknown format version {version})")
    if version != (1, 0) and size is not None:
        length = int.from_bytes(f.read(4), "little")
        if length > size - start - 12:
            raise NpyHeaderError(f"corrupt .npy file (its {length}-byte header would end past the "
                                 f"end of the {size}-byte file)")
        f.seek(start + 8)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        shape, fortran, dtype = read(f)
    except (ValueError, TypeError, SyntaxError, tokenize.TokenError) as e:
        raise NpyHeaderError(f"corrupt .npy file ({' '.join(str(e).split())})") from None
    count = math.prod(shape)  # Python ints: a huge shape cannot overflow to a small count
    if count < 0:
        raise NpyHeaderError(f"corrupt .npy file (invalid shape {tuple(shape)})")
    nbytes = count * dtype.itemsize
    if size is not None and not dtype.hasobject and nbytes > size - f.tell():
        raise NpyHeaderError(f"corrupt .npy file (its header says shape {tuple(shape)} of {dtype}, "
                             f"but {size - f.tell()} bytes of data follow it)")
    return tuple(shape), fortran, dtype, nbytes


def read_npy_data(f, shape, fortran, dtype, nbytes):
    """The array whose header :func:`read_npy_header` read: exactly ``nbytes`` must follow
    (NpyHeaderError otherwise); a fresh, writable array. Never unpickles."""
    if dtype.hasobject:
        raise NpyHeaderError(f"holds pickled Python objects (dtype {dtype}), refused")
    data = f.read(nbytes + 1)
    if len(data) != nbytes:
        raise NpyHeaderError(f"corrupt .npy file ({len(data)} bytes of data where the header says {nbytes})")
    array = np.frombuffer(data, dtype=dtype)
    return (array.reshape(shape[::-1]).T if fortran else array.reshape(shape)).copy()
