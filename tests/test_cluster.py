"""Sweeps on distributed engines: Ray (a local cluster on 127.0.0.1, started once for this module) and
Slurm through submitit (its local executor: the same jobs, as processes on this machine).

What must hold: the same grid gives the same result numbers whichever executor runs it; the driver
stores every record in the one per-run cache, so a sweep moves between executors mid-way; bad input is
one line naming the option and what is allowed, before anything runs; ``import labkit`` imports
neither engine.

Equality is exact (every result value but the timings): each run is the same code on the same CPU with
one torch thread, so moving it to a Ray worker or a Slurm job changes no float operation. Same-shape
runs trained together (``batch=True``) are a different computation, equal within float tolerance.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import raises_invalid

from labkit import cli, cluster
from labkit.experiments import capacity
from labkit.sweep import (
    load_results,
    make_executor,
    ray_executor,
    run_sweep,
    slurm_executor,
)

TIMINGS = {"wall_time", "train_time"}
GRID = capacity.grid(capacity.PROFILES["smoke"].sizes, (0,))  # two tiny runs: 10 and 200 exposures


def numbers(records: list[dict]) -> list[dict]:
    """The results of records without their timings: what must not depend on the executor."""
    return [{k: v for k, v in r["result"].items() if k not in TIMINGS} for r in records]


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the module, 2 CPUs, on 127.0.0.1 (labkit.cluster.ray_session). This
    test module is not importable by Ray's workers (pytest puts tests/ on the path of this process only),
    so its run functions travel by value, as a notebook's do."""
    import ray.cloudpickle  # Ray's own copy of cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with cluster.ray_session("local", num_cpus=2) as ray:
        yield ray


def test_import_labkit_imports_neither_ray_nor_submitit():
    code = ("import sys, labkit, labkit.sweep, labkit.cluster, labkit.distributed, labkit.experiments, labkit.cli; "
            "labkit.cli.build_parser(); print(sorted({'ray', 'submitit'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_the_local_ray_cluster_listens_on_loopback_only(ray_cluster):
    assert ray_cluster.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert {node["NodeManagerAddress"] for node in ray_cluster.nodes()} == {"127.0.0.1"}
    assert ray_cluster.cluster_resources()["CPU"] == 2


def test_the_same_grid_gives_the_same_numbers_on_every_executor(ray_cluster, tmp_path):
    serial = run_sweep(GRID, capacity.run, tmp_path / "serial", executor="serial", progress=False)
    processes = run_sweep(GRID, capacity.run, tmp_path / "processes", progress=False,
                          executor=make_executor("processes", threads=1, cost=capacity.cost))
    on_ray = run_sweep(GRID, capacity.run, tmp_path / "ray", progress=False,
                       executor=make_executor("ray", threads=1, cost=capacity.cost))
    on_slurm = run_sweep(GRID, capacity.run, tmp_path / "slurm", progress=False,
                         executor=make_executor("slurm", {"slurm_cluster": "local"}, threads=1))
    assert numbers(serial.records)[1]["R"] > 0  # a run that learned something, so equality means something
    for report in (processes, on_ray, on_slurm):
        assert report.ran == len(GRID) and [r["config"] for r in report.records] == GRID
        assert numbers(report.records) == numbers(serial.records)  # exact: see the module docstring
        assert [r["hash"] for r in report.records] == [r["hash"] for r in serial.records]
    stored = sorted(p.name for p in (tmp_path / "slurm").glob("*.json"))
    assert stored == sorted(p.name for p in (tmp_path / "serial").glob("*.json"))
    assert (tmp_path / "slurm" / "submitit").is_dir()  # submitit's pickles and logs, beside the cache


def test_a_sweep_started_on_ray_resumes_serially_and_the_other_way(ray_cluster, tmp_path):
    first = run_sweep(GRID[:1], capacity.run, tmp_path, executor=ray_executor(), progress=False)
    rest = run_sweep(GRID, capacity.run, tmp_path, executor="serial", progress=False)
    assert first.ran == 1 and rest.reused == 1 and rest.ran == 1
    again = run_sweep(GRID, capacity.run, tmp_path, executor=ray_executor(), progress=False)
    assert again.ran == 0 and again.records == rest.records  # all cached: no task is submitted
    assert load_results(tmp_path, GRID) == rest.records


def test_same_shape_runs_batched_on_ray_match_serial_within_float_tolerance(ray_cluster, tmp_path):
    grid = [dict(GRID[1], exposures=60, seed=seed) for seed in (0, 1)]  # one shape: trained together
    serial = run_sweep(grid, capacity.run, tmp_path / "serial", executor="serial", progress=False)
    batched = run_sweep(grid, capacity.run, tmp_path / "ray", executor=ray_executor(batch=True), progress=False)
    for a, b in zip(numbers(serial.records), numbers(batched.records), strict=True):
        assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-4)
        assert b["bits"] == pytest.approx(a["bits"], rel=1e-3, abs=0.5)


class FailOn:
    """A run function that fails on one config (defined in a module, so Ray workers import it)."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def __call__(self, config: dict) -> dict:
        if config["n"] == self.bad:
            raise ArithmeticError(f"run {config['n']} failed")
        return {"twice": 2 * config["n"]}


def test_a_failed_ray_task_stops_the_sweep_and_keeps_what_finished(ray_cluster, tmp_path):
    grid = [{"n": n} for n in range(4)]
    with pytest.raises(ArithmeticError, match="run 3 failed"):
        run_sweep(grid, FailOn(3), tmp_path, executor=ray_executor(), progress=False)
    done = {r["config"]["n"]: r["result"]["twice"] for r in load_results(tmp_path)}
    assert 3 not in done and all(v == 2 * n for n, v in done.items())
    report = run_sweep(grid, FailOn(-1), tmp_path, executor=ray_executor(), progress=False)
    assert report.reused == len(done) and [r["result"]["twice"] for r in report.records] == [0, 2, 4, 6]


def test_a_run_asking_for_more_gpus_than_the_cluster_has_fails_in_one_line(ray_cluster, tmp_path):
    gpus = ray_cluster.cluster_resources().get("GPU", 0)
    with raises_invalid(f"gpus={gpus + 1:g} per run is more than the Ray cluster's {gpus:g} GPUs"):
        run_sweep([{"n": 1}], FailOn(-1), tmp_path, executor=ray_executor(gpus=gpus + 1), progress=False)
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_each_ray_task_gets_its_gpu_and_trains_there(ray_cluster, tmp_path):
    report = run_sweep(GRID[:1], capacity.run, tmp_path, executor=ray_executor(gpus=1), progress=False)
    assert report.records[0]["result"]["device"].startswith("cuda")


# ---- bad input: one line, naming the option and what is allowed, before anything runs ------------------


@pytest.mark.parametrize(("name", "options", "message"), [
    ("bogus", {}, "executor='bogus' is not valid; allowed: 'serial', 'batched', 'processes', 'auto', 'ray', 'slurm'"),
    ("serial", {"address": "auto"}, "address is an option of executor 'ray', not of executor='serial'"),
    ("ray", {"partition": "gpu"}, "partition is an option of executor 'slurm', not of executor='ray'"),
    ("ray", {"address": "no-port"}, "address='no-port' is not valid; allowed: 'local'"),
    ("ray", {"address": "127.0.0.1:99999"}, "address='127.0.0.1:99999' is not valid"),
    ("ray", {"gpus": "two"}, "gpus='two' is not valid; allowed: a number >= 0"),
    ("ray", {"gpus": "-1"}, "gpus='-1' is not valid"),
    ("slurm", {"time": "1h"}, "time='1h' is not valid; allowed: minutes (a whole number) or Slurm's"),
    ("slurm", {"time": "0"}, "time='0' is not valid"),
    ("slurm", {"gpus": "1.5"}, "gpus='1.5' is not valid; allowed: an integer"),
    ("slurm", {"slurm_cluster": "pbs"}, "cluster='pbs' is not valid; allowed: 'slurm', 'local'"),
    ("slurm", {"slurm_config": "/no/such/file.toml"}, "slurm_config='/no/such/file.toml' is not valid"),
])
def test_bad_executor_options_fail_in_one_line(name, options, message):
    with raises_invalid(message) as error:
        make_executor(name, options)
    assert "\n" not in str(error.value)


def test_an_unreachable_ray_address_fails_at_once(monkeypatch):
    port = closed_port()
    with raises_invalid(f"address='127.0.0.1:{port}' is not reachable"):
        make_executor("ray", {"address": f"127.0.0.1:{port}"})
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("ray._private.services.canonicalize_bootstrap_address", lambda address: None)
    with raises_invalid("address='auto' found no running Ray cluster"):
        make_executor("ray", {"address": "auto"})


@pytest.mark.parametrize(("package", "executor"), [("ray", "ray"), ("submitit", "slurm")])
def test_a_missing_engine_is_a_one_line_error(monkeypatch, package, executor):
    monkeypatch.setitem(sys.modules, package, None)  # what an absent install looks like to import
    with raises_invalid(f"executor={executor!r} needs the {package} package, which is not installed"):
        make_executor(executor, {"slurm_cluster": "local"} if executor == "slurm" else {})


def test_the_command_line_rejects_bad_cluster_input_and_writes_no_results_file(tmp_path, capsys):
    out = tmp_path / "out.json"
    for flags, message in [
        (["--executor", "nope"], "error: executor='nope' is not valid"),
        (["--executor", "ray", "--address", "127.0.0.1:1"], "error: address='127.0.0.1:1' is not reachable"),
        (["--executor", "slurm", "--time", "soon"], "error: time='soon' is not valid"),
        (["--executor", "slurm", "--gpus", "x"], "error: gpus='x' is not valid"),
        (["--address", "auto"], "error: address needs an executor; allowed: --executor ray or slurm"),
    ]:
        assert cli.main(["sweep", "capacity", "--profile", "smoke", "--out", str(out), "--cache",
                         str(tmp_path / "cache"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
    assert not out.exists() and not list((tmp_path).glob("cache/*.json"))


# ---- Slurm options and the sbatch file ----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "minutes"), [
    (90, 90), ("90", 90), ("30:30", 31), ("1:30:00", 90), ("2-00", 2880), ("1-02:03", 1563), ("0-00:00:59", 1)])
def test_slurm_time_formats(text, minutes):
    assert cluster.parse_time(text) == minutes


def test_slurm_options_from_a_file_and_flags(tmp_path):
    path = tmp_path / "slurm.toml"
    path.write_text('[slurm]\npartition = "cpu"\ntime = "4:00:00"\ngpus = 2\nmem_gb = 16\n'
                    'setup = ["source .venv/bin/activate"]\nextra = { "mail-type" = "END" }\n')
    options = cluster.SlurmOptions.load(path, partition="gpu", time=None)
    assert (options.partition, options.time, options.gpus, options.mem_gb) == ("gpu", 240, 2, 16.0)
    script = cluster.sbatch_script(options, tmp_path / "logs", jobs=4)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=240", "#SBATCH --gpus-per-node=2", "#SBATCH --mem=16GB",
                 "#SBATCH --array=0-3%4", "#SBATCH --mail-type=END", "source .venv/bin/activate"):
        assert line in script
    (tmp_path / "bad.toml").write_text("partition = 'x'\ncolour = 'blue'\n")
    with raises_invalid("slurm option='colour' is not valid; allowed: partition, time"):
        cluster.SlurmOptions.load(tmp_path / "bad.toml")
    (tmp_path / "broken.json").write_text("{not json")
    with raises_invalid("slurm_config="):
        cluster.SlurmOptions.load(tmp_path / "broken.json")


def test_slurm_jobs_take_the_profiles_cpus_and_gpus_unless_told_otherwise():
    executor = slurm_executor(cluster.SlurmOptions(partition="p"), threads=4, gpus=0.5)
    assert "#SBATCH --cpus-per-task=4" in executor.sbatch(2, "/x") and "--gpus-per-node=1" in executor.sbatch(2, "/x")
    executor = slurm_executor(cluster.SlurmOptions(cpus=2, gpus=0), threads=4, gpus=1)
    assert "--cpus-per-task=2" in executor.sbatch(1, "/x") and "gpus-per-node" not in executor.sbatch(1, "/x")


def test_dry_run_prints_the_cost_and_the_sbatch_file(capsys, tmp_path):
    assert cli.main(["sweep", "capacity", "--profile", "smoke", "--executor", "slurm", "--partition", "gpu",
                     "--cache", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 runs of capacity at profile smoke" in out and "estimate: " in out and "GPU-hours" in out
    assert "#SBATCH --partition=gpu" in out and f"{Path(tmp_path) / 'submitit'}" in out
    assert not list(tmp_path.glob("*.json"))
