"""Chapter 2's experiment: bits learned against parameters, the 2 bits/param law of Part 3.3.

Part 3.3 (allenzhu2024part33) trains GPT-2 models of many sizes on bioS / bioD data that holds more
than the model can store and finds that, with 1000 exposures per person, every model stores about
2 bits per parameter (R = bits / P), and about 1 bit per parameter at 100 exposures. This module is
the whole experiment: its profiles, the grid (model sizes × exposures × seeds, with N sized so the data
holds ``factor`` × 2 bits × P), one run (build, train, measure bits with ``labkit.measure``), and
what chapter 2 shows: the tables (``*_view``, ``labkit.tables``), the paper's claims next to a sweep's
numbers (``claims``, for ``labkit.tables.paper_vs_lab``) and the figures (``figure_*``, ``labkit.plots``).

Config keys of one run (JSON): the data spec (``labkit.data.registry``: ``data``, ``N`` and the kind's
keys), the model keys (``labkit.experiments.models``) and the recipe keys ``exposures, batch_size, lr,
weight_decay, seed``. Threads and device are not part of a config: they do not change what is measured.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from labkit import measure
from labkit.batched import BatchableRun, RunSetup
from labkit.data.base import TokenDataset
from labkit.data.biod import BioD
from labkit.data.registry import data_keys, make_dataset, max_people
from labkit.experiments.base import (
    Execution,
    Profile,
    derive,
    load_results,
    regenerate_command,
    results_path,
    run_grid,
)
from labkit.experiments.models import GPT2Models, Models, TinyModels, load_trained, model_config, param_count
from labkit.model import Transformer, count_params
from labkit.tables import Table, table
from labkit.train import TrainConfig, TrainHistory, steps_per_exposure

if TYPE_CHECKING:
    import plotly.graph_objects as go

NAME = "capacity"
CHAPTER = "02_capacity_scaling_law"
#: Part 3.3's peak R (GPT-2, bioS / bioD, all parameters counted) by exposures: (as quoted, number)
PAPER_PEAK_R = {100: ("≈ 1", 1.0), 1000: ("≥ 2, ≤ 2.3", 2.0)}
#: The range of R that counts as the paper's "≈ 1 bit per parameter" at 100 exposures (no profile
#: expects it: the lab's small datasets give too few optimizer steps at 100 exposures, chapter 2).
PAPER_ABOUT_ONE = (0.75, 1.25)
#: Part 3.3's ceiling: no model stores more than 2.3 bits per parameter.
PAPER_CEILING = 2.3
#: The log-log slope of bits against P that counts as "bits grow linearly with P" (within 10%).
LINEAR_SLOPE = (0.9, 1.1)
RECIPE_KEYS = ("exposures", "batch_size", "lr", "weight_decay", "seed")


# --------------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """What the capacity sweep measures. ``data``: a data spec (``labkit.data.registry``); ``models``:
    the model family and sizes; ``exposures``: the exposure budgets compared; ``factor``: N is chosen so
    the data holds ``factor`` × 2 bits × P (capacity, not data, is the bottleneck); ``seeds``: the seeds
    of ``python -m labkit sweep capacity`` (a notebook runs its own seed); ``recipes``: per exposure
    budget a ``(batch_size, lr)`` replacing the shared ones (fewer exposures need a smaller batch for
    enough optimizer steps); ``plateau_width`` / ``plateau_factors``: the N sweep at one model size
    (configs of ``series="plateau"`` with N = factor × the sized N), where bits stop growing with N;
    ``knobs``: the parameterized law instead of the sizes grid, ``(knob, value)`` changes of one bioD
    knob (K, C, D, L, T) each, plus the unchanged data (``series="law"``, :data:`LAW_KNOBS`)."""

    data: dict[str, Any] = field(default_factory=lambda: {"kind": "biod", "K": 8, "D": 64, "T": 64,
                                                          "name_pools": (30, 30)})
    models: Models = TinyModels(widths=(8, 10))
    exposures: tuple[int, ...] = (100, 1000)
    lr: float = 3e-2
    batch_size: int = 128
    weight_decay: float = 0.05
    factor: float = 1.5
    seeds: tuple[int, ...] = (0, 1)
    recipes: dict[int, tuple[int, float]] = field(default_factory=dict)
    plateau_width: int = 0
    plateau_factors: tuple[float, ...] = ()
    knobs: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Expect:
    """The claim cell's thresholds: peak R at the most exposures at least ``R_min`` and at most
    ``R_max`` (above Part 3.3's 2.3 by a margin: beyond it, suspect the bit accounting), and at least
    ``gap_min`` above the peak R at the fewest exposures; for the parameterized law, ``law_off``: the
    knobs whose settings fall off the law at this scale (measured), left out of the R band."""

    R_min: float = 1.5
    gap_min: float = 1.0
    R_max: float = 2.6
    law_off: tuple[str, ...] = ()


QUICK = Profile(Sizes(), Expect(), Execution(processes=2, threads=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 4, "D": 16, "T": 16, "name_pools": (10, 10)},
                                      models=TinyModels(widths=(8,)), exposures=(10, 200), factor=2.0,
                                      seeds=(0,)),
                    expect=dict(R_min=0.1, gap_min=0.1), run=dict(processes=1)),
    "quick": QUICK,
    "cpu-full": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 8, "D": 256, "T": 256, "name_pools": (100, 100)},
                                         models=TinyModels(widths=(16, 24, 32, 40)), lr=1.5e-2, factor=2.5,
                                         seeds=(0, 1), recipes={100: (32, 9e-3)}, plateau_width=16,
                                         plateau_factors=(0.25, 0.5, 2.0, 4.0)),
                       expect=dict(R_min=1.8, gap_min=0.5)),
    # the parameterized law: width 16 (chapter 2's cpu-full recipe at 1000 exposures) on bioD with one
    # knob changed at a time from the cpu-full data (K = 8, C = 1, D = T = 256, L = 1); R band measured
    "law-cpu-full": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 8, "C": 1, "D": 256, "L": 1, "T": 256,
                                                   "name_pools": (100, 100)},
                                             models=TinyModels(widths=(16,)), exposures=(1000,), lr=1.5e-2,
                                             factor=2.5, seeds=(0,),
                                             knobs=(("K", 4), ("K", 16), ("C", 2), ("C", 4), ("D", 16), ("D", 64),
                                                    ("L", 2), ("L", 4), ("T", 512), ("T", 2048))),
                           # measured: K, C, D, T settings at R 2.15-2.38; L = 2 and 4 fall off (0.95, 1.67)
                           expect=dict(R_min=2.0, R_max=2.6, law_off=("L",))),
    "full": derive(QUICK, sizes=dict(data={"kind": "bios", "mode": "fresh"},
                                     models=GPT2Models(shapes=((2, 1), (4, 1), (2, 2), (4, 2))), lr=1e-3,
                                     batch_size=256, weight_decay=0.02, factor=2.5),
                   expect=dict(R_min=1.8, gap_min=0.5), run=dict(processes=1, gpus=1.0)),
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


#: The bioD knobs the parameterized law turns (Part 3.3's section 5 varies each over the range here).
LAW_KNOBS = {"K": "attributes", "C": "chunks per value", "D": "values per attribute", "L": "tokens per chunk",
             "T": "value vocabulary"}
#: Part 3.3's ranges of the knobs over which peak R stays ≥ 2 at 1000 exposures.
PAPER_LAW_RANGES = {"K": "—", "C": "1-50", "D": "10-10⁴", "L": "1-50", "T": "20-4·10⁴"}


def _law_grid(sizes: Sizes, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One config per (setting, model, exposures, seed): the profile's data unchanged (``knob: "base"``)
    and each ``(knob, value)`` of ``sizes.knobs``; N sized per setting (``people_for_capacity``)."""
    configs = []
    for knob, value in (("base", None), *sizes.knobs):
        if knob != "base" and knob not in LAW_KNOBS:
            raise ValueError(f"knobs: {knob!r} is not valid; allowed: {', '.join(LAW_KNOBS)}")
        data = data_keys({**sizes.data, **({} if knob == "base" else {knob: int(value)})})
        for model in sizes.models.keys():
            base = {**data, **model}
            n = people_for_capacity(base, sizes.factor)
            for exposures in sizes.exposures:
                batch, lr = sizes.recipes.get(exposures, (sizes.batch_size, sizes.lr))
                for seed in seeds:
                    configs.append({**base, "N": n, "exposures": int(exposures), "batch_size": int(batch),
                                    "lr": float(lr), "weight_decay": float(sizes.weight_decay), "seed": int(seed),
                                    "series": "law", "knob": knob})
    return configs


def grid(sizes: Sizes, seeds: Sequence[int] = (0,)) -> list[dict[str, Any]]:
    """Configs of the sweep: each model of ``sizes.models`` × ``sizes.exposures`` × ``seeds`` (with
    ``sizes.knobs``: the parameterized law's settings instead, :func:`_law_grid`)."""
    if sizes.knobs:
        return _law_grid(sizes, seeds)
    configs = []
    for model in sizes.models.keys():
        base = {**data_keys(sizes.data), **model}
        n = people_for_capacity(base, sizes.factor)
        plateau = [f for f in sizes.plateau_factors if f != 1.0] if model["d_model"] == sizes.plateau_width else []
        for exposures in sizes.exposures:
            batch, lr = sizes.recipes.get(exposures, (sizes.batch_size, sizes.lr))
            run = {"exposures": int(exposures), "batch_size": int(batch), "lr": float(lr),
                   "weight_decay": float(sizes.weight_decay)}
            for seed in seeds:
                configs.append({**base, "N": n, **run, "seed": int(seed)})
            for f in plateau:  # one seed: the N sweep reads where bits stop growing, not a spread
                n_f = max(8, min(max_people(base), round(f * n)))
                configs.append({**base, "N": n_f, **run, "seed": int(seeds[0]), "series": "plateau"})
    return configs


def committed_configs(filters: Iterable[Iterable[tuple[str, Any]]]) -> list[dict[str, Any]]:
    """The configs of the cpu-full grid (both seeds) that match one of ``filters`` (each a sequence of
    ``(key, value)`` pairs, all of which must match), in the order of the filters: how later chapters name
    the models that ``python -m labkit models capacity --profile cpu-full`` commits."""
    from labkit.experiments import select_configs

    sizes = PROFILES["cpu-full"].sizes
    everything = grid(sizes, sizes.seeds)
    return [c for where in filters for c in select_configs(everything, dict(where))]


def load_committed(config: Mapping[str, Any]) -> tuple[Transformer, TokenDataset]:
    """A committed cpu-full model (``results/models/capacity_cpu_full``, loaded with its config-hash check,
    ``models.load_trained``) and the data it was trained on."""
    from labkit.experiments import models_folder

    return load_trained(config, models_folder(NAME, "cpu-full")), make_dataset(config)


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

    def measured(self, dataset: TokenDataset) -> TokenDataset:
        """The part of the training data whose bits count: all of it, except for a data mixture with
        junk (``labkit.data.junk``), whose useful records only."""
        useful = getattr(dataset, "useful", None)
        return useful() if callable(useful) else dataset

    def finish(self, config: dict[str, Any], setup: RunSetup, history: TrainHistory) -> dict[str, Any]:
        """Bits learned of the trained model. Keys: ``bits``, ``R`` (bits / all params, unused embedding
        rows excluded), ``R_nonembedding``, ``params``, ``non_embedding_params``, ``param_groups``,
        ``information_bits``, ``fraction_learned``, ``breakdown`` / ``unclipped`` (Def 4.1 / 4.3 terms),
        ``final_loss``, ``wall_time`` (since this run's setup), ``train_time`` (a batch's share when
        trained together), ``steps``, ``tokens_seen``, ``device``, ``threads``, ``history``."""
        counts = setup.extra["counts"]
        m = measure.bits_learned(setup.model, self.measured(setup.dataset), device=history.device, params=counts)
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


class CommittedModelRun(CapacityRun):
    """A capacity run that can also study a committed model instead of training one: a config with
    ``"method": "saved"`` names a chapter 2 cpu-full config in ``"model_config"``; that model is loaded
    (:func:`load_committed`, with its config-hash check), never batched, and measured by :meth:`saved`.
    Every other config trains as :class:`CapacityRun` does. Subclasses (chapters 5 and 6) implement
    :meth:`saved`."""

    def saved(self, config: dict[str, Any], model: Transformer, dataset: TokenDataset,
              params: Any) -> dict[str, Any]:
        """The result of a ``"saved"`` config for its loaded ``model``, its training ``dataset`` and its
        parameter count ``params`` (``count_params`` without unused embedding rows)."""
        raise NotImplementedError(f"{type(self).__name__} does not study committed models")

    def shape_key(self, config: dict[str, Any]):
        return None if config.get("method") == "saved" else super().shape_key(config)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        if config.get("method") != "saved":
            return super().__call__(config)
        t0 = time.perf_counter()
        model, dataset = load_committed(dict(config["model_config"]))
        params = count_params(model, used_tokens=dataset.used_tokens())
        return {**self.saved(config, model, dataset, params), "wall_time": time.perf_counter() - t0}


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


def runs_table(records: Iterable[Mapping[str, Any]], config_keys: Sequence[str] = ()) -> pd.DataFrame:
    """One row per sweep record: the config's model, data and recipe keys (and ``config_keys``, e.g. a
    chapter's ``variant``) with the scalar results and ``active_params`` (the parameters one token uses,
    ``labkit.model.ParamCount.active``), sorted by exposures, then parameters."""
    rows = []
    for record in records:
        config, result = record["config"], record["result"]
        row = {k: config.get(k) for k in (*config_keys, "model", "d_model", "n_layer", "n_head", "data", "N",
                                          "exposures", "lr", "batch_size", "seed")}
        row["series"] = config.get("series", "sizes")
        row.update({k: v for k, v in result.items() if not isinstance(v, Mapping | list)})
        row["active_params"] = result.get("param_groups", {}).get("active", result.get("params"))
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["exposures", "params", "seed"], ignore_index=True) if rows else table


def by_size(table: pd.DataFrame) -> pd.DataFrame:
    """Runs averaged over seeds per (exposures, model size): mean ``R``, ``R_nonembedding`` and ``bits``,
    ``R_min`` / ``R_max`` over seeds and ``n_seeds``; sorted by exposures, then params."""
    keys = ["exposures", "model", "d_model", "n_layer", "params", "non_embedding_params", "N"]
    table = table[table.series == "sizes"] if "series" in table else table  # the N sweep is not a model size
    grouped = table.groupby(keys, sort=True)
    out = grouped[["R", "R_nonembedding", "bits"]].mean()
    out["R_min"], out["R_max"], out["n_seeds"] = grouped["R"].min(), grouped["R"].max(), grouped["R"].size()
    return out.reset_index().sort_values(["exposures", "params"], ignore_index=True)


def plateau_table(table: pd.DataFrame) -> pd.DataFrame:
    """The N sweep at one model size: per exposure budget and N (the sized run included), the data's
    information, the bits learned and R, sorted by exposures then N. Empty without a sweep."""
    if "series" not in table or not (table.series == "plateau").any():
        return pd.DataFrame(columns=["exposures", "d_model", "N", "information_bits", "bits", "R", "params"])
    width = int(table[table.series == "plateau"].d_model.iloc[0])
    rows = table[(table.d_model == width) & ((table.series == "plateau") | (table.seed == table.seed.min()))]
    cols = ["exposures", "d_model", "N", "information_bits", "bits", "R", "params"]
    return rows[cols].sort_values(["exposures", "N"], ignore_index=True)


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
        row: dict[str, Any] = {"exposures": e, "paper (Part 3.3)": PAPER_PEAK_R.get(e, ("—",))[0]}
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
    """What ``python -m labkit sweep capacity`` prints: R by exposures and model size, over seeds (the
    law's profile: R per setting, :func:`law_table`)."""
    records = list(records)
    if any(r["config"].get("series") == "law" for r in records):
        return law_table(records)[["setting", "N", "params", "bits", "R", "R_nonembedding"]]
    return by_size(runs_table(records))


def precomputed_runs() -> pd.DataFrame | None:
    """The committed cpu-full results as a ``runs_table``, or None when the file is absent."""
    results = precomputed()
    return runs_table(results["records"]) if results and results["records"] else None


def scaling_slope(runs: pd.DataFrame, exposures: int, params: str = "params") -> float | None:
    """The slope of log(bits) against log(P) over the model sizes trained with ``exposures`` (seed
    means; least squares): 1 when bits grow linearly with P, as Part 3.3's law says. ``params``:
    ``"params"`` (all parameters) or ``"non_embedding_params"``. None with fewer than two sizes."""
    means = by_size(runs)
    means = means[means.exposures == exposures]
    if means[params].nunique() < 2:
        return None
    x = [math.log(v) for v in means[params]]
    y = [math.log(max(v, 1e-9)) for v in means["bits"]]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)


def claims(peak: pd.DataFrame | None, expect: Expect, runs: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Part 3.3's claims next to one sweep's numbers, for ``labkit.tables.paper_vs_lab``.

    ``peak``: the sweep's :func:`peaks` (None: not run, e.g. absent precomputed results; the rows show
    the paper's numbers and "not run"); ``expect``: its profile's thresholds; ``runs``: its
    :func:`runs_table` (for the scaling slope). Rows, for the most exposures E and the fewest e:

    - peak R at E at least 2 (reproduces at this scale when at least ``expect.R_min``);
    - peak R at E at most 2.3 (the paper's ceiling, :data:`PAPER_CEILING`, whatever the scale);
    - peak R at e about 1 (the paper's "≈ 1" read as :data:`PAPER_ABOUT_ONE`, when e = 100);
    - the gain in peak R from e to E (at least ``expect.gap_min``);
    - the log-log slope of bits against P at E (linear: :data:`LINEAR_SLOPE`).
    """
    levels = sorted(peak.index) if peak is not None and len(peak) else sorted(PAPER_PEAK_R)
    few, many = levels[0], levels[-1]

    def R(exposures: int) -> float | None:
        return float(peak.at[exposures, "R"]) if peak is not None and exposures in peak.index else None

    at_1000, at_100 = many == 1000, few == 100  # the paper's budgets: where its numbers apply
    rows: list[dict[str, Any]] = [
        {"claim": f"peak R at {many} exposures" + (", at least 2" if at_1000 else ""),
         "paper": "≥ 2" if at_1000 else "—", "lab": R(many), "expect": (expect.R_min, None),
         "note": f"this scale asks at least {expect.R_min:g}"},
        {"claim": f"peak R at {many} exposures, at most 2.3", "paper": "≤ 2.3", "lab": R(many),
         "expect": (None, PAPER_CEILING), "note": "the paper's ceiling, at every scale"},
    ]
    if few != many:
        gain = R(many) - R(few) if R(many) is not None and R(few) is not None else None
        rows += [
            {"claim": f"peak R at {few} exposures" + (", about 1" if at_100 else ""),
             "paper": "≈ 1" if at_100 else "—", "lab": R(few), "expect": PAPER_ABOUT_ONE if at_100 else None,
             "note": f"≈ 1 read as {PAPER_ABOUT_ONE[0]:g} to {PAPER_ABOUT_ONE[1]:g}" if at_100 else ""},
            {"claim": f"gain in peak R, {few} → {many} exposures",
             "paper": "≈ 1 (2 vs 1)" if at_100 and at_1000 else "—", "lab": gain, "expect": (expect.gap_min, None),
             "note": f"this scale asks at least {expect.gap_min:g}"},
        ]
    slope = scaling_slope(runs, many) if runs is not None and len(runs) else None
    rows.append({"claim": f"slope of log bits vs log P, {many} exposures", "paper": "1 (linear)", "lab": slope,
                 "expect": LINEAR_SLOPE,
                 "note": f"linear read as {LINEAR_SLOPE[0]:g} to {LINEAR_SLOPE[1]:g} (all parameters)"})
    return rows


GRID_COLUMNS = {"d_model": "d", "n_head": "heads", "params": "P", "non_embedding": "P non-emb", "N": "N",
                "information_bits": "information (bits)", "information / 2P": "information / 2P",
                "exposures": "exposures"}
RUN_COLUMNS = {"exposures": "exposures", "d_model": "d", "params": "P", "N": "N", "steps": "steps",
               "bits": "bits", "fraction_learned": "learned", "R": "R", "R_nonembedding": "R non-emb",
               "final_loss": "loss", "wall_time": "wall (s)"}
SIZE_COLUMNS = {"exposures": "exposures", "d_model": "d", "params": "P", "N": "N", "R": "R",
                "R_min": "R min", "R_max": "R max", "R_nonembedding": "R non-emb", "n_seeds": "seeds"}
PLATEAU_COLUMNS = {"exposures": "exposures", "d_model": "d", "params": "P", "N": "N",
                   "information_bits": "information (bits)", "bits": "bits", "R": "R"}
_FORMATS = {"params": ",d", "non_embedding": ",d", "N": ",d", "steps": ",d", "information_bits": ",.0f",
            "information / 2P": ".2f", "bits": ",.0f", "fraction_learned": ".1%", "R": ".2f", "R_min": ".2f",
            "R_max": ".2f",
            "R_nonembedding": ".2f", "final_loss": ".3f", "wall_time": ".0f"}


def _view(rows: pd.DataFrame, columns: Mapping[str, str], **kwargs: Any) -> Table:
    formats = {key: fmt for key, fmt in _FORMATS.items() if key in columns}
    return table(rows, columns=columns, formats=formats, **kwargs)


def grid_view(configs: Iterable[Mapping[str, Any]]) -> Table:
    """:func:`grid_table` as chapter 2 shows it: per model size d, heads, P (all and non-embedding), N,
    the data's information in bits and its ratio to 2 bits × P, and the exposure budgets."""
    return _view(grid_table(list(configs)), GRID_COLUMNS)


def runs_view(runs: pd.DataFrame) -> Table:
    """A :func:`runs_table` as chapter 2 shows it: one row per run (a ``seed`` column when the runs
    have several seeds), with steps, bits learned, fraction learned, both R, final loss and wall time."""
    columns = dict(RUN_COLUMNS)
    if "seed" in runs and runs["seed"].nunique() > 1:
        columns = {"exposures": "exposures", "d_model": "d", "seed": "seed", **columns}
    return _view(runs, columns)


def sizes_view(runs: pd.DataFrame | None) -> Table:
    """R per exposure budget and model size, averaged over seeds (:func:`by_size`) as chapter 2 shows it;
    None (absent results): a table without rows."""
    if runs is None or not len(runs):
        return table([], columns=[])
    return _view(by_size(runs), SIZE_COLUMNS)


def plateau_view(runs: pd.DataFrame | None) -> Table:
    """:func:`plateau_table` as chapter 2 shows it (None or no N sweep: a table without rows)."""
    if runs is None or not len(plateau_table(runs)):
        return table([], columns=[])
    return _view(plateau_table(runs), PLATEAU_COLUMNS)


def peaks_view(peaks_by_run: Mapping[str, pd.DataFrame | None]) -> Table:
    """:func:`paper_table` (peak R as "all / non-embedding (d of the peak)", the paper's number first)
    as a ``labkit.tables`` table; runs given as None (e.g. absent precomputed results) are left out."""
    present = {label: p for label, p in peaks_by_run.items() if p is not None}
    return table(paper_table(present).reset_index(), index="exposures")


def provenance_view(results: Mapping[str, Any] | None, experiment: str = NAME, profile: str = "cpu-full") -> Table:
    """A results file's provenance (command, commit, date, machine, wall time...), one row per field;
    None (the file is absent): one row saying so, and the command that makes it (``experiment`` at
    ``profile``)."""
    def shown(value: Any) -> str:
        if isinstance(value, list | tuple):
            return ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in value)
        return str(value)

    if results is None:
        return table([{"field": "results", "value": "absent on this checkout; regenerate them with "
                       + regenerate_command(experiment, profile)}])
    meta = results["provenance"]
    return table([{"field": key, "value": shown(meta[key])} for key in sorted(meta)])


def figure_capacity(runs: Mapping[str, pd.DataFrame | None], *,
                    title: str = "Bits learned vs parameters (bioD, 2-layer GPTs)") -> go.Figure:
    """Bits learned against P on log-log axes with the 1 and 2 bits/param lines (``plots.capacity_plot``).

    ``runs``: label → a :func:`runs_table` (None or empty: left out). One series per run and exposure
    budget, averaged over seeds per size; an exposure budget keeps its color across runs, and each run
    has its own marker and dash (filled circles for the first, open diamonds for the second, ...)."""
    from labkit import plots

    present = [(label, t) for label, t in runs.items() if t is not None and len(t)]
    levels = sorted({int(e) for _, t in present for e in t.exposures})
    styles = (("circle", "solid"), ("diamond-open", "dot"), ("square-open", "dash"), ("x", "dashdot"))
    series = {}
    for (label, t), (symbol, dash) in zip(present, itertools.cycle(styles)):
        for exposures, means in by_size(t).groupby("exposures", sort=True):
            text = [f"d={d}, N={n:,}, R={r:.2f} (non-emb {q:.2f})"
                    for d, n, r, q in zip(means.d_model, means.N, means.R, means.R_nonembedding, strict=True)]
            series[f"{label}, {exposures} exposures"] = dict(
                x=means.params.tolist(), y=means.bits.tolist(), text=text, symbol=symbol, dash=dash,
                color=plots.color(levels.index(int(exposures))))
    return plots.capacity_plot(series, title=title)


def figure_peaks(peaks_by_run: Mapping[str, pd.DataFrame | None], *,
                 title: str = "Peak capacity ratio R by exposures") -> go.Figure:
    """Peak R by exposures as grouped bars (``plots.grouped_bars``): the paper's (all parameters), then
    each run's against all and against non-embedding parameters; 1 and 2 bits/param lines."""
    from labkit import plots

    present = {label: p for label, p in peaks_by_run.items() if p is not None}
    levels = sorted(set(PAPER_PEAK_R).union(*(set(p.index) for p in present.values())))

    def values(p: pd.DataFrame, column: str) -> list[float | None]:
        return [float(p.at[e, column]) if e in p.index else None for e in levels]

    def spread(p: pd.DataFrame) -> list[tuple[float, float] | None]:
        return [(float(p.at[e, "R_min"]), float(p.at[e, "R_max"])) if e in p.index and p.at[e, "n_seeds"] > 1
                else None for e in levels]

    series: dict[str, list[float | None]] = {
        "paper (all params)": [PAPER_PEAK_R[e][1] if e in PAPER_PEAK_R else None for e in levels]}
    ranges = {}
    for label, p in present.items():
        series[f"{label}, all params"] = values(p, "R")
        ranges[f"{label}, all params"] = spread(p)
        series[f"{label}, non-embedding"] = values(p, "R_nonembedding")
    return plots.grouped_bars(levels, series, title=title, x_title="exposures per person",
                              y_title="bits per parameter", hlines={"2 bits/param": 2.0, "1 bit/param": 1.0},
                              ranges=ranges)


def figure_plateau(runs: pd.DataFrame, *, title: str = "Bits learned vs people N at one model size") -> go.Figure:
    """The N sweep (:func:`plateau_table`): bits learned against N on log axes per exposure budget, the
    data's information (what a perfect memorizer would hold) and 2 bits × P (the paper's capacity) as
    references: bits follow the information while it is below capacity, then flatten."""
    from labkit import plots

    table = plateau_table(runs)
    if not len(table):
        raise ValueError("runs has no N sweep; allowed: runs of a profile with plateau_width and plateau_factors")
    first = table[table.exposures == table.exposures.min()]
    series = {"information in the data": dict(x=first.N.tolist(), y=first.information_bits.tolist(), dash="dot",
                                             color="#888888")}
    for k, (exposures, part) in enumerate(table.groupby("exposures", sort=True)):
        series[f"bits learned, {exposures} exposures"] = dict(
            x=part.N.tolist(), y=part.bits.tolist(), mode="lines+markers", color=plots.color(k))
    P = int(table.params.max())
    return plots.curves(series, title=title, x_title="people N", y_title="bits", log_x=True, log_y=True,
                        hlines={f"2 bits × P (P = {P:,}, d = {int(table.d_model.iloc[0])})": 2.0 * P})


def figure_loss_curves(records: Sequence[Mapping[str, Any]], *,
                       title: str = "Training loss at each exposure budget (this run)") -> go.Figure:
    """Training loss against exposures of each run of a sweep (``plots.curves``, log x), labelled with
    its optimizer steps per exposure, and the loss of a model that knows no person
    (:func:`no_knowledge_loss` of the runs' data, which all share name pools, K, C and D)."""
    from labkit import plots

    ordered = sorted(records, key=lambda r: (r["config"]["exposures"], r["config"]["d_model"]))
    series = {}
    for record in ordered:
        config, history = record["config"], record["result"]["history"]
        steps = steps_per_exposure(int(config["N"]), int(config["batch_size"]))
        name = f"d={config['d_model']}, {config['exposures']} exposures ({steps} steps/exposure)"
        series[name] = (history["exposures"], history["losses"])
    plateau = no_knowledge_loss(make_dataset(ordered[0]["config"]))
    return plots.curves(series, title=title, x_title="exposures", log_x=True,
                        y_title="training loss (nats per token)",
                        hlines={"knows no person (name and value marginals)": plateau})


# --------------------------------------------------------------------------------------------------
# The parameterized law (profile law-cpu-full): one bioD knob at a time
# --------------------------------------------------------------------------------------------------

#: Where the law's results are committed (``python -m labkit sweep capacity --profile law-cpu-full``).
LAW_PRECOMPUTED = results_path(NAME, "law-cpu-full")


def _setting(config: Mapping[str, Any]) -> str:
    knob = config["knob"]
    return "base (K=8, C=1, D=256, L=1, T=256)" if knob == "base" else f"{knob} = {config[knob]}"


def law_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per law run: the setting, its bioD sizes, N, P, the information per term of Prop 2.3
    (``info_name`` / ``info_values`` / ``info_diversity``, exact), the bits learned per term of Def 4.1
    (``name`` / ``values`` / ``diversity``, each clipped at 0), ``bits``, ``R`` and ``R_nonembedding``;
    the base setting first, then knob by knob in :data:`LAW_KNOBS` order and value."""
    from labkit import info

    rows = []
    for record in records:
        config, result = record["config"], record["result"]
        if config.get("series") != "law":
            continue
        terms = info.biod_information_terms(config["N"], config["K"], config["C"], config["D"], config["L"],
                                            config["T"], math.prod(config["name_pools"]))
        learned = result["breakdown"]
        rows.append({"setting": _setting(config), "knob": config["knob"],
                     **{k: config[k] for k in ("K", "C", "D", "L", "T", "N", "seed")},
                     "params": result["params"], "non_embedding_params": result["non_embedding_params"],
                     "info_name": terms["name"], "info_values": terms["values"], "info_diversity": terms["diversity"],
                     "information_bits": result["information_bits"], "name": learned.get("name", 0.0),
                     "values": learned.get("values", 0.0), "diversity": learned.get("diversity", 0.0),
                     "bits": result["bits"], "R": result["R"], "R_nonembedding": result["R_nonembedding"],
                     "fraction_learned": result["fraction_learned"], "wall_time": result["wall_time"]})
    frame = pd.DataFrame(rows)
    if not len(frame):
        return frame
    order = {knob: k for k, knob in enumerate(("base", *LAW_KNOBS))}
    key = frame.knob.map(order) * 10**6 + frame[list(LAW_KNOBS)].sum(axis=1)  # then by value within a knob
    return frame.assign(_key=key).sort_values(["_key", "seed"]).drop(columns="_key").reset_index(drop=True)


def credits_the_set(row: Mapping[str, Any]) -> bool:
    """Whether Def 4.1 credits knowing an attribute's set of values without knowing the people: its lower
    bound for such a model, K·D·log2(T^L / D²) (``info.biod_bits``), is positive when L·log2 T > 2·log2 D.
    Elsewhere the diversity term reads 0 until the model knows most people's values."""
    return row["L"] * math.log2(row["T"]) > 2 * math.log2(row["D"])


def law_checks(law: pd.DataFrame, expect: Expect) -> list[dict[str, Any]]:
    """What chapter 2 asserts of the law at this scale: R within [``R_min``, ``R_max``] for every setting
    whose knob is not in ``expect.law_off`` (knobs measured to fall off the law at this scale; one row for
    the lowest R, one for the highest), and a positive learned diversity term in every setting where Def
    4.1 can credit knowing the value sets (:func:`credits_the_set`)."""
    on = law[~law.knob.isin(expect.law_off)]
    low, high = on.loc[on.R.idxmin()], on.loc[on.R.idxmax()]
    off = f" (all but {', '.join(expect.law_off)})" if expect.law_off else ""
    rows = [{"check": f"lowest R across the knobs{off}: {low.setting} ≥ {expect.R_min:g}", "lab": float(low.R),
             "holds": bool(low.R >= expect.R_min)},
            {"check": f"highest R across the knobs{off}: {high.setting} ≤ {expect.R_max:g}", "lab": float(high.R),
             "holds": bool(high.R <= expect.R_max)}]
    for _, row in law[[credits_the_set(r) for _, r in law.iterrows()]].iterrows():
        rows.append({"check": f"{row.setting}: diversity term learned > 0 (of {row.info_diversity:,.0f} bits)",
                     "lab": float(row.diversity), "holds": bool(row.diversity > 0)})
    return rows


def law_claims(law: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Part 3.3's parameterized law next to the lab's, for ``labkit.tables.paper_vs_lab``: per knob, the
    lowest R over its settings (the base included) against the paper's "≥ 2 over its range";
    "reproduces" within 10% of 2 (≥ 1.8)."""
    rows = []
    for knob, what in LAW_KNOBS.items():
        part = None if law is None or not len(law) else law[law.knob.isin(["base", knob])]
        values = "" if part is None else ", ".join(str(int(v)) for v in sorted(part[knob].unique()))
        rows.append({"claim": f"peak R at 1000 exposures, {what} {knob} ∈ {{{values}}}: lowest",
                     "paper": f"≥ 2 ({knob} in {PAPER_LAW_RANGES[knob]})" if PAPER_LAW_RANGES[knob] != "—" else "≥ 2",
                     "lab": None if part is None or not len(part) else float(part.R.min()), "expect": (1.8, None),
                     "note": "reproduces when ≥ 1.8"})
    return rows


LAW_COLUMNS = {"setting": "setting", "N": "N", "params": "P", "info_name": "info: name", "info_values": "info: values",
               "info_diversity": "info: diversity", "name": "learned: name", "values": "learned: values",
               "diversity": "learned: diversity", "bits": "bits", "R": "R", "R_nonembedding": "R non-emb"}


def law_view(law: pd.DataFrame) -> Table:
    """:func:`law_table` as chapter 2 shows it: information and bits learned per term of Def 4.1."""
    formats = {k: ",.0f" for k in ("info_name", "info_values", "info_diversity", "name", "values", "diversity",
                                   "bits")}
    return table(law, columns=LAW_COLUMNS, formats={**formats, "N": ",d", "params": ",d", "R": ".2f",
                                                    "R_nonembedding": ".2f"})


def law_precomputed() -> dict[str, Any] | None:
    """The committed law results (``{"provenance", "records"}``), or None when absent."""
    return load_results(LAW_PRECOMPUTED)


def figure_law(law: pd.DataFrame, *, title: str = "R at 1000 exposures, one bioD knob at a time") -> go.Figure:
    """R (all parameters and non-embedding) for every setting of the law, with the 2 bits/param line."""
    from labkit import plots

    return plots.grouped_bars(list(law.setting), {"R (all parameters)": list(law.R),
                                                  "R (non-embedding parameters)": list(law.R_nonembedding)},
                              title=title, y_title="bits learned per parameter", text_format=".2f",
                              hlines={"2 bits/param (Part 3.3)": 2.0}, height=460)
