"""Every chapter runs headlessly with non-default parameters (papermill, ``smoke`` profile, seed 1).

The committed outputs themselves are re-executed and compared by nbval (``pytest --nbval-lax
notebooks``, cells marked ``# NBVAL_CHECK_OUTPUT``); this test proves the parameters path works. Both
runs count against each notebook's time budget (``tests/conftest.py``), reported at the end of a run.
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from labkit import profiles, site
from labkit.runner import notebook_parameters, run_notebook

NOTEBOOKS = site.chapter_notebooks()


def test_the_toc_lists_every_notebook():
    on_disk = sorted(p.name for p in (site.ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in NOTEBOOKS) == on_disk


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(notebook):
    nb = nbformat.read(notebook, as_version=4)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    params = notebook_parameters(notebook)
    assert params["profile"] == "quick" and params["seed"] == 0
    assert notebook.stem in profiles.chapters()
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "NBVAL_CHECK_OUTPUT" in sources, "key numbers must be checked by nbval"
    assert "assert " in sources, "the chapter must check its claim in a cell"
    # committed with outputs from a default papermill run, errors-free
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs and not any(o.get("output_type") == "error" for o in outputs)
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs), "a plotly figure"


MAX_LINE = 88  # code lines fit the book's page without sideways scrolling
#: a hand-formatted table: a width or alignment spec inside an f-string field, e.g. {x:>9s} or {n:8,d}
HAND_TABLE = re.compile(r"\{[^{}]*:[<>^]?\d+[,.\w%]*\}")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_like_a_book_chapter(notebook):
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    long = [line for c in code for line in c.source.splitlines() if len(line) > MAX_LINE]
    assert not long, f"{len(long)} code lines longer than {MAX_LINE} characters, e.g. {long[0]!r}"
    tables = [line for c in code for line in c.source.splitlines() if HAND_TABLE.search(line)]
    assert not tables, f"hand-formatted table lines (use labkit.tables): {tables[:3]}"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "{exercise}" in markdown and "{solution-start}" in markdown, "the chapter has exercises"
    solutions = [c for c in code if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) >= 2 and all(c.metadata.get("jupyter", {}).get("source_hidden") for c in solutions)
    assert all("assert check_" in c.source for c in solutions), "CI runs every reference solution's checker"
    if notebook.stem[:2] in ("01", "02", "03", "04", "05", "06", "07"):
        assert ":label:" in markdown and "{eq}`" in markdown, "formulas are labelled equations, referenced"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_smoke_profile_and_another_seed(notebook, tmp_path):
    output = run_notebook(notebook, {"profile": "smoke", "seed": 1}, tmp_path / notebook.name, progress=False)
    executed = json.loads(output.read_text())
    assert executed["metadata"]["papermill"]["parameters"] == {"profile": "smoke", "seed": 1}
