"""labkit.experiments.welcome: chapter 0's library, model, training with a bits curve, tables and figures."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from labkit.experiments import welcome
from labkit.measure import bits_learned, recalled
from labkit.model import count_params
from labkit.tables import DIFFERS, REPRODUCES, Table
from labkit.train import train

TINY = welcome.Sizes(N=16, S=2, V=8, d_model=8, n_layer=1, n_head=2, exposures=6, batch_size=8, lr=1e-2,
                     curve_points=3)


@pytest.fixture(scope="module")
def trained():
    data = welcome.library(TINY, seed=0)
    return data, welcome.train_with_bits_curve(TINY, data, welcome.model(TINY, data, seed=0), seed=0,
                                               device="cpu", progress=False)


def test_every_profile_resolves_and_quick_is_the_chapter_default():
    assert list(welcome.PROFILES) == ["smoke", "quick", "full"]
    assert welcome.PROFILES["quick"] is welcome.QUICK and welcome.QUICK.expect.min_fraction == 0.9
    assert welcome.PROFILES["smoke"].expect.min_fraction < welcome.QUICK.expect.min_fraction


def test_samples_and_information_tables_show_the_library():
    data = welcome.library(welcome.QUICK.sizes, seed=0)
    samples = welcome.samples_table(data, n=2)
    assert isinstance(samples, Table) and list(samples.columns) == ["item", "key", "value"]
    assert list(samples.key) == ["d0 d0 d0", "d0 d0 d1"]
    assert [len(v.split()) for v in samples.value] == [6, 6]
    assert all(t.startswith("v") for t in samples.value[0].split())
    info = welcome.information_table(data)
    assert info.iloc[0]["bits N·S·log2 V"] == pytest.approx(256 * 6 * 5) == data.information_bits()
    assert "7,680" in repr(info) and "5.000" in repr(info)


def test_params_table_counts_p_as_part_33_and_the_share_of_capacity():
    data = welcome.library(welcome.QUICK.sizes, seed=0)
    net = welcome.model(welcome.QUICK.sizes, data, seed=0)
    counts = count_params(net, used_tokens=data.used_tokens())
    row = welcome.params_table(net, data).iloc[0]
    assert row["parameters P"] == counts.total == 26_432 and row["non-embedding"] == counts.non_embedding
    assert row["capacity at 2 bits/param"] == 2 * counts.total
    assert row["library / capacity"] == pytest.approx(data.information_bits() / (2 * counts.total))


def test_the_bits_curve_starts_untrained_and_ends_at_the_final_measurement(trained):
    data, run = trained
    curve = run.curve
    spe = run.history.steps_per_exposure
    assert spe == 2 and run.history.total_steps == 12
    # before training, then every exposures // curve_points = 2 exposures
    assert list(curve.exposures) == [0.0, 2.0, 4.0, 6.0]
    assert ((curve.bits >= 0) & (curve.bits <= data.information_bits())).all()
    assert curve.bits.iloc[-1] == pytest.approx(bits_learned(run.model, data, device="cpu").bits, rel=1e-9)


def test_measuring_during_training_changes_nothing_in_the_training(trained):
    data, run = trained
    plain = welcome.model(TINY, data, seed=0)
    history = train(plain, data, welcome.recipe(TINY, seed=0), device="cpu", progress=False)
    assert history.losses == run.history.losses
    for a, b in zip(plain.parameters(), run.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_training_table(trained):
    _, run = trained
    row = welcome.training_table(run).iloc[0]
    assert row["steps"] == 12 and row["exposures"] == 6 and row["steps per exposure"] == 2
    assert row["final loss (nats/token)"] == run.history.final_loss


def test_measure_and_results_table_agree_with_labkit_measure(trained):
    data, run = trained
    result = welcome.measure(run.model, data, device="cpu")
    expected = bits_learned(run.model, data, device="cpu")
    assert result.bits == pytest.approx(expected.bits) and result.params == expected.params
    assert result.fraction_learned == pytest.approx(expected.fraction_learned)
    assert result.bits_per_param == pytest.approx(expected.bits_per_param)
    assert result.recalled == pytest.approx(recalled(run.model, data, device="cpu").float().mean().item())
    row = welcome.results_table(result).iloc[0]
    assert row["bits learned"] == result.bits and row["share learned"] == result.fraction_learned
    assert set(result.to_dict()) >= {"bits", "information_bits", "fraction_learned", "bits_per_param"}


def _result(fraction: float) -> welcome.Result:
    return welcome.Result(bits=fraction * 7680.0, information_bits=7680.0, recalled=1.0, params=26_432,
                          non_embedding_params=24_736)


def test_claims_reproduce_only_above_the_profiles_threshold():
    expect = welcome.QUICK.expect
    good = welcome.claims_table(_result(0.95), expect, "quick")
    assert list(good.columns) == ["claim", "paper", "this run (quick)", "status", "note"]
    assert list(good.status) == [REPRODUCES, "not tested here"]
    assert good.iloc[0]["this run (quick)"] == "95.0%" and good.iloc[1]["this run (quick)"] == "0.28"
    assert "15%" in good.iloc[1]["note"]  # the library fills 7680 / (2 x 26432) of the capacity
    assert list(welcome.claims_table(_result(0.85), expect).status)[0] == DIFFERS
    assert welcome.claims(_result(0.85), dataclasses.replace(expect, min_fraction=0.8))[0]["expect"] == (0.8, None)


def test_value_predictions_are_exact_recall_item_by_item(trained):
    data, run = trained
    predictions = welcome.value_predictions(run.model, data, device="cpu")
    assert predictions.shape == (data.N, data.S)
    values = data.exposure(0).tokens[:, 1 + data.key_digits:]
    assert torch.equal((predictions == values).all(1), recalled(run.model, data, device="cpu"))
    assert run.model.training  # restored after evaluation


def test_item_html_marks_right_and_wrong_tokens():
    data = welcome.library(TINY, seed=0)
    tokens = data.exposure(0).tokens
    truth = tokens[:, 1 + data.key_digits:].clone()
    guesses = truth.clone()
    guesses[1, 0] = truth[1, 1] if truth[1, 1] != truth[1, 0] else truth[1, 0] + 1
    right = welcome.item_html(data, guesses, 0)
    assert right.startswith("key d0 d0 &rarr;") and right.count("color:green") == 2 and "(2 of 2 right)" in right
    wrong = welcome.item_html(data, guesses, 1)
    assert wrong.count("color:red") == 1 and f"right: {data.decode([int(truth[1, 0])])}" in wrong
    assert "(1 of 2 right)" in wrong


def test_describe_items_feeds_the_explorer(trained):
    data, run = trained
    describe = welcome.describe_items(run.model, data, device="cpu")
    assert describe(3) == welcome.item_html(data, welcome.value_predictions(run.model, data, "cpu"), 3)


def test_profiles_table_every_scale_is_below_capacity():
    profiles = welcome.profiles_table()
    assert list(profiles.index) == ["smoke", "quick", "full"]
    assert profiles.loc["quick", "parameters P"] == 26_432 and profiles.loc["quick", "steps"] == 600
    assert profiles.loc["quick", "library (bits)"] == 7680
    assert (profiles["library / (2 bits × P)"] < 0.5).all()  # what the chapter's "At a larger scale" says


def test_figures_carry_their_reference_lines(trained):
    data, run = trained
    loss = welcome.figure_loss(run, data)
    chance = [t for t in loss.data if t.name == "chance: ln V"]
    assert len(chance) == 1 and chance[0].y[0] == pytest.approx(math.log(data.V))
    assert loss.layout.yaxis.type == "log"
    bits = welcome.figure_bits(run, data)
    names = [t.name for t in bits.data]
    assert names[0] == "bits learned" and len(bits.data[0].x) == len(run.curve)
    line = next(t for t in bits.data if t.name == "information N·S·log2 V")
    assert line.y[0] == pytest.approx(data.information_bits())
