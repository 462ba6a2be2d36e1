"""The notebooks in notebooks/ and their worked solutions in notebooks/solutions/ run top to bottom,
the committed ones carry a full run's outputs, and every exercise's check cell says what it should.

Each notebook runs in a fresh Jupyter kernel (nbclient, the runner nbmake uses) with
``TINYNET_QUICK=1``, the notebooks' quick mode (fewer, smaller training steps): a cell that raises
fails the test with the cell and its traceback. The kernel imports tinynet from this checkout.

The exercises: each is followed by a check cell (a code cell tagged ``check``) that calls a
function of notebooks/checks.py. In a notebook, with the answers left as stubs, every check cell
must say "not done yet"; in its solutions notebook, where the answers are written, the same check
cells (the same code, in the same order) must say "right".
"""

import os
import re
from pathlib import Path

import pytest

NEEDS = "the notebook tests need the test extra: pip install -e '.[test]'"
nbformat = pytest.importorskip("nbformat", reason=NEEDS)
nbclient = pytest.importorskip("nbclient", reason=NEEDS)
pytest.importorskip("ipykernel", reason=NEEDS)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
ALL = NOTEBOOKS + SOLUTIONS


def name(path):
    return path.relative_to(ROOT / "notebooks").with_suffix("").as_posix()


def check_cells(notebook):
    return [cell for cell in notebook.cells if "check" in cell.metadata.get("tags", [])]


def verdicts(cell):
    """The verdict of each check a check cell ran: "right", "not yet" or "not done"."""
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    found = []
    for line in text.splitlines():
        if ": not done yet" in line:
            found.append("not done")
        elif ": not yet:" in line:
            found.append("not yet")
        elif line.endswith(": right"):
            found.append("right")
    return found


def expected_verdict(path):
    return "right" if path.parent.name == "solutions" else "not done"


def test_there_are_notebooks():
    names = ["backprop_by_hand.ipynb", "build_a_layer.ipynb", "optimise_and_initialise.ipynb",
             "train_and_look_inside.ipynb"]
    assert [p.name for p in NOTEBOOKS] == names
    assert [p.name for p in SOLUTIONS] == names, "each notebook's exercises have their worked solutions"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_solutions_run_the_same_check_cells(solution):
    """A solutions notebook holds every check cell of its notebook, the same code in the same order,
    and every exercise of the notebook has one."""
    notebook = solution.parents[1] / solution.name
    exercises = nbformat.read(notebook, as_version=4)
    solutions = nbformat.read(solution, as_version=4)
    ours = [cell.source for cell in check_cells(exercises)]
    assert ours, f"{notebook.name} has no check cells"
    assert ours == [cell.source for cell in check_cells(solutions)]
    headings = [line for cell in exercises.cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines() if line.startswith("### Exercise")]
    assert len(headings) == len(ours), f"{notebook.name}: {len(headings)} exercises, {len(ours)} check cells"


@pytest.mark.parametrize("path", ALL, ids=name)
def test_notebook_runs_in_quick_mode(path, monkeypatch):
    """Every cell runs without error in a new kernel started with TINYNET_QUICK=1, and every check
    cell says "not done yet" (a notebook's stubs) or "right" (its solutions)."""
    monkeypatch.setenv("TINYNET_QUICK", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, when a cell raises
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    for cell in check_cells(notebook):
        said = verdicts(cell)
        assert said and set(said) == {expected_verdict(path)}, f"{name(path)}: {cell.source!r} said {said}"


@pytest.mark.parametrize("path", ALL, ids=name)
def test_committed_notebook_carries_a_full_runs_outputs(path):
    """The committed notebook was executed top to bottom, in full (not quick) mode, without error,
    so that it reads with its outputs on GitHub without running."""
    notebook = nbformat.read(path, as_version=4)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1)), \
        f"{name(path)}: run it top to bottom in a new kernel before committing"
    outputs = [o for cell in cells for o in cell.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "quick run" not in text, f"{name(path)}: committed with the outputs of a quick run"
    if path.parent.name == "notebooks" and "TINYNET_QUICK" in "".join(c.source for c in cells):
        assert "full run" in text
    if name(path) == "train_and_look_inside":
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5, "the figures are missing"
    for cell in check_cells(notebook):
        said = verdicts(cell)
        assert said and set(said) == {expected_verdict(path)}, f"{name(path)}: {cell.source!r} said {said}"


def test_notebooks_draw_without_pyplot():
    """Figures through matplotlib's object-oriented API (a Figure shown as a PNG), never pyplot, whose
    global state and backend a notebook would otherwise change for the whole kernel."""
    sources = {name(p): "".join(c.source for c in nbformat.read(p, as_version=4).cells) for p in ALL}
    pyplot = re.compile(r"matplotlib\.pyplot|from matplotlib import pyplot|\bplt\.")
    assert not [n for n, source in sources.items() if pyplot.search(source)]
    assert sum("Figure(" in source for source in sources.values()) >= 4


def test_verdicts_are_read_from_the_check_output():
    """verdicts() tells the three answers apart (a regex gone wrong would pass every notebook)."""
    cell = nbformat.v4.new_code_cell("check(f)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "Exercise 1 (a): right\nExercise 2 (b): not yet: f(x) differs from g: relative error 1e-01\n"
        "Exercise 3 (c): not done yet. Write your answer in the cell above\n"))]
    assert verdicts(cell) == ["right", "not yet", "not done"]
