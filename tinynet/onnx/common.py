"""What ONNX export and import share: the error they raise, the optional onnx package (imported only
when a function needs it), the names and shapes of tinynet's ONNX graphs, and the bounds on what
import reads from a file."""

from ..errors import TinynetError
from ..files.checkpoint import CheckpointError
from ..nn.describe import MAX_PARAMETERS
from ..nn.model import EMNIST_INPUT

OPSET = 13  # Softmax over one axis (its meaning since 13); read by onnxruntime >= 1.6 and -web
INPUT_NAME, LOGITS, PROBABILITIES = "image", "logits", "probabilities"
IMAGE_SHAPE = EMNIST_INPUT  # (C, H, W) of one input image, when an imported graph does not say

# The largest model tinynet imports: MAX_TENSOR_ELEMENTS float32 weights (16.8 million, 64 MB: the
# most parameters any tinynet network may have, tinynet.nn.describe; a LeNet for 47 classes has
# 449,617), each used at least once per image, so within the work bounds of ``work``; the file cap
# holds that model twice over (a LeNet's file is 1.7 MB)
MAX_FILE_BYTES = 1 << 27     # 128 MB
MAX_NODES = 1_000
MAX_TENSORS = 1_000
MAX_TENSOR_ELEMENTS = MAX_PARAMETERS  # one tensor, and all tensors together
MAX_SIDE = 4_096               # height or width of any feature map
MAX_METADATA_CHARS = 10_000_000
MIN_IMPORT_OPSET = 7

NEEDS_ONNX = "needs the onnx package: pip install 'tinynet[onnx]'"


class OnnxError(CheckpointError):
    """A model that cannot be exported, or an ONNX file that cannot be imported; the message names
    the layer or the file, and the fault. (A ``CheckpointError``: the command lines that load
    models report either the same way.)"""


class Refused(TinynetError):
    """A fault in the file being imported; ``load_onnx`` adds the file's name and raises it as an
    :class:`OnnxError`."""


def require_onnx():
    """The onnx package, or the ImportError that says which extra to install."""
    try:
        import onnx
    except ImportError:
        raise ImportError(f"ONNX export and import {NEEDS_ONNX}") from None
    return onnx
