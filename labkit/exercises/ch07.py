"""Exercises of chapter 7 (junk data): the steps of a mixture, the useful share of the tokens, and the
domain token's shift of every entity.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against ``labkit.data.junk`` (a real mixture) or a plain reference here, on hidden cases.
"""

from __future__ import annotations

import math
import random

from labkit.exercises.check import Exercise


def mixture_steps(N: int, K: int, E: int, ratio: float, batch: int,
                  domain_token: bool) -> int:
    """Optimizer steps of E useful exposures of bioD (N people, K one-token
    attributes, two-token names) with `ratio` junk tokens per useful token."""
    junk_length = 4 + 2 * K  # BOS, 2 name tokens, K (key, value) pairs, EOS
    useful_length = junk_length + (1 if domain_token else 0)
    junk_records = round(ratio * N * useful_length / junk_length)
    return E * math.ceil((N + junk_records) / batch)


def useful_share(K: int, ratio: float, domain_token: bool) -> float:
    """The fraction of a mixture's training tokens that belong to useful records
    (N is large: no rounding to whole junk records)."""
    useful_length = 4 + 2 * K + (1 if domain_token else 0)
    junk_tokens = ratio * useful_length  # per useful record
    return useful_length / (useful_length + junk_tokens)


def with_domain_token(tokens: list[list[int]], spans: dict,
                      domain_id: int) -> tuple[list[list[int]], dict]:
    """Insert `domain_id` after BOS (position 0) of every record and move every
    entity span [start, end) so that it still covers the same tokens."""
    moved = [[row[0], domain_id, *row[1:]] for row in tokens]
    shifted = {name: [[start + 1, end + 1] for start, end in rows]
               for name, rows in spans.items()}
    return moved, shifted


def _mixture_steps(N: int, K: int, E: int, ratio: float, batch: int, domain_token: bool) -> int:
    from labkit.data import biod
    from labkit.data.junk import JunkMixture
    from labkit.train import steps_per_exposure

    useful = biod.sample(N, K, 1, 16, 1, 16, name_pools=(64, 64))
    mixture = JunkMixture(useful, "fresh" if ratio else "none", ratio or 1.0, domain_token)
    return E * steps_per_exposure(mixture.n_items, batch)


def _useful_share(K: int, ratio: float, domain_token: bool) -> float:
    from labkit.data import biod
    from labkit.data.junk import JunkMixture

    useful = biod.sample(4000, K, 1, 16, 1, 16, name_pools=(100, 100))
    return 1 / (1 + JunkMixture(useful, "fresh", ratio, domain_token).token_ratio)


def _with_domain_token(tokens: list[list[int]], spans: dict, domain_id: int) -> tuple[list[list[int]], dict]:
    import torch

    from labkit.data.base import TokenBatch
    from labkit.data.junk import UsefulRecords

    class Given:  # the learner's records as a dataset, so the lab's own code inserts the token
        n_items, vocab_size = len(tokens), domain_id

        def exposure(self, index: int) -> TokenBatch:
            t = torch.tensor(tokens)
            return TokenBatch(t, t != 0, {k: torch.tensor(v) for k, v in spans.items()})

    batch = UsefulRecords(Given(), domain_id, domain_id + 1).exposure(0)
    return batch.tokens.tolist(), {k: v.tolist() for k, v in batch.spans.items()}


def _steps_cases(rng: random.Random) -> list[dict]:
    cases = [dict(N=100, K=8, E=100, ratio=7.0, batch=32, domain_token=False),  # the quick profile
             dict(N=100, K=8, E=100, ratio=7.0, batch=32, domain_token=True),  # one more token per record
             dict(N=100, K=8, E=100, ratio=0.0, batch=32, domain_token=False)]  # clean
    for _ in range(5):
        cases.append(dict(N=rng.randint(10, 300), K=rng.randint(1, 8), E=rng.choice([1, 100, 300]),
                          ratio=rng.choice([1.0, 3.0, 7.0, 0.5]), batch=rng.choice([8, 32, 128]),
                          domain_token=rng.random() < 0.5))
    return cases


def _share_cases(rng: random.Random) -> list[dict]:
    cases = [dict(K=8, ratio=7.0, domain_token=False), dict(K=8, ratio=3.0, domain_token=False),
             dict(K=8, ratio=7.0, domain_token=True)]
    cases += [dict(K=rng.randint(1, 8), ratio=rng.choice([1.0, 2.0, 7.0, 15.0]), domain_token=rng.random() < 0.5)
              for _ in range(4)]
    return cases


def _domain_cases(rng: random.Random) -> list[dict]:
    cases = [dict(tokens=[[1, 5, 6, 7, 2], [1, 8, 9, 7, 2]], spans={"name": [[1, 3], [1, 3]]}, domain_id=20)]
    for _ in range(5):
        n, length = rng.randint(1, 4), rng.randint(4, 9)
        tokens = [[1, *(rng.randint(3, 19) for _ in range(length - 2)), 2] for _ in range(n)]
        spans = {f"e{k}": [[s, s + w] for _ in range(n)] for k in range(rng.randint(1, 3))
                 for s in [rng.randint(1, length - 2)] for w in [rng.randint(1, length - 1 - s)]}
        cases.append(dict(tokens=tokens, spans=spans, domain_id=20 + rng.randint(0, 5)))
    return cases


MIXTURE_STEPS = Exercise(
    chapter=7, id="mixture-steps", title="The optimizer steps of a 7:1 mixture", difficulty=2, importance=4,
    statement=r"""
Exposures count the **useful** data: in one exposure every useful record is seen once, together with
junk records holding `ratio` times as many tokens. A bioD record of this chapter has two name tokens
and $K$ one-token attributes: BOS, name, $K$ (key, value) pairs, EOS, i.e. $4 + 2K$ tokens; a useful
record with the domain token has one more. Junk records have the plain layout, and their number is the
useful tokens times `ratio` divided by the junk record's length, rounded to a whole record. Every
exposure is cut into minibatches of `batch` records (the last one smaller). Write
`mixture_steps(N, K, E, ratio, batch, domain_token)`: the optimizer steps of $E$ useful exposures.
""",
    solution=mixture_steps, reference=_mixture_steps, cases=_steps_cases, imports=("import math",))

USEFUL_SHARE = Exercise(
    chapter=7, id="useful-share", title="How much of training is useful?", difficulty=1, importance=3,
    statement=r"""
Predict before you compute: with 3:1 junk instead of 7:1, what share of the training tokens is useful
data, and so how many times more steps than the clean data does a run of the same useful exposures
take? Write `useful_share(K, ratio, domain_token)`: the fraction of a mixture's training tokens that
belong to useful records (records as in the previous exercise; ignore the rounding to whole records).
The checker measures it on a real mixture of 4,000 people (`JunkMixture.token_ratio`).
""",
    solution=useful_share, reference=_useful_share, cases=_share_cases, rtol=2e-3)

WITH_DOMAIN_TOKEN = Exercise(
    chapter=7, id="with-domain-token", title="Prepend a domain token", difficulty=2, importance=3,
    statement=r"""
The domain token goes right after BOS of every useful record, so everything after it moves one position
to the right, and so must every entity span `[start, end)` the bit meter reads (`spans` maps an entity
name to one `[start, end]` pair per record). Write `with_domain_token(tokens, spans, domain_id)`,
returning the new token lists and the moved spans; the checker compares them with what
`labkit.data.junk` renders.
""",
    solution=with_domain_token, reference=_with_domain_token, cases=_domain_cases)

EXERCISES = [MIXTURE_STEPS, USEFUL_SHARE, WITH_DOMAIN_TOKEN]

check_mixture_steps = MIXTURE_STEPS.checker()
check_useful_share = USEFUL_SHARE.checker()
check_with_domain_token = WITH_DOMAIN_TOKEN.checker()
