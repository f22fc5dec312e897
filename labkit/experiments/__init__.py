"""The chapters' experiments, one module each, and the command that runs their sweeps.

Each module declares, next to its code, its typed profiles (``PROFILES``: ``sizes``, ``run`` and
``expect`` parts, ``labkit.experiments.base``), and, where the chapter trains a grid of models, its
``grid(sizes, seeds)``, its run function ``run(config) -> dict`` and the tables the chapter shows.
A new chapter adds a module and one line to ``EXPERIMENTS``.

Modules are imported on demand (``load``), so listing chapters stays cheap.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from types import ModuleType

#: experiment name -> (module, the chapter notebook it belongs to)
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "welcome": ("labkit.experiments.welcome", "00_welcome"),
    "information": ("labkit.experiments.information", "01_knowledge_as_bits"),
    "capacity": ("labkit.experiments.capacity", "02_capacity_scaling_law"),
    "memorization": ("labkit.experiments.memorization", "03_mls_vs_mac"),
    "architectures": ("labkit.experiments.architectures", "04_architecture_capacity"),
    "ntk": ("labkit.experiments.ntk", "12_ntk_appendix"),
}
CHAPTERS: dict[str, str] = {chapter: name for name, (_, chapter) in EXPERIMENTS.items()}


def load(name: str) -> ModuleType:
    """The experiment module ``name``, with the lab's one-line error for a bad name."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment={name!r} is not valid; allowed: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name][0])


def sweepable() -> list[str]:
    """The experiments that run a grid of trainings (and so have a ``sweep`` command)."""
    return [name for name in EXPERIMENTS if hasattr(load(name), "grid")]


def sweep_command(experiment: str, profile: str = "cpu-full", out: str | None = None, cache: str | None = None,
                  executor: str | None = None, dry_run: bool = False) -> int:
    """``python -m labkit sweep EXPERIMENT``: run a profile's whole grid (all its seeds, resumable from
    the per-run cache) and write the combined results file with its provenance.

    Default ``out``: ``results/<experiment>_<profile>.json``; default ``cache``:
    ``_build/sweeps/<experiment>/<profile>``; ``executor``: a ``labkit.sweep`` executor name (default:
    the profile's worker processes). ``dry_run`` prints the grid and writes nothing.
    """
    from labkit.experiments import base
    from labkit.sweep import EXECUTORS, canonical_json

    module = load(experiment)
    if not hasattr(module, "grid"):
        raise ValueError(f"experiment={experiment!r} has no sweep; allowed: {', '.join(sweepable())}")
    if executor is not None and executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not valid; allowed: {', '.join(EXECUTORS)}")
    chosen = base.select(module.PROFILES, profile, experiment)
    grid = module.grid(chosen.sizes, chosen.sizes.seeds if hasattr(chosen.sizes, "seeds") else (0,))
    for config in grid:
        print(canonical_json(config))
    print(f"{len(grid)} runs of {experiment} at profile {profile}")
    if dry_run:
        return 0
    out_path = Path(out) if out else base.results_path(experiment, profile)
    cache_dir = Path(cache) if cache else base.CACHE_DIR / experiment / profile
    t0 = time.perf_counter()
    report = base.run_grid(grid, module.run, chosen.run, cache_dir, executor=executor, cost=module.cost)
    command = base.regenerate_command(experiment, profile, out)
    meta = base.provenance(module.CHAPTER, profile, command, time.perf_counter() - t0, chosen.run)
    path = base.save_results(out_path, report.records, meta)
    summary = getattr(module, "summary_table", None)
    if summary is not None:
        print(summary(report.records).to_string())
    print(f"wrote {path} ({report.ran} runs, {report.reused} reused, {report.wall_time:.0f} s)")
    return 0
