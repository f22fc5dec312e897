"""Tests of labkit.probe: probes find planted features and not random ones, control tasks, positions from
spans, and probes of untrained and trained tiny lab models on bioD."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import raises_invalid

from labkit.data import biod
from labkit.model import Transformer, tiny
from labkit.probe import activations, control_labels, fit_probe, probe_table, resolve_positions, target_labels
from labkit.train import TrainConfig, train

POSITIONS = ["name_last", "before_value/0", "before_value/1"]


@functools.cache
def people() -> biod.BioD:
    """128 people, 2 attributes with 8 single-token values each, 2-token names over 16 × 16."""
    return biod.sample(128, K=2, C=1, D=8, L=1, T=8, name_pools=(16, 16))


def fresh_model() -> Transformer:
    return Transformer(tiny(people().vocab_size, max_len=16, d_model=32), seed=0)


@functools.cache
def trained() -> Transformer:
    """600 steps (~4 s on one CPU thread): the values are nearly all memorised."""
    model = fresh_model()
    train(model, people(), TrainConfig(exposures=150, batch_size=32, lr=1e-2, seed=0), device="cpu", progress=False)
    return model


def planted(n: int = 400, d: int = 16, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features that hold the label linearly: one random direction per class plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=g)
    return torch.randn(classes, d, generator=g)[labels] + 0.3 * torch.randn(n, d, generator=g), labels


def test_a_planted_linear_feature_is_found_and_its_control_task_is_not():
    x, y = planted()
    real = fit_probe(x, y, seed=0)
    assert real.test_accuracy >= 0.98 and real.n_test == 100 and real.n_classes == 5
    types = torch.randint(40, (len(y),), generator=torch.Generator().manual_seed(1))  # unrelated to x
    control = fit_probe(x, control_labels(y, types, seed=0), seed=0)
    assert control.test_accuracy <= control.chance + 0.15
    assert real.test_accuracy - control.test_accuracy >= 0.5  # selectivity


def test_shuffled_labels_give_chance():
    x, y = planted()
    accuracies = [fit_probe(x, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(s))], seed=s)
                  for s in range(3)]
    chance = accuracies[0].chance
    assert sum(r.test_accuracy for r in accuracies) / 3 <= chance + 0.1
    assert all(r.train_accuracy > r.test_accuracy for r in accuracies)  # it fits noise, which does not transfer


def test_control_labels_are_one_label_per_type_with_the_true_distribution():
    labels = torch.arange(1000) % 4
    types = torch.arange(1000) % 250
    control = control_labels(labels, types, seed=3)
    for t in range(0, 250, 37):
        assert control[types == t].unique().numel() == 1
    assert set(control.tolist()) <= {0, 1, 2, 3}
    assert torch.bincount(control, minlength=4).min() > 150  # each label about a quarter of the items
    assert torch.equal(control, control_labels(labels, types, seed=3))
    assert not torch.equal(control, control_labels(labels, types, seed=4))


def test_probes_are_deterministic_per_seed():
    x, y = planted(n=200, d=8, classes=3)
    y = torch.where(torch.rand(200, generator=torch.Generator().manual_seed(0)) < 0.3, (y + 1) % 3, y)  # noisy
    assert fit_probe(x, y, seed=5) == fit_probe(x, y, seed=5)
    assert {fit_probe(x, y, seed=s).test_accuracy for s in range(4)} != {fit_probe(x, y, seed=5).test_accuracy}


def test_positions_resolve_from_the_spans():
    data = people()
    batch = data.exposure(0)
    index = resolve_positions(data, [*POSITIONS, "value/1_first", "name_first", 0])
    rows = torch.arange(data.N)
    at = {pos: batch.tokens[rows, i] for pos, i in index.items()}
    last_name = data.vocab.offset("n1_") + torch.from_numpy(data.names[:, 1])
    assert torch.equal(at["name_last"], last_name)
    assert torch.equal(at["name_first"], data.vocab.offset("n0_") + torch.from_numpy(data.names[:, 0]))
    for k in range(2):
        assert (at[f"before_value/{k}"] == data.vocab.offset("k") + k).all()  # the key token
    value1 = data.vocab.offset("t") + torch.from_numpy(data.value_sets[1][data.chunks[:, 1, 0], 0])
    assert torch.equal(at["value/1_first"], value1)
    assert (at[0] == batch.tokens[0, 0]).all()  # BOS


def test_activations_are_the_cached_ones_at_each_position():
    model, data = fresh_model(), people()
    hooks = ["blocks.1.hook_resid_post", "blocks.0.attn.hook_z", "blocks.0.attn.hook_pattern", "hook_pos_embed"]
    acts = activations(model, data, hooks, ["name_last", 5], device="cpu", batch_size=50)
    assert acts["blocks.1.hook_resid_post", "name_last"].shape == (128, 32)
    assert acts["blocks.0.attn.hook_z", 5].shape == (128, 32)  # 2 heads × 16
    _, cache = model.run_with_cache(data.exposure(0).tokens[7:8])
    assert torch.allclose(acts["blocks.1.hook_resid_post", "name_last"][7], cache["resid_post", 1][0, 2], atol=1e-5)
    assert torch.allclose(acts["blocks.0.attn.hook_z", 5][7], cache["z", 0][0, 5].flatten(), atol=1e-5)
    pattern = acts["blocks.0.attn.hook_pattern", 5]  # (items, heads × keys up to position 5)
    assert torch.allclose(pattern.view(128, 2, 6).sum(-1), torch.ones(128, 2), atol=1e-5)
    assert torch.allclose(acts["hook_pos_embed", "name_last"], model.pos_embed.weight[2].expand(128, 32))


def test_an_untrained_model_holds_no_attribute_at_the_name():
    table = probe_table(fresh_model(), people(), positions=["name_last"], device="cpu")
    assert len(table) == 3 * 2  # (embedding + 2 blocks) × 2 attributes
    assert (table.accuracy <= table.chance + 0.2).all()
    assert table.accuracy.mean() <= table.chance.mean() + 0.1
    assert (table.selectivity <= 0.1).all()


def test_a_trained_model_makes_the_value_readable_at_its_key():
    table = probe_table(trained(), people(), layers=[1], positions=POSITIONS, device="cpu")
    assert list(table.columns) == ["hook", "position", "target", "accuracy", "control_accuracy", "selectivity",
                                   "chance", "train_accuracy", "n_classes"]
    row = table.set_index(["position", "target"])
    for k in range(2):
        at_key = row.loc[(f"before_value/{k}", f"value/{k}")]
        assert at_key.accuracy >= 0.85 and at_key.selectivity >= 0.4
        assert row.loc[("name_last", f"value/{k}")].accuracy <= at_key.chance + 0.25  # not at the name
    assert (table.selectivity == table.accuracy - table.control_accuracy).all()


def test_bad_input_fails_in_one_line_naming_the_parameter():
    model, data = fresh_model(), people()
    cases = [
        (lambda: activations(model, data, ["blocks.0.hook_nope"], ["name_last"]),
         "hooks='blocks.0.hook_nope' is not valid; allowed: hook_embed, hook_pos_embed, blocks.0.hook_resid_pre"),
        (lambda: activations(model, data, "hook_embed", ["nowhere"]),
         "positions='nowhere' is not valid; allowed: an integer in [0, 8) or one of name_first, name_last"),
        (lambda: activations(model, data, "hook_embed", [8]), "positions=8 is not valid"),
        (lambda: probe_table(model, data, targets=["value/7"]), "targets='value/7' is not valid; allowed: value/0"),
        (lambda: probe_table(model, data, layers=[2]), "layers=2 is not valid; allowed: 0 <= layers <= 1"),
        (lambda: probe_table(model, data, control_type="x"), "control_type='x' is not valid; allowed: 'auto'"),
        (lambda: fit_probe(torch.zeros(10, 3), torch.zeros(9)), "labels=(9,) is not valid; allowed: shape (10,)"),
        (lambda: fit_probe(torch.zeros(10, 3), torch.zeros(10), test_fraction=0.0), "test_fraction=0.0 is not valid"),
    ]
    for call, message in cases:
        with raises_invalid(message) as error:
            call()
        assert "\n" not in str(error.value)


def test_targets_are_the_chunk_indices():
    data = biod.sample(20, K=2, C=2, D=4, L=1, T=8, name_pools=(16, 16))
    labels = target_labels(data, ["value/1", "value/1/chunk1"])
    assert torch.equal(labels["value/1"], torch.from_numpy(data.chunks[:, 1, 0]))
    assert torch.equal(labels["value/1/chunk1"], torch.from_numpy(data.chunks[:, 1, 1]))
    assert set(target_labels(data)) == {"value/0", "value/1"}
    given = {"mine": torch.arange(20) % 2}
    assert target_labels(data, given)["mine"] is given["mine"]


@pytest.mark.parametrize("control_type", ["item", "probed", 0])
def test_control_types(control_type):
    table = probe_table(fresh_model(), people(), hooks="hook_embed", positions=["name_last"], targets=["value/0"],
                        control_type=control_type, device="cpu")
    control = table.control_accuracy.item()
    if control_type == "probed":  # the embedding at the name is the type itself: the control task is memorised
        assert control == 1.0
    elif control_type == 0:  # BOS: one type for everyone, so one control label: a constant task
        assert control == 1.0 and table.accuracy.item() <= table.chance.item() + 0.2
    else:  # every item its own type: shuffled labels, nothing to memorise that transfers
        assert control <= table.chance.item() + 0.2
