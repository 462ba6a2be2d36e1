"""Regenerate every figure of tinynet's documentation (docs/img/*.png) from tinynet's own code.

    python3 docs/make_figures.py                       # the figures that need no data set
    python3 docs/make_figures.py --unseen DIR          # also the confused pairs of docs/accuracy.md
    python3 docs/make_figures.py --out DIR             # write somewhere else than docs/img/

Figures (each computed by the functions it illustrates, so a figure cannot drift from the code):

- ``im2col.png``: ``tinynet.nn.kernels.im2col_reference`` copies one receptive field into one row;
- ``col2im.png``: ``tinynet.nn.kernels.col2im_reference`` adds the rows back; on a matrix of ones it
  counts how many receptive fields hold each pixel;
- ``conv_input_gradient.png``: ``tinynet.nn.reference.Conv2D.backward`` at stride 2 equals a full
  correlation of the upstream gradient, dilated and padded (with the extra zeros at the bottom and
  right), with the flipped kernel;
- ``maxpool.png``: ``tinynet.nn.kernels.maxpool_forward_reference`` / ``maxpool_backward_reference``
  route each window's gradient to its winner (the first maximum on a tie; nothing when the fused
  ReLU clipped the window);
- ``batchnorm.png``: ``tinynet.nn.layers.BatchNorm1D`` on one feature of a batch of 8: the batch
  statistics, the normalised values and the output in training, and what its backward pass keeps
  of an upstream gradient (G less its mean and less its component along x̂);
- ``lenet.png``: the shapes of ``tinynet.nn.model.lenet()`` layer by layer, from a forward pass of a
  shipped sample image;
- ``confused_pairs.png`` (only with ``--unseen DIR``, the folder of the emnist-balanced-unseen
  set): the bundled model's most confused pairs on it. The committed PNG was made from that set
  (4,031 EMNIST-Balanced images from writers training never saw; see docs/accuracy.md).

Matplotlib is used through its object-oriented API (``Figure`` + ``FigureCanvasAgg``), so running
this script changes no global matplotlib state; PNGs are written without a "Software" tag and every
random draw is seeded, so re-running gives the same bytes with the same library versions.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a clone without installing

from tinynet.datasets.idx import load_split, to_float  # noqa: E402
from tinynet.datasets.load import load_sample  # noqa: E402
from tinynet.nn import reference  # noqa: E402
from tinynet.nn.layers import BatchNorm1D  # noqa: E402
from tinynet.nn.kernels import (col2im_reference, im2col_reference, maxpool_backward_reference,  # noqa: E402
                                maxpool_forward_reference)
from tinynet.nn.model import lenet  # noqa: E402

HIGHLIGHT = "#d62728"


def save(fig, path):
    """Write ``fig`` as a PNG with no varying metadata, so the bytes depend only on the picture."""
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    print(f"wrote {path}")


def draw_grid(ax, values, title, fmt="{:g}", cmap="Blues", vmin=None, vmax=None):
    """A 2-D array as a grid of coloured cells, each labelled with its value."""
    ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
    high = np.nanmax(values) if vmax is None else vmax
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=8,
                color="white" if high and v > 0.6 * high else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


def box(ax, row, col, height=1, width=1, color=HIGHLIGHT):
    """Outline cells [row, row + height) x [col, col + width) of an ``imshow`` grid."""
    ax.add_patch(Rectangle((col - 0.5, row - 0.5), width, height, fill=False, edgecolor=color,
                           linewidth=2.5))


def figure_im2col(out):
    """A 5x5 one-channel image, a 3x3 kernel at stride 1: 9 receptive fields become 9 rows of 9."""
    x = np.arange(1, 26, dtype=np.float64).reshape(1, 5, 5, 1)  # NHWC, as the kernels take it
    cols = im2col_reference(x, 3, 3, 1, 0)                     # (1*3*3, 3*3*1)
    oh, ow = 1, 2                                                # the receptive field drawn
    row = oh * 3 + ow
    fig = Figure(figsize=(9, 4))
    ax_x, ax_c = fig.subplots(1, 2, gridspec_kw={"width_ratios": [5, 9]})
    draw_grid(ax_x, x[0, :, :, 0], "input x (5x5), 3x3 kernel, stride 1")
    box(ax_x, oh, ow, 3, 3)
    draw_grid(ax_c, cols, "im2col(x): one row per output position (3x3 = 9 rows)")
    box(ax_c, row, 0, 1, 9)
    ax_c.set_yticks(range(9), [f"({r // 3},{r % 3})" for r in range(9)], fontsize=8)
    ax_c.set_ylabel("output position (r, q)")
    ax_c.set_xticks(range(9), [f"({k // 3},{k % 3})" for k in range(9)], fontsize=7)
    ax_c.set_xlabel("kernel offset (i, j)")
    fig.suptitle(f"The receptive field of output ({oh}, {ow}) becomes row {row}; "
                 "the convolution is then one matrix product, rows @ W2.T", fontsize=10)
    fig.tight_layout()
    save(fig, out / "im2col.png")


def figure_col2im(out):
    """col2im of a matrix of ones: how many receptive fields hold each pixel (6x6, 3x3 kernel),
    at stride 1 and at stride 2 with padding 1."""
    fig = Figure(figsize=(9, 4))
    axes = fig.subplots(1, 2)
    for ax, (stride, padding) in zip(axes, [(1, 0), (2, 1)]):
        shape = (1, 6, 6, 1)
        oh = (6 + 2 * padding - 3) // stride + 1
        ones = np.ones((oh * oh, 9))
        counts = col2im_reference(ones, shape, 3, 3, stride, padding)[0, :, :, 0]
        draw_grid(ax, counts, f"stride {stride}, padding {padding}: {oh}x{oh} outputs",
                  fmt="{:.0f}", cmap="Oranges", vmin=0, vmax=9)
    fig.suptitle("col2im adds every row back onto the pixels it was copied from:\n"
                 "on a matrix of ones, each 6x6 pixel counts the 3x3 receptive fields that hold it",
                 fontsize=10)
    fig.tight_layout()
    save(fig, out / "col2im.png")


def figure_conv_input_gradient(out):
    """The input gradient of a strided convolution as a full correlation: the upstream gradient G
    dilated by the stride, padded by k - 1 (and e more rows and columns at the bottom and right,
    e = (H_in + 2P - k) mod s), correlated with the flipped kernel; the result is checked against
    ``tinynet.nn.reference.Conv2D.backward`` before it is drawn."""
    h_in, k, s = 6, 3, 2
    conv = reference.Conv2D(1, 1, k, stride=s, rng=np.random.default_rng(0)).astype(np.float64)
    conv.params["W"] = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    x = np.zeros((1, 1, h_in, h_in))
    G = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    h_out = conv.forward(x).shape[2]
    dx = conv.backward(G)[0, 0]
    extra = (h_in - k) % s
    up = np.zeros((s * (h_out - 1) + 1,) * 2)
    up[::s, ::s] = G[0, 0]
    plus = np.pad(up, ((k - 1, k - 1 + extra), (k - 1, k - 1 + extra)))
    flipped = conv.params["W"][0, 0, ::-1, ::-1]
    full = np.array([[np.sum(plus[u:u + k, w:w + k] * flipped) for w in range(h_in)] for u in range(h_in)])
    if not np.array_equal(full, dx):
        raise AssertionError("the full correlation with the flipped kernel is not Conv2D.backward's dx")

    fig = Figure(figsize=(14, 4.2))
    axes = fig.subplots(1, 5, gridspec_kw={"width_ratios": [2, 3, 8, 3, 6]})
    draw_grid(axes[0], G[0, 0], "G (2x2)", cmap="Greens", vmin=0, vmax=6)
    draw_grid(axes[1], up, f"dilated by s = {s}:\n{s - 1} zero between entries", cmap="Greens",
              vmin=0, vmax=6)
    draw_grid(axes[2], plus, f"padded by k - 1 = {k - 1}, and {extra} more\nat the bottom and right",
              cmap="Greens", vmin=0, vmax=6)
    box(axes[2], k - 1, k - 1, len(up), len(up), color="#1f77b4")
    box(axes[2], len(plus) - extra, 0, extra, len(plus), color="#ff7f0e")
    box(axes[2], 0, len(plus) - extra, len(plus), extra, color="#ff7f0e")
    box(axes[2], 1, 2, k, k)
    draw_grid(axes[3], flipped, "W = 1, ..., 9 row by row,\nturned by 180 degrees", cmap="Purples",
              vmin=0, vmax=12)
    draw_grid(axes[4], dx, "dL/dx = Conv2D.backward(G)", cmap="Oranges", vmin=0, vmax=60)
    box(axes[4], 1, 2)
    for edge in range(h_in - extra, h_in):
        box(axes[4], edge, 0, 1, h_in, color="#ff7f0e")
        box(axes[4], 0, edge, h_in, 1, color="#ff7f0e")
    fig.suptitle(f"A 3x3 convolution at stride {s} on a {h_in}x{h_in} input ({h_out}x{h_out} outputs): its "
                 "input gradient is a full correlation of G, dilated and padded, with the flipped kernel.\n"
                 "Blue: the dilated G. Red: the window that gives the red output. Orange: rows and columns "
                 f"no window reaches (the last window ends at row {s * (h_out - 1) + k - 1}), "
                 "whose gradient is 0.",
                 fontsize=10)
    fig.tight_layout()
    save(fig, out / "conv_input_gradient.png")


def figure_maxpool(out):
    """2x2 max-pooling of a 4x4 input: a plain window, a tie, a window whose maximum is negative.
    Backward routes each window's upstream gradient to its winner; the fused ReLU version drops
    the gradient of a window whose maximum is not > 0."""
    x = np.array([[1.0, 3.0, 2.0, 2.0],
                  [0.5, 2.0, 0.0, 1.0],
                  [-1.0, -2.0, 4.0, 0.0],
                  [-3.0, -0.5, 1.0, 4.0]]).reshape(1, 4, 4, 1)
    dout = np.array([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 2, 2, 1)
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [4, 2, 4, 4]})
    draw_grid(axes[0], x[0, :, :, 0], "input x (4x4), windows 2x2", cmap="coolwarm", vmin=-4, vmax=4)
    _, argmax = maxpool_forward_reference(x, 2, 2)
    for flat in argmax.ravel():
        box(axes[0], flat // 4, flat % 4)
    axes[0].axhline(1.5, color="black", linewidth=1)  # the window borders
    axes[0].axvline(1.5, color="black", linewidth=1)
    draw_grid(axes[1], dout[0, :, :, 0], "upstream dout (2x2)", cmap="Greens", vmin=0, vmax=60)
    for ax, relu in ((axes[2], False), (axes[3], True)):
        _, argmax = maxpool_forward_reference(x, 2, 2, relu=relu)
        dx = maxpool_backward_reference(dout, argmax, x.shape)[0, :, :, 0]
        name = "ReLUMaxPool2D (fused)" if relu else "MaxPool2D"
        draw_grid(ax, dx, f"dx, {name}", cmap="Greens", vmin=0, vmax=60)
        ax.axhline(1.5, color="black", linewidth=1)
        ax.axvline(1.5, color="black", linewidth=1)
    fig.suptitle("Red: each window's winner. Top right: a tie (2, 2), the first in row-major order "
                 "wins. Bottom left: the maximum -0.5 < 0,\nso the fused ReLU outputs 0 and sends "
                 "no gradient. Bottom right: a tie of 4s, again the first wins.", fontsize=10)
    fig.tight_layout()
    save(fig, out / "maxpool.png")


def figure_lenet(out):
    """The LeNet's layers and output shapes, from a forward pass of one shipped sample image."""
    sample = load_sample()
    model = lenet(len(sample.classes), rng=np.random.default_rng(0))
    x = to_float(sample.images[:1])
    rows = [("input", "", x.shape, 0)]
    for layer in model.layers:
        x = layer.forward(x, train=False)
        n_params = sum(p.size for p in layer.params.values())
        rows.append((layer.name, type(layer).__name__, x.shape, n_params))
    fig = Figure(figsize=(9, 0.55 * len(rows) + 1.2))
    ax_img, ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 5]})
    ax_img.imshow(sample.images[0], cmap="gray")
    ax_img.set_title(f"input: '{sample.classes[sample.labels[0]]}'\n(1, 28, 28)", fontsize=9)
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    ax.set_xlim(0, 10)
    ax.set_ylim(len(rows), 0)
    ax.axis("off")
    ax.text(0.1, -0.2, "layer", fontsize=9, weight="bold")
    ax.text(2.0, -0.2, "class in tinynet.nn.layers", fontsize=9, weight="bold")
    ax.text(5.5, -0.2, "output shape (one image)", fontsize=9, weight="bold")
    ax.text(8.6, -0.2, "parameters", fontsize=9, weight="bold")
    for i, (name, kind, shape, n_params) in enumerate(rows):
        y = i + 0.5
        ax.add_patch(Rectangle((0, i + 0.1), 10, 0.8, facecolor="#eef3fb" if i % 2 else "#dde7f6",
                               edgecolor="none"))
        ax.text(0.1, y, name, va="center", fontsize=9, family="monospace")
        ax.text(2.0, y, kind, va="center", fontsize=9, family="monospace")
        ax.text(5.5, y, str(tuple(shape[1:])), va="center", fontsize=9, family="monospace")
        ax.text(8.6, y, f"{n_params:,}" if n_params else "", va="center", fontsize=9)
    total = sum(r[3] for r in rows)
    fig.suptitle(f"tinynet.nn.model.lenet(): {len(model.layers)} layers, {total:,} parameters "
                 "(ReLU and max-pool fused into ReLUMaxPool2D)", fontsize=10)
    fig.tight_layout()
    save(fig, out / "lenet.png")


def figure_confused_pairs(out, unseen_dir, pairs=12):
    """The bundled model on emnist-balanced-unseen: its most confused pairs as a confusion matrix
    over the classes involved (counts), and one misread image of each pair."""
    from tinynet.predict.predictor import BUNDLED_MODEL, Predictor
    from tinynet.predict.metrics import confusion_matrix, most_confused

    data = load_split(unseen_dir, "emnist-balanced-unseen", "test")
    predictor = Predictor.from_checkpoint(BUNDLED_MODEL, threads=1)
    predicted = predictor.predict(data.images)
    k = len(data.classes)
    confusion = confusion_matrix(data.labels, predicted, k)
    top = most_confused(confusion, pairs)
    involved = sorted({c for t, p, _ in top for c in (t, p)}, key=lambda c: data.classes[c])
    sub = confusion[np.ix_(involved, involved)]
    names = [data.classes[c] for c in involved]
    mistakes = int(len(data.labels) - np.trace(confusion))
    in_pairs = sum(n for _, _, n in top)

    fig = Figure(figsize=(11, 6.2))
    grid = fig.add_gridspec(2, pairs // 2, height_ratios=[1, 1], width_ratios=[1] * (pairs // 2),
                            left=0.04, right=0.98, wspace=0.3)
    ax = fig.add_subplot(grid[:, : pairs // 2 - 2])
    rates = sub / np.maximum(confusion[involved].sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(sub):
        if v:
            ax.text(c, r, str(v), ha="center", va="center", fontsize=8,
                    color="white" if rates[r, c] > 0.6 else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"counts among the classes of the {pairs} most confused pairs", fontsize=9)
    for i, (t, p, n) in enumerate(top[:4]):
        cell = fig.add_subplot(grid[i // 2, pairs // 2 - 2 + i % 2])
        wrong = np.flatnonzero((data.labels == t) & (predicted == p))
        cell.imshow(data.images[wrong[0]], cmap="gray")
        cell.set_title(f"true '{data.classes[t]}' read '{data.classes[p]}'\n({n} times)", fontsize=9)
        cell.set_xticks([])
        cell.set_yticks([])
    fig.suptitle(f"The bundled model on emnist-balanced-unseen ({len(data.labels):,} images): "
                 f"{mistakes} mistakes, {in_pairs} of them in these {pairs} pairs", fontsize=10)
    save(fig, out / "confused_pairs.png")


def figure_batchnorm(out):
    """BatchNorm1D in training on one feature of 8 samples: forward (x, its mean and spread; x̂;
    z = gamma x̂ + beta) and backward (G and the dx the layer returns, scaled by s / gamma)."""
    rng = np.random.default_rng(7)
    layer = BatchNorm1D(1).astype(np.float64)
    layer.params["gamma"][:] = 1.5
    layer.params["beta"][:] = -0.5
    x = rng.normal(3.0, 2.0, (8, 1))
    z = layer.forward(x, train=True)
    _, x_hat, inv_std = layer.cache
    G = rng.standard_normal((8, 1))
    dx = layer.backward(G)
    n = np.arange(8)
    mean, std = x.mean(), x.std()

    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    ax.axhspan(mean - std, mean + std, color="#c6dbef", label=r"$\bar x \pm \sigma$")
    ax.axhline(mean, color="#1f5fa8", linewidth=1)
    ax.plot(n, x[:, 0], "o", color="#1f5fa8", label="$x_n$")
    ax.set_title(f"one feature, a batch of 8: mean {mean:.2f}, std {std:.2f}", fontsize=9)
    ax.set_xlabel("sample n")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.plot(n, x_hat[:, 0], "o", color="#1f5fa8", label=r"$\hat x_n$: mean 0, variance ~1")
    ax.plot(n, z[:, 0], "s", color=HIGHLIGHT, label=r"$z_n = \gamma \hat x_n + \beta$ ($\gamma$ 1.5, $\beta$ -0.5)")
    ax.set_title("forward (training): normalise, then scale and shift", fontsize=9)
    ax.set_xlabel("sample n")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[2]
    scaled = dx[:, 0] / (layer.params["gamma"][0] * inv_std[0])
    ax.bar(n - 0.2, G[:, 0], 0.4, color="#9bbbe0", label="upstream $G_n$")
    ax.bar(n + 0.2, scaled, 0.4, color=HIGHLIGHT, label=r"$dx_n \cdot s / \gamma$")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_title(rf"backward: $\Sigma\, dx$ = {dx.sum():.0e}, $\Sigma\, dx\,\hat x$ = {(dx * x_hat).sum():.0e} "
                 r"(from $\varepsilon_{BN}$)", fontsize=9)
    ax.set_xlabel("sample n")
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(r"Batch normalisation: $dx = \frac{\gamma}{N s}(N G - \Sigma G - \hat x\, \Sigma G \hat x)$ keeps "
                 r"G less its mean and less its part along $\hat x$", fontsize=10)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.8, bottom=0.14, wspace=0.22)
    save(fig, out / "batchnorm.png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img",
                   help="folder to write the PNGs to (default: docs/img)")
    p.add_argument("--unseen", type=Path, metavar="DIR", default=None,
                   help="folder of the emnist-balanced-unseen set: also draw confused_pairs.png")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    figure_im2col(args.out)
    figure_col2im(args.out)
    figure_conv_input_gradient(args.out)
    figure_maxpool(args.out)
    figure_lenet(args.out)
    figure_batchnorm(args.out)
    if args.unseen is None:
        print("skipped confused_pairs.png: it needs --unseen DIR (the emnist-balanced-unseen set)")
    else:
        figure_confused_pairs(args.out, args.unseen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
