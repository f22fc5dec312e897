"""Information content of the lab's datasets, bits learned from per-entity losses, and the capacity ratio.

Why one module: the claim of Part 3.3 (allenzhu2024part33), "2 bits per parameter", is only as good as
the bit accounting behind it. Every chapter takes both numbers from here: how many bits a dataset holds
(Prop 2.3 for bioD, its bioS analogue, N·S·log2 V for random sequences) and how many of them a model holds
(Def 4.1, Def 4.3, and the per-sample code length of Morris et al., morris2025memorize, for random data),
so the two always use the same conventions. Definitions and propositions are numbered as in Part 3.3.

Conventions
- Losses are in nats, **summed over the tokens of one entity** (the name, one attribute value, the first
  chunk of a value) for one item, then averaged over the items (and attributes) that were evaluated.
  The formulas multiply those averages by the dataset's N, so a model can be scored on a subset.
- Bits learned are reported per term ("name", "values", "diversity"); each term is **clipped at 0**
  (a model worse than the marginal, e.g. an untrained one, holds no bits rather than negative bits, and
  a bad name term does not cancel learned values). The unclipped terms stay in ``unclipped``.
- Log-binomials use a log-space form that works for arguments far beyond float range (T^L = 40000^50 and
  more): ``log2_binom`` takes Python ints exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from labkit.checks import check_int

LN2 = math.log(2.0)
LOG2E = 1.0 / LN2

# The sizes of bioS are defined here, once: this module sits below labkit.data in the dependency order,
# so the datasets (labkit.data.bios's Pools.load, labkit.data.biod's default name pools) take them from
# here, and the bit accounting can never disagree with the data about N0 or S0.

#: Sizes of bioS's first / middle / last name pools (Part 3.1, allenzhu2023part31); bioD's default names.
BIOS_NAME_POOLS: tuple[int, int, int] = (400, 400, 1000)
#: Distinct full names in bioS: N0 = 400 · 400 · 1000 = 1.6e8.
N0_BIOS = math.prod(BIOS_NAME_POOLS)
#: Number of possible values of each bioS attribute that is knowledge (company city is a function of the
#: employer, so it is not counted; gender is told by the pronouns). Birth dates are 12 months × 28 days
#: × 200 years; the others are the sizes of the value pools in ``labkit/data/pools/``.
BIOS_ATTRIBUTE_SIZES: dict[str, int] = {
    "birth_date": 12 * 28 * 200,
    "birth_city": 200,
    "university": 300,
    "major": 100,
    "employer": 263,
    "gender": 2,
}
#: log2 S0, S0 = 2 · (12·28·200) · 200 · 300 · 100 · 263: the bits of one person's attributes (≈ 47.59).
LOG2_S0 = sum(math.log2(s) for s in BIOS_ATTRIBUTE_SIZES.values())

# Up to this k, log C(n, k) sums log1p(-i/n) exactly; above it (then n - k >= k is large too) Stirling's
# series with two correction terms is exact to ~1e-12 nats.
_DIRECT_LIMIT = 1 << 16


# --------------------------------------------------------------------------------------------------
# Log-binomials and information content
# --------------------------------------------------------------------------------------------------


def log2_binom(n: int, k: int) -> float:
    """log2 C(n, k) for integers 0 <= k <= n, accurate for any size of n (Python ints, e.g. 40000**50).

    Why not ``lgamma(n+1) - lgamma(k+1) - lgamma(n-k+1)``: for n ≫ k the two large lgamma values cancel
    and the difference loses all precision (n = 1e30 gives garbage), and n may not even fit in a float.
    Instead: ln C(n, k) = k·ln n + Σ_{i<k} ln(1 - i/n) - ln k!, with the sum done term by term for
    k <= 65536 and by Stirling's series (written with log1p so nothing cancels) above.
    """
    n = check_int("n", n, 0)
    k = check_int("k", k, 0, n, "n")
    k = min(k, n - k)
    if k == 0:
        return 0.0
    x = k / n  # exact-rounded float even for huge ints (may underflow to 0.0, which is then correct)
    if k <= _DIRECT_LIMIT:
        i = np.arange(k, dtype=np.float64)
        tail = float(np.log1p(-i * (1 / n)).sum())  # int/int: no float conversion of a huge n
    else:
        # ln n!/(n-k)! - k ln n with m = n - k, Stirling: -m·ln(1-x) - k - ½ln(1-x) + 1/(12n) - 1/(12m);
        # -m·ln(1-x) = k·g(x) + k·ln(1-x) with g(x) = -ln(1-x)/x, so no term of size n appears.
        lx = math.log1p(-x)
        g_minus_1 = x / 2 + x * x / 3 + x**3 / 4 + x**4 / 5 if x < 1e-4 else -lx / x - 1.0
        m = n - k
        tail = k * g_minus_1 + k * lx - 0.5 * lx + 1 / (12 * n) - 1 / (12 * m) - 1 / (360 * n**3) + 1 / (360 * m**3)
    return (k * math.log(n) + tail - math.lgamma(k + 1)) / LN2


def bios_information(N: int, N0: int = N0_BIOS, *, log2_S0: float = LOG2_S0, exact: bool = True) -> float:
    """Bits of knowledge in bioS(N): which N of the N0 names occur, and every person's attributes.

    ``exact=True``: ``log2 C(N0, N) + N·log2 S0``. ``exact=False``: the approximation of Prop 2.3,
    ``N·log2(N0/N) + N·log2 S0``, which is what Def 4.3 gives for a model that knows everything (its name
    loss is then ln N: the N names are equally likely) and what the totals usually quoted for Part 3.3's
    bioS(N) use (0.62M bits for N = 10K ...; chapter 1, ``notebooks/01_knowledge_as_bits.ipynb``, sets
    them side by side). The two differ by about N·log2 e (Stirling), i.e. ~2-3% for N <= 1M.
    """
    N0 = check_int("N0", N0, 1)
    N = check_int("N", N, 1, N0, "N0")
    names = log2_binom(N0, N) if exact else N * math.log2(N0 / N)
    return names + N * log2_S0


def check_biod_parameters(N: int, K: int, C: int, D: int, L: int, T: int, N0: int) -> tuple[int, ...]:
    """Validate bioD(N, K, C, D, L, T) with N0 names; return them as ints (shared by info and the dataset)."""
    N0 = check_int("N0", N0, 1)
    N = check_int("N", N, 1, N0, "N0")
    K = check_int("K", K, 1)
    C = check_int("C", C, 1)
    L = check_int("L", L, 1)
    T = check_int("T", T, 1)
    D = check_int("D", D, 1, T**L, "T**L")
    return N, K, C, D, L, T, N0


def biod_information(N: int, K: int, C: int, D: int, L: int, T: int, N0: int = N0_BIOS,
                     exact: bool = True) -> float:
    """Bits of knowledge in bioD(N, K, C, D, L, T) (Part 3.3, Prop 2.3).

    ``exact=True``: ``log2 C(N0, N) + N·K·C·log2 D + K·log2 C(T^L, D)`` (which names, every person's C
    chunks per attribute, and each attribute's set of D values). ``exact=False``: the approximation
    ``N·log2(N0/N) + N·K·C·log2 D + K·D·log2(T^L/D)``, which Def 4.1 reproduces exactly for an oracle.
    """
    N, K, C, D, L, T, N0 = check_biod_parameters(N, K, C, D, L, T, N0)
    if exact:
        names = log2_binom(N0, N)
        diversity = K * log2_binom(T**L, D)
    else:
        names = N * math.log2(N0 / N)
        diversity = K * D * (L * math.log2(T) - math.log2(D))
    return names + N * K * C * math.log2(D) + diversity


def random_information(N: int, S: int, V: int) -> float:
    """Bits in N uniformly random sequences of S tokens over a vocabulary of V: N·S·log2 V."""
    N = check_int("N", N, 1)
    S = check_int("S", S, 1)
    V = check_int("V", V, 1)
    return N * S * math.log2(V)


# --------------------------------------------------------------------------------------------------
# Bits learned
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BitsLearned:
    """Bits of a dataset a model holds, with the terms that sum to it.

    ``breakdown``: the terms, each clipped at 0 (``bits == sum(breakdown.values())``); keys among "name",
    "values", "diversity". ``unclipped``: the same terms before clipping (negative = worse than the marginal).
    """

    bits: float
    breakdown: dict[str, float]
    unclipped: dict[str, float] = field(default_factory=dict)


def _learned(terms: Mapping[str, float]) -> BitsLearned:
    clipped = {k: max(0.0, float(v)) for k, v in terms.items()}
    return BitsLearned(bits=sum(clipped.values()), breakdown=clipped, unclipped={k: float(v) for k, v in terms.items()})


def values_bits(log2_S: float, loss: float) -> BitsLearned:
    """Bits a model holds of values whose information is ``log2_S`` bits (summed over items), from the
    summed loss ``loss`` (nats) of those values: Def 4.3's value term ``log2 S - p/ln2`` without a name
    term (QA answers, labkit.data.extraction). A model at the marginal scores 0."""
    return _learned({"values": float(log2_S) - float(loss) / LN2})


def bios_bits(N: int, p1: float, p2: float, N0: int = N0_BIOS, *, log2_S0: float = LOG2_S0) -> BitsLearned:
    """Bits learned on bioS(N), Part 3.3 Def 4.3: ``N·(log2 N0 - p1/ln2) + N·(log2 S0 - p2/ln2)``.

    p1: name loss (nats, summed over the name's tokens, averaged over people); p2: the sum of the
    birth date, birth city, university, major, employer and gender losses, averaged over people.
    Limits: a model that knows nothing (p1 = ln N0, p2 = ln S0) scores 0; one that knows everything
    (p1 = ln N: it cannot know which person comes next, only that it is one of N; p2 = 0) scores
    ``bios_information(N, N0, exact=False)``.
    """
    N0 = check_int("N0", N0, 1)
    N = check_int("N", N, 1, N0, "N0")
    return _learned({"name": N * (math.log2(N0) - p1 / LN2), "values": N * (log2_S0 - p2 / LN2)})


def biod_bits(N: int, K: int, C: int, D: int, L: int, T: int, p1: float, p2: float, p3: float,
              N0: int = N0_BIOS) -> BitsLearned:
    """Bits learned on bioD, Part 3.3 Def 4.1:
    ``N·log2(N0/e^p1) + N·K·log2(D^C/e^p2) + K·D·log2(T^L/(D·e^p3))``.

    p1: name loss; p2: loss of a whole value (C chunks, C·L tokens); p3: loss of the *first chunk* of a
    value (its L tokens), all in the training context (after the name and the attribute's key), summed
    over the entity's tokens and averaged over people and attributes.

    Why the first chunk (our reading of Def 4.1 / Thm 3.2): the third term credits knowing each
    attribute's set of D values ("diversity"). Every chunk is drawn from that set, and the first chunk
    is the one the bound is stated for; for C = 1 it is the whole value (p3 = p2). At p3 = 0 the term is
    K·D·log2(T^L/D) ≈ K·log2 C(T^L, D) (the whole set is known); a model that only knows the set and none
    of the people (p3 = ln D) gets K·D·log2(T^L/D²), a lower bound; one that knows nothing
    (p3 = L·ln T) gets -K·D·log2 D, clipped to 0.

    Limits: knows nothing (p1 = ln N0, p2 = C·ln D) → name and values terms 0; oracle (p1 = ln N,
    p2 = p3 = 0) → ``biod_information(..., exact=False)`` exactly, and the exact Prop 2.3 content minus
    at most (N + K·D)·log2 e bits (the Stirling gap of the two log-binomials).
    """
    N, K, C, D, L, T, N0 = check_biod_parameters(N, K, C, D, L, T, N0)
    return _learned({
        "name": N * (math.log2(N0) - p1 / LN2),
        "values": N * K * (C * math.log2(D) - p2 / LN2),
        "diversity": K * D * (L * math.log2(T) - math.log2(D) - p3 / LN2),
    })


def random_bits(item_loss: torch.Tensor | np.ndarray | Sequence[float], S: int, V: int,
                n_items: int | None = None) -> BitsLearned:
    """Bits memorized of uniformly random sequences (Morris et al., morris2025memorize).

    Per item: ``S·log2 V - loss/ln2`` (the uniform code length minus the model's code length, loss in
    nats summed over the S value tokens), clipped at 0 per item; summed over items. If only a subset of
    an ``n_items`` library was scored, the mean per item is scaled to ``n_items``.
    """
    S = check_int("S", S, 1)
    V = check_int("V", V, 1)
    loss = torch.as_tensor(item_loss, dtype=torch.float64).flatten()
    if loss.numel() == 0:
        raise ValueError("item_loss is empty; allowed: at least one item's loss")
    n = loss.numel() if n_items is None else check_int("n_items", n_items, 1)
    per_item = S * math.log2(V) - loss / LN2
    raw = float(per_item.mean()) * n
    clipped = float(per_item.clamp(min=0).mean()) * n
    return BitsLearned(bits=clipped, breakdown={"values": clipped}, unclipped={"values": raw})


def mean_loss(entity_loss: Mapping[str, torch.Tensor | np.ndarray | Sequence[float]], name: str) -> float:
    """Average over items of one entity's summed loss; ``ValueError`` naming what is there if missing."""
    if name not in entity_loss:
        raise ValueError(f"entity loss {name!r} is missing; given: {', '.join(sorted(entity_loss)) or 'nothing'}")
    values = torch.as_tensor(entity_loss[name], dtype=torch.float64)
    if values.numel() == 0:
        raise ValueError(f"entity loss {name!r} is empty")
    return float(values.mean())


def capacity_ratio(bits: float | BitsLearned, params: int) -> float:
    """R = bits / P (Part 3.3), P the parameter count without embedding rows of unused tokens."""
    params = check_int("params", params, 1)
    return float(bits.bits if isinstance(bits, BitsLearned) else bits) / params


def biod_information_terms(N: int, K: int, C: int, D: int, L: int, T: int, N0: int = N0_BIOS,
                           exact: bool = True) -> dict[str, float]:
    """The three terms of Prop 2.3 by name; they sum to :func:`biod_information` (same arguments).

    ``"name"``: which N of the N0 names occur, ``log2 C(N0, N)`` (≈ ``N·log2(N0/N)``); ``"values"``:
    every person's C chunks per attribute, ``N·K·C·log2 D``; ``"diversity"``: each attribute's set of D
    values, ``K·log2 C(T^L, D)`` (≈ ``K·D·log2(T^L/D)``). ``exact=False`` gives the approximations. The
    keys are those of :func:`biod_bits`'s breakdown, so an oracle's bits compare term by term.
    """
    N, K, C, D, L, T, N0 = check_biod_parameters(N, K, C, D, L, T, N0)
    if exact:
        name, diversity = log2_binom(N0, N), K * log2_binom(T**L, D)
    else:
        name, diversity = N * math.log2(N0 / N), K * D * (L * math.log2(T) - math.log2(D))
    return {"name": name, "values": N * K * C * math.log2(D), "diversity": diversity}
