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
configs at once and store each result with ``save_result``. The sweep itself only collects the records
(progress bar, checks that none is missing).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

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
    path = result_path(results_dir, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, sort_keys=True, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
        t0 = time.perf_counter()
        result = self.run_fn(dict(config))
        return save_result(self.results_dir, config, result, time.perf_counter() - t0)


def serial_executor(
    pending: list[dict[str, Any]], run_one: Callable[[dict[str, Any]], dict[str, Any]]
) -> Iterable[dict[str, Any]]:
    """Run pending configs one after the other in this process, yielding each stored record."""
    for config in pending:
        yield run_one(config)


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
    executor: Executor | None = None,
) -> SweepReport:
    """Run ``run_fn`` on every config of ``grid`` that has no valid result yet; return all records.

    Finished runs are read from ``results_dir`` (``rerun=True`` ignores them); an interrupted sweep
    resumes where it stopped, since each result is stored as soon as its run ends. An exception in
    ``run_fn`` stops the sweep (results stored so far stay). Records are dicts with ``config``,
    ``result``, ``meta`` (wall time, device, torch and labkit versions), ``hash`` and ``schema``.
    """
    from tqdm.auto import tqdm

    configs = _unique(grid)
    done = {} if rerun else {config_hash(c): read_result(result_path(results_dir, c)) for c in configs}
    pending = [c for c in configs if done.get(config_hash(c)) is None]
    reused = len(configs) - len(pending)
    bar = tqdm(total=len(configs), initial=reused, disable=not progress, desc="sweep", unit="run")

    t0 = time.perf_counter()
    try:
        for record in (executor or serial_executor)(pending, RunAndSave(run_fn, results_dir)):
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
