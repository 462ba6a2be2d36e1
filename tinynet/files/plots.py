"""PNG plots of results people would rather see than read (matplotlib, no screen needed).

Drawn with matplotlib's object-oriented API (a ``Figure`` of its own, saved with ``savefig``), never
pyplot: no backend is chosen and no global figure is made, so a notebook's own figures and backend
stay as they were."""

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def new_figure(**kwargs):
    """A ``Figure`` outside pyplot (saved with ``fig.savefig``; garbage-collected, nothing to close)."""
    return Figure(**kwargs)


def plot_curves(history, path):
    """Loss and accuracy against epoch, from metrics records: train, validation (unless every
    value is NaN: no validation split), the external validation set and the balanced validation
    accuracy when the records have them."""
    epochs = [r["epoch"] for r in history]
    fig = new_figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    has_val = not all(np.isnan(r["val_loss"]) for r in history)
    curves = [("train", "train")] + [("val", "validation")] * has_val
    if all("external_loss" in r for r in history):
        curves.append(("external", "external validation"))
    for key, label in curves:
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in history], marker="o", label=label)
        ax_acc.plot(epochs, [r[f"{key}_accuracy"] for r in history], marker="o", label=label)
    if has_val and all("val_balanced_accuracy" in r for r in history):
        ax_acc.plot(epochs, [r["val_balanced_accuracy"] for r in history], marker=".", linestyle="--",
                    label="validation, balanced")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_confusion(confusion, classes, path):
    """A K x K confusion matrix (rows: true class, columns: predicted), labelled with characters.

    Colours are row-normalised (the fraction of each true class), on a log scale so that the
    rare confusions stay visible next to the bright diagonal.
    """
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    fig = new_figure(figsize=(12, 11))
    ax = fig.subplots()
    image = ax.imshow(np.log10(rates + 1e-3), cmap="viridis", vmin=-3, vmax=0)
    ax.set_xticks(range(k), classes, fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row-normalised, log10)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="log10(fraction of true class)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_image_grid(images, titles, path, columns=10):
    """A grid of upright uint8 (N, 28, 28) images with a title each, drawn light ink on dark."""
    rows = max(1, -(-len(images) // columns))
    fig = new_figure(figsize=(columns * 1.2, rows * 1.4))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def signed_unit(a):
    """``(a / max |a|, max |a|)``: an array scaled into [-1, 1] (unchanged when it is all 0),
    rounded to 3 decimals, as nested lists; and the scale."""
    a = np.asarray(a, dtype=np.float64)  # float32 values would print with ~17 digits
    scale = float(np.abs(a).max())
    return np.round(a / (scale or 1.0), 3).tolist(), scale


def tile(maps, columns, pad=1):
    """Maps (N, H, W) laid out ``columns`` to a row in one float (rows*(H+pad)-pad, ...) array, NaN
    between and after them (drawn blank), for showing many small maps with one ``imshow``."""
    n, h, w = maps.shape
    rows = max(1, -(-n // columns))
    out = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad), np.nan)
    for i, m in enumerate(maps):
        r, c = divmod(i, columns)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = m
    return out


def draw_filters(ax, weights, columns=5):
    """conv weights (C_out, 1, kH, kW) as a grid of signed pictures on ``ax``: red for positive
    weights (ink there excites the filter), blue for negative, one colour scale for all."""
    limit = float(np.abs(weights).max()) or 1.0
    ax.imshow(tile(weights[:, 0], columns), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.axis("off")


def plot_filters(weights, path):
    """conv1's filters (C_out, 1, kH, kW) as one PNG (see :func:`draw_filters`)."""
    fig = new_figure(figsize=(5, 4.4))
    ax = fig.subplots()
    draw_filters(ax, weights)
    ax.set_title(f"conv1's {len(weights)} learned {weights.shape[2]}x{weights.shape[3]} filters\n"
                 f"(red: positive weight, blue: negative; white: 0)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
