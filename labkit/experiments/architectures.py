"""Chapter 4's experiment: does the architecture change how many bits a model stores per parameter?

Part 3.3 (allenzhu2024part33, its sections 8-9) trains many architectures on bioS / bioD data that
holds more than the model can store and finds that, at 1000 exposures per person, GPT-2, LLaMA-style,
GPT-2 with a quarter-size MLP and even GPT-2 without MLP layers all store about 2 bits per parameter;
at 100 exposures architecture matters: LLaMA / Mistral store about 1.3x fewer bits than GPT-2 and the
gated MLP is the cause, removing the MLP costs more than 1.5x, and a mixture of experts stores about
1.3x fewer (1000 exposures) and 1.5x fewer (100) bits per *total* parameter. The lab adds its own
question, with no paper number: position encodings and attention kinds (Part 1, allenzhu2023part1).

The experiment is chapter 2's capacity run (``labkit.experiments.capacity``: the same data, model
family, recipe and bit meter) with one change per *variant*: a few ``ModelConfig`` knobs
(:data:`VARIANTS`). Every variant is trained at both exposure budgets on the same data, sized for the reference (so
capacity, not data, is the bottleneck), and R is read against all, non-embedding and (for MoE)
active parameters. What the chapter compares is the *ratio* R(variant) / R(reference) at each budget,
because that is what the paper reports and what survives the change of scale.

Config keys of one run: chapter 2's (``capacity``), plus ``variant`` (the name, for the tables) and
``model_overrides`` (its knobs); ``lr`` is the exposure budget's base rate times the variant family's
factor (:class:`Sizes`), chosen by the ``lr-search`` profile.
"""

from __future__ import annotations

import math
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

NAME = "architectures"
CHAPTER = "04_architecture_capacity"


@dataclass(frozen=True)
class Variant:
    """One architecture: its ``ModelConfig`` changes from the lab's tiny GPT (absolute positions, GELU
    4x MLP, LayerNorm, softmax attention), the learning-rate ``family`` it shares a tuned rate with,
    and the paper's ratio R(variant) / R(reference) per exposure budget, as quoted and as a number
    (absent: the paper has no number; the lab's own question)."""

    label: str
    overrides: Mapping[str, Any]
    family: str
    paper: Mapping[int, tuple[str, float]] = field(default_factory=dict)
    group: str = "MLP"


_ABOUT_ONE = ("≈ 1", 1.0)
VARIANTS: dict[str, Variant] = {
    "reference": Variant("GPT (reference)", {}, "gelu", {100: ("1", 1.0), 1000: ("1", 1.0)}, "reference"),
    "gated": Variant("gated MLP", {"mlp": "gated"}, "gated", {100: ("≈ 1/1.3", 1 / 1.3), 1000: _ABOUT_ONE}),
    "quarter_mlp": Variant("¼-size MLP", {"mlp_ratio": 1.0}, "gelu", {100: _ABOUT_ONE, 1000: _ABOUT_ONE}),
    "no_mlp": Variant("no MLP", {"mlp": "none"}, "no_mlp", {100: ("< 1/1.5", 1 / 1.5), 1000: _ABOUT_ONE}),
    "llama": Variant("LLaMA-style (gated, RMSNorm, rotary)", {"mlp": "gated", "norm": "rmsnorm", "pos": "rotary"},
                     "gated", {100: ("≈ 1/1.3", 1 / 1.3), 1000: _ABOUT_ONE}),
    "llama_gelu": Variant("LLaMA-style with GELU MLP", {"norm": "rmsnorm", "pos": "rotary"}, "gelu",
                          {100: _ABOUT_ONE, 1000: _ABOUT_ONE}),
    "moe": Variant("mixture of experts (top-1)", {"moe_experts": 4, "moe_top_k": 1}, "moe",
                   {100: ("≈ 1/1.5", 1 / 1.5), 1000: ("≈ 1/1.3", 1 / 1.3)}),
    "rotary": Variant("rotary positions", {"pos": "rotary"}, "gelu", group="positions"),
    "relative": Variant("relative positions (T5 bias)", {"pos": "relative"}, "gelu", group="positions"),
    "alibi": Variant("ALiBi positions", {"pos": "alibi"}, "gelu", group="positions"),
    "no_pos": Variant("no positions", {"pos": "none"}, "gelu", group="positions"),
    "position_attention": Variant("position-only attention", {"attention": "position"}, "fixed_attention",
                                  group="attention"),
    "uniform_attention": Variant("uniform attention", {"attention": "uniform"}, "fixed_attention",
                                 group="attention"),
}
FAMILIES = tuple(dict.fromkeys(v.family for v in VARIANTS.values()))
#: The variant of each family that the ``lr-search`` profile tunes for it.
FAMILY_PROBE = {"gelu": "reference", "gated": "gated", "no_mlp": "no_mlp", "moe": "moe",
                "fixed_attention": "position_attention"}


# --------------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------------

#: Each family's best learning rate as a multiple of the GELU family's, per exposure budget, read off
#: ``python -m labkit sweep architectures --profile lr-search`` (quick scale, one seed, rates 1/3 to
#: 9 times the quick rate; results/architectures_lr_search.json, shown in chapter 4).
LR_FACTOR: dict[int, dict[str, float]] = {
    100: {"gelu": 1.0, "gated": 3.0, "no_mlp": 3.0, "moe": 1.0, "fixed_attention": 9.0},
    1000: {"gelu": 1.0, "gated": 1.0, "no_mlp": 1.0, "moe": 1 / 3, "fixed_attention": 1.0},
}
#: At cpu-full scale: the GELU and gated families' rates as ``lr-search-cpu-full`` measured them (width
#: 16; results/architectures_lr_search_cpu_full.json), the other families' multiples from quick scale.
LR_FACTOR_CPU_FULL: dict[int, dict[str, float]] = {
    100: {**LR_FACTOR[100], "gated": 1.0},
    1000: {**LR_FACTOR[1000], "gated": 1 / 3},
}
_ONES = {e: {f: 1.0 for f in FAMILIES} for e in (100, 1000)}


@dataclass(frozen=True)
class Sizes:
    """What the architecture comparison measures.

    - ``data``: a data spec (chapter 2's bioD);
    - ``model``: the family every variant changes, ``"tiny"`` (the lab's GPT, learned absolute
      positions) or ``"gpt2"`` (Part 3.3's GPT2-ℓ-h, rotary positions, so there the ``rotary`` variant
      is the reference itself); ``d_model`` / ``n_layer`` / ``n_head``: its one shape (GPT2-ℓ-h:
      ``d_model`` = 64 ``n_head``);
    - ``variants``: names of :data:`VARIANTS`; ``moe_experts``: experts of the ``moe`` variant (the
      paper: 32; here as many as the CPU budget fits);
    - ``exposures``, and per exposure budget the ``batch_size`` and the GELU family's ``lr`` (100
      exposures get a small batch so that the runs have thousands of optimizer steps: chapter 2 showed
      that too few steps, not too few exposures, cap R);
    - ``lr_factor``: per exposure budget, each family's multiple of that rate, as the ``lr-search``
      profiles measured it (:data:`LR_FACTOR`); ``lr_factors``: the multiples a search profile tries
      around its rates (1.0 elsewhere);
    - ``factor``: the data holds ``factor`` × 2 bits × the reference's P;
    - ``seeds``; ``paired_seeds``: seeds of the ``paired`` variants at the fewest exposures (the
      gated-vs-GELU comparison, whose ratio is the chapter's headline).
    """

    data: dict[str, Any] = field(default_factory=lambda: {"kind": "biod", "K": 8, "D": 64, "T": 64,
                                                          "name_pools": (30, 30)})
    model: str = "tiny"
    d_model: int = 8
    n_layer: int = 2
    n_head: int = 2
    variants: tuple[str, ...] = ("reference", "gated", "no_mlp", "no_pos")
    moe_experts: int = 4
    exposures: tuple[int, ...] = (100, 1000)
    batch_size: dict[int, int] = field(default_factory=lambda: {100: 16, 1000: 256})
    lr: dict[int, float] = field(default_factory=lambda: {100: 1e-2, 1000: 9e-2})
    lr_factor: dict[int, dict[str, float]] = field(default_factory=lambda: LR_FACTOR)
    lr_factors: tuple[float, ...] = (1.0,)
    weight_decay: float = 0.05
    factor: float = 1.5
    seeds: tuple[int, ...] = (0,)
    paired: tuple[str, ...] = ("reference", "gated", "llama", "llama_gelu")
    paired_seeds: int = 1

    def __post_init__(self) -> None:
        for name in self.variants:
            if name not in VARIANTS:
                raise invalid("variants", name, ", ".join(VARIANTS))
        if self.model not in ("tiny", "gpt2"):
            raise invalid("model", self.model, "'tiny', 'gpt2'")
        if self.model == "gpt2" and self.d_model != 64 * self.n_head:
            raise invalid("d_model", self.d_model, f"64 * n_head = {64 * self.n_head} for model='gpt2' (GPT2-ℓ-h)")
        for key in ("batch_size", "lr", "lr_factor"):
            missing = sorted(set(self.exposures) - set(getattr(self, key)))
            if missing:
                raise invalid(key, getattr(self, key), f"a value for every exposure budget {list(self.exposures)}")


@dataclass(frozen=True)
class Expect:
    """The claim cell's thresholds, on ratios R(variant) / R(reference):

    - ``band_most``: at the most exposures every MLP variant (not MoE) within this band of 1;
    - ``spread_gap``: architecture matters more at the fewest exposures: the largest ``|ln ρ|`` over
      the variants there exceeds the largest at the most exposures by at least this;
    - ``no_mlp_drop``: no MLP's ratio at the fewest exposures at least this much below its ratio at
      the most (the paper: removing the MLP costs more when facts are seen less often); None where the
      scale does not reproduce it (the chapter says so and shows the number);
    - ``R_reference_min``: the reference's R at the most exposures at least this (the runs learned);
    - ``moe_max``: the mixture of experts' ratio at most this at every budget (it stores fewer bits per
      total parameter); None: not checked;
    - ``exempt``: variants left out of the band check because at this scale their claim does not
      reproduce (the chapter shows their numbers and says why)."""

    band_most: tuple[float, float] = (0.75, 1.35)
    spread_gap: float = 0.1
    no_mlp_drop: float | None = None
    R_reference_min: float = 1.0
    moe_max: float | None = None
    exempt: tuple[str, ...] = ()


QUICK = Profile(Sizes(), Expect(), Execution(processes=2, threads=1))
_ALL = tuple(VARIANTS)
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 4, "D": 16, "T": 16, "name_pools": (10, 10)},
                                      variants=("reference", "no_mlp"), exposures=(10, 100),
                                      batch_size={10: 8, 100: 64}, lr={10: 1e-2, 100: 3e-2},
                                      lr_factor={10: LR_FACTOR[100], 100: LR_FACTOR[1000]}, factor=2.0),
                    expect=dict(band_most=(0.3, 3.0), spread_gap=-1.0, R_reference_min=0.05),
                    run=dict(processes=1)),
    "quick": QUICK,
    "lr-search": derive(QUICK, sizes=dict(variants=tuple(FAMILY_PROBE.values()), lr={100: 1e-2, 1000: 3e-2},
                                          lr_factor=_ONES, lr_factors=(1 / 3, 1.0, 3.0, 9.0))),
    "cpu-full": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 8, "D": 256, "T": 256, "name_pools": (100, 100)},
                                         d_model=16, variants=_ALL, batch_size={100: 32, 1000: 128},
                                         lr={100: 9e-3, 1000: 4.5e-2}, lr_factor=LR_FACTOR_CPU_FULL, factor=2.5,
                                         paired_seeds=2),
                       expect=dict(band_most=(0.8, 1.25), R_reference_min=1.8, moe_max=0.85,
                                   exempt=("quarter_mlp",))),
    "full": derive(QUICK, sizes=dict(data={"kind": "bios", "mode": "fresh"}, model="gpt2", d_model=256, n_layer=4,
                                     n_head=4,
                                     variants=_ALL, moe_experts=32, batch_size={100: 64, 1000: 256},
                                     lr={100: 1e-3, 1000: 1e-3}, factor=2.5, paired_seeds=3),
                   expect=dict(band_most=(0.85, 1.15), R_reference_min=1.8, moe_max=0.85, no_mlp_drop=0.1),
                   run=dict(processes=1)),
}
PROFILES["lr-search-cpu-full"] = derive(PROFILES["cpu-full"], sizes=dict(
    variants=("reference", "gated"), lr={100: 3e-3, 1000: 5e-3}, lr_factor=_ONES, lr_factors=(1.0, 3.0, 9.0),
    paired_seeds=1))
#: The committed cpu-full results chapter 4 shows next to its own run, and the learning-rate search.
PRECOMPUTED = results_path(NAME, "cpu-full")
LR_SEARCH = results_path(NAME, "lr-search")
LR_SEARCH_CPU_FULL = results_path(NAME, "lr-search-cpu-full")


# --------------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------------


def variant_keys(sizes: Sizes, name: str) -> dict[str, Any]:
    """The model keys of one variant (``labkit.experiments.models``): the model of ``sizes`` with the
    variant's knobs as ``model_overrides`` (MoE: ``sizes.moe_experts`` experts; position-only and uniform
    attention on GPT2-ℓ-h: learned absolute positions, as Part 1's GPT_pos and GPT_uni)."""
    overrides = dict(VARIANTS[name].overrides)
    if "moe_experts" in overrides:
        overrides["moe_experts"] = sizes.moe_experts
    if sizes.model == "gpt2" and overrides.get("attention", "softmax") != "softmax":
        overrides["pos"] = "absolute"  # GPT2-ℓ-h is rotary, which acts on q·k scores these kinds do not have
    return {"model": sizes.model, "d_model": sizes.d_model, "n_layer": sizes.n_layer, "n_head": sizes.n_head,
            "variant": name, "model_overrides": overrides}


def grid(sizes: Sizes, seeds: Sequence[int] = (0,)) -> list[dict[str, Any]]:
    """Configs: each variant × exposure budget × seed × learning-rate factor; the ``paired`` variants get
    ``paired_seeds`` seeds (counting up from the first) at the fewest exposures.

    Every variant learns the same people: N is sized for the *reference* (chapter 2's
    ``people_for_capacity``, ``factor`` × 2 bits × its P), so a variant with fewer parameters (no MLP,
    a quarter MLP) faces even more than it can store, and the mixture of experts, with more total
    parameters, still has more than the 1.5 bits per parameter the paper measures for it."""
    configs, fewest = [], min(sizes.exposures)
    n = capacity.people_for_capacity({**data_keys(sizes.data), **variant_keys(sizes, "reference")}, sizes.factor)
    for name in sizes.variants:
        base = {**data_keys(sizes.data), **variant_keys(sizes, name)}
        family = VARIANTS[name].family
        for exposures in sizes.exposures:
            run_seeds = list(seeds)
            if name in sizes.paired and exposures == fewest:
                run_seeds += [seeds[0] + k for k in range(1, sizes.paired_seeds) if seeds[0] + k not in run_seeds]
            for seed in run_seeds:
                for scale in sizes.lr_factors:
                    lr = sizes.lr[exposures] * sizes.lr_factor[exposures].get(family, 1.0) * scale
                    configs.append({**base, "N": n, "exposures": int(exposures),
                                    "batch_size": int(sizes.batch_size[exposures]), "lr": float(f"{lr:.4g}"),
                                    "weight_decay": float(sizes.weight_decay), "seed": int(seed)})
    return configs


#: One run is chapter 2's capacity run (build, train, measure bits); keys in ``CapacityRun.finish``.
run = capacity.run
cost = capacity.cost


def sweep(profile: Profile[Sizes, Expect], seed: int = 0, results_dir: str | None = None, **kwargs: Any):
    """Run the chapter's grid for one seed (paired seeds included), through ``labkit.sweep``."""
    return run_grid(grid(profile.sizes, (seed,)), run, profile.run, results_dir, cost=cost, prefix=NAME, **kwargs)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def runs_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: chapter 2's columns (``capacity.runs_table``) plus ``variant``, ``family`` and
    ``R_active`` (bits per parameter a token uses; = R for dense models), in :data:`VARIANTS` order."""
    runs = capacity.runs_table(records, config_keys=("variant",))
    if not len(runs):
        return runs
    runs.insert(1, "family", [VARIANTS[v].family for v in runs.variant])
    runs["R_active"] = runs.bits / runs.active_params
    order = {name: k for k, name in enumerate(VARIANTS)}
    return runs.sort_values(["exposures", "variant", "seed", "lr"], ignore_index=True,
                            key=lambda c: c.map(order) if c.name == "variant" else c)


def best_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (family, exposures) of an ``lr-search`` sweep: the learning rate with the highest R and
    every rate tried with its R (as "lr: R" text), for the record the chapter shows."""
    rows = []
    for (family, exposures), part in runs.groupby(["family", "exposures"], sort=False):
        means = part.groupby("lr")["R"].mean()
        rows.append({"family": family, "exposures": int(exposures), "best lr": float(means.idxmax()),
                     "R at best": float(means.max()),
                     "tried (lr: R)": ", ".join(f"{lr:.3g}: {r:.2f}" for lr, r in means.items())})
    return pd.DataFrame(rows)


def ratios(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, exposures): mean R over seeds (all, non-embedding, active parameters), its
    min / max over seeds, the number of seeds, and the ratio to the reference's mean R at the same
    exposures (NaN when the reference was not run; ``ratio_nonembedding``: the same with R per
    non-embedding parameter), with the paper's ratio next to it."""
    grouped = runs.groupby(["variant", "exposures"], sort=False)
    out = grouped[["R", "R_nonembedding", "R_active", "params", "active_params", "N"]].mean()
    out["R_min"], out["R_max"], out["n_seeds"] = grouped["R"].min(), grouped["R"].max(), grouped["R"].size()
    out = out.reset_index()
    reference = out[out.variant == "reference"].set_index("exposures")["R"]
    out["ratio"] = [r / reference[e] if e in reference.index else math.nan for r, e in zip(out.R, out.exposures,
                                                                                          strict=True)]
    reference_ne = out[out.variant == "reference"].set_index("exposures")["R_nonembedding"]
    out["ratio_nonembedding"] = [r / reference_ne[e] if e in reference_ne.index else math.nan
                                 for r, e in zip(out.R_nonembedding, out.exposures, strict=True)]
    out["ratio_min"] = [lo / reference[e] if e in reference.index else math.nan
                        for lo, e in zip(out.R_min, out.exposures, strict=True)]
    out["ratio_max"] = [hi / reference[e] if e in reference.index else math.nan
                        for hi, e in zip(out.R_max, out.exposures, strict=True)]
    out["paper"] = [VARIANTS[v].paper.get(int(e), ("—", None))[0] for v, e in zip(out.variant, out.exposures,
                                                                                 strict=True)]
    out["label"] = [VARIANTS[v].label for v in out.variant]
    return out


def ratio_at(table_: pd.DataFrame, variant: str, exposures: int) -> float | None:
    """The ratio of ``variant`` at ``exposures`` in a :func:`ratios` table (None when not run)."""
    row = table_[(table_.variant == variant) & (table_.exposures == exposures)]
    return float(row.ratio.iloc[0]) if len(row) and not math.isnan(row.ratio.iloc[0]) else None


def swap_table(ratios_: pd.DataFrame, exposures: int) -> pd.DataFrame:
    """The gated-vs-GELU swap in both directions at ``exposures``: GPT with GELU → gated
    (R(gated) / R(reference)) and LLaMA with gated → GELU (R(llama_gelu) / R(llama)), each with its seed
    spread (min and max of the per-seed ratios of seed means: the ratio of one variant's extremes to
    the other's mean) and the paper's statement."""
    at = ratios_[ratios_.exposures == exposures].set_index("variant")
    rows = []
    for base, swapped, what, paper in (("reference", "gated", "GPT: GELU → gated MLP", "≈ 1/1.3 (the loss appears)"),
                                       ("llama", "llama_gelu", "LLaMA: gated → GELU MLP", "≈ 1.3 (the loss goes)")):
        if base in at.index and swapped in at.index:
            mean = at.at[base, "R"]
            rows.append({"swap": what, "exposures": exposures, "R before": mean, "R after": at.at[swapped, "R"],
                         "ratio": at.at[swapped, "R"] / mean, "ratio min": at.at[swapped, "R_min"] / mean,
                         "ratio max": at.at[swapped, "R_max"] / mean,
                         "seeds": f"{int(at.at[base, 'n_seeds'])} / {int(at.at[swapped, 'n_seeds'])}",
                         "paper": paper})
    return pd.DataFrame(rows)


def checks(ratios_: pd.DataFrame, expect: Expect) -> list[dict[str, Any]]:
    """The claims this scale can check, each with the lab's number, its band and whether it holds;
    the claim cell asserts every row's ``holds``. Rows for variants that were not run are left out."""
    exposures = sorted(set(ratios_.exposures))
    few, many = exposures[0], exposures[-1]
    rows = []
    R_ref = ratios_[(ratios_.variant == "reference") & (ratios_.exposures == many)].R
    if len(R_ref):
        rows.append({"check": f"reference R at {many} exposures ≥ {expect.R_reference_min:g}",
                     "lab": float(R_ref.iloc[0]), "holds": float(R_ref.iloc[0]) >= expect.R_reference_min})
    lo, hi = expect.band_most
    for variant in ratios_[ratios_.exposures == many].variant:
        if VARIANTS[variant].group == "MLP" and variant != "moe" and variant not in expect.exempt:
            value = ratio_at(ratios_, variant, many)
            rows.append({"check": f"{variant}: R / R(reference) at {many} exposures in [{lo:g}, {hi:g}]",
                         "lab": value, "holds": value is not None and lo <= value <= hi})
    if few != many:
        spread = {e: max(abs(math.log(r)) for r in ratios_[ratios_.exposures == e].ratio.dropna()) for e in (few, many)}
        rows.append({"check": f"max |ln ρ| over variants: {few} exposures ≥ {many} exposures + {expect.spread_gap:g}",
                     "lab": spread[few] - spread[many], "holds": spread[few] - spread[many] >= expect.spread_gap})
    for e in exposures if expect.moe_max is not None else ():
        value = ratio_at(ratios_, "moe", e)
        if value is not None:
            rows.append({"check": f"moe: R / R(reference) at {e} exposures ≤ {expect.moe_max:g}", "lab": value,
                         "holds": value <= expect.moe_max})
    at_few, at_many = ratio_at(ratios_, "no_mlp", few), ratio_at(ratios_, "no_mlp", many)
    if expect.no_mlp_drop is not None and at_few is not None and at_many is not None and few != many:
        rows.append({"check": f"no_mlp: ratio at {few} exposures ≥ {expect.no_mlp_drop:g} below its ratio at {many}",
                     "lab": at_many - at_few, "holds": at_many - at_few >= expect.no_mlp_drop})
    return rows


def paper_band(quoted: str, value: float) -> tuple[float | None, float | None]:
    """The range of a ratio that counts as reproducing the paper's ``quoted`` ratio: "≈ x" within 12% of
    x (the paper's own ratios are read off bar charts), "< x" below x."""
    if quoted.startswith("<"):
        return (None, value)
    return (value / 1.12, value * 1.12)


def claims(ratios_: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Part 3.3's ratios next to one sweep's, for ``labkit.tables.paper_vs_lab``: one row per variant
    and exposure budget that has a paper number (the reference itself left out). ``ratios_`` None
    (absent results): the paper's numbers and "not run"."""
    rows = []
    for exposures in (100, 1000):
        for name, variant in VARIANTS.items():
            if name == "reference" or exposures not in variant.paper:
                continue
            quoted, value = variant.paper[exposures]
            lab = ratio_at(ratios_, name, exposures) if ratios_ is not None else None
            lo, hi = paper_band(quoted, value)
            band = f"below {hi:.2f}" if lo is None else f"{lo:.2f} to {hi:.2f}"
            rows.append({"claim": f"{variant.label}: R / R(reference) at {exposures} exposures", "paper": quoted,
                         "lab": lab, "expect": (lo, hi), "note": f"reproduces when {band}"})
    return rows


def grid_table(configs: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (variant, exposures) of a grid: the variant's knobs, P (all, non-embedding, active),
    N, the data's information against 2 bits × P, and the recipe (batch, lr, optimizer steps, seeds)."""
    from labkit.data.registry import make_dataset
    from labkit.experiments.models import param_count
    from labkit.train import steps_per_exposure

    rows, counted = {}, {}
    for config in configs:
        key = (config["variant"], config["exposures"])
        if key in rows:
            rows[key]["seeds"] += f", {config['seed']}" if str(config["seed"]) not in rows[key]["seeds"] else ""
            continue
        if config["variant"] not in counted:
            dataset = make_dataset(config)
            counted[config["variant"]] = (param_count(config, dataset), dataset.information_bits())
        count, bits = counted[config["variant"]]
        knobs = ", ".join(f"{k}={v}" for k, v in config.get("model_overrides", {}).items()) or "—"
        rows[key] = {"variant": config["variant"], "knobs": knobs, "exposures": config["exposures"],
                     "params": count.total, "non_embedding": count.non_embedding, "active_params": count.active,
                     "N": config["N"], "information / 2P": bits / (2 * count.total),
                     "batch_size": config["batch_size"], "lr": config["lr"],
                     "steps": config["exposures"] * steps_per_exposure(int(config["N"]), int(config["batch_size"])),
                     "seeds": str(config["seed"])}
    return pd.DataFrame(list(rows.values()))


def precomputed() -> dict[str, Any] | None:
    """The committed cpu-full results (``{"provenance", "records"}``), or None when absent."""
    return load_results(PRECOMPUTED)


def precomputed_runs(path=PRECOMPUTED) -> pd.DataFrame | None:
    """A committed results file (default: cpu-full) as a :func:`runs_table`, or None when absent."""
    results = load_results(path)
    return runs_table(results["records"]) if results and results["records"] else None


def provenance_view(results: Mapping[str, Any] | None, profile: str = "cpu-full") -> Table:
    """A results file's provenance as chapter 2 shows it (``capacity.provenance_view``)."""
    return capacity.provenance_view(results, NAME, profile)


def summary_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """What ``python -m labkit sweep architectures`` prints: per variant and exposures, R and the ratio
    to the reference (an ``lr-search`` sweep: the best rate per family instead)."""
    runs = runs_table(records)
    if runs.lr.nunique() > runs.exposures.nunique() and runs.variant.nunique() <= len(FAMILY_PROBE):
        return best_lr(runs)
    return ratios(runs)[["variant", "exposures", "R", "R_nonembedding", "R_active", "ratio", "n_seeds", "paper"]]


RATIO_COLUMNS = {"label": "variant", "exposures": "exposures", "params": "P", "active_params": "P active",
                 "N": "N", "R": "R", "R_nonembedding": "R non-emb", "R_active": "R active", "n_seeds": "seeds",
                 "ratio": "R / R(ref)", "ratio_nonembedding": "non-emb R / R(ref)", "paper": "paper R / R(ref)"}
_FORMATS = {"params": ",.0f", "active_params": ",.0f", "N": ",.0f", "R": ".2f", "R_nonembedding": ".2f",
            "R_active": ".2f", "ratio": ".2f", "ratio_nonembedding": ".2f", "R before": ".2f", "R after": ".2f",
            "ratio min": ".2f",
            "ratio max": ".2f", "R at best": ".2f", "best lr": ".3g", "non_embedding": ",d",
            "information / 2P": ".2f", "lr": ".3g", "steps": ",d"}


def _view(rows: pd.DataFrame, columns: Mapping[str, str] | None = None, **kwargs: Any) -> Table:
    keys = columns if columns is not None else list(rows.columns)
    formats = {key: fmt for key, fmt in _FORMATS.items() if key in keys}
    return table(rows, columns=columns, formats=formats, **kwargs)


GRID_COLUMNS = {"variant": "variant", "knobs": "knobs", "exposures": "exposures", "params": "P",
                "non_embedding": "P non-emb", "active_params": "P active", "N": "N",
                "information / 2P": "information / 2P", "batch_size": "batch", "lr": "lr", "steps": "steps",
                "seeds": "seeds"}


def grid_view(configs: Iterable[Mapping[str, Any]]) -> Table:
    """:func:`grid_table` as chapter 4 shows it."""
    return _view(grid_table(configs), GRID_COLUMNS)


def ratios_view(ratios_: pd.DataFrame) -> Table:
    """A :func:`ratios` table as chapter 4 shows it: per variant and exposures, P (all and active), N,
    the three R, the seeds, the ratio to the reference and the paper's ratio."""
    return _view(ratios_.sort_values(["exposures"], kind="stable"), RATIO_COLUMNS)


def swap_view(swaps: pd.DataFrame) -> Table:
    """A :func:`swap_table` as chapter 4 shows it."""
    return _view(swaps)


def lr_view(runs: pd.DataFrame | None) -> Table:
    """:func:`best_lr` of an ``lr-search`` sweep as a table (absent results: a table without rows)."""
    return _view(best_lr(runs)) if runs is not None and len(runs) else table([], columns=[])


def figure_ratios(ratios_by_run: Mapping[str, pd.DataFrame | None], *,
                  title: str = "Bits per parameter relative to the reference GPT") -> go.Figure:
    """R(variant) / R(reference) per variant as grouped bars (``plots.grouped_bars``): the paper's ratio
    and each run's at each exposure budget, with the spread over seeds as an error bar where a variant
    has several (its lowest and highest seed over the reference's mean); a line at 1 (as good as the
    reference). Variants come in :data:`VARIANTS` order; a run given as None (absent precomputed
    results) is left out."""
    from labkit import plots

    present = {label: r for label, r in ratios_by_run.items() if r is not None and len(r)}
    names = [v for v in VARIANTS if any(v in set(r.variant) for r in present.values())]
    levels = sorted({int(e) for r in present.values() for e in r.exposures})
    series: dict[str, list[float | None]] = {}
    spreads: dict[str, list[tuple[float, float] | None]] = {}

    def spread(r: pd.DataFrame, v: str, e: int) -> tuple[float, float] | None:
        row = r[(r.variant == v) & (r.exposures == e)]
        if not len(row) or row.n_seeds.iloc[0] < 2:
            return None
        return float(row.ratio_min.iloc[0]), float(row.ratio_max.iloc[0])

    for e in levels:
        paper = [VARIANTS[v].paper[e][1] if e in VARIANTS[v].paper else None for v in names]
        if any(p is not None for p in paper):
            series[f"paper, {e} exposures"] = paper
        for label, r in present.items():
            series[f"{label}, {e} exposures"] = [ratio_at(r, v, e) for v in names]
            spreads[f"{label}, {e} exposures"] = [spread(r, v, e) for v in names]
    return plots.grouped_bars([VARIANTS[v].label for v in names], series, title=title, x_title="variant",
                              y_title="R / R(reference)", hlines={"as the reference": 1.0}, height=520,
                              ranges=spreads)
