"""Bytes of valid and deliberately broken files, for the fuzz and reliability tests: ``.npy``
arrays with any header, zips with any members, a pickle that leaves a marker file when unpickled,
images of a drawn character in many formats, a deflate bomb."""

import io
import struct
import warnings
import zipfile
import zlib

import numpy as np

# Warnings Python does not print by default; any other warning escaping a call would show on a
# command line's stderr.
QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


class Marker:
    """Unpickling this creates the file ``path``: proof that something was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def pickled_npy(marker):
    """A .npy object array whose loading with pickles allowed would create ``marker``."""
    return npy_bytes(np.array([Marker(marker)], dtype=object), allow_pickle=True)


def npy_bytes(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_raw(descr, shape, body, fortran=False, version=(1, 0), header_text=None):
    """A .npy file with any header (even a lying one) in front of ``body``."""
    text = header_text if header_text is not None else (
        "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran, tuple(shape)))
    size_fmt = "<H" if version[0] == 1 else "<I"
    pad = -(8 + struct.calcsize(size_fmt) + len(text) + 1) % 64
    header = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY" + bytes(version) + struct.pack(size_fmt, len(header)) + header + body


def zip_members(data):
    """{name: bytes} of a zip (a checkpoint)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def build_zip(members, compression=zipfile.ZIP_STORED):
    """A zip of ``members``, a dict {name: bytes} or a list of (name, bytes) (names may repeat)."""
    buf = io.BytesIO()
    items = members.items() if isinstance(members, dict) else members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are one of the cases
        with zipfile.ZipFile(buf, "w") as z:
            for name, body in items:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = compression
                z.writestr(info, body)
    return buf.getvalue()


def bomb_zip(members, size):
    """``members`` plus ``extra.order.npy``: a real int64 array of ``size`` bytes of zeros,
    deflated to about a thousandth of that."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("extra.order.npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            f.write(npy_raw("<i8", (size // 8,), b""))
            for _ in range(size >> 20):
                f.write(bytes(1 << 20))
        for name, body in members.items():
            if name != "extra.order.npy":
                z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), body)
    return buf.getvalue()


def character(size=64, char="A", light_ink=False):
    """A grayscale (L) image of a character: dark ink on white paper (or the reverse)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (size, size), 0 if light_ink else 255)
    draw = ImageDraw.Draw(image)
    ink = 255 if light_ink else 0
    try:
        font = ImageFont.load_default(size=int(size * 0.75))
        draw.text((size / 2, size / 2), char, fill=ink, font=font, anchor="mm")
    except (OSError, ValueError, TypeError):  # no FreeType: draw strokes instead
        draw.line([(size * 0.2, size * 0.85), (size * 0.5, size * 0.15), (size * 0.8, size * 0.85)],
                  fill=ink, width=max(2, size // 10))
    return image


def write_image_seeds(folder):
    """A drawn character in a dozen formats and modes (PNG L/RGB/RGBA/P/1/16-bit, JPEG with and
    without EXIF rotation, BMP, animated GIF, float and LZW TIFF, WebP when Pillow has it, PPM);
    returns the file names."""
    from PIL import Image, features

    folder.mkdir(parents=True, exist_ok=True)
    gray = character(64, "A")
    rgb = Image.merge("RGB", [gray, gray.point(lambda v: v // 2 + 100), gray.point(lambda v: 255 - (255 - v) // 3)])
    rgba = Image.new("RGBA", gray.size, (0, 0, 0, 0))
    rgba.putalpha(gray.point(lambda v: 255 - v))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    pixels = np.asarray(gray)
    frames = [character(48, "B"), character(48, "C")]
    seeds = {
        "char-L.png": lambda p: gray.save(p),
        "char-light.png": lambda p: character(64, "K", light_ink=True).save(p),
        "char-RGB.png": lambda p: rgb.save(p),
        "char-RGBA.png": lambda p: rgba.save(p),
        "char-P.png": lambda p: gray.convert("P").save(p, transparency=255),
        "char-1.png": lambda p: gray.convert("1").save(p),
        "char-I16.png": lambda p: Image.fromarray(pixels.astype(np.uint16) * 257).save(p),
        "char.jpg": lambda p: rgb.save(p, quality=90),
        "char-exif.jpg": lambda p: gray.save(p, exif=exif),
        "char.bmp": lambda p: rgb.save(p),
        "char.gif": lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=50),
        "char-F.tif": lambda p: Image.fromarray(pixels.astype(np.float32) / 255).save(p),
        "char-lzw.tif": lambda p: gray.save(p, compression="tiff_lzw"),
        "char.ppm": lambda p: rgb.save(p),
    }
    if features.check("webp"):
        seeds["char.webp"] = lambda p: rgb.save(p, quality=80)
    for name, save in seeds.items():
        save(folder / name)
    return sorted(seeds)


def png_with_chunk(data, kind, change):
    """The PNG ``data`` with chunk ``kind``'s payload replaced by ``change(payload)``, its CRC valid."""
    at = 8
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        if data[at + 4:at + 8] == kind:
            new = change(data[at + 8:at + 8 + length])
            chunk = struct.pack(">I", len(new)) + kind + new + struct.pack(">I", zlib.crc32(kind + new))
            return data[:at] + chunk + data[at + 12 + length:]
        at += 12 + length
    return data
