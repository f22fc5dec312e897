"""Exercises of chapter 3 (MLS vs MAC): counting exact recall in bits, and the MLS search.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against a plain reference on hidden cases (the logic of ``labkit.measure.recalled`` and
``labkit.measure.mls``, without the training that makes them slow).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from labkit import info
from labkit.exercises.check import Exercise


def mac_bits(predictions: torch.Tensor, targets: torch.Tensor, V: int) -> dict:
    """Items recalled exactly, and the bits they hold.

    predictions, targets: (n_items, S) token ids; each value token is uniform over V.
    """
    # one wrong token and the item is not recalled
    recalled = (predictions == targets).all(dim=1)
    items = int(recalled.sum())
    S = targets.shape[1]
    return {"items": items, "bits": items * S * math.log2(V)}


def mls_search(memorizes: Callable[[int], bool], start: int, max_size: int) -> int:
    """The largest n <= max_size with memorizes(n) true (0 if none).

    memorizes is monotone: true up to some size, false beyond.
    """
    # invariant: memorizes(lo) holds (lo = 0 trivially), memorizes(hi) does not
    lo, hi, n = 0, None, start
    while hi is None:  # double until a library is too large (or max_size is memorized)
        if memorizes(n):
            lo = n
            if n == max_size:
                return n
            n = min(2 * n, max_size)
        else:
            hi = n
    while hi - lo > 1:  # bisect between the last success and the first failure
        mid = (lo + hi) // 2
        if memorizes(mid):
            lo = mid
        else:
            hi = mid
    return lo


class Memorizes:
    """A stand-in for "train a fresh model on n items; is every item recalled?": True up to a capacity.

    Counts its calls, since each one stands for a full training run."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.calls = 0

    def __call__(self, n: int) -> bool:
        self.calls += 1
        return n <= self.capacity

    def __repr__(self) -> str:
        return f"<a model that memorizes up to {self.capacity} items>"


def _budget(max_size: int) -> int:
    """Trainings a doubling-then-bisection search needs at most, with room to spare."""
    return 2 * math.ceil(math.log2(max_size + 1)) + 2


def _search(fn: Callable[..., Any], case: Mapping[str, Any]) -> dict:
    oracle = case["memorizes"]
    found = fn(**case)
    return {"mls": found, f"at most {_budget(case['max_size'])} trainings": oracle.calls <= _budget(case["max_size"])}


def _mls(memorizes: Memorizes, start: int, max_size: int) -> int:
    return min(memorizes.capacity, max_size)  # the oracle knows its capacity: no search needed


def _mac(predictions: torch.Tensor, targets: torch.Tensor, V: int) -> dict:
    right = np.asarray(predictions) == np.asarray(targets)
    items = int(np.logical_and.reduce(right, axis=1).sum())
    return {"items": items, "bits": items * info.random_information(1, right.shape[1], V)}


def _recall_cases(rng: random.Random) -> list[dict]:
    generator = torch.Generator().manual_seed(rng.randrange(2**31))

    def library(n: int, S: int, V: int, wrong: float) -> dict:
        targets = torch.randint(V, (n, S), generator=generator)
        flips = torch.rand(n, S, generator=generator) < wrong  # each token wrong with probability `wrong`
        predictions = torch.where(flips, (targets + 1) % V, targets)
        return dict(predictions=predictions, targets=targets, V=V)

    targets = torch.arange(12).reshape(3, 4) % 7
    one_wrong = targets.clone()
    one_wrong[:, 0] = (one_wrong[:, 0] + 1) % 7  # every item has exactly one wrong token: nothing is recalled
    cases = [dict(predictions=targets.clone(), targets=targets, V=7),
             dict(predictions=one_wrong, targets=targets, V=7),
             library(100, 1, 16, 0.3), library(256, 4, 16, 0.1)]
    for _ in range(4):
        cases.append(library(rng.randint(1, 500), rng.randint(1, 8), rng.randint(2, 1000), rng.uniform(0, 0.5)))
    return cases


def _search_cases(rng: random.Random) -> list[dict]:
    fixed = [(300, 16, 4096), (16, 16, 4096), (5, 16, 4096), (4096, 16, 4096), (5000, 16, 4096), (0, 16, 4096),
             (129, 16, 1024), (1, 1, 64)]
    cases = [dict(memorizes=Memorizes(c), start=s, max_size=m) for c, s, m in fixed]
    for _ in range(4):
        max_size = rng.randint(64, 10_000)
        cases.append(dict(memorizes=Memorizes(rng.randint(0, max_size)), start=rng.choice([1, 8, 16, 64]),
                          max_size=max_size))
    return cases


MAC_BITS = Exercise(
    chapter=3, id="mac-bits", title="MAC: items recalled exactly, in bits", difficulty=2, importance=5,
    statement=r"""
After one training on an oversized random library, the model's greedy predictions of every item's $S$
value tokens are `predictions` (an `(n_items, S)` tensor of token ids; `targets` holds the true values,
each uniform over $V$). An item counts as **recalled** only if *every* one of its tokens is right. Write
`mac_bits(predictions, targets, V)`, returning `{"items": number recalled, "bits": the bits they hold}`
(each item holds $S\log_2 V$ bits, {eq}`eq-uniform-information`). Use tensor operations, no Python
loop over items.
""",
    solution=mac_bits, reference=_mac, cases=_recall_cases, imports=("import math", "import torch"))

MLS_SEARCH = Exercise(
    chapter=3, id="mls-search", title="The MLS search", difficulty=3, importance=3,
    statement=r"""
`memorizes(n)` stands for "train a fresh model on a library of $n$ items and check that it recalls every
one": expensive, so call it as few times as you can. Assume it is monotone (true up to the model's
capacity, false beyond). Write `mls_search(memorizes, start, max_size)`: the **maximum library size**
({eq}`eq-mls`), the largest $n \le$ `max_size` with `memorizes(n)` true (0 if there is none).
Start at `start`, double until a library fails (or `max_size` succeeds), then bisect between the last
success and the first failure; if `start` already fails, search below it. The checker also counts your
trainings.
""",
    solution=mls_search, reference=_mls, cases=_search_cases, evaluate=_search,
    imports=("from collections.abc import Callable",))

EXERCISES = [MAC_BITS, MLS_SEARCH]

check_mac_bits = MAC_BITS.checker()
check_mls_search = MLS_SEARCH.checker()
