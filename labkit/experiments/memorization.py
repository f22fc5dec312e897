"""Chapter 3's experiment: memorization capacity measured two ways, MLS and MAC.

Härmä et al. (harma2024empirical) define a model's memorization capacity by exact recall: the
**maximum library size** (MLS) is the largest library a fresh model memorises completely, found by
training on libraries of growing size; the **maximum attainable capacity** (MAC) is the number of
items recalled exactly after one training on a library larger than capacity, the cheap estimate.
Morris et al. (morris2025memorize) count bits from losses instead and find about 3.6 bits per
parameter on uniformly random data. This module holds the profiles, the grid (data kinds × model
widths × {one MLS search, MAC runs}), one run (``labkit.measure.mls`` / ``mac``) and the tables.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from labkit import measure
from labkit.checks import invalid
from labkit.data.registry import make_dataset, max_people
from labkit.experiments.base import Execution, Profile, derive, run_grid
from labkit.experiments.capacity import recipe
from labkit.experiments.models import TinyModels, model_config, param_count
from labkit.model import Transformer, count_params
from labkit.runtime import resolve_device

NAME = "memorization"
CHAPTER = "03_mls_vs_mac"
MORRIS_BITS_PER_PARAM = 3.6  # GPT-style models on uniformly random sequences (morris2025memorize)


@dataclass(frozen=True)
class Sizes:
    """What the memorization sweep measures. ``datasets``: ``"uniform"`` (libraries of ``S`` value
    tokens over ``V``, keys in base ``key_base``) and/or ``"biod"`` (``biod_K`` attributes of
    ``biod_D`` values, C = L = 1, T = D); MLS searches by doubling from ``start`` up to ``max_size``,
    then bisection to ``tolerance`` (relative), counting a library memorised when a ``threshold``
    fraction of its items is recalled; a MAC library holds ``mac_bits_per_param`` × P bits."""

    datasets: tuple[str, ...] = ("uniform",)
    models: TinyModels = TinyModels(widths=(8, 12))
    S: int = 4
    V: int = 16
    key_base: int = 10
    biod_K: int = 4
    biod_D: int = 16
    biod_name_pools: tuple[int, int] = (20, 20)
    exposures: int = 1000
    batch_size: int = 256
    lr: float = 3e-2
    weight_decay: float = 0.05
    start: int = 32
    max_size: int = 4096
    tolerance: float = 0.25
    threshold: float = 1.0
    mac_bits_per_param: tuple[float, ...] = (2.0,)


@dataclass(frozen=True)
class Expect:
    """The claim cell's bands: MLS and loss-based bits per parameter in ``bits_per_param``; MAC/MLS
    (items) in ``mac_over_mls``."""

    bits_per_param: tuple[float, float] = (0.5, 3.6)
    mac_over_mls: tuple[float, float] = (0.4, 2.0)


QUICK = Profile(Sizes(), Expect(), Execution(processes=2, threads=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(models=TinyModels(widths=(4, 8)), exposures=150, start=8, max_size=64,
                                      tolerance=0.5),
                    expect=dict(bits_per_param=(0.05, 3.6), mac_over_mls=(0.0, 1.5)), run=dict(processes=1)),
    "quick": QUICK,
    "full": derive(QUICK, sizes=dict(datasets=("uniform", "biod"), models=TinyModels(widths=(8, 12, 16, 24)),
                                     biod_name_pools=(40, 40), exposures=3000, lr=2e-2, max_size=16384,
                                     tolerance=0.1, mac_bits_per_param=(1.5, 2.0, 4.0, 8.0)),
                   expect=dict(mac_over_mls=(0.1, 2.0))),
}


def _data(sizes: Sizes, kind: str) -> dict[str, Any]:
    if kind == "uniform":
        return {"data": "uniform", "S": sizes.S, "V": sizes.V, "key_base": sizes.key_base}
    if kind == "biod":
        return {"data": "biod", "K": sizes.biod_K, "C": 1, "D": sizes.biod_D, "L": 1, "T": sizes.biod_D,
                "name_pools": list(sizes.biod_name_pools)}
    raise invalid("datasets", kind, "'uniform', 'biod'")


def grid(sizes: Sizes, seeds: Iterable[int] = (0,)) -> list[dict[str, Any]]:
    """MLS and MAC configs: each data kind × each model width × {one MLS search, one MAC run per
    ``mac_bits_per_param``}. A MAC library is sized from the model alone (not from its MLS), so MAC
    stays the cheap one-training estimate it is meant to be; MLS and MAC of one model share its
    context length, hence its parameter count."""
    configs = []
    for seed in seeds:
        recipe_keys = {"exposures": sizes.exposures, "batch_size": sizes.batch_size, "lr": float(sizes.lr),
                       "weight_decay": float(sizes.weight_decay), "seed": int(seed)}
        for kind in sizes.datasets:
            data = _data(sizes, kind)
            limit = min(sizes.max_size, max_people(data))
            for model in sizes.models.keys():
                shared = {**data, **model, **recipe_keys, "max_size": limit}
                per_item = make_dataset(shared, 100).information_bits() / 100
                params = param_count(shared, make_dataset(shared, min(limit, 1000))).total
                mac_sizes = [min(limit, max(1, round(b * params / per_item))) for b in sizes.mac_bits_per_param]
                configs.append({**shared, "method": "mls", "start": sizes.start, "tolerance": float(sizes.tolerance),
                                "threshold": float(sizes.threshold)})
                configs.extend({**shared, "method": "mac", "n_items": n} for n in dict.fromkeys(mac_sizes))
    return configs


def run(config: dict[str, Any]) -> dict[str, Any]:
    """MLS or MAC (``config["method"]``) of the config's model on its data.

    An item is "recalled" when every token of its value (bioD: of all its attribute values) is the
    model's argmax. Result: ``items`` (MLS size or MAC items recalled), ``bits`` (their information),
    ``params``, ``bits_per_param``, ``bits_per_item``; MAC adds ``loss_bits`` / ``loss_bits_per_param``
    (Morris-style loss-based bits of the whole library, which also credit partly known items) and
    ``fraction_recalled``; MLS adds ``probes`` (every library trained) and ``capped``.
    """
    t0 = time.perf_counter()
    method, seed, train_config = config.get("method"), int(config.get("seed", 0)), recipe(config)
    if method == "mls":
        reference = make_dataset(config, int(config["start"]))
        cfg = model_config(config, reference)
        result = measure.mls(lambda: Transformer(cfg, seed=seed), lambda n: make_dataset(config, n),
                             train_config, start=int(config["start"]), max_size=int(config["max_size"]),
                             tolerance=float(config["tolerance"]), threshold=float(config["threshold"]))
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
        result = measure.mac(model, dataset, train_config, params=counts)
        out = {"items": result.items_recalled, "bits": result.bits_recalled, "params": counts.total,
               "non_embedding_params": counts.non_embedding, "bits_per_param": result.bits_per_param,
               "bits_per_item": result.bits_per_item, "n_items": result.n_items,
               "fraction_recalled": result.fraction_recalled, "loss_bits": result.measurement.bits,
               "loss_bits_per_param": result.measurement.bits_per_param,
               "final_loss": result.history.final_loss, "history": result.history.summary()}
    else:
        raise invalid("method", method, "'mls', 'mac'")
    return {**out, "wall_time": time.perf_counter() - t0, "device": str(resolve_device("auto")),
            "threads": torch.get_num_threads()}


def cost(config: Mapping[str, Any]) -> float:
    """Rough relative cost (items × exposures × width²); an MLS search counts as 16 libraries of its
    start size (it trains ~6-9 libraries, growing from there)."""
    items = config.get("n_items") or 16 * int(config.get("start", 16))
    return float(items) * float(config.get("exposures", 1)) * float(config.get("d_model", 1)) ** 2


def sweep(profile: Profile[Sizes, Expect], seed: int = 0, results_dir: str | None = None, **kwargs: Any):
    """Run the chapter's grid for one seed through ``labkit.sweep``; returns the ``SweepReport``."""
    return run_grid(grid(profile.sizes, (seed,)), run, profile.run, results_dir, cost=cost, prefix=NAME, **kwargs)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def grid_table(configs: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (data, model) of a grid: parameters, bits per item, the MLS range and MAC libraries."""
    configs = list(configs)
    rows = []
    for config in (c for c in configs if c["method"] == "mls"):
        library = make_dataset(config, 64)
        count = param_count(config, library)
        macs = [c["n_items"] for c in configs if c["method"] == "mac" and c["data"] == config["data"]
                and c["d_model"] == config["d_model"] and c["seed"] == config["seed"]]
        rows.append({"data": config["data"], "d_model": config["d_model"], "params": count.total,
                     "non_embedding": count.non_embedding, "bits_per_item": library.information_bits() / 64,
                     "MLS search up to": config["max_size"], "MAC libraries": ", ".join(f"{n:,}" for n in macs)})
    return pd.DataFrame(rows)


def runs_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: data, width, method, library size (MAC) and the scalar results."""
    rows = []
    for record in records:
        config, result = record["config"], record["result"]
        row = {"data": config["data"], "d_model": config["d_model"], "method": config["method"],
               "library": config.get("n_items")}
        row.update({k: v for k, v in result.items() if not isinstance(v, Mapping | list)})
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["data", "d_model", "method", "library"], ignore_index=True, na_position="first")


def pairs_table(table: pd.DataFrame) -> pd.DataFrame:
    """MAC next to MLS of the same model: one row per MAC run, with both counts in items and bits, the
    ratio MAC/MLS and the bits per parameter of each count (the join chapter 3 plots and checks)."""
    mls = table[table.method == "mls"].set_index(["data", "d_model"])
    mac = table[table.method == "mac"]
    rows = []
    for _, a in mac.iterrows():
        m = mls.loc[(a["data"], a["d_model"])]
        rows.append({"data": a["data"], "d_model": a["d_model"], "params": m["params"], "library": int(a["library"]),
                     "MLS items": int(m["items"]), "MAC items": int(a["items"]),
                     "MAC / MLS": a["items"] / m["items"] if m["items"] else math.nan,
                     "MLS bits": m["bits"], "MAC bits": a["bits"],
                     "MLS bits/P": m["bits_per_param"], "MAC bits/P": a["bits_per_param"],
                     "loss bits/P": a["loss_bits_per_param"]})
    return pd.DataFrame(rows)


def probes_of(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """(data, d_model) → the MLS search's probes sorted by library size (items recalled vs size)."""
    return {(r["config"]["data"], r["config"]["d_model"]): sorted(r["result"]["probes"], key=lambda p: p["n"])
            for r in records if r["config"]["method"] == "mls"}


def summary_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """What ``python -m labkit sweep memorization`` prints: MAC next to MLS for every model."""
    return pairs_table(runs_table(records))
