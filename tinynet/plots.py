"""PNG plots of results people would rather see than read (matplotlib, no screen needed)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_curves(history, path):
    """Loss and accuracy against epoch, from metrics records: train, validation, the external
    validation set and the balanced validation accuracy when the records have them."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    curves = [("train", "train"), ("val", "validation")]
    if all("external_loss" in r for r in history):
        curves.append(("external", "external validation"))
    for key, label in curves:
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in history], marker="o", label=label)
        ax_acc.plot(epochs, [r[f"{key}_accuracy"] for r in history], marker="o", label=label)
    if all("val_balanced_accuracy" in r for r in history):
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
    plt.close(fig)


def plot_confusion(confusion, classes, path):
    """A K x K confusion matrix (rows: true class, columns: predicted), labelled with characters.

    Colours are row-normalised (the fraction of each true class), on a log scale so that the
    rare confusions stay visible next to the bright diagonal.
    """
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(12, 11))
    image = ax.imshow(np.log10(rates + 1e-3), cmap="viridis", vmin=-3, vmax=0)
    ax.set_xticks(range(k), classes, fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row-normalised, log10)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="log10(fraction of true class)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_image_grid(images, titles, path, columns=10):
    """A grid of upright uint8 (N, 28, 28) images with a title each, drawn light ink on dark."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
