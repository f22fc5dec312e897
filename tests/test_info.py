"""Information content, bits learned (Def 4.1 / 4.3 / Morris) and their limits, against hand numbers."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import raises_invalid
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit import info
from labkit.info import (
    LOG2_S0,
    N0_BIOS,
    BitsLearned,
    biod_bits,
    biod_information,
    bios_bits,
    bios_information,
    capacity_ratio,
    log2_binom,
    random_bits,
    random_information,
)

LOG2E = 1 / math.log(2)
FAST = settings(max_examples=40)


def sig(x: float, digits: int) -> float:
    """x rounded to ``digits`` significant digits."""
    return float(f"{x:.{digits - 1}e}")


# ---- constants and the totals usually quoted for Part 3.3's bioS (chapter 1 sets them side by side) ----


def test_log2_S0():
    assert round(LOG2_S0, 2) == 47.59
    assert 2**LOG2_S0 == pytest.approx(2 * (12 * 28 * 200) * 200 * 300 * 100 * 263, rel=1e-12)
    assert N0_BIOS == 160_000_000


@pytest.mark.parametrize("N, total", [(10_000, 0.62e6), (100_000, 5.8e6), (1_000_000, 55e6), (20_000_000, 1.0e9)])
def test_bios_worked_totals_use_the_prop_2_3_approximation(N, total):
    """The quoted totals (2 significant digits) are N·log2(N0/N) + N·log2 S0, the approximate form."""
    assert sig(bios_information(N, exact=False), 2) == total


@pytest.mark.parametrize("N, total", [(10_000, 0.630e6), (100_000, 5.97e6), (1_000_000, 56.4e6), (20_000_000, 1.04e9)])
def test_bios_exact_totals_exceed_the_approximation_by_about_N_log2_e(N, total):
    exact, approx = bios_information(N), bios_information(N, exact=False)
    assert sig(exact, 3) == total
    assert 0 < exact - approx < N * LOG2E


# ---- log-binomials -------------------------------------------------------------------------------------


@FAST
@given(st.integers(0, 3000), st.data())
def test_log2_binom_matches_exact_integer_binomial(n, data):
    k = data.draw(st.integers(0, n))
    assert log2_binom(n, k) == pytest.approx(
        math.log2(math.comb(n, k)) if k not in (0, n) else 0.0, rel=1e-12, abs=1e-9
    )


@FAST
@given(st.integers(3000, 30000), st.data())
def test_log2_binom_stirling_branch_matches_exact(n, data):
    k = data.draw(st.integers(1000, n - 1000))
    old = info._DIRECT_LIMIT
    info._DIRECT_LIMIT = 0  # force the Stirling branch on sizes math.comb can check quickly
    try:
        assert log2_binom(n, k) == pytest.approx(math.log2(math.comb(n, k)), rel=1e-11)
    finally:
        info._DIRECT_LIMIT = old


def test_log2_binom_large_arguments():
    assert log2_binom(200_000, 80_000) == pytest.approx(math.log2(math.comb(200_000, 80_000)), rel=1e-12)
    # n = 40000**50 ≈ 1e230: ln C(n, k) = k ln n - ln k! - O(k²/n), the last term negligible
    n, k = 40_000**50, 10_000
    assert log2_binom(n, k) == pytest.approx(k * math.log2(n) - math.lgamma(k + 1) / math.log(2), rel=1e-13)
    assert math.isfinite(log2_binom(40_000**100, 10_000))  # beyond float range
    assert log2_binom(10, 0) == log2_binom(10, 10) == 0.0
    with pytest.raises(ValueError, match="k=11 is not valid"):
        log2_binom(10, 11)


# ---- information content -------------------------------------------------------------------------------


def test_biod_information_exact_and_approximate_forms():
    N, K, C, D, L, T, N0 = 1000, 4, 2, 50, 3, 20, 10**6
    exact = log2_binom(N0, N) + N * K * C * math.log2(D) + K * math.log2(math.comb(T**L, D))
    assert biod_information(N, K, C, D, L, T, N0) == pytest.approx(exact, rel=1e-12)
    approx = N * math.log2(N0 / N) + N * K * C * math.log2(D) + K * D * math.log2(T**L / D)
    assert biod_information(N, K, C, D, L, T, N0, exact=False) == pytest.approx(approx, rel=1e-12)


def test_biod_information_huge_value_space():
    bits = biod_information(10_000, 2, 1, 10_000, 50, 40_000)
    assert math.isfinite(bits) and bits > 2 * 10_000 * 50 * math.log2(40_000) * 0.9


def test_random_information():
    assert random_information(100, 64, 512) == 100 * 64 * 9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(D=5000, L=3, T=16), "D=5000 is not valid; allowed: 1 <= D <= T**L = 4096"),
        (dict(K=0), "K=0 is not valid; allowed: K >= 1"),
        (dict(C=0), "C=0 is not valid; allowed: C >= 1"),
        (dict(N=-3), "N=-3 is not valid; allowed: 1 <= N <= N0 = 1000"),
        (dict(N=1001), "N=1001 is not valid; allowed: 1 <= N <= N0 = 1000"),
        (dict(L=-1), "L=-1 is not valid"),
        (dict(N=2.5), "N=2.5 is not valid; allowed: an integer"),
    ],
)
def test_biod_information_validates_with_readable_messages(kwargs, message):
    args = dict(N=10, K=2, C=1, D=4, L=2, T=8, N0=1000) | kwargs
    with raises_invalid(message):
        biod_information(**args)


def test_bios_information_rejects_more_people_than_names():
    with pytest.raises(ValueError, match="N=101 is not valid; allowed: 1 <= N <= N0 = 100"):
        bios_information(101, N0=100)


@FAST
@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_bios_information_monotone_in_N(a, b):
    lo, hi = sorted((a, b))
    assert bios_information(lo) <= bios_information(hi)


@FAST
@given(
    N=st.integers(1, 5000),
    K=st.integers(1, 10),
    C=st.integers(1, 10),
    L=st.integers(1, 4),
    T=st.integers(4, 50),
    data=st.data(),
)
def test_biod_information_monotone_in_N_K_C_D(N, K, C, L, T, data):
    D = data.draw(st.integers(1, max(1, min(T**L // 2, 10**4) - 1)))
    N0 = 10**7
    base = biod_information(N, K, C, D, L, T, N0)
    assert biod_information(N + 1, K, C, D, L, T, N0) > base
    assert biod_information(N, K + 1, C, D, L, T, N0) > base
    assert biod_information(N, K, C + 1, D, L, T, N0) >= base  # equal when D = 1
    assert biod_information(N, K, C, D + 1, L, T, N0) > base


# ---- bits learned: limits -------------------------------------------------------------------------------


def test_bios_knows_nothing_scores_zero_and_oracle_scores_the_content():
    N = 100_000
    nothing = bios_bits(N, p1=math.log(N0_BIOS), p2=LOG2_S0 * math.log(2))
    assert nothing.bits == pytest.approx(0.0, abs=1e-6)
    assert nothing.breakdown == pytest.approx({"name": 0.0, "values": 0.0}, abs=1e-6)
    oracle = bios_bits(N, p1=math.log(N), p2=0.0)
    assert oracle.bits == pytest.approx(bios_information(N, exact=False), rel=1e-12)
    assert 0 < bios_information(N) - oracle.bits < N * LOG2E  # Stirling gap of log2 C(N0, N)
    assert oracle.breakdown["values"] == pytest.approx(N * LOG2_S0, rel=1e-12)


def test_bios_bits_hand_computed():
    got = bios_bits(10, p1=2.0, p2=30.0, N0=1000, log2_S0=50.0)
    assert got.breakdown["name"] == pytest.approx(10 * (math.log2(1000) - 2.0 / math.log(2)))
    assert got.breakdown["values"] == pytest.approx(10 * (50.0 - 30.0 / math.log(2)))
    assert got.bits == pytest.approx(sum(got.breakdown.values()))


P = dict(N=2000, K=4, C=3, D=100, L=2, T=50, N0=10**6)


def test_biod_knows_nothing_scores_zero_on_name_and_values():
    N, K, C, D, L, T, N0 = P.values()
    got = biod_bits(N, K, C, D, L, T, p1=math.log(N0), p2=C * math.log(D), p3=L * math.log(T), N0=N0)
    assert got.breakdown["name"] == pytest.approx(0.0, abs=1e-6)
    assert got.breakdown["values"] == pytest.approx(0.0, abs=1e-6)
    # not even the value sets: the diversity term is -K·D·log2 D, clipped to 0
    assert got.unclipped["diversity"] == pytest.approx(-K * D * math.log2(D))
    assert got.breakdown["diversity"] == 0.0 and got.bits == pytest.approx(0.0, abs=1e-6)


def test_biod_oracle_reaches_the_information_content():
    N, K, C, D, L, T, N0 = P.values()
    oracle = biod_bits(N, K, C, D, L, T, p1=math.log(N), p2=0.0, p3=0.0, N0=N0)
    assert oracle.bits == pytest.approx(biod_information(N, K, C, D, L, T, N0, exact=False), rel=1e-12)
    assert oracle.breakdown["values"] == pytest.approx(N * K * C * math.log2(D), rel=1e-12)
    exact = biod_information(N, K, C, D, L, T, N0)
    # Def 4.1 at zero loss vs Prop 2.3: only the two log-binomials' Stirling gaps differ
    assert 0 < exact - oracle.bits <= (N + K * D) * LOG2E


def test_biod_bits_hand_computed():
    got = biod_bits(10, 2, 3, 4, 2, 8, p1=1.0, p2=2.0, p3=0.5, N0=1000)
    ln2 = math.log(2)
    assert got.breakdown["name"] == pytest.approx(10 * (math.log(1000) - 1.0) / ln2)
    assert got.breakdown["values"] == pytest.approx(10 * 2 * (3 * math.log(4) - 2.0) / ln2)
    assert got.breakdown["diversity"] == pytest.approx(2 * 4 * (2 * math.log(8) - math.log(4) - 0.5) / ln2)


def test_negative_terms_are_clipped_one_by_one():
    got = bios_bits(100, p1=100.0, p2=0.0)  # terrible at names, perfect at values
    assert got.unclipped["name"] < 0 and got.breakdown["name"] == 0.0
    assert got.bits == pytest.approx(100 * LOG2_S0)


def test_random_bits_clip_per_item_and_scale_to_the_library():
    S, V = 8, 16
    full, uniform = 0.0, S * math.log(V)
    got = random_bits(torch.tensor([full, uniform, 3 * uniform]), S, V)
    assert got.bits == pytest.approx(S * 4)  # only the first item is memorized; the third is clipped
    assert got.unclipped["values"] < got.bits
    assert random_bits([full, uniform], S, V, n_items=10).bits == pytest.approx(10 * S * 4 / 2)
    assert random_bits([full] * 5, S, V).bits == pytest.approx(random_information(5, S, V))


def test_capacity_ratio():
    assert capacity_ratio(2_000.0, 1000) == 2.0
    assert capacity_ratio(BitsLearned(3000.0, {"values": 3000.0}), 1000) == 3.0
    with pytest.raises(ValueError, match="params=0"):
        capacity_ratio(1.0, 0)


def test_mean_loss_reports_missing_entities():
    with pytest.raises(ValueError, match="'value/major' is missing; given: name"):
        info.mean_loss({"name": torch.zeros(3)}, "value/major")


@pytest.mark.parametrize("exact", [True, False])
def test_biod_information_terms_sum_to_the_total_and_match_the_oracle(exact):
    N, K, C, D, L, T, N0 = P.values()
    terms = info.biod_information_terms(N, K, C, D, L, T, N0, exact=exact)
    assert list(terms) == ["name", "values", "diversity"]
    assert sum(terms.values()) == pytest.approx(biod_information(N, K, C, D, L, T, N0, exact=exact), rel=1e-12)
    assert terms["values"] == pytest.approx(N * K * C * math.log2(D))
    if not exact:  # Def 4.1 at zero loss reproduces the approximate terms one by one
        oracle = biod_bits(N, K, C, D, L, T, p1=math.log(N), p2=0.0, p3=0.0, N0=N0)
        assert oracle.breakdown == pytest.approx(terms, rel=1e-12)


def test_biod_information_terms_hand_computed_and_validated():
    terms = info.biod_information_terms(2, 1, 1, 2, 1, 4, N0=4)
    assert terms == pytest.approx({"name": math.log2(6), "values": 2.0, "diversity": math.log2(6)})
    with pytest.raises(ValueError, match="D=17"):
        info.biod_information_terms(10, 1, 1, 17, 2, 4, N0=100)
