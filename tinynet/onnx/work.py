"""The work an imported graph declares for one image, added up layer by layer as the walker
translates it and refused past a bound before anything is built or run (:class:`Work`).

Every tensor's size is checked when it is read (``tensors``), and every feature map's side against
``MAX_SIDE``, but a graph of small tensors can still declare enormous work: a 1x1 Conv of 925
channels with pads 2000 makes 925 maps of 4028x4028 from a 28x28 image, 15 billion values (60 GB)
per image, from a 44 kB file. So for each layer spec a translator returns, with the shape after it,
the values tinynet will hold for one image (the layer's output, and its scratch: a convolution's
im2col columns, a max-pool's indices, batch normalisation's normalised input) and its floating-point operations are added up, and the
graph is refused as soon as either total passes :data:`MAX_IMAGE_VALUES` or
:data:`MAX_IMAGE_FLOPS`: the bounds of every network tinynet builds (``tinynet.nn.describe``, which
checks the description the import then makes), here applied as the graph is walked, so that nothing
is built first. A LeNet for 47 classes needs 74,007 values (0.3 MB) and 4.6 million FLOPs per image;
the bounds leave room for a model 14 times as large in values and 230 times in work. Predicting a
batch holds its images' values at once: at the bound, 4 MB per image.
"""

import math

from ..nn.describe import MAX_IMAGE_FLOPS, MAX_IMAGE_VALUES
from .common import Refused


def layer_work(spec, shape):
    """``(values, flops)`` of one image through the layer ``spec`` (``(kind, attributes, arrays)``,
    as ``ops`` makes them), whose output has ``shape`` (one image's)."""
    kind, attrs, arrays = spec
    out = math.prod(shape)
    if kind == "conv":  # im2col columns (one row of C_in k k values per output position), output
        W = arrays[0]
        positions = math.prod(shape[1:])
        return positions * math.prod(W.shape[1:]) + out, 2 * positions * W.size
    if kind == "dense":
        return out, 2 * arrays[0].size
    if kind.startswith("batchnorm"):  # output and x_hat; x - mean, / std, * gamma, + beta
        return 2 * out, 4 * out
    if "size" in attrs:  # pooling: output and the index of each output's maximum
        return 2 * out, out * attrs["size"] ** 2
    return out, out  # elementwise (ReLU, the class prior, a flatten's copy) and any other kind


class Work:
    """The values and FLOPs of one image so far, through the layers the walker has translated."""

    def __init__(self):
        self.values = self.flops = 0

    def add(self, where, spec, shape):
        """Add layer ``spec`` (whose output has ``shape``) of node ``where``; :class:`Refused`
        naming the node when a total passes its bound."""
        values, flops = layer_work(spec, shape)
        self.values += values
        self.flops += flops
        if self.values > MAX_IMAGE_VALUES:
            raise Refused(f"{where}: would make the graph hold {self.values:,} values for one image "
                          f"(its output {list(shape)}), more than the {MAX_IMAGE_VALUES:,} tinynet "
                          f"allows (refused before building anything)")
        if self.flops > MAX_IMAGE_FLOPS:
            raise Refused(f"{where}: would make the graph take {self.flops:,} floating-point operations "
                          f"for one image, more than the {MAX_IMAGE_FLOPS:,} tinynet allows (refused "
                          f"before building anything)")
