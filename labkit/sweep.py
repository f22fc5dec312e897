"""Grids of runs whose results are cached on disk, one JSON file per configuration.

Why: capacity experiments are sweeps of many small trainings (model size × N × exposures × seed) that
take minutes to hours; a notebook re-run, a crash or a kill must never redo finished work nor, worse,
plot a half-written result. So each run's result is a JSON file named by a stable hash of its config,
written atomically (temp file in the same directory + os.replace), and validated when read: a file
that does not parse, lacks keys, has another schema version or does not hash to its own name and
config is treated as missing and rerun.

Generic on purpose: ``run_fn(config: dict) -> dict`` of JSON-serialisable results; what a config
means is up to the caller. The seam for faster execution (batching same-shape runs, several
processes) is ``executor(pending, run_one)``, which must yield one stored record per pending config,
in any order, as runs finish. ``run_one`` is a picklable ``RunAndSave`` (when ``run_fn`` is
picklable) that runs one config and stores its result, so a process-pool executor can simply
``yield from pool.imap_unordered(run_one, pending)``; a batching executor may instead train several
configs at once and store each result with ``save_result``; an executor on a cluster (Ray, Slurm:
``ray_executor``, ``slurm_executor``) runs units of work remotely and stores what comes back on the
driver. The sweep itself only collects the records (progress bar, checks that none is missing).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labkit.checks import check_int
from labkit.runtime import atomic_write_bytes

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema", "hash", "config", "result", "meta")

RunFn = Callable[[dict[str, Any]], Mapping[str, Any]]
Executor = Callable[[list[dict[str, Any]], Callable[[dict[str, Any]], dict[str, Any]]], Iterable[dict[str, Any]]]


def canonical_json(config: Mapping[str, Any]) -> str:
    """The config as sorted-keys compact JSON: the text its hash is taken of (tuples become lists).

    Note ``1`` and ``1.0`` are different configs here, as they are different JSON.
    """
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable)


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit id of a config: sha256 of its canonical JSON, truncated."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    """Make tensors and NumPy values JSON-ready (results often carry them by accident)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "tolist"):  # NumPy arrays and scalars
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def result_path(results_dir: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    return Path(results_dir) / f"{config_hash(config)}.json"


def _labkit_version() -> str:
    try:
        import labkit

        return str(labkit.__version__)
    except (ImportError, AttributeError):
        return "unknown"


def _meta(wall_time: float, result: Mapping[str, Any]) -> dict[str, Any]:
    from labkit.runtime import resolve_device

    return {
        "wall_time": wall_time,
        "device": str(result.get("device", resolve_device("auto"))),
        "torch": torch.__version__,
        "labkit": _labkit_version(),
        "python": platform.python_version(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def save_result(
    results_dir: str | os.PathLike, config: Mapping[str, Any], result: Mapping[str, Any], wall_time: float
) -> dict[str, Any]:
    """Store one run's result atomically and return the record as it will be loaded."""
    config = json.loads(canonical_json(config))  # what load_results will see (tuples → lists)
    record = {
        "schema": SCHEMA_VERSION,
        "hash": config_hash(config),
        "config": config,
        "result": nan_to_none(json.loads(json.dumps(dict(result), default=_jsonable))),
        "meta": _meta(wall_time, result),
    }
    text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False)
    atomic_write_bytes(result_path(results_dir, config), text.encode("utf-8"))
    return record


def read_result(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record stored at ``path``, or None when it is missing, partial, corrupt or of another schema."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or any(key not in record for key in REQUIRED_KEYS):
        return None
    if record["schema"] != SCHEMA_VERSION or not isinstance(record["config"], dict):
        return None
    if not isinstance(record["result"], dict) or not isinstance(record["meta"], dict):
        return None
    if record["hash"] != path.stem or config_hash(record["config"]) != path.stem:
        return None
    return record


def load_results(results_dir: str | os.PathLike, grid: Iterable[Mapping[str, Any]] | None = None) -> list[dict]:
    """Valid records in ``results_dir``: of ``grid``'s configs in grid order (missing ones left out), or
    all of them sorted by file name. Invalid files are never returned (see ``read_result``)."""
    if grid is not None:
        records = (read_result(result_path(results_dir, config)) for config in _unique(grid))
        return [r for r in records if r is not None]
    paths = sorted(Path(results_dir).glob("*.json")) if Path(results_dir).is_dir() else []
    return [r for r in map(read_result, paths) if r is not None]


def _unique(grid: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for config in grid:
        seen.setdefault(config_hash(config), dict(config))
    return list(seen.values())


@dataclass(frozen=True)
class RunAndSave:
    """Run one config and store its result; a plain object (not a closure) so it can go to other processes."""

    run_fn: RunFn
    results_dir: str | os.PathLike

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        ((config, result, seconds),) = compute_unit([config], self.run_fn)
        return save_result(self.results_dir, config, result, seconds)


def serial_executor(
    pending: list[dict[str, Any]], run_one: Callable[[dict[str, Any]], dict[str, Any]]
) -> Iterable[dict[str, Any]]:
    """Run pending configs one after the other in this process, yielding each stored record."""
    for config in pending:
        yield run_one(config)


# --------------------------------------------------------------------------------------------------
# Faster executors: batching same-shape runs, running in parallel processes
#
# A run function may offer two optional methods (labkit.batched.BatchableRun implements both):
#   shape_key(config) -> hashable or None   runs with equal keys can train together (None: never batch)
#   run_many(configs) -> list of results     train configs of one key at once, one result per config
# Executors call them through ``run_one.run_fn`` (a RunAndSave) and store each result with save_result,
# so a batched run leaves exactly the files a serial one would. Run functions without them run singly.
# --------------------------------------------------------------------------------------------------

MAX_BATCH = 8  # models trained together at most: beyond ~8 tiny models a CPU step gains nothing more


def _plan(pending: list[dict[str, Any]], run_one: Callable[[dict[str, Any]], dict[str, Any]], batch: bool,
          max_batch: int, units: int = 1) -> list[list[dict[str, Any]]]:
    """Split pending configs into units of work: groups of one shape key (≤ max_batch) or single runs.

    Groups keep the grid order of their first config; with ``units`` > 1 the largest groups are
    halved until there are at least that many units: parallel workers get two units each, so the
    pool can even out units of unequal cost and no worker idles while another trains a batch that
    could have been shared.
    """
    run_fn = getattr(run_one, "run_fn", None)
    key_fn = getattr(run_fn, "shape_key", None)
    if not batch or key_fn is None or getattr(run_fn, "run_many", None) is None:
        return [[c] for c in pending]
    groups: dict[Any, list[dict[str, Any]]] = {}
    plan: list[list[dict[str, Any]]] = []
    for config in pending:
        key = key_fn(dict(config))
        if key is None:
            plan.append([config])
        elif key in groups:
            groups[key].append(config)
        else:
            groups[key] = [config]
            plan.append(groups[key])  # filled in place as configs of the key arrive
    split = []
    for group in plan:
        n_chunks = -(-len(group) // max_batch)
        size = -(-len(group) // n_chunks)
        split.extend(group[i : i + size] for i in range(0, len(group), size))
    while split and len(split) < units and max(map(len, split)) > 1:
        big = max(range(len(split)), key=lambda i: len(split[i]))
        group = split.pop(big)
        split[big:big] = [group[: len(group) // 2], group[len(group) // 2 :]]
    return split


def compute_unit(unit: list[dict[str, Any]], run_fn: RunFn) -> list[tuple[dict[str, Any], Mapping[str, Any], float]]:
    """Run one unit of work and return ``(config, result, seconds)`` per config, storing nothing: a single
    config through ``run_fn``, a group through ``run_fn.run_many`` (each run's seconds are the group's
    divided by its size). Remote executors run this on a worker and store the results on the driver."""
    t0 = time.perf_counter()
    if len(unit) == 1:
        return [(unit[0], run_fn(dict(unit[0])), time.perf_counter() - t0)]
    results = run_fn.run_many([dict(c) for c in unit])
    if len(results) != len(unit):
        raise RuntimeError(f"run_many returned {len(results)} results for {len(unit)} configs")
    share = (time.perf_counter() - t0) / len(unit)
    return [(c, r, share) for c, r in zip(unit, results, strict=True)]


def _run_unit(unit: list[dict[str, Any]], run_one: Callable[[dict[str, Any]], dict[str, Any]]) -> list[dict]:
    """Run one unit of work and store its results: a single config through run_one, a group through
    ``compute_unit``."""
    if len(unit) == 1:
        return [run_one(unit[0])]
    return [save_result(run_one.results_dir, c, r, w) for c, r, w in compute_unit(unit, run_one.run_fn)]


def _by_cost(plan: list[list[dict[str, Any]]], cost: Callable[[dict[str, Any]], float] | None) -> None:
    """Order units of work most expensive first (a pool finishes soonest when its longest runs start
    early): by ``cost`` summed over a unit, else by size; stable, so grid order among equals."""
    if cost is None:
        plan.sort(key=len, reverse=True)
    else:
        plan.sort(key=lambda unit: sum(cost(c) for c in unit), reverse=True)


def batched_executor(max_batch: int = MAX_BATCH) -> Executor:
    """An executor that trains pending configs of one shape key together (``run_fn.run_many``), in this
    process; configs without a key, or of a run function without ``shape_key``/``run_many``, run singly.

    Measured on the 2-core lab CPU (benchmarks/bench_sweep.py): batching pays where a step is small
    (tiny models, short records, small batches), and is about even once a model's matmuls are
    compute-bound; it never replaces using both cores (see ``process_executor``).
    """

    def execute(pending: list[dict[str, Any]], run_one: Callable[[dict[str, Any]], dict[str, Any]]):
        for unit in _plan(pending, run_one, True, max_batch):
            yield from _run_unit(unit, run_one)

    return execute


def default_workers() -> int:
    """CPU cores this process may use (the sweep's natural number of 1-thread workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_worker_run_one: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def _init_worker(run_one: Callable[[dict[str, Any]], dict[str, Any]], threads: int) -> None:
    """Per worker process, once: its share of the CPU and the run function (pickled once, not per task)."""
    global _worker_run_one
    if threads > 0:
        torch.set_num_threads(threads)
    from labkit.batched import keep_freed_memory

    keep_freed_memory()
    _worker_run_one = run_one


def _worker_unit(unit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert _worker_run_one is not None, "worker not initialised"
    return _run_unit(unit, _worker_run_one)


def shippable(run_one: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """Whether a worker process can rebuild ``run_one``: it pickles, and nothing in it lives only in
    an interactive ``__main__`` (a notebook cell), which a spawned process cannot import."""
    import pickle

    try:
        pickle.dumps(run_one)
    except Exception:  # pickling errors are of many types (PicklingError, TypeError, AttributeError)
        return False
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__file__", None) is None:
        run_fn = getattr(run_one, "run_fn", run_one)
        owner = run_fn if hasattr(run_fn, "__qualname__") else type(run_fn)
        if getattr(owner, "__module__", None) == "__main__":
            return False
    return True


def _context(start_method: str | None, run_one: Callable[[dict[str, Any]], dict[str, Any]]):
    """A multiprocessing context whose workers start fast and safely.

    ``forkserver`` (default where available): a clean server process imports torch and labkit once
    and forks each worker from there: ~1.7 s for the first pool of a session, ~0.1 s for later ones,
    against ~3.5 s for every ``spawn`` pool on the 2-core lab machine. It also preloads
    ``torch._dynamo``, which the first ``torch.optim`` optimizer of a process imports (~1.9 s CPU,
    once per process: every worker would pay it on its first run). Plain ``fork`` of this process
    is not offered: forking after torch's OpenMP threads have run hangs the child (seen with torch 2.13).
    """
    import multiprocessing

    if start_method is None:
        start_method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        run_fn = getattr(run_one, "run_fn", run_one)
        module = getattr(run_fn, "__module__", None) or type(run_fn).__module__
        preload = ["torch", "torch._dynamo", "labkit.sweep", "labkit.batched"]  # the optimizer imports dynamo
        # not the module run as ``python -m``: each worker re-runs it as __mp_main__, which warns if preloaded
        main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if module and not module.startswith("__") and module != getattr(main_spec, "name", None):
            preload.append(module)
        ctx.set_forkserver_preload(preload)
    return ctx


def process_executor(workers: int | None = None, threads: int = 1, batch: bool = True,
                     max_batch: int = MAX_BATCH, start_method: str | None = None,
                     cost: Callable[[dict[str, Any]], float] | None = None) -> Executor:
    """An executor running units of work (single runs, or same-shape groups when ``batch``) in
    ``workers`` processes with ``threads`` torch threads each; default: one 1-thread worker per core.

    Why processes of one thread: a tiny model's step is a chain of small kernels that two threads
    share badly, so two 1-thread jobs beat one 2-thread job on the lab's 2-core CPU (measured by
    benchmarks/bench_sweep.py, benchmarks/README.md). Groups are split into about two units per worker,
    which start largest first. Workers come from a fresh interpreter (see ``_context``), so ``run_fn``
    must be importable by them: defined in a module (or a script run as ``__main__``), not in a
    notebook cell; see ``shippable``. One pending unit runs in this process, without a pool.
    ``cost(config)``: a run's relative cost; units then start most expensive first (a pool finishes
    soonest when its longest runs start early), instead of largest group first.
    """
    workers = default_workers() if workers is None else workers

    def execute(pending: list[dict[str, Any]], run_one: Callable[[dict[str, Any]], dict[str, Any]]):
        plan = _plan(pending, run_one, batch, max_batch, units=2 * workers)
        if workers <= 1 or len(plan) <= 1:
            for unit in plan:
                yield from _run_unit(unit, run_one)
            return
        if not shippable(run_one):
            raise ValueError("the run function cannot be sent to worker processes (define it in a module, not a "
                             "notebook cell, and make it picklable) or use executor='batched' / serial_executor")
        _by_cost(plan, cost)
        ctx = _context(start_method, run_one)
        pool = ctx.Pool(min(workers, len(plan)), initializer=_init_worker, initargs=(run_one, threads))
        try:
            for records in pool.imap_unordered(_worker_unit, plan):
                yield from records
            pool.close()
        except BaseException:  # an error, Ctrl-C, or the consumer stopped early: stop the workers now
            pool.terminate()
            raise
        finally:
            pool.join()

    return execute


def auto_executor(workers: int | None = None, max_batch: int = MAX_BATCH) -> Executor:
    """The fastest executor that applies: parallel 1-thread processes (batching same-shape runs inside
    them) when there are several cores and the run function can be shipped to workers, else
    batching in this process. Why this default: see ``process_executor`` and ``batched_executor``.
    With a GPU, batching in this process: one process keeps the GPU busiest with large batched kernels.
    """
    workers = default_workers() if workers is None else workers

    def execute(pending: list[dict[str, Any]], run_one: Callable[[dict[str, Any]], dict[str, Any]]):
        if workers > 1 and len(pending) > 1 and not torch.cuda.is_available() and shippable(run_one):
            yield from process_executor(workers, 1, True, max_batch)(pending, run_one)
        else:
            yield from batched_executor(max_batch)(pending, run_one)

    return execute


# --------------------------------------------------------------------------------------------------
# Executors on distributed engines (labkit.cluster): Ray tasks, Slurm jobs
#
# The same units of work as above (single runs, or same-shape groups) run remotely through
# ``RemoteUnit``, which returns its results instead of storing them; the driver stores each record as it
# arrives, in the same cache and with the same ``save_result`` as every executor, so workers need no
# access to the cache and a sweep can move between a cluster and a laptop mid-way.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteUnit:
    """What a Ray task or a Slurm job runs: one unit of work with ``threads`` torch threads (its CPUs)."""

    run_fn: RunFn
    threads: int = 1

    def __call__(self, unit: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Mapping[str, Any], float]]:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        from labkit.batched import keep_freed_memory

        keep_freed_memory()
        return compute_unit(unit, self.run_fn)


def _remote(engine: Callable[[RemoteUnit, list[list[dict[str, Any]]], Path], Iterable[tuple[int, list]]],
            threads: int, batch: bool, max_batch: int, cost: Callable[[dict[str, Any]], float] | None) -> Executor:
    """An executor that plans units of work (``_plan``, most expensive first), has ``engine(unit_fn,
    units, results_dir)`` run them remotely and stores every returned result on the driver."""

    def execute(pending: list[dict[str, Any]], run_one: Callable[[dict[str, Any]], dict[str, Any]]):
        if not isinstance(run_one, RunAndSave):
            raise ValueError("remote executors need run_sweep's RunAndSave (a run function and a results folder)")
        plan = _plan(pending, run_one, batch, max_batch)
        if not plan:
            return  # everything cached: no need to reach a cluster
        _by_cost(plan, cost)
        for _, triples in engine(RemoteUnit(run_one.run_fn, threads), plan, Path(run_one.results_dir)):
            for config, result, seconds in triples:
                yield save_result(run_one.results_dir, config, result, seconds)

    return execute


def ray_executor(address: str | None = None, gpus: float = 0.0, threads: int = 1, batch: bool = True,
                 max_batch: int = MAX_BATCH, cost: Callable[[dict[str, Any]], float] | None = None) -> Executor:
    """An executor running each unit of work (a run, or a group of same-shape runs when ``batch``) as one
    Ray task of ``threads`` CPUs and ``gpus`` GPUs, on the cluster at ``address`` (``labkit.cluster.
    ray_session``: None/'local' starts Ray on this machine, 'auto' or HOST:PORT joins a running one).

    Results stream back to this process, which stores each as it arrives; workers need labkit installed
    but no access to the cache. Ray ships the run function with cloudpickle, so one defined in a notebook
    cell works too. Checked here, before anything runs: the address (its form, and that a cluster
    answers there), Ray's install, the numbers.
    """
    from labkit import cluster

    cluster.check_ray_address(address)
    gpus = cluster.check_gpus(gpus)
    threads = check_int("threads", threads, 1)
    cluster.check_reachable(address)

    def engine(unit_fn: RemoteUnit, units: list[list[dict[str, Any]]], results_dir: Path):
        return cluster.ray_map(unit_fn, units, cpus=threads, gpus=gpus, address=address)

    return _remote(engine, threads, batch, max_batch, cost)


def slurm_executor(options: Any = None, threads: int = 1, gpus: float = 0.0, batch: bool = True,
                   max_batch: int = MAX_BATCH, cost: Callable[[dict[str, Any]], float] | None = None) -> Executor:
    """An executor submitting each unit of work (a run, or a group of same-shape runs when ``batch``) as one
    Slurm job through submitit, all of them as one job array; ``options``: a ``labkit.cluster.SlurmOptions``
    (partition, time, GPUs, ...; its ``cluster='local'`` runs the jobs as processes here). CPUs and GPUs
    per job that the options leave unset come from ``threads`` and ``gpus`` (the profile's).

    Results come back through submitit's folder (default: ``submitit/`` inside the sweep's cache, which
    the nodes must share) and are stored by this process as jobs finish; keep it running (tmux, or a
    small CPU job of its own) until the sweep ends. ``execute.sbatch(jobs, folder)`` gives the sbatch
    file it would submit.
    """
    import dataclasses

    from labkit import cluster

    options = cluster.SlurmOptions() if options is None else options
    if not isinstance(options, cluster.SlurmOptions):
        raise ValueError(f"options={options!r} is not valid; allowed: a labkit.cluster.SlurmOptions")
    job_gpus = options.gpus if options.gpus is not None else math.ceil(cluster.check_gpus(gpus))
    options = dataclasses.replace(options, cpus=options.cpus or check_int("threads", threads, 1), gpus=job_gpus)
    cluster.require("submitit", "slurm")

    def engine(unit_fn: RemoteUnit, units: list[list[dict[str, Any]]], results_dir: Path):
        folder = Path(options.folder) if options.folder else results_dir / "submitit"
        return cluster.slurm_map(unit_fn, units, options, folder)

    execute = _remote(engine, options.cpus, batch, max_batch, cost)
    execute.sbatch = lambda jobs, folder: cluster.sbatch_script(options, folder, jobs)  # type: ignore[attr-defined]
    return execute


EXECUTORS: dict[str, Callable[..., Executor]] = {
    "serial": lambda: serial_executor,
    "batched": batched_executor,
    "processes": process_executor,
    "auto": auto_executor,
    "ray": ray_executor,
    "slurm": slurm_executor,
}
#: the command-line options each executor takes (``make_executor``); the others take none
EXECUTOR_OPTIONS: dict[str, tuple[str, ...]] = {
    "ray": ("address", "gpus"),
    "slurm": ("gpus", "partition", "time", "slurm_config", "slurm_cluster"),
}


def make_executor(name: str, options: Mapping[str, Any] | None = None, *, threads: int = 1, gpus: float = 0.0,
                  cost: Callable[[dict[str, Any]], float] | None = None) -> Executor:
    """The executor ``name`` of ``EXECUTORS`` with a user's ``options`` (``EXECUTOR_OPTIONS``; None: not
    given) over a profile's ``threads`` per run, ``gpus`` per run and ``cost``, where the executor uses them.

    Why checked here: every option names the executor it belongs to, so ``--address`` with
    ``--executor serial`` fails before anything runs instead of being ignored.
    """
    if name not in EXECUTORS:
        raise ValueError(f"executor={name!r} is not valid; allowed: {', '.join(map(repr, EXECUTORS))}")
    given = {k: v for k, v in (options or {}).items() if v is not None}
    allowed = EXECUTOR_OPTIONS.get(name, ())
    for key in given:
        if key not in allowed:
            owners = [n for n, keys in EXECUTOR_OPTIONS.items() if key in keys]
            raise ValueError(f"{key} is an option of executor {' or '.join(map(repr, owners)) or 'none'}, not of "
                             f"executor={name!r}; allowed for {name!r}: {', '.join(allowed) or 'no options'}")
    if name == "ray":
        return ray_executor(given.get("address"), given.get("gpus", gpus), threads, cost=cost)
    if name == "slurm":
        from labkit.cluster import SlurmOptions

        slurm = SlurmOptions.load(given.get("slurm_config"), partition=given.get("partition"),
                                  time=given.get("time"), gpus=given.get("gpus"), cluster=given.get("slurm_cluster"))
        return slurm_executor(slurm, threads, gpus, cost=cost)
    if name == "processes":
        return process_executor(threads=threads, cost=cost)
    return EXECUTORS[name]()


def grid_product(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of the axes, e.g. ``grid_product(d_model=[16, 32], seed=[0, 1])`` → 4 configs."""
    configs: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        configs = [{**c, name: v} for c in configs for v in values]
    return configs


@dataclass
class SweepReport:
    """What ``run_sweep`` did: the records of the grid (grid order) and how many runs it executed."""

    records: list[dict[str, Any]]
    ran: int
    reused: int
    wall_time: float = 0.0


def run_sweep(
    grid: Iterable[Mapping[str, Any]],
    run_fn: RunFn,
    results_dir: str | os.PathLike,
    *,
    progress: bool = True,
    rerun: bool = False,
    executor: Executor | str | None = None,
) -> SweepReport:
    """Run ``run_fn`` on every config of ``grid`` that has no valid result yet; return all records.

    Finished runs are read from ``results_dir`` (``rerun=True`` ignores them); an interrupted sweep
    resumes where it stopped, since each result is stored as soon as its run ends. An exception in
    ``run_fn`` stops the sweep (results stored so far stay). Records are dicts with ``config``,
    ``result``, ``meta`` (wall time, device, torch and labkit versions), ``hash`` and ``schema``.
    ``executor``: a function ``(pending, run_one) -> records`` or one of ``"auto"`` (the default, see
    ``auto_executor``: 1-thread worker processes on a multi-core CPU, same-shape runs of a batchable
    run function trained together), ``"serial"`` (one after the other in this process: for run
    functions with side effects, and bit-identical reruns; batched results equal separate ones only
    up to float rounding), ``"batched"``, ``"processes"``, ``"ray"`` and ``"slurm"`` (their defaults: a
    local Ray instance, sbatch jobs; ``make_executor`` gives them options).
    """
    from tqdm.auto import tqdm

    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise ValueError(f"executor={executor!r} is not valid; allowed: {', '.join(map(repr, EXECUTORS))}")
        executor = EXECUTORS[executor]()
    configs = _unique(grid)
    done = {} if rerun else {config_hash(c): read_result(result_path(results_dir, c)) for c in configs}
    pending = [c for c in configs if done.get(config_hash(c)) is None]
    reused = len(configs) - len(pending)
    bar = tqdm(total=len(configs), initial=reused, disable=not progress, desc="sweep", unit="run")

    t0 = time.perf_counter()
    try:
        for record in (executor or auto_executor())(pending, RunAndSave(run_fn, results_dir)):
            done[record["hash"]] = record
            bar.update(1)
    finally:
        bar.close()
    missing = [c for c in configs if done.get(config_hash(c)) is None]
    if missing:
        raise RuntimeError(f"the executor left {len(missing)} configs without a result, e.g. {missing[0]}")
    return SweepReport([done[config_hash(c)] for c in configs], len(pending), reused, time.perf_counter() - t0)


class Sweep:
    """A results directory bound to a run function: ``Sweep(root, run_fn).run(grid)`` / ``.load(grid)``."""

    def __init__(self, root_dir: str | os.PathLike, run_fn: RunFn):
        self.root_dir = Path(root_dir)
        self.run_fn = run_fn

    def run(self, grid: Iterable[Mapping[str, Any]], **kwargs: Any) -> SweepReport:
        return run_sweep(grid, self.run_fn, self.root_dir, **kwargs)

    def load(self, grid: Iterable[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
        return load_results(self.root_dir, grid)

    def pending(self, grid: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Configs of ``grid`` without a valid result (what ``run`` would execute)."""
        return [c for c in _unique(grid) if read_result(result_path(self.root_dir, c)) is None]


def nan_to_none(value: Any) -> Any:
    """Replace NaN/inf floats by None, recursively: results are stored as strict JSON, which has no NaN
    (browsers and most non-Python readers reject Python's ``NaN`` extension)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    return value
