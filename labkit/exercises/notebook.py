"""Exercises as notebook cells, and the command that puts a chapter's exercises into its notebook.

Why generated cells: the statement, the stub, the solution and the checker must agree, and a solution
pasted by hand drifts from the one the tests check. A section is a heading, one cell of imports, and
five cells per exercise, valid MyST for jupyter-book 1 with sphinx-exercise:

1. Markdown: an ``{exercise}`` directive (numbered, labelled, with the marks and the statement);
2. code: the stub and the checker call (the stub prints "not implemented yet", it does not fail);
3. Markdown: ``{solution-start} <label>`` with ``:class: dropdown`` (collapsed on the website);
4. code: the solution, source hidden in Jupyter, tagged ``solution``, ending in ``assert check_x(x)``;
5. Markdown: ``{solution-end}``.

The gated ``solution-start`` / ``solution-end`` pair is sphinx-exercise's way to put executed code
cells inside a solution. Cell ids are derived from the exercise label, so regenerating a section
gives the same notebook JSON.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from labkit.exercises.check import Exercise, import_block, mark_bars
from labkit.exercises.registry import exercises

HEADING = "## Exercises"
INTRO = ("Run the first cell (the imports), then fill in each stub and run its cell: the checker runs your "
         "function on hidden cases and names the first one that disagrees with the lab's reference. Marks: "
         "difficulty 🔴 and importance 🔵, 1 to 5. The solutions are folded away below each exercise (click to open).")
_FENCE = "````"  # four backticks: a statement may hold ``` code blocks of its own


def statement_markdown(ex: Exercise) -> str:
    """The ``{exercise}`` directive of one exercise: title, label, marks and statement."""
    hard, useful = mark_bars(ex.difficulty, ex.importance)
    marks = f"**Difficulty:** {hard} &emsp; **Importance:** {useful}"
    return (f"{_FENCE}{{exercise}} {ex.title}\n:label: {ex.label}\n\n{marks}\n\n"
            f"{ex.statement.strip()}\n{_FENCE}")


def _markdown(source: str, cell_id: str) -> NotebookNode:
    cell = nbformat.v4.new_markdown_cell(source)
    cell.id = cell_id
    return cell


def _code(source: str, cell_id: str, metadata: dict) -> NotebookNode:
    cell = nbformat.v4.new_code_cell(source.rstrip("\n"), metadata=metadata)
    cell.id = cell_id
    return cell


def exercise_cells(ex: Exercise, imports: bool = True) -> list[NotebookNode]:
    """The five cells of one exercise (module docstring), ready to insert into a notebook.

    ``imports=True``: the stub cell imports what the exercise needs (the exercise stands alone);
    a whole section imports once, in its first code cell, and passes False."""
    label = ex.label
    return [
        _markdown(statement_markdown(ex), f"{label}-statement"),
        _code(ex.stub_source(imports), f"{label}-stub", {"tags": ["exercise"]}),
        _markdown(f"```{{solution-start}} {label}\n:class: dropdown\n```", f"{label}-solution-start"),
        _code(ex.solution_source(), f"{label}-solution", {"jupyter": {"source_hidden": True}, "tags": ["solution"]}),
        _markdown("```{solution-end}\n```", f"{label}-solution-end"),
    ]


def setup_source(exercises: Sequence[Exercise]) -> str:
    """The section's first code cell: every import its exercises need, once (a name imported twice in a
    notebook is a lint error, and one setup cell is what a reader runs first)."""
    return import_block([line for ex in exercises for line in ex.import_lines()])


def section_cells(chapter: int, exercises: Sequence[Exercise]) -> list[NotebookNode]:
    """The "Exercises" heading cell, the imports, then every exercise's cells."""
    heading = _markdown(f"{HEADING}\n\n{INTRO}", f"ch{chapter:02d}-exercises")
    setup = _code(setup_source(exercises), f"ch{chapter:02d}-exercises-setup", {"tags": ["exercise"]})
    return [heading, setup, *(cell for ex in exercises for cell in exercise_cells(ex, imports=False))]


# --------------------------------------------------------------------------------------------------
# Inserting a section into a notebook
# --------------------------------------------------------------------------------------------------

_HEADING_LINE = re.compile(r"^#{1,2} ")


def _first_line(cell: NotebookNode) -> str:
    return cell.source.lstrip().split("\n", 1)[0] if cell.cell_type == "markdown" else ""


def _same(old: NotebookNode, new: NotebookNode) -> bool:
    """Same cell apart from outputs and execution metadata (what a run adds)."""
    def key(cell: NotebookNode) -> tuple:
        # papermill adds an empty tags list (and its own metadata) to every cell it runs
        return cell.cell_type, cell.source, cell.metadata.get("tags") or [], cell.metadata.get("jupyter") or {}

    return key(old) == key(new)


def chapter_of(notebook: Path) -> int:
    """The chapter number of ``notebooks/NN_topic.ipynb`` (its two leading digits)."""
    match = re.match(r"(\d\d)_", notebook.name)
    if not match:
        raise ValueError(f"notebook={notebook.name!r} is not valid; allowed: a chapter named NN_topic.ipynb")
    return int(match.group(1))


def _section_bounds(cells: list[NotebookNode], chapter: int) -> tuple[int, int] | None:
    """[start, end) of the existing "## Exercises" section: its heading up to the next # or ## heading
    that is not one of the section's own cells (their ids start with ``chNN-``)."""
    start = next((i for i, c in enumerate(cells) if _first_line(c).rstrip() == HEADING), None)
    if start is None:
        return None
    own = f"ch{chapter:02d}-"
    end = next((i for i in range(start + 1, len(cells)) if _HEADING_LINE.match(_first_line(cells[i]))
                and not str(cells[i].get("id", "")).startswith(own)), len(cells))
    return start, end


def _insertion_point(cells: list[NotebookNode], before: str) -> tuple[int, str]:
    """Where a new section goes: before the heading ``before`` (splitting its cell if it starts mid-cell)."""
    for i, cell in enumerate(cells):
        if _first_line(cell).startswith(before):
            return i, f"before the '{before}' cell"
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        at = next((k for k, line in enumerate(lines) if line.startswith(before)), None)
        if at is not None:
            # the Markdown is split in two where the heading starts; no text is changed or lost
            cell.source = "\n".join(lines[:at]).rstrip("\n")
            slug = re.sub(r"[^a-z0-9]+", "-", before.lower()).strip("-")
            rest = _markdown("\n".join(lines[at:]), f"{cell.get('id', 'cell')}-{slug}"[:64])
            cells.insert(i + 1, rest)
            return i + 1, f"before '{before}' (split out of cell {i})"
    return len(cells), f"at the end (no '{before}' heading found)"


def insert(notebook: str | Path, chapter: int | None = None, *, before: str = "## Summary", write: bool = True) -> str:
    """Put the chapter's exercise section into ``notebook``, replacing an existing one; return what was done.

    The section runs from a Markdown cell starting with ``## Exercises`` to the next ``#``/``##``
    heading; without one, it is inserted before the heading ``before`` (``## Summary``; at the end if
    there is none). Every other cell, with its outputs and metadata, is left as it was; cells of the
    section that did not change keep their outputs. ``write=False`` only reports what it would do.
    """
    path = Path(notebook)
    chapter = chapter_of(path) if chapter is None else chapter
    listed = exercises(chapter)
    nb = nbformat.read(path, as_version=4)
    new = section_cells(chapter, listed)
    bounds = _section_bounds(nb.cells, chapter)
    if bounds is not None:
        start, end = bounds
        # a cell that did not change keeps its outputs and execution metadata
        old = {c.get("id"): c for c in nb.cells[start:end]}
        new = [old[c.id] if c.id in old and _same(old[c.id], c) else c for c in new]
        if len(new) == end - start and all(a is b for a, b in zip(new, nb.cells[start:end], strict=True)):
            return f"{path}: the exercises of chapter {chapter} are up to date ({len(new)} cells)"
        where = f"replacing cells {start}-{end - 1}"
        nb.cells[start:end] = new
    else:
        start, where = _insertion_point(nb.cells, before)
        nb.cells[start:start] = new
    if write:
        nbformat.validate(nb)
        nbformat.write(nb, path)
    verb = "inserted" if write else "would insert"
    return f"{path}: {verb} {len(listed)} exercises of chapter {chapter} ({len(new)} cells), {where}"
