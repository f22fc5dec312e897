"""Profiles: one papermill parameter that scales a chapter from a CI smoke test to a paper-like run.

Why: a notebook's body must never branch on the profile (same code path at every scale), so each
chapter declares here the sizes it needs under each profile, and ``labkit.setup`` hands the notebook
one resolved ``Sizes`` object. Profiles:

- ``smoke``: seconds; used by the test-suite to prove a chapter runs with non-default parameters.
- ``quick``: CPU, at most 90 s per chapter on a 2-core machine; CI and the committed outputs use it.
- ``cpu-full``: where a chapter offers it, the real experiment on a 2-core CPU in at most ~40 minutes.
- ``full``: paper-like scale, meant for a GPU or a long CPU run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

PROFILE_ORDER = ("smoke", "quick", "cpu-full", "full")

# chapter (the notebook's file stem) -> profile -> sizes. Every profile of a chapter has the same keys.
CHAPTERS: dict[str, dict[str, dict[str, Any]]] = {
    "00_welcome": {
        # a key -> value library of random facts and a tiny 2-layer transformer that memorizes it;
        # min_fraction: the share of the library's bits the chapter asserts the model has learned
        "smoke": dict(n_items=32, value_len=4, vocab=16, d_model=16, n_layer=2, n_head=2,
                      exposures=60, batch_size=16, lr=1e-2, min_fraction=0.4),
        "quick": dict(n_items=256, value_len=6, vocab=32, d_model=32, n_layer=2, n_head=2,
                      exposures=150, batch_size=64, lr=5e-3, min_fraction=0.9),
        "full": dict(n_items=2048, value_len=8, vocab=64, d_model=64, n_layer=2, n_head=2,
                     exposures=400, batch_size=128, lr=3e-3, min_fraction=0.9),
    },
    "01_knowledge_as_bits": {
        # no training: N people in the samples and the bit-meter demo; the explorer's precomputed grid
        # (N from 1e3 to 1e7 with grid_per_decade points per decade, one slider step per value of D)
        "smoke": dict(N=200, grid_per_decade=2, explorer_D=(10, 100, 1000)),
        "quick": dict(N=10_000, grid_per_decade=8, explorer_D=(10, 30, 100, 300, 1000, 3000, 10_000)),
        "full": dict(N=100_000, grid_per_decade=16,
                     explorer_D=(10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)),
    },
}


class Sizes(Mapping[str, Any]):
    """Read-only sizes with attribute access (``sizes.n_items``), so notebooks read like prose."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no size {name!r}; known: {', '.join(sorted(self._values))}") from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return "Sizes(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"


def chapters() -> tuple[str, ...]:
    return tuple(CHAPTERS)


def profiles_of(chapter: str) -> tuple[str, ...]:
    """The profiles a chapter offers, in PROFILE_ORDER."""
    _check_chapter(chapter)
    return tuple(p for p in PROFILE_ORDER if p in CHAPTERS[chapter])


def resolve(chapter: str, profile: str = "quick", **overrides: Any) -> Sizes:
    """The sizes of ``chapter`` under ``profile``; ``overrides`` (not None) replace single sizes.

    Errors name the parameter and the allowed values, because they surface as the one line a user
    sees after mistyping ``-p profile qiuck``.
    """
    _check_chapter(chapter)
    allowed = profiles_of(chapter)
    if profile not in allowed:
        raise ValueError(f"profile={profile!r} is not valid for {chapter}; allowed: {', '.join(allowed)}")
    values = dict(CHAPTERS[chapter][profile])
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in values:
            raise ValueError(f"unknown size {key!r} for {chapter}; allowed: {', '.join(sorted(values))}")
        expected = type(values[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool) != isinstance(values[key], bool):
            raise ValueError(f"{key}={value!r} is not valid; allowed: a value of type {expected.__name__}")
        values[key] = value
    return Sizes(values)


def _check_chapter(chapter: str) -> None:
    if chapter not in CHAPTERS:
        raise ValueError(f"chapter={chapter!r} has no profiles; known chapters: {', '.join(CHAPTERS)}")
