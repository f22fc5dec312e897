"""Tests of labkit.measure on hand-built models whose bits are known exactly, plus tiny real trainings."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import library, tiny_model
from torch import nn

from labkit.data import biod
from labkit.data.base import TokenBatch, TokenDataset
from labkit.measure import (
    bits_learned,
    entity_losses,
    mac,
    mls,
    recalled,
    score_entities,
    span_group,
)
from labkit.model import count_params
from labkit.train import TrainConfig, TrainHistory

CONFIDENT = 30.0  # logit margin of the oracle: p(target) = 1 - O(V e^-30), i.e. a loss of ~1e-12 nats


def value_ids(data: TokenDataset) -> torch.Tensor:
    """Token ids a value can take: the "v" block of random sequences, the "t" block of bioD."""
    block, size = ("v", data.V) if data.kind == "random" else ("t", data.T)
    return data.vocab.offset(block) + torch.arange(size)


class Oracle(nn.Module):
    """Predicts the next token of the first ``capacity`` items it was shown, from the prefix alone.

    Causal by construction: the logits at t depend on x[:, :t+1] only, so an off-by-one between
    logits and targets in the code under test shows up as a large loss. Items it does not know get the
    uniform distribution over the value tokens: a model that "knows nothing" about them.
    """

    def __init__(self, capacity: int | None = None):
        super().__init__()
        self.capacity, self.vocab_size, self.values = capacity, 1, torch.zeros(0, dtype=torch.long)
        self.known = torch.zeros(0, 1, dtype=torch.long)
        self.training_calls = 0

    def learn(self, data: TokenDataset, remember: bool = True) -> Oracle:
        self.vocab_size, self.values = data.vocab_size, value_ids(data)
        if remember:  # a PAD column: the "next token" after the last position
            self.known = F.pad(data.exposure(0).tokens[: self.capacity], (0, 1))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length = x.shape
        logits = torch.full((b, length, self.vocab_size), -1e9)
        logits[:, :, self.values] = 0.0  # uniform over values
        if len(self.known):
            match = (x[:, None, :] == self.known[None, :, :length]).cumprod(-1).bool()  # (b, items, t) prefix match
            hit = match.any(1)
            item = match.int().argmax(1)  # first matching item per (b, t)
            next_token = self.known[item, torch.arange(1, length + 1)]
            logits[hit] = -1e9
            logits[hit, next_token[hit]] = CONFIDENT
        return logits


def memorise(model: Oracle, dataset: TokenDataset, recipe: TrainConfig, **kwargs) -> TrainHistory:
    """A ``train_fn`` for MLS/MAC: the oracle stores the first ``capacity`` items exactly."""
    model.learn(dataset)
    model.training_calls += 1
    return TrainHistory(final_loss=0.0)


def test_a_model_that_knows_nothing_learned_zero_bits():
    data = library(30)
    ignorant = Oracle().learn(data, remember=False)
    m = bits_learned(ignorant, data, device="cpu", params=100)
    assert m.bits == pytest.approx(0.0, abs=1e-6)
    assert m.information_bits == pytest.approx(30 * 3 * 4)
    losses = entity_losses(ignorant, data, device="cpu")["value"]
    assert torch.allclose(losses, torch.full((30,), 3 * math.log(16), dtype=torch.float64))
    assert not recalled(ignorant, data, device="cpu").any()


def test_an_oracle_learned_the_information_content():
    data = library(30)
    oracle = Oracle().learn(data)
    m = bits_learned(oracle, data, device="cpu", params=120)
    assert m.bits == pytest.approx(data.information_bits(), rel=1e-6)
    assert m.bits_per_param == pytest.approx(data.information_bits() / 120, rel=1e-6)
    assert m.fraction_learned == pytest.approx(1.0, rel=1e-6) and m.bits_per_nonembedding_param is None
    assert recalled(oracle, data, "value", device="cpu").all()


def test_partial_oracle_bits_recall_and_batching():
    data = library(30)
    oracle = Oracle(capacity=11).learn(data)
    scores = score_entities(oracle, data, device="cpu", batch_size=4)  # several batches
    assert torch.equal(scores.correct["value"], torch.arange(30) < 11)
    assert torch.equal(scores.n_tokens["value"], torch.full((30,), 3))
    whole = entity_losses(oracle, data, device="cpu", batch_size=1000)["value"]
    assert torch.allclose(scores.loss["value"], whole)
    assert bits_learned(oracle, data, device="cpu", params=1).bits == pytest.approx(11 * 12, rel=1e-6)


def test_entity_loss_is_the_sum_of_token_losses_of_the_span():
    data = biod.sample(N=9, K=2, C=2, D=5, L=2, T=7, name_pools=(10, 10))
    model = tiny_model(data, seed=3)  # untrained: arbitrary, non-trivial distributions
    batch = data.exposure(0)
    with torch.no_grad():
        logp = model(batch.tokens).log_softmax(-1)
    model.train()
    got = entity_losses(model, batch, device="cpu", batch_size=4)
    assert set(got) == set(batch.spans) and model.training  # every span; mode restored after eval
    for name, span in batch.spans.items():
        expected = torch.zeros(9, dtype=torch.float64)
        for i, (start, end) in enumerate(span.tolist()):
            for t in range(start, end):  # the loss of token t comes from the logits at t - 1
                expected[i] -= logp[i, t - 1, batch.tokens[i, t]].double()
        assert torch.allclose(got[name], expected, atol=1e-5), name


def test_recall_of_a_span_group_needs_every_member():
    tokens = torch.tensor([[1, 5, 6, 7, 8], [1, 5, 6, 7, 9]])
    spans = {
        "name": torch.tensor([[1, 2], [1, 2]]),
        "value/a": torch.tensor([[2, 3], [2, 3]]),
        "value/a/chunk0": torch.tensor([[2, 3], [2, 3]]),
        "value/b": torch.tensor([[4, 5], [4, 5]]),
    }
    batch = TokenBatch(tokens, tokens > 1, spans)
    assert span_group(spans, "value") == ["value/a", "value/a/chunk0", "value/b"]
    assert span_group(spans, "value/a") == ["value/a"]
    with pytest.raises(ValueError, match="not found"):
        span_group(spans, "city")

    class Constant(nn.Module):  # predicts 6 after 5, 8 after 7: item 1's value/b (9) is wrong
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(*x.shape, 10)
            out[..., 0] = 1.0
            out[x == 5, 6] = 5.0
            out[x == 7, 8] = 5.0
            return out

    assert recalled(Constant(), batch, "value", device="cpu").tolist() == [True, False]
    assert recalled(Constant(), batch, "value/a", device="cpu").tolist() == [True, True]


def test_bioD_recall_and_bits_of_a_partial_oracle():
    data = biod.sample(N=20, K=3, C=2, D=8, L=2, T=10, name_pools=(10, 10))
    oracle = Oracle(capacity=16).learn(data)
    assert torch.equal(recalled(oracle, data, "value", device="cpu"), torch.arange(20) < 16)
    result = mac(oracle, data, params=1000, train_fn=memorise, device="cpu")
    assert result.items_recalled == 16 and result.bits_per_item == pytest.approx(data.information_bits() / 20)
    m = result.measurement
    assert set(m.breakdown) == {"name", "values", "diversity"}
    # Def 4.1's value term N·K·log2(D^C / e^p2), p2 the mean over people of the summed value loss:
    # 16 of 20 known (loss 0), 4 uniform over the T^(C·L) strings
    p2 = 4 / 20 * 2 * 2 * math.log(10)
    assert m.breakdown["values"] == pytest.approx(20 * 3 * (2 * math.log2(8) - p2 / math.log(2)), rel=1e-6)
    assert m.breakdown["name"] == 0 and m.unclipped["name"] < 0  # it predicts one known name for everybody


def test_bits_learned_counts_parameters_without_unused_embedding_rows():
    data = library(12)
    model = tiny_model(data)
    m = bits_learned(model, data, device="cpu")
    count = count_params(model, used_tokens=data.used_tokens())
    assert m.params == count.total < sum(p.numel() for p in model.parameters())  # 12 keys use 3 of 10 digits
    assert m.non_embedding_params == count.non_embedding
    assert m.bits_per_param == pytest.approx(m.bits / count.total)
    assert m.bits_per_nonembedding_param == pytest.approx(m.bits / count.non_embedding)
    assert m.to_dict()["breakdown"] == {"values": pytest.approx(m.bits)}


def _stub_mls(capacity: int, **kwargs):
    return mls(
        make_model=lambda: Oracle(capacity),
        make_dataset=library,
        params=1000,
        train_fn=memorise,
        device="cpu",
        **kwargs,
    )


def test_mls_finds_the_largest_completely_memorised_library():
    result = _stub_mls(37, start=4, max_size=1000, tolerance=0.0)
    assert result.size == 37 and not result.capped
    assert result.bits == pytest.approx(library(37).information_bits())
    assert result.bits_per_param == pytest.approx(result.bits / 1000)
    ns = [n for n, _ in result.history]
    assert ns[:5] == [4, 8, 16, 32, 64]  # doubling, then bisection between 32 and 64
    assert 37 in ns and 38 in ns
    assert dict(result.history)[38] == pytest.approx(37 / 38)

    coarse = _stub_mls(37, start=4, max_size=1000, tolerance=0.1)  # bracket narrower than 10 %
    assert 34 <= coarse.size <= 37 and len(coarse.probes) < len(result.probes)

    noisy = _stub_mls(37, start=4, max_size=1000, tolerance=0.0, threshold=0.9)  # 37/n ≥ 0.9 up to n = 41
    assert noisy.size == 41

    capped = _stub_mls(500, start=4, max_size=100)
    assert capped.capped and capped.size == 100 and capped.history[-1] == (100, 1.0)

    nothing = _stub_mls(0, start=4, max_size=100)
    assert nothing.size == 0 and nothing.bits == 0.0


def test_mac_counts_recalled_items_and_loss_based_bits():
    data = library(100)
    oracle = Oracle(capacity=37)
    result = mac(oracle, data, params=500, train_fn=memorise, device="cpu")
    assert oracle.training_calls == 1
    assert result.items_recalled == 37 and result.fraction_recalled == pytest.approx(0.37)
    assert result.bits_per_item == pytest.approx(12.0)
    assert result.bits_recalled == pytest.approx(37 * 12.0)
    assert result.bits_per_param == pytest.approx(37 * 12.0 / 500)
    assert result.measurement.bits == pytest.approx(37 * 12.0, rel=1e-6)
    assert set(result.to_dict()) >= {"items_recalled", "bits_recalled", "measurement", "history"}


def test_mac_and_mls_with_a_real_tiny_model():
    settings = TrainConfig(exposures=60, batch_size=8, lr=1e-2, seed=0)
    data = library(64)
    result = mac(tiny_model(data, n_layer=1), data, settings, device="cpu")
    assert 0 < result.items_recalled < 64  # over capacity: some items, not all
    assert result.measurement.bits >= result.bits_recalled * 0.5
    assert 0 < result.measurement.bits_per_param < 8

    sizes = mls(
        make_model=lambda: tiny_model(data, n_layer=1),
        make_dataset=library,
        recipe=settings,
        start=8,
        max_size=64,  # the MAC library: not fully recalled above, so the search must stop below it
        tolerance=0.25,
        device="cpu",
    )
    assert 8 <= sizes.size < 64 and sizes.bits == 12 * sizes.size and not sizes.capped
    assert all(fraction == 1.0 for n, fraction in sizes.history if n <= sizes.size)
    assert sizes.size / 2 < result.items_recalled < sizes.size * 2  # MAC tracks MLS (Härmä et al.)
