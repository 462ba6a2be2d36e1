"""What a training run tells the world and hears from it: the callbacks that observe it
(:class:`Callbacks`, e.g. the ``--watch`` recorder) and Ctrl-C (:class:`StopFlag`), caught only
while :meth:`Trainer.fit` runs, in the main thread."""

import signal
import threading


class StopFlag:
    """Turns the first Ctrl-C into a request to stop at the next batch; a second one aborts."""

    def __init__(self):
        self.requested = False
        self.installed = False

    def __enter__(self):
        # Python only lets the main thread set signal handlers; elsewhere Ctrl-C is not caught.
        self.installed = threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self.installed and self.previous is not None:  # None: set outside Python, cannot be put back
            signal.signal(signal.SIGINT, self.previous)


class Callbacks:
    """Observers of a run (``train(..., callbacks=[...])``), e.g. the ``--watch`` recorder.

    A callback is any object with some of these methods; each gets the running :class:`Trainer`, whose
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
