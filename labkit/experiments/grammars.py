"""Chapter 10's experiment: do tiny GPTs learn a deep context-free grammar, and which positions and
attentions learn it best?

Part 1 (allenzhu2023part1) trains GPTs on strings of synthetic layered CFGs (``labkit.data.cfg``) and
finds that they generate strings the grammar accepts, match its next-token distribution (low KL), and
hold the parse tree in their hidden states; relative and rotary positions beat absolute ones, and
uniform attention (GPT_uni) is surprisingly effective. Here each of five variants of the lab's 2-layer
GPT (``VARIANTS``) trains on fresh strings of one grammar, then ``labkit.structure`` measures it:

- **generation accuracy**: the fraction of sampled strings (from BOS, and completing the first half of a
  fresh valid string) that the grammar's dynamic program accepts;
- **KL** in bits per token between the grammar's true next-token distribution and the model's, on fresh
  strings; the reference variant is also trained for shorter budgets, so that KL's fall with training
  shows;
- **diversity**: distinct strings among the samples, against the grammar's own;
- **probes** of each token's nonterminal ancestors and subtree ends per layer, against a probe that
  sees the token alone.

A ``"baseline"`` run fits bigram and trigram models to the same training strings, measures an untrained
model, and checks the dynamic program itself (every training string accepted, single-token corruptions
rejected).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from labkit import structure
from labkit.batched import BatchableRun, RunSetup
from labkit.checks import invalid
from labkit.data.registry import data_keys, make_dataset
from labkit.experiments import capacity
from labkit.experiments.base import Execution, Profile, derive, load_results, results_path, run_grid
from labkit.experiments.models import model_config
from labkit.model import Transformer
from labkit.tables import Table, table
from labkit.train import TrainHistory

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from labkit.data.cfg import Grammar

NAME = "grammars"
CHAPTER = "10_hierarchical_structure"


@dataclass(frozen=True)
class Variant:
    """One model variant: its label, its ``ModelConfig`` overrides and Part 1's name for it."""

    label: str
    overrides: Mapping[str, Any]
    paper: str


VARIANTS: dict[str, Variant] = {
    "absolute": Variant("learned absolute positions", {}, "GPT"),
    "rotary": Variant("rotary positions", {"pos": "rotary"}, "GPT_rot"),
    "relative": Variant("relative positions (T5 bias)", {"pos": "relative"}, "GPT_rel"),
    "position-only": Variant("position-only attention", {"attention": "position"}, "GPT_pos"),
    "uniform": Variant("uniform attention", {"attention": "uniform"}, "GPT_uni"),
}
#: Part 1's ordering of the variants by generation accuracy and KL on its cfg3 grammars.
PAPER_ORDER = "relative ≈ rotary > absolute; uniform attention close behind (surprisingly effective)"


@dataclass(frozen=True)
class Sizes:
    """What the chapter measures. ``grammar`` / ``grammar_seed``: a preset of ``labkit.data.cfg``;
    ``N``: fresh strings per exposure, ``exposures``: how many (so N × exposures strings in all);
    ``budgets``: shorter exposure budgets for the ``reference`` variant (KL against training length);
    the model (``d_model``, ``n_layer``, ``n_head``: uniform attention's head h averages the last 2^h - 1
    tokens, so more heads see further) and recipe; ``variants``: names of :data:`VARIANTS`;
    ``samples``: generated strings per accuracy; ``kl_strings``: fresh strings for the KL; ``probe_strings``:
    parsed strings for the probes; ``corruptions``: strings for the dynamic program's corruption check;
    ``seeds``: of ``python -m labkit sweep grammars``."""

    grammar: str = "small"
    grammar_seed: int = 0
    N: int = 1000
    exposures: int = 40
    budgets: tuple[int, ...] = (5, 15)
    reference: str = "rotary"
    d_model: int = 32
    n_layer: int = 2
    n_head: int = 4
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.05
    variants: tuple[str, ...] = tuple(VARIANTS)
    samples: int = 200
    kl_strings: int = 100
    probe_strings: int = 200
    corruptions: int = 300
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Expect:
    """The claim cell's thresholds: the best variant's generation accuracy at least ``accuracy_min`` and
    above the better n-gram baseline's by ``above_ngram``; an untrained model's at most
    ``untrained_max``; the dynamic program accepts every training string and rejects at least
    ``rejected_min`` of single-token corruptions; the reference's KL at the full budget at most
    ``kl_ratio_max`` × its KL at the shortest; the last layer's ancestor probes beat the token-only probe by
    ``probe_gain_min`` (mean over levels, reference variant)."""

    accuracy_min: float = 0.3
    above_ngram: float = 0.2
    untrained_max: float = 0.05
    rejected_min: float = 0.9
    kl_ratio_max: float = 0.8
    probe_gain_min: float = 0.05


QUICK = Profile(Sizes(), Expect(), Execution(processes=2, threads=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(N=300, exposures=8, budgets=(2,), variants=("absolute", "rotary"),
                                      samples=40, kl_strings=20, probe_strings=40, corruptions=60, d_model=16),
                    expect=dict(accuracy_min=0.0, above_ngram=-1.0, probe_gain_min=-1.0, kl_ratio_max=0.95),
                    run=dict(processes=1)),
    "quick": QUICK,
    # the medium grammar (4 levels, strings of 23-39 tokens), 1.5 x the training strings, a 4-layer model of
    # width 48, two seeds (about 20 min on the lab's 2-core CPU)
    "cpu-full": derive(QUICK, sizes=dict(grammar="medium", N=2000, exposures=30, budgets=(5, 15), d_model=48,
                                         n_layer=4, n_head=4, lr=5e-3, samples=500, kl_strings=200,
                                         probe_strings=300, seeds=(0, 1))),
    # Part 1's cfg3b-like grammar (strings of 150-260 tokens) at GPT-2-small-like width, for a GPU
    "full": derive(QUICK, sizes=dict(grammar="cfg3b", N=20000, exposures=50, budgets=(5, 20), d_model=256,
                                     n_layer=8, n_head=8, batch_size=96, lr=1e-3, weight_decay=0.1, samples=1000,
                                     kl_strings=300, probe_strings=300, seeds=(0,)),
                   run=dict(processes=1, gpus=1.0)),
}
#: The committed cpu-full results that chapter 10 shows next to its own run.
PRECOMPUTED = results_path(NAME, "cpu-full")


# --------------------------------------------------------------------------------------------------
# The grid and one run
# --------------------------------------------------------------------------------------------------


def _data(sizes: Sizes) -> dict[str, Any]:
    return data_keys({"kind": "cfg", "grammar": sizes.grammar, "grammar_seed": sizes.grammar_seed})


def _evaluation(sizes: Sizes) -> dict[str, Any]:
    return {"samples": int(sizes.samples), "kl_strings": int(sizes.kl_strings),
            "probe_strings": int(sizes.probe_strings)}


def grid(sizes: Sizes, seeds: Sequence[int] = (0,)) -> list[dict[str, Any]]:
    """Configs: each variant at the full budget × seed (``series: "variants"``, probed), the reference
    variant at each shorter budget × seed (``series: "budget"``), and one ``"baseline"`` config per seed
    (n-grams, an untrained model, the dynamic program's checks)."""
    for name in (*sizes.variants, sizes.reference):
        if name not in VARIANTS:
            raise invalid("variants", name, ", ".join(VARIANTS))
    base = {**_data(sizes), "N": int(sizes.N), "model": "tiny", "d_model": int(sizes.d_model),
            "n_layer": int(sizes.n_layer), "n_head": int(sizes.n_head), "batch_size": int(sizes.batch_size),
            "lr": float(sizes.lr), "weight_decay": float(sizes.weight_decay), **_evaluation(sizes)}
    configs = []
    for seed in seeds:
        for name in sizes.variants:
            configs.append({**base, "variant": name, "model_overrides": dict(VARIANTS[name].overrides),
                            "exposures": int(sizes.exposures), "seed": int(seed), "method": "train",
                            "series": "variants", "probe": True})
        for budget in sizes.budgets:
            name = sizes.reference
            configs.append({**base, "variant": name, "model_overrides": dict(VARIANTS[name].overrides),
                            "exposures": int(budget), "seed": int(seed), "method": "train", "series": "budget",
                            "probe": False})
        reference = VARIANTS[sizes.reference]
        configs.append({**base, "variant": sizes.reference, "model_overrides": dict(reference.overrides),
                        "exposures": int(sizes.exposures), "seed": int(seed), "method": "baseline",
                        "corruptions": int(sizes.corruptions)})
    return configs


def measure_model(model: Any, grammar: Grammar, config: Mapping[str, Any]) -> dict[str, Any]:
    """Generation accuracy from BOS and completing half-strings, KL to the grammar and diversity of one
    model (a Transformer or an n-gram model), with the config's sample sizes; seeds fixed per measure so
    that every model is measured on the same prefixes and strings."""
    seed = int(config["seed"])
    start = structure.generation_accuracy(model, grammar, n=int(config["samples"]), seed=1000 + seed)
    half = structure.generation_accuracy(model, grammar, n=int(config["samples"]), seed=2000 + seed,
                                         prefix_fraction=0.5)
    kl = structure.kl_to_grammar(model, grammar, n=int(config["kl_strings"]), seed=3000 + seed)
    return {"accuracy": start["accuracy"], "completion_accuracy": half["accuracy"], "ended": start["ended"],
            "mean_length": start["mean_length"], "diversity": start["diversity"], "kl_bits": kl.bits}


def dp_checks(grammar: Grammar, strings: Sequence[Sequence[int]], n: int, seed: int) -> dict[str, Any]:
    """The dynamic program against its own training data: the fraction of ``strings`` it accepts, and of
    ``n`` of them with one token replaced by another terminal (position and token drawn by ``seed``), the
    fraction it rejects (a corruption can yield another string of the language, so this is below 1)."""
    rng = np.random.default_rng(seed)
    accepted = sum(grammar.accepts(list(s)) for s in strings) / len(strings)
    terminals = list(grammar.terminals)
    rejected = 0
    chosen = [list(strings[i]) for i in rng.choice(len(strings), size=min(n, len(strings)), replace=False)]
    for s in chosen:
        i = int(rng.integers(len(s)))
        s[i] = int(rng.choice([t for t in terminals if t != s[i]]))
        rejected += not grammar.accepts(s)
    return {"training_accepted": accepted, "corruptions_rejected": rejected / len(chosen), "corruptions": len(chosen)}


class GrammarRun(BatchableRun):
    """Train one variant on fresh grammar strings (``labkit.train`` recipe of chapter 2: exposures, batch,
    lr, decay), then measure it (``finish``); the ``"baseline"`` method trains nothing. Batchable across
    seeds of one variant."""

    def setup(self, config: dict[str, Any]) -> RunSetup:
        t0 = time.perf_counter()
        dataset = make_dataset(config)
        model = Transformer(model_config(config, dataset), seed=int(config["seed"]))
        return RunSetup(model, dataset, capacity.recipe(config), extra={"t0": t0})

    def finish(self, config: dict[str, Any], setup: RunSetup, history: TrainHistory) -> dict[str, Any]:
        grammar = setup.dataset.grammar
        t0 = time.perf_counter()
        out = measure_model(setup.model, grammar, config)
        if config.get("probe"):
            probes = structure.probe_structure(setup.model, grammar, seed=4000 + int(config["seed"]),
                                               n_strings=int(config["probe_strings"]))
            out["probes"] = probes.to_dict("records")
        out |= {"final_loss": history.final_loss, "steps": history.total_steps, "train_time": history.wall_time,
                "measure_time": time.perf_counter() - t0, "wall_time": time.perf_counter() - setup.extra["t0"],
                "params": sum(p.numel() for p in setup.model.parameters())}
        return out

    def shape_key(self, config: dict[str, Any]):
        return None if config.get("method") == "baseline" else super().shape_key(config)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        if config.get("method") != "baseline":
            return super().__call__(config)
        t0 = time.perf_counter()
        dataset = make_dataset(config)
        grammar = dataset.grammar
        strings = [s for e in range(int(config["exposures"])) for s in dataset.strings(e)]
        out: dict[str, Any] = {"training_strings": len(strings)}
        for n in (2, 3):
            ngram = structure.fit_ngram(strings, n=n, vocab=len(grammar.terminals) + 1)
            out[f"{n}-gram"] = measure_model(ngram, grammar, config)
        untrained = Transformer(model_config(config, dataset), seed=int(config["seed"]))
        out["untrained"] = measure_model(untrained, grammar, config)
        out["grammar_diversity"] = structure.grammar_diversity(grammar, n=int(config["samples"]), seed=1000)
        lengths = [len(s) for s in dataset.strings(0)]
        out["lengths"] = {"mean": float(np.mean(lengths)), "min": int(min(lengths)), "max": int(max(lengths))}
        out["length_range"] = list(grammar.length_range)
        out |= dp_checks(grammar, dataset.strings(0), int(config["corruptions"]), int(config["seed"]))
        out["entropy_bits"] = float(dataset.information_bits() / dataset.n_items)
        out["wall_time"] = time.perf_counter() - t0
        return out


#: ``run(config)``: train and measure one variant, or the baselines.
run = GrammarRun()


def cost(config: Mapping[str, Any]) -> float:
    """Relative cost: strings seen × width² (the baselines: about one small run)."""
    if config.get("method") == "baseline":
        return float(config["N"]) * float(config["d_model"]) ** 2
    return float(config["N"]) * float(config["exposures"]) * float(config["d_model"]) ** 2 * float(config["n_layer"])


def sweep(profile: Profile[Sizes, Expect], seed: int = 0, results_dir: str | None = None, **kwargs: Any):
    """Run the chapter's grid for one seed through ``labkit.sweep``; returns the ``SweepReport``."""
    return run_grid(grid(profile.sizes, (seed,)), run, profile.run, results_dir, cost=cost, prefix=NAME, **kwargs)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------

_MEASURES = ("accuracy", "completion_accuracy", "kl_bits", "diversity", "ended")


def _baselines(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r["config"].get("method") == "baseline"]


def variants_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model: each variant at the full budget (mean, and min-max of the accuracy, over seeds),
    then the trigram, bigram and untrained baselines; columns :data:`_MEASURES`, ``final_loss``, ``seeds``."""
    records = list(records)
    rows = []
    for r in records:
        c = r["config"]
        if c.get("method") == "train" and c.get("series") == "variants":
            rows.append({"model": c["variant"], "paper": VARIANTS[c["variant"]].paper, "seed": c["seed"],
                         "final_loss": r["result"]["final_loss"], **{k: r["result"][k] for k in _MEASURES}})
        elif c.get("method") == "baseline":
            for key, label in (("3-gram", "trigram"), ("2-gram", "bigram"), ("untrained", "untrained")):
                rows.append({"model": label, "paper": "—", "seed": c["seed"], "final_loss": None,
                             **{k: r["result"][key][k] for k in _MEASURES}})
    if not rows:
        return pd.DataFrame(columns=["model", "paper", "seeds", *_MEASURES, "accuracy_min", "accuracy_max",
                                     "final_loss"])
    frame = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate([*VARIANTS, "trigram", "bigram", "untrained"])}
    grouped = frame.groupby(["model", "paper"], sort=False).agg(
        seeds=("seed", "nunique"), **{k: (k, "mean") for k in _MEASURES}, accuracy_min=("accuracy", "min"),
        accuracy_max=("accuracy", "max"), final_loss=("final_loss", "mean")).reset_index()
    return grouped.sort_values("model", key=lambda s: s.map(order), ignore_index=True)


def budget_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The reference variant's KL and accuracy against its exposure budget (mean over seeds)."""
    rows = [{"exposures": r["config"]["exposures"], "strings seen": r["config"]["exposures"] * r["config"]["N"],
             "kl_bits": r["result"]["kl_bits"], "accuracy": r["result"]["accuracy"],
             "final_loss": r["result"]["final_loss"]}
            for r in records if r["config"].get("method") == "train" and (
                r["config"].get("series") == "budget" or r["config"]["variant"] == _reference(records))]
    if not rows:
        return pd.DataFrame(columns=["exposures", "strings seen", "kl_bits", "accuracy", "final_loss"])
    return pd.DataFrame(rows).groupby(["exposures", "strings seen"], sort=True).mean().reset_index()


def _reference(records: Iterable[Mapping[str, Any]]) -> str | None:
    budget = [r["config"]["variant"] for r in records if r["config"].get("series") == "budget"]
    return budget[0] if budget else None


def probes_table(records: Iterable[Mapping[str, Any]], target: str = "ancestor") -> pd.DataFrame:
    """Probe accuracy per variant (rows) and layer, mean over levels and seeds, for one target, with the
    token-only probe's accuracy (``"token only"``) and chance."""
    rows = [{"variant": r["config"]["variant"], **p} for r in records for p in r["result"].get("probes", [])]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame = frame[frame.target == target]
    wide = frame.pivot_table(index="variant", columns="layer", values="accuracy", aggfunc="mean", sort=False)
    wide.columns = [f"layer {c}" if isinstance(c, int | np.integer) else str(c) for c in wide.columns]
    wide["token only"] = frame.groupby("variant", sort=False)["token_baseline"].mean()
    wide["chance"] = frame.groupby("variant", sort=False)["chance"].mean()
    order = {name: i for i, name in enumerate(VARIANTS)}
    return wide.reset_index().sort_values("variant", key=lambda s: s.map(order), ignore_index=True)


def probe_levels(records: Iterable[Mapping[str, Any]], variant: str | None = None) -> pd.DataFrame:
    """One variant's probes (default: the reference), level (rows) × layer, ancestor and boundary
    accuracy (mean over seeds), with the token-only probe beside each."""
    records = list(records)
    variant = variant or _reference(records) or next(iter(VARIANTS))
    rows = [p for r in records if r["config"].get("series") == "variants" and r["config"]["variant"] == variant
            for p in r["result"].get("probes", [])]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    wide = frame.pivot_table(index=["target", "level"], columns="layer", values="accuracy", aggfunc="mean",
                             sort=False)
    wide.columns = [f"layer {c}" if isinstance(c, int | np.integer) else str(c) for c in wide.columns]
    wide["token only"] = frame.groupby(["target", "level"], sort=False)["token_baseline"].mean()
    wide["chance"] = frame.groupby(["target", "level"], sort=False)["chance"].mean()
    return wide.reset_index()


def grammar_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The grammar's facts from the baseline run(s): string lengths (sampled and possible), entropy per
    string, the diversity of its own samples, and the dynamic program's checks."""
    rows = []
    for r in _baselines(records):
        res = r["result"]
        rows.append({"grammar": r["config"]["grammar"], "seed": r["config"]["seed"],
                     "mean length": res["lengths"]["mean"], "min": res["lengths"]["min"],
                     "max": res["lengths"]["max"], "possible": "{}-{}".format(*res["length_range"]),
                     "entropy (bits/string)": res["entropy_bits"], "diversity": res["grammar_diversity"],
                     "training strings accepted": res["training_accepted"],
                     "corruptions rejected": res["corruptions_rejected"]})
    return pd.DataFrame(rows)


_FORMATS = {"accuracy": ".2f", "completion_accuracy": ".2f", "kl_bits": ".3f", "diversity": ".2f", "ended": ".0%",
            "accuracy_min": ".2f", "accuracy_max": ".2f", "final_loss": ".3f", "mean length": ".1f",
            "entropy (bits/string)": ".1f", "training strings accepted": ".0%", "corruptions rejected": ".0%",
            "strings seen": ",d"}
VARIANT_COLUMNS = {"model": "model", "paper": "Part 1", "seeds": "seeds", "accuracy": "accuracy",
                   "accuracy_min": "min", "accuracy_max": "max", "completion_accuracy": "completing half",
                   "kl_bits": "KL (bits/token)", "diversity": "diversity", "ended": "ended", "final_loss": "loss"}


def _view(rows: pd.DataFrame, columns: Mapping[str, str] | None = None) -> Table:
    keys = list(columns or rows.columns)
    formats = {k: v for k, v in _FORMATS.items() if k in keys}
    formats |= {c: ".2f" for c in keys if c.startswith("layer") or c in ("embedding", "token only", "chance")}
    return table(rows, columns=columns, formats=formats)


def variants_view(records: Iterable[Mapping[str, Any]]) -> Table:
    """:func:`variants_table` as the chapter shows it."""
    return _view(variants_table(records), VARIANT_COLUMNS)


def budget_view(records: Iterable[Mapping[str, Any]]) -> Table:
    """:func:`budget_table` as the chapter shows it."""
    return _view(budget_table(records))


def probes_view(records: Iterable[Mapping[str, Any]], target: str = "ancestor") -> Table:
    """:func:`probes_table` as the chapter shows it."""
    return _view(probes_table(records, target))


def probe_levels_view(records: Iterable[Mapping[str, Any]], variant: str | None = None) -> Table:
    """:func:`probe_levels` as the chapter shows it."""
    return _view(probe_levels(records, variant))


def grammar_view(records: Iterable[Mapping[str, Any]]) -> Table:
    """:func:`grammar_table` as the chapter shows it."""
    return _view(grammar_table(records))


def grid_view(configs: Iterable[Mapping[str, Any]]) -> Table:
    """The runs of a grid: variant, series, exposures, strings seen and the model's parameters."""
    rows = []
    for c in configs:
        if c.get("method") != "train":
            continue
        dataset = make_dataset(c)
        params = sum(p.numel() for p in Transformer(model_config(c, dataset)).parameters())
        rows.append({"variant": c["variant"], "series": c["series"], "seed": c["seed"], "exposures": c["exposures"],
                     "strings seen": c["exposures"] * c["N"], "params": params})
    return table(rows, formats={"strings seen": ",d", "params": ",d"})


# --------------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------------


def headline(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The numbers the claim cell and the claims table read: accuracy and KL per model, the best variant,
    the reference's KL at its shortest and full budget, the last layer's ancestor-probe gain over the
    token-only probe (reference variant, mean over levels), and the dynamic program's checks."""
    records = list(records)
    variants = variants_table(records).set_index("model")
    trained = variants[variants.index.isin(list(VARIANTS))]
    best = str(trained["accuracy"].idxmax()) if len(trained) else None
    out: dict[str, Any] = {f"accuracy/{m}": float(v) for m, v in variants["accuracy"].items()}
    out |= {f"kl/{m}": float(v) for m, v in variants["kl_bits"].items()}
    out["best"] = best
    budgets = budget_table(records)
    if len(budgets) >= 2:
        out["kl/shortest"], out["kl/full"] = float(budgets.kl_bits.iloc[0]), float(budgets.kl_bits.iloc[-1])
    levels = probe_levels(records)
    if len(levels):
        anc = levels[levels.target == "ancestor"]
        last = [c for c in anc.columns if c.startswith("layer")][-1]
        out["probe gain"] = float((anc[last] - anc["token only"]).mean())
        out["probe last layer"] = last
    grammar = grammar_table(records)
    if len(grammar):
        out["training accepted"] = float(grammar["training strings accepted"].min())
        out["corruptions rejected"] = float(grammar["corruptions rejected"].mean())
    return out


def claims(records: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Part 1's findings next to the lab's numbers (``labkit.tables.paper_vs_lab`` rows); lab values None
    without records."""
    records = list(records or [])
    h = headline(records) if records else {}
    best = h.get("best")
    acc = h.get(f"accuracy/{best}") if best else None
    trigram = h.get("accuracy/trigram")
    relative_gain = None
    if records and all(f"accuracy/{v}" in h for v in ("rotary", "relative", "absolute")):
        relative_gain = max(h["accuracy/rotary"], h["accuracy/relative"]) - h["accuracy/absolute"]
    uniform_share = None
    if acc and "accuracy/uniform" in h:
        uniform_share = h["accuracy/uniform"] / acc
    kl_ratio = h["kl/full"] / h["kl/shortest"] if "kl/full" in h and h.get("kl/shortest") else None
    return [
        {"claim": "generated strings the grammar accepts (best variant)", "paper": "≈ 100% (cfg3, GPT-2 size)",
         "lab": acc, "fmt": ".0%", "note": f"best: {best}; trigram: {trigram:.0%}" if trigram is not None else ""},
        {"claim": "rotary / relative beat absolute positions (accuracy gain)", "paper": "yes",
         "lab": relative_gain, "expect": (0.0, 1.0), "fmt": "+.2f", "note": "max(rotary, relative) − absolute"},
        {"claim": "uniform attention close to the best (accuracy share)", "paper": "surprisingly effective",
         "lab": uniform_share, "expect": (0.7, 1.5), "fmt": ".2f", "note": "uniform / best variant"},
        {"claim": "KL to the grammar falls with training (full / shortest budget)", "paper": "low KL when trained",
         "lab": kl_ratio, "expect": (0.0, 0.8), "fmt": ".2f", "note": "reference variant"},
        {"claim": "linear probes read the nonterminal ancestors (gain over the token alone)",
         "paper": "yes, parse tree linearly encoded", "lab": h.get("probe gain"), "expect": (0.05, 1.0),
         "fmt": "+.2f", "note": f"reference variant, {h.get('probe last layer', 'last layer')}, mean over levels"},
    ]


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def figure_accuracy(records: Iterable[Mapping[str, Any]], title: str = "Generation accuracy: strings the grammar "
                    "accepts") -> go.Figure:
    """Bars per model (variants, then the baselines) of the accuracy from BOS and completing half-strings,
    the seeds' spread as error bars."""
    from labkit import plots

    rows = variants_table(records)
    ranges = {"from BOS": [(lo, hi) for lo, hi in zip(rows.accuracy_min, rows.accuracy_max, strict=True)]}
    return plots.grouped_bars(list(rows.model), {"from BOS": list(rows.accuracy),
                                                 "completing half a string": list(rows.completion_accuracy)},
                              ranges=ranges, title=title, y_title="fraction accepted", text_format=".2f")


def figure_kl(records: Iterable[Mapping[str, Any]], title: str = "KL to the grammar's next-token distribution"
              ) -> go.Figure:
    """Bars of each model's KL in bits per token (variants and baselines); the reference variant's KL
    against its training budget is :func:`figure_budget`."""
    from labkit import plots

    rows = variants_table(records)
    return plots.grouped_bars(list(rows.model), {"KL (bits per token)": list(rows.kl_bits)}, title=title,
                              y_title="bits per token", text_format=".3f")


def figure_budget(records: Iterable[Mapping[str, Any]], title: str = "KL to the grammar against training length "
                  "(reference variant)") -> go.Figure:
    """The reference variant's KL against the strings it has seen (log x)."""
    from labkit import plots

    rows = budget_table(records)
    return plots.curves({"KL": {"x": list(rows["strings seen"]), "y": list(rows.kl_bits), "mode": "lines+markers"}},
                        title=title, x_title="training strings seen (log)", y_title="KL (bits per token)", log_x=True)


def figure_probes(records: Iterable[Mapping[str, Any]], title: str = "Linear probes of the parse tree, per layer "
                  "(mean over levels)") -> go.Figure:
    """Ancestor and boundary probe accuracy per layer, one curve per variant, with the token-only probe."""
    from labkit import plots

    series: dict[str, Any] = {}
    for target in ("ancestor", "boundary"):
        wide = probes_table(records, target)
        if not len(wide):
            continue
        layers = [c for c in wide.columns if c == "embedding" or c.startswith("layer")]
        for _, row in wide.iterrows():
            series[f"{row['variant']}, {target}"] = {"x": list(range(len(layers))),
                                                     "y": [float(row[c]) for c in layers],
                                                     "dash": "solid" if target == "ancestor" else "dot",
                                                     "mode": "lines+markers"}
    fig = plots.curves(series, title=title, x_title="layer (0: the embedding)", y_title="held-out accuracy",
                       hovermode="closest")
    return fig


# --------------------------------------------------------------------------------------------------
# Precomputed results (results/grammars_cpu_full.json)
# --------------------------------------------------------------------------------------------------


def precomputed(path: str | None = None) -> dict[str, Any] | None:
    """The committed cpu-full results (``{"provenance", "records"}``), or None when the file is absent."""
    return load_results(path or PRECOMPUTED)


def provenance_view(results: Mapping[str, Any] | None, profile: str = "cpu-full") -> Table:
    """A results file's provenance as chapter 2 shows it (``capacity.provenance_view``)."""
    return capacity.provenance_view(results, NAME, profile)


def length_stats(sizes: Sizes, n: int = 1000) -> dict[str, float]:
    """Mean, min and max length of ``n`` strings of the profile's grammar (``Grammar.length_stats``)."""
    from labkit.data.cfg import preset

    stats = preset(sizes.grammar, sizes.grammar_seed).length_stats(n=n, seed=0)
    return {k: float(v) if k == "mean" else int(v) for k, v in stats.items()}


def spec_table() -> Table:
    """Every preset grammar of ``labkit.data.cfg`` (seed 0): its shape and its string lengths over 1000
    samples (mean, min, max)."""
    from labkit.data.cfg import PRESETS, preset

    rows = []
    for name, spec in PRESETS.items():
        stats = preset(name, 0).length_stats(n=1000, seed=0)
        rows.append({"grammar": name, "levels": spec.levels, "symbols per level": str(spec.symbols_per_level),
                     "terminals": spec.terminals, "rules": "{}-{}".format(*spec.rules_per_symbol),
                     "rule lengths": "{}-{}".format(*spec.rule_lengths), "mean length": float(stats["mean"]),
                     "min": int(stats["min"]), "max": int(stats["max"])})
    return table(rows, formats={"mean length": ".1f"})


__all__ = ["CHAPTER", "NAME", "PAPER_ORDER", "PROFILES", "VARIANTS", "Expect", "GrammarRun", "Sizes", "Variant",
           "budget_table", "budget_view", "claims", "cost", "dp_checks", "figure_accuracy", "figure_budget",
           "figure_kl", "figure_probes", "grammar_table", "grammar_view", "grid", "grid_view", "headline",
           "length_stats", "measure_model", "precomputed", "probe_levels", "probe_levels_view", "probes_table",
           "probes_view", "provenance_view", "run", "spec_table", "sweep", "variants_table", "variants_view"]

