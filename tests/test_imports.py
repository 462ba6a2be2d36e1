"""Module boundaries: the package's folders stand on floors and import only downward (the maths
core, ``tinynet.nn``, imports nothing of tinynet's but ``tinynet.errors``, the floor below it); no import cycle among tinynet's modules; the
command lines (``tinynet.cli``) and the testing helpers (``tinynet.testing``) are leaves that no
library module imports; and ``import tinynet.predict.predictor`` (what a program that only predicts
needs) loads neither the training loop nor a command line. And the installed commands
``tinynet-train`` / ``tinynet-infer`` are ``train.py`` / ``inference.py``."""

import ast
import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tinynet
import tinynet.cli.infer
import tinynet.cli.main
import tinynet.cli.train

PACKAGE = Path(tinynet.__file__).resolve().parent
ROOT = Path(__file__).resolve().parents[1]
COMMAND_LINES = ("tinynet.cli", "tinynet.__main__")

# The floors of the package, lowest first: a module may import modules of its own folder and of the
# folders on lower floors, never of a folder on its own floor or above. ``tinynet`` itself (the
# package's face, which loads the public API lazily) may be imported from anywhere, for
# ``__version__``.
FLOORS = [
    ("errors",),                # TinynetError, the base of every error tinynet raises
    ("nn",),                    # the maths core: layers, kernels, reference, gradcheck, model, optim, step, parallel
    ("files",),                 # atomic writes, checked .npy reading, checkpoints, PNG plots
    ("datasets", "onnx"),       # IDX data, download, the sample; ONNX export and import
    ("predict",),               # Predictor, metrics, preprocessing, TTA, explanations
    ("training",),              # the trainer, its configuration, run logs, TensorBoard
    ("web",),                   # the two pages' servers
    ("cli", "testing"),         # the command lines; helpers for tests and benchmarks
    ("__main__",),              # python3 -m tinynet: the tinynet command
]
FLOOR = {folder: level for level, folders in enumerate(FLOORS) for folder in folders}


def module_name(path):
    parts = ("tinynet",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    """{module name: path} of every module of the tinynet package."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name, path, known):
    """The tinynet modules that module ``name`` imports, anywhere in its code (also inside
    functions): ``import tinynet.x``, ``from tinynet.x import y``, ``from .x import y`` and
    ``from . import x`` (an edge to ``tinynet.x`` when ``x`` is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "tinynet")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if target.split(".")[0] != "tinynet":
                continue
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known)
    return {m for m in found if m in known and m != name}


def import_graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}  # module -> "open" while on the current path, "done" afterwards

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def is_command_line(name):
    return any(name == c or name.startswith(c + ".") for c in COMMAND_LINES)


def test_the_import_graph_sees_the_package():
    """The parser finds the edges it should (so the tests below cannot pass by seeing nothing)."""
    graph = import_graph()
    assert {"tinynet.nn.model", "tinynet.nn.layers", "tinynet.cli.train", "tinynet.__main__"} <= graph.keys()
    assert "tinynet.nn.layers" in graph["tinynet.nn.model"]
    assert {"tinynet.training.trainer", "tinynet.cli"} <= graph["tinynet.cli.train"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def folder(name):
    """The folder (first part below ``tinynet``) of a module, or None for ``tinynet`` itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports(graph):
    """``(module, imported)`` pairs that break the floors: an import of another folder on the same
    floor or above."""
    bad = []
    for name, deps in graph.items():
        mine = folder(name)
        for dep in deps:
            theirs = folder(dep)
            if theirs is None or theirs == mine:
                continue
            if FLOOR[theirs] >= FLOOR[mine]:
                bad.append((name, dep))
    return sorted(bad)


def test_every_module_stands_on_a_floor():
    """Every folder (and top-level module) of the package is on a floor, so none escapes the rule."""
    unplaced = sorted({folder(name) for name in modules()} - set(FLOOR) - {None})
    assert not unplaced, f"folders of tinynet on no floor of FLOORS: {unplaced}"


def test_the_folders_import_only_downward():
    """The layering contract: each folder imports only folders below it, the maths core nothing."""
    graph = import_graph()
    assert not any(folder(dep) not in (None, "nn", "errors") for dep in set().union(*(
        deps for name, deps in graph.items() if folder(name) == "nn"))), \
        "tinynet.nn imports tinynet (other than tinynet.errors)"
    bad = upward_imports(graph)
    assert not bad, "imports against the floors: " + "; ".join(f"{a} -> {b}" for a, b in bad)


def test_the_floor_rule_catches_an_upward_import():
    graph = {"tinynet.nn.layers": {"tinynet.files.atomic"}, "tinynet.web.draw": {"tinynet.nn.model"},
             "tinynet.datasets.idx": {"tinynet.onnx.export"}, "tinynet.files.checkpoint": {"tinynet"}}
    assert upward_imports(graph) == [("tinynet.datasets.idx", "tinynet.onnx.export"),
                                     ("tinynet.nn.layers", "tinynet.files.atomic")]


def test_no_import_cycle_among_tinynet_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_library_module_imports_a_command_line_or_the_testing_helpers():
    def leaf(name):
        return is_command_line(name) or folder(name) == "testing"

    offenders = {name: sorted(filter(leaf, deps)) for name, deps in import_graph().items()
                 if not leaf(name)}
    offenders = {name: deps for name, deps in offenders.items() if deps}
    assert not offenders, f"library modules importing command lines: {offenders}"


def test_importing_inference_loads_neither_training_nor_a_command_line():
    code = ("import sys, tinynet.predict.predictor; "
            "print(' '.join(m for m in sys.modules if m.startswith('tinynet')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    loaded = proc.stdout.split()
    assert "tinynet.predict.predictor" in loaded
    unwanted = [m for m in loaded if m == "tinynet.training.trainer" or is_command_line(m)]
    assert not unwanted, f"import tinynet.predict.predictor also loaded {unwanted}"


COMMANDS = {"tinynet": tinynet.cli.main.main, "tinynet-train": tinynet.cli.train.main,
            "tinynet-infer": tinynet.cli.infer.main}


def test_pyproject_declares_the_commands_and_the_scripts_use_the_same_mains():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert declared == {"tinynet": "tinynet.cli.main:main", "tinynet-train": "tinynet.cli.train:main",
                        "tinynet-infer": "tinynet.cli.infer:main"}
    for script in ("train.py", "inference.py"):  # thin wrappers over the same functions
        tree = ast.parse((ROOT / script).read_text())
        imported = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    for a in n.names}
        assert imported == {("tinynet.cli.train" if script == "train.py" else "tinynet.cli.infer", "main")}


def test_installed_commands_run_the_command_line_mains(tmp_path):
    """The installed metadata's console scripts load the command lines' main functions. Read in a
    subprocess started outside the checkout, so that a stale ``tinynet.egg-info`` in the checkout
    (on sys.path as the current folder) cannot stand in for the installed metadata."""
    code = ("import importlib.metadata as m, tinynet.cli.infer, tinynet.cli.main, tinynet.cli.train\n"
            "mains = {'tinynet': tinynet.cli.main.main, 'tinynet-train': tinynet.cli.train.main,\n"
            "         'tinynet-infer': tinynet.cli.infer.main}\n"
            "for ep in m.entry_points(group='console_scripts'):\n"
            "    if ep.name in mains:\n"
            "        print(ep.name, ep.load() is mains[ep.name])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    if "No module named 'tinynet'" in proc.stderr:
        pytest.skip("tinynet is not installed (pip install -e .)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = dict(line.split() for line in proc.stdout.splitlines())
    assert found == {name: "True" for name in COMMANDS}, \
        "reinstall tinynet (pip install -e .) to get its commands"
    for name in COMMANDS:
        path = shutil.which(name)
        if path:  # on PATH (an activated environment): its --help is the command line's
            out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120,
                                 check=True).stdout
            assert out.startswith(f"usage: {name} ")
            if name == "tinynet":  # the subcommands are listed
                assert all(f"  {command} " in out for command in tinynet.cli.main.COMMANDS), out


# ------------------------------------------------------------------------------------- sizes

MAX_FUNCTION_LINES = 50
MAX_CLASS_LINES = 150


def code_lines(node):
    """Lines of a function or class, from its ``def``/``class`` line to its last, without the
    docstrings of it and of everything inside it."""
    lines = set(range(node.lineno, node.end_lineno + 1))
    for inner in ast.walk(node):
        body = getattr(inner, "body", None)
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                lines -= set(range(first.lineno, first.end_lineno + 1))
    return len(lines)


def oversized(tree, where):
    """``(where:line name, lines, limit)`` of each function over MAX_FUNCTION_LINES and each class
    over MAX_CLASS_LINES in a parsed module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            if code_lines(node) > limit:
                found.append((f"{where}:{node.lineno} {node.name}", code_lines(node), limit))
    return found


def test_no_function_over_50_lines_and_no_class_over_150():
    """Each long piece is cut where its jobs part (docstrings are not counted: they explain)."""
    found = [row for path in sorted(PACKAGE.rglob("*.py"))
             for row in oversized(ast.parse(path.read_text()), path.relative_to(PACKAGE.parent))]
    assert not found, "too long: " + "; ".join(f"{w} ({n} lines > {limit})" for w, n, limit in found)


def test_the_size_rule_counts_code_not_docstrings():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))  # + the def line: 50
    long_doc = '    """' + "\n    words" * 100 + '"""\n'
    assert oversized(ast.parse(f"def f():\n{long_doc}{body}\n"), "m") == []
    assert oversized(ast.parse(f"def f():\n{body}\n    return 1\n"), "m") == [("m:1 f", 51, 50)]


def outside_imports():
    """(file, module, name) for every ``from tinynet... import name`` and ``import tinynet...`` in the
    scripts outside the package and the tests: bench/, docs/ and notebooks/ (read as text: tests and
    benchmarks never import each other)."""
    for path in sorted([*ROOT.glob("bench/*.py"), *ROOT.glob("docs/*.py"), *ROOT.glob("notebooks/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tinynet":
                yield from ((path, node.module, a.name) for a in node.names)
            elif isinstance(node, ast.Import):
                yield from ((path, a.name, None) for a in node.names if a.name.split(".")[0] == "tinynet")


def test_the_scripts_beside_the_package_import_names_that_exist():
    """A move inside the package cannot leave a benchmark or a docs script importing a module or
    name that is gone (bench/speed.py's onnxruntime column once failed to start that way and its
    columns were skipped, not failed)."""
    missing = []
    found = list(outside_imports())
    for path, module, name in found:
        try:
            imported = importlib.import_module(module)
        except ImportError as e:
            missing.append(f"{path.relative_to(ROOT)}: {module} ({e})")
            continue
        if name is not None and not hasattr(imported, name) and \
                importlib.util.find_spec(f"{module}.{name}") is None:
            missing.append(f"{path.relative_to(ROOT)}: {module}.{name}")
    assert len(found) > 20 and not missing, missing
