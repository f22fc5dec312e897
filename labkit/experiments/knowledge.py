"""Chapter 5's experiment: where a trained model keeps what it memorized (probes, freezing, ablation).

Three tools on the lab's 2-layer GPTs trained on bioD (chapter 2's recipe and bit meter):

- **Probes** (alain2016probes, ``labkit.probe``): for every layer (the embedding and each block's
  residual stream) and every attribute, a softmax-regression probe reads the attribute's value of
  *held-out people* from the activation at the name's last token and at the token just before the value
  (the attribute's key, whose logits predict the value), each with a control task (hewitt2019control)
  so that each accuracy comes with its selectivity. The same probes on an untrained model of the same
  shape are the floor. Part 3.1 (allenzhu2023part31) finds that, without data augmentation, attributes
  are not linearly readable at the name: a model retrieves them later, at the key token.
- **Freezing** (``labkit.freeze``): the same training with a part of the network frozen at its random
  initialisation (attention, MLPs, embeddings, one layer, everything but the embeddings); bits learned
  against the fully trained model at the same size and exposures. No paper publishes these numbers:
  they are the lab's measurements (Part 3.3, allenzhu2024part33, reports that models without MLPs still
  store about 2 bits per parameter at 1000 exposures, chapter 4).
- **Ablation** (``labkit.ablate``): bits lost when one attention layer, MLP layer or head is zeroed or
  replaced by its mean, measured by the bit meter.

The probed model is trained by the sweep's ``"none"`` run at the largest exposure budget (probing and
ablating happen in its ``finish``, with the model in hand); the ``cpu-full`` profile also analyses
chapter 2's committed cpu-full models (``results/models/capacity_cpu_full``, loaded with a config-hash
check by ``labkit.experiments.models.load_trained``) without retraining them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from labkit import ablate, measure, probe
from labkit.batched import RunSetup
from labkit.data.registry import data_keys, make_dataset
from labkit.experiments import capacity
from labkit.experiments.base import Execution, Profile, derive, load_results, results_path, run_grid
from labkit.experiments.base import provenance_line as base_provenance_line
from labkit.experiments.models import TinyModels, model_config, param_count
from labkit.freeze import freeze
from labkit.model import Transformer
from labkit.tables import Table, table
from labkit.train import TrainHistory

if TYPE_CHECKING:
    import plotly.graph_objects as go

NAME = "knowledge"
CHAPTER = "05_where_knowledge_lives"
#: Probe positions, by the name the chapter gives them: the name's last token, and the attribute's key
#: token (the one just before its value).
SITES = {"name": "name_last", "key": "before_value"}


def freezes(n_layer: int) -> dict[str, list[str]]:
    """Freezing variants → ``labkit.freeze`` patterns (frozen at initialisation). Embeddings are tied, so
    freezing ``embed`` freezes the unembedding too; ``layer L`` is block L whole (attention, MLP, norms)."""
    out = {"none": [], "attention": ["blocks.*.attn"], "MLP": ["blocks.*.mlp"], "embeddings": ["embed", "pos_embed"]}
    out |= {f"layer {layer}": [f"blocks.{layer}"] for layer in range(n_layer)}
    out["all but embeddings"] = ["blocks", "ln_final"]
    return out


@dataclass(frozen=True)
class Sizes:
    """What the chapter measures. ``data``: a bioD spec (``labkit.data.registry``; D values an attribute,
    few enough that the probe's training people hold several of each value); ``N`` people; ``models``;
    ``exposures``: the freezing budgets (the probed model: the largest); ``batch_size`` / ``lr``: the
    recipe; ``variants``: the freezing variants besides ``"none"`` (:func:`freezes`); ``attributes``:
    how many attributes to probe (the first ones); ``test_fraction`` / ``C`` / ``probe_iterations``: the
    probes' held-out share, inverse L2 strength and L-BFGS iterations (30 give the accuracies of 100 to
    0.003 on the quick model, 2.6 times faster); ``saved``: chapter 2 configs (``key=value`` filters of
    its cpu-full grid) whose committed models are analysed too; ``seeds``: of ``python -m labkit sweep knowledge``."""

    data: Mapping[str, Any] = (("kind", "biod"), ("K", 8), ("D", 16), ("T", 16), ("name_pools", (30, 30)))
    N: int = 300
    models: TinyModels = TinyModels(widths=(12,))
    exposures: tuple[int, ...] = (500,)
    batch_size: int = 64
    lr: float = 2e-2
    weight_decay: float = 0.05
    variants: tuple[str, ...] = ("attention", "MLP", "embeddings", "all but embeddings")
    attributes: int = 8
    test_fraction: float = 0.25
    C: float = 1.0
    probe_iterations: int = 30
    saved: tuple[tuple[tuple[str, Any], ...], ...] = ()
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Expect:
    """The claim cell's thresholds: the last layer's probe at the key token beats its control task by
    ``selectivity_min`` (mean over attributes); an untrained model's probes stay within ``untrained_max``
    of chance; training only the embeddings keeps at most ``embeddings_only_max`` of the bits of training
    everything."""

    selectivity_min: float = 0.15
    untrained_max: float = 0.1
    embeddings_only_max: float = 0.8


QUICK = Profile(Sizes(), Expect(), Execution(processes=2, threads=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    # 60 people, 4 values per attribute: the smallest run whose probes read the values (key selectivity
    # 0.27-0.50 over seeds 0-2; with 16 values and 100 people the model stores too little to read)
    "smoke": derive(QUICK, sizes=dict(N=60, data={"kind": "biod", "K": 8, "D": 4, "T": 16,
                                                  "name_pools": (30, 30)},
                                      models=TinyModels(widths=(12,)), exposures=(120,), batch_size=32,
                                      variants=("all but embeddings",), attributes=2),
                    expect=dict(untrained_max=0.15), run=dict(processes=1)),
    "quick": QUICK,
    # 1000 people (2 x the capacity of d = 16 at 2 bits/param), every freezing variant at 100 and 1000
    # exposures (chapter 2's cpu-full recipes at d = 16), seeds 0 and 1; and chapter 2's committed d = 16
    # models (100 and 1000 exposures, seed 0), probed and ablated as they are
    "cpu-full": derive(QUICK, sizes=dict(N=1000, data={"kind": "biod", "K": 8, "D": 16, "T": 16,
                                                       "name_pools": (40, 40)},
                                         models=TinyModels(widths=(16,)), exposures=(100, 1000),
                                         batch_size=128, lr=1.5e-2,
                                         variants=("attention", "MLP", "embeddings", "layer 0", "layer 1",
                                                   "all but embeddings"),
                                         saved=((("d_model", 16), ("seed", 0), ("series", None)),),
                                         seeds=(0, 1))),
    "full": derive(QUICK, sizes=dict(N=20000, data=(("kind", "biod"), ("K", 8), ("D", 64), ("T", 64),
                                                    ("name_pools", (200, 200))),
                                     models=TinyModels(widths=(64,), n_layer=4, n_head=4), exposures=(100, 1000),
                                     batch_size=256, lr=3e-3,
                                     variants=("attention", "MLP", "embeddings", "layer 0", "layer 1", "layer 2",
                                               "layer 3", "all but embeddings"), seeds=(0, 1)),
                   run=dict(gpus=0.5)),
}
#: The committed cpu-full results that chapter 5 shows next to its own run (absent until regenerated).
PRECOMPUTED = results_path(NAME, "cpu-full")
#: chapter 2's recipes at 100 exposures (its cpu-full recorded search): batch 32, lr 9e-3 at d = 16
_FEW_EXPOSURES = {100: (32, 9e-3)}


# --------------------------------------------------------------------------------------------------
# The grid and one run
# --------------------------------------------------------------------------------------------------


def saved_configs(sizes: Sizes) -> list[dict[str, Any]]:
    """Chapter 2's cpu-full configs matching each filter of ``sizes.saved``."""
    return capacity.committed_configs(sizes.saved)


def grid(sizes: Sizes, seeds: Sequence[int] = (0,)) -> list[dict[str, Any]]:
    """Configs: every model × exposure budget × freezing variant (``"none"`` included) × seed; the
    ``"none"`` run at the largest budget also probes and ablates (``"analyse": True``); then one
    ``"method": "saved"`` config per chapter 2 model of ``sizes.saved``."""
    configs = []
    data = data_keys(dict(sizes.data))
    for model in sizes.models.keys():
        patterns = freezes(int(model["n_layer"]))
        for exposures in sizes.exposures:
            batch, lr = _FEW_EXPOSURES.get(exposures, (sizes.batch_size, sizes.lr)) if sizes.saved else (
                sizes.batch_size, sizes.lr)
            for variant in ("none", *sizes.variants):
                if variant not in patterns:
                    raise ValueError(f"variants: {variant!r} is not valid; allowed: {', '.join(patterns)}")
                for seed in seeds:
                    config = {**data, **model, "N": int(sizes.N), "exposures": int(exposures),
                              "batch_size": int(batch), "lr": float(lr), "weight_decay": float(sizes.weight_decay),
                              "seed": int(seed), "method": "train", "variant": variant, "freeze": patterns[variant]}
                    if variant == "none" and exposures == max(sizes.exposures):
                        config |= _analysis_keys(sizes)
                    configs.append(config)
    for config in saved_configs(sizes):
        configs.append({"method": "saved", "model_config": config, **_analysis_keys(sizes)})
    return configs


def _analysis_keys(sizes: Sizes) -> dict[str, Any]:
    return {"analyse": True, "attributes": int(sizes.attributes), "test_fraction": float(sizes.test_fraction),
            "C": float(sizes.C), "probe_iterations": int(sizes.probe_iterations)}


def probe_rows(model: torch.nn.Module, dataset: Any, attributes: int, seed: int, test_fraction: float,
               C: float, max_iter: int = 30) -> list[dict[str, Any]]:
    """Probe every layer for each of the first ``attributes`` attributes at its two sites (the name's last
    token, the attribute's key token): one row per (layer, site, attribute), from ``labkit.probe``."""
    tables = []
    for k in range(attributes):
        positions = [SITES["name"], f"before_value/{k}"]
        table = probe.probe_table(model, dataset, positions=positions, targets=[f"value/{k}"], seed=seed,
                                  test_fraction=test_fraction, C=C, max_iter=max_iter)
        table["attribute"] = k
        table["site"] = ["name" if p == SITES["name"] else "key" for p in table["position"]]
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    table["layer"] = [layer_label(h) for h in table["hook"]]
    return table.to_dict("records")


def layer_label(hook: str) -> str:
    """``"embedding"`` for ``hook_embed``, ``"block L"`` for ``blocks.L.hook_resid_post``."""
    return "embedding" if hook == "hook_embed" else f"block {hook.split('.')[1]}"


def analyse(model: Transformer, dataset: Any, config: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Probes of the trained model and of an untrained one of the same shape and seed, and zero and mean
    ablations of every attention layer, MLP layer and head (bits lost by the bit meter)."""
    options = (int(config["attributes"]), seed, float(config["test_fraction"]), float(config["C"]),
               int(config["probe_iterations"]))
    untrained = Transformer(model.cfg, seed=seed)
    ablations = pd.concat([ablate.ablation_table(model, dataset, kind=kind) for kind in ablate.KINDS],
                          ignore_index=True)
    return {"probes": probe_rows(model, dataset, *options),
            "probes_untrained": probe_rows(untrained, dataset, *options), "ablations": ablations.to_dict("records")}


class KnowledgeRun(capacity.CommittedModelRun):
    """Chapter 2's capacity run with frozen parameter groups (``config["freeze"]``), the analysis of
    the probed model in ``finish``, and the ``"saved"`` method (chapter 2's committed models, analysed
    as they are: nothing trains). Batchable like chapter 2's runs, except ``"saved"``."""

    def setup(self, config: dict[str, Any]) -> RunSetup:
        setup = super().setup(config)
        if config.get("freeze"):
            freeze(setup.model, list(config["freeze"]))
        return setup

    def finish(self, config: dict[str, Any], setup: RunSetup, history: TrainHistory) -> dict[str, Any]:
        out = super().finish(config, setup, history)
        out["trainable_params"] = sum(p.numel() for p in setup.model.parameters() if p.requires_grad)
        if config.get("analyse"):
            t0 = time.perf_counter()
            out |= analyse(setup.model, self.measured(setup.dataset), config, int(config["seed"]))
            out["analysis_time"] = time.perf_counter() - t0
        return out

    def saved(self, config: dict[str, Any], model: Transformer, dataset: Any, params: Any) -> dict[str, Any]:
        m = measure.bits_learned(model, dataset, params=params)
        return {"bits": m.bits, "R": m.bits_per_param, "params": m.params,
                **analyse(model, dataset, config, int(config["model_config"]["seed"]))}


#: ``run(config)``: one freezing run (probing and ablating the ``analyse`` one) or a saved model's analysis.
run = KnowledgeRun()


def cost(config: Mapping[str, Any]) -> float:
    """Relative cost (chapter 2's: people × exposures × width²); a saved model's analysis is cheap."""
    return 1.0 if config.get("method") == "saved" else capacity.cost(config)


def sweep(profile: Profile[Sizes, Expect], seed: int = 0, results_dir: str | None = None, **kwargs: Any):
    """Run the chapter's grid for one seed through ``labkit.sweep``; returns the ``SweepReport``."""
    return run_grid(grid(profile.sizes, (seed,)), run, profile.run, results_dir, cost=cost, prefix=NAME, **kwargs)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _source(record: Mapping[str, Any]) -> str:
    config = record["config"]
    if config.get("method") == "saved":
        c = config["model_config"]
        return f"chapter 2, d={c['d_model']}, {c['exposures']} exposures"
    return f"this chapter, d={config['d_model']}, {config['exposures']} exposures"


def analysed(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records that carry probes and ablations, this chapter's model first."""
    found = [r for r in records if r["config"].get("analyse")]
    return sorted(found, key=lambda r: (r["config"].get("method") == "saved", _source(r)))


def probes_table(record: Mapping[str, Any], untrained: bool = False) -> pd.DataFrame:
    """One analysed record's probe rows (``untrained``: those of the untrained model)."""
    return pd.DataFrame(record["result"]["probes_untrained" if untrained else "probes"])


def probe_summary(record: Mapping[str, Any]) -> pd.DataFrame:
    """Mean over attributes per (layer, site), trained and untrained side by side: accuracy, control
    accuracy, selectivity, chance."""
    rows = []
    for model, untrained in (("trained", False), ("untrained", True)):
        table = probes_table(record, untrained)
        means = table.groupby(["layer", "site"], sort=False)[["accuracy", "control_accuracy", "selectivity",
                                                              "chance"]].mean().reset_index()
        means.insert(0, "model", model)
        rows.append(means)
    return pd.concat(rows, ignore_index=True)


def freezing_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (model, exposures, variant): trainable parameters and their share of all weights, bits
    learned (mean, min and max over seeds), R and the ratio of bits to the ``"none"`` variant's (mean over
    seeds)."""
    rows = [{"d_model": r["config"]["d_model"], "exposures": r["config"]["exposures"],
             "variant": r["config"]["variant"], "seed": r["config"]["seed"], "bits": r["result"]["bits"],
             "R": r["result"]["R"], "params": r["result"]["params"],
             "trainable_params": r["result"]["trainable_params"]}
            for r in records if r["config"].get("method") == "train"]
    if not rows:
        return pd.DataFrame(columns=["d_model", "exposures", "variant", "params", "trainable_params", "seeds",
                                     "bits", "low", "high", "R", "bits / none", "trained share"])
    table = pd.DataFrame(rows)
    order = {v: i for i, v in enumerate(freezes(16))}
    grouped = table.groupby(["d_model", "exposures", "variant"], sort=False).agg(
        params=("params", "first"), trainable_params=("trainable_params", "first"), seeds=("seed", "nunique"),
        bits=("bits", "mean"), low=("bits", "min"), high=("bits", "max"), R=("R", "mean")).reset_index()
    none = grouped[grouped.variant == "none"].set_index(["d_model", "exposures"])["bits"]
    grouped["bits / none"] = [b / none.loc[(d, e)] if none.loc[(d, e)] > 0 else float("nan")
                              for d, e, b in zip(grouped.d_model, grouped.exposures, grouped.bits, strict=True)]
    every = grouped[grouped.variant == "none"].set_index(["d_model", "exposures"])["trainable_params"]
    # of all weights (P leaves out embedding rows of tokens the data never uses; freezing does not)
    grouped["trained share"] = [t / every.loc[(d, e)] for d, e, t in
                                zip(grouped.d_model, grouped.exposures, grouped.trainable_params, strict=True)]
    grouped["_order"] = grouped.variant.map(lambda v: order.get(v, len(order)))
    return grouped.sort_values(["d_model", "exposures", "_order"], ignore_index=True).drop(columns="_order")


def ablation_summary(record: Mapping[str, Any]) -> pd.DataFrame:
    """One analysed record's ablations: component × kind → fraction of the bits lost (wide table)."""
    table = pd.DataFrame(record["result"]["ablations"])
    wide = table.pivot_table(index="component", columns="kind", values="fraction_lost", sort=False)
    wide.columns = [f"lost ({kind})" for kind in wide.columns]
    return wide.reset_index()


def headline(record: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers the claim cell checks, from one analysed record: per site, the last layer's mean
    accuracy, control accuracy, selectivity and chance (trained and untrained); the first layer where
    the key-token probe's selectivity is largest; the smallest fraction of the bits lost by ablating one
    component (zero and mean)."""
    summary = probe_summary(record)
    last = [layer for layer in summary.layer.unique() if layer != "embedding"][-1]
    out: dict[str, Any] = {"last_layer": last}
    for model in ("trained", "untrained"):
        for site in SITES:
            row = summary[(summary.model == model) & (summary.layer == last) & (summary.site == site)].iloc[0]
            for key in ("accuracy", "control_accuracy", "selectivity", "chance"):
                out[f"{model}/{site}/{key}"] = float(row[key])
    trained_key = summary[(summary.model == "trained") & (summary.site == "key")]
    out["best_key_layer"] = str(trained_key.sort_values("selectivity").iloc[-1]["layer"])
    trained_name = summary[(summary.model == "trained") & (summary.site == "name")]
    out["name_max_selectivity"] = float(trained_name.selectivity.max())
    ablations = pd.DataFrame(record["result"]["ablations"])
    for kind, part in ablations.groupby("kind"):
        out[f"min_lost/{kind}"] = float(part.fraction_lost.min())
        out[f"min_lost_component/{kind}"] = str(part.sort_values("fraction_lost").iloc[0]["component"])
    return out


def claims(records: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The chapter's claims, paper next to lab, for ``labkit.tables.paper_vs_lab``: attributes are not
    linearly readable at the name without augmentation (allenzhu2023part31); they become readable at
    the key token of the last layer; no single component holds the knowledge (each ablation loses most
    of it; allenzhu2024part33 says knowledge is not kept in one layer); freezing (no published number)."""
    name_sel = key_sel = lost = embed_only = None
    name_ok = key_ok = lost_ok = None
    note_key = note_lost = note_freeze = None
    if records:
        first = analysed(records)
        if first:
            h = headline(first[0])
            name_sel, key_sel = h["name_max_selectivity"], h["trained/key/selectivity"]
            name_ok, key_ok = name_sel < 0.1, key_sel > 0.1
            note_key = (f"{h['last_layer']}: accuracy {h['trained/key/accuracy']:.2f}, control "
                        f"{h['trained/key/control_accuracy']:.2f}, chance {h['trained/key/chance']:.2f}")
            lost = min(h["min_lost/zero"], h["min_lost/mean"])
            lost_ok = lost > 0.5
            note_lost = f"least harmful: {h['min_lost_component/mean']} (mean ablation)"
        table = freezing_table(records)
        if len(table):
            part = table[table.exposures == table.exposures.max()].set_index("variant")
            if "all but embeddings" in part.index:
                embed_only = float(part.loc["all but embeddings", "bits / none"])
            note_freeze = ", ".join(f"{v}: {r:.2f}" for v, r in part["bits / none"].items() if v != "none")
    return [
        {"claim": "attributes linearly readable at the name (no augmentation)", "paper": "no (P-probes near chance)",
         "lab": None if name_sel is None else f"best selectivity {name_sel:.2f}", "status": name_ok,
         "note": "reproduces when no layer's probe at the name beats its control task by 0.1"},
        {"claim": "readable at the attribute's key token, last layer (selectivity)", "paper": "yes (where the "
         "answer is produced)", "lab": key_sel, "status": key_ok, "note": note_key},
        {"claim": "no single component holds the knowledge (least bits lost by one ablation)",
         "paper": "not in one layer", "lab": lost, "status": lost_ok, "note": note_lost},
        {"claim": "freezing all but the embeddings (bits / trained everything)", "paper": "not published",
         "lab": embed_only, "note": note_freeze},
    ]


_FORMATS = {"params": ",d", "information / 2P": ".2f", "accuracy": ".2f", "control_accuracy": ".2f",
            "selectivity": "+.2f", "chance": ".2f", "trained share": ".0%", "bits": ",.0f", "R": ".2f",
            "bits / none": ".2f"}
FREEZING_COLUMNS = {"variant": "frozen", "exposures": "exposures", "trained share": "trained share",
                    "seeds": "seeds", "bits": "bits", "R": "R", "bits / none": "bits / none"}


def _view(rows: pd.DataFrame, columns: Mapping[str, str] | None = None) -> Table:
    keys = columns or list(rows.columns)
    return table(rows, columns=columns, formats={key: fmt for key, fmt in _FORMATS.items() if key in keys})


def grid_view(configs: Iterable[Mapping[str, Any]]) -> Table:
    """:func:`grid_table` as the chapter shows it."""
    return _view(grid_table(configs))


def probe_view(record: Mapping[str, Any]) -> Table:
    """:func:`probe_summary` as the chapter shows it."""
    return _view(probe_summary(record))


def freezing_view(records: Iterable[Mapping[str, Any]]) -> Table:
    """:func:`freezing_table` as the chapter shows it (bits: mean over the seeds)."""
    return _view(freezing_table(records), FREEZING_COLUMNS)


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def figure_probes(record: Mapping[str, Any], untrained: bool = False, title: str | None = None) -> go.Figure:
    """Heatmaps layer × attribute of probe accuracy at the name's last token and at the key token, the
    control accuracy and selectivity in each cell's hover text."""
    from labkit import plots

    table = probes_table(record, untrained)
    layers = list(dict.fromkeys(table.layer))
    attributes = sorted(table.attribute.unique())
    panels = []
    for site, label in (("name", "at the name's last token"), ("key", "at the attribute's key token")):
        part = table[table.site == site].set_index(["layer", "attribute"])
        z = [[float(part.loc[(layer, a), "accuracy"]) for a in attributes] for layer in layers]
        text = [[f"control {part.loc[(layer, a), 'control_accuracy']:.2f}, selectivity "
                 f"{part.loc[(layer, a), 'selectivity']:.2f}, chance {part.loc[(layer, a), 'chance']:.2f}"
                 for a in attributes] for layer in layers]
        panels.append((label, z, text))
    which = "untrained model" if untrained else _source(record)
    return plots.heatmap_panels(panels, [f"attr {a}" for a in attributes], layers,
                                title=title or f"Probe accuracy on held-out people ({which})",
                                x_title="attribute", y_title="layer (residual stream)",
                                colorbar_title="accuracy")


def figure_freezing(records: Iterable[Mapping[str, Any]], title: str = "Bits learned with a part frozen at "
                    "initialisation, relative to training everything") -> go.Figure:
    """Bars per freezing variant of bits / bits(none), one bar group per exposure budget, seeds' spread
    as error bars."""
    from labkit import plots

    table = freezing_table(records)
    table = table[table.variant != "none"]
    variants = list(dict.fromkeys(table.variant))
    values, ranges = {}, {}
    for exposures, part in table.groupby("exposures", sort=True):
        part = part.set_index("variant")
        base = {v: part.loc[v, "bits"] / part.loc[v, "bits / none"] if part.loc[v, "bits / none"] else 1.0
                for v in variants}
        name = f"{exposures} exposures"
        values[name] = [float(part.loc[v, "bits / none"]) for v in variants]
        ranges[name] = [(float(part.loc[v, "low"] / base[v]), float(part.loc[v, "high"] / base[v]))
                        for v in variants]
    return plots.grouped_bars(variants, values, ranges=ranges, title=title, y_title="bits / bits of training all",
                              hlines={"training everything": 1.0})


def figure_ablations(record: Mapping[str, Any], title: str | None = None) -> go.Figure:
    """Bars per component of the fraction of bits lost when it is zeroed or mean-ablated."""
    from labkit import plots

    table = ablation_summary(record)
    return plots.grouped_bars(list(table.component), {c: list(table[c]) for c in table.columns if c != "component"},
                              title=title or f"Bits lost when one component is ablated ({_source(record)})",
                              y_title="fraction of the bits lost", hlines={"all bits": 1.0})


# --------------------------------------------------------------------------------------------------
# Precomputed results (results/knowledge_cpu_full.json)
# --------------------------------------------------------------------------------------------------


def precomputed(path: str | None = None) -> dict[str, Any] | None:
    """The committed cpu-full results (``{"provenance", "records"}``), or None when the file is absent."""
    return load_results(path or PRECOMPUTED)


def provenance_line(results: Mapping[str, Any] | None, profile: str = "cpu-full") -> str:
    """Where this chapter's precomputed results come from, or the command that makes them
    (``base.provenance_line``)."""
    return base_provenance_line(results, NAME, profile)


def grid_table(configs: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model trained here: parameters, people, the data's information against 2 bits × P,
    the exposure budgets and the freezing variants."""
    configs = [c for c in configs if c.get("method") == "train"]
    rows = []
    for d in sorted({c["d_model"] for c in configs}):
        mine = [c for c in configs if c["d_model"] == d]
        dataset = make_dataset(mine[0])
        count = param_count(mine[0], dataset)
        rows.append({"d_model": d, "params": count.total, "N": mine[0]["N"],
                     "information / 2P": dataset.information_bits() / (2 * count.total),
                     "exposures": ", ".join(str(e) for e in sorted({c["exposures"] for c in mine})),
                     "variants": ", ".join(dict.fromkeys(c["variant"] for c in mine))})
    return pd.DataFrame(rows)


__all__ = ["CHAPTER", "NAME", "PROFILES", "Expect", "Sizes", "ablation_summary", "analyse", "analysed", "claims",
           "cost", "figure_ablations", "figure_freezing", "figure_probes", "freezes", "freezing_table",
           "freezing_view", "grid", "grid_table", "grid_view", "headline", "layer_label", "model_config",
           "precomputed", "probe_rows", "probe_summary", "probe_view", "probes_table", "provenance_line", "run",
           "saved_configs", "sweep"]
