"""bioD(N, K, C, D, L, T): record layout, value sets, spans, determinism, accounting, validation, speed."""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import pytest
import torch
from conftest import constant_losses, raises_invalid
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.data import TokenDataset
from labkit.data.biod import BioD, distinct_strings, sample
from labkit.info import biod_information
from labkit.tokenizer import BOS_ID, EOS_ID

FAST = settings(max_examples=20)


def params():
    return st.fixed_dictionaries({
        "N": st.integers(1, 60), "K": st.integers(1, 4), "C": st.integers(1, 3), "L": st.integers(1, 3),
        "T": st.integers(2, 9), "seed": st.integers(0, 2**32),
    })


@FAST
@given(params(), st.data())
def test_records_spans_and_values(p, data):
    D = data.draw(st.integers(1, min(p["T"] ** p["L"], 50)))
    d = sample(p["N"], p["K"], p["C"], D, p["L"], p["T"], seed=p["seed"], name_pools=(8, 9))
    assert isinstance(d, TokenDataset) and d.kind == "biod" and d.n_items == p["N"]
    batch = d.exposure(0)
    N, K, C, L = p["N"], p["K"], p["C"], p["L"]
    assert batch.tokens.shape == (N, d.record_length) == (N, 2 + 2 + K * (1 + C * L))
    assert (batch.tokens[:, 0] == BOS_ID).all() and (batch.tokens[:, -1] == EOS_ID).all()
    assert batch.loss_mask[:, 1:].all() and not batch.loss_mask[:, 0].any()
    tokens = batch.tokens.numpy()
    # names: distinct people, tokens from their own pools
    name = tokens[:, 1:3] - [d.vocab.offset("n0_"), d.vocab.offset("n1_")]
    assert ((name >= 0) & (name < [8, 9])).all() and len({tuple(r) for r in name}) == N
    assert (batch.spans["name"] == torch.tensor([1, 3])).all()
    for k in range(K):
        start = d.value_start(k)
        assert (tokens[:, start - 1] == d.vocab.offset("k") + k).all()  # keys in fixed order
        assert (batch.spans[f"value/{k}"] == torch.tensor([start, start + C * L])).all()
        assert (batch.spans[f"value/{k}/chunk0"] == torch.tensor([start, start + L])).all()
        value = tokens[:, start : start + C * L].reshape(N, C, L) - d.vocab.offset("t")
        assert np.array_equal(value, d.value_sets[k][d.chunks[:, k]])
    # each attribute's set: D distinct strings of L tokens in [0, T)
    assert d.value_sets.shape == (K, D, L)
    assert d.value_sets.min() >= 0 and d.value_sets.max() < p["T"]
    for k in range(K):
        assert len({tuple(s) for s in d.value_sets[k]}) == D
    assert d.chunks.min() >= 0 and d.chunks.max() < D


def test_deterministic_for_a_seed():
    a, b, c = (sample(200, 3, 2, 30, 2, 10, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.exposure(0).tokens, b.exposure(0).tokens)
    assert not torch.equal(a.exposure(0).tokens, c.exposure(0).tokens)
    assert a.exposure(3) is a.exposure(0)  # static data


def test_the_cpu_full_layout_of_chapter_2():  # 2-token names from 100 × 100, 20 tokens per record
    d = sample(3000, 8, 1, 256, 1, 256, name_pools=(100, 100), N0=10_000)
    assert d.N0 == 10_000 and d.record_length == 20
    assert d.decode(d.exposure(0).tokens[0]).split()[2] == "k0"
    assert d.information_bits() == pytest.approx(biod_information(3000, 8, 1, 256, 1, 256, 10_000))


def test_distinct_strings_in_huge_spaces():
    rng = np.random.default_rng(0)
    s = distinct_strings(rng, 2000, 50, 40_000)  # T^L ≈ 1e230: rejection path
    assert s.shape == (2000, 50) and len({tuple(r) for r in s}) == 2000
    full = distinct_strings(rng, 16, 2, 4)  # D = T^L: every string exactly once
    assert sorted(map(tuple, full.tolist())) == [(i, j) for i in range(4) for j in range(4)]


def test_used_tokens():
    d = sample(50, 2, 1, 5, 1, 100, name_pools=(30, 30))
    used = d.used_tokens()
    assert torch.equal(used, d.exposure(0).tokens.unique())
    assert len(used) <= 2 + 60 + 2 + 2 * 5 and len(used) < d.vocab_size


def test_bits_learned_limits_and_key_convention():
    N, K, C, D, L, T = 500, 3, 2, 40, 2, 30
    d = sample(N, K, C, D, L, T, name_pools=(100, 100))
    full = functools.partial(constant_losses, N)
    oracle = {"name": full(math.log(N))}
    for k in range(K):
        oracle |= {f"value/{k}": full(0.0), f"value/{k}/chunk0": full(0.0)}
    got = d.bits_learned(oracle)
    assert got.bits == pytest.approx(biod_information(N, K, C, D, L, T, 10_000, exact=False), rel=1e-12)
    assert 0 < d.information_bits() - got.bits <= (N + K * D) / math.log(2)
    nothing = {"name": full(math.log(10_000))}
    for k in range(K):
        nothing |= {f"value/{k}": full(C * math.log(D)), f"value/{k}/chunk0": full(math.log(D))}
    got = d.bits_learned(nothing)
    assert got.breakdown["name"] == pytest.approx(0, abs=1e-6) and got.breakdown["values"] == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="'value/2/chunk0' is missing"):
        d.bits_learned({k: v for k, v in oracle.items() if k != "value/2/chunk0"})


@pytest.mark.parametrize("kwargs, message", [
    (dict(D=5000, L=3, T=16), "D=5000 is not valid; allowed: 1 <= D <= T**L = 4096"),
    (dict(K=0), "K=0 is not valid; allowed: K >= 1"),
    (dict(C=0), "C=0 is not valid; allowed: C >= 1"),
    (dict(T=-2), "T=-2 is not valid; allowed: T >= 1"),
    (dict(N=101, name_pools=(10, 10)), "N=101 is not valid; allowed: 1 <= N <= N0 = 100"),
    (dict(N0=999), "N0=999 is not valid; allowed: N0 = prod(name_pools) = 160000000"),
    (dict(name_pools=(10, 0)), "name_pools[1]=0 is not valid; allowed: name_pools[1] >= 1"),
    (dict(seed=-5), "seed=-5 is not valid"),
])
def test_invalid_arguments(kwargs, message):
    args = dict(N=10, K=2, C=1, D=4, L=2, T=8) | kwargs
    with raises_invalid(message):
        BioD(**args)


def test_100k_people_k8_is_fast():
    start = time.perf_counter()
    batch = sample(100_000, 8, 1, 256, 1, 256, seed=0).exposure(0)
    assert batch.tokens.shape == (100_000, 2 + 3 + 8 * 2)
    assert time.perf_counter() - start < 3.0
