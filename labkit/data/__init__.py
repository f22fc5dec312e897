"""Synthetic datasets of the lab and the small helpers they share.

Modules: ``base`` (the ``TokenBatch`` / ``TokenDataset`` shape every dataset takes), ``bios`` (synthetic
biographies, Parts 3.1-3.3), ``biod`` (bioD(N, K, C, D, L, T), Part 3.3), ``random`` (uniform random
sequences with keys, Morris et al. and MLS/MAC). The helpers below live here so that every dataset
validates its arguments with the same wording and derives its random streams the same way; this module
imports none of the dataset modules, so they can import it without a cycle.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

from labkit.data.base import TokenBatch, TokenDataset
from labkit.tokenizer import PAD_ID

__all__ = ["TokenBatch", "TokenDataset", "check_choice", "check_int", "loss_mask", "rng_for"]


def check_int(name: str, value: object, low: int | None = None, high: int | None = None,
              high_text: str | None = None) -> int:
    """Return ``value`` as an int if it is an integer in ``[low, high]``; else ``ValueError``.

    The message names the parameter, its value and the allowed range, e.g.
    ``"D=5000 is not valid; allowed: 1 <= D <= T**L = 4096"`` (``high_text`` is the ``"T**L = 4096"`` part).
    Integral floats such as ``1e5`` are accepted, since people write sizes that way.
    """
    bound = f"{high_text} = {high}" if high_text and high is not None else (f"{high}" if high is not None else None)
    if low is not None and bound is not None:
        allowed = f"{low} <= {name} <= {bound}"
    elif low is not None:
        allowed = f"{name} >= {low}"
    elif bound is not None:
        allowed = f"{name} <= {bound}"
    else:
        allowed = "an integer"
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    if not ok:
        raise ValueError(f"{name}={value!r} is not valid; allowed: an integer, {allowed}")
    value = int(value)  # type: ignore[arg-type]
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name}={value} is not valid; allowed: {allowed}")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; else ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; allowed: {', '.join(repr(c) for c in choices)}")
    return value  # type: ignore[return-value]


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
