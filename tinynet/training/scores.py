"""How a run is scored and its progress shown: the running figures of the epoch under way
(:class:`EpochTally`) and its progress bar (:class:`EpochBar`), the validation, external and test
evaluations with each epoch's ``metrics.jsonl`` record and log line (:class:`Scores`), and the
summary a run ends with (:func:`run_summary`)."""

import time

from tqdm import tqdm

from ..predict.metrics import evaluate
from .config import BEST_BY


class EpochTally:
    """The current epoch's running sums in this process: images seen, correctly classified, summed
    loss, and when the epoch's first step was taken."""

    def __init__(self):
        self.seen = self.correct = 0
        self.loss_sum = 0.0
        self.start = time.perf_counter()

    def add(self, loss, correct, images):
        self.seen += images
        self.loss_sum += loss * images
        self.correct += correct

    def postfix(self):
        """The progress bar's running figures."""
        return {"loss": f"{self.loss_sum / self.seen:.4f}", "acc": f"{self.correct / self.seen:.4f}",
                "img_s": f"{self.seen / (time.perf_counter() - self.start):.0f}"}

    def totals(self):
        """``(train loss, train accuracy, seconds, images per second)`` of the epoch so far."""
        seconds = time.perf_counter() - self.start
        return (self.loss_sum / max(self.seen, 1), self.correct / max(self.seen, 1), seconds,
                self.seen / seconds if seconds else float("nan"))


class EpochBar:
    """An epoch's progress bar with its running figures, or nothing when ``show`` is False (not
    even a disabled tqdm: any tqdm starts tqdm's monitor thread for good)."""

    def __init__(self, show, total, done, description):
        self.bar = (tqdm(total=total, initial=done, unit="batch", leave=False, desc=description)
                    if show else None)

    def update(self, batch, tally):
        """One more batch done (``batch`` of the epoch so far), the figures of ``tally``."""
        if self.bar is not None:
            self.bar.update()
            if batch % 16 == 0:  # formatting them costs ~25 us: not every batch
                self.bar.set_postfix(**tally.postfix(), refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Scores:
    """The evaluations of a run whose model ``net`` predicts (a ``DataParallel``), on ``data``
    (a ``tinynet.training.data.RunData``) with ``config``."""

    def __init__(self, net, data, config):
        self.net, self.data, self.config = net, data, config

    def evaluate(self, images=None, labels=None):
        """``(loss, accuracy, balanced accuracy)`` on uint8 images (N, 28, 28) and their labels; by
        default on the validation split (NaN for an empty one)."""
        if images is None:
            images, labels = self.data.val_images, self.data.val_labels
        return evaluate(self.net, images, labels)

    def epoch_record(self, epoch, tally, lr):
        """The ``metrics.jsonl`` record of epoch ``epoch`` (1-based), which just ended: its
        training figures from ``tally``, the validation (and external) scores evaluated now."""
        train_loss, train_accuracy, seconds, images_per_second = tally.totals()
        val_loss, val_acc, val_bal = self.evaluate()
        record = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_accuracy,
                  "val_loss": val_loss, "val_accuracy": val_acc, "val_balanced_accuracy": val_bal,
                  "lr": lr, "seconds": seconds, "images_per_second": images_per_second}
        external = self.data.external
        if external is not None:
            record["external_loss"], record["external_accuracy"], _ = self.evaluate(external.images,
                                                                                    external.labels)
        return record

    def epoch_line(self, record):
        """The log line of an epoch's record."""
        config = self.config
        val = (f"val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.4f} "
               f"(balanced {record['val_balanced_accuracy']:.4f})" if len(self.data.val_labels)
               else "no validation split")
        ext = (f" | {config.val_dataset} loss {record['external_loss']:.4f} acc "
               f"{record['external_accuracy']:.4f}" if self.data.external is not None else "")
        return (f"epoch {record['epoch']}/{config.epochs}: train loss {record['train_loss']:.4f} "
                f"acc {record['train_accuracy']:.4f} | {val}{ext} | {record['seconds']:.1f} s, "
                f"{record['images_per_second']:.0f} images/s")

    def test_scores(self, history):
        """What the summary of a finished run adds: the test split's scores (evaluated now), which
        metric picked best.npz, and the external set's scores of the last epoch (these weights)."""
        test_loss, test_acc, test_bal = self.evaluate(self.data.test_images, self.data.test_labels)
        scores = {"best_by": BEST_BY[self.config.best_by], "test_loss": test_loss, "test_accuracy": test_acc,
                  "test_balanced_accuracy": test_bal}
        if self.data.external is not None and history:
            scores["external_loss"] = history[-1]["external_loss"]
            scores["external_accuracy"] = history[-1]["external_accuracy"]
        return scores

    def summary_line(self, summary):
        """The log line that ends a finished run."""
        ext = (f"; {self.config.val_dataset} accuracy {summary['external_accuracy']:.4f}"
               if "external_accuracy" in summary else "")
        return (f"test accuracy {summary['test_accuracy']:.4f} "
                f"(balanced {summary['test_balanced_accuracy']:.4f}, loss {summary['test_loss']:.4f})"
                f"{ext}; total time {summary['seconds']:.1f} s")


def run_summary(state, status, started, run_dir, **extra):
    """The summary of a run (``summary.json``, and what ``train`` returns): ``status``, the last
    epoch's accuracies, the best validation score, ``extra`` and the seconds since ``started``."""
    last = state["history"][-1] if state["history"] else {}
    return {"status": status, "run_dir": str(run_dir), "epochs_done": state["epoch"],
            "train_accuracy": last.get("train_accuracy"), "val_accuracy": last.get("val_accuracy"),
            "best_val_accuracy": state["best_val_accuracy"], **extra,
            "seconds": time.perf_counter() - started}
