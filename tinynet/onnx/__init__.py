"""ONNX export and import (needs the optional ``onnx`` package: ``pip install "tinynet[onnx]"``):
``export`` writes a tinynet model as an ONNX graph, one small writer per layer class; ``importer``
reads an ONNX file back as a tinynet model, walking its chain of nodes and handing each to its
operator's translator (``ops``), whose layer specs ``build`` makes the model of; ``tensors`` reads
the file's tensors after checking them; ``common`` holds what both directions share (``OnnxError``,
the graph's names, the import limits).

The public names are here: ``to_onnx``, ``save_onnx``, ``export_onnx``, ``load_onnx`` and
``OnnxError``. Importing this package does not import ``onnx``; its functions do, when called."""

from .common import OnnxError
from .export import export_onnx, save_onnx, to_onnx
from .importer import load_onnx

__all__ = ["OnnxError", "export_onnx", "load_onnx", "save_onnx", "to_onnx"]
