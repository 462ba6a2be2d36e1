"""Predicting with a trained model: ``Predictor`` and the bundled model (``predictor``), metrics
and reports (``metrics``), users' image files as EMNIST-style inputs (``preprocess``), test-time
augmentation (``tta``) and what the network sees (``explain``). Loads nothing of the training loop."""
