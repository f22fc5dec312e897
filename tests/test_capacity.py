"""labkit.capacity: run functions (capacity, MLS / MAC), grids for every profile, summaries, executors."""

from __future__ import annotations

import json
import math

import pytest

from labkit import capacity, profiles
from labkit.sweep import run_sweep

BIOD = {"data": "biod", "K": 2, "C": 1, "D": 8, "L": 1, "T": 8, "name_pools": [6, 6], "model": "tiny",
        "d_model": 8, "n_layer": 1, "n_head": 2, "N": 24, "exposures": 3, "batch_size": 16, "lr": 1e-2,
        "weight_decay": 0.05, "seed": 0}
RANDOM = {"data": "random", "S": 2, "V": 4, "key_base": 10, "model": "tiny", "d_model": 8, "n_layer": 1,
          "n_head": 2, "exposures": 40, "batch_size": 64, "lr": 3e-2, "weight_decay": 0.05, "seed": 0,
          "max_len": 1 + 2 + 2}


def test_run_capacity_returns_json_ready_bits_and_both_ratios():
    result = capacity.run_capacity(dict(BIOD))
    json.dumps(result, allow_nan=False)
    assert math.isclose(result["R"], result["bits"] / result["params"])
    assert math.isclose(result["R_nonembedding"], result["bits"] / result["non_embedding_params"])
    assert result["non_embedding_params"] < result["params"] == result["param_groups"]["total"]
    assert 0 <= result["bits"] <= result["information_bits"]
    assert set(result["breakdown"]) == {"name", "values", "diversity"}
    assert result["steps"] == 2 * 3 and result["tokens_seen"] == 3 * 24 * (2 + 2 + 2 * 2)
    assert len(result["history"]["losses"]) == len(result["history"]["exposures"]) <= capacity.HISTORY_POINTS
    assert result["history"]["exposures"][-1] == 3.0


def test_run_capacity_on_bios_with_a_gpt2_preset():
    result = capacity.run_capacity({"data": "bios", "mode": "fresh", "model": "gpt2", "n_layer": 1, "n_head": 1,
                                    "N": 8, "exposures": 1, "batch_size": 8, "lr": 1e-3, "seed": 0})
    assert result["param_groups"]["position"] == 0  # rotary: no position parameters
    assert set(result["breakdown"]) == {"name", "values"} and result["bits"] >= 0


def test_people_for_capacity_sizes_the_data_to_the_model():
    base = {k: v for k, v in BIOD.items() if k != "N"} | {"name_pools": [100, 100], "D": 64, "T": 64, "K": 8}
    n = capacity.people_for_capacity(base, factor=2.5)
    dataset = capacity.make_dataset(base, n)
    P = capacity.param_count(base, dataset).total
    assert dataset.information_bits() == pytest.approx(2.5 * 2 * P, rel=0.02)
    capped = capacity.people_for_capacity({**base, "name_pools": [5, 5]}, factor=2.5)
    assert capped == 25  # never more people than names


@pytest.mark.parametrize("profile", profiles.profiles_of(capacity.CHAPTER))
def test_capacity_grid_of_every_profile(profile):
    sizes = profiles.resolve(capacity.CHAPTER, profile)
    grid = capacity.capacity_grid(sizes, seed=3)
    assert len(grid) == len(sizes["models"]) * len(sizes["exposures"])
    assert {c["seed"] for c in grid} == {3} and {c["exposures"] for c in grid} == set(sizes["exposures"])
    json.dumps(grid)
    for size in range(len(sizes["models"])):  # one N per model size, whatever the exposures
        assert len({c["N"] for c in grid[size * len(sizes["exposures"]):(size + 1) * len(sizes["exposures"])]}) == 1
    assert len(capacity.capacity_grid(sizes, seeds=[0, 1])) == 2 * len(grid)
    if sizes["model"] == "gpt2":
        assert all(c["d_model"] == 64 * c["n_head"] and c["data"] == "bios" for c in grid)


def _record(exposures, d, seed, R, params=100):
    return {"config": {"model": "tiny", "d_model": d, "n_layer": 2, "n_head": 2, "data": "biod", "N": 10,
                       "exposures": exposures, "lr": 1e-3, "batch_size": 8, "seed": seed},
            "result": {"R": R, "R_nonembedding": 2 * R, "bits": R * params, "params": params,
                       "non_embedding_params": params // 2, "history": {"losses": [1.0]}}}


def test_rows_mean_by_size_and_peak_ratio():
    records = [_record(100, 8, 0, 0.4), _record(100, 8, 1, 0.6), _record(100, 16, 0, 0.3, 300),
               _record(1000, 8, 0, 1.5), _record(1000, 16, 0, 2.2, 300), _record(1000, 16, 1, 2.0, 300)]
    table = capacity.rows(records)
    assert "history" not in table[0] and table[0]["R"] == 0.4 and table[0]["d_model"] == 8
    means = capacity.mean_by_size(table)
    assert [(m["exposures"], m["d_model"], m["n_seeds"]) for m in means] == [(100, 8, 2), (100, 16, 1),
                                                                            (1000, 8, 1), (1000, 16, 2)]
    assert means[0]["R"] == pytest.approx(0.5) and means[0]["R_min"] == 0.4 and means[0]["R_max"] == 0.6
    peaks = capacity.peak_ratio(table)
    assert list(peaks) == [100, 1000]
    assert peaks[100]["d_model"] == 8 and peaks[1000]["d_model"] == 16 and peaks[1000]["R"] == pytest.approx(2.1)


def test_pool_executor_runs_every_config_serially_and_in_processes(tmp_path):
    grid = [{"x": i} for i in range(3)]
    serial = run_sweep(grid, dict, tmp_path / "serial", executor=capacity.pool_executor(1), progress=False)
    pooled = run_sweep(grid, dict, tmp_path / "pool", executor=capacity.pool_executor(2, 1), progress=False)
    assert [r["result"] for r in serial.records] == [r["result"] for r in pooled.records] == grid
    assert pooled.ran == 3


def test_capacity_runs_of_one_shape_train_together_and_match_single_runs(tmp_path, monkeypatch):
    grid = [{**BIOD, "seed": s, "exposures": 20} for s in (0, 1)] + [{**BIOD, "d_model": 12, "exposures": 20}]
    assert capacity.run_capacity.shape_key(grid[0]) == capacity.run_capacity.shape_key(grid[1])
    assert capacity.run_capacity.shape_key(grid[0]) != capacity.run_capacity.shape_key(grid[2])
    batched_calls = []
    run_many = capacity.CapacityRun.run_many
    monkeypatch.setattr(capacity.CapacityRun, "run_many",
                        lambda self, configs: batched_calls.append(len(configs)) or run_many(self, configs))
    together = run_sweep(grid, capacity.run_capacity, tmp_path / "pool", executor=capacity.pool_executor(1),
                         progress=False).records
    assert batched_calls == [2]  # the two seeds of d 8 trained as one batch, d 12 alone
    for record, config in zip(together, grid, strict=True):
        single = capacity.run_capacity(dict(config))
        assert record["result"]["steps"] == single["steps"] and record["result"]["params"] == single["params"]
        assert record["result"]["final_loss"] == pytest.approx(single["final_loss"], rel=1e-3)
        assert record["result"]["bits"] == pytest.approx(single["bits"], rel=1e-3, abs=0.5)


def test_run_memorization_mls_and_mac_on_a_random_library():
    mls = capacity.run_memorization({**RANDOM, "method": "mls", "start": 2, "max_size": 16, "tolerance": 0.5,
                                     "threshold": 1.0})
    json.dumps(mls, allow_nan=False)
    assert mls["bits_per_item"] in (0.0, 4.0) and mls["bits"] == mls["items"] * 4.0
    assert mls["probes"] and all(p["n"] <= 16 for p in mls["probes"])
    assert mls["bits_per_param"] == pytest.approx(mls["bits"] / mls["params"])
    mac = capacity.run_memorization({**RANDOM, "method": "mac", "n_items": 16})
    assert 0 <= mac["items"] <= 16 and mac["bits"] == mac["items"] * 4.0
    assert 0 <= mac["loss_bits"] <= 16 * 4.0 and mac["fraction_recalled"] == mac["items"] / 16
    with pytest.raises(ValueError, match="method='nope' is not valid"):
        capacity.run_memorization({**RANDOM, "method": "nope"})


@pytest.mark.parametrize("profile", profiles.profiles_of(capacity.MEMORIZATION_CHAPTER))
def test_memorization_grid_of_every_profile(profile):
    sizes = profiles.resolve(capacity.MEMORIZATION_CHAPTER, profile)
    grid = capacity.memorization_grid(sizes, seed=2)
    json.dumps(grid)
    mls = [c for c in grid if c["method"] == "mls"]
    assert len(mls) == len(sizes["models"]) * len(sizes["datasets"])
    for config in mls:
        macs = [c for c in grid if c["method"] == "mac" and c["data"] == config["data"]
                and c["d_model"] == config["d_model"]]
        assert 1 <= len(macs) <= len(sizes["mac_bits_per_param"])
        assert all(c.get("max_len") == config.get("max_len") and c["n_items"] <= config["max_size"] for c in macs)
        if config["data"] == "random":  # a MAC library holds mac_bits_per_param x P bits
            P = capacity.param_count(config, capacity.make_dataset(config, 1000)).total
            per_item = sizes["S"] * math.log2(sizes["V"])
            wanted = min(config["max_size"], sizes["mac_bits_per_param"][0] * P / per_item)
            assert macs[0]["n_items"] == pytest.approx(wanted, rel=0.02)


def test_precomputed_round_trip_and_absent_file(tmp_path):
    assert capacity.load_precomputed(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert capacity.load_precomputed(tmp_path / "bad.json") is None
    meta = capacity.provenance("cpu-full", "cmd", 12.3, 2, 1)
    assert meta["profile"] == "cpu-full" and meta["processes"] == 2 and "torch" in meta
    path = capacity.save_precomputed(tmp_path / "out.json", [_record(100, 8, 0, 0.5)], meta)
    loaded = capacity.load_precomputed(path)
    assert loaded["provenance"]["command"] == "cmd" and capacity.rows(loaded["records"])[0]["R"] == 0.5
    assert capacity.regenerate_command("cpu-full") == (
        ".venv/bin/python -m labkit.capacity --profile cpu-full --out results/capacity_cpu_full.json")


def test_cli_dry_run_prints_the_grid(capsys):
    assert capacity.main(["--profile", "smoke", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["data"] == "biod" for line in lines)


def test_cli_writes_the_combined_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(profiles.CHAPTERS[capacity.CHAPTER], "smoke",
                        {**profiles.CHAPTERS[capacity.CHAPTER]["smoke"], "exposures": (2,)})
    out = tmp_path / "smoke.json"
    assert capacity.main(["--profile", "smoke", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    data = capacity.load_precomputed(out)
    assert len(data["records"]) == 1 and data["provenance"]["profile"] == "smoke"
    assert "wrote" in capsys.readouterr().out
