"""ARENA-style exercises with auto-checks, one module per chapter (``labkit.exercises.ch01`` ...).

In a notebook, an exercise is a statement (a numbered ``{exercise}`` box with difficulty and importance
marks), a code cell with the learner's stub and its checker call, and the reference solution in a
collapsed dropdown whose cell asserts that it passes (so CI keeps the solution right)::

    from labkit.exercises.ch01 import check_biod_information
    check_biod_information(biod_information)   # ✓ all 10 cases agree  /  ✗ case 3: ...

The cells are generated, not written by hand: ``cells(chapter, exercise_id)`` renders one exercise,
``section(chapter)`` the whole "Exercises" section, and ``python -m labkit.exercises insert
notebooks/NN_topic.ipynb`` replaces that section in a notebook, leaving every other cell untouched.
"""

from __future__ import annotations

from labkit.exercises.check import CheckResult, Exercise, compare, marks
from labkit.exercises.registry import CHAPTERS, exercise, exercises

__all__ = ["CHAPTERS", "CheckResult", "Exercise", "cells", "compare", "exercise", "exercises", "marks", "section"]


def cells(chapter: int, exercise_id: str) -> list:
    """The notebook cells of one exercise: statement, stub (with its imports) + check, gated solution.

    See ``labkit.exercises.notebook`` for the cells and why they look so."""
    from labkit.exercises.notebook import exercise_cells

    return exercise_cells(exercise(chapter, exercise_id))


def section(chapter: int) -> list:
    """The cells of a chapter's whole "Exercises" section: its heading, the imports, then every exercise."""
    from labkit.exercises.notebook import section_cells

    return section_cells(chapter, exercises(chapter))
