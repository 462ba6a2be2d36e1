"""tinynet: a from-scratch NumPy + Numba neural-network library (LeNet on EMNIST)."""

__version__ = "0.1.0"
