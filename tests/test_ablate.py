"""Tests of labkit.ablate on a tiny lab model trained on bioD: bits lost per ablated component."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from conftest import raises_invalid
from torch import nn

from labkit.ablate import ablation_table, attention_layers, components, heads, mean_activations, mlp_layers
from labkit.data import biod
from labkit.measure import bits_learned
from labkit.model import Transformer, tiny
from labkit.train import TrainConfig, train


@functools.cache
def people() -> biod.BioD:
    return biod.sample(128, K=2, C=1, D=8, L=1, T=8, name_pools=(16, 16))


@functools.cache
def trained() -> Transformer:
    """600 steps (~4 s on one CPU thread): ~860 of ~1020 bits learned."""
    model = Transformer(tiny(people().vocab_size, max_len=16, d_model=32), seed=0)
    train(model, people(), TrainConfig(exposures=150, batch_size=32, lr=1e-2, seed=0), device="cpu", progress=False)
    return model


def test_ablating_nothing_loses_nothing():
    table = ablation_table(trained(), people(), [()], kind="zero", device="cpu")
    assert table.component.tolist() == ["(nothing)"]
    assert table.bits_lost.item() == 0.0 and table.fraction_lost.item() == 0.0
    assert table.bits.item() == pytest.approx(bits_learned(trained(), people(), "cpu").bits)
    assert table.bits.item() > 500


@pytest.mark.parametrize("kind", ["zero", "mean"])
def test_ablating_every_layer_loses_most_bits(kind):
    model = trained()
    everything = [*attention_layers(model), *mlp_layers(model)]
    table = ablation_table(model, people(), [everything], kind=kind, device="cpu")
    assert table.fraction_lost.item() > 0.9
    assert not model._hook_handles and all(not point.active for point in model.hook_dict.values())  # hooks removed


def test_mean_ablation_of_a_constant_component_loses_nothing():
    model = copy.deepcopy(trained())
    mean = mean_activations(model, people(), ["blocks.1.hook_mlp_out"], device="cpu")["blocks.1.hook_mlp_out"]
    constant = nn.Linear(model.cfg.d_mlp, model.cfg.d_model, bias=True)  # output: its bias, whatever the input
    with torch.no_grad():
        constant.weight.zero_()
        constant.bias.copy_(mean)
    model.blocks[1].mlp.proj = constant
    mean_row = ablation_table(model, people(), ["blocks.1.hook_mlp_out"], kind="mean", device="cpu")
    zero_row = ablation_table(model, people(), ["blocks.1.hook_mlp_out"], kind="zero", device="cpu")
    assert mean_row.bits_intact.item() > 20  # it knows little without MLP 1, but what it knows is measurable
    assert abs(mean_row.bits_lost.item()) < 1e-2
    assert abs(zero_row.bits_lost.item()) > 1.0  # zeroing it does change the bits (here it even gains some)


def test_ablating_every_head_is_ablating_the_attention_layer():
    model = trained()  # no biases: the output matrix maps zeros to zeros
    layer0 = [h for h in heads(model) if h.startswith("blocks.0.")]
    table = ablation_table(model, people(), [layer0, "blocks.0.hook_attn_out"], kind="zero", device="cpu")
    assert table.bits.iloc[0] == pytest.approx(table.bits.iloc[1], abs=1e-6)


def test_table_columns_and_sorting():
    model = trained()
    table = ablation_table(model, people(), kind="mean", device="cpu")  # every single component
    assert list(table.columns) == ["component", "kind", "bits", "bits_intact", "bits_lost", "fraction_lost"]
    assert sorted(table.component) == sorted(components(model)) and len(table) == 2 + 2 + 4
    assert table.bits_lost.is_monotonic_decreasing
    assert (table.bits_lost == table.bits_intact - table.bits).all()
    assert table.fraction_lost.tolist() == pytest.approx((table.bits_lost / table.bits_intact).tolist())
    assert (table.kind == "mean").all() and table.bits_lost.iloc[0] > 0


def test_bad_components_and_kinds_fail_in_one_line():
    model, data = trained(), people()
    allowed = "allowed: blocks.{L}.hook_attn_out, blocks.{L}.hook_mlp_out, blocks.{L}.attn.hook_z[h] (L < 2, h < 2)"
    for bad in ["blocks.2.hook_attn_out", "blocks.0.attn.hook_z[2]", "mlp", "blocks.0.hook_resid_post"]:
        with raises_invalid(f"components={bad!r} is not valid; {allowed}") as error:
            ablation_table(model, data, [bad], device="cpu")
        assert "\n" not in str(error.value)
    with raises_invalid("components='blocks.0.attn.hook_z' is not valid"):
        ablation_table(model, data, [["blocks.0.hook_attn_out", "blocks.0.attn.hook_z"]], device="cpu")
    with raises_invalid("kind='half' is not valid; allowed: 'zero', 'mean'"):
        ablation_table(model, data, kind="half", device="cpu")
