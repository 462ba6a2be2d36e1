"""What the network sees: for one input image, the feature maps of its convolutions, the saliency
of its answer and the first convolution's filters; and a PNG that shows them (``inference.py
--explain DIR``). The drawing page (``tinynet/web/draw.py``) shows the same pictures. Any network of
tinynet's layers: one without a convolution (an MLP) has no filters or feature maps, only its
saliency and answer.

Feature maps. The output of every convolution **after ReLU** (the LeNet: conv1's 20 maps of 24x24,
conv2's 50 maps of 8x8, before pooling). (The LeNet fuses each ReLU into the max-pool that follows,
so the conv layers themselves output pre-ReLU values; :func:`look_inside` applies max(., 0) to a
copy of them, whatever follows the convolution.)

Saliency. For the input x (H x W pixels, each in [0, 1]; EMNIST: 28x28) and the logit z_c of the top class c,
the saliency map is dz_c/dx: how much the class's score would change per unit of extra ink in each
pixel. It is the network's ordinary backward pass, started from dL/dz = e_c (1 for class c, 0 for
the others) instead of a loss gradient, and carried all the way down to the pixels:

    dz_c/dx = conv1.backward(pool1.backward(... fc2.backward(e_c)))

The first layer normally skips its input gradient (training never needs the gradient of the image),
so :func:`look_inside` switches it on for this one pass and restores the switch afterwards. The logit,
not the probability, is differentiated: the softmax would mix every other class into the picture.
``tests/test_explain.py`` checks this gradient against centred finite differences in float64.

Layers keep caches and scratch buffers between calls, so one model must not run two of these at
once (the server holds a lock).
"""

from dataclasses import dataclass

import numpy as np

from ..datasets.idx import to_float
from ..files.plots import draw_filters, new_figure, tile
from ..nn.layers import BatchNorm2D, Conv2D, softmax
from ..nn.model import first_conv
from .metrics import top_k_indices

TOP_K = 5


@dataclass
class Explanation:
    """One image through the network: what it predicts and what each stage sees."""

    image: np.ndarray  # uint8 (H, W): the input, upright, light ink on dark
    top_k: list[tuple[str, float]]  # (character, probability), best first
    saliency: np.ndarray  # float32 (H, W): d logit[top class] / d pixel (pixels in [0, 1])
    feature_maps: dict[str, np.ndarray]  # conv layer name -> float32 (C, OH, OW), after ReLU; {} without one
    filters: np.ndarray | None  # float32 (C_out, 1, kH, kW): the first conv layer's weights; None without one


def look_inside(model, x, target=None):
    """Forward ``x`` (1, 1, H, W) through ``model`` (a ``Sequential``) and backprop the logit of
    class ``target`` (None: the top class) to the pixels.

    Returns ``(logits (K,), target, saliency (H, W), feature maps)``: saliency = d logits[target]
    / dx, and the feature maps {conv layer name: (C, OH, OW) after ReLU}, all in x's dtype (for
    a convolution followed by batch normalisation, after both: what the ReLU sees).
    """
    maps = {}
    out, last = x, None
    for layer in model.layers:
        out = layer.forward(out, train=False)
        if isinstance(layer, Conv2D):
            maps[layer.name] = np.maximum(out[0], 0)  # the feature maps after ReLU
        elif isinstance(layer, BatchNorm2D) and isinstance(last, Conv2D):
            maps[last.name] = np.maximum(out[0], 0)
        last = layer
    logits = out[0].copy()
    target = int(logits.argmax()) if target is None else target
    seed = np.zeros_like(out)
    seed[0, target] = 1.0  # dL/dlogits for L = logits[target]
    switches = [(layer, layer.compute_input_grad) for layer in model.layers
                if hasattr(layer, "compute_input_grad")]
    for layer, _ in switches:
        layer.compute_input_grad = True
    try:
        dx = model.backward(seed)
    finally:
        for layer, saved in switches:
            layer.compute_input_grad = saved
    return logits, target, np.ascontiguousarray(dx[0, 0]), maps


def explain(model, image, classes, k=TOP_K):
    """:class:`Explanation` of a uint8 (H, W) image of the model's input size (upright, light ink
    on dark)."""
    logits, _, saliency, maps = look_inside(model, to_float(np.asarray(image)[None]))
    proba = softmax(logits[None])
    top = [(classes[i], float(proba[0, i])) for i in top_k_indices(proba, k)[0]]
    conv = first_conv(model)
    filters = None if conv is None else conv.params["W"].copy()
    return Explanation(np.asarray(image), top, saliency, maps, filters)


def scaled_maps(maps):
    """Feature maps (C, H, W) >= 0, each divided by its own maximum (all-zero maps stay 0): how the
    page and :func:`save_explanation` show them."""
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


NO_CONVOLUTION = ("This network has no convolution:\nit reads the pixels as one flat list\n(Flatten, then "
                  "Dense layers),\nso it has no filters and no\nfeature maps to show.")


def save_explanation(explanation, path):
    """One PNG: the input, the top-5 bars, the saliency map, the first convolution's filters, and
    the feature maps of every convolution (two to a row), each with a caption saying what it is;
    for a network without a convolution, a note in place of the filters."""
    e = explanation
    rows = (len(e.feature_maps) + 1) // 2
    fig = new_figure(figsize=(13, 3.6 + 4.9 * rows))
    grid = fig.add_gridspec(1 + rows, 4, height_ratios=(1, *[1.35] * rows), hspace=0.35, wspace=0.3)
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(e.image, cmap="gray", vmin=0, vmax=255)
    ax.set_title(f"input: the {e.image.shape[0]}x{e.image.shape[1]} image the model sees", fontsize=10)
    ax.axis("off")
    _top_k(fig.add_subplot(grid[0, 1]), e.top_k)
    chars = [c for c, _ in e.top_k]

    ax = fig.add_subplot(grid[0, 2])
    limit = float(np.abs(e.saliency).max()) or 1.0
    ax.imshow(e.saliency, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(f"saliency: d logit({chars[0]}) / d pixel\nred: more ink raises the score, "
                 f"blue: lowers it", fontsize=9)
    ax.axis("off")

    ax = fig.add_subplot(grid[0, 3])
    if e.filters is None:
        ax.text(0.5, 0.5, NO_CONVOLUTION, ha="center", va="center", fontsize=9, transform=ax.transAxes)
        ax.axis("off")
    else:
        draw_filters(ax, e.filters)
        name = next(iter(e.feature_maps))
        ax.set_title(f"{name}'s {len(e.filters)} filters ({e.filters.shape[2]}x{e.filters.shape[3]})\n"
                     f"red: positive weight, blue: negative", fontsize=9)

    for i, (name, maps) in enumerate(e.feature_maps.items()):
        ax = fig.add_subplot(grid[1 + i // 2, 2 * (i % 2):2 * (i % 2) + 2])
        ax.imshow(tile(scaled_maps(maps), 5 if len(maps) <= 20 else 10), cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"{name} feature maps: {len(maps)} @ {maps.shape[1]}x{maps.shape[2]}, after ReLU\n"
                     f"(bright: the filter matched there; each map scaled to its own maximum)",
                     fontsize=9)
        ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def _top_k(ax, top_k):
    """The top-k bars, best on top."""
    chars, probs = zip(*top_k)
    ax.barh(range(len(chars)), probs, color="#3b78c3")
    ax.set_yticks(range(len(chars)), [repr(c)[1:-1] for c in chars], fontsize=11)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title(f"top {len(chars)}: {chars[0]!r} ({probs[0]:.1%})", fontsize=10)
