"""Exercises of chapter 2 (the capacity scaling law): R from entity losses, sizing N, the peak ratio.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against ``labkit.info`` (or a plain reference here) on hidden cases.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence

from labkit import info
from labkit.exercises.check import Exercise


def capacity_ratio(N: int, K: int, C: int, D: int, L: int, T: int, N0: int,
                   p1: float, p2: float, p3: float, P: int) -> float:
    """R = bits learned / P on bioD, the bits read from entity losses (Def 4.1)."""
    ln2 = math.log(2)
    name = N * (math.log2(N0) - p1 / ln2)
    values = N * K * (C * math.log2(D) - p2 / ln2)
    value_sets = K * D * (L * math.log2(T) - math.log2(D) - p3 / ln2)
    # each term clipped at 0 on its own
    bits = sum(max(0.0, term) for term in (name, values, value_sets))
    return bits / P


def people_needed(P: int, K: int, D: int, N0: int, factor: float) -> int:
    """Smallest N for which bioD(N, K, C=1, D, L=1, T=D) with N0 names holds at least
    factor x 2 bits x P."""
    target = factor * 2 * P
    # invariant: bits(lo) < target <= bits(hi); the bits grow with N up to N0 / 2
    lo, hi = 0, N0 // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if info.biod_information(mid, K, 1, D, 1, D, N0) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def peak_ratio(rows: Sequence[Mapping]) -> dict:
    """For each exposure budget: the model size whose R, averaged over its seeds, is
    highest, and that mean R."""
    runs = defaultdict(list)  # (exposures, d_model) -> the R of each seed
    for row in rows:
        runs[row["exposures"], row["d_model"]].append(row["R"])
    peaks = {}
    for (exposures, d_model), ratios in runs.items():
        R = sum(ratios) / len(ratios)
        if exposures not in peaks or R > peaks[exposures]["R"]:
            peaks[exposures] = {"d_model": d_model, "R": R}
    return peaks


def _capacity_ratio(N: int, K: int, C: int, D: int, L: int, T: int, N0: int, p1: float, p2: float, p3: float,
                    P: int) -> float:
    return info.capacity_ratio(info.biod_bits(N, K, C, D, L, T, p1, p2, p3, N0), P)


def _people_needed(P: int, K: int, D: int, N0: int, factor: float) -> int:
    def bits(n: int) -> float:
        return info.biod_information(n, K, 1, D, 1, D, N0) if n else 0.0

    return bisect.bisect_left(range(N0 // 2 + 1), factor * 2 * P, key=bits)


def _peak_ratio(rows: Sequence[Mapping]) -> dict:
    def size(row: Mapping) -> tuple:
        return row["exposures"], row["d_model"]

    means = [(key, sum(r["R"] for r in group) / len(group))
             for key, group in ((k, list(g)) for k, g in itertools.groupby(sorted(rows, key=size), key=size))]
    best: dict = {}
    for (exposures, d_model), R in means:
        if R > best.get(exposures, {"R": -math.inf})["R"]:
            best[exposures] = {"d_model": d_model, "R": R}
    return best


def _ratio_cases(rng: random.Random) -> list[dict]:
    shape = dict(N=3000, K=8, C=1, D=256, L=1, T=256, N0=10_000)
    knows_nothing = dict(p1=math.log(10_000), p2=math.log(256), p3=math.log(256))
    cases = [
        dict(shape, p1=math.log(3000), p2=0.0, p3=0.0, P=40_448),  # knows everything (an oracle)
        dict(shape, **knows_nothing, P=40_448),  # knows only the marginals: 0 bits
        dict(shape, p1=math.log(10_000) + 3.0, p2=1.0, p3=0.0, P=40_448),  # name loss worse than the marginal
        dict(N=1000, K=4, C=2, D=100, L=3, T=100, N0=info.N0_BIOS, p1=12.0, p2=2.0, p3=3 * math.log(100), P=50_000),
    ]
    for _ in range(6):
        L, T = rng.randint(1, 3), rng.randint(2, 200)
        D, C, K, N = rng.randint(2, min(T**L, 500)), rng.randint(1, 3), rng.randint(1, 8), rng.randint(10, 10_000)
        marginal = dict(p1=math.log(N * 10), p2=C * math.log(D), p3=L * math.log(T))
        cases.append(dict(N=N, K=K, C=C, D=D, L=L, T=T, N0=N * 10, P=rng.randint(1000, 10**6),
                          **{p: rng.uniform(0, 1.3) * value for p, value in marginal.items()}))
    return cases


def _people_cases(rng: random.Random) -> list[dict]:
    cases = [dict(P=40_448, K=8, D=256, N0=10_000, factor=2.5),  # the lab's reference run (N = 3000 there)
             dict(P=1, K=1, D=2, N0=1000, factor=1.0)]  # one person already holds 2 bits
    while len(cases) < 8:
        case = dict(P=rng.randint(200, 20_000), K=rng.randint(1, 8), D=rng.randint(2, 256),
                    N0=rng.randint(10_000, 10**8), factor=rng.choice([1.0, 2.0, 2.5]))
        if info.biod_information(case["N0"] // 2, case["K"], 1, case["D"], 1, case["D"], case["N0"]) \
                >= case["factor"] * 2 * case["P"]:  # feasible below N0 / 2, as the statement promises
            cases.append(case)
    return cases


def _peak_cases(rng: random.Random) -> list[dict]:
    # the best single run (d=8, seed 0) is not the best mean (d=16): a max over runs picks the wrong size
    tricky = [dict(exposures=1000, d_model=8, seed=0, R=2.5), dict(exposures=1000, d_model=8, seed=1, R=1.0),
              dict(exposures=1000, d_model=16, seed=0, R=2.0), dict(exposures=1000, d_model=16, seed=1, R=2.1),
              dict(exposures=100, d_model=8, seed=0, R=0.3), dict(exposures=100, d_model=16, seed=0, R=0.2),
              dict(exposures=100, d_model=8, seed=1, R=0.4), dict(exposures=100, d_model=16, seed=1, R=0.6)]
    cases = [dict(rows=tricky), dict(rows=[dict(exposures=1000, d_model=32, seed=0, R=2.2)])]
    for _ in range(4):
        rows = [dict(exposures=e, d_model=d, seed=s, R=round(rng.uniform(0.1, 2.5), 3))
                for e in rng.sample([100, 300, 1000], rng.randint(1, 3)) for d in rng.sample([8, 12, 16, 24, 32], 3)
                for s in range(rng.randint(1, 3))]
        rng.shuffle(rows)
        cases.append(dict(rows=rows))
    return cases


CAPACITY_RATIO = Exercise(
    chapter=2, id="capacity-ratio", title="R from a model's entity losses, Def 4.1", difficulty=3, importance=5,
    statement=r"""
A model was trained on bioD$(N, K, C, D, L, T)$ with $N_0$ possible names, and `labkit.measure` read its
average entity losses (nats, summed over each entity's tokens): $p_1$ for a name, $p_2$ for a whole value
($C$ chunks), $p_3$ for a value's first chunk. Def 4.1, the chapter's {eq}`eq-capacity-bits`, credits it with

$$N\log_2\frac{N_0}{e^{p_1}} + NK\log_2\frac{D^C}{e^{p_2}} + KD\log_2\frac{T^L}{D\,e^{p_3}}$$

bits, each of the three terms **clipped at 0** on its own (a term worse than the marginal holds no bits,
and must not cancel what the others learned). Write `capacity_ratio(N, K, C, D, L, T, N0, p1, p2, p3, P)`:
the bits learned divided by the parameter count $P$, i.e. the capacity ratio $R$.
""",
    solution=capacity_ratio, reference=_capacity_ratio, cases=_ratio_cases, imports=("import math",))

PEOPLE_NEEDED = Exercise(
    chapter=2, id="people-needed", title="Enough people to fill a model", difficulty=3, importance=3,
    statement=r"""
To measure a capacity the data must hold more than the model can store. This chapter's bioD has
$C = L = 1$ and $T = D$ (so the value sets hold no bits). Write `people_needed(P, K, D, N0, factor)`: the
smallest $N$ for which the data holds at least `factor` $\times\ 2\ \text{bits} \times P$ (the sizing rule
{eq}`eq-capacity-sizing`, as an inequality), with the exact Prop 2.3 content {eq}`eq-capacity-information`
(`info.biod_information`, with `info` imported above). You may assume the answer is at most $N_0/2$, where
the bits grow with $N$; a bisection needs a few dozen evaluations. (`capacity.people_for_capacity` solves
the same equation by a few fixed-point steps, because there $P$ itself depends a little on $N$.)
""",
    solution=people_needed, reference=_people_needed, cases=_people_cases, imports=("from labkit import info",))

PEAK_RATIO = Exercise(
    chapter=2, id="peak-ratio", title="The peak capacity ratio over model sizes", difficulty=2, importance=3,
    statement=r"""
Part 3.3's capacity ratio of an architecture is the **peak** $R$ over model sizes. Each row of `rows` is
one training run: `{"exposures": ..., "d_model": ..., "seed": ..., "R": ...}`. Write `peak_ratio(rows)`,
returning for each exposure budget `{"d_model": best size, "R": its R}`, where a size's $R$ is the
**mean over its seeds** (one lucky seed must not make a size the peak). Plain Python is enough; the
chapter's `capacity.peaks` does the same on a pandas table of runs.
""",
    solution=peak_ratio, reference=_peak_ratio, cases=_peak_cases,
    imports=("from collections import defaultdict", "from collections.abc import Mapping, Sequence"))

EXERCISES = [CAPACITY_RATIO, PEOPLE_NEEDED, PEAK_RATIO]

check_capacity_ratio = CAPACITY_RATIO.checker()
check_people_needed = PEOPLE_NEEDED.checker()
check_peak_ratio = PEAK_RATIO.checker()
