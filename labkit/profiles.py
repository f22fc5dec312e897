"""Profiles: one papermill parameter that scales a chapter from a CI smoke test to a paper-like run.

Why: a notebook's body must never branch on the profile (same code path at every scale), so each
chapter's experiment (``labkit.experiments.<topic>``) declares typed profiles next to its code, and
this module only resolves ``chapter, profile, overrides`` into one of them, with errors that name the
parameter and the allowed values. Profiles:

- ``smoke``: seconds; the test-suite's proof that a chapter runs with non-default parameters.
- ``quick``: CPU, at most 75 s per chapter on a 2-core machine; CI and the committed outputs use it.
- ``cpu-full``: where a chapter offers it, the real experiment on a 2-core CPU in under an hour.
- ``full``: paper-like scale, meant for a GPU or a cluster.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from labkit import experiments
from labkit.experiments.base import PROFILE_ORDER, Profile, as_table_rows, select

__all__ = ["PROFILE_ORDER", "Profile", "chapters", "describe", "profiles_of", "resolve"]


def chapters() -> tuple[str, ...]:
    """The chapters (notebook stems) that declare profiles, in book order."""
    return tuple(experiments.CHAPTERS)


def _profiles(chapter: str) -> dict[str, Profile]:
    if chapter not in experiments.CHAPTERS:
        raise ValueError(f"chapter={chapter!r} has no profiles; known chapters: {', '.join(chapters())}")
    return experiments.load(experiments.CHAPTERS[chapter]).PROFILES


def profiles_of(chapter: str) -> tuple[str, ...]:
    """The profiles a chapter offers, in PROFILE_ORDER."""
    offered = _profiles(chapter)
    return tuple(p for p in PROFILE_ORDER if p in offered)


def resolve(chapter: str, profile: str = "quick", **overrides: Any) -> Profile:
    """The ``Profile`` of ``chapter`` under ``profile``; ``overrides`` (not None) replace single sizes."""
    return select(_profiles(chapter), profile, chapter, **overrides)


def describe(chapter: str | None = None) -> str:
    """Every profile of ``chapter`` (default: all chapters), one line per field of sizes, run and
    expectations: what ``python -m labkit profiles`` prints."""
    import pandas as pd

    blocks = []
    for name in [chapter] if chapter else chapters():
        cells: dict[tuple[str, str], dict[str, str]] = {}
        for row in as_table_rows(_profiles(name)):
            cells.setdefault((row["part"], row["field"]), {})[row["profile"]] = _short(row["value"])
        index = pd.MultiIndex.from_tuples(list(cells), names=["part", "field"])
        table = pd.DataFrame(list(cells.values()), index=index)
        table = table[[p for p in PROFILE_ORDER if p in table.columns]]
        blocks.append(f"{name} (labkit.experiments.{experiments.CHAPTERS[name]})\n{table.to_string()}")
    return "\n\n".join(blocks)


def _short(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        inner = ", ".join(f"{f.name}={getattr(value, f.name)!r}" for f in dataclasses.fields(value))
        return f"{type(value).__name__}({inner})"
    return repr(value)
