"""The notebooks in notebooks/ run top to bottom, and the committed ones carry a full run's outputs.

Each notebook runs in a fresh Jupyter kernel (nbclient, the runner nbmake uses) with
``TINYNET_QUICK=1``, the notebooks' quick mode (fewer, smaller training steps): a cell that raises
fails the test with the cell and its traceback. The kernel imports tinynet from this checkout.
"""

import os
from pathlib import Path

import pytest

NEEDS = "the notebook tests need the test extra: pip install -e '.[test]'"
nbformat = pytest.importorskip("nbformat", reason=NEEDS)
nbclient = pytest.importorskip("nbclient", reason=NEEDS)
pytest.importorskip("ipykernel", reason=NEEDS)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["backprop_by_hand.ipynb", "train_and_look_inside.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_quick_mode(path, monkeypatch):
    """Every cell runs without error in a new kernel started with TINYNET_QUICK=1."""
    monkeypatch.setenv("TINYNET_QUICK", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, when a cell raises
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_carries_a_full_runs_outputs(path):
    """The committed notebook was executed top to bottom, in full (not quick) mode, without error,
    so that it reads with its outputs on GitHub without running."""
    notebook = nbformat.read(path, as_version=4)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1)), \
        f"{path.name}: run it top to bottom in a new kernel before committing"
    outputs = [o for cell in cells for o in cell.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "quick run" not in text, f"{path.name}: committed with the outputs of a quick run"
    if path.stem == "train_and_look_inside":
        assert "full run" in text
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5, "the figures are missing"
