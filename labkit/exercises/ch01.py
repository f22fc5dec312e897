"""Exercises of chapter 1 (knowledge as bits): a bioS person's bits, Prop 2.3 for bioD, exact log-binomials.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against ``labkit.info`` on hidden cases.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from labkit import info
from labkit.exercises.check import Exercise
from labkit.info import log2_binom


def person_bits(options: Mapping[str, int]) -> float:
    """Bits of a person whose attributes are independent and uniform.

    options: attribute -> its number of options.
    """
    return sum(math.log2(n) for n in options.values())


def biod_information(N: int, K: int, C: int, D: int, L: int, T: int, N0: int) -> float:
    """Bits in bioD(N, K, C, D, L, T) with N0 possible names (Prop 2.3, exact)."""
    # which N of the N0 names occur
    names = log2_binom(N0, N)
    # each person's C chunks per attribute, each one of D
    values = N * K * C * math.log2(D)
    # each attribute's set of D distinct strings out of T^L
    value_sets = K * log2_binom(T**L, D)
    return names + values + value_sets


def log2_binomial(n: int, k: int) -> float:
    """log2 C(n, k) for integers 1 <= n, 0 <= k <= n, even for n beyond floats."""
    k = min(k, n - k)  # C(n, k) = C(n, n - k): fewer factors
    # C(n, k) = n^k / k! * prod_{i<k} (1 - i/n), each factor in log space: none is huge
    shrink = sum(math.log1p(-i / n) for i in range(k))
    return (k * math.log(n) + shrink - math.lgamma(k + 1)) / math.log(2)


def _product_bits(options: Mapping[str, int]) -> float:
    return math.log2(math.prod(options.values()))  # exact integer product, then one log


def _person_cases(rng: random.Random) -> list[dict]:
    cases = [dict(options=dict(info.BIOS_ATTRIBUTE_SIZES)), dict(options={"gender": 2}),
             dict(options={"company_city": 1}), dict(options={"birth_month": 12, "birth_day": 28, "birth_year": 200})]
    for _ in range(4):
        names = rng.sample(["city", "university", "major", "employer", "hobby", "pet", "color", "sport"],
                           rng.randint(1, 6))
        cases.append(dict(options={name: rng.randint(2, 10_000) for name in names}))
    return cases


def _biod_cases(rng: random.Random) -> list[dict]:
    cases = [
        dict(N=1000, K=4, C=2, D=100, L=3, T=100, N0=info.N0_BIOS),  # chapter 1's running example
        dict(N=3000, K=8, C=1, D=256, L=1, T=256, N0=10_000),  # D = T^L: the value sets hold nothing
        dict(N=50, K=2, C=1, D=10, L=1, T=10, N0=50),  # every name is used: the name term is 0
        dict(N=100, K=2, C=3, D=1, L=2, T=5, N0=1000),  # D = 1: the values hold nothing
        dict(N=200, K=3, C=1, D=1000, L=50, T=20, N0=10**6),  # T^L far beyond float range
    ]
    for _ in range(5):
        L, T, N = rng.randint(1, 4), rng.randint(2, 300), rng.randint(1, 20_000)
        cases.append(dict(N=N, K=rng.randint(1, 10), C=rng.randint(1, 4), D=rng.randint(1, min(T**L, 3000)),
                          L=L, T=T, N0=rng.randint(N, 10**8)))
    return cases


def _binom_cases(rng: random.Random) -> list[dict]:
    cases = [dict(n=5, k=2), dict(n=10, k=0), dict(n=10, k=10), dict(n=1000, k=500), dict(n=10**30, k=100),
             dict(n=20**50, k=1000), dict(n=40000**80, k=100), dict(n=info.N0_BIOS, k=5000)]
    for _ in range(4):
        n = rng.randint(1, 10**rng.randint(1, 40))
        cases.append(dict(n=n, k=rng.randint(0, min(n, 3000))))
    return cases


PERSON_BITS = Exercise(
    chapter=1, id="person-bits", title="A bioS person in bits", difficulty=1, importance=3,
    statement=r"""
A person's attributes are independent, and each is drawn uniformly from its own list of options.
Write `person_bits(options)`, where `options` maps each attribute to its number of options: the bits
of one person's attributes, {eq}`eq-person-bits`. For bioS (`labkit.info.BIOS_ATTRIBUTE_SIZES`) it is
$\log_2 S_0 \approx 47.59$.
""",
    solution=person_bits, reference=_product_bits, cases=_person_cases,
    imports=("import math", "from collections.abc import Mapping"))

BIOD_INFORMATION = Exercise(
    chapter=1, id="biod-information", title="The information in bioD, Prop 2.3", difficulty=3, importance=5,
    statement=r"""
Write `biod_information(N, K, C, D, L, T, N0)`: the exact information content of bioD in bits,
Prop 2.3 ({eq}`eq-biod`, not the approximate {eq}`eq-biod-approx`) term by term: which $N$ of the
$N_0$ names occur, every person's $C$ chunks of each of $K$ attributes (each one of $D$), and each
attribute's set of $D$ distinct strings of $L$ tokens over a vocabulary of $T$. `log2_binom(n, k)`
(imported above) is $\log_2\binom{n}{k}$, exact even for $n = T^L$ in the hundreds of digits.
Mind the cases $D = 1$ and $D = T^L$.
""",
    solution=biod_information, reference=info.biod_information, cases=_biod_cases,
    imports=("import math", "from labkit.info import log2_binom"))

LOG2_BINOMIAL = Exercise(
    chapter=1, id="log2-binomial", title="A log-binomial that survives T^L", difficulty=4, importance=2,
    statement=r"""
Prop 2.3 ({eq}`eq-biod`) needs $\log_2\binom{n}{k}$ for $n = T^L$, which is $20^{50} \approx 10^{65}$ in the
paper and can exceed the largest float ($\approx 10^{308}$). The textbook form
`(lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)) / log(2)` subtracts two numbers of size
$n \ln n$ whose difference is tiny next to them, and fails (or overflows) there. Write `log2_binomial(n, k)`
that stays accurate (relative error $10^{-9}$) for any integers $1 \le n$, $0 \le k \le n$ with $k$ up to
a few thousand. Hint: $\binom{n}{k} = \frac{n^k}{k!}\prod_{i<k}\left(1 - \frac{i}{n}\right)$, and Python's
`math.log` takes integers of any size.
""",
    solution=log2_binomial, reference=log2_binom, cases=_binom_cases, imports=("import math",), rtol=1e-9)

EXERCISES = [PERSON_BITS, BIOD_INFORMATION, LOG2_BINOMIAL]

check_person_bits = PERSON_BITS.checker()
check_biod_information = BIOD_INFORMATION.checker()
check_log2_binomial = LOG2_BINOMIAL.checker()
