"""The same small sweep on every executor: serial, worker processes, Ray (a local cluster) and Slurm
through submitit's local executor; wall times side by side, and whether the results are identical.

Why: the cluster executors must give the numbers of a serial run (same seeds, same hardware), and a
user choosing one should know what each costs to start. The grid is chapter 2's ``smoke`` capacity runs
with ``--seeds`` seeds (two exposure budgets each). Every executor runs one run per unit of work
(``batch=False``), so all do the same float operations and results must agree exactly (timings aside).
Each executor starts cold: Ray's wall time includes starting its local instance, submitit's the Python
process (torch and labkit imports) of every job, the process pool's its forkserver.

    python benchmarks/bench_executors.py [--seeds 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, no install needed
from labkit.cluster import SlurmOptions  # noqa: E402
from labkit.experiments import capacity  # noqa: E402
from labkit.sweep import process_executor, ray_executor, run_sweep, serial_executor, slurm_executor  # noqa: E402

TIMINGS = {"wall_time", "train_time"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="processes, Ray CPUs, local Slurm jobs at once")
    args = parser.parse_args()
    torch.set_num_threads(1)
    grid = capacity.grid(capacity.PROFILES["smoke"].sizes, tuple(range(args.seeds)))
    executors = {
        "serial": serial_executor,
        "processes": process_executor(args.workers, threads=1, batch=False, cost=capacity.cost),
        "ray (local cluster)": ray_executor(batch=False, cost=capacity.cost),
        "submitit (local executor)": slurm_executor(SlurmOptions(cluster="local", parallel=args.workers),
                                                    batch=False, cost=capacity.cost),
    }
    load_before = os.getloadavg()
    rows, reference = [], None
    for name, executor in executors.items():
        if name.startswith("ray"):
            from labkit.cluster import ray_session

            t0 = time.perf_counter()
            with ray_session("local", num_cpus=args.workers):
                started = time.perf_counter() - t0
                report = run_sweep(grid, capacity.run, tempfile.mkdtemp(), executor=executor, progress=False)
            seconds = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            report = run_sweep(grid, capacity.run, tempfile.mkdtemp(), executor=executor, progress=False)
            seconds, started = time.perf_counter() - t0, None
        numbers = [{k: v for k, v in r["result"].items() if k not in TIMINGS} for r in report.records]
        reference = numbers if reference is None else reference
        rows.append({"executor": name, "runs": report.ran, "wall_s": round(seconds, 1),
                     "engine_start_s": None if started is None else round(started, 1),
                     "identical_to_serial": numbers == reference})
    print(f"{len(grid)} runs of capacity smoke ({args.seeds} seeds), {args.workers} workers; load average "
          f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'executor':<28}{'runs':>5}{'wall s':>9}{'engine start s':>16}  identical to serial")
    for row in rows:
        start = "" if row["engine_start_s"] is None else f"{row['engine_start_s']:.1f}"
        print(f"{row['executor']:<28}{row['runs']:>5}{row['wall_s']:>9.1f}{start:>16}  {row['identical_to_serial']}")
    out = ROOT / "_build" / "bench" / "bench_executors.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
