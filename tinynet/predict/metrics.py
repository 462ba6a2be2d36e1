"""Prediction and its metrics: batched logits and probabilities, loss and accuracy, top-k, the
confusion matrix and per-class precision / recall / F1 (used by training's evaluation and by
inference)."""

import math

import numpy as np

from ..datasets.idx import to_float
from ..nn.layers import SoftmaxCrossEntropy, check_labels, softmax

CONFUSED_PAIRS = 10  # most confused pairs in a report


def predict_logits(model, images, batch_size=1024):
    """Yields ``(start, logits)`` for consecutive batches of uint8 images (N, H, W), upright
    (one empty batch for no images: the model answers it with logits (0, K)).

    Each batch is converted to float32 (N, 1, H, W) in [0, 1] only when it is used, so memory
    stays at one batch of floats whatever N is.
    """
    for start in range(0, max(len(images), 1), batch_size):
        yield start, model.forward(to_float(images[start:start + batch_size]), train=False)


def predict_proba(model, images, batch_size=1024):
    """Class probabilities (N, K) float32 for uint8 images (N, H, W); (0, K) for no images."""
    return np.concatenate([softmax(logits) for _, logits in predict_logits(model, images, batch_size)])


def evaluate(model, images, labels, batch_size=256):
    """Mean cross-entropy loss, accuracy and balanced accuracy (the mean of the classes' recalls:
    the accuracy the model would have if every class were equally frequent) of ``model`` on uint8
    images (N, H, W).

    In batches of 256 images (the evaluation pass builds its im2col matrices a few images at a
    time, so its scratch memory does not grow with the batch)."""
    if len(labels) == 0:
        return float("nan"), float("nan"), float("nan")
    loss = SoftmaxCrossEntropy()
    total_loss = 0.0
    hit = np.zeros(len(labels), dtype=bool)
    for start, logits in predict_logits(model, images, batch_size):
        y = labels[start:start + len(logits)]
        total_loss += loss.forward(logits, y) * len(y)
        hit[start:start + len(y)] = logits.argmax(axis=1) == y
    counts = np.bincount(labels)
    recall = np.bincount(labels, weights=hit) / np.maximum(counts, 1)
    return total_loss / len(labels), float(hit.mean()), float(recall[counts > 0].mean())


def top_k_indices(proba, k):
    """Class indices int64 (N, k) of the k highest probabilities in proba (N, K), best first
    (ties: lower index first, so column 0 is ``proba.argmax(axis=1)``)."""
    return np.argsort(-proba, axis=1, kind="stable")[:, :k]


def top_k_accuracy(proba, labels, k):
    """Fraction of rows of proba (N, K) whose true label (N,) is among its k best classes (NaN
    for no rows)."""
    labels = check_labels(labels, proba.shape[1], len(proba))
    if not len(labels):
        return math.nan
    return float((top_k_indices(proba, k) == labels[:, None]).any(axis=1).mean())


def confusion_matrix(labels, predicted, num_classes):
    """Counts int64 (K, K): row = true class, column = predicted class (all 0 for no labels).
    ArgumentError for a label or prediction outside [0, K)."""
    k = num_classes
    labels = check_labels(labels, k)
    predicted = check_labels(predicted, k, len(labels))
    return np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)


def per_class_metrics(confusion):
    """Precision, recall, F1 (float64 (K,) each, 0 where undefined) and support (int64 (K,))
    from a confusion matrix (K, K)."""
    hits = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return precision, recall, f1, support


def most_confused(confusion, n=CONFUSED_PAIRS):
    """The n largest off-diagonal counts as ``(true, predicted, count)``, largest first."""
    off = confusion - np.diag(np.diag(confusion))
    order = np.argsort(-off, axis=None, kind="stable")[:n]
    return [(int(t), int(p), int(off[t, p])) for t, p in zip(*np.unravel_index(order, off.shape))
            if off[t, p] > 0]


def format_report(confusion, classes, topk_accuracy, k):
    """The evaluation report (text) of a confusion matrix (K, K) with characters ``classes`` (its
    figures NaN for a matrix of no images)."""
    precision, recall, f1, support = per_class_metrics(confusion)
    total, hits, present = support.sum(), np.trace(confusion), support > 0
    accuracy = hits / total if total else math.nan
    balanced = recall[present].mean() if total else math.nan
    lines = [f"accuracy        {accuracy:.4f}  ({hits} of {total})",
             f"balanced acc.   {balanced:.4f}  (mean recall: every class counted equally)",
             f"top-{k} accuracy  {topk_accuracy:.4f}", "",
             f"{'class':>12}  precision  recall      f1  support"]
    lines += [f"{c:>12}  {p:9.4f}  {r:6.4f}  {f:6.4f}  {s:7d}"
              for c, p, r, f, s in zip(classes, precision, recall, f1, support)]
    for name, weights in (("macro", present * 1.0), ("weighted", support * 1.0)):
        p, r, f = (np.average(v, weights=weights) if total else math.nan for v in (precision, recall, f1))
        lines.append(f"{name + ' avg':>12}  {p:9.4f}  {r:6.4f}  {f:6.4f}  {total:7d}")
    lines += ["", "most confused (true -> predicted: count, share of the true class)"]
    lines += [f"  {classes[t]} -> {classes[p]}: {n} ({n / support[t]:.1%})"
              for t, p, n in most_confused(confusion)]
    return "\n".join(lines)
