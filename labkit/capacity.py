"""The capacity experiment of Part 3.3 and memorization capacity (MLS / MAC), as library code.

Why a module: chapters 2 and 3 (and the precomputed CPU results in ``results/``) run the same
experiments at several scales, from a seconds-long smoke test to a GPU sweep. The run functions here
are the single definition of "one run": a top-level function of a JSON config dict that returns a
JSON-able dict, so ``labkit.sweep`` can cache it by config hash and any executor (serial, the process
pool below, a batched trainer) can run it.

- ``run_capacity(config)``: build bioD / bioS data and a model, train with ``labkit.train.train``
  (or, together with runs of the same shape, ``labkit.batched.train_batched``), measure bits learned
  with ``labkit.measure.bits_learned`` (Def 4.1 / 4.3): R = bits / params against all parameters
  (embedding rows of unused tokens excluded) and against non-embedding parameters.
- ``capacity_grid(sizes, seed)``: model sizes × exposures for a chapter profile, with N chosen so the
  data holds ``factor`` × (2 bits × P): capacity, not data, is then the bottleneck (REFERENCE §12).
- ``run_memorization(config)``: MLS (doubling + bisection, a fresh training per probe) or MAC (one
  training on a library larger than capacity) on random key → value libraries or on bioD.
- Summaries: ``rows`` (flat table of records), ``peak_ratio`` (peak R per exposure level).
- ``pool_executor``: two 1-thread processes use a 2-core CPU best (REFERENCE §12); same-shape
  runs train together (``CapacityRun`` is a ``labkit.batched.BatchableRun``).
- ``python -m labkit.capacity --profile cpu-full``: regenerate ``results/capacity_cpu_full.json``.

Config keys (all JSON): ``data`` ("biod" | "bios" | "random"); bioD: ``N, K, C, D, L, T,
name_pools``; bioS: ``N, mode``; random: ``N, S, V, key_base``; model: ``model`` ("tiny" | "gpt2"),
``d_model, n_layer, n_head`` and optional ``model_overrides`` (ModelConfig fields); training:
``exposures, batch_size, lr, weight_decay, seed``. Threads and device are *not* part of a config (they
do not change what is measured): the caller sets ``torch.set_num_threads``; the device is "auto".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from labkit import measure
from labkit.batched import BatchableRun, RunSetup
from labkit.data import biod, bios
from labkit.data import random as random_data
from labkit.data.base import TokenDataset
from labkit.model import ModelConfig, Transformer, count_params, gpt2, tiny
from labkit.runtime import atomic_write_bytes, resolve_device
from labkit.sweep import process_executor
from labkit.train import TrainHistory

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "02_capacity_scaling_law"
MEMORIZATION_CHAPTER = "03_mls_vs_mac"
#: Where ``python -m labkit.capacity`` caches single runs (resumable) and writes the combined file.
DEFAULT_CACHE = ROOT / "_build" / "sweeps" / "capacity"
PRECOMPUTED = {"cpu-full": ROOT / "results" / "capacity_cpu_full.json"}
TRAIN_KEYS = ("exposures", "batch_size", "lr", "weight_decay", "seed")
HISTORY_POINTS = 50


# --------------------------------------------------------------------------------------------------
# Data and model from a config
# --------------------------------------------------------------------------------------------------


def make_dataset(config: Mapping[str, Any], N: int | None = None) -> TokenDataset:
    """The config's dataset (``N`` overrides ``config["N"]``; MLS builds libraries of many sizes)."""
    kind = config.get("data", "biod")
    n = int(config["N"] if N is None else N)
    seed = int(config.get("data_seed", config.get("seed", 0)))
    if kind == "biod":
        return biod.sample(n, config["K"], config.get("C", 1), config["D"], config.get("L", 1), config["T"],
                           seed=seed, name_pools=tuple(config.get("name_pools", biod.DEFAULT_NAME_POOLS)))
    if kind == "bios":
        return bios.BioS(n, seed, mode=config.get("mode", "fresh"))
    if kind == "random":
        return random_data.sample(n, config["S"], config["V"], seed=seed, key_base=config.get("key_base", 10))
    raise ValueError(f"data={kind!r} is not valid; allowed: 'biod', 'bios', 'random'")


def max_length(config: Mapping[str, Any], dataset: TokenDataset) -> int:
    """Context the model needs: the record length (bioS: the longest of a few renderings, plus slack;
    random libraries: the key length of the largest library the config will build)."""
    if "max_len" in config:
        return int(config["max_len"])
    if isinstance(dataset, bios.BioS):  # renderings vary: twice the longest of a sample (rotary: no cost)
        sample = bios.BioS(min(dataset.n_items, 2000), dataset.seed, mode=dataset.mode)
        return 2 * max(int(sample.exposure(e).tokens.shape[1]) for e in range(4))
    if isinstance(dataset, random_data.RandomSequences):
        largest = max(int(config.get(k) or 0) for k in ("N", "max_size", "n_items"))
        return 1 + random_data.key_length(max(largest, dataset.N), dataset.key_base) + dataset.S
    return int(dataset.exposure(0).tokens.shape[1])


def model_config(config: Mapping[str, Any], dataset: TokenDataset) -> ModelConfig:
    """``model="tiny"`` (REFERENCE §12's CPU GPT: absolute positions) or ``"gpt2"`` (GPT2-ℓ-h, rotary,
    width 64h, Part 3.3), sized by ``d_model`` / ``n_layer`` / ``n_head``; ``model_overrides`` adds fields."""
    preset = config.get("model", "tiny")
    overrides = dict(config.get("model_overrides", {}))
    vocab, max_len = dataset.vocab_size, max_length(config, dataset)
    if preset == "tiny":
        return tiny(vocab, max_len, d_model=int(config["d_model"]), n_layer=int(config.get("n_layer", 2)),
                    n_head=int(config.get("n_head", 2)), **overrides)
    if preset == "gpt2":
        return gpt2(int(config["n_layer"]), int(config["n_head"]), vocab, max_len, **overrides)
    raise ValueError(f"model={preset!r} is not valid; allowed: 'tiny', 'gpt2'")


def param_count(config: Mapping[str, Any], dataset: TokenDataset):
    """labkit.model.ParamCount of the config's model on ``dataset`` (unused embedding rows excluded)."""
    model = Transformer(model_config(config, dataset))
    return count_params(model, used_tokens=dataset.used_tokens())


def people_for_capacity(config: Mapping[str, Any], factor: float = 2.5, bits_per_param: float = 2.0) -> int:
    """N such that the data holds about ``factor × bits_per_param × P`` bits (P of the config's model).

    Why: to measure a model's *capacity*, the data must hold more than it can store; Part 3.3 sweeps
    N for each size, the lab sizes N once (REFERENCE §12 used factor 2.5 at 2 bits/param). P depends a
    little on N (embedding rows of names in use), so N is found by a few fixed-point steps.
    """
    kind = config.get("data", "biod")
    ceiling = math.prod(config.get("name_pools", biod.DEFAULT_NAME_POOLS)) if kind == "biod" else 10**8
    n = min(1000, ceiling)
    for _ in range(6):
        dataset = make_dataset(config, n)
        # P from at most 4096 items: by then every name and value token is in use (and bioS stays fast)
        counted = dataset if n <= 4096 else make_dataset(config, 4096)
        target = factor * bits_per_param * param_count(config, counted).total
        new = max(8, min(ceiling, round(n * target / dataset.information_bits())))
        if new == n:
            break
        n = new
    return n


# --------------------------------------------------------------------------------------------------
# One capacity run
# --------------------------------------------------------------------------------------------------


def _train_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = {k: config[k] for k in TRAIN_KEYS if k in config}
    return {"progress": False, "device": "auto", **kwargs}


def history_summary(history, points: int = HISTORY_POINTS) -> dict[str, list[float]]:
    """About ``points`` (exposure, loss) pairs of a TrainHistory, evenly spaced, the last one kept."""
    n = len(history.losses)
    keep = sorted({round(i * (n - 1) / max(1, points - 1)) for i in range(points)}) if n else []
    return {"exposures": [round(history.exposures[i], 3) for i in keep],
            "losses": [round(history.losses[i], 5) for i in keep]}


class CapacityRun(BatchableRun):
    """One capacity run as a ``labkit.batched.BatchableRun``: build (``setup``), train, measure (``finish``).

    Why the split: the sweep executors can then train runs of one shape together (several seeds or
    learning rates of one model size, on their own data) with ``train_batched``, and run the rest
    one by one; either way the result of a config is the same (up to float rounding).
    Use the module's instance :data:`run_capacity`.
    """

    def setup(self, config: dict[str, Any]) -> RunSetup:
        t0 = time.perf_counter()
        dataset = make_dataset(config)
        model = Transformer(model_config(config, dataset), seed=int(config.get("seed", 0)))
        counts = count_params(model, used_tokens=dataset.used_tokens())
        return RunSetup(model, dataset, _train_kwargs(config), extra={"counts": counts, "t0": t0})

    def finish(self, config: dict[str, Any], setup: RunSetup, history: TrainHistory) -> dict[str, Any]:
        """Bits learned of the trained model. Keys: ``bits``, ``R`` (bits / all params, unused embedding
        rows excluded), ``R_nonembedding``, ``params``, ``non_embedding_params``, ``param_groups``,
        ``information_bits``, ``fraction_learned``, ``breakdown`` / ``unclipped`` (Def 4.1 / 4.3 terms),
        ``final_loss``, ``wall_time`` (since this run's setup), ``train_time`` (a batch's share when
        trained together), ``steps``, ``tokens_seen``, ``device``, ``threads``, ``history`` (loss vs
        exposures)."""
        counts = setup.extra["counts"]
        m = measure.bits_learned(setup.model, setup.dataset, device=history.device, params=counts)
        return {
            "bits": m.bits,
            "R": m.bits_per_param,
            "R_nonembedding": m.bits_per_nonembedding_param,
            "params": m.params,
            "non_embedding_params": m.non_embedding_params,
            "param_groups": counts.as_dict(),
            "information_bits": m.information_bits,
            "fraction_learned": m.fraction_learned,
            "breakdown": m.breakdown,
            "unclipped": m.unclipped,
            "final_loss": history.final_loss,
            "wall_time": time.perf_counter() - setup.extra["t0"],
            "train_time": history.wall_time,
            "steps": history.total_steps,
            "tokens_seen": history.tokens_seen,
            "device": history.device,
            "threads": torch.get_num_threads(),
            "history": history_summary(history),
        }


#: ``run_capacity(config)``: train the config's model on its data and measure bits learned (a JSON-able
#: dict, keys in ``CapacityRun.finish``); batchable by the sweep executors.
run_capacity = CapacityRun()


# --------------------------------------------------------------------------------------------------
# Grids for the chapter profiles
# --------------------------------------------------------------------------------------------------


def data_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Data part of a config from a profile's ``data`` spec, e.g. ``{"kind": "biod", "K": 8, ...}``."""
    spec = dict(spec)
    kind = spec.pop("kind", "biod")
    if kind == "biod":
        return {"data": "biod", "K": int(spec["K"]), "C": int(spec.get("C", 1)), "D": int(spec["D"]),
                "L": int(spec.get("L", 1)), "T": int(spec["T"]), "name_pools": [int(p) for p in spec["name_pools"]]}
    if kind == "bios":
        return {"data": "bios", "mode": spec.get("mode", "fresh")}
    if kind == "random":
        return {"data": "random", "S": int(spec["S"]), "V": int(spec["V"]), "key_base": int(spec.get("key_base", 10))}
    raise ValueError(f"data kind={kind!r} is not valid; allowed: 'biod', 'bios', 'random'")


def model_keys(sizes: Mapping[str, Any], size: Any) -> dict[str, Any]:
    """Model part of a config: for ``tiny``, ``size`` is d_model (heads from ``d_head``, or
    ``n_head``); for ``gpt2``, ``size`` is ``(ℓ, h)``."""
    preset = sizes.get("model", "tiny")
    if preset == "gpt2":
        n_layer, n_head = size
        return {"model": "gpt2", "n_layer": int(n_layer), "n_head": int(n_head), "d_model": 64 * int(n_head)}
    d = int(size)
    n_head = max(1, d // sizes["d_head"]) if "d_head" in sizes else int(sizes.get("n_head", 2))
    return {"model": "tiny", "d_model": d, "n_layer": int(sizes.get("n_layer", 2)), "n_head": n_head}


def _lr(sizes: Mapping[str, Any], exposures: int) -> float:
    lr = sizes["lr"]
    return float(lr[str(exposures)] if isinstance(lr, Mapping) else lr)


def capacity_grid(sizes: Mapping[str, Any], seed: int = 0, seeds: Sequence[int] | None = None) -> list[dict]:
    """Configs of the capacity sweep for a profile's ``sizes``: model ``sizes["models"]`` ×
    ``sizes["exposures"]`` × seeds, N from :func:`people_for_capacity` (``sizes["factor"]``)."""
    configs = []
    for size in sizes["models"]:
        base = {**data_keys(sizes["data"]), **model_keys(sizes, size)}
        n = people_for_capacity(base, float(sizes["factor"]))
        for exposures in sizes["exposures"]:
            for s in seeds if seeds is not None else [seed]:
                configs.append({**base, "N": n, "exposures": int(exposures), "batch_size": int(sizes["batch_size"]),
                                "lr": _lr(sizes, exposures), "weight_decay": float(sizes.get("weight_decay", 0.05)),
                                "seed": int(s)})
    return configs


# --------------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------------


def rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat dict per sweep record: the config's model, data and training keys with the scalar results."""
    out = []
    for record in records:
        config, result = record["config"], record["result"]
        row = {k: config.get(k) for k in ("model", "d_model", "n_layer", "n_head", "data", "N", "exposures", "lr",
                                          "batch_size", "seed")}
        row.update({k: v for k, v in result.items() if not isinstance(v, Mapping | list)})
        out.append(row)
    return out


def mean_by_size(table: Iterable[Mapping[str, Any]], keys: Sequence[str] = ("R", "R_nonembedding", "bits"),
                 ) -> list[dict[str, Any]]:
    """Rows averaged over seeds per (exposures, model size): ``keys`` averaged, ``n_seeds`` counted,
    ``R_min`` / ``R_max`` the spread over seeds; sorted by exposures, then params."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in table:
        key = (row["exposures"], row["model"], row["d_model"], row["n_layer"], row["params"])
        groups.setdefault(key, []).append(row)
    out = []
    for (exposures, model, d, n_layer, params), members in groups.items():
        row = {"exposures": exposures, "model": model, "d_model": d, "n_layer": n_layer, "params": params,
               "non_embedding_params": members[0].get("non_embedding_params"), "N": members[0]["N"],
               "n_seeds": len(members), "R_min": min(m["R"] for m in members),
               "R_max": max(m["R"] for m in members)}
        row.update({k: sum(m[k] for m in members) / len(members) for k in keys})
        out.append(row)
    return sorted(out, key=lambda r: (r["exposures"], r["params"]))


def peak_ratio(table: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Exposures → the model size with the highest seed-averaged R (Part 3.3's capacity ratio)."""
    peaks: dict[int, dict[str, Any]] = {}
    for row in mean_by_size(table):
        best = peaks.get(row["exposures"])
        if best is None or row["R"] > best["R"]:
            peaks[row["exposures"]] = row
    return dict(sorted(peaks.items()))


# --------------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------------


def pool_executor(processes: int = 2, threads: int = 1):
    """The executor of capacity sweeps: ``labkit.sweep.process_executor`` with ``processes`` workers of
    ``threads`` torch threads, runs of one shape trained together (``run_capacity`` is batchable;
    seeds of one size, for instance), units started most expensive first (``_cost``). Two 1-thread
    workers are the fastest use of a 2-core CPU (REFERENCE §12, benchmarks/bench_sweep.py). With
    ``processes <= 1`` the units run one after the other in this process (on a GPU: batched there)."""
    return process_executor(workers=processes, threads=threads, batch=True, cost=_cost)


def _cost(config: Mapping[str, Any]) -> float:
    """Rough relative cost of a run (items × exposures × width²), to start long runs first. An MLS search
    is counted as 16 libraries of its start size (it trains ~6-9 libraries, growing from there)."""
    items = config.get("N") or config.get("n_items") or 16 * int(config.get("start", 16))
    return float(items) * float(config.get("exposures", 1)) * float(config.get("d_model", 1)) ** 2


# --------------------------------------------------------------------------------------------------
# Memorization capacity: MLS and MAC (chapter 3)
# --------------------------------------------------------------------------------------------------


def run_memorization(config: dict[str, Any]) -> dict[str, Any]:
    """MLS or MAC (``config["method"]``) of the config's model on its data (random library or bioD).

    MLS (``labkit.measure.mls``): libraries of n items, n doubled from ``start`` until one is not
    fully recalled, then bisected to ``tolerance``; a fresh model for every probe; ``threshold`` is the
    fraction of items that must be recalled. MAC (``labkit.measure.mac``): one training on a library of
    ``n_items`` (meant to exceed capacity), counting the items recalled exactly. An item is "recalled"
    when every token of its value (bioD: of all its attribute values) is the model's argmax.

    Result: ``items`` (MLS size or MAC items recalled), ``bits`` (their information), ``params``,
    ``bits_per_param``, ``bits_per_item``; MAC adds ``loss_bits`` / ``loss_bits_per_param`` (Morris-style
    loss-based bits of the whole library, which also credit partly known items) and
    ``fraction_recalled``; MLS adds ``probes`` and ``capped``.
    """
    t0 = time.perf_counter()
    method = config.get("method")
    seed = int(config.get("seed", 0))
    kwargs = {k: config[k] for k in TRAIN_KEYS if k in config}
    if method == "mls":
        reference = make_dataset(config, int(config.get("start", 16)))
        cfg = model_config(config, reference)
        result = measure.mls(
            lambda: Transformer(cfg, seed=seed), lambda n: make_dataset(config, n), train_kwargs=kwargs,
            start=int(config.get("start", 16)), max_size=int(config.get("max_size", 4096)),
            tolerance=float(config.get("tolerance", 0.05)), threshold=float(config.get("threshold", 1.0)),
        )
        best = make_dataset(config, max(result.size, 1))
        counts = count_params(Transformer(cfg), used_tokens=best.used_tokens())
        out = {"items": result.size, "bits": result.bits, "params": counts.total,
               "non_embedding_params": counts.non_embedding, "bits_per_param": result.bits / counts.total,
               "bits_per_item": result.bits / result.size if result.size else 0.0, "capped": result.capped,
               "probes": [{"n": p.n, "fraction_recalled": p.fraction_recalled, "complete": p.complete,
                           "final_loss": p.final_loss, "wall_time": p.wall_time} for p in result.probes]}
    elif method == "mac":
        dataset = make_dataset(config, int(config["n_items"]))
        model = Transformer(model_config(config, dataset), seed=seed)
        counts = count_params(model, used_tokens=dataset.used_tokens())
        result = measure.mac(model, dataset, train_kwargs=kwargs, params=counts)
        out = {"items": result.items_recalled, "bits": result.bits_recalled, "params": counts.total,
               "non_embedding_params": counts.non_embedding, "bits_per_param": result.bits_per_param,
               "bits_per_item": result.bits_per_item, "n_items": result.n_items,
               "fraction_recalled": result.fraction_recalled, "loss_bits": result.measurement.bits,
               "loss_bits_per_param": result.measurement.bits_per_param,
               "final_loss": result.history.final_loss, "history": history_summary(result.history)}
    else:
        raise ValueError(f"method={method!r} is not valid; allowed: 'mls', 'mac'")
    return {**out, "wall_time": time.perf_counter() - t0, "device": str(resolve_device("auto")),
            "threads": torch.get_num_threads()}


def memorization_grid(sizes: Mapping[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """MLS and MAC configs for chapter 3: each data kind in ``sizes["datasets"]`` (``"random"``, ``"biod"``)
    × each model width in ``sizes["models"]`` × {one MLS search, one MAC run per ``mac_bits_per_param``}.

    Random libraries: ``S`` value tokens over ``V`` (keys in base ``key_base``); bioD: ``biod_K``
    attributes with ``biod_D`` values (C = L = 1, T = D) and ``biod_name_pools``. MLS searches from
    ``start`` up to ``max_size``. A MAC library holds ``mac_bits_per_param`` × P bits (P: the model's
    parameters), i.e. it is sized from the model alone, not from its MLS, so MAC stays the cheap
    one-training estimate it is meant to be. MLS and MAC of one model share its context length, hence
    its parameter count.
    """
    configs = []
    common = {"exposures": int(sizes["exposures"]), "batch_size": int(sizes["batch_size"]),
              "lr": float(sizes["lr"]), "weight_decay": float(sizes.get("weight_decay", 0.05)), "seed": int(seed)}
    for kind in sizes["datasets"]:
        if kind == "random":
            data = {"data": "random", "S": int(sizes["S"]), "V": int(sizes["V"]), "key_base": int(sizes["key_base"])}
            limit = int(sizes["max_size"])
        elif kind == "biod":
            D = int(sizes["biod_D"])
            data = {"data": "biod", "K": int(sizes["biod_K"]), "C": 1, "D": D, "L": 1, "T": D,
                    "name_pools": [int(p) for p in sizes["biod_name_pools"]]}
            limit = min(int(sizes["max_size"]), math.prod(sizes["biod_name_pools"]))
        else:
            raise ValueError(f"dataset {kind!r} is not valid; allowed: 'random', 'biod'")
        for d in sizes["models"]:
            shared = {**data, **model_keys(sizes, d), **common}
            if kind == "random":  # room for the longest key, so every library size has the same model
                shared["max_len"] = 1 + random_data.key_length(limit, int(sizes["key_base"])) + int(sizes["S"])
            per_item = make_dataset(shared, 100).information_bits() / 100
            params = param_count(shared, make_dataset(shared, min(limit, 1000))).total
            mac_sizes = [min(limit, max(1, round(b * params / per_item))) for b in sizes["mac_bits_per_param"]]
            configs.append({**shared, "method": "mls", "start": int(sizes["start"]), "max_size": limit,
                            "tolerance": float(sizes["tolerance"]), "threshold": float(sizes["threshold"])})
            configs.extend({**shared, "method": "mac", "n_items": n} for n in dict.fromkeys(mac_sizes))
    return configs


# --------------------------------------------------------------------------------------------------
# Precomputed results (results/*.json) and the command that regenerates them
# --------------------------------------------------------------------------------------------------


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(profile: str, command: str, wall_time: float, processes: int, threads: int) -> dict[str, Any]:
    """Where and how a precomputed file was made (printed by the chapter beside the results)."""
    import labkit

    return {"chapter": CHAPTER, "profile": profile, "command": command, "wall_time_s": round(wall_time, 1),
            "processes": processes, "threads_per_process": threads, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "git_commit": _git_commit(), "labkit": labkit.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def save_precomputed(path: str | os.PathLike, records: list[dict[str, Any]], meta: Mapping[str, Any]) -> Path:
    """Write ``{"provenance": meta, "records": records}`` atomically (strict JSON)."""
    path = Path(path)
    text = json.dumps({"provenance": dict(meta), "records": records}, indent=1, sort_keys=True, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    return path


def load_precomputed(path: str | os.PathLike) -> dict[str, Any] | None:
    """The precomputed file's ``{"provenance", "records"}``, or None when it is absent or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list) or "provenance" not in data:
        return None
    return data


def regenerate_command(profile: str, out: str | os.PathLike | None = None) -> str:
    out = out or PRECOMPUTED.get(profile, Path("results") / f"capacity_{profile.replace('-', '_')}.json")
    rel = os.path.relpath(out, ROOT) if Path(out).is_absolute() else str(out)
    return f".venv/bin/python -m labkit.capacity --profile {profile} --out {rel}"


def main(argv: list[str] | None = None) -> int:
    """Run a chapter-2 profile's full capacity sweep (resumable) and write the combined results file."""
    from labkit import profiles
    from labkit.sweep import run_sweep

    parser = argparse.ArgumentParser(prog="python -m labkit.capacity", description=main.__doc__)
    parser.add_argument("--profile", default="cpu-full", help="profile of 02_capacity_scaling_law (default cpu-full)")
    parser.add_argument("--out", default=None, help="combined JSON (default results/capacity_<profile>.json)")
    parser.add_argument("--cache", default=None, help=f"per-run cache folder (default {DEFAULT_CACHE}/<profile>)")
    parser.add_argument("--processes", type=int, default=None, help="parallel runs (default: the profile's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: the profile's)")
    parser.add_argument("--dry-run", action="store_true", help="print the grid and exit")
    args = parser.parse_args(argv)
    sizes = profiles.resolve(CHAPTER, args.profile)
    default_out = PRECOMPUTED.get(args.profile, ROOT / "results" / f"capacity_{args.profile}.json")
    out = Path(args.out) if args.out else default_out
    cache = Path(args.cache) if args.cache else DEFAULT_CACHE / args.profile
    processes = args.processes if args.processes is not None else int(sizes["processes"])
    threads = args.threads if args.threads is not None else int(sizes["threads"])
    grid = capacity_grid(sizes, seeds=list(sizes["seeds"]))
    for config in grid:
        print(json.dumps(config, sort_keys=True))
    if args.dry_run:
        return 0
    t0 = time.perf_counter()
    report = run_sweep(grid, run_capacity, cache, executor=pool_executor(processes, threads))
    command = regenerate_command(args.profile, out)
    path = save_precomputed(out, report.records, provenance(args.profile, command, time.perf_counter() - t0,
                                                             processes, threads))
    for row in mean_by_size(rows(report.records)):
        print(f"exposures {row['exposures']:5d}  d {row['d_model']:3d}  P {row['params']:7,d}  N {row['N']:6,d}  "
              f"R {row['R']:.2f} (non-embedding {row['R_nonembedding']:.2f})  seeds {row['n_seeds']}")
    print(f"wrote {path} ({report.ran} runs, {report.reused} reused, {report.wall_time:.0f} s)")
    return 0


if __name__ == "__main__":
    from labkit.capacity import main as _main  # the imported module, so spawned workers unpickle it

    raise SystemExit(_main())
