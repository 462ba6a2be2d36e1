"""tinynet: a from-scratch NumPy + Numba neural-network library (LeNet on EMNIST).

The main API is importable from here (``from tinynet import Trainer, TrainConfig, Predictor``);
each name is loaded from its module when first used (PEP 562), so ``import tinynet`` stays cheap
and ``import tinynet.predict.predictor`` does not load the training loop. See ``docs/library.md``.
"""

import importlib

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    "TinynetError": "errors", "ArgumentError": "errors", "ClosedError": "errors",
    "lenet": "nn.model", "build_model": "nn.model", "Sequential": "nn.model",
    "check_layer": "nn.gradcheck", "train_step": "nn.step", "SGD": "nn.optim",
    "DataParallel": "nn.parallel",
    "load_checkpoint": "files.checkpoint", "save_checkpoint": "files.checkpoint",
    "CheckpointError": "files.checkpoint",
    "load_dataset": "datasets.load", "load_sample": "datasets.load", "load_split": "datasets.idx",
    "Split": "datasets.idx",
    "DataError": "datasets.idx",
    "Predictor": "predict.predictor", "as_images": "predict.predictor",
    "preprocess_file": "predict.preprocess",
    "Trainer": "training.trainer", "train": "training.trainer", "TrainConfig": "training.config",
    "RECIPES": "training.config", "ConfigError": "training.errors", "TrainingError": "training.errors",
    "export_onnx": "onnx.export", "load_onnx": "onnx.importer",  # need the onnx extra when called
}

__all__ = ["__version__", *_API]


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'tinynet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value  # found directly next time
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
