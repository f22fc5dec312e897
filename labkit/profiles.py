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
    "02_capacity_scaling_law": {
        # bits learned vs parameters (labkit.capacity.capacity_grid): `data` is bioD (C = L = 1) or bioS;
        # `models` are widths d of 2-layer tiny GPTs (or (ℓ, h) of GPT2-ℓ-h when model="gpt2"); N is
        # sized so the data holds `factor` × (2 bits × P); `seeds` are for `python -m labkit.capacity`
        # (the notebook runs its own seed); `processes` × `threads` share the CPU; `expect_*` are the
        # chapter's assert thresholds at this scale (R at the most exposures, its gap over the fewest).
        "smoke": dict(data=dict(kind="biod", K=4, D=16, T=16, name_pools=(10, 10)), model="tiny", models=(8,),
                      n_layer=2, n_head=2, exposures=(10, 300), lr=3e-2, batch_size=128, weight_decay=0.05,
                      factor=2.0, seeds=(0,), processes=1, threads=1, expect_R_min=0.2, expect_gap_min=0.2),
        "quick": dict(data=dict(kind="biod", K=8, D=64, T=64, name_pools=(30, 30)), model="tiny", models=(8, 12),
                      n_layer=2, n_head=2, exposures=(100, 1000), lr=3e-2, batch_size=128, weight_decay=0.05,
                      factor=2.0, seeds=(0, 1), processes=2, threads=1, expect_R_min=1.5, expect_gap_min=1.0),
        "cpu-full": dict(data=dict(kind="biod", K=8, D=256, T=256, name_pools=(100, 100)), model="tiny",
                         models=(16, 24, 32, 40), n_layer=2, n_head=2, exposures=(100, 1000), lr=5e-3,
                         batch_size=128, weight_decay=0.05, factor=2.5, seeds=(0,), processes=2, threads=1,
                         expect_R_min=1.8, expect_gap_min=0.5),
        "full": dict(data=dict(kind="bios", mode="fresh"), model="gpt2", models=((2, 1), (4, 1), (2, 2), (4, 2)),
                     n_layer=0, n_head=0, exposures=(100, 1000), lr=1e-3, batch_size=256, weight_decay=0.02,
                     factor=2.5, seeds=(0, 1), processes=1, threads=0, expect_R_min=1.8, expect_gap_min=0.5),
    },
    "03_mls_vs_mac": {
        # MLS / MAC (labkit.capacity.memorization_grid) of 2-layer tiny GPTs of widths `models` on random
        # key -> value libraries (S tokens over V, keys in base key_base) and, where `datasets` has it,
        # bioD (biod_K attributes, biod_D values). MLS: doubling from `start`, bisection to `tolerance`,
        # `threshold` = fraction recalled; a MAC library holds mac_bits_per_param × P bits. `expect_*`:
        # the chapter's assert bands at this scale.
        "smoke": dict(datasets=("random",), models=(4, 8), n_layer=2, n_head=2, S=4, V=16, key_base=10,
                      biod_K=4, biod_D=16, biod_name_pools=(20, 20), exposures=150, batch_size=256, lr=3e-2,
                      weight_decay=0.05, start=8, max_size=64, tolerance=0.5, threshold=1.0,
                      mac_bits_per_param=(2.0,), processes=1, threads=1, expect_bpp=(0.05, 3.6),
                      expect_mac_ratio=(0.0, 1.5)),
        "quick": dict(datasets=("random",), models=(8, 12), n_layer=2, n_head=2, S=4, V=16, key_base=10,
                      biod_K=4, biod_D=16, biod_name_pools=(20, 20), exposures=1000, batch_size=256, lr=3e-2,
                      weight_decay=0.05, start=32, max_size=4096, tolerance=0.25, threshold=1.0,
                      mac_bits_per_param=(2.0,), processes=2, threads=1, expect_bpp=(0.5, 3.6),
                      expect_mac_ratio=(0.4, 2.0)),
        "full": dict(datasets=("random", "biod"), models=(8, 12, 16, 24), n_layer=2, n_head=2, S=4, V=16,
                     key_base=10, biod_K=4, biod_D=16, biod_name_pools=(40, 40), exposures=3000, batch_size=256,
                     lr=2e-2, weight_decay=0.05, start=32, max_size=16384, tolerance=0.1, threshold=1.0,
                     mac_bits_per_param=(1.5, 2.0, 4.0, 8.0), processes=2, threads=1, expect_bpp=(0.5, 3.6),
                     expect_mac_ratio=(0.1, 2.0)),
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
