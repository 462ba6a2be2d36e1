"""ONNX export and import (needs the optional ``onnx`` package: ``pip install "tinynet[onnx]"``).
Importing this package does not import ``onnx``; its functions do, when called."""
