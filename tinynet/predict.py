"""Batched prediction with a trained model (used by evaluation during training and by inference)."""

import numpy as np

from .data import to_float


def predict_logits(model, images, batch_size=1024):
    """Yields ``(start, logits)`` for consecutive batches of uint8 images (N, 28, 28), upright.

    Each batch is converted to float32 (N, 1, 28, 28) in [0, 1] only when it is used, so memory
    stays at one batch of floats whatever N is.
    """
    for start in range(0, len(images), batch_size):
        yield start, model.forward(to_float(images[start:start + batch_size]), train=False)


def softmax(logits):
    """Row-wise softmax probabilities (N, K), computed stably (maximum subtracted)."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(model, images, batch_size=1024):
    """Class probabilities (N, K) float32 for uint8 images (N, 28, 28)."""
    out = [softmax(logits) for _, logits in predict_logits(model, images, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.layers[-1].params["b"].size), np.float32)
