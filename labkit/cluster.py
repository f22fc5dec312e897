"""Running one function over many items on an existing distributed engine: Ray tasks or Slurm jobs.

Why a module of its own: a chapter's ``full`` profile is tens to hundreds of trainings at paper-like
sizes, more than one machine does in a day, and clusters already have schedulers. So the lab hands each
unit of work to one (Ray, or Slurm through submitit) instead of scheduling anything itself. This module
knows the engines (connecting, asking for CPUs and GPUs, submitting, collecting results as they finish,
cancelling what is left after an error or Ctrl-C) and nothing of sweeps: ``labkit.sweep``'s ``ray`` and
``slurm`` executors give it units of work and store what comes back, on the driver, in the same per-run
cache every executor writes (so a sweep interrupted on a cluster resumes on a laptop, and the other way).

Both engines are optional at import time: they are imported inside the functions that use them, so
``import labkit`` (or ``labkit.sweep``) never imports Ray or submitit, and a missing install is the lab's
one-line error naming the executor.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import Any

from labkit.checks import check_choice, check_int, invalid

RAY_ADDRESSES = ("'local' (start Ray on this machine, on 127.0.0.1)", "'auto' (the running cluster this machine "
                 "belongs to)", "HOST:PORT of a running Ray head (its GCS port, 6379 by default)")
SLURM_CLUSTERS = ("slurm", "local")
CONNECT_TIMEOUT_S = 5.0


def require(package: str, executor: str) -> ModuleType:
    """``import package``, or the lab's one-line error naming the executor that needs it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ValueError(f"executor={executor!r} needs the {package} package, which is not installed; allowed: "
                         f"install it (pip install -r requirements.txt pins it) or use executor 'serial', "
                         f"'processes' or 'auto'") from None


# --------------------------------------------------------------------------------------------------
# Ray
# --------------------------------------------------------------------------------------------------


def check_ray_address(address: str | None) -> str | None:
    """``address`` if Ray can be asked to connect to it: None or 'local' (start a local instance), 'auto',
    or HOST:PORT of a head this machine can join as a driver; else the lab's error listing what is
    allowed. (Ray's remote client, ``ray://``, needs the ``ray[client]`` extras, which the lab does not pin.)"""
    if address is None or address in ("local", "auto"):
        return address
    if not isinstance(address, str):
        raise invalid("address", address, "; ".join(RAY_ADDRESSES))
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", address)
    if match is None or not 1 <= int(match[2]) <= 65535:
        raise invalid("address", address, "; ".join(RAY_ADDRESSES))
    return address


def check_gpus(value: object) -> float:
    """GPUs per run as a number >= 0 (fractions share a GPU between Ray tasks); flags give text."""
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | float) or not 0 <= number < float("inf"):
        raise invalid("gpus", value, "a number >= 0 (GPUs per run; 0.25 packs four Ray tasks on a GPU)")
    return float(number)


def _reachable(address: str) -> None:
    """Fail in one line, within seconds, when nothing listens at HOST:PORT (Ray itself retries for minutes)."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"address={address!r} is not reachable ({reason}); allowed: "
                         + "; ".join(RAY_ADDRESSES)) from None


def _auto_address() -> str:
    """The address ``ray.init(address='auto')`` would use (RAY_ADDRESS, or the cluster started on this
    machine), checked for reachability; the lab's error when there is none."""
    from ray._private.services import canonicalize_bootstrap_address  # the resolver ray.init itself uses

    try:
        found = canonicalize_bootstrap_address("auto")
    except ConnectionError:
        found = None
    if not found:
        raise ValueError("address='auto' found no running Ray cluster (none started here with `ray start --head`, "
                         "RAY_ADDRESS unset); allowed: " + "; ".join(RAY_ADDRESSES))
    _reachable(found)
    return found


def check_reachable(address: str | None) -> None:
    """Fail in one line when ``address`` names a Ray cluster that cannot be reached (None and 'local'
    start one, so they always can): called by ``labkit.sweep.ray_executor`` before anything runs."""
    require("ray", "ray")
    if check_ray_address(address) == "auto":
        _auto_address()
    elif address not in (None, "local"):
        _reachable(address)


@contextmanager
def _loopback_only() -> Iterator[None]:
    """While a local Ray instance starts, make it listen on 127.0.0.1 only (what Ray does on macOS and
    Windows): a local instance serves this driver, so nothing else needs to reach its ports. Ray turns
    127.0.0.1 into the machine's network address unless its cluster mode is off; the flag is restored
    afterwards, since a driver that later joins a real cluster must announce its network address."""
    from ray._private import ray_constants

    name = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # read by the Ray processes started from here
    saved_env, saved_flag = os.environ.get(name), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[name], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved_env


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """The ``ray`` module, connected for the duration of the block.

    A connection the caller made (``ray.init`` in a notebook or a test) is reused as it is. Otherwise
    ``address`` None or 'local' starts a Ray instance on this machine (``num_cpus``: its CPUs, default
    all), bound to 127.0.0.1 and shut down at the end; 'auto' or HOST:PORT connects to a running cluster
    (checked first, so an unreachable one fails in seconds with one line, not after Ray's retries).
    """
    address = check_ray_address(address)
    ray = require("ray", "ray")
    if ray.is_initialized():
        yield ray
        return
    if address in (None, "local"):
        with _loopback_only():
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        target = _auto_address() if address == "auto" else address
        if address != "auto":
            _reachable(target)
        ray.init(address=target, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    """The body of every Ray task: ``fn`` arrives once per worker through the object store."""
    return fn(item)


def ray_map(fn: Callable[[Any], Any], items: Sequence[Any], *, cpus: float = 1, gpus: float = 0,
            address: str | None = None) -> Iterator[tuple[int, Any]]:
    """``(index, fn(item))`` for every item, as Ray tasks finish (completion order), one task per item
    asking for ``cpus`` CPUs and ``gpus`` GPUs (fractions allowed: 0.25 packs four tasks on a GPU).

    ``fn`` must be picklable (cloudpickle) and importable by the workers (labkit installed on every
    node). An exception in a task is raised here; tasks not yet finished are then cancelled.
    """
    if isinstance(cpus, bool) or not isinstance(cpus, int | float) or cpus <= 0:
        raise invalid("cpus", cpus, "a number > 0 (CPUs per Ray task)")
    gpus = check_gpus(gpus)
    with ray_session(address) as ray:
        have = ray.cluster_resources().get("GPU", 0)
        if gpus > have:
            raise ValueError(f"gpus={gpus:g} per run is more than the Ray cluster's {have:g} GPUs; allowed: "
                             f"0 to {have:g} (0 trains on CPUs)")
        task = ray.remote(num_cpus=cpus, num_gpus=gpus)(_call)
        fn_ref = ray.put(fn)
        running = {task.remote(fn_ref, item): i for i, item in enumerate(items)}
        try:
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    yield running.pop(ref), ray.get(ref)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)


# --------------------------------------------------------------------------------------------------
# Slurm, through submitit
# --------------------------------------------------------------------------------------------------

_SLURM_TIME = re.compile(r"(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?")
TIME_ALLOWED = "minutes (a whole number) or Slurm's MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS"


def parse_time(value: object) -> int:
    """Minutes of a Slurm time limit: an int, or text in Slurm's formats (rounded up to whole minutes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return check_int("time", value, 1)
    match = _SLURM_TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise invalid("time", value, TIME_ALLOWED)
    d, a, b, c = (int(match[k]) if match[k] is not None else None for k in "dabc")
    if d is None:  # minutes | MM:SS | HH:MM:SS
        seconds = a * 60 if b is None else a * 60 + b if c is None else a * 3600 + b * 60 + c
    else:  # D-HH | D-HH:MM | D-HH:MM:SS
        seconds = d * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    if seconds <= 0:
        raise invalid("time", value, TIME_ALLOWED + ", above zero")
    return -(-seconds // 60)


def _whole(name: str, value: object, low: int) -> int:
    """An int from a flag's text or a config file's number."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    return check_int(name, value, low)


@dataclass(frozen=True)
class SlurmOptions:
    """What every Slurm job of a sweep asks for (``#SBATCH`` lines), from flags or a config file.

    ``time``: minutes per job (or Slurm's time formats); ``gpus`` and ``cpus``: per job (the job's torch
    threads are its CPUs; None: what the sweep's profile says); ``mem_gb``: memory per job; ``setup``:
    shell lines run before the job (``module load ...``, ``source .venv/bin/activate``); ``parallel``:
    jobs running at once (Slurm's array limit; with ``cluster='local'``, processes on this machine,
    default: one per ``cpus`` of its cores);
    ``folder``: logs and pickles, on a filesystem the nodes share (default: ``submitit/`` in the sweep's
    cache); ``extra``: any other sbatch option, e.g. ``{"mail-type": "END"}``. ``cluster``: ``'slurm'``
    submits with sbatch; ``'local'`` runs the same jobs as processes here (submitit's LocalExecutor),
    to try a configuration without a cluster.
    """

    partition: str | None = None
    time: int | str = 60
    gpus: int | None = None
    cpus: int | None = None
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = ()
    parallel: int | None = None
    folder: str | None = None
    cluster: str = "slurm"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "time", parse_time(self.time))
        if self.gpus is not None:
            put(self, "gpus", _whole("gpus", self.gpus, 0))
        if self.cpus is not None:
            put(self, "cpus", _whole("cpus", self.cpus, 1))
        if self.parallel is not None:
            put(self, "parallel", _whole("parallel", self.parallel, 1))
        if self.mem_gb is not None:
            text = self.mem_gb
            try:
                mem = float(text) if isinstance(text, str | int | float) and not isinstance(text, bool) else -1.0
            except ValueError:
                mem = -1.0
            if not mem > 0:
                raise invalid("mem_gb", text, "a number of GB > 0")
            put(self, "mem_gb", mem)
        for name in ("partition", "account", "qos", "constraint", "folder"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str | os.PathLike) or not str(value).strip()):
                raise invalid(name, value, "a non-empty string")
            if value is not None:
                put(self, name, str(value))
        setup = (self.setup,) if isinstance(self.setup, str) else self.setup
        if not isinstance(setup, Sequence) or not all(isinstance(line, str) for line in setup):
            raise invalid("setup", self.setup, "shell lines (a list of strings)")
        put(self, "setup", tuple(setup))
        check_choice("cluster", self.cluster, SLURM_CLUSTERS)
        if not isinstance(self.extra, Mapping) or not all(isinstance(k, str) for k in self.extra):
            raise invalid("extra", self.extra, "a table of sbatch options (name = value)")
        put(self, "extra", dict(self.extra))

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, **flags: Any) -> SlurmOptions:
        """Options from a TOML or JSON file (its keys, or those of its ``[slurm]`` table), with ``flags``
        that are not None replacing the file's values."""
        values: dict[str, Any] = {}
        if path is not None:
            values = _read_config(Path(path))
        values.update({k: v for k, v in flags.items() if v is not None})
        allowed = [f.name for f in fields(cls)]
        for key in values:
            if key not in allowed:
                raise invalid("slurm option", key, ", ".join(allowed))
        return cls(**values)

    def sbatch_parameters(self, name: str = "labkit") -> dict[str, Any]:
        """The options as submitit's Slurm parameters (names of its ``SlurmExecutor``)."""
        params: dict[str, Any] = {"job_name": name, "time": self.time, "nodes": 1, "ntasks_per_node": 1,
                                  "cpus_per_task": self.cpus or 1, "setup": list(self.setup),
                                  "additional_parameters": dict(self.extra)}
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.mem_gb is not None:
            params["mem"] = f"{max(1, round(self.mem_gb))}GB"
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        if self.parallel is not None:
            params["array_parallelism"] = self.parallel
        return params


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise invalid("slurm_config", str(path), f"a readable TOML or JSON file ({error.strerror})") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ValueError as error:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        first = str(error).splitlines()[0]
        raise invalid("slurm_config", str(path), f"a valid TOML or JSON file ({first})") from None
    if not isinstance(data, dict):
        raise invalid("slurm_config", str(path), "a TOML or JSON table of options")
    table = data.get("slurm", data)
    if not isinstance(table, dict):
        raise invalid("slurm_config", str(path), "a [slurm] table of options")
    return dict(table)


def sbatch_script(options: SlurmOptions, folder: str | os.PathLike, jobs: int = 1, name: str = "labkit") -> str:
    """The sbatch file submitit writes for an array of ``jobs`` jobs with these options, without a cluster
    (what the book shows, and what ``--dry-run`` prints). Uses submitit's own writer."""
    require("submitit", "slurm")
    from submitit.slurm.slurm import _make_sbatch_string  # the function SlurmExecutor writes with

    params = options.sbatch_parameters(name)
    if jobs > 1:
        params["map_count"] = jobs
    python = sys.executable
    return _make_sbatch_string(command=f"{python} -u -m submitit.core._submit {Path(folder)}", folder=str(folder),
                               **params)


def _local_parallel(options: SlurmOptions) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return options.parallel or max(1, cores // (options.cpus or 1))


def slurm_map(fn: Callable[[Any], Any], items: Sequence[Any], options: SlurmOptions,
              folder: str | os.PathLike, name: str = "labkit") -> Iterator[tuple[int, Any]]:
    """``(index, fn(item))`` for every item, one Slurm job each (one job array), as jobs finish.

    ``fn`` and the items are pickled into ``folder``, which compute nodes must see; a job's failure is
    raised here with its traceback, and jobs not yet finished are then cancelled. With
    ``options.cluster == 'local'`` the jobs run as processes on this machine, ``options.parallel`` at a
    time (submitit's local executor starts every job it is given at once).
    """
    submitit = require("submitit", "slurm")
    executor = submitit.AutoExecutor(folder=str(folder), cluster=options.cluster)
    generic = {"name": name, "timeout_min": options.time, "nodes": 1, "tasks_per_node": 1,
               "gpus_per_node": options.gpus or 0}
    if options.cluster == "slurm":
        specific = {k: v for k, v in options.sbatch_parameters(name).items()
                    if k not in ("job_name", "time", "nodes", "ntasks_per_node", "gpus_per_node")}
        executor.update_parameters(**generic, **{f"slurm_{k}": v for k, v in specific.items()})
        window, poll = len(items), 10.0
    else:
        executor.update_parameters(**generic, **({"local_setup": list(options.setup)} if options.setup else {}))
        window, poll = _local_parallel(options), 0.2
    queue = list(enumerate(items))
    running: list[tuple[Any, int]] = []
    try:
        if options.cluster == "slurm":
            running = list(zip(executor.map_array(fn, [item for _, item in queue]), range(len(queue)), strict=True))
            queue = []
        while running or queue:
            while queue and len(running) < window:
                i, item = queue.pop(0)
                running.append((executor.submit(fn, item), i))
            finished = [(job, i) for job, i in running if job.done()]
            for job, i in finished:
                running.remove((job, i))
                yield i, job.result()
            if not finished:
                time.sleep(poll)
    finally:
        for job, _ in running:
            job.cancel(check=False)
