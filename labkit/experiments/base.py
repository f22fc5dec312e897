"""What every chapter experiment shares: typed profiles, the sweep call, and precomputed results files.

A chapter's profiles are one typed ``Profile`` per scale, in three separate parts: ``sizes`` (what the
experiment measures: data, models, recipe, grid), ``run`` (how it uses the machine: processes and
threads, which never change a number), and ``expect`` (the thresholds the chapter's claim cell
asserts at that scale). ``quick`` is written out in full; ``smoke``, ``cpu-full`` and ``full`` are
written as changes to it (``derive``), so the scales cannot drift apart by accident.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from labkit.checks import check_int, check_like
from labkit.runtime import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "results"
CACHE_DIR = ROOT / "_build" / "sweeps"
PROFILE_ORDER = ("smoke", "quick", "cpu-full", "full")

SizesT = TypeVar("SizesT")
ExpectT = TypeVar("ExpectT")


@dataclass(frozen=True)
class Execution:
    """How a sweep uses the machine: ``processes`` worker processes of ``threads`` torch threads each
    (two 1-thread workers use a 2-core CPU best for the lab's tiny models; benchmarks/README.md); on a
    cluster (the ``ray`` and ``slurm`` executors) each run asks for ``threads`` CPUs and ``gpus`` GPUs
    (0: a CPU run; a fraction shares a GPU between Ray tasks)."""

    processes: int = 2
    threads: int = 1
    gpus: float = 0.0

    def __post_init__(self) -> None:
        check_int("processes", self.processes, 1)
        check_int("threads", self.threads, 1)
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int | float) or not 0 <= self.gpus < 1e6:
            raise ValueError(f"gpus={self.gpus!r} is not valid; allowed: a number >= 0 (GPUs per run)")


@dataclass(frozen=True)
class NoExpectations:
    """For chapters whose checks need no profile-dependent threshold."""


@dataclass(frozen=True)
class Profile(Generic[SizesT, ExpectT]):
    """One scale of a chapter: what it measures, how it runs, what its claim cell expects."""

    sizes: SizesT
    expect: ExpectT
    run: Execution = Execution()


def derive(base: Profile, **changes: Mapping[str, Any]) -> Profile:
    """``base`` with some fields of its parts changed: ``derive(QUICK, sizes={"N": 200}, run={...})``."""
    parts = {}
    for part, fields in changes.items():
        current = getattr(base, part)
        known = {f.name for f in dataclasses.fields(current)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"{part} field {unknown[0]!r} is not valid; allowed: {', '.join(sorted(known))}")
        parts[part] = dataclasses.replace(current, **fields)
    return dataclasses.replace(base, **parts)


def as_table_rows(profiles: Mapping[str, Profile]) -> list[dict[str, Any]]:
    """One row per (profile, part, field): what ``python -m labkit profiles`` prints."""
    rows = []
    for name, profile in profiles.items():
        for part in ("sizes", "run", "expect"):
            for f in dataclasses.fields(getattr(profile, part)):
                rows.append({"profile": name, "part": part, "field": f.name,
                             "value": getattr(getattr(profile, part), f.name)})
    return rows


# --------------------------------------------------------------------------------------------------
# Running a chapter's grid
# --------------------------------------------------------------------------------------------------


def run_grid(grid: Sequence[dict[str, Any]], run_fn: Callable[[dict[str, Any]], dict[str, Any]],
             execution: Execution, results_dir: str | os.PathLike | None = None, *, executor: Any = None,
             cost: Callable[[Mapping[str, Any]], float] | None = None, progress: bool = True, prefix: str = "sweep",
             executor_options: Mapping[str, Any] | None = None):
    """Run a chapter's grid through ``labkit.sweep.run_sweep``: a progress bar, one JSON file per run.

    ``results_dir`` None: a fresh temporary folder (everything runs); a folder: runs already stored
    there are reused, so an interrupted chapter resumes. ``executor`` (a name of ``labkit.sweep``'s
    executors, e.g. ``"ray"``, or an executor) overrides the profile's worker processes; a name gets
    the profile's threads and GPUs per run and ``executor_options`` (``labkit.sweep.make_executor``).
    """
    from labkit.sweep import make_executor, process_executor, run_sweep

    folder = Path(results_dir) if results_dir else Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    if executor is None:
        executor = process_executor(workers=execution.processes, threads=execution.threads, batch=True, cost=cost)
    elif isinstance(executor, str):
        executor = make_executor(executor, executor_options, threads=execution.threads, gpus=execution.gpus,
                                 cost=cost)
    return run_sweep(grid, run_fn, folder, executor=executor, progress=progress)


# --------------------------------------------------------------------------------------------------
# Precomputed results: results/<experiment>_<profile>.json
# --------------------------------------------------------------------------------------------------


def results_path(experiment: str, profile: str) -> Path:
    """Where the committed results of ``experiment`` at ``profile`` live."""
    return RESULTS_DIR / f"{experiment}_{profile.replace('-', '_')}.json"


def regenerate_command(experiment: str, profile: str, out: str | os.PathLike | None = None) -> str:
    """The command that regenerates a results file (printed by chapters next to the results)."""
    out = Path(out) if out else results_path(experiment, profile)
    rel = str(out.relative_to(ROOT)) if out.is_absolute() and out.is_relative_to(ROOT) else str(out)
    return f".venv/bin/python -m labkit sweep {experiment} --profile {profile} --out {rel}"


def provenance_line(results: Mapping[str, Any] | None, experiment: str, profile: str = "cpu-full") -> str:
    """One sentence on where an experiment's precomputed results come from (command, date, commit,
    machine, time), or, when they are absent, the command that makes them."""
    command = regenerate_command(experiment, profile)
    if results is None:
        name = results_path(experiment, profile).name
        return f"{name} is absent: regenerate it (on an idle machine) with\n  {command}"
    p = results["provenance"]
    runs = len(results["records"])
    return (f"precomputed ({p.get('profile', profile)}, {runs} runs): {p.get('command', command)}\n"
            f"finished {p.get('finished_at')} at commit {p.get('git_commit')}, {p.get('wall_time_s')} s on "
            f"{p.get('cpus')} CPUs ({p.get('processes')} processes), torch {p.get('torch')}")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(chapter: str, profile: str, command: str, wall_time: float, execution: Execution,
               executor: str | None = None) -> dict[str, Any]:
    """Where and how a results file was made (printed by the chapter beside the results); ``executor``:
    the sweep executor's name when one was chosen (None: the profile's worker processes)."""
    import torch

    import labkit

    return {"chapter": chapter, "profile": profile, "command": command, "wall_time_s": round(wall_time, 1),
            "executor": executor or "processes (the profile's)",
            "processes": execution.processes, "threads_per_process": execution.threads,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_commit": _git_commit(),
            "labkit": labkit.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def save_results(path: str | os.PathLike, records: Iterable[dict[str, Any]], meta: Mapping[str, Any]) -> Path:
    """Write ``{"provenance": meta, "records": records}`` atomically (strict JSON)."""
    path = Path(path)
    text = json.dumps({"provenance": dict(meta), "records": list(records)}, indent=1, sort_keys=True,
                      allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    return path


def load_results(path: str | os.PathLike) -> dict[str, Any] | None:
    """A results file's ``{"provenance", "records"}``, or None when it is absent or unreadable (a chapter
    still runs without its precomputed results)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list) or "provenance" not in data:
        return None
    return data


# --------------------------------------------------------------------------------------------------
# Choosing a profile
# --------------------------------------------------------------------------------------------------


def _coerce(name: str, value: Any, current: Any) -> Any:
    """``value`` for a field whose profile value is ``current`` (``check_like``); lists are accepted for
    tuples (papermill and the command line pass JSON-like values)."""
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    return check_like(name, value, current)


def select(profiles: Mapping[str, Profile], profile: str, owner: str, **overrides: Any) -> Profile:
    """Profile ``profile`` of ``profiles`` (``owner``: the chapter or experiment, for the error), with
    ``overrides`` (not None) replacing single fields of its ``sizes``.

    Errors name the parameter and the allowed values, because they surface as the one line a user
    sees after mistyping ``-p profile qiuck``.
    """
    allowed = [p for p in PROFILE_ORDER if p in profiles] + [p for p in profiles if p not in PROFILE_ORDER]
    if profile not in profiles:
        raise ValueError(f"profile={profile!r} is not valid for {owner}; allowed: {', '.join(allowed)}")
    chosen = profiles[profile]
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return chosen
    fields = {f.name: getattr(chosen.sizes, f.name) for f in dataclasses.fields(chosen.sizes)}
    for key in given:
        if key not in fields:
            raise ValueError(f"unknown size {key!r} for {owner}; allowed: {', '.join(sorted(fields))}")
    sizes = dataclasses.replace(chosen.sizes, **{k: _coerce(k, v, fields[k]) for k, v in given.items()})
    return dataclasses.replace(chosen, sizes=sizes)
