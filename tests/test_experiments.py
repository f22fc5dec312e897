"""labkit.experiments: run functions (capacity, MLS / MAC), grids of every profile, tables, results files,
and the ``sweep`` command."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from labkit import experiments, profiles
from labkit.data.registry import make_dataset
from labkit.experiments import base, capacity, memorization
from labkit.experiments.models import param_count
from labkit.sweep import process_executor, run_sweep

BIOD = {"data": "biod", "K": 2, "C": 1, "D": 8, "L": 1, "T": 8, "name_pools": [6, 6], "model": "tiny",
        "d_model": 8, "n_layer": 1, "n_head": 2, "N": 24, "exposures": 3, "batch_size": 16, "lr": 1e-2,
        "weight_decay": 0.05, "seed": 0}
UNIFORM = {"data": "uniform", "S": 2, "V": 4, "key_base": 10, "model": "tiny", "d_model": 8, "n_layer": 1,
           "n_head": 2, "exposures": 40, "batch_size": 64, "lr": 3e-2, "weight_decay": 0.05, "seed": 0,
           "max_len": 1 + 2 + 2}


def test_capacity_run_returns_json_ready_bits_and_both_ratios():
    result = capacity.run(dict(BIOD))
    json.dumps(result, allow_nan=False)
    assert math.isclose(result["R"], result["bits"] / result["params"])
    assert math.isclose(result["R_nonembedding"], result["bits"] / result["non_embedding_params"])
    assert result["non_embedding_params"] < result["params"] == result["param_groups"]["total"]
    assert 0 <= result["bits"] <= result["information_bits"]
    assert set(result["breakdown"]) == {"name", "values", "diversity"}
    assert result["steps"] == 2 * 3 and result["tokens_seen"] == 3 * 24 * (2 + 2 + 2 * 2)
    assert len(result["history"]["losses"]) == len(result["history"]["exposures"]) <= 50
    assert result["history"]["exposures"][-1] == 3.0


def test_capacity_run_on_bios_with_a_gpt2_preset():
    result = capacity.run({"data": "bios", "mode": "fresh", "model": "gpt2", "n_layer": 1, "n_head": 1,
                           "N": 8, "exposures": 1, "batch_size": 8, "lr": 1e-3, "seed": 0})
    assert result["param_groups"]["position"] == 0  # rotary: no position parameters
    assert set(result["breakdown"]) == {"name", "values"} and result["bits"] >= 0


def test_people_for_capacity_sizes_the_data_to_the_model():
    base_config = {k: v for k, v in BIOD.items() if k != "N"} | {"name_pools": [100, 100], "D": 64, "T": 64, "K": 8}
    n = capacity.people_for_capacity(base_config, factor=2.5)
    dataset = make_dataset(base_config, n)
    P = param_count(base_config, dataset).total
    assert dataset.information_bits() == pytest.approx(2.5 * 2 * P, rel=0.02)
    capped = capacity.people_for_capacity({**base_config, "name_pools": [5, 5]}, factor=2.5)
    assert capped == 25  # never more people than names


@pytest.mark.parametrize("profile", [p for p, prof in capacity.PROFILES.items() if not prof.sizes.knobs])
def test_capacity_grid_of_every_profile(profile):
    sizes = capacity.PROFILES[profile].sizes
    grid = [c for c in capacity.grid(sizes, seeds=(3,)) if "series" not in c]  # the model sizes, not the N sweep
    n_models = len(sizes.models.keys())
    assert len(grid) == n_models * len(sizes.exposures)
    assert {c["seed"] for c in grid} == {3} and {c["exposures"] for c in grid} == set(sizes.exposures)
    json.dumps(grid)
    per_model = len(sizes.exposures)
    for m in range(n_models):  # one N per model size, whatever the exposures
        assert len({c["N"] for c in grid[m * per_model:(m + 1) * per_model]}) == 1
    assert len([c for c in capacity.grid(sizes, seeds=(0, 1)) if "series" not in c]) == 2 * len(grid)
    if isinstance(sizes.models, capacity.GPT2Models):
        assert all(c["d_model"] == 64 * c["n_head"] and c["data"] == "bios" for c in grid)


def test_capacity_grid_table_counts_parameters_and_information():
    grid = capacity.grid(capacity.PROFILES["smoke"].sizes, seeds=(0,))
    table = capacity.grid_table(grid)
    assert list(table.d_model) == [8] and table.exposures[0] == "10, 200"
    row = table.iloc[0]
    assert row["information / 2P"] == pytest.approx(row.information_bits / (2 * row.params))
    assert row.N == 100 and row["information / 2P"] < 2.0  # factor 2 wanted, capped by 10 x 10 names


def _record(exposures, d, seed, R, params=100):
    return {"config": {"model": "tiny", "d_model": d, "n_layer": 2, "n_head": 2, "data": "biod", "N": 10,
                       "exposures": exposures, "lr": 1e-3, "batch_size": 8, "seed": seed},
            "result": {"R": R, "R_nonembedding": 2 * R, "bits": R * params, "params": params,
                       "non_embedding_params": params // 2, "history": {"losses": [1.0]}}}


def test_runs_table_by_size_peaks_and_the_paper_table():
    records = [_record(100, 8, 0, 0.4), _record(100, 8, 1, 0.6), _record(100, 16, 0, 0.3, 300),
               _record(1000, 8, 0, 1.5), _record(1000, 16, 0, 2.2, 300), _record(1000, 16, 1, 2.0, 300)]
    table = capacity.runs_table(records)
    assert "history" not in table.columns and table.R[0] == 0.4 and table.d_model[0] == 8
    means = capacity.by_size(table)
    assert list(zip(means.exposures, means.d_model, means.n_seeds, strict=True)) == [
        (100, 8, 2), (100, 16, 1), (1000, 8, 1), (1000, 16, 2)]
    assert means.R[0] == pytest.approx(0.5) and means.R_min[0] == 0.4 and means.R_max[0] == 0.6
    peaks = capacity.peaks(table)
    assert list(peaks.index) == [100, 1000]
    assert peaks.at[100, "d_model"] == 8 and peaks.at[1000, "d_model"] == 16
    assert peaks.at[1000, "R"] == pytest.approx(2.1)
    paper = capacity.paper_table({"this run": peaks, "none": peaks.iloc[:0]})
    assert paper.at[1000, "this run"] == "2.10 / 4.20 (d=16)" and paper.at[100, "none"] == "not run"
    assert paper.at[1000, "paper (Part 3.3)"] == "≥ 2, ≤ 2.3"


def test_no_knowledge_loss_is_the_loss_of_a_model_that_knows_only_marginals():
    data = make_dataset({**BIOD, "N": 36})
    names = math.log(6) + math.log(6)
    assert capacity.no_knowledge_loss(data) == pytest.approx((names + 2 * math.log(8)) / (data.record_length - 1))


def test_capacity_runs_of_one_shape_train_together_and_match_single_runs(tmp_path, monkeypatch):
    grid = [{**BIOD, "seed": s, "exposures": 20} for s in (0, 1)] + [{**BIOD, "d_model": 12, "exposures": 20}]
    assert capacity.run.shape_key(grid[0]) == capacity.run.shape_key(grid[1])
    assert capacity.run.shape_key(grid[0]) != capacity.run.shape_key(grid[2])
    batched_calls = []
    run_many = capacity.CapacityRun.run_many
    monkeypatch.setattr(capacity.CapacityRun, "run_many",
                        lambda self, configs: batched_calls.append(len(configs)) or run_many(self, configs))
    together = run_sweep(grid, capacity.run, tmp_path / "pool", executor=process_executor(1, batch=True),
                         progress=False).records
    assert batched_calls == [2]  # the two seeds of d 8 trained as one batch, d 12 alone
    for record, config in zip(together, grid, strict=True):
        single = capacity.run(dict(config))
        assert record["result"]["steps"] == single["steps"] and record["result"]["params"] == single["params"]
        assert record["result"]["final_loss"] == pytest.approx(single["final_loss"], rel=1e-3)
        assert record["result"]["bits"] == pytest.approx(single["bits"], rel=1e-3, abs=0.5)


def test_memorization_mls_and_mac_on_a_uniform_library():
    mls = memorization.run({**UNIFORM, "method": "mls", "start": 2, "max_size": 16, "tolerance": 0.5,
                            "threshold": 1.0})
    json.dumps(mls, allow_nan=False)
    assert mls["bits_per_item"] in (0.0, 4.0) and mls["bits"] == mls["items"] * 4.0
    assert mls["probes"] and all(p["n"] <= 16 for p in mls["probes"])
    assert mls["bits_per_param"] == pytest.approx(mls["bits"] / mls["params"])
    mac = memorization.run({**UNIFORM, "method": "mac", "n_items": 16})
    assert 0 <= mac["items"] <= 16 and mac["bits"] == mac["items"] * 4.0
    assert 0 <= mac["loss_bits"] <= 16 * 4.0 and mac["fraction_recalled"] == mac["items"] / 16
    with pytest.raises(ValueError, match="method='nope' is not valid"):
        memorization.run({**UNIFORM, "method": "nope"})
    records = [{"config": {**UNIFORM, "method": "mls"}, "result": mls},
               {"config": {**UNIFORM, "method": "mac", "n_items": 16}, "result": mac}]
    pairs = memorization.pairs_table(memorization.runs_table(records))
    assert len(pairs) == 1 and pairs["MLS items"][0] == mls["items"] and pairs["MAC items"][0] == mac["items"]
    assert pairs["loss bits/P"][0] == mac["loss_bits_per_param"]
    assert [p["n"] for p in memorization.probes_of(records)[("uniform", 8)]] == sorted(p["n"] for p in mls["probes"])


@pytest.mark.parametrize("profile", list(memorization.PROFILES))
def test_memorization_grid_of_every_profile(profile):
    sizes = memorization.PROFILES[profile].sizes
    grid = memorization.grid(sizes, seeds=(2,))
    json.dumps(grid)
    mls = [c for c in grid if c["method"] == "mls"]
    assert len(mls) == len(sizes.models.widths) * len(sizes.datasets)
    for config in mls:
        macs = [c for c in grid if c["method"] == "mac" and c["data"] == config["data"]
                and c["d_model"] == config["d_model"] and "series" not in c]
        assert 1 <= len(macs) <= len(sizes.mac_bits_per_param)
        assert all(c["max_size"] == config["max_size"] and c["n_items"] <= config["max_size"] for c in macs)
        if config["data"] == "uniform":  # a MAC library holds mac_bits_per_param x P bits
            P = param_count(config, make_dataset(config, 1000)).total
            wanted = min(config["max_size"], sizes.mac_bits_per_param[0] * P / (sizes.S * math.log2(sizes.V)))
            assert macs[0]["n_items"] == pytest.approx(wanted, rel=0.02)
    table = memorization.grid_table(grid)
    assert len(table) == len(mls) and (table.params > table.non_embedding).all()


def test_results_files_round_trip_and_absent_file(tmp_path):
    assert base.load_results(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert base.load_results(tmp_path / "bad.json") is None
    meta = base.provenance("02_capacity_scaling_law", "cpu-full", "cmd", 12.3, base.Execution(2, 1))
    assert meta["profile"] == "cpu-full" and meta["processes"] == 2 and "torch" in meta
    path = base.save_results(tmp_path / "out.json", [_record(100, 8, 0, 0.5)], meta)
    loaded = base.load_results(path)
    assert loaded["provenance"]["command"] == "cmd" and capacity.runs_table(loaded["records"]).R[0] == 0.5
    assert base.regenerate_command("capacity", "cpu-full") == (
        ".venv/bin/python -m labkit sweep capacity --profile cpu-full --out results/capacity_cpu_full.json")
    assert capacity.PRECOMPUTED == base.RESULTS_DIR / "capacity_cpu_full.json"


def test_the_committed_cpu_full_results_match_the_grid_of_their_profile():
    data = capacity.precomputed()
    assert data is not None, "results/capacity_cpu_full.json is committed"
    from labkit.sweep import config_hash

    grid = capacity.grid(capacity.PROFILES["cpu-full"].sizes, capacity.PROFILES["cpu-full"].sizes.seeds)
    assert sorted(r["hash"] for r in data["records"]) == sorted(config_hash(c) for c in grid)


def test_sweep_command_dry_run_prints_the_grid(capsys):
    assert experiments.sweep_command("capacity", profile="smoke", dry_run=True) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["data"] == "biod" for line in lines[:2])
    assert lines[2] == "2 runs of capacity at profile smoke"
    assert lines[3].startswith("estimate: ") and "GPU-hours" in lines[3]  # labkit.experiments.costs


def test_sweep_command_writes_the_combined_file(tmp_path, monkeypatch, capsys):
    smoke = base.derive(capacity.PROFILES["smoke"], sizes={"exposures": (2,)})
    monkeypatch.setitem(capacity.PROFILES, "smoke", smoke)
    out = tmp_path / "smoke.json"
    assert experiments.sweep_command("capacity", "smoke", out=str(out), cache=str(tmp_path / "cache"),
                                     executor="serial") == 0
    data = base.load_results(out)
    assert len(data["records"]) == 1 and data["provenance"]["profile"] == "smoke"
    assert data["provenance"]["command"].endswith(f"--profile smoke --out {out} --executor serial")
    assert data["provenance"]["executor"] == "serial"
    printed = capsys.readouterr().out
    assert "wrote" in printed and "R_nonembedding" in printed


@pytest.mark.parametrize(("call", "message"), [
    (dict(experiment="capacty"), "experiment='capacty' is not valid; allowed: welcome, information, capacity"),
    (dict(experiment="information"), "experiment='information' has no sweep; allowed: capacity, memorization"),
    (dict(experiment="capacity", profile="qiuck"), "profile='qiuck' is not valid for capacity; allowed: smoke"),
    (dict(experiment="capacity", executor="rayy"), "executor='rayy' is not valid; allowed: 'serial'"),
])
def test_sweep_command_errors_name_the_parameter(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        experiments.sweep_command(**call, dry_run=True)


def test_every_chapter_experiment_is_registered_with_its_chapter():
    for name, (module, chapter) in experiments.EXPERIMENTS.items():
        loaded = experiments.load(name)
        assert loaded.__name__ == module and loaded.CHAPTER == chapter and loaded.NAME == name
        assert chapter in profiles.chapters()
    assert isinstance(capacity.summary_table([_record(100, 8, 0, 0.5)]), pd.DataFrame)
