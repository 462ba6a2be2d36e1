"""tinynet: a from-scratch NumPy + Numba neural-network library (LeNet on EMNIST).

The main API is importable from here (``from tinynet import Trainer, TrainConfig, Predictor``);
each name is loaded from its module when first used (PEP 562), so ``import tinynet`` stays cheap
and ``import tinynet.inference`` does not load the training loop. See ``docs/library.md``.
"""

import importlib

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    "lenet": "model", "build_model": "model", "Sequential": "model",
    "Predictor": "inference", "as_images": "inference",
    "Trainer": "training", "TrainConfig": "training", "ConfigError": "training",
    "TrainingError": "training", "train": "training", "RECIPES": "training",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "CheckpointError": "checkpoint",
    "load_sample": "data", "load_split": "data", "Split": "data", "DataError": "data",
    "check_layer": "gradcheck", "train_step": "step", "SGD": "optim",
    "DataParallel": "parallel", "preprocess_file": "preprocess",
    "export_onnx": "onnx_io", "load_onnx": "onnx_io",  # need the onnx extra when called
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
