"""Chapter 1's sizes: knowledge as bits. No training, only counting (``labkit.info``).

The chapter samples bioS and bioD people, derives the information content of bioD (Prop 2.3 of Part
3.3, allenzhu2024part33) and precomputes an explorer grid of data sizes; its profiles only change how
many people the samples hold and how fine the grids are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labkit.experiments.base import Execution, NoExpectations, Profile, derive

NAME = "information"
CHAPTER = "01_knowledge_as_bits"


@dataclass(frozen=True)
class Sizes:
    """``N``: people in the samples and demos; the explorer's grid spans N = 1e3 .. 1e7 with
    ``grid_per_decade`` points per decade, and one slider step per value set size in ``explorer_D``."""

    N: int = 10_000
    grid_per_decade: int = 8
    explorer_D: tuple[int, ...] = (10, 30, 100, 300, 1000, 3000, 10_000)

    def people_grid(self) -> list[int]:
        """N from 1e3 to 1e7, ``grid_per_decade`` points per decade (log-spaced, rounded)."""
        return np.logspace(3, 7, 4 * self.grid_per_decade + 1).round().astype(int).tolist()


QUICK = Profile(Sizes(), NoExpectations(), Execution(processes=1))
PROFILES: dict[str, Profile[Sizes, NoExpectations]] = {
    "smoke": derive(QUICK, sizes=dict(N=200, grid_per_decade=2, explorer_D=(10, 100, 1000))),
    "quick": QUICK,
    "full": derive(QUICK, sizes=dict(N=100_000, grid_per_decade=16,
                                     explorer_D=(10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000))),
}
