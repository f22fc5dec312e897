"""Chapter 3's experiment: memorization capacity measured two ways, MLS and MAC.

Härmä et al. (harma2024empirical) define a model's memorization capacity by exact recall: the
**maximum library size** (MLS) is the largest library a fresh model memorises completely, found by
training on libraries of growing size; the **maximum attainable capacity** (MAC) is the number of
items recalled exactly after one training on a library larger than capacity, the cheap estimate.
Morris et al. (morris2025memorize) count bits from losses instead and find about 3.6 bits per
parameter on uniformly random data. This module is the whole experiment of chapter 3: its profiles,
the grid (data kinds × model widths × {one MLS search, MAC runs}), one run (``labkit.measure.mls`` /
``mac``), the tables (grid, runs, MAC next to MLS, bits per parameter, a library sample), the claims
set next to the papers' numbers (``claims``, for ``labkit.tables.paper_vs_lab``), the chapter's
figures (``figure_*``, built with ``labkit.plots``) and the committed ``cpu-full`` results.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from labkit import measure
from labkit.checks import invalid
from labkit.data.registry import make_dataset, max_people
from labkit.experiments.base import Execution, Profile, derive, load_results, results_path, run_grid
from labkit.experiments.base import provenance_line as base_provenance_line
from labkit.experiments.capacity import recipe
from labkit.experiments.models import TinyModels, model_config, param_count
from labkit.model import Transformer, count_params
from labkit.runtime import resolve_device
from labkit.tables import Table, table

if TYPE_CHECKING:
    import plotly.graph_objects as go

NAME = "memorization"
CHAPTER = "03_mls_vs_mac"
MORRIS_BITS_PER_PARAM = 3.6  # GPT-style models on uniformly random sequences (morris2025memorize)
MORRIS_FP32_BITS_PER_PARAM = 3.8  # the same models trained in fp32 (the lab trains in fp32 on CPUs)
#: Loss bits per parameter that count as reproducing Morris et al.'s plateau (3.6 within about 1/6).
MORRIS_REPRODUCED = (3.0, 4.2)
#: MAC and MLS "agree" when they are within this factor of each other (the band of the agreement plot).
AGREEMENT_FACTOR = 2.0


@dataclass(frozen=True)
class Sizes:
    """What the memorization sweep measures. ``datasets``: ``"uniform"`` (libraries of ``S`` value
    tokens over ``V``, keys in base ``key_base``) and/or ``"biod"`` (``biod_K`` attributes of
    ``biod_D`` values, C = L = 1, T = D); MLS searches by doubling from ``start`` up to ``max_size``,
    then bisection to ``tolerance`` (relative), counting a library memorised when a ``threshold``
    fraction of its items is recalled; a MAC library holds ``mac_bits_per_param`` × P bits. MLS and MAC
    run for the first of ``seeds``.

    ``lr_width`` (0: off) scales the learning rates ``lr`` and the plateau's by ``lr_width / d`` per
    model of width d (:func:`_lr`).

    The **plateau** series is Morris et al.'s measurement (morris2025memorize) on uniform data, trained
    with ``plateau_recipe`` (batch size, learning rate): one training per (model of ``plateau_models``,
    library of ``plateau_bits`` × P bits, seed of ``seeds``) at ``plateau_at`` exposures, counted by loss
    bits; and the widest model's largest library at every exposure budget of ``plateau_exposures`` (all
    of them for the first seed, those up to ``plateau_at`` for the others), the curve that shows whether
    ``plateau_at`` exposures reach the point where bits stop rising."""

    datasets: tuple[str, ...] = ("uniform",)
    models: TinyModels = TinyModels(widths=(8, 12))
    S: int = 4
    V: int = 16
    key_base: int = 10
    biod_K: int = 4
    biod_D: int = 16
    biod_name_pools: tuple[int, int] = (20, 20)
    exposures: int = 800
    batch_size: int = 256
    lr: float = 3e-2
    weight_decay: float = 0.05
    start: int = 128
    max_size: int = 4096
    tolerance: float = 0.5
    threshold: float = 1.0
    mac_bits_per_param: tuple[float, ...] = (2.0,)
    lr_width: int = 0
    plateau_recipe: tuple[int, float] = (256, 3e-2)
    plateau_models: TinyModels = TinyModels(widths=(8,))
    plateau_bits: tuple[float, ...] = (1.0, 2.0, 4.0)
    plateau_at: int = 800
    plateau_exposures: tuple[int, ...] = (100, 200, 400, 800)
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Expect:
    """The claim cell's bands: MLS and loss-based bits per parameter in ``bits_per_param``; MAC/MLS
    (items) in ``mac_over_mls``."""

    bits_per_param: tuple[float, float] = (0.5, 3.6)
    mac_over_mls: tuple[float, float] = (0.4, 2.0)


QUICK = Profile(Sizes(), Expect(), Execution(processes=2, threads=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(models=TinyModels(widths=(4, 8)), exposures=40, start=4, max_size=64,
                                      tolerance=0.5, plateau_models=TinyModels(widths=(4,)), plateau_bits=(2.0,),
                                      plateau_at=40, plateau_exposures=(20, 40)),
                    expect=dict(bits_per_param=(0.02, 3.6), mac_over_mls=(0.0, 1.5)), run=dict(processes=1)),
    "quick": QUICK,
    # MLS and MAC on random data and on bioD (8 attributes: 32 bits a person, as 8 random tokens), three
    # widths (P 2k-15k) at 1000 exposures, MLS from 32 items to 10%, MAC on libraries of 1.5 to 4 bits per
    # parameter (how MAC falls as the library outgrows the model); the plateau series on widths 16 and 24
    # (embeddings 6-10% of P), libraries of 1 to 5 bits per parameter at 2000 exposures, d = 24's largest
    # also at 250 to 4000 (seed 1: to 2000), seeds 0 and 1. Batch 128 and lr 5e-3 × 24 / d: the best of
    # the side runs at d = 8, 16 and 24 (results/README.md). ~600k training steps in all.
    "cpu-full": derive(QUICK, sizes=dict(datasets=("uniform", "biod"), models=TinyModels(widths=(8, 16, 24)),
                                         S=8, biod_K=8, biod_name_pools=(60, 60), exposures=1000, batch_size=128,
                                         lr=5e-3, lr_width=24, start=32, max_size=8192, tolerance=0.1,
                                         mac_bits_per_param=(1.5, 2.0, 4.0),
                                         plateau_models=TinyModels(widths=(16, 24)), plateau_bits=(1.0, 2.0, 3.0, 5.0),
                                         plateau_recipe=(128, 5e-3), plateau_at=2000,
                                         plateau_exposures=(250, 500, 1000, 2000, 4000), seeds=(0, 1)),
                       expect=dict(mac_over_mls=(0.1, 2.0))),
    "full": derive(QUICK, sizes=dict(datasets=("uniform", "biod"), models=TinyModels(widths=(8, 12, 16, 24)),
                                     biod_name_pools=(40, 40), exposures=3000, lr=2e-2, start=32, max_size=16384,
                                     tolerance=0.1, mac_bits_per_param=(1.5, 2.0, 4.0, 8.0),
                                     plateau_models=TinyModels(widths=(32, 64, 128)),
                                     plateau_bits=(1.0, 2.0, 4.0, 8.0), plateau_recipe=(128, 5e-3), lr_width=24,
                                     plateau_at=8000, plateau_exposures=(1000, 2000, 4000, 8000, 16000),
                                     seeds=(0, 1)),
                   expect=dict(mac_over_mls=(0.1, 2.0)), run=dict(gpus=0.25)),  # tiny models: 4 per GPU on Ray
}
#: The committed cpu-full results that chapter 3 shows next to its own run (absent until regenerated).
PRECOMPUTED = results_path(NAME, "cpu-full")


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
    seeds = list(seeds)
    configs = []
    for seed in seeds[:1]:
        recipe_keys = {"exposures": sizes.exposures, "batch_size": sizes.batch_size, "lr": float(sizes.lr),
                       "weight_decay": float(sizes.weight_decay), "seed": int(seed)}
        for kind in sizes.datasets:
            data = _data(sizes, kind)
            limit = min(sizes.max_size, max_people(data))
            for model in sizes.models.keys():
                shared = {**data, **model, **recipe_keys, "lr": _lr(sizes, sizes.lr, model), "max_size": limit}
                per_item = make_dataset(shared, 100).information_bits() / 100
                params = param_count(shared, make_dataset(shared, min(limit, 1000))).total
                mac_sizes = [min(limit, max(1, round(b * params / per_item))) for b in sizes.mac_bits_per_param]
                configs.append({**shared, "method": "mls", "start": sizes.start, "tolerance": float(sizes.tolerance),
                                "threshold": float(sizes.threshold)})
                configs.extend({**shared, "method": "mac", "n_items": n} for n in dict.fromkeys(mac_sizes))
    return configs + plateau_grid(sizes, seeds)


def _lr(sizes: Sizes, lr: float, model: Mapping[str, Any]) -> float:
    """The learning rate of one model: ``lr``, or with ``lr_width`` set, ``lr × lr_width / d`` (Adam's
    best rate falls about as 1/width on these models; ``results/README.md`` has the side runs)."""
    return float(lr) if not sizes.lr_width else float(lr) * sizes.lr_width / int(model["d_model"])


def plateau_grid(sizes: Sizes, seeds: Iterable[int] = (0,)) -> list[dict[str, Any]]:
    """The plateau series (``Sizes``): MAC runs tagged ``"series": "plateau"``, counted by loss bits."""
    seeds = list(seeds)
    data = _data(sizes, "uniform")
    batch_size, lr = sizes.plateau_recipe
    configs = []
    for k, seed in enumerate(seeds):
        recipe_keys = {"batch_size": int(batch_size), "lr": float(lr), "weight_decay": float(sizes.weight_decay),
                       "seed": int(seed)}
        for model in sizes.plateau_models.keys():
            shared = {**data, **model, **recipe_keys, "lr": _lr(sizes, lr, model), "method": "mac",
                      "series": "plateau"}
            per_item = make_dataset(shared, 100).information_bits() / 100
            params = param_count(shared, make_dataset(shared, 1000)).total
            sizes_n = [max(1, round(b * params / per_item)) for b in sizes.plateau_bits]
            widest = int(model["d_model"]) == max(sizes.plateau_models.widths)
            budgets = [e for e in sizes.plateau_exposures if widest and (k == 0 or e <= sizes.plateau_at)]
            runs = {(n, sizes.plateau_at) for n in sizes_n} | {(max(sizes_n), e) for e in budgets}
            configs.extend({**shared, "n_items": n, "exposures": int(e)} for n, e in sorted(runs))
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


def trained_records(config: Mapping[str, Any]) -> float:
    """Records (items × exposures) a run trains on, for ``labkit.experiments.costs``: a MAC run, its
    library; an MLS search, about (3 + log2(1 / tolerance)) libraries of the size it will find (doubling
    from ``start`` sums to about 3 × MLS, each bisection step trains about one more), that size taken as
    the library that holds 2 bits per parameter (an estimate: MLS is what the search measures)."""
    exposures = float(config.get("exposures", 1))
    if config.get("method") != "mls":
        return float(config.get("n_items", 0)) * exposures
    sample = make_dataset(config, 100)
    per_item = sample.information_bits() / 100
    mls = min(float(config["max_size"]), 2.0 * param_count(config, sample).total / per_item)
    return (3 + math.log2(1 / float(config.get("tolerance", 0.5)))) * mls * exposures


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
        macs = [c["n_items"] for c in configs if c["method"] == "mac" and "series" not in c
                and c["data"] == config["data"] and c["d_model"] == config["d_model"] and c["seed"] == config["seed"]]
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
               "series": config.get("series", "main"), "exposures": config["exposures"], "seed": config["seed"],
               "library": config.get("n_items")}
        row.update({k: v for k, v in result.items() if not isinstance(v, Mapping | list)})
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["series", "data", "d_model", "method", "library", "exposures", "seed"],
                             ignore_index=True, na_position="first")


def pairs_table(table: pd.DataFrame) -> pd.DataFrame:
    """MAC next to MLS of the same model: one row per MAC run, with both counts in items and bits, the
    ratio MAC/MLS and the bits per parameter of each count (the join chapter 3 plots and checks)."""
    table = table[table.series == "main"]
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


def sample_table(config: Mapping[str, Any], n: int = 3) -> Table:
    """The first ``n`` items of the config's library as the model reads them (``uniform``: the key's digit
    tokens, then the value tokens; other kinds: the whole record), with the bits each item holds."""
    dataset = make_dataset(config, n)
    per_item = dataset.information_bits() / dataset.n_items
    rows = []
    for i, record in enumerate(dataset.exposure(0).tokens[:n]):
        row: dict[str, Any] = {"item": i}
        tokens = dataset.decode(record).split()
        if config["data"] == "uniform":
            row.update({"key": " ".join(tokens[:dataset.key_digits]), "value": " ".join(tokens[dataset.key_digits:])})
        else:
            row["record"] = " ".join(tokens)
        rows.append({**row, "bits": per_item})
    return table(rows, formats={"bits": ".1f"}, index="item")


def bits_per_param_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per model (``model``, ``P``): three counts of its memory in bits per parameter, MLS and MAC
    (exact recall) and the MAC run's loss bits (Morris-style, partial knowledge credited). With several
    MAC libraries per model, the largest one's (the one furthest beyond capacity)."""
    pairs = pairs_table(runs)
    largest = pairs.sort_values("library").groupby(["data", "d_model"], sort=True).tail(1)
    rows = [{"model": f"{r['data']} d={r['d_model']}", "P": int(r["params"]), "MAC library": int(r["library"]),
             "MLS bits/P": r["MLS bits/P"], "MAC bits/P": r["MAC bits/P"], "loss bits/P": r["loss bits/P"]}
            for _, r in largest.sort_values(["data", "d_model"]).iterrows()]
    return pd.DataFrame(rows)


def plateau_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The plateau series of a :func:`runs_table`, one row per (model, library, exposures): the library's
    information per parameter and the loss bits per parameter (all and non-embedding; mean, min and max
    over the seeds), the fraction of items recalled exactly, and how many seeds ran."""
    part = runs[runs.series == "plateau"].copy()
    if not len(part):
        return pd.DataFrame(columns=["d_model", "params", "non_embedding_params", "library", "library bits/P",
                                     "exposures", "seeds", "loss bits/P", "low", "high", "loss bits/P_ne",
                                     "recalled"])
    part["library"] = part["library"].astype(int)
    part["library bits/P"] = part["library"] * part["bits_per_item"] / part["params"]
    part["loss bits/P_ne"] = part["loss_bits"] / part["non_embedding_params"]
    grouped = part.groupby(["d_model", "library", "exposures"], sort=True)
    table = grouped.agg(**{"params": ("params", "first"), "non_embedding_params": ("non_embedding_params", "first"),
                           "library bits/P": ("library bits/P", "first"), "seeds": ("seed", "nunique"),
                           "loss bits/P": ("loss_bits_per_param", "mean"), "low": ("loss_bits_per_param", "min"),
                           "high": ("loss_bits_per_param", "max"), "loss bits/P_ne": ("loss bits/P_ne", "mean"),
                           "recalled": ("fraction_recalled", "mean")}).reset_index()
    return table[["d_model", "params", "non_embedding_params", "library", "library bits/P", "exposures", "seeds",
                  "loss bits/P", "low", "high", "loss bits/P_ne", "recalled"]]


def plateau_values(runs: pd.DataFrame) -> pd.DataFrame:
    """Each plateau model's capacity: the largest mean loss bits per parameter over its libraries at the
    series' plateau budget (the most exposures every library had), with that library and its spread."""
    table = plateau_table(runs)
    rows = []
    for d, part in table.groupby("d_model", sort=True):
        at = part.groupby("exposures")["library"].nunique()
        budget = int(at[at == at.max()].index.max())
        best = part[part.exposures == budget].sort_values("loss bits/P").iloc[-1]
        rows.append({"d_model": int(d), "params": int(best["params"]), "non_embedding_params":
                     int(best["non_embedding_params"]), "exposures": budget, "library": int(best["library"]),
                     "library bits/P": best["library bits/P"], "seeds": int(best["seeds"]),
                     "loss bits/P": best["loss bits/P"], "low": best["low"], "high": best["high"],
                     "loss bits/P_ne": best["loss bits/P_ne"]})
    return pd.DataFrame(rows)


PLATEAU_COLUMNS = {"d_model": "d", "params": "P", "library": "library", "library bits/P": "library bits/P",
                   "exposures": "exposures", "seeds": "seeds", "loss bits/P": "loss bits/P",
                   "loss bits/P_ne": "loss bits/P (non-emb.)", "recalled": "recalled"}
CAPACITY_COLUMNS = {"d_model": "d", "params": "P", "non_embedding_params": "P (non-emb.)", "exposures": "exposures",
                    "library": "library", "seeds": "seeds", "loss bits/P": "plateau bits/P", "low": "min",
                    "high": "max", "loss bits/P_ne": "plateau bits/P (non-emb.)"}
_FORMATS = {"params": ",d", "non_embedding_params": ",d", "library": ",d", "exposures": ",d",
            "library bits/P": ".2f", "loss bits/P": ".2f", "low": ".2f", "high": ".2f", "loss bits/P_ne": ".2f",
            "recalled": ".0%"}


def _view(rows: pd.DataFrame, columns: Mapping[str, str]) -> Table:
    return table(rows, columns=columns, formats={key: fmt for key, fmt in _FORMATS.items() if key in columns})


def plateau_view(runs: pd.DataFrame) -> Table:
    """:func:`plateau_table` as the chapter shows it (mean over seeds per model, library and exposures)."""
    return _view(plateau_table(runs), PLATEAU_COLUMNS)


def plateau_values_view(runs: pd.DataFrame) -> Table:
    """:func:`plateau_values` as the chapter shows it: each model's capacity with its seed spread."""
    return _view(plateau_values(runs), CAPACITY_COLUMNS)


def _mls_growth(runs: pd.DataFrame) -> tuple[str, bool]:
    """"128 → 256 items (d = 8 → 12)" per data kind, and whether MLS grows strictly with width."""
    texts, grows = [], True
    for data, group in runs[runs.method == "mls"].sort_values("d_model").groupby("data", sort=True):
        items = [int(n) for n in group["items"]]
        grows = grows and all(a < b for a, b in zip(items, items[1:], strict=False))
        widths = " → ".join(str(int(d)) for d in group["d_model"])
        texts.append(f"{data}: {' → '.join(f'{n:,}' for n in items)} items (d = {widths})")
    return "; ".join(texts), grows


def claims(runs: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The chapter's claims with the papers' numbers next to the lab's, for ``labkit.tables.paper_vs_lab``.

    ``runs``: a :func:`runs_table`; None (results not available) gives the same claims marked "not run".
    MLS grows with model size (harma2024empirical); MAC agrees with MLS within ``AGREEMENT_FACTOR``
    (harma2024empirical); the loss bits per parameter at the plateau (:func:`plateau_values`, best model;
    without a plateau series, the MAC runs' best) reach Morris et al.'s 3.6 (morris2025memorize;
    ``MORRIS_REPRODUCED``), with the non-embedding count and the exact-recall count in the note.
    """
    growth = ratio = loss_bpp = None
    agree = grows = None
    note = "exact recall counts fewer bits (MLS bits/P)"
    if runs is not None and len(runs):
        pairs = pairs_table(runs)
        growth, grows = _mls_growth(runs)
        ratios = sorted(float(r) for r in pairs["MAC / MLS"])
        ratio = f"{ratios[0]:.2f}" if len(ratios) == 1 else f"{ratios[0]:.2f} to {ratios[-1]:.2f}"
        agree = all(1 / AGREEMENT_FACTOR <= r <= AGREEMENT_FACTOR for r in ratios)
        mls = runs[runs.method == "mls"]["bits_per_param"]
        note = f"exact recall (MLS): {mls.min():.2f} to {mls.max():.2f} bits/P"
        plateau = plateau_values(runs)
        if len(plateau):  # Morris et al.'s count: the plateau series' best model
            best = plateau.sort_values("loss bits/P").iloc[-1]
            loss_bpp = float(best["loss bits/P"])
            spread = f" (seeds {best['low']:.2f}-{best['high']:.2f})" if best["seeds"] > 1 else ""
            note = (f"d={int(best['d_model'])}, {int(best['exposures']):,} exposures{spread}; non-embedding "
                    f"{best['loss bits/P_ne']:.2f}; fp32: {MORRIS_FP32_BITS_PER_PARAM:g}; {note}")
        else:  # no plateau series: the MAC runs' loss bits, the nearest count there is
            loss_bpp = float(pairs["loss bits/P"].max())
    return [
        {"claim": "MLS grows with model size", "paper": "grows with P", "lab": growth, "status": grows},
        {"claim": "MAC tracks MLS (MAC / MLS, items)", "paper": "≈ 1", "lab": ratio, "status": agree,
         "note": f"agreement: within ×{AGREEMENT_FACTOR:g}"},
        {"claim": "bits per parameter at the plateau (loss bits, random data)", "paper": MORRIS_BITS_PER_PARAM,
         "lab": loss_bpp, "expect": MORRIS_REPRODUCED, "note": note},
    ]


# --------------------------------------------------------------------------------------------------
# Figures (labkit.plots, imported when drawn: sweep workers never need plotly)
# --------------------------------------------------------------------------------------------------


def figure_recall(records: Iterable[Mapping[str, Any]], title: str = "Items recalled exactly vs library size"
                  ) -> go.Figure:
    """Items recalled against library size, log-log: every MLS probe of each model as a curve, its MAC
    runs as diamonds of the same color, and the line "all recalled" (y = x) that probes below capacity
    sit on."""
    from labkit import plots

    records = list(records)
    runs, probes = runs_table(records), probes_of(records)
    lines: dict[str, dict[str, Any]] = {}
    sizes: list[float] = []
    for k, ((data, d), found) in enumerate(sorted(probes.items())):
        model = runs[(runs.data == data) & (runs.d_model == d) & (runs.series == "main")]
        mls = int(model[model.method == "mls"]["items"].iloc[0])
        macs = model[model.method == "mac"].sort_values("library")
        lines[f"{data}, d={d}: MLS probes (MLS = {mls:,})"] = dict(
            x=[p["n"] for p in found], y=[p["fraction_recalled"] * p["n"] for p in found], mode="lines+markers",
            color=plots.color(k))
        lines[f"{data}, d={d}: MAC"] = dict(x=list(macs["library"]), y=list(macs["items"]), mode="markers",
                                            symbol="diamond", color=plots.color(k))
        sizes += [p["n"] for p in found] + [float(n) for n in macs["library"]]
    low, high = min(sizes) / 2, max(sizes)
    lines["all recalled (y = x)"] = dict(x=[low, high], y=[low, high], dash="dot", color="#888")
    return plots.curves(lines, title=title, x_title="library size (items)", y_title="items recalled",
                        log_x=True, log_y=True)


def figure_agreement(pairs: pd.DataFrame, title: str = "MAC against MLS (same model, same training recipe)"
                     ) -> go.Figure:
    """MAC against MLS of the same model (a :func:`pairs_table`), in items (labelled) and in bits, with
    y = x and the band of agreement within ``AGREEMENT_FACTOR``."""
    from labkit import plots

    labels = [f"{r['data']} d={r['d_model']}, MAC on {int(r['library']):,}" for _, r in pairs.iterrows()]
    return plots.agreement_plot(
        {"items": dict(x=list(pairs["MLS items"]), y=list(pairs["MAC items"]), text=labels),
         "bits": dict(x=list(pairs["MLS bits"]), y=list(pairs["MAC bits"]), symbol="square")},
        band=AGREEMENT_FACTOR, title=title, x_title="MLS", y_title="MAC")


def figure_bits_per_param(bits: pd.DataFrame, title: str = "Memorized bits per parameter") -> go.Figure:
    """Bars of a :func:`bits_per_param_table`: MLS, MAC and loss bits per parameter for each model, with
    Morris et al.'s 3.6 as a reference line."""
    from labkit import plots

    return plots.grouped_bars(
        list(bits["model"]),
        {"MLS (exact recall)": list(bits["MLS bits/P"]), "MAC (exact recall)": list(bits["MAC bits/P"]),
         "MAC library, loss bits (Morris-style)": list(bits["loss bits/P"])},
        title=title, y_title="bits per parameter",
        hlines={f"Morris et al.: {MORRIS_BITS_PER_PARAM:g}": MORRIS_BITS_PER_PARAM})


def figure_plateau(runs: pd.DataFrame, title: str = "Loss bits per parameter vs library size (Morris-style)"
                   ) -> go.Figure:
    """Morris et al.'s plot for the plateau series (:func:`plateau_table`): loss bits per parameter
    against the library's information per parameter at the plateau budget, one curve per model with the
    seeds' spread as error bars; "everything memorized" (y = x) and Morris et al.'s 3.6 as references.
    Bits follow y = x while the library is small, then flatten at the model's capacity."""
    from labkit import plots

    table = plateau_table(runs)
    if not len(table):
        raise ValueError("runs has no plateau series; allowed: runs of a profile with plateau_models")
    values = plateau_values(runs).set_index("d_model")
    lines: dict[str, Any] = {}
    for k, (d, part) in enumerate(table.groupby("d_model", sort=True)):
        part = part[part.exposures == values.loc[d, "exposures"]].sort_values("library")
        lines[f"d={d} (P = {int(part.params.iloc[0]):,}), {int(values.loc[d, 'exposures']):,} exposures"] = dict(
            x=list(part["library bits/P"]), y=list(part["loss bits/P"]), mode="lines+markers",
            spread=(list(part["low"]), list(part["high"])), color=plots.color(k))
    xs = list(table["library bits/P"])
    lo, hi = min(xs) / 1.3, max(xs) * 1.1
    lines["everything memorized (y = x)"] = dict(x=[lo, min(hi, 2 * MORRIS_BITS_PER_PARAM)],
                                                 y=[lo, min(hi, 2 * MORRIS_BITS_PER_PARAM)], dash="dot", color="#888")
    return plots.curves(lines, title=title, x_title="library information per parameter (bits)",
                        y_title="loss bits per parameter", log_x=True,
                        hlines={f"Morris et al.: {MORRIS_BITS_PER_PARAM:g}": MORRIS_BITS_PER_PARAM})


def figure_plateau_exposures(runs: pd.DataFrame, title: str = "Loss bits per parameter vs exposures "
                             "(largest library)") -> go.Figure:
    """The plateau series' largest library of each model trained for each exposure budget: loss bits per
    parameter (mean, seeds' spread as error bars) against exposures, log x. Where the curve flattens,
    longer training no longer adds bits: the budget reached the plateau."""
    from labkit import plots

    table = plateau_table(runs)
    if not len(table):
        raise ValueError("runs has no plateau series; allowed: runs of a profile with plateau_models")
    lines: dict[str, Any] = {}
    for k, (d, part) in enumerate(table.groupby("d_model", sort=True)):
        part = part[part.library == part.library.max()].sort_values("exposures")
        lines[f"d={d}: {int(part.library.iloc[0]):,} items ({part['library bits/P'].iloc[0]:.1f} bits/P)"] = dict(
            x=list(part["exposures"]), y=list(part["loss bits/P"]), mode="lines+markers",
            spread=(list(part["low"]), list(part["high"])), color=plots.color(k))
    return plots.curves(lines, title=title, x_title="exposures (each item seen this often)",
                        y_title="loss bits per parameter", log_x=True,
                        hlines={f"Morris et al.: {MORRIS_BITS_PER_PARAM:g}": MORRIS_BITS_PER_PARAM})


# --------------------------------------------------------------------------------------------------
# Precomputed results (results/memorization_cpu_full.json)
# --------------------------------------------------------------------------------------------------


def precomputed(path: str | None = None) -> dict[str, Any] | None:
    """The committed cpu-full results (``{"provenance", "records"}``), or None when the file is absent."""
    return load_results(path or PRECOMPUTED)


def provenance_line(results: Mapping[str, Any] | None, profile: str = "cpu-full") -> str:
    """Where this chapter's precomputed results come from, or the command that makes them
    (``base.provenance_line``)."""
    return base_provenance_line(results, NAME, profile)
