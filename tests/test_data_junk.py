"""labkit.data.junk: the useful/junk token ratio, determinism, junk that never names a useful person,
repetitive junk that cycles, the domain token (on useful records only, never a target) and the
useful view the bit meter reads."""

from __future__ import annotations

import pytest
import torch

from labkit.data import biod
from labkit.data.junk import JunkMixture
from labkit.data.registry import context_length, data_keys, make_dataset
from labkit.tokenizer import PAD_ID


@pytest.fixture(scope="module")
def useful():
    return biod.sample(50, 4, 1, 16, 1, 16, seed=3, name_pools=(12, 12))


def _name_ids(tokens: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(row) for row in tokens[:, 1:3].tolist()}


@pytest.mark.parametrize("ratio", [7.0, 3.0, 1.0])
def test_junk_tokens_are_ratio_times_the_useful_tokens(useful, ratio):
    mix = JunkMixture(useful, "fresh", ratio, seed=0)
    batch = mix.exposure(0)
    useful_rows, junk_rows = batch.tokens[:50], batch.tokens[50:]
    assert mix.n_items == 50 + mix.junk_records == len(batch.tokens)
    assert mix.token_ratio == pytest.approx(ratio, rel=0.02)
    assert int((junk_rows != PAD_ID).sum()) / int((useful_rows != PAD_ID).sum()) == pytest.approx(mix.token_ratio)
    assert torch.equal(useful_rows, useful.exposure(0).tokens)  # every useful record once per exposure


def test_fresh_junk_is_new_every_exposure_deterministic_and_never_a_useful_name(useful):
    mix, again = JunkMixture(useful, "fresh", 7.0, seed=1), JunkMixture(useful, "fresh", 7.0, seed=1)
    first, second = mix.exposure(0).tokens[50:], mix.exposure(1).tokens[50:]
    assert torch.equal(first, again.exposure(0).tokens[50:])  # same seed and exposure: same junk
    assert not torch.equal(first, second)  # a new draw every exposure: nothing to memorize
    assert not torch.equal(first, JunkMixture(useful, "fresh", 7.0, seed=2).exposure(0).tokens[50:])
    assert not (_name_ids(first) | _name_ids(second)) & _name_ids(useful.exposure(0).tokens)
    assert torch.equal(first[:, 3::2], useful.exposure(0).tokens[:1, 3::2].expand(len(first), -1))  # same keys
    values = first[:, 4::2]
    assert set(values.unique().tolist()) <= set(useful.exposure(0).tokens[:, 4::2].unique().tolist()) | set(
        (useful.vocab.offset("t") + torch.from_numpy(useful.value_sets).flatten()).tolist())


def test_repetitive_junk_cycles_a_fixed_set(useful):
    mix = JunkMixture(useful, "repetitive", 7.0, repetitive_size=5, seed=0)
    junk = mix.exposure(0).tokens[50:]
    assert len({tuple(r) for r in junk.tolist()}) <= 5 and torch.equal(junk[:5], junk[5:10])
    assert torch.equal(junk, mix.exposure(9).tokens[50:])  # the same every exposure


def test_domain_token_starts_useful_records_only_and_is_not_a_target(useful):
    mix = JunkMixture(useful, "fresh", 7.0, domain_token=True, seed=0)
    domain = useful.vocab_size
    assert mix.vocab_size == domain + 1 and domain in mix.used_tokens().tolist()
    batch = mix.exposure(0)
    assert (batch.tokens[:50, 1] == domain).all() and not (batch.tokens[50:] == domain).any()
    assert not batch.loss_mask[:50, :2].any() and batch.loss_mask[:50, 2:].all()
    view = mix.useful().exposure(0)
    plain = useful.exposure(0)
    for name, span in plain.spans.items():  # entities move one position right, and still hold the same tokens
        assert torch.equal(view.spans[name], span + 1)
        start, end = span[0].tolist()
        assert torch.equal(view.tokens[:, start + 1:end + 1], plain.tokens[:, start:end])
    assert context_length({}, mix) == useful.record_length + 1


def test_clean_mixture_is_the_useful_data_and_measures_it(useful):
    mix = JunkMixture(useful, "none", 7.0)
    assert mix.junk_records == 0 and mix.n_items == 50 and mix.token_ratio == 0.0
    assert torch.equal(mix.exposure(0).tokens, useful.exposure(0).tokens)
    assert mix.information_bits() == useful.information_bits() == mix.useful().information_bits()
    assert mix.exposure(0).spans == {}  # the mixture's own batch names no entities: measure mix.useful()


def test_registry_builds_mixtures_and_rejects_bad_junk():
    spec = data_keys({"kind": "biod_junk", "K": 4, "D": 16, "T": 16, "name_pools": (12, 12), "junk": "repetitive"})
    assert spec == {"data": "biod_junk", "K": 4, "C": 1, "D": 16, "L": 1, "T": 16, "name_pools": [12, 12],
                    "junk": "repetitive", "junk_ratio": 7.0, "domain_token": False, "repetitive_size": 16}
    mix = make_dataset({**spec, "N": 30, "seed": 4})
    assert isinstance(mix, JunkMixture) and mix.biod.N == 30 and mix.junk == "repetitive"
    with pytest.raises(ValueError, match="junk='stale' is not valid; allowed: 'none', 'fresh', 'repetitive'"):
        make_dataset({**spec, "junk": "stale", "N": 30})
    with pytest.raises(ValueError, match="ratio"):
        make_dataset({**spec, "junk_ratio": -1.0, "N": 30})
