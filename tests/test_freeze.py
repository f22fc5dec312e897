"""Tests of labkit.freeze: patterns pick exactly their group; frozen groups get no gradient."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from labkit.freeze import freeze, group_names, parameters_matching, reinitialize
from labkit.model import ModelConfig, Transformer

V, T = 29, 10


def model(**kw) -> Transformer:
    return Transformer(ModelConfig(vocab_size=V, max_len=T, d_model=16, n_head=2, n_layer=2, **kw), seed=0)


def train_step(m: Transformer) -> None:
    x = torch.arange(3 * T).remainder(V).view(3, T)
    F.cross_entropy(m(x).flatten(0, 1), x.roll(-1, 1).flatten()).backward()


def test_patterns_select_their_groups():
    m = model()
    assert set(parameters_matching(m, "blocks.*.attn")) == {
        f"blocks.{i}.attn.{w}.weight" for i in range(2) for w in ("qkv", "out")
    }
    mlp = {f"blocks.{i}.mlp.{w}.weight" for i in range(2) for w in ("fc", "proj")}
    assert set(parameters_matching(m, "*.mlp")) == mlp
    assert set(parameters_matching(m, "embed")) == {"embed.weight"}  # not pos_embed
    assert set(parameters_matching(m, "blocks.1")) == {n for n, _ in m.named_parameters() if n.startswith("blocks.1.")}
    assert set(parameters_matching(m, ["embed", "pos_embed"])) == {"embed.weight", "pos_embed.weight"}
    assert list(parameters_matching(m, "blocks.0.mlp.fc.weight")) == ["blocks.0.mlp.fc.weight"]


def test_unknown_pattern_lists_valid_groups():
    with pytest.raises(ValueError, match=r"pattern='blocks.\*.mlpp'.*blocks\.\*\.attn") as err:
        parameters_matching(model(), "blocks.*.mlpp")
    assert "ln_final" in str(err.value) and "blocks.*.mlp" in str(err.value)
    with pytest.raises(ValueError, match="unembed"):  # tied: there is no separate unembedding
        freeze(model(), "unembed")
    assert "unembed" in group_names(model(tie_embeddings=False))


@pytest.mark.parametrize("patterns", ["blocks.*.attn", "*.mlp", ["embed", "pos_embed"], "blocks.*.mlp.experts.0"])
def test_frozen_groups_get_no_gradient_and_the_rest_do(patterns):
    m = model(moe_experts=2, moe_top_k=2) if "experts" in str(patterns) else model()
    frozen = set(freeze(m, patterns))
    train_step(m)
    for name, p in m.named_parameters():
        if name in frozen:
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_reinitialize_changes_only_its_group_and_is_seeded():
    m = model(bias=True)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)  # "trained" weights
    before = {n: p.clone() for n, p in m.named_parameters()}
    changed = set(reinitialize(m, "blocks.*.mlp", seed=7))
    for name, p in m.named_parameters():
        assert torch.equal(p, before[name]) == (name not in changed), name
    fresh = model(bias=True)
    assert torch.equal(m.blocks[0].mlp.fc.bias, torch.zeros_like(fresh.blocks[0].mlp.fc.bias))
    again = model(bias=True)
    reinitialize(again, "blocks.*.mlp", seed=7)
    assert all(torch.equal(m.get_parameter(n), again.get_parameter(n)) for n in changed)
    reinitialize(again, "blocks.*.mlp", seed=8)
    assert not torch.equal(m.blocks[0].mlp.fc.weight, again.blocks[0].mlp.fc.weight)
    std = m.blocks[1].mlp.fc.weight.std().item()
    assert 0.015 < std < 0.025  # N(0, 0.02), the model's own init
