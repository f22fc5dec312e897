"""The cost estimates of profiles (``labkit.experiments.costs``): the FLOP count of a known model by hand,
steps that match what a profile says it trains, and configs without a transformer left uncounted."""

from __future__ import annotations

import json

import pytest

from labkit.experiments import capacity, costs, sweep_cost
from labkit.model import tiny


def test_flops_per_token_is_six_per_matrix_weight_plus_attention():
    d, layers, vocab, context = 16, 3, 50, 12
    cfg = tiny(vocab, max_len=20, d_model=d, n_layer=layers)
    per_layer = 4 * d * d + 2 * 4 * d * d  # q, k, v, out; the 4x MLP's two matrices (no biases)
    expected = 6 * (layers * per_layer + vocab * d) + 6 * layers * context * d
    assert costs.flops_per_token(cfg, context) == expected


def test_a_capacity_run_costs_its_records_times_tokens_times_flops_per_token():
    config = capacity.grid(capacity.PROFILES["smoke"].sizes, (0,))[1]
    flops = costs.run_flops(config)
    recipe = {"seed", "lr", "weight_decay", "exposures"}
    per_record, tokens = costs._per_record(json.dumps({k: v for k, v in config.items() if k not in recipe},
                                                      sort_keys=True))
    assert flops == pytest.approx(per_record * config["N"] * config["exposures"])
    assert 5 < tokens < 40  # a bioD record of K = 4 attributes, trimmed
    assert costs.run_steps(config) == pytest.approx(config["N"] * config["exposures"] / config["batch_size"])


def test_estimated_steps_match_what_a_profile_says_it_trains():
    # chapter 3's cpu-full profile documents "~600k training steps in all"
    assert sweep_cost("memorization", "cpu-full").steps == pytest.approx(600e3, rel=0.25)


def test_runs_without_a_transformer_training_are_not_counted():
    config = capacity.grid(capacity.PROFILES["smoke"].sizes, (0,))[0]
    cost = costs.grid_cost([config, {"kind": "mlp", "width": 8}, {**config, "model": "bogus"}])
    assert (cost.runs, cost.estimated) == (3, 1) and cost.flops == costs.run_flops(config)
    assert "(1 of 3 runs counted)" in cost.line() and "GPU-hours" in cost.line()


def test_gpu_hours_take_the_larger_of_flops_and_step_latency():
    flop_bound = costs.Cost(1, 1, flops=costs.A100_BF16_PEAK * 0.1 * 3600, steps=1)
    assert flop_bound.gpu_hours == pytest.approx(1.0)
    latency_bound = costs.Cost(1, 1, flops=1.0, steps=3600 / costs.STEP_SECONDS)
    assert latency_bound.gpu_hours == pytest.approx(1.0)
