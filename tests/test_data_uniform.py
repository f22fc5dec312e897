"""Random sequences with keys (labkit.data.uniform): layout, keys, loss mask, determinism, accounting,
validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import constant_losses, raises_invalid
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.data import TokenDataset
from labkit.data.uniform import RandomSequences, key_length, sample
from labkit.tokenizer import BOS_ID


@settings(max_examples=20)
@given(st.integers(1, 300), st.integers(1, 12), st.integers(2, 40), st.integers(2, 16), st.integers(0, 2**32))
def test_layout_keys_and_values(N, S, V, base, seed):
    d = sample(N, S, V, seed=seed, key_base=base)
    assert isinstance(d, TokenDataset) and d.kind == "random" and d.n_items == N
    batch = d.exposure(0)
    n_key = d.key_digits
    assert base ** (n_key - 1) < N <= base**n_key or n_key == 1
    assert batch.tokens.shape == (N, 1 + n_key + S) and (batch.tokens[:, 0] == BOS_ID).all()
    keys = batch.tokens[:, 1 : 1 + n_key].numpy() - d.vocab.offset("d")
    index = (keys * base ** np.arange(n_key - 1, -1, -1)).sum(1)
    assert np.array_equal(index, np.arange(N))  # item i's key is i in base `base`
    values = batch.tokens[:, 1 + n_key :] - d.vocab.offset("v")
    assert values.min() >= 0 and values.max() < V and torch.equal(values, torch.from_numpy(d.values))
    assert (batch.spans["value"] == torch.tensor([1 + n_key, 1 + n_key + S])).all()
    assert (batch.spans["key"] == torch.tensor([1, 1 + n_key])).all()
    # loss on the values only: the key is the question
    assert not batch.loss_mask[:, : 1 + n_key].any() and batch.loss_mask[:, 1 + n_key :].all()


def test_deterministic_and_roughly_uniform():
    a, b, c = sample(2000, 16, 8, seed=1), sample(2000, 16, 8, seed=1), sample(2000, 16, 8, seed=2)
    assert torch.equal(a.exposure(0).tokens, b.exposure(0).tokens)
    assert not torch.equal(a.exposure(0).tokens, c.exposure(0).tokens)
    counts = np.bincount(a.values.ravel(), minlength=8) / a.values.size
    assert np.allclose(counts, 1 / 8, atol=0.01)


def test_key_length():
    assert [key_length(n, 10) for n in (1, 10, 11, 100, 101)] == [1, 1, 2, 2, 3]
    assert key_length(1024, 2) == 10


def test_information_and_bits_learned():
    d = sample(50, 10, 32)
    assert d.information_bits() == 50 * 10 * 5
    assert d.used_tokens().tolist() == d.exposure(0).tokens.unique().tolist()
    perfect = constant_losses(50, 0.0)
    assert d.bits_learned({"value": perfect}).bits == pytest.approx(d.information_bits())
    chance = constant_losses(50, 10 * math.log(32))
    assert d.bits_learned({"value": chance}).bits == pytest.approx(0.0, abs=1e-9)
    mixed = torch.cat([perfect[:25], 2 * chance[:25]])  # half memorized, half worse than chance (clipped)
    assert d.bits_learned({"value": mixed}).bits == pytest.approx(d.information_bits() / 2)
    with pytest.raises(ValueError, match="'value' is missing"):
        d.bits_learned({"key": perfect})


@pytest.mark.parametrize("kwargs, message", [
    (dict(N=0), "N=0 is not valid; allowed: N >= 1"),
    (dict(S=-1), "S=-1 is not valid; allowed: S >= 1"),
    (dict(V=1), "V=1 is not valid; allowed: V >= 2"),
    (dict(key_base=1), "key_base=1 is not valid; allowed: key_base >= 2"),
])
def test_invalid_arguments(kwargs, message):
    with raises_invalid(message):
        RandomSequences(**(dict(N=5, S=4, V=8) | kwargs))
