"""The documentation site: strict build, runnable examples, migration names that exist, benchmark plots.

Select these with ``pytest -m docs``. The build needs the ``dev`` extra (mkdocs-material,
mkdocstrings[python]) in the interpreter running the tests: it is invoked as
``sys.executable -m mkdocs``.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

pytestmark = pytest.mark.docs

_FENCE = re.compile(r"(<!-- fragment -->\s*)?```python\n(.*?)```", re.S)


def _runnable_blocks(page: Path) -> list[str]:
    """Python code blocks of a page, minus those marked ``<!-- fragment -->`` (not standalone)."""
    return [m.group(2) for m in _FENCE.finditer(page.read_text()) if not m.group(1)]


def test_docs_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    """``mkdocs build --strict``: any warning (broken link, docstring griffe cannot parse,
    unresolved cross-reference) fails the build."""
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed (rc {proc.returncode}):\n{log[-6000:]}"
    for page in ("index.html", "conventions/index.html", "api/linalg/index.html", "api/lie/index.html",
                 "api/camera/index.html", "api/homography/index.html", "api/optim/index.html",
                 "benchmarks/index.html", "migration/index.html"):
        assert (site / page).is_file(), f"{page} missing from the built site"
    linalg_page = (site / "api/linalg/index.html").read_text()
    for name in importlib.import_module("mlxgeom.linalg").__all__:
        assert f'id="mlxgeom.linalg.{name}"' in linalg_page, f"mlxgeom.linalg.{name} is not rendered"


@pytest.mark.parametrize("page", ["getting-started.md", "conventions.md"])
def test_code_examples_in_docs_run(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every standalone ``python`` block of the page runs without error (fresh namespace each)."""
    monkeypatch.chdir(ROOT)
    blocks = _runnable_blocks(DOCS / page)
    assert blocks, f"no runnable python block found in {page}"
    for code in blocks:
        exec(compile(code, f"{page} example", "exec"), {"__name__": "__docs__"})


def test_getting_started_example_prints_what_the_page_says(capsys: pytest.CaptureFixture) -> None:
    """The first example's printed results are the ones quoted in its comments."""
    code = _runnable_blocks(DOCS / "getting-started.md")[0]
    exec(compile(code, "getting-started example", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out.split("\n")
    assert out[:4] == ["(1000, 2) True", "True", "True", "(3, 3)"]


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and getattr the rest."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_mlxgeom_name_in_the_migration_table_exists() -> None:
    names = set()
    for line in (DOCS / "migration.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2:
            names.update(re.findall(r"`(mlxgeom(?:\.\w+)+)", cells[1]))
    assert len(names) > 50, f"expected the migration tables to name many mlxgeom objects, found {len(names)}"
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"migration.md names objects that do not exist: {missing}"


_README = """### linalg on Test machine; mlx 0

#### 3x3 inverse, float32

| B | copy | mlxgeom | numpy |
|---|---|---|---|
| 1 | 0.01 | 0.02 (2x) | - |
| 1,048,576 | 2.5 | 5 (2x) | 75 (30x) |

ms, median; (Nx) = time / copy time.

#### accuracy

| pairs | error px |
|---|---|
| 1 | 0.3 |
"""


def test_plot_benchmarks_reads_ratio_tables_and_writes_one_png_each(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import plot_benchmarks as pb
    finally:
        sys.path.pop(0)
    tables = pb.parse_tables(_README)
    assert [t.title for t in tables] == ["3x3 inverse, float32", "accuracy"]
    inv = tables[0]
    assert inv.context == "linalg on Test machine; mlx 0"
    assert inv.batches == ["1", "1,048,576"] and inv.reference == "copy"
    assert inv.ratios["mlxgeom"] == [2.0, 2.0] and inv.ratios["numpy"] == [None, 30.0]
    assert inv.times["copy"] == [0.01, 2.5]
    readme = tmp_path / "README.md"
    readme.write_text(_README)
    out = tmp_path / "img"
    assert pb.main(["--readme", str(readme), "--out", str(out)]) == 0
    pngs = sorted(p.name for p in out.glob("bench-*.png"))
    assert pngs == ["bench-00-3x3-inverse-float32.png"]  # the accuracy table has no ratios
    assert (out / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"](img/{pngs[0]})" in (out / pb.FRAGMENT).read_text()


def test_plot_benchmarks_without_readme_leaves_a_note_and_succeeds(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import plot_benchmarks as pb
    finally:
        sys.path.pop(0)
    assert pb.main(["--readme", str(tmp_path / "absent.md"), "--out", str(tmp_path)]) == 0
    assert "does not exist yet" in (tmp_path / pb.FRAGMENT).read_text()


def _docstring_normaliser():
    sys.path.insert(0, str(DOCS))
    try:
        import griffe_docstrings
    finally:
        sys.path.pop(0)
    return griffe_docstrings


def test_docstring_normaliser_splits_grouped_parameters_and_marks_doctests() -> None:
    """The docs-build griffe extension: one item per grouped name, doctests under ``Examples:``,
    shapes' ``*`` escaped outside code, roles without a rendered target turned into code."""
    g = _docstring_normaliser()
    text = "\n".join([
        "Map points (*, N, 2) through H (*, 3, 3); see :func:`nowhere`.",
        "",
        "Args:",
        "    src, dst: (*, N, 2) pixels,",
        "        same batch.",
        "    H: ``(*, 3, 3)``.",
        "",
        "Example:",
        "    >>> f(x) * 2",
        "    4",
        "",
        ">>> g()",
        "1",
    ])
    lines = g.doctest_sections(g.split_grouped_params(text.split("\n")))
    out = g.markdown_safe(lines, lambda m: f"`{m.group(2)}`")
    assert out[0] == r"Map points (\*, N, 2) through H (\*, 3, 3); see `nowhere`."
    assert out[3:7] == [r"    src: (\*, N, 2) pixels,", "        same batch.", r"    dst: (\*, N, 2) pixels,",
                        "        same batch."]
    assert out[7] == "    H: ``(*, 3, 3)``."
    assert out[9:12] == ["Examples:", "    >>> f(x) * 2", "    4"]
    assert out[-3:] == ["Examples:", "    >>> g()", "    1"]
