"""Training runs: the ``Trainer`` and ``train`` (``trainer``), the checked configuration and its
value rules (``config``, ``values``), the live record of a run folder (``runlog``) and TensorBoard
files (``tensorboard``)."""
