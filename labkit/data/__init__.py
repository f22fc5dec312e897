"""Synthetic datasets of the lab and the small helpers they share.

Modules: ``base`` (the ``TokenBatch`` / ``TokenDataset`` shape every dataset takes), ``bios`` (synthetic
biographies, Parts 3.1-3.3), ``biod`` (bioD(N, K, C, D, L, T), Part 3.3, allenzhu2024part33), ``uniform``
(uniformly random sequences with keys: morris2025memorize, and the MLS/MAC of harma2024empirical) and
``registry`` (a dataset from its kind and sizes). The helpers below live here so that every dataset
derives its random streams the same way (argument checks come from ``labkit.checks``); this module
imports none of the dataset modules, so they can import it without a cycle.
"""

from __future__ import annotations

import numpy as np
import torch

from labkit.checks import check_choice, check_int
from labkit.data.base import TokenBatch, TokenDataset
from labkit.tokenizer import PAD_ID

__all__ = ["TokenBatch", "TokenDataset", "check_choice", "check_int", "loss_mask", "rng_for"]


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """A NumPy generator for ``(seed, *stream)``: independent streams per purpose and per exposure.

    Deriving every draw from the seed *and* a stream tag (people, rendering of exposure i, ...) means
    rendering exposure 7 never depends on whether exposures 0-6 were rendered first.
    """
    seed = check_int("seed", seed, 0)
    return np.random.default_rng([seed, *stream])


def loss_mask(tokens: torch.Tensor, first_target: torch.Tensor | int = 1) -> torch.Tensor:
    """True at positions ``>= first_target`` (per row if a tensor) that are not PAD.

    Position 0 (BOS) is never a target; datasets pass a later ``first_target`` when a prefix is a
    prompt rather than content (random-sequence keys, QA questions).
    """
    pos = torch.arange(tokens.shape[1])
    if isinstance(first_target, torch.Tensor):
        first_target = first_target.reshape(-1, 1)
    return (pos >= first_target) & (tokens != PAD_ID)
