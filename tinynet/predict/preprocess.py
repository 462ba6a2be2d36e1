"""Turn a photo or scan of one handwritten character into a 28x28 EMNIST-style model input (or one
of another size, for a network trained on images of that size: ``size``).

The model is trained on EMNIST images as the loader returns them: upright, white ink (high values)
on a black (0) background, uint8 in [0, 255], shape (28, 28). EMNIST made them from 128x128 NIST
scans (Cohen et al. 2017, arXiv:1702.05373): Gaussian blur (sigma = 1 px), crop to the region of
interest (the ink's bounding box), centre it in a square keeping the aspect ratio, pad with a
2-pixel border, downsample to 28x28 with bicubic interpolation, scale intensities to [0, 255]. A
user's image differs from a NIST scan in size, polarity, contrast, noise and framing, so
`preprocess` normalises each of these, then repeats EMNIST's own steps:

1. Polarity. The background is the majority of the image, so the median of the border pixels
   estimates its level; the ink is whichever side (brighter or darker) deviates further from it.
   Dark ink on light paper is negated so that ink is high and the background low, as in EMNIST.
   Comparing with the background rather than a fixed mid-level of 0.5 keeps a dim photo of grey
   paper (background ~0.4) from being read as light ink on a dark background.
2. Contrast and noise. The background level is subtracted; a largest deviation below
   `MIN_CONTRAST` of full scale means a blank image (`ImageError("no ink found ...")`). Ink
   fainter than `NOISE_FRACTION` of that contrast is set to 0, so paper texture and JPEG ringing
   neither widen the bounding box nor leave a grey haze (EMNIST's background is exactly 0); the
   rest is scaled so the strongest ink is 1. The background, the polarity, the contrast and the
   noise mask are all read from a copy blurred by `DECISION_SIGMA` input pixels, in which an
   isolated noisy pixel is averaged away; a real stroke, several pixels wide, survives.
3. Crop to the bounding box of the remaining ink. A crop longer than `MAX_CROP_SIDE` (4096,
   possible only in an image with a longer side) is first reduced by an integer factor, so that
   framing a thin crop never pads it to a square of many megapixels. (Images longer than that
   and more than `MAX_ASPECT` = 64 times as long as wide are refused from their header.)
4. Frame. The crop is centred in a square whose side is 28/24 of the crop's longer side, so it
   spans 24 of 28 pixels along that side: EMNIST's 2-pixel border. The shorter side is centred
   with the aspect ratio kept. The square is cut at float coordinates, so even a crop of a few
   pixels is centred exactly.
5. Blur and resample as EMNIST did. The framed square is resampled (bicubic; antialiased, with
   an integer pre-reduction for big images) to 128x128, the NIST scale, and blurred there by
   sigma = 1 px; blurring at this fixed scale makes the blur's size relative to the character
   and its cost independent of the input resolution. As in EMNIST, the region of interest is
   then taken from the blurred image (every nonzero pixel, so the blur's halo counts as part of
   the character) and framed again with the 2-pixel border, now directly at 28x28 with bicubic
   downsampling; the bicubic overshoot below 0 is clipped and the maximum scaled to 255.
   (On 200 EMNIST characters re-drawn with sharp edges at 224x224, the output's longer side
   spans 24.0 pixels above intensity 10 and 22.0 above 128; EMNIST's own span 24.0 and 22.0.)
6. Orientation. The output is upright, the same orientation as the training images after the
   loader's single `.T` (EMNIST files store images transposed), so no transpose is applied here.
   `load_image` applies the EXIF orientation tag, so phone photos come out upright too.

Assumes one character on a fairly evenly lit background: a strong shadow, the edge of the paper
or a second mark counts as ink and widens the crop.

Other sizes (``size=(H, W)``, for a network trained on images of that size): the same steps, the
last framing into H x W instead of 28 x 28, the character's longer side spanning 24/28 of the
shorter of H and W (the same 2-pixel-in-28 margin, scaled) and centred.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from ..errors import ArgumentError, TinynetError

SIZE = 28  # output side (pixels)
MAX_PIXELS = 4096 * 4096  # larger images are refused (a 12-megapixel phone photo fits)
MAX_CROP_SIDE = 4096  # a longer crop (a thin or huge image's) is first reduced to at most this
MAX_ASPECT = 64  # an image longer than MAX_CROP_SIDE may be at most this many times as long as wide
CONTENT = 24  # pixels spanned by the character's longer side: EMNIST's 2-pixel border
WORK_SIZE = 128  # NIST scan side, the scale at which EMNIST blurred
BLUR_SIGMA = 1.0  # EMNIST's Gaussian blur, in pixels at WORK_SIZE
DECISION_SIGMA = 1.0  # blur (input pixels) of the copy that decides background, polarity, noise
MIN_CONTRAST = 0.1  # ink must differ from the background by this much (fraction of full scale)
NOISE_FRACTION = 0.15  # ink fainter than this fraction of the contrast is treated as noise


class ImageError(TinynetError, ValueError):
    """An image that cannot become a model input; the one-line message names file and problem."""


def _one_line(error):
    """The error's message on one line (an OSError's strerror, which omits the path, if any)."""
    message = getattr(error, "strerror", None) or str(error)
    return " ".join(message.split()) or type(error).__name__


def load_image(path):
    """Read any image Pillow can decode as grayscale float32 (H, W) in [0, 1] (0 black, 1 white).

    EXIF orientation is applied; only the first frame of an animation or multi-page file is used.
    Transparent pixels (RGBA, LA, palette or colour-key transparency) are composited on white
    paper. 16-bit and 32-bit integer images are scaled by 1/65535, float images taken as is;
    both are clipped to [0, 1]. Raises `ImageError` naming `path` for a missing, empty,
    unreadable, corrupt or truncated file, a directory, a non-image, or an image with more than
    `MAX_PIXELS` pixels (a possible decompression bomb) or longer than 4096 pixels and more than
    64 times as long as wide (both refused before decoding).
    """
    path = Path(path)

    def fail(problem):
        return ImageError(f"{path}: {problem}")

    try:
        size = path.stat().st_size
    except OSError as error:
        raise fail(f"cannot access file ({_one_line(error)})") from None
    if path.is_dir():
        raise fail("is a directory, not an image file")
    if size == 0:
        raise fail("empty file")
    return decode_image(path, path)


def decode_image(source, name):
    """`load_image` for an open binary file or a path: the image as grayscale float32 (H, W) in
    [0, 1]; `ImageError` naming `name` for anything that is not a decodable, finite image, or that
    declares more than `MAX_PIXELS` pixels, or more than 4096 on a side and more than 64 times
    as many on one side as on the other (refused from its header, before decoding).

    Thread-safe, and it leaves the warnings filters alone: Pillow's own warnings (corrupt metadata
    it skips; images over its `MAX_IMAGE_PIXELS`, which tinynet refuses anyway) reach the caller's
    filters like any library's. The command lines silence them (`tinynet.cli.pillow_quiet`).
    """

    def fail(problem):
        return ImageError(f"{name}: {problem}")

    try:
        with Image.open(source) as image:  # reads the header only
            _check_size(*image.size, fail)
            image.load()
            gray = _to_gray(ImageOps.exif_transpose(image))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise fail("not an image file (format not recognised)") from None
    except Image.DecompressionBombError as error:  # over twice Pillow's MAX_IMAGE_PIXELS
        raise fail(f"refused, too many pixels: {_one_line(error)}") from None
    except Exception as error:  # Pillow's decoders raise many exception types on malformed data
        raise fail(f"cannot decode image ({_one_line(error)})") from None
    if gray.size == 0:
        raise fail("zero-size image")
    if not np.isfinite(gray).all():  # a float image (TIFF, PFM) may hold NaN
        raise fail("holds NaN pixel values")
    return gray


def _check_size(width, height, fail):
    """Refuse (``fail(problem)``) an image of more than MAX_PIXELS pixels, or one longer than
    MAX_CROP_SIDE that is more than MAX_ASPECT times as long as it is wide: no photo of one
    character, and decoding and blurring a 16777216x1 image took 3 times as long as a 4096x4096
    one."""
    if width * height > MAX_PIXELS:
        raise fail(f"refused, too many pixels: {width}x{height} is {width * height / 1e6:.1f} "
                   f"megapixels, more than tinynet's limit of {MAX_PIXELS / 1e6:.1f}")
    if max(width, height) > MAX_CROP_SIDE and max(width, height) > MAX_ASPECT * min(width, height):
        raise fail(f"refused, too thin for a character: {width}x{height} pixels, more than "
                   f"{MAX_CROP_SIDE} long and more than {MAX_ASPECT} times as long as wide")


def _to_gray(image):
    """Pillow image of any mode -> float32 (H, W) luminance in [0, 1], transparency on white."""
    if image.mode == "F" or image.mode.startswith("I"):
        scale = 1.0 if image.mode == "F" else 65535.0
        return np.clip(np.asarray(image, dtype=np.float32) / scale, 0.0, 1.0)
    if image.mode != "L" or "transparency" in image.info:
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA")).convert("L")
    return np.asarray(image, dtype=np.float32) / 255.0


def preprocess(gray, size=SIZE):
    """Grayscale (H, W) in [0, 1] of any size -> uint8 (28, 28) EMNIST-style input (``size``: the
    output's side, or its (height, width); see the module docstring).

    Upright, light ink on a 0 background, maximum 255, framed like EMNIST (see the module
    docstring for the steps). Values outside [0, 1] are clipped. Raises `ImageError("no ink
    found ...")` for a blank image (or one whose few specks of ink vanish at the
    128x128 working scale) and `ValueError` for an array that is not 2-D, non-empty and
    finite.
    """
    x = np.asarray(gray, dtype=np.float32)
    if x.ndim != 2 or x.size == 0 or not np.isfinite(x).all():
        raise ArgumentError(f"expected a finite, non-empty 2-D array, got shape {x.shape}")
    ink = _ink(np.clip(x, 0.0, 1.0))
    work = _blur(_frame(_reduce(_crop(ink)), WORK_SIZE), BLUR_SIGMA)
    if not work.any():  # a few specks of ink in a large crop fade below 8 bits at WORK_SIZE
        raise ImageError("no ink found (too little ink, spread too thin, to survive downsampling)")
    out = np.clip(_frame(_crop(work), size), 0.0, None)
    return np.round(out * (255.0 / out.max())).astype(np.uint8)


def preprocess_file(path, size=SIZE):
    """`load_image` + `preprocess`: image file -> uint8 (28, 28) (or of ``size``); `ImageError`
    names `path`."""
    gray = load_image(path)
    try:
        return preprocess(gray, size)
    except ImageError as error:
        raise ImageError(f"{path}: {error}") from None


def _ink(x):
    """Steps 1-2: float32 (H, W) in [0, 1] -> ink strength float32 (H, W), peak 1, background 0."""
    smooth = _blur(x, DECISION_SIGMA)
    border = np.concatenate([smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]])
    background = np.median(border)
    light, dark = smooth.max() - background, background - smooth.min()
    contrast = max(light, dark)
    sign = 1.0 if light >= dark else -1.0
    ink = sign * (x - background)
    floor = NOISE_FRACTION * contrast
    ink[(ink < floor) | (sign * (smooth - background) < floor)] = 0.0
    if contrast < MIN_CONTRAST or not ink.any():
        raise ImageError(f"no ink found (blank image, contrast {contrast:.3f})")
    return ink / ink.max()


def _crop(a):
    """Step 3: (H, W) with some nonzero pixel -> the bounding box of its nonzero pixels (h, w)."""
    rows = np.flatnonzero(a.any(axis=1))
    cols = np.flatnonzero(a.any(axis=0))
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _reduce(crop):
    """A crop longer than MAX_CROP_SIDE, reduced by the smallest integer factor that brings it
    within (each output pixel the mean of a block of pixels); any other crop as it is.

    Framing pads the crop to a square of its longer side, so without this a thin crop (16384x8)
    would ask for a canvas of gigabytes though the image holds few pixels. Only an image with a
    side over MAX_CROP_SIDE (4096) can have such a crop: every image within 4096x4096 is
    preprocessed exactly as before, and the reduced crop, still far larger than WORK_SIZE, frames
    to nearly the same input."""
    factor = -(-max(crop.shape) // MAX_CROP_SIDE)  # ceil
    if factor == 1:
        return crop
    return np.asarray(Image.fromarray(crop.astype(np.float32)).reduce(factor))


def _frame(crop, size):
    """Step 4: crop (h, w) -> float32 (size, size) (or ``size`` = (height, width)), centred, its
    longer side spanning CONTENT/SIZE of the output's shorter side.

    Bicubic (antialiased when shrinking); the box is cut at float coordinates from a padded
    canvas, so it is centred exactly whatever the parity or size of the crop.
    """
    out_h, out_w = (size, size) if np.ndim(size) == 0 else size
    h, w = crop.shape
    side = max(h, w) * SIZE / CONTENT  # the output's shorter side, in crop pixels
    short = min(out_h, out_w)
    box_w, box_h = side * (out_w / short), side * (out_h / short)  # the output's box (square: side x side)
    pad = int(np.ceil((max(box_w, box_h) - min(h, w)) / 2)) + 1  # room for the box on both axes
    cy, cx = pad + h / 2, pad + w / 2
    box = (cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2)
    canvas = Image.fromarray(np.pad(crop.astype(np.float32), pad))
    return np.asarray(canvas.resize((out_w, out_h), Image.Resampling.BICUBIC, box, reducing_gap=3.0))


def _blur(x, sigma):
    """Gaussian blur of float32 (H, W), clipped to [0, 1] and quantised to 8 bits like EMNIST."""
    image = Image.fromarray(np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32) / 255
