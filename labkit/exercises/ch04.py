"""Exercises of chapter 4 (architecture and capacity): P by hand, ALiBi's slopes, ratios over seeds.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against the lab's own code (``labkit.model``) or a plain reference here, on hidden cases.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from statistics import fmean

from labkit.exercises.check import Exercise


def tiny_params(V: int, T: int, d: int, n_layer: int, mlp: str, mlp_ratio: float,
                experts: int) -> int:
    """All parameters of the lab's tiny GPT: V used tokens, T positions, width d,
    n_layer blocks; mlp is "gelu", "gated" or "none"; experts > 0 makes every MLP a
    mixture of that many experts."""
    embedding, position, final_norm = V * d, T * d, d  # tied unembedding: no rows
    attention = 4 * d * d  # q, k, v and output projections, no biases
    if mlp == "none":
        block_mlp, norms = 0, d  # no MLP, no second norm
    else:
        hidden = round(mlp_ratio * d * (2 / 3 if mlp == "gated" else 1))
        one = (3 if mlp == "gated" else 2) * d * hidden  # gated: gate, up, down
        block_mlp = experts * one + d * experts if experts else one  # + router
        norms = 2 * d
    return embedding + position + final_norm + n_layer * (attention + block_mlp + norms)


def alibi_slopes(n_head: int) -> list[float]:
    """ALiBi's per-head slopes m_1..m_n: for n a power of two m_h = 2^(-8h/n); else
    the slopes of the largest power of two m < n, then every other slope of 2m."""
    if n_head & (n_head - 1) == 0:
        return [2 ** (-8 * h / n_head) for h in range(1, n_head + 1)]
    m = 2 ** math.floor(math.log2(n_head))
    return alibi_slopes(m) + alibi_slopes(2 * m)[0::2][: n_head - m]


def ratios_to_reference(rows: Sequence[Mapping]) -> dict:
    """For each (variant, exposures): the variant's mean R over its seeds divided by
    the reference's mean R at the same exposures."""
    runs = defaultdict(list)  # (variant, exposures) -> R of each seed
    for row in rows:
        runs[row["variant"], row["exposures"]].append(row["R"])
    means = {key: sum(rs) / len(rs) for key, rs in runs.items()}
    return {(v, e): R / means["reference", e] for (v, e), R in means.items()}


def _tiny_params(V: int, T: int, d: int, n_layer: int, mlp: str, mlp_ratio: float, experts: int) -> int:
    from labkit.model import Transformer, count_params, tiny

    cfg = tiny(V, T, d_model=d, n_layer=n_layer, n_head=2, mlp=mlp, mlp_ratio=mlp_ratio, moe_experts=experts)
    return count_params(Transformer(cfg)).total


def _alibi_slopes(n_head: int) -> list[float]:
    from labkit.model import ModelConfig, Transformer

    model = Transformer(ModelConfig(vocab_size=4, max_len=4, n_layer=1, n_head=n_head, d_model=2 * n_head, pos="alibi"))
    return model.blocks[0].attn.slopes.tolist()


def _ratios_to_reference(rows: Sequence[Mapping]) -> dict:
    keys = {(r["variant"], r["exposures"]) for r in rows}
    mean = {k: fmean(r["R"] for r in rows if (r["variant"], r["exposures"]) == k) for k in keys}
    return {k: mean[k] / mean["reference", k[1]] for k in keys}


def _params_cases(rng: random.Random) -> list[dict]:
    cases = [dict(V=71, T=20, d=8, n_layer=2, mlp="gelu", mlp_ratio=4.0, experts=0),  # the quick reference
             dict(V=71, T=20, d=8, n_layer=2, mlp="gated", mlp_ratio=4.0, experts=0),  # hidden 21, not 32
             dict(V=71, T=20, d=8, n_layer=2, mlp="none", mlp_ratio=4.0, experts=0),  # no second norm either
             dict(V=71, T=20, d=8, n_layer=2, mlp="gelu", mlp_ratio=4.0, experts=4),
             dict(V=300, T=12, d=16, n_layer=3, mlp="gelu", mlp_ratio=1.0, experts=0)]
    for _ in range(5):
        cases.append(dict(V=rng.randint(10, 500), T=rng.randint(4, 40), d=2 * rng.randint(2, 20),
                          n_layer=rng.randint(1, 4), mlp=rng.choice(["gelu", "gated", "none"]),
                          mlp_ratio=rng.choice([1.0, 2.5, 4.0]), experts=0))
        cases[-1]["experts"] = rng.choice([0, 2, 8]) if cases[-1]["mlp"] != "none" else 0
    return cases


def _alibi_cases(rng: random.Random) -> list[dict]:
    return [dict(n_head=n) for n in (1, 2, 4, 8, 3, 6, 12)] + [dict(n_head=rng.randint(5, 16))]


def _ratio_cases(rng: random.Random) -> list[dict]:
    # one unlucky reference seed: mean of ratios per seed is not the ratio of means
    tricky = [dict(variant="reference", exposures=100, seed=0, R=0.9), dict(variant="reference", exposures=100,
              seed=1, R=0.5), dict(variant="gated", exposures=100, seed=0, R=0.6),
              dict(variant="gated", exposures=100, seed=1, R=0.6), dict(variant="reference", exposures=1000,
              seed=0, R=2.0), dict(variant="gated", exposures=1000, seed=0, R=2.1)]
    cases = [dict(rows=tricky)]
    for _ in range(6):
        variants = ["reference", *rng.sample(["gated", "no_mlp", "moe", "rotary", "llama"], 3)]
        rows = [dict(variant=v, exposures=e, seed=s, R=round(rng.uniform(0.1, 2.5), 3))
                for v in variants for e in (100, 1000) for s in range(rng.randint(1, 3))]
        rng.shuffle(rows)
        cases.append(dict(rows=rows))
    return cases


TINY_PARAMS = Exercise(
    chapter=4, id="tiny-params", title="Count a variant's parameters by hand", difficulty=2, importance=4,
    statement=r"""
Every ratio in this chapter divides bits by $P$, so $P$ must be right for every variant. The lab's tiny GPT
has a token embedding of $V$ rows (the tokens the data uses; the unembedding is tied to it, no extra
rows), a learned position embedding of $T$ rows, and per block a LayerNorm, the attention (four $d\times d$
matrices, no biases), a second LayerNorm and the MLP; one final LayerNorm. LayerNorms have a weight and
no bias ($d$ each). The GELU MLP has two matrices $d \times h$ with $h = \mathrm{round}(r\,d)$ for
`mlp_ratio` $r$; the gated MLP three, with $h = \mathrm{round}(\tfrac23 r\,d)$ (so it keeps about the same
size); `"none"` drops the MLP *and* the norm in front of it. With `experts` $E > 0$ every MLP is $E$ copies
plus a router ($d \times E$). Write `tiny_params(V, T, d, n_layer, mlp, mlp_ratio, experts)`; the checker
compares it with `count_params` of the real model.
""",
    solution=tiny_params, reference=_tiny_params, cases=_params_cases,
    hint="V=71, T=20, d=8, 2 layers, GELU 4x: 2,304 parameters")

ALIBI_SLOPES = Exercise(
    chapter=4, id="alibi-slopes", title="ALiBi's slopes", difficulty=2, importance=2,
    statement=r"""
ALiBi {cite:p}`press2021alibi` adds $-m_h\,(i - j)$ to head $h$'s attention score of query $i$ on key $j$:
no position embedding at all, just a distance penalty whose slope differs per head, so some heads look
far back and others only at the last few tokens. For $n$ heads, $n$ a power of two, the slopes are the
geometric sequence $m_h = 2^{-8h/n}$, $h = 1..n$. Otherwise take the $m$ slopes of the largest power of two
$m < n$, then the slopes at odd positions ($h = 1, 3, 5, \ldots$) of the sequence for $2m$, until there are
$n$. Write `alibi_slopes(n_head)` (a list of floats); the checker reads the slopes of a real ALiBi model.
""",
    solution=alibi_slopes, reference=_alibi_slopes, cases=_alibi_cases, imports=("import math",))

RATIOS_TO_REFERENCE = Exercise(
    chapter=4, id="ratios-to-reference", title="Ratios to the reference over seeds", difficulty=1, importance=3,
    statement=r"""
Each row of `rows` is a run: `{"variant": ..., "exposures": ..., "seed": ..., "R": ...}`, with a
`"reference"` variant at every exposure budget. Write `ratios_to_reference(rows)`: a dict from
`(variant, exposures)` to the variant's **mean R over its seeds** divided by the reference's mean R at the
same exposures (the reference's own ratio is 1). Seeds are not paired: divide means, do not average
per-seed ratios.
""",
    solution=ratios_to_reference, reference=_ratios_to_reference, cases=_ratio_cases,
    imports=("from collections import defaultdict", "from collections.abc import Mapping, Sequence"))

EXERCISES = [TINY_PARAMS, ALIBI_SLOPES, RATIOS_TO_REFERENCE]

check_tiny_params = TINY_PARAMS.checker()
check_alibi_slopes = ALIBI_SLOPES.checker()
check_ratios_to_reference = RATIOS_TO_REFERENCE.checker()
