"""Chapter 7's experiment: junk data eats capacity, repetitive junk does not, a domain token fixes it.

Part 3.3 (allenzhu2024part33, its section 10) trains on a mixture in which 7/8 of the tokens are junk
(knowledge seen too rarely to be learned) and measures the bits the model keeps of the useful 1/8: about
20× fewer than without junk at 100 exposures of the useful data, 3× at 300, 1.5× at 600, 1.3× at 1000.
Junk that repeats does no harm, and a domain token at the start of every useful record shrinks the loss
to about 2×. This module is that experiment on the lab's bioD (``labkit.data.junk``): one model size,
the same useful people in every *condition* (:data:`CONDITIONS`), and chapter 2's capacity run, which
measures the useful records only.

Config keys of one run: chapter 2's, with data ``biod_junk`` (``labkit.data.registry``: ``junk``,
``junk_ratio``, ``domain_token``, ``repetitive_size``) and ``condition`` (the name, for the tables).
The batch size is the same in every condition, so a mixture with 7:1 junk trains for 8× the steps of
the clean data at the same useful exposures, as in the paper.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from labkit.checks import invalid
from labkit.data.registry import data_keys
from labkit.experiments import capacity
from labkit.experiments.base import Execution, Profile, derive, load_results, results_path, run_grid
from labkit.tables import Table, table

if TYPE_CHECKING:
    import plotly.graph_objects as go

NAME = "junk"
CHAPTER = "07_junk_data"


@dataclass(frozen=True)
class Condition:
    """One kind of training data: its junk (``labkit.data.junk.JUNK_KINDS``), whether useful records
    carry a domain token, and Part 3.3's loss factor bits(clean) / bits(condition) per exposure budget,
    as quoted and as a number."""

    label: str
    junk: str
    domain_token: bool
    paper: Mapping[int, tuple[str, float]] = field(default_factory=dict)


CONDITIONS: dict[str, Condition] = {
    "clean": Condition("clean (no junk)", "none", False, {100: ("1", 1.0), 300: ("1", 1.0), 1000: ("1", 1.0)}),
    "fresh": Condition("7:1 fresh junk", "fresh", False,
                       {100: ("≈ 20", 20.0), 300: ("≈ 3", 3.0), 600: ("≈ 1.5", 1.5), 1000: ("≈ 1.3", 1.3)}),
    "repetitive": Condition("7:1 repetitive junk", "repetitive", False, {100: ("≈ 1 (no harm)", 1.0)}),
    "domain": Condition("7:1 fresh junk + domain token", "fresh", True, {100: ("≈ 2", 2.0)}),
}


# --------------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """What the junk experiment measures: ``data`` (the useful bioD), the one model (``d_model``,
    ``n_layer``, ``n_head``), ``conditions`` (names of :data:`CONDITIONS`), ``exposures`` of the useful
    data, ``junk_ratio`` junk tokens per useful token, ``repetitive_size`` records of repetitive junk,
    the recipe (``batch_size``, ``lr``, ``weight_decay``; the same in every condition), ``factor`` (the
    useful data holds ``factor`` × 2 bits × the model's P, chapter 2's sizing) and ``seeds``."""

    data: dict[str, Any] = field(default_factory=lambda: {"kind": "biod", "K": 8, "D": 64, "T": 64,
                                                          "name_pools": (30, 30)})
    d_model: int = 8
    n_layer: int = 2
    n_head: int = 2
    conditions: tuple[str, ...] = ("clean", "fresh", "repetitive", "domain")
    exposures: tuple[int, ...] = (100,)
    junk_ratio: float = 7.0
    repetitive_size: int = 16
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 0.05
    N: int = 100
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for name in self.conditions:
            if name not in CONDITIONS:
                raise invalid("conditions", name, ", ".join(CONDITIONS))
        if "clean" not in self.conditions:
            raise invalid("conditions", self.conditions, "a tuple that includes 'clean' (every ratio divides by it)")


@dataclass(frozen=True)
class Expect:
    """The claim cell's thresholds on loss factors bits(clean) / bits(condition) at the fewest exposures:
    fresh junk at least ``fresh_min`` (it eats capacity), repetitive junk at most ``repetitive_max``
    (little harm), the domain token at most ``domain_max`` (it recovers most), and the clean model's R at
    least ``R_clean_min`` (it learned)."""

    fresh_min: float = 3.0
    repetitive_max: float = 2.0
    domain_max: float = 2.0
    R_clean_min: float = 0.08


QUICK = Profile(Sizes(), Expect(), Execution(processes=2, threads=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 4, "D": 16, "T": 16, "name_pools": (10, 10)},
                                      exposures=(40,), N=40, batch_size=8, lr=2e-2, junk_ratio=3.0),
                    # measured, seeds 0-2: clean R 0.041-0.044, fresh 6.6-7.2, repetitive 0.42-0.48, domain 1.4-1.6
                    expect=dict(fresh_min=2.0, repetitive_max=5.0, domain_max=5.0, R_clean_min=0.02),
                    run=dict(processes=1)),
    "quick": QUICK,
    "cpu-full": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 8, "D": 256, "T": 256, "name_pools": (100, 100)},
                                         d_model=16, exposures=(100, 300), N=600, lr=9e-3, seeds=(0,)),
                       expect=dict(fresh_min=5.0, repetitive_max=1.5, domain_max=3.0, R_clean_min=0.3)),
    "full": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 8, "D": 256, "T": 256, "name_pools": (400, 400)},
                                     d_model=64, exposures=(100, 300, 600, 1000), N=20_000, batch_size=128, lr=3e-3,
                                     seeds=(0, 1)),
                   expect=dict(fresh_min=5.0, repetitive_max=1.5, domain_max=3.0, R_clean_min=0.5),
                   run=dict(processes=1)),
}
#: The committed cpu-full results that chapter 7 shows next to its own run.
PRECOMPUTED = results_path(NAME, "cpu-full")


# --------------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------------


def grid(sizes: Sizes, seeds: Sequence[int] = (0,)) -> list[dict[str, Any]]:
    """Configs: each condition × exposure budget × seed, all on the same ``N`` useful people."""
    configs = []
    for name in sizes.conditions:
        condition = CONDITIONS[name]
        data = data_keys({**sizes.data, "kind": "biod_junk", "junk": condition.junk, "junk_ratio": sizes.junk_ratio,
                          "domain_token": condition.domain_token, "repetitive_size": sizes.repetitive_size})
        for exposures in sizes.exposures:
            for seed in seeds:
                configs.append({**data, "model": "tiny", "d_model": sizes.d_model, "n_layer": sizes.n_layer,
                                "n_head": sizes.n_head, "condition": name, "N": sizes.N, "exposures": int(exposures),
                                "batch_size": sizes.batch_size, "lr": float(sizes.lr),
                                "weight_decay": float(sizes.weight_decay), "seed": int(seed)})
    return configs


#: One run is chapter 2's capacity run; it measures the useful records only (``CapacityRun.measured``).
run = capacity.run
cost = capacity.cost


def sweep(profile: Profile[Sizes, Expect], seed: int = 0, results_dir: str | None = None, **kwargs: Any):
    """Run the chapter's grid for one seed through ``labkit.sweep`` (progress bar, resumable)."""
    return run_grid(grid(profile.sizes, (seed,)), run, profile.run, results_dir, cost=cost, prefix=NAME, **kwargs)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def runs_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: chapter 2's columns plus ``condition``, in :data:`CONDITIONS` order."""
    runs = capacity.runs_table(records, config_keys=("condition",))
    if not len(runs):
        return runs
    order = {name: k for k, name in enumerate(CONDITIONS)}
    return runs.sort_values(["exposures", "condition", "seed"], ignore_index=True,
                            key=lambda c: c.map(order) if c.name == "condition" else c)


def factors(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (condition, exposures): mean bits, R and training tokens over seeds, and the loss factor
    bits(clean) / bits(condition) at the same exposures (> 1: the condition kept fewer useful bits),
    with the paper's factor next to it."""
    grouped = runs.groupby(["condition", "exposures"], sort=False)
    out = grouped[["bits", "R", "steps", "tokens_seen", "information_bits"]].mean().reset_index()
    out["n_seeds"] = grouped.size().values
    clean = out[out.condition == "clean"].set_index("exposures")["bits"]
    out["factor"] = [clean[e] / max(b, 1e-9) if e in clean.index else float("nan")
                     for b, e in zip(out.bits, out.exposures, strict=True)]
    out["paper"] = [CONDITIONS[c].paper.get(int(e), ("—", None))[0] for c, e in zip(out.condition, out.exposures,
                                                                                   strict=True)]
    out["label"] = [CONDITIONS[c].label for c in out.condition]
    return out


def factor_at(table_: pd.DataFrame | None, condition: str, exposures: int) -> float | None:
    """The loss factor of ``condition`` at ``exposures`` (None when not run)."""
    if table_ is None:
        return None
    row = table_[(table_.condition == condition) & (table_.exposures == exposures)]
    return float(row.factor.iloc[0]) if len(row) else None


def checks(factors_: pd.DataFrame, runs: pd.DataFrame, expect: Expect) -> list[dict[str, Any]]:
    """What the claim cell asserts, at the fewest exposures of the run: the clean model learned, fresh
    junk costs at least ``fresh_min``×, repetitive junk and the domain token at most their maxima."""
    few = int(min(factors_.exposures))
    rows = []
    R_clean = runs[(runs.condition == "clean") & (runs.exposures == few)].R.mean()
    rows.append({"check": f"clean R at {few} exposures ≥ {expect.R_clean_min:g}", "lab": float(R_clean),
                 "holds": R_clean >= expect.R_clean_min})
    for name, bound, above in (("fresh", expect.fresh_min, True), ("repetitive", expect.repetitive_max, False),
                               ("domain", expect.domain_max, False)):
        value = factor_at(factors_, name, few)
        if value is None:
            continue
        sign = "≥" if above else "≤"
        rows.append({"check": f"{name}: bits(clean) / bits({name}) at {few} exposures {sign} {bound:g}", "lab": value,
                     "holds": value >= bound if above else value <= bound})
    return rows


def claims(factors_: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Part 3.3's loss factors next to a sweep's, for ``labkit.tables.paper_vs_lab``: one row per
    condition and exposure budget with a paper number (clean left out). "≈ x" reproduces within a
    factor 1.5 of x (the paper's factors are read off bar charts, and they span 1 to 20)."""
    rows = []
    for name, condition in CONDITIONS.items():
        if name == "clean":
            continue
        for exposures, (quoted, value) in condition.paper.items():
            rows.append({"claim": f"{condition.label}: bits(clean) / bits at {exposures} exposures", "paper": quoted,
                         "lab": factor_at(factors_, name, exposures), "expect": (value / 1.5, value * 1.5),
                         "note": f"reproduces when {value / 1.5:.2g} to {value * 1.5:.2g}"})
    return rows


def precomputed() -> dict[str, Any] | None:
    """The committed cpu-full results, or None when absent."""
    return load_results(PRECOMPUTED)


def precomputed_runs(path=PRECOMPUTED) -> pd.DataFrame | None:
    """A committed results file as a :func:`runs_table`, or None when absent."""
    results = load_results(path)
    return runs_table(results["records"]) if results and results["records"] else None


def summary_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """What ``python -m labkit sweep junk`` prints: the loss factors per condition and exposures."""
    return factors(runs_table(records))[["condition", "exposures", "bits", "R", "steps", "factor", "paper"]]


def provenance_view(results: Mapping[str, Any] | None) -> Table:
    """A results file's provenance as chapter 2 shows it (``capacity.provenance_view``)."""
    return capacity.provenance_view(results, NAME)


FACTOR_COLUMNS = {"label": "condition", "exposures": "exposures", "steps": "steps", "tokens_seen": "tokens",
                  "bits": "useful bits", "R": "R", "n_seeds": "seeds", "factor": "bits(clean) / bits",
                  "paper": "paper"}
_FORMATS = {"steps": ",.0f", "tokens_seen": ",.0f", "bits": ",.0f", "R": ".3f", "factor": ".2f"}


def factors_view(factors_: pd.DataFrame) -> Table:
    """A :func:`factors` table as chapter 7 shows it."""
    return table(factors_.sort_values("exposures", kind="stable"), columns=FACTOR_COLUMNS,
                 formats={k: v for k, v in _FORMATS.items() if k in FACTOR_COLUMNS})


def grid_view(configs: Iterable[Mapping[str, Any]]) -> Table:
    """One row per condition of a grid: the mixture as rendered (records per exposure, measured junk
    to useful token ratio), the useful data's information and the steps per useful exposure."""
    from labkit.data.registry import make_dataset
    from labkit.train import steps_per_exposure

    rows, seen = [], set()
    for config in configs:
        if config["condition"] in seen:
            continue
        seen.add(config["condition"])
        data = make_dataset(config)
        rows.append({"condition": CONDITIONS[config["condition"]].label, "useful N": data.biod.N,
                     "junk records": data.junk_records, "junk : useful tokens": data.token_ratio,
                     "information (bits)": data.information_bits(),
                     "steps per exposure": steps_per_exposure(data.n_items, int(config["batch_size"]))})
    return table(rows, formats={"junk : useful tokens": ".2f", "information (bits)": ",.0f"})


def figure_bits_vs_tokens(runs_by_label: Mapping[str, pd.DataFrame | None], *,
                          title: str = "Useful bits learned vs training tokens") -> go.Figure:
    """Useful bits learned against training tokens seen (log x), one line per condition and run across
    its exposure budgets (``plots.curves``): junk multiplies the tokens by 8 and, fresh, buys nothing."""
    from labkit import plots

    series = {}
    for label, runs in runs_by_label.items():
        if runs is None or not len(runs):
            continue
        means = factors(runs)
        for name in CONDITIONS:
            part = means[means.condition == name].sort_values("exposures")
            if len(part):
                series[f"{CONDITIONS[name].label} ({label})"] = dict(
                    x=part.tokens_seen.tolist(), y=part.bits.tolist(), mode="lines+markers",
                    dash="solid" if label == next(iter(runs_by_label)) else "dot")
    return plots.curves(series, title=title, x_title="training tokens", y_title="useful bits learned", log_x=True)


def figure_learning_curves(records: Sequence[Mapping[str, Any]], *,
                           title: str = "Training loss during training (this run)") -> go.Figure:
    """Training loss (all tokens: useful and junk) against useful exposures, one curve per run."""
    from labkit import plots

    series = {}
    order = list(CONDITIONS)
    for record in sorted(records, key=lambda r: (r["config"]["exposures"], order.index(r["config"]["condition"]))):
        config, history = record["config"], record["result"]["history"]
        name = f"{CONDITIONS[config['condition']].label}, {config['exposures']} exposures"
        series[name] = (history["exposures"], history["losses"])
    return plots.curves(series, title=title, x_title="useful exposures", log_x=True,
                        y_title="training loss (nats per token)")
