"""Which exercises each chapter has: ``labkit.exercises.chNN.EXERCISES``, looked up by chapter and id.

A module of its own so that the notebook tools and the package can both use it without importing
each other.
"""

from __future__ import annotations

import importlib

from labkit.exercises.check import Exercise

#: The chapters that have exercises (the module of chapter n is ``labkit.exercises.ch{n:02d}``).
CHAPTERS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12)


def exercises(chapter: int) -> list[Exercise]:
    """The exercises of ``chapter``, in the order the page numbers them."""
    if chapter not in CHAPTERS:
        raise ValueError(f"chapter={chapter!r} is not valid; allowed: {', '.join(map(str, CHAPTERS))}")
    return list(importlib.import_module(f"labkit.exercises.ch{chapter:02d}").EXERCISES)


def exercise(chapter: int, exercise_id: str) -> Exercise:
    """One exercise by chapter and id (e.g. ``exercise(1, "biod-information")``)."""
    found = {e.id: e for e in exercises(chapter)}
    if exercise_id not in found:
        raise ValueError(f"exercise_id={exercise_id!r} is not valid for chapter {chapter}; allowed: {', '.join(found)}")
    return found[exercise_id]
