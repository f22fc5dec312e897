"""Tests of labkit.sweep: hashing, caching, resume after interruption, corrupt results rerun and never loaded."""

from __future__ import annotations

import json
import math
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import library, tiny_model
from test_train import FAST

from labkit.measure import bits_learned
from labkit.sweep import (
    SCHEMA_VERSION,
    RunAndSave,
    Sweep,
    config_hash,
    grid_product,
    load_results,
    read_result,
    result_path,
    run_sweep,
    save_result,
)
from labkit.train import train


class Counter:
    """A run_fn that records its calls and can be told to fail on one config."""

    def __init__(self, fail_on: dict | None = None):
        self.calls: list[dict] = []
        self.fail_on = fail_on

    def __call__(self, config: dict) -> dict:
        if config == self.fail_on:
            raise KeyboardInterrupt  # a user stopping the sweep mid-way
        self.calls.append(config)
        return {"bits": config["n"] * 2.0, "losses": [3.0, 1.0], "nan": math.nan}


GRID = grid_product(n=[1, 2, 3], seed=[0, 1])


def test_config_hash_is_stable_and_order_independent():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": (1, 2), "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2}) and len(config_hash({"a": 1})) == 16
    # sha256('{"a":1,"b":"x"}')[:16]: fixed forever, since cached results are found by it
    assert config_hash({"a": 1, "b": "x"}) == "ecf9e98ec0641e23"
    assert len(GRID) == 6 and GRID[0] == {"n": 1, "seed": 0}


def test_sweep_caches_and_skips_finished_runs(tmp_path):
    fn = Counter()
    report = run_sweep(GRID, fn, tmp_path, progress=False, executor="serial")
    assert len(fn.calls) == 6 and report.ran == 6 and report.reused == 0
    assert [r["config"] for r in report.records] == GRID
    record = report.records[0]
    assert record["result"]["bits"] == 2.0 and record["result"]["nan"] is None  # strict JSON: NaN → null
    assert record["schema"] == SCHEMA_VERSION and record["hash"] == config_hash(GRID[0])
    assert {"wall_time", "torch", "labkit", "device"} <= set(record["meta"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{config_hash(c)}.json" for c in GRID)

    again = run_sweep(GRID + [GRID[0]], fn, tmp_path, progress=False, executor="serial")  # duplicates run once
    assert len(fn.calls) == 6 and again.ran == 0 and again.reused == 6
    assert again.records == report.records
    assert load_results(tmp_path, GRID) == report.records
    assert len(load_results(tmp_path)) == 6

    run_sweep(GRID[:1], fn, tmp_path, progress=False, rerun=True)
    assert len(fn.calls) == 7


def test_interrupted_sweep_resumes_where_it_stopped(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_sweep(GRID, Counter(fail_on=GRID[3]), tmp_path, progress=False, executor="serial")
    assert len(load_results(tmp_path, GRID)) == 3 and not list(tmp_path.glob(".*"))  # no temp files left
    fn = Counter()
    report = run_sweep(GRID, fn, tmp_path, progress=False, executor="serial")
    assert fn.calls == GRID[3:] and report.reused == 3


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # partial write
        lambda text: "",  # empty file
        lambda text: text.replace('"bits"', '"bitz"').replace(f'"schema": {SCHEMA_VERSION}', '"schema": 999'),
        lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "result"}),  # missing key
        lambda text: text.replace('"n": 2', '"n": 5'),  # config does not hash to the file name
        lambda text: "[1, 2]",  # valid JSON, not a record
    ],
    ids=["partial", "empty", "schema", "missing-key", "hash-mismatch", "not-a-record"],
)
def test_damaged_result_is_rerun_and_never_loaded(tmp_path, damage):
    fn = Counter()
    run_sweep(GRID, fn, tmp_path, progress=False, executor="serial")
    path = result_path(tmp_path, GRID[2])  # {"n": 2, "seed": 0}
    path.write_text(damage(path.read_text()))
    assert read_result(path) is None
    assert len(load_results(tmp_path)) == 5 and len(load_results(tmp_path, GRID)) == 5
    assert Sweep(tmp_path, fn).pending(GRID) == [GRID[2]]
    report = run_sweep(GRID, fn, tmp_path, progress=False, executor="serial")
    assert fn.calls[6:] == [GRID[2]] and report.ran == 1
    assert read_result(path)["result"]["bits"] == 4.0


def test_stray_temp_files_are_ignored(tmp_path):
    save_result(tmp_path, GRID[0], {"bits": 1}, wall_time=0.1)
    (tmp_path / f".{config_hash(GRID[1])}.abc.tmp").write_text('{"half": ')
    assert [r["config"] for r in load_results(tmp_path)] == [GRID[0]]


def test_custom_executor_sees_only_pending_configs(tmp_path):
    seen = []

    def executor(pending, run_one):  # the seam for batched / multi-process execution
        seen.extend(pending)
        with ThreadPoolExecutor(2) as pool:  # any order of completion
            yield from pool.map(run_one, reversed(pending))

    run_sweep(GRID[:2], Counter(), tmp_path, progress=False, executor="serial")
    report = run_sweep(GRID, Counter(), tmp_path, progress=False, executor=executor)
    assert seen == GRID[2:] and [r["config"] for r in report.records] == GRID
    assert pickle.loads(pickle.dumps(RunAndSave(Counter(), tmp_path)))  # can be sent to worker processes

    with pytest.raises(RuntimeError, match="without a result"):
        run_sweep(grid_product(n=[9]), Counter(), tmp_path, progress=False, executor=lambda pending, run_one: [])


def test_a_real_training_sweep(tmp_path):
    def run(config: dict) -> dict:
        data = library(config["n"])
        model = tiny_model(data, d_model=config["d_model"], n_layer=1)
        history = train(model, data, exposures=5, seed=config["seed"], **FAST)
        m = bits_learned(model, data, device="cpu")
        return {"bits": m.bits, "R": m.bits_per_param, "losses": history.losses, "device": history.device}

    grid = grid_product(d_model=[8, 16], n=[10], seed=[0])
    records = Sweep(tmp_path, run).run(grid, progress=False, executor="serial").records
    assert [r["config"]["d_model"] for r in records] == [8, 16]
    assert all(r["result"]["R"] >= 0 and len(r["result"]["losses"]) > 0 for r in records)
    assert records[0]["meta"]["device"] == "cpu"


def test_a_failed_result_write_leaves_no_file(tmp_path, monkeypatch):
    def disk_full(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("labkit.sweep.os.replace", disk_full)
    with pytest.raises(OSError, match="disk full"):
        run_sweep(GRID[:1], Counter(), tmp_path, progress=False, executor="serial")
    assert list(tmp_path.iterdir()) == []


def test_run_sweep_uses_the_auto_executor_unless_told_otherwise(tmp_path, monkeypatch):
    import labkit.sweep as sweep

    chosen = []

    def fake_auto(*args, **kwargs):
        chosen.append("auto")
        return sweep.serial_executor

    monkeypatch.setattr(sweep, "auto_executor", fake_auto)
    run_sweep(GRID[:1], Counter(), tmp_path / "a", progress=False)
    run_sweep(GRID[:1], Counter(), tmp_path / "b", progress=False, executor="serial")
    assert chosen == ["auto"]
