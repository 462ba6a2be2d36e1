"""The training loop: minibatch SGD on the LeNet, with checkpoints, resume, logs and plots.

From Python (a notebook, say)::

    from tinynet.training import TrainConfig, train
    result = train(TrainConfig(data_dir="../shared/data/emnist-bymerge-resplit",
                               dataset="emnist-bymerge-resplit", epochs=2), "runs/try")
    result["test_accuracy"]

Each batch is one :func:`tinynet.step.train_step`; this module is everything around it. Its command
line is ``train.py`` (``tinynet.cli.train``). A run folder holds ``config.json``,
``metrics.jsonl`` (one JSON record per epoch), ``curves.png``, ``last.npz`` (after every epoch, and
when stopped with Ctrl-C), ``best.npz`` (best validation accuracy), ``summary.json`` and, at the
end, ``filters.png`` (conv1's learned filters).

Randomness: one seed makes a run repeatable. It chooses the validation split and is split
(``np.random.SeedSequence.spawn``) into independent generators for initialisation, shuffling,
augmentation and dropout; their states are saved in every checkpoint, so a resumed run continues
exactly as an uninterrupted one would have.
"""

import json
import math
import shutil
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from tqdm import tqdm

from .atomic import TEMP_PREFIX, atomic_write
from .augment import augment_batch
from .checkpoint import load_checkpoint, save_checkpoint
from .data import load_split, to_float, train_val_split
from .download import ensure_dataset
from .layers import Dropout, SoftmaxCrossEntropy
from .model import build_model
from .optim import SGD, learning_rate
from .parallel import DataParallel
from .plots import plot_curves, plot_filters
from .predict import evaluate
from .step import train_step

MIN_FREE_BYTES = 200 * 1024 * 1024


@dataclass
class TrainConfig:
    """Everything that defines a run. The defaults are the original recipe."""

    data_dir: str = "data"
    dataset: str = "emnist-balanced"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    augment: bool = False
    augment_strength: float = 1.0
    label_smoothing: float = 0.0
    dropout: float = 0.0
    init: str = "glorot"
    class_balance: str = "none"
    val_fraction: float = 0.1
    val_data: str | None = None
    val_dataset: str | None = None
    best_by: str = "val"
    seed: int = 0
    limit: int | None = None
    threads: int | None = None

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Named recipes: TrainConfig fields that differ from the defaults (the original recipe).
RECIPES = {
    "original": {},
    # Chosen on the validation split (README: "Accuracy"); every ingredient is a flag too.
    "strong": {"momentum": 0.9, "nesterov": True, "lr": 0.05, "lr_schedule": "one-cycle",
               "weight_decay": 5e-4, "init": "he", "augment": True, "label_smoothing": 0.1,
               "dropout": 0.25},
    # For handwriting the model never saw, with every class equally likely (README: "Accuracy"):
    # the strong recipe trained twice as long on class-balanced draws of the training set,
    # best.npz picked by balanced validation accuracy.
    "unseen": {"momentum": 0.9, "nesterov": True, "lr": 0.05, "lr_schedule": "one-cycle",
               "weight_decay": 5e-4, "init": "he", "augment": True, "label_smoothing": 0.1,
               "dropout": 0.25, "epochs": 40, "class_balance": "sample", "best_by": "val-balanced"},
}


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on (bad run folder, diverged loss); the message says why."""


def write_text_atomically(path, text):
    """Write text to ``path`` via a temporary file and a rename (never a half-written file)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def check_run_dir(run_dir, min_free_bytes=MIN_FREE_BYTES):
    """Create ``run_dir`` and make sure it is writable with room for checkpoints, before any training."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"{run_dir}: run folder is not writable ({e.strerror or e})") from None
    free = shutil.disk_usage(run_dir).free
    if free < min_free_bytes:
        raise TrainingError(f"{run_dir}: only {free / 2**20:.0f} MB free on this disk; a run needs at "
                            f"least {min_free_bytes / 2**20:.0f} MB for its checkpoints and logs")


class _StopFlag:
    """Turns the first Ctrl-C into a request to stop at the next batch; a second one aborts."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


class Callbacks:
    """Observers of a run (``train(..., callbacks=[...])``), e.g. the ``--watch`` recorder.

    A callback is any object with some of these methods; each gets the running trainer, whose
    attributes ``run_dir``, ``config``, ``model`` (the ``Sequential``; ``model.forward(x,
    train=False)`` predicts), ``classes``, ``val_images`` (uint8, upright), ``val_labels``,
    ``batches_per_epoch``, ``total_steps`` and ``state`` (``epoch``, ``step``, ``batch``) it may read
    and must not change:

    - ``on_start(trainer)``: before the first step (of this process: after a resume, too);
    - ``on_step(trainer, record)``: after every step, ``record`` = ``step`` (steps done), ``epoch``
      (1-based), ``batch`` (batches done in the epoch), ``loss`` and ``accuracy`` (of the batch),
      ``lr``, ``images`` (in the batch), ``seconds`` (since ``on_start``);
    - ``on_epoch(trainer, record)``: after each epoch, with its ``metrics.jsonl`` record;
    - ``on_end(trainer, summary)``: once, with ``summary["status"]`` ``finished``, ``interrupted``
      (Ctrl-C) or ``failed`` (diverged; ``summary["error"]`` says why).

    A callback never stops or changes training: one that raises is reported once through ``log``
    and dropped, and the run goes on as it would have without it.
    """

    def __init__(self, callbacks, log):
        self.callbacks = list(callbacks)
        self.log = log

    def __call__(self, event, *args):
        for cb in list(self.callbacks):
            method = getattr(cb, event, None)
            if method is None:
                continue
            try:
                method(*args)
            except Exception as e:  # noqa: BLE001: whatever an observer does wrong, training goes on
                self.callbacks.remove(cb)
                self.log(f"warning: {type(cb).__name__}.{event} failed ({type(e).__name__}: {e}); "
                         f"training goes on without it")


def _generators(seed):
    """Independent generators, all from one seed: init, shuffle, augment, dropout."""
    return dict(zip(("init", "shuffle", "augment", "dropout"),
                    (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))))


def train(config, run_dir, *, resume=False, download=True, progress=True, log=print, callbacks=()):
    """Train per ``config`` into ``run_dir``; with ``resume``, continue the run saved there.
    ``callbacks`` observe the run (see :class:`Callbacks`).

    Returns a summary dict (``status`` is ``"finished"`` or ``"interrupted"``, plus final metrics,
    ``test_accuracy`` and ``seconds``). Raises :class:`TrainingError` for a run that cannot start or
    that diverges, and ``tinynet.data.DataError`` for missing or bad data.
    """
    run_dir = Path(run_dir)
    if resume:
        config = _resume_config(run_dir, config)
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # innermost first
    check_run_dir(run_dir)
    for stale in run_dir.glob(f"{TEMP_PREFIX}*"):  # left by a run killed in the middle of a write
        stale.unlink(missing_ok=True)
    started = time.perf_counter()

    try:
        ensure_dataset(config.data_dir, config.dataset, download=download, out=log)
        train_split = load_split(config.data_dir, config.dataset, "train")
        test_split = load_split(config.data_dir, config.dataset, "test")
    except BaseException:  # no data, no run: remove the folders made above if still empty
        for folder in created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    train_idx, val_idx = train_val_split(train_split.labels, config.val_fraction, config.seed)
    if config.limit:
        train_idx = train_idx[:config.limit]
    images, labels = train_split.images, train_split.labels
    classes = train_split.classes
    external = None
    if config.val_data:
        ensure_dataset(config.val_data, config.val_dataset, download=download, splits=("test",), out=log)
        external = load_split(config.val_data, config.val_dataset, "test")
        if external.classes != classes:
            raise TrainingError(f"{config.val_dataset} in {config.val_data}: its classes do not match "
                                f"the training set's ({len(external.classes)} vs {len(classes)})")
    architecture = {"name": "lenet", "num_classes": len(classes), "dropout": config.dropout}
    if config.class_balance == "prior":
        architecture["class_prior"] = class_prior(labels[train_idx], len(classes)).tolist()

    rngs = _generators(config.seed)
    state = {"epoch": 0, "step": 0, "batch": 0, "history": [], "best_val_accuracy": -1.0}
    optimizer = SGD(config.lr, config.momentum, config.nesterov, config.weight_decay)
    order = None
    if resume:
        model, meta, velocity, extra = load_checkpoint(run_dir / "last.npz")
        if meta["architecture"] != architecture or meta["classes"] != list(classes):
            raise TrainingError(f"{run_dir / 'last.npz'}: checkpoint does not match the data "
                                f"({meta['architecture']} vs {architecture})")
        state, order = _restore(run_dir / "last.npz", meta, velocity, extra, optimizer, rngs, train_idx,
                                resampled=config.class_balance == "sample")
        if state["history"]:  # a kill between last.npz and these files may have left them behind
            _write_history(state["history"], run_dir)
        log(f"resuming {run_dir} at epoch {state['epoch'] + 1}, batch {state['batch']}")
    else:
        model = build_model(architecture, rngs["init"], init=config.init)
        write_text_atomically(run_dir / "config.json", json.dumps(asdict(config), indent=2) + "\n")
    for layer in model.layers:
        if isinstance(layer, Dropout):
            layer.rng = rngs["dropout"]
    net = DataParallel(model, config.threads)  # fixed slices of each batch, run by the threads

    loss_fn = SoftmaxCrossEntropy(config.label_smoothing)
    batches_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    total_steps = batches_per_epoch * config.epochs

    def checkpoint(path, order_to_save=None):
        meta = {"recipe": asdict(config), "training": state,
                "rng_state": {name: rng.bit_generator.state for name, rng in rngs.items()}}
        extra = None if order_to_save is None else {"order": order_to_save}
        save_checkpoint(path, model, architecture, classes, meta, optimizer.state_dict(), extra)

    log(f"training on {len(train_idx)} images of {config.dataset} ({len(classes)} classes), "
        f"validating on {len(val_idx)}, testing on {len(test_split.labels)}; run folder {run_dir}")
    status = "finished"
    notify = Callbacks(callbacks, log)
    trainer = SimpleNamespace(run_dir=run_dir, config=config, model=model, classes=classes,
                              val_images=images[val_idx], val_labels=labels[val_idx],
                              batches_per_epoch=batches_per_epoch, total_steps=total_steps, state=state)
    notify("on_start", trainer)
    clock = time.perf_counter()  # on_step's seconds
    with _StopFlag() as stop:
        while state["epoch"] < config.epochs:
            epoch = state["epoch"]
            if order is None:
                order = epoch_order(train_idx, labels, config.class_balance, rngs["shuffle"])
            seen = correct = 0
            loss_sum = 0.0
            epoch_start = time.perf_counter()
            bar = tqdm(total=batches_per_epoch, initial=state["batch"], disable=not progress,
                       desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
            while state["batch"] < batches_per_epoch:
                if stop.requested:
                    bar.close()
                    checkpoint(run_dir / "last.npz", order)
                    log(f"stopped by Ctrl-C at epoch {epoch + 1}, batch {state['batch']}; saved "
                        f"{run_dir / 'last.npz'}. Resume with: python3 train.py --resume {run_dir}")
                    summary = _summary(state, "interrupted", started, run_dir)
                    notify("on_end", trainer, summary)
                    return summary
                idx = order[state["batch"] * config.batch_size:(state["batch"] + 1) * config.batch_size]
                x, y = to_float(images[idx]), labels[idx]
                if config.augment:
                    x = augment_batch(x, rngs["augment"], config.augment_strength,
                                      net.map_rows)  # warped in the threads
                optimizer.lr = learning_rate(config.lr_schedule, config.lr, state["step"], total_steps)
                with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below
                    loss, logits = train_step(net, loss_fn, optimizer, x, y)
                if not math.isfinite(loss):
                    bar.close()
                    last = run_dir / "last.npz"
                    kept = (f"the last good checkpoint {last} (epoch {epoch}) is kept"
                            if last.exists() else "no checkpoint was written yet")
                    error = TrainingError(f"loss became {loss} at epoch {epoch + 1}, batch "
                                          f"{state['batch']} (step {state['step']}): training diverged; "
                                          f"{kept}. Try a lower --lr.")
                    notify("on_end", trainer, {"status": "failed", "error": str(error)})
                    raise error
                state["batch"] += 1
                state["step"] += 1
                seen += len(y)
                loss_sum += loss * len(y)
                batch_correct = int(np.sum(logits.argmax(axis=1) == y))
                correct += batch_correct
                notify("on_step", trainer, {
                    "step": state["step"], "epoch": epoch + 1, "batch": state["batch"], "loss": loss,
                    "accuracy": batch_correct / len(y), "lr": optimizer.lr, "images": len(y),
                    "seconds": time.perf_counter() - clock})
                bar.update()
                if progress and state["batch"] % 16 == 0:  # formatting it costs ~25 us: not every batch
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                                    img_s=f"{seen / (time.perf_counter() - epoch_start):.0f}",
                                    refresh=False)
            bar.close()
            seconds = time.perf_counter() - epoch_start
            val_loss, val_acc, val_bal = evaluate(net, images[val_idx], labels[val_idx])
            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                      "train_accuracy": correct / max(seen, 1), "val_loss": val_loss,
                      "val_accuracy": val_acc, "val_balanced_accuracy": val_bal, "lr": optimizer.lr,
                      "seconds": seconds, "images_per_second": seen / seconds if seconds else float("nan")}
            if external is not None:
                record["external_loss"], record["external_accuracy"], _ = evaluate(
                    net, external.images, external.labels)
            state["history"].append(record)
            state["epoch"] += 1
            state["batch"] = 0
            order = None
            score = record[BEST_BY[config.best_by]]
            if score > state["best_val_accuracy"] or math.isnan(score):
                state["best_val_accuracy"] = score
                checkpoint(run_dir / "best.npz")
            checkpoint(run_dir / "last.npz")
            _write_history(state["history"], run_dir)
            notify("on_epoch", trainer, record)
            val = (f"val loss {val_loss:.4f} acc {val_acc:.4f} (balanced {val_bal:.4f})" if len(val_idx)
                   else "no validation split")
            ext = (f" | {config.val_dataset} loss {record['external_loss']:.4f} acc "
                   f"{record['external_accuracy']:.4f}" if external is not None else "")
            log(f"epoch {epoch + 1}/{config.epochs}: train loss {record['train_loss']:.4f} "
                f"acc {record['train_accuracy']:.4f} | {val}{ext} | {seconds:.1f} s, "
                f"{record['images_per_second']:.0f} images/s")

    test_loss, test_acc, test_bal = evaluate(net, test_split.images, test_split.labels)
    extra = {"best_by": BEST_BY[config.best_by], "test_loss": test_loss, "test_accuracy": test_acc,
             "test_balanced_accuracy": test_bal}
    if external is not None:  # the last epoch scored these same final weights
        extra["external_loss"] = state["history"][-1]["external_loss"]
        extra["external_accuracy"] = state["history"][-1]["external_accuracy"]
    summary = _summary(state, status, started, run_dir, **extra)
    write_text_atomically(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot_filters(model.layers[0].params["W"], run_dir / "filters.png")  # conv1's, as trained
    notify("on_end", trainer, summary)
    ext = f"; {config.val_dataset} accuracy {extra['external_accuracy']:.4f}" if external is not None else ""
    log(f"test accuracy {test_acc:.4f} (balanced {test_bal:.4f}, loss {test_loss:.4f}){ext}; "
        f"total time {summary['seconds']:.1f} s")
    return summary


def class_prior(labels, num_classes):
    """The class frequencies of the training labels, every count at least 1 (no class gets prior
    0): what ``--class-balance prior`` stores in the checkpoint for its ``LogitAdjustment``."""
    counts = np.bincount(labels, minlength=num_classes)
    return np.maximum(counts, 1) / counts.sum()


def epoch_order(train_idx, labels, class_balance, rng):
    """The training images of one epoch, in order: a shuffle of ``train_idx``, or with
    ``class_balance="sample"`` as many draws (with replacement) in which every class is equally
    likely, the images of a class equally likely among themselves."""
    if class_balance != "sample":
        return rng.permutation(train_idx)
    counts = np.bincount(labels[train_idx])
    weights = 1.0 / counts[labels[train_idx]]
    return rng.choice(train_idx, size=len(train_idx), p=weights / weights.sum())


def _write_history(history, run_dir):
    """``metrics.jsonl`` (one record per epoch) and ``curves.png`` from the run's history."""
    write_text_atomically(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    plot_curves(history, run_dir / "curves.png")


# --best-by: which metric of an epoch's record picks best.npz
BEST_BY = {"val": "val_accuracy", "val-balanced": "val_balanced_accuracy", "external": "external_accuracy"}
HISTORY_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}


def _restore(path, meta, velocity, extra, optimizer, rngs, train_idx, resampled=False):
    """Put the training state saved in checkpoint ``path`` back: momentum into ``optimizer``, the
    random generators' states into ``rngs``. Returns ``(state, order)`` (order: the interrupted
    epoch's shuffled indices, or None). TrainingError if it is not a resumable state of this run."""
    def is_count(v):
        return type(v) is int and v >= 0

    try:
        state = meta["training"]
        if not isinstance(state, dict):
            raise TypeError(f"'training' is a {type(state).__name__}")
        bad = [k for k in ("epoch", "step", "batch") if not is_count(state[k])]
        if bad:
            raise ValueError(f"{bad[0]} is {state[bad[0]]!r}")
        if type(state["best_val_accuracy"]) not in (int, float):
            raise ValueError(f"best_val_accuracy is {state['best_val_accuracy']!r}")
        history = state["history"]
        if (not isinstance(history, list) or len(history) != state["epoch"]
                or not all(isinstance(r, dict) and HISTORY_KEYS <= r.keys() for r in history)):
            raise ValueError("history does not hold one record per epoch done")
        for name, rng in rngs.items():
            rng.bit_generator.state = meta["rng_state"][name]
        optimizer.load_state_dict(velocity)
    except (KeyError, TypeError, ValueError) as e:
        raise TrainingError(f"{path}: not a resumable training checkpoint ({type(e).__name__}: "
                            f"{' '.join(str(e).split())})") from None
    order = extra.get("order")
    if order is not None and (order.dtype.kind not in "iu" or order.shape != train_idx.shape or not (
            np.isin(order, train_idx).all() if resampled else np.array_equal(np.sort(order), train_idx))):
        raise TrainingError(f"{path}: its saved shuffling order is not "
                            f"{'drawn from' if resampled else 'a permutation of'} this run's "
                            f"{len(train_idx)} training images")
    return state, order


def _resume_config(run_dir, config):
    """The saved configuration of ``run_dir``; only ``epochs`` and ``threads`` may be changed."""
    path = run_dir / "config.json"
    if not (run_dir / "last.npz").is_file():
        raise TrainingError(f"{run_dir}: nothing to resume (no last.npz in that folder)")
    try:
        saved = TrainConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError) as e:  # AttributeError: JSON not an object
        raise TrainingError(f"{path}: cannot read the run's configuration ({e})") from None
    if config is not None:
        saved.epochs = config.epochs
        saved.threads = config.threads
    return saved


def _summary(state, status, started, run_dir, **extra):
    last = state["history"][-1] if state["history"] else {}
    return {"status": status, "run_dir": str(run_dir), "epochs_done": state["epoch"],
            "train_accuracy": last.get("train_accuracy"), "val_accuracy": last.get("val_accuracy"),
            "best_val_accuracy": state["best_val_accuracy"], **extra,
            "seconds": time.perf_counter() - started}
