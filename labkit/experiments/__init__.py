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
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

#: experiment name -> (module, the chapter notebook it belongs to)
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "welcome": ("labkit.experiments.welcome", "00_welcome"),
    "information": ("labkit.experiments.information", "01_knowledge_as_bits"),
    "capacity": ("labkit.experiments.capacity", "02_capacity_scaling_law"),
    "memorization": ("labkit.experiments.memorization", "03_mls_vs_mac"),
    "architectures": ("labkit.experiments.architectures", "04_architecture_capacity"),
    "knowledge": ("labkit.experiments.knowledge", "05_where_knowledge_lives"),
    "quantization": ("labkit.experiments.quantization", "06_quantization"),
    "junk": ("labkit.experiments.junk", "07_junk_data"),
    "extraction": ("labkit.experiments.extraction", "08_knowledge_extraction"),
    "grammars": ("labkit.experiments.grammars", "10_hierarchical_structure"),
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


def _grid_of(experiment: str, profile: str):
    """The experiment's module, chosen profile and whole grid (all the profile's seeds)."""
    from labkit.experiments import base

    module = load(experiment)
    if not hasattr(module, "grid"):
        raise ValueError(f"experiment={experiment!r} has no sweep; allowed: {', '.join(sweepable())}")
    chosen = base.select(module.PROFILES, profile, experiment)
    return module, chosen, module.grid(chosen.sizes, chosen.sizes.seeds if hasattr(chosen.sizes, "seeds") else (0,))


def sweep_cost(experiment: str, profile: str = "full", utilisation: float | None = None):
    """The estimated cost (``labkit.experiments.costs.Cost``: runs, training FLOPs, GPU-hours at a stated
    utilisation) of ``python -m labkit sweep EXPERIMENT --profile PROFILE``, all its seeds."""
    from labkit.experiments import costs

    module, _, grid = _grid_of(experiment, profile)
    return costs.grid_cost(grid, getattr(module, "trained_records", None),
                           costs.UTILISATION if utilisation is None else utilisation)


def sweep_command(experiment: str, profile: str = "cpu-full", out: str | None = None, cache: str | None = None,
                  executor: str | None = None, dry_run: bool = False,
                  executor_options: Mapping[str, Any] | None = None) -> int:
    """``python -m labkit sweep EXPERIMENT``: run a profile's whole grid (all its seeds, resumable from
    the per-run cache) and write the combined results file with its provenance.

    Default ``out``: ``results/<experiment>_<profile>.json``; default ``cache``:
    ``_build/sweeps/<experiment>/<profile>``; ``executor``: a ``labkit.sweep`` executor name (default:
    the profile's worker processes), ``executor_options`` its options (``labkit.sweep.make_executor``:
    a Ray address, GPUs per run, Slurm settings). ``dry_run`` prints the grid, its estimated cost (and,
    for Slurm, the sbatch file) and writes nothing; options are checked either way, before any run.
    """
    from labkit.experiments import base, costs
    from labkit.sweep import canonical_json, make_executor

    module, chosen, grid = _grid_of(experiment, profile)
    options = {k: v for k, v in (executor_options or {}).items() if v is not None}
    if options and executor is None:
        raise ValueError(f"{sorted(options)[0]} needs an executor; allowed: --executor ray or slurm")
    chosen_executor = None if executor is None else make_executor(
        executor, options, threads=chosen.run.threads, gpus=chosen.run.gpus, cost=module.cost)
    out_path = Path(out) if out else base.results_path(experiment, profile)
    cache_dir = Path(cache) if cache else base.CACHE_DIR / experiment / profile
    for config in grid:
        print(canonical_json(config))
    print(f"{len(grid)} runs of {experiment} at profile {profile}")
    if dry_run:
        print(costs.grid_cost(grid, getattr(module, "trained_records", None)).line())
        if hasattr(chosen_executor, "sbatch"):
            print(f"sbatch file of the job array (at most {len(grid)} jobs):")
            print(chosen_executor.sbatch(len(grid), cache_dir / "submitit"))
        return 0
    t0 = time.perf_counter()
    report = base.run_grid(grid, module.run, chosen.run, cache_dir, executor=chosen_executor, cost=module.cost)
    flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in options.items())
    command = base.regenerate_command(experiment, profile, out) + (f" --executor {executor}{flags}" if executor else "")
    meta = base.provenance(module.CHAPTER, profile, command, time.perf_counter() - t0, chosen.run, executor)
    path = base.save_results(out_path, report.records, meta)
    summary = getattr(module, "summary_table", None)
    if summary is not None:
        print(summary(report.records).to_string())
    print(f"wrote {path} ({report.ran} runs, {report.reused} reused, {report.wall_time:.0f} s)")
    return 0


def select_configs(grid: list[dict[str, Any]], where: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The configs of ``grid`` whose keys equal every ``where`` value (a key no config has is an error)."""
    known = sorted({k for c in grid for k in c})
    for key in where:
        if key not in known:
            raise ValueError(f"where key {key!r} is not valid; allowed: {', '.join(known)}")
    return [c for c in grid if all(c.get(k) == v for k, v in where.items())]


def models_folder(experiment: str, profile: str) -> Path:
    """Where ``python -m labkit models`` writes an experiment's trained models: ``results/models/<experiment>_
    <profile>``."""
    from labkit.experiments import base

    return base.RESULTS_DIR / "models" / f"{experiment}_{profile.replace('-', '_')}"


def models_path(config: Mapping[str, Any], folder: str | Path) -> Path:
    """The JSON file of ``config``'s saved model in ``folder`` (``models.trained_paths``)."""
    from labkit.experiments.models import trained_paths

    return trained_paths(config, folder)[1]


def _train_and_save(experiment: str, config: dict[str, Any], folder: str, command: str, threads: int) -> str:
    """One worker's job for ``models_command`` (top level, so a spawned process can import it)."""
    import torch

    from labkit.experiments.models import save_trained

    torch.set_num_threads(threads)
    result, model = load(experiment).run.run_with_model(dict(config))
    return str(save_trained(model, config, folder, result, command))


def models_command(experiment: str, profile: str, where: Mapping[str, Any] | None = None,
                   out: str | None = None) -> int:
    """``python -m labkit models EXPERIMENT``: train the profile's grid configs that match ``where``
    (key → value, e.g. ``{"exposures": 1000, "seed": 0}``) and keep each trained model as a file
    (``labkit.experiments.models.save_trained``) in ``out`` (default :func:`models_folder`), on the
    profile's worker processes. Same config and seed, so the same recipe and data as the sweep's run; each
    model trains on its own (the sweep may batch seeds), so it equals the sweep's only up to float rounding
    grown along training. A model already in ``out`` that still loads (``models.load_trained``) is kept,
    so the command resumes."""
    import json
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from labkit.experiments.models import ModelFileError, load_trained

    module, chosen, grid = _grid_of(experiment, profile)
    if not hasattr(module.run, "run_with_model"):
        raise ValueError(f"experiment={experiment!r} does not keep its models; allowed: " + ", ".join(
            n for n in sweepable() if hasattr(load(n).run, "run_with_model")))
    where = dict(where or {})
    configs = select_configs(grid, where)
    if not configs:
        raise ValueError(f"where={where!r} matches no config of {experiment} at profile {profile}")
    folder = Path(out) if out else models_folder(experiment, profile)
    flags = "".join(f" --where {k}={json.dumps(v)}" for k, v in where.items())
    command = (f".venv/bin/python -m labkit models {experiment} --profile {profile}{flags}"
               + (f" --out {out}" if out else ""))
    todo = []
    for c in configs:  # a model already saved (and still loadable) is kept: the command resumes
        try:
            load_trained(c, folder)
            print(f"kept {models_path(c, folder)}", flush=True)
        except ModelFileError:
            todo.append(c)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max(1, min(chosen.run.processes, len(todo))), mp_context=get_context("spawn")) as pool:
        jobs = [pool.submit(_train_and_save, experiment, c, str(folder), command, chosen.run.threads)
                for c in sorted(todo, key=module.cost, reverse=True)]
        for job in jobs:
            print(f"wrote {job.result()}", flush=True)
    print(f"{len(todo)} models of {experiment} ({profile}) trained, {len(configs) - len(todo)} kept, in {folder}, "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


def train_command(experiment: str, profile: str = "full", index: int | None = None, config: str | None = None,
                  cache: str | None = None, save_model: str | None = None, backend: str = "auto") -> int:
    """``python -m labkit train EXPERIMENT``: one run of a profile's grid, here or, under ``torchrun
    --nproc_per_node=N``, on N processes that train its model together (DistributedDataParallel,
    ``labkit.distributed``: gloo on CPUs, NCCL on GPUs with ``backend="auto"``).

    The run: ``index`` (its line in ``sweep --dry-run``'s list, from 0) or ``config`` (a JSON object, e.g.
    such a line). Rank 0 stores the result in the sweep's cache (default ``_build/sweeps/<experiment>/
    <profile>``, so a later ``sweep`` of the profile reuses it), prints it, and with ``save_model``
    writes the trained weights (safetensors; for run functions that keep their model, like chapter 2's).
    """
    import json

    from labkit import distributed
    from labkit.checkpoint import save_weights
    from labkit.checks import check_choice, check_int
    from labkit.experiments import base
    from labkit.sweep import canonical_json, save_result

    module, _, grid = _grid_of(experiment, profile)
    check_choice("backend", backend, distributed.BACKENDS)
    if (index is None) == (config is None):
        raise ValueError("give exactly one of index and config; allowed: --index I (0 to "
                         f"{len(grid) - 1}, the runs of sweep --dry-run) or --config JSON")
    if index is not None:
        chosen = grid[check_int("index", index, 0, len(grid) - 1)]
    else:
        try:
            chosen = json.loads(config)
        except json.JSONDecodeError:
            chosen = None
        if not isinstance(chosen, dict):
            raise ValueError(f"config={config!r} is not valid; allowed: a JSON object (a line of sweep --dry-run)")
    if save_model is not None and not hasattr(module.run, "run_with_model"):
        raise ValueError(f"save_model is not available for experiment={experiment!r}; allowed: experiments whose "
                         "run function keeps its model (" + ", ".join(
                             n for n in sweepable() if hasattr(load(n).run, "run_with_model")) + ")")
    cache_dir = Path(cache) if cache else base.CACHE_DIR / experiment / profile
    place = distributed.init(backend)
    try:
        t0 = time.perf_counter()
        if save_model is not None:
            result, model = module.run.run_with_model(dict(chosen))
        else:
            result, model = module.run(dict(chosen)), None
        if place.main:
            record = save_result(cache_dir, chosen, result, time.perf_counter() - t0)
            if model is not None:
                save_weights(model, save_model)
            scalars = {k: v for k, v in record["result"].items() if not isinstance(v, dict | list)}
            print(canonical_json(scalars))
            print(f"trained {canonical_json(chosen)} on {place.size} process(es) in {time.perf_counter() - t0:.1f} s; "
                  f"stored in {cache_dir}" + (f", weights in {save_model}" if model is not None else ""))
    finally:
        distributed.shutdown()
    return 0
