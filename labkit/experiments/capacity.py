"""Chapter 2's experiment: bits learned against parameters, the 2 bits/param law of Part 3.3.

Part 3.3 (allenzhu2024part33) trains GPT-2 models of many sizes on bioS / bioD data that holds more
than the model can store and finds that, with 1000 exposures per person, every model stores about
2 bits per parameter (R = bits / P), and about 1 bit per parameter at 100 exposures. This module is
the whole experiment: its profiles, the grid (model sizes × exposures × seeds, with N sized so the data
holds ``factor`` × 2 bits × P), one run (build, train, measure bits with ``labkit.measure``), and the
tables chapter 2 shows.

Config keys of one run (JSON): the data spec (``labkit.data.registry``: ``data``, ``N`` and the kind's
keys), the model keys (``labkit.experiments.models``) and the recipe keys ``exposures, batch_size, lr,
weight_decay, seed``. Threads and device are not part of a config: they do not change what is measured.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from labkit import measure
from labkit.batched import BatchableRun, RunSetup
from labkit.data.biod import BioD
from labkit.data.registry import data_keys, make_dataset, max_people
from labkit.experiments.base import Execution, Profile, derive, load_results, results_path, run_grid
from labkit.experiments.models import GPT2Models, Models, TinyModels, model_config, param_count
from labkit.model import Transformer, count_params
from labkit.train import TrainConfig, TrainHistory

NAME = "capacity"
CHAPTER = "02_capacity_scaling_law"
#: Part 3.3's peak R (GPT-2, bioS / bioD, all parameters counted) by exposures: (as quoted, number)
PAPER_PEAK_R = {100: ("≈ 1", 1.0), 1000: ("≥ 2, ≤ 2.3", 2.0)}
RECIPE_KEYS = ("exposures", "batch_size", "lr", "weight_decay", "seed")


# --------------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """What the capacity sweep measures. ``data``: a data spec (``labkit.data.registry``); ``models``:
    the model family and sizes; ``exposures``: the exposure budgets compared; ``factor``: N is chosen so
    the data holds ``factor`` × 2 bits × P (capacity, not data, is the bottleneck); ``seeds``: the seeds
    of ``python -m labkit sweep capacity`` (a notebook runs its own seed)."""

    data: dict[str, Any] = field(default_factory=lambda: {"kind": "biod", "K": 8, "D": 64, "T": 64,
                                                          "name_pools": (30, 30)})
    models: Models = TinyModels(widths=(8, 12))
    exposures: tuple[int, ...] = (100, 1000)
    lr: float = 3e-2
    batch_size: int = 128
    weight_decay: float = 0.05
    factor: float = 2.0
    seeds: tuple[int, ...] = (0, 1)


@dataclass(frozen=True)
class Expect:
    """The claim cell's thresholds: peak R at the most exposures at least ``R_min`` and at most
    ``R_max`` (above Part 3.3's 2.3 by a margin: beyond it, suspect the bit accounting), and at least
    ``gap_min`` above the peak R at the fewest exposures."""

    R_min: float = 1.5
    gap_min: float = 1.0
    R_max: float = 2.6


QUICK = Profile(Sizes(), Expect(), Execution(processes=2, threads=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 4, "D": 16, "T": 16, "name_pools": (10, 10)},
                                      models=TinyModels(widths=(8,)), exposures=(10, 300), seeds=(0,)),
                    expect=dict(R_min=0.2, gap_min=0.2), run=dict(processes=1)),
    "quick": QUICK,
    "cpu-full": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 8, "D": 256, "T": 256, "name_pools": (100, 100)},
                                         models=TinyModels(widths=(16, 24, 32, 40)), lr=5e-3, factor=2.5,
                                         seeds=(0,)),
                       expect=dict(R_min=1.8, gap_min=0.5)),
    "full": derive(QUICK, sizes=dict(data={"kind": "bios", "mode": "fresh"},
                                     models=GPT2Models(shapes=((2, 1), (4, 1), (2, 2), (4, 2))), lr=1e-3,
                                     batch_size=256, weight_decay=0.02, factor=2.5),
                   expect=dict(R_min=1.8, gap_min=0.5), run=dict(processes=1)),
}
#: The committed cpu-full results that chapter 2 shows next to its own run.
PRECOMPUTED = results_path(NAME, "cpu-full")


# --------------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------------


def people_for_capacity(config: Mapping[str, Any], factor: float = 2.5, bits_per_param: float = 2.0) -> int:
    """N such that the data holds about ``factor × bits_per_param × P`` bits (P of the config's model).

    Why: to measure a model's *capacity*, the data must hold more than it can store; Part 3.3 sweeps
    N for each size, the lab sizes N once. P depends a little on N (embedding rows of names in use),
    so N is found by a few fixed-point steps.
    """
    ceiling = max_people(config)
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


def grid(sizes: Sizes, seeds: Sequence[int] = (0,)) -> list[dict[str, Any]]:
    """Configs of the sweep: each model of ``sizes.models`` × ``sizes.exposures`` × ``seeds``."""
    configs = []
    for model in sizes.models.keys():
        base = {**data_keys(sizes.data), **model}
        n = people_for_capacity(base, sizes.factor)
        for exposures in sizes.exposures:
            for seed in seeds:
                configs.append({**base, "N": n, "exposures": int(exposures), "batch_size": sizes.batch_size,
                                "lr": float(sizes.lr), "weight_decay": float(sizes.weight_decay), "seed": int(seed)})
    return configs


def recipe(config: Mapping[str, Any]) -> TrainConfig:
    """The training recipe of a config (its ``RECIPE_KEYS``; the rest stays at the lab's defaults)."""
    return TrainConfig(**{k: config[k] for k in RECIPE_KEYS if k in config})


# --------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------


class CapacityRun(BatchableRun):
    """One capacity run: build (``setup``), train, measure (``finish``). Batchable, so the sweep
    executors train runs of one shape together (seeds or learning rates of one model size, each on its
    own data); either way a config's result is the same up to float rounding. Use :data:`run`."""

    def setup(self, config: dict[str, Any]) -> RunSetup:
        t0 = time.perf_counter()
        dataset = make_dataset(config)
        model = Transformer(model_config(config, dataset), seed=int(config.get("seed", 0)))
        counts = count_params(model, used_tokens=dataset.used_tokens())
        return RunSetup(model, dataset, recipe(config), extra={"counts": counts, "t0": t0})

    def finish(self, config: dict[str, Any], setup: RunSetup, history: TrainHistory) -> dict[str, Any]:
        """Bits learned of the trained model. Keys: ``bits``, ``R`` (bits / all params, unused embedding
        rows excluded), ``R_nonembedding``, ``params``, ``non_embedding_params``, ``param_groups``,
        ``information_bits``, ``fraction_learned``, ``breakdown`` / ``unclipped`` (Def 4.1 / 4.3 terms),
        ``final_loss``, ``wall_time`` (since this run's setup), ``train_time`` (a batch's share when
        trained together), ``steps``, ``tokens_seen``, ``device``, ``threads``, ``history``."""
        counts = setup.extra["counts"]
        m = measure.bits_learned(setup.model, setup.dataset, device=history.device, params=counts)
        return {
            "bits": m.bits, "R": m.bits_per_param, "R_nonembedding": m.bits_per_nonembedding_param,
            "params": m.params, "non_embedding_params": m.non_embedding_params, "param_groups": counts.as_dict(),
            "information_bits": m.information_bits, "fraction_learned": m.fraction_learned,
            "breakdown": m.breakdown, "unclipped": m.unclipped, "final_loss": history.final_loss,
            "wall_time": time.perf_counter() - setup.extra["t0"], "train_time": history.wall_time,
            "steps": history.total_steps, "tokens_seen": history.tokens_seen, "device": history.device,
            "threads": torch.get_num_threads(), "history": history.summary(),
        }  # fmt: skip


#: ``run(config)``: train the config's model on its data and measure bits learned (keys in
#: ``CapacityRun.finish``); batchable by the sweep executors.
run = CapacityRun()


def cost(config: Mapping[str, Any]) -> float:
    """Rough relative cost of a run (items × exposures × width²), so that sweeps start long runs first."""
    return float(config.get("N", 1)) * float(config.get("exposures", 1)) * float(config.get("d_model", 1)) ** 2


def sweep(profile: Profile[Sizes, Expect], seed: int = 0, results_dir: str | None = None, **kwargs: Any):
    """Run the chapter's grid for one seed (``labkit.sweep``: progress bar, one JSON file per run,
    resumable with ``results_dir``); returns the ``SweepReport``."""
    return run_grid(grid(profile.sizes, (seed,)), run, profile.run, results_dir, cost=cost, prefix=NAME, **kwargs)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def grid_table(configs: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model of a grid: its parameters, N and the data's information against 2 bits × P."""
    rows, seen = [], set()
    for config in configs:
        key = (config["model"], config["d_model"], config["n_layer"], config["n_head"])
        if key in seen:
            continue
        seen.add(key)
        dataset = make_dataset(config)
        count = param_count(config, dataset)
        bits = dataset.information_bits()
        rows.append({"d_model": config["d_model"], "n_head": config["n_head"], "params": count.total,
                     "non_embedding": count.non_embedding, "N": config["N"], "information_bits": bits,
                     "information / 2P": bits / (2 * count.total),
                     "exposures": ", ".join(str(c["exposures"]) for c in configs if
                                            (c["model"], c["d_model"], c["n_layer"], c["n_head"]) == key
                                            and c["seed"] == config["seed"])})
    return pd.DataFrame(rows)


def runs_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per sweep record: the config's model, data and recipe keys with the scalar results,
    sorted by exposures, then parameters."""
    rows = []
    for record in records:
        config, result = record["config"], record["result"]
        row = {k: config.get(k) for k in ("model", "d_model", "n_layer", "n_head", "data", "N", "exposures", "lr",
                                          "batch_size", "seed")}
        row.update({k: v for k, v in result.items() if not isinstance(v, Mapping | list)})
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["exposures", "params", "seed"], ignore_index=True) if rows else table


def by_size(table: pd.DataFrame) -> pd.DataFrame:
    """Runs averaged over seeds per (exposures, model size): mean ``R``, ``R_nonembedding`` and ``bits``,
    ``R_min`` / ``R_max`` over seeds and ``n_seeds``; sorted by exposures, then params."""
    keys = ["exposures", "model", "d_model", "n_layer", "params", "non_embedding_params", "N"]
    grouped = table.groupby(keys, sort=True)
    out = grouped[["R", "R_nonembedding", "bits"]].mean()
    out["R_min"], out["R_max"], out["n_seeds"] = grouped["R"].min(), grouped["R"].max(), grouped["R"].size()
    return out.reset_index().sort_values(["exposures", "params"], ignore_index=True)


def peaks(table: pd.DataFrame) -> pd.DataFrame:
    """Part 3.3's capacity ratio: per exposure budget, the model size with the highest seed-averaged R
    (indexed by exposures)."""
    means = by_size(table)
    return means.loc[means.groupby("exposures")["R"].idxmax()].set_index("exposures")


def paper_table(runs: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Peak R by exposures: Part 3.3's number next to each of ``runs`` (label → its ``peaks``), as
    "all params / non-embedding (d of the peak)"."""
    levels = sorted(set(PAPER_PEAK_R).union(*(set(p.index) for p in runs.values())))
    rows = []
    for e in levels:
        row: dict[str, Any] = {"exposures": e, "paper (Part 3.3)": PAPER_PEAK_R.get(e, ("-",))[0]}
        for label, p in runs.items():
            row[label] = (f"{p.at[e, 'R']:.2f} / {p.at[e, 'R_nonembedding']:.2f} (d={p.at[e, 'd_model']})"
                          if e in p.index else "not run")
        rows.append(row)
    return pd.DataFrame(rows).set_index("exposures")


def no_knowledge_loss(dataset: BioD) -> float:
    """Training loss (nats per target token) of a model that knows the name and value *marginals* of a
    bioD dataset but no person: the plateau a training curve sits on before it starts to memorise."""
    names = sum(math.log(p) for p in dataset.name_pools)
    return (names + dataset.K * dataset.C * math.log(dataset.D)) / (dataset.record_length - 1)


def precomputed() -> dict[str, Any] | None:
    """The committed cpu-full results (``{"provenance", "records"}``), or None when absent."""
    return load_results(PRECOMPUTED)


def summary_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """What ``python -m labkit sweep capacity`` prints: R by exposures and model size, over seeds."""
    return by_size(runs_table(records))
