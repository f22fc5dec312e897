"""Exercises of chapter 0 (welcome): the bits of a library of random facts, and the steps that learn it.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against the lab's own implementation (``labkit.info``, ``labkit.train``) on hidden cases.
"""

from __future__ import annotations

import math
import random

import torch

from labkit import info
from labkit.exercises.check import Exercise


def library_bits(N: int, S: int, V: int) -> float:
    """Bits in a library of N items, each S tokens drawn uniformly from V tokens."""
    return N * S * math.log2(V)


def training_steps(N: int, B: int, E: int) -> int:
    """Optimizer steps of E exposures of N items in minibatches of (at most) B items."""
    # ceil(N / B), in integers: the last minibatch of an exposure may be short
    steps_per_exposure = -(-N // B)
    return steps_per_exposure * E


def bits_memorized(item_loss: torch.Tensor, S: int, V: int) -> float:
    """Bits a model holds of a random library of S-token items over V tokens.

    item_loss: each item's loss in nats, summed over its S value tokens.
    """
    uniform_bits = S * math.log2(V)
    # the model's code length of each item, in bits
    model_bits = item_loss.double() / math.log(2)
    return (uniform_bits - model_bits).clamp(min=0).sum().item()


def _library_cases(rng: random.Random) -> list[dict]:
    fixed = [dict(N=1, S=1, V=2), dict(N=1000, S=4, V=32), dict(N=3, S=5, V=10), dict(N=10**6, S=16, V=2)]
    return fixed + [dict(N=rng.randint(1, 50_000), S=rng.randint(1, 32), V=rng.randint(2, 50_000))
                    for _ in range(6)]


def _steps_cases(rng: random.Random) -> list[dict]:
    fixed = [dict(N=1, B=64, E=1), dict(N=64, B=64, E=10), dict(N=65, B=64, E=10), dict(N=10, B=4, E=3),
             dict(N=1000, B=1, E=2), dict(N=3000, B=128, E=1000)]
    return fixed + [dict(N=rng.randint(1, 100_000), B=rng.randint(1, 512), E=rng.randint(1, 1000))
                    for _ in range(6)]


def _loss_cases(rng: random.Random) -> list[dict]:
    generator = torch.Generator().manual_seed(rng.randrange(2**31))

    def losses(n: int, S: int, V: int, spread: float) -> torch.Tensor:
        # from perfect recall (0) to worse than guessing (> S ln V): clipping matters for the last
        return torch.rand(n, generator=generator, dtype=torch.float64) * spread * S * math.log(V)

    f64 = dict(dtype=torch.float64)
    cases = [dict(item_loss=torch.zeros(5, **f64), S=4, V=32),  # knows everything
             dict(item_loss=torch.full((3,), 4 * math.log(32), **f64), S=4, V=32),  # knows nothing
             dict(item_loss=torch.tensor([0.0, 100.0], **f64), S=4, V=32),  # one item worse than chance
             dict(item_loss=losses(200, 4, 32, 1.5), S=4, V=32)]
    for _ in range(4):
        S, V = rng.randint(1, 16), rng.randint(2, 1000)
        cases.append(dict(item_loss=losses(rng.randint(1, 500), S, V, rng.choice([0.5, 1.0, 2.0])), S=S, V=V))
    return cases


def _random_bits(item_loss: torch.Tensor, S: int, V: int) -> float:
    return info.random_bits(item_loss, S, V).bits


def _steps(N: int, B: int, E: int) -> int:
    from labkit.train import steps_per_exposure  # lazy: the training loop is only needed here

    return steps_per_exposure(N, B) * E


LIBRARY_BITS = Exercise(
    chapter=0, id="library-bits", title="The bits of a random library", difficulty=1, importance=4,
    statement=r"""
A library holds $N$ items; each item's value is $S$ tokens, each drawn uniformly and independently from
a vocabulary of $V$ tokens. Write `library_bits(N, S, V)`: the information the library holds, in bits.
(A token drawn uniformly from $V$ is worth $\log_2 V$ bits, and independent choices add.) The chapter's
`quick` library, $N = 256$ items of $S = 6$ tokens over $V = 32$, holds 7,680 bits.
""",
    solution=library_bits, reference=info.random_information, cases=_library_cases, imports=("import math",))

TRAINING_STEPS = Exercise(
    chapter=0, id="training-steps", title="Optimizer steps per exposure", difficulty=1, importance=3,
    statement=r"""
An **exposure** shows every one of the $N$ items once, in minibatches of at most $B$ items (the last
minibatch of an exposure may be smaller). Write `training_steps(N, B, E)`: how many optimizer steps
$E$ exposures take. It is an integer, and $N$ need not be a multiple of $B$. (The chapter's `quick`
run, $N = 256$, $B = 64$, $E = 150$, takes the 600 steps of its training table.)
""",
    solution=training_steps, reference=_steps, cases=_steps_cases)

BITS_MEMORIZED = Exercise(
    chapter=0, id="bits-memorized", title="From losses to bits memorized", difficulty=2, importance=5,
    statement=r"""
`item_loss[i]` is the model's loss on item $i$ of a random library: nats, summed over its $S$ value
tokens. An arithmetic coder driven by the model writes the item in $\text{loss}_i / \ln 2$ bits; the
uniform code takes $S\log_2 V$ bits. Write `bits_memorized(item_loss, S, V)`: the sum over items of
the bits saved, $\sum_i \max\big(0,\ S\log_2 V - \text{loss}_i/\ln 2\big)$ (clipped per item: an item the
model predicts worse than chance holds no bits, not negative ones). This is the chapter's bits-learned
count, what `labkit.measure.bits_learned` reports for a random library. Use tensor operations, no loop.
""",
    solution=bits_memorized, reference=_random_bits, cases=_loss_cases, imports=("import math", "import torch"))

EXERCISES = [LIBRARY_BITS, TRAINING_STEPS, BITS_MEMORIZED]

check_library_bits = LIBRARY_BITS.checker()
check_training_steps = TRAINING_STEPS.checker()
check_bits_memorized = BITS_MEMORIZED.checker()
