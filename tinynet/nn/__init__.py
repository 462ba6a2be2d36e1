"""The maths core: layers with explicit forward and backward passes (``layers``) and their plain
NumPy twins (``reference``), the Numba kernels they run on (``kernels``), numerical gradient
checks (``gradcheck``), ``Sequential`` and the LeNet (``model``), SGD and learning-rate schedules
(``optim``), one training step (``step``) and the batch split over threads (``parallel``).

It imports nothing else of tinynet but ``tinynet.errors`` (the base of every error tinynet raises,
the floor below it): everything above it (data, training, prediction, the pages, ONNX) is built on
these modules, never the other way round.
"""
