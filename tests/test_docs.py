"""The documentation stays true: every formula parses, every relative link leads to a file (and
heading), the README stays short, no page names a development-only path, and
``docs/make_figures.py`` regenerates the figures.

Formulas are checked with latex2mathml (a LaTeX-to-MathML converter): it raises on some faults
(a missing subscript, an unclosed environment or ``\\left``) and lets others through, so the
converted MathML is checked as well (unknown commands, fractions and scripts missing an argument)
and so are the braces. ``test_the_checks_catch_broken_formulas_and_links`` shows each check fails
on a broken input.
"""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from latex2mathml.converter import convert

from conftest import SHARED_DATA, require_dir

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200
DEVELOPMENT_PATHS = ("../shared", "/work/")

# Pages linked from README.md that other branches were writing when this test was written. A link
# to one of them may point nowhere only while it is listed here, and the listing must go as soon as
# the page exists (test_pending_pages_are_still_pending).
PENDING = set()


# ------------------------------------------------------------------------------------ formulas

def strip_fences(text):
    """Markdown without its fenced code blocks."""
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)


def strip_code(text):
    """Markdown without its fenced code blocks and inline code spans (whose dollars are not maths)."""
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", strip_fences(text), flags=re.S)


def math_blocks(text):
    """``(formula, display)`` for every ``$$...$$`` block and ``$...$`` span of a Markdown text.
    Raises ValueError for a ``$`` without its partner (a span must stay on one line)."""
    text = strip_code(text)
    found = []

    def display(m):
        found.append((m.group(1), True))
        return " "
    text = re.sub(r"\$\$(.+?)\$\$", display, text, flags=re.S)
    for line in text.splitlines():
        line = line.replace(r"\$", "")  # an escaped dollar is text
        spans = re.findall(r"\$([^$]+)\$", line)
        rest = re.sub(r"\$([^$]+)\$", "", line)
        if "$" in rest:
            raise ValueError(f"unmatched $ in line: {line.strip()}")
        found.extend((span, False) for span in spans)
    return found


ARITY = {"mfrac": 2, "msub": 2, "msup": 2, "msubsup": 3, "munder": 2, "mover": 2, "munderover": 3,
         "mroot": 2}


def formula_problems(latex):
    """What is wrong with one formula, as a list of messages (empty: it is fine)."""
    depth = 0
    for ch in re.sub(r"\\[{}]", "", latex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return ["a } closes no {"]
    if depth:
        return [f"{depth} unclosed {{"]
    try:
        mathml = convert(latex)
    except Exception as e:  # latex2mathml's own errors: missing scripts, unclosed environments, ...
        return [f"latex2mathml: {type(e).__name__} {e}"]
    problems = [f"unknown command {name}" for name in re.findall(r">(\\[A-Za-z]+)<", mathml)]
    for element in ET.fromstring(mathml).iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag in ARITY and len(element) != ARITY[tag]:
            problems.append(f"<{tag}> with {len(element)} arguments, expected {ARITY[tag]}")
    return problems


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_formula_parses(path):
    blocks = math_blocks(path.read_text(encoding="utf-8"))
    bad = [f"{'$$' if display else '$'}{latex.strip()[:80]}: {'; '.join(problems)}"
           for latex, display in blocks if (problems := formula_problems(latex))]
    assert not bad, f"{path.name}: broken formulas:\n" + "\n".join(bad)


def test_the_maths_page_has_formulas():
    """The parser finds the formulas it should (a regex gone wrong would check nothing)."""
    blocks = math_blocks((ROOT / "docs" / "backprop.md").read_text(encoding="utf-8"))
    assert sum(display for _, display in blocks) >= 20
    assert sum(not display for _, display in blocks) >= 50


# ------------------------------------------------------------------------------------ links

def slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    text = strip_fences(path.read_text(encoding="utf-8"))  # a heading's `code` counts in its anchor
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M)}


def link_problems(path, pending=()):
    """Relative links of a Markdown file whose file (or heading) does not exist."""
    problems = []
    text = strip_code(path.read_text(encoding="utf-8"))
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        where = (path.parent / file_part).resolve() if file_part else path
        relative = where.relative_to(ROOT).as_posix() if where.is_relative_to(ROOT) else str(where)
        if not where.exists():
            if relative not in pending:
                problems.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            problems.append(f"{target}: no heading #{anchor} in {where.name}")
    return problems


@pytest.mark.parametrize("path", MARKDOWN + [ROOT / "data" / "README.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(path):
    problems = link_problems(path, PENDING)
    assert not problems, f"{path.name}: broken links:\n" + "\n".join(problems)


def test_pending_pages_are_still_pending():
    landed = sorted(p for p in PENDING if (ROOT / p).exists())
    assert not landed, f"{landed} exist now: remove them from PENDING in tests/test_docs.py"


def test_the_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")} | {
        p for p in PENDING if p.startswith("docs/")}
    missing = sorted(p for p in pages if f"]({p}" not in readme)
    assert not missing, f"README.md does not link {missing}"


def test_the_checks_catch_broken_formulas_and_links(tmp_path):
    for broken in [r"\frac{a}{b", r"\frac{a}", r"x^", r"\begin{aligned} x", r"\left( x",
                   r"\sqrt{", r"\notacommand x", r"a}"]:
        assert formula_problems(broken), broken
    assert not formula_problems(r"\frac{\partial L}{\partial z_k} = \frac{p_k - t_k}{N}")
    with pytest.raises(ValueError):
        math_blocks("a lone $x here")
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](page.md#title) [gone](nowhere.md) [bad anchor](#missing)\n")
    assert link_problems(page) == ["nowhere.md: no such file", "#missing: no heading #missing in page.md"]


# ------------------------------------------------------------------------------------ what users read

def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def help_texts():
    """The --help text of train.py, inference.py and every subcommand of the tinynet command."""
    from tinynet.cli.main import COMMANDS
    texts = {}
    env = {**os.environ, "COLUMNS": "1000"}  # no wrapping, so a path stays on one line
    for script in ("train.py", "inference.py"):
        proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=120)
        texts[f"{script} --help"] = proc.stdout
    for name, (module, _) in COMMANDS.items():
        proc = subprocess.run([sys.executable, "-m", "tinynet", name, "--help"], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=120)
        texts[f"tinynet {name} --help"] = proc.stdout
    return texts


def test_nothing_users_read_names_a_development_path():
    files = [*MARKDOWN, ROOT / "data" / "README.md", *sorted((ROOT / "docs").glob("*.py")),
             *sorted((ROOT / "notebooks").rglob("*.ipynb")), *sorted((ROOT / "notebooks").glob("*.py"))]
    texts = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in files}
    # a --help may print where the clone itself is (export's default output): that is the user's
    # own path, not a development one
    texts.update({name: text.replace(str(ROOT), "<clone>") for name, text in help_texts().items()})
    assert all(texts[k] for k in texts if k.endswith("--help")), "a --help printed nothing"
    found = [f"{name}: {bad}" for name, text in texts.items() for bad in DEVELOPMENT_PATHS if bad in text]
    assert not found, "development-only paths in user-facing text:\n" + "\n".join(found)


# ------------------------------------------------------------------------------------ figures

FIGURES = ("im2col.png", "col2im.png", "conv_input_gradient.png", "maxpool.png", "lenet.png", "batchnorm.png")


def run_make_figures(*args):
    return subprocess.run([sys.executable, str(ROOT / "docs" / "make_figures.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_make_figures_writes_every_figure(tmp_path):
    proc = run_make_figures("--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in FIGURES:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (ROOT / "docs" / "img" / name).is_file(), f"docs/img/{name} is not committed"
    assert "skipped confused_pairs.png" in proc.stdout
    assert not (tmp_path / "confused_pairs.png").exists()


def test_make_figures_reproduces_the_committed_figures(tmp_path):
    """Re-running the script gives the committed PNGs byte for byte: a figure cannot go stale
    (with the matplotlib the test extra installs; another version may draw other bytes)."""
    proc = run_make_figures("--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stale = [name for name in FIGURES
             if (tmp_path / name).read_bytes() != (ROOT / "docs" / "img" / name).read_bytes()]
    assert not stale, f"docs/img/{stale} differ from what docs/make_figures.py draws: run it and commit"


def test_make_figures_draws_the_confused_pairs_from_the_unseen_set(tmp_path):
    unseen = require_dir(SHARED_DATA / "emnist-balanced-unseen")
    proc = run_make_figures("--out", tmp_path, "--unseen", unseen)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "confused_pairs.png").read_bytes()[:4] == b"\x89PNG"
    assert (ROOT / "docs" / "img" / "confused_pairs.png").is_file()
