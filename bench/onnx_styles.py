"""Which of PyTorch's ONNX export styles tinynet imports, and how closely the import agrees with
onnxruntime running the same file, on the 3,760 real images of the shipped sample.

Needs PyTorch (a dev install, never a dependency: ``pip install torch==2.13.0 onnxscript``; the
dynamo exporter, PyTorch's default since 2.9, needs onnxscript) and tinynet's onnx extra::

    python3 bench/onnx_styles.py                 # the table docs/onnx.md shows
    python3 bench/onnx_styles.py --json out.json # also every row as JSON

Networks: the bundled LeNet (its trained weights copied into PyTorch, flattened with
``x.view(x.size(0), -1)``), an MLP (LeNet-300-100), a net of stride-2 padded convolutions without
pooling, and a net whose first dense layer is an explicit ``x @ W + b`` and whose last is
``nn.Linear(bias=False)``; all but the LeNet with PyTorch's initial weights (seed 0). Each is
exported in every style below; a row says whether tinynet imports the file (else its refusal), the
largest logit difference relative to the largest logit, ``max|tinynet - onnxruntime| /
max|onnxruntime|``, and for how many images both predict the same class.
"""

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

try:
    import onnxruntime as ort
    import torch
    from torch import nn
except ImportError as e:
    sys.exit(f"bench/onnx_styles.py needs PyTorch and onnxruntime ({e}): pip install torch==2.13.0 "
             f"onnxscript 'tinynet[onnx]'")

from tinynet.datasets.idx import to_float
from tinynet.datasets.load import load_sample
from tinynet.files.checkpoint import load_checkpoint
from tinynet.onnx import OnnxError, load_onnx
from tinynet.predict.predictor import BUNDLED_MODEL


class LeNet(nn.Module):
    """tinynet's LeNet in PyTorch, flattening as x.view(x.size(0), -1)."""

    def __init__(self, classes=47):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
        self.fc1, self.fc2 = nn.Linear(800, 500), nn.Linear(500, classes)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.view(x.size(0), -1))))


def bundled_lenet():
    """The LeNet with the bundled model's weights (tinynet's dense W is (in, out): transposed)."""
    model, _, _, _ = load_checkpoint(BUNDLED_MODEL)
    state = model.state_dict()
    net = LeNet()
    with torch.no_grad():
        for name in ("conv1", "conv2", "fc1", "fc2"):
            W = state[f"{name}.W"]
            getattr(net, name).weight.copy_(torch.from_numpy(W.T.copy() if name.startswith("fc") else W))
            getattr(net, name).bias.copy_(torch.from_numpy(state[f"{name}.b"]))
    return net


class Strided(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32 * 7 * 7, 47)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 1))


class MatMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(torch.randn(784, 100) * 0.05)
        self.b = nn.Parameter(torch.randn(100) * 0.05)
        self.out = nn.Linear(100, 47, bias=False)

    def forward(self, x):
        return self.out(torch.relu(x.view(x.size(0), -1) @ self.W + self.b))


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, 47))


NETWORKS = {"LeNet (bundled weights)": bundled_lenet, "MLP 300-100": mlp,
            "stride-2 convs, padding, no pooling": Strided, "x @ W + b, Linear(bias=False)": MatMul}

STYLES = {  # name -> keyword arguments of torch.onnx.export(model, x, path, **kwargs)
    "dynamo (default): external data": {},
    "dynamo: external_data=False": {"external_data": False},
    "dynamo: dynamic batch": {"dynamic_shapes": ({0: "N"},)},
    "dynamo: optimize=False": {"optimize": False},
    "TorchScript: dynamic batch": {"dynamo": False, "input_names": ["input"],
                                   "dynamic_axes": {"input": {0: "N"}}},
    "TorchScript: fixed batch": {"dynamo": False},
    "TorchScript: opset 11": {"dynamo": False, "opset_version": 11, "input_names": ["input"],
                              "dynamic_axes": {"input": {0: "N"}}},
}


def onnxruntime_logits(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    batch = first.shape[0] if isinstance(first.shape[0], int) else 256
    return np.concatenate([session.run(None, {first.name: x[i:i + batch]})[0]
                           for i in range(0, len(x), batch)])


def row(net, style, kwargs, x, folder):
    """One network in one style: exported, imported, compared."""
    path = folder / "m.onnx"
    for old in folder.iterdir():
        old.unlink()
    if "dynamic_shapes" in kwargs:
        kwargs = {**kwargs, "dynamic_shapes": ({0: torch.export.Dim("N")},)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.from_numpy(x[:1]),), str(path), **kwargs)
    except Exception as e:
        return {"imported": False, "note": f"PyTorch could not export: {type(e).__name__}: {e}"[:200]}
    try:
        model, _ = load_onnx(path)
    except OnnxError as e:
        return {"imported": False, "note": str(e).split(": ", 1)[1][:200]}
    theirs = onnxruntime_logits(path, x)
    ours = np.concatenate([model.forward(x[i:i + 256], train=False) for i in range(0, len(x), 256)])
    return {"imported": True, "difference": float(np.abs(ours - theirs).max() / np.abs(theirs).max()),
            "same": int((ours.argmax(1) == theirs.argmax(1)).sum()), "images": len(x),
            "files": sorted(p.name for p in folder.iterdir())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write every row to this JSON file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x = to_float(load_sample().images)
    rows = []
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {len(x)} images\n")
    print("| network | export style | imported | max relative logit difference | same predictions |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for net_name, make in NETWORKS.items():
            net = make().eval()
            for style, kwargs in STYLES.items():
                result = {"network": net_name, "style": style, **row(net, style, kwargs, x, Path(tmp))}
                rows.append(result)
                if result["imported"]:
                    print(f"| {net_name} | {style} | yes | {result['difference']:.1e} | "
                          f"{result['same']:,} / {result['images']:,} |")
                else:
                    print(f"| {net_name} | {style} | no: {result['note']} | | |")
    if args.json:
        Path(args.json).write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
