"""Chapter 6's experiment: how much of a trained model's knowledge survives quantization.

Part 3.3 (allenzhu2024part33) quantizes GPT-2 models trained to capacity with GPTQ (frantar2022gptq,
calibrated on 1000 biographies): **int8 costs nothing** (2 bits per parameter survive), **int4 more than
half** (about 0.7 bits per parameter). Here the lab's 2-layer GPTs, trained on bioD with chapter 2's
recipe (or chapter 2's committed cpu-full models, ``results/models/capacity_cpu_full``), are quantized by
``labkit.quant`` to each scheme of the profile, and chapter 1's bit meter is rerun on every quantized copy:

- ``bits`` and ``R`` = bits / P (P of the fp32 model: a quantized model has the same parameters, in fewer
  bits each), ``kept`` = bits / the fp32 model's bits;
- the storage the scheme costs (``labkit.quant.QuantReport``: integers, scales and zero points, fp32 for
  what is kept) and ``bits per storage bit`` = bits / storage bits, the share of its own limit a precision
  reaches (a parameter of b bits holds at most b bits).

Each integer scheme is measured twice, with the embeddings (tied to the unembedding) quantized too and
kept in fp32, the two choices ``labkit.quant`` offers; norms and biases always stay fp32. A scheme is
named ``"<precision>[ g<group size>][ GPTQ]"``, e.g. ``"int4 g8 GPTQ"``: round to nearest unless GPTQ, one
scale per output channel unless a group size is given.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from labkit import measure, quant
from labkit.batched import RunSetup
from labkit.experiments import capacity
from labkit.experiments.base import Execution, Profile, derive, load_results, results_path, run_grid
from labkit.experiments.models import TinyModels
from labkit.model import count_params
from labkit.tables import Table, table
from labkit.train import TrainHistory

if TYPE_CHECKING:
    import plotly.graph_objects as go

NAME = "quantization"
CHAPTER = "06_quantization"

#: Part 3.3's numbers (GPTQ on GPT-2 at capacity, 1000 exposures): bits per parameter after quantization.
PAPER_R = {"fp16": 2.0, "int8": 2.0, "int4": 0.7}
#: The schemes of the quick profile: float casts, then per-channel and grouped integers, RTN and GPTQ.
SCHEMES = ("fp32", "bf16", "fp16", "int8", "int8 GPTQ", "int6", "int6 GPTQ", "int5", "int5 GPTQ", "int4",
           "int4 GPTQ", "int4 g4", "int4 g4 GPTQ", "int3", "int3 GPTQ", "int3 g4 GPTQ")


def parse_scheme(label: str) -> tuple[str, dict[str, Any]]:
    """``"int4 g8 GPTQ"`` → ``("int4", {"group_size": 8, "method": "gptq"})``: the scheme of
    ``labkit.quant.quantize`` and its options (per output channel and round to nearest by default)."""
    allowed = "'<precision>[ g<group size>][ GPTQ]', precision one of " + ", ".join(quant.SCHEMES)
    parts = str(label).split()
    if not parts or parts[0] not in quant.SCHEMES:
        raise ValueError(f"schemes: {label!r} is not valid; allowed: {allowed}")
    options: dict[str, Any] = {}
    for part in parts[1:]:
        if part == "GPTQ" and "method" not in options:
            options["method"] = "gptq"
        elif part[:1] == "g" and part[1:].isdigit() and int(part[1:]) > 0 and "group_size" not in options:
            options["group_size"] = int(part[1:])
        else:
            raise ValueError(f"schemes: {label!r} is not valid; allowed: {allowed}")
    if options and parts[0] not in quant.INT_BITS:
        raise ValueError(f"schemes: {label!r} is not valid; allowed: group sizes and GPTQ for int8, int4, int3 only")
    options.setdefault("group_size", None)
    return parts[0], options


@dataclass(frozen=True)
class Sizes:
    """What the chapter measures. ``data`` / ``models`` / ``exposures`` / ``factor`` / ``batch_size`` /
    ``lr`` / ``weight_decay``: the models trained here, as chapter 2 trains them (N sized so the data
    holds ``factor`` × 2 bits × P); ``saved``: chapter 2's committed cpu-full models to quantize instead
    or as well (``key=value`` filters of its grid); ``schemes``: as :func:`parse_scheme` reads them;
    ``calibration``: GPTQ's calibration records (the first ones of the training data; Part 3.3 uses 1000
    biographies); ``seeds``: of ``python -m labkit sweep quantization``."""

    data: Mapping[str, Any] = (("kind", "biod"), ("K", 8), ("D", 64), ("T", 64), ("name_pools", (30, 30)))
    models: TinyModels = TinyModels(widths=(8,))
    exposures: tuple[int, ...] = (1000,)
    factor: float = 1.5
    batch_size: int = 128
    lr: float = 3e-2
    weight_decay: float = 0.05
    saved: tuple[tuple[tuple[str, Any], ...], ...] = ()
    schemes: tuple[str, ...] = SCHEMES
    calibration: int = 256
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Expect:
    """The claim cell's thresholds, on the models at the most exposures: the fp32 model stores at least
    ``R_min`` bits per parameter (else there is little to lose); int8 (RTN and GPTQ) keeps at least
    ``int8_kept_min`` of its bits; per-channel int4 round to nearest keeps at most ``int4_kept_max``, i.e.
    clearly less than int8; GPTQ keeps at least as much as round to nearest at the same bits and grouping,
    within ``gptq_slack`` (GPTQ minimises each layer's output error on the calibration records, not the
    bits: where both collapse, at int3, the difference is noise; the cpu-full models' worst case is
    -0.025, int3 per channel at d = 16 where round to nearest keeps 2.5% and GPTQ 0%, else -0.007)."""

    R_min: float = 1.0
    int8_kept_min: float = 0.95
    int4_kept_max: float = 0.9
    gptq_slack: float = 0.03


QUICK = Profile(Sizes(), Expect(), Execution(processes=1, threads=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(data={"kind": "biod", "K": 4, "D": 16, "T": 16, "name_pools": (10, 10)},
                                      models=TinyModels(widths=(8,)), exposures=(300,), factor=2.0,
                                      schemes=("fp32", "bf16", "int8", "int8 GPTQ", "int4", "int4 GPTQ"),
                                      calibration=64),
                    # R 0.32-0.41 over seeds 0-2; with 64 calibration records on a width-8 model GPTQ's
                    # Hessian is noisy: int4 GPTQ keeps 0.09 less than round to nearest at seed 2
                    expect=dict(R_min=0.2, gptq_slack=0.15)),
    "quick": QUICK,
    # chapter 2's committed cpu-full models (every width, 100 and 1000 exposures, seed 0), as they are;
    # groups of 8 divide every width (16-40) and the MLP's 4d
    "cpu-full": derive(QUICK, sizes=dict(exposures=(),
                                         saved=((("seed", 0), ("series", None)),),
                                         schemes=tuple(s.replace("g4", "g8") for s in SCHEMES),
                                         calibration=1000),
                       run=dict(processes=2)),
    "full": derive(QUICK, sizes=dict(data=(("kind", "bios"), ("mode", "fresh")), models=TinyModels(widths=(64, 128)),
                                     batch_size=256, lr=1e-3, weight_decay=0.02, factor=2.5,
                                     schemes=("fp32", "bf16", "int8", "int8 GPTQ", "int4 g32", "int4 g32 GPTQ",
                                              "int3 g32", "int3 g32 GPTQ"), calibration=1000),
                   run=dict(gpus=1.0)),
}
#: The committed cpu-full results that chapter 6 shows next to its own run.
PRECOMPUTED = results_path(NAME, "cpu-full")


# --------------------------------------------------------------------------------------------------
# The grid and one run
# --------------------------------------------------------------------------------------------------


def _evaluation_keys(sizes: Sizes) -> dict[str, Any]:
    for label in sizes.schemes:
        parse_scheme(label)
    return {"schemes": list(sizes.schemes), "calibration": int(sizes.calibration)}


def grid(sizes: Sizes, seeds: Sequence[int] = (0,)) -> list[dict[str, Any]]:
    """Configs: chapter 2's capacity runs for ``sizes.models`` × ``sizes.exposures`` × ``seeds``
    (``"method": "train"``), then one ``"method": "saved"`` config per committed model of ``sizes.saved``;
    each carries the schemes to measure and GPTQ's calibration size."""
    keys = _evaluation_keys(sizes)
    trained = capacity.Sizes(data=dict(sizes.data), models=sizes.models, exposures=sizes.exposures,
                             lr=sizes.lr, batch_size=sizes.batch_size, weight_decay=sizes.weight_decay,
                             factor=sizes.factor) if sizes.exposures else None
    configs = [{**c, "method": "train", **keys} for c in (capacity.grid(trained, seeds) if trained else [])]
    configs += [{"method": "saved", "model_config": c, **keys} for c in capacity.committed_configs(sizes.saved)]
    return configs


def calibration_tokens(dataset: Any, n: int) -> torch.Tensor:
    """GPTQ's calibration set: the first ``n`` records of the training data (token ids, (n, T))."""
    tokens = dataset.exposure(0).tokens
    return tokens[: max(1, min(int(n), len(tokens)))]


def evaluate(model: torch.nn.Module, dataset: Any, schemes: Iterable[str], calibration: int,
             params: Any = None) -> list[dict[str, Any]]:
    """Bits learned by ``model`` quantized to each scheme (``labkit.quant``), with embeddings quantized
    and kept (integer schemes) and the storage each costs; one row per (scheme, embeddings). ``params``:
    the P of R (default: ``count_params`` without unused embedding rows, as chapter 2 counts)."""
    params = params if params is not None else count_params(model, used_tokens=dataset.used_tokens())
    calib = calibration_tokens(dataset, calibration)
    reference = measure.bits_learned(model, dataset, params=params).bits
    rows = []
    for label in schemes:
        scheme, options = parse_scheme(label)
        for embeddings in (True, False) if scheme in quant.INT_BITS else (True,):
            t0 = time.perf_counter()
            quantized, report = quant.quantize(model, scheme, embeddings=embeddings, calibration=calib,
                                               return_report=True, **options)
            m = measure.bits_learned(quantized, dataset, params=params)
            rows.append({"scheme": label, "precision": scheme, "method": report.method,
                         "group_size": options["group_size"],
                         "embeddings": "quantized" if embeddings or scheme not in quant.INT_BITS else "fp32",
                         "bits": m.bits, "R": m.bits_per_param, "kept": m.bits / reference if reference else None,
                         "storage_bits": report.storage_bits, "storage_bits_per_param": report.bits_per_param,
                         "quantized_bits_per_param": report.bits_per_quantized_param,
                         "bits_per_storage_bit": m.bits / report.storage_bits,
                         "quantized_params": report.quantized_params, "seconds": time.perf_counter() - t0})
    return rows


class QuantizationRun(capacity.CommittedModelRun):
    """Chapter 2's capacity run, then every scheme of the config measured on the trained model (in
    ``finish``, with the model in hand); the ``"saved"`` method quantizes a committed chapter 2 model
    instead of training one. Batchable like chapter 2's runs, except ``"saved"``."""

    def finish(self, config: dict[str, Any], setup: RunSetup, history: TrainHistory) -> dict[str, Any]:
        out = super().finish(config, setup, history)
        t0 = time.perf_counter()
        out["schemes"] = evaluate(setup.model, self.measured(setup.dataset), config["schemes"],
                                  int(config["calibration"]), params=setup.extra["counts"])
        out["quantization_time"] = time.perf_counter() - t0
        return out

    def saved(self, config: dict[str, Any], model: torch.nn.Module, dataset: Any, params: Any) -> dict[str, Any]:
        rows = evaluate(model, dataset, config["schemes"], int(config["calibration"]), params=params)
        fp32 = next(r for r in rows if r["precision"] == "fp32") if "fp32" in config["schemes"] else rows[0]
        return {"bits": fp32["bits"], "R": fp32["R"], "params": params.total, "schemes": rows}


#: ``run(config)``: train (or load) one model and measure it at every scheme of the config.
run = QuantizationRun()


def cost(config: Mapping[str, Any]) -> float:
    """Relative cost (chapter 2's for a trained model); quantizing a committed model is cheap."""
    return 1.0 if config.get("method") == "saved" else capacity.cost(config)


def sweep(profile: Profile[Sizes, Expect], seed: int = 0, results_dir: str | None = None, **kwargs: Any):
    """Run the chapter's grid for one seed through ``labkit.sweep``; returns the ``SweepReport``."""
    return run_grid(grid(profile.sizes, (seed,)), run, profile.run, results_dir, cost=cost, prefix=NAME, **kwargs)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _model_of(record: Mapping[str, Any]) -> dict[str, Any]:
    config = record["config"]
    source = config.get("model_config", config)
    origin = "chapter 2 (committed)" if config.get("method") == "saved" else "trained here"
    return {"model": f"d={source['d_model']}, {source['exposures']} exp.", "d_model": source["d_model"],
            "exposures": source["exposures"], "seed": source["seed"], "origin": origin,
            "params": record["result"]["params"]}


def schemes_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (model, scheme, embeddings) of every record: the model, then :func:`evaluate`'s row."""
    rows = [{**_model_of(r), **row} for r in records for row in r["result"].get("schemes", [])]
    return pd.DataFrame(rows)


def kept_table(records: Iterable[Mapping[str, Any]], embeddings: str = "quantized") -> pd.DataFrame:
    """Fraction of the bits kept, models (rows) × schemes (columns), for one embeddings choice (float
    casts count for both)."""
    table_ = schemes_table(records)
    if not len(table_):
        return pd.DataFrame()
    part = table_[(table_.embeddings == embeddings) | (~table_.precision.isin(list(quant.INT_BITS)))]
    wide = part.pivot_table(index=["model", "params"], columns="scheme", values="kept", sort=False)
    return wide[[s for s in dict.fromkeys(part.scheme) if s in wide.columns]].reset_index()


def precision_summary(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Per scheme and embeddings choice, over the models at their largest exposure budget: mean R,
    mean and min fraction kept, storage bits per parameter and bits per storage bit; the paper's R
    beside (GPTQ rows, and the float casts)."""
    table_ = schemes_table(records)
    if not len(table_):
        return pd.DataFrame()
    top = table_[table_.exposures == table_.exposures.max()]
    grouped = top.groupby(["scheme", "embeddings"], sort=False).agg(
        models=("model", "nunique"), R=("R", "mean"), kept=("kept", "mean"), kept_min=("kept", "min"),
        storage=("storage_bits_per_param", "mean"), per_storage=("bits_per_storage_bit", "mean")).reset_index()
    grouped["paper R"] = [_paper_r(s) for s in grouped.scheme]
    return grouped


def _paper_r(label: str) -> float | None:
    scheme, options = parse_scheme(label)
    if scheme in ("fp16", "bf16"):
        return PAPER_R["fp16"]
    if scheme in ("int8", "int4") and options.get("method") == "gptq":
        return PAPER_R[scheme]
    return None


_FORMATS = {"params": ",d", "R": ".2f", "kept": ".0%", "kept_min": ".0%", "storage": ".1f", "per_storage": ".3f",
            "paper R": ".1f", "information / 2P": ".2f"}
SUMMARY_COLUMNS = {"scheme": "scheme", "embeddings": "embeddings", "models": "models", "R": "R", "kept": "kept",
                   "kept_min": "kept (min)", "storage": "storage bits/P", "per_storage": "bits per storage bit",
                   "paper R": "paper R"}


def summary_view(records: Iterable[Mapping[str, Any]]) -> Table:
    """:func:`precision_summary` as the chapter shows it."""
    return table(precision_summary(records), columns=SUMMARY_COLUMNS,
                 formats={k: v for k, v in _FORMATS.items() if k in SUMMARY_COLUMNS})


def kept_view(records: Iterable[Mapping[str, Any]], embeddings: str = "quantized") -> Table:
    """:func:`kept_table` as the chapter shows it (every scheme column as a percentage)."""
    wide = kept_table(records, embeddings)
    return table(wide, formats={"params": ",d", **{c: ".0%" for c in wide.columns if c not in ("model", "params")}})


def grid_view(configs: Iterable[Mapping[str, Any]]) -> Table:
    """The models of a grid (chapter 2's grid table: P, N, the data's information against 2 bits × P)
    and the schemes measured on each."""
    configs = list(configs)
    models = [c.get("model_config", c) for c in configs]
    rows = capacity.grid_table(models)
    rows.insert(len(rows.columns), "schemes", len(configs[0]["schemes"]) if configs else 0)
    return table(rows, columns={"d_model": "d", "params": "P", "N": "N", "information / 2P": "information / 2P",
                                "exposures": "exposures", "schemes": "schemes"},
                 formats={"P": ",d", "N": ",d", "information / 2P": ".2f"})


# --------------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------------


def headline(records: Iterable[Mapping[str, Any]], embeddings: str = "quantized") -> dict[str, float]:
    """Mean over the models at their largest exposure budget: fp32 R and, per scheme, the fraction kept
    (``"kept/<scheme>"``) and R (``"R/<scheme>"``), for one embeddings choice."""
    table_ = schemes_table(records)
    top = table_[(table_.exposures == table_.exposures.max())
                 & ((table_.embeddings == embeddings) | ~table_.precision.isin(list(quant.INT_BITS)))]
    out = {f"kept/{s}": float(v) for s, v in top.groupby("scheme", sort=False)["kept"].mean().items()}
    out |= {f"R/{s}": float(v) for s, v in top.groupby("scheme", sort=False)["R"].mean().items()}
    out["max bits per storage bit"] = float(table_["bits_per_storage_bit"].max())
    return out


def gptq_gaps(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """GPTQ's fraction kept minus round to nearest's, per model, precision, grouping and embeddings."""
    table_ = schemes_table(records)
    ints = table_[table_.precision.isin(list(quant.INT_BITS))].copy()
    ints["grouping"] = ints.group_size.map(lambda g: "per channel" if pd.isna(g) else f"g{int(g)}")
    keys = ["model", "precision", "grouping", "embeddings"]
    wide = ints.pivot_table(index=keys, columns="method", values="kept", sort=False).reset_index()
    if "gptq" not in wide.columns:
        return pd.DataFrame(columns=[*keys, "rtn", "gptq", "gptq - rtn"])
    wide["gptq - rtn"] = wide["gptq"] - wide["rtn"]
    return wide[[*keys, "rtn", "gptq", "gptq - rtn"]].dropna()


def claims(records: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Part 3.3's quantization claims next to the lab's numbers (``labkit.tables.paper_vs_lab`` rows);
    lab values None when there are no records."""
    records = list(records or [])
    h = headline(records) if records else {}

    def get(key: str) -> float | None:
        return h.get(key)

    int8 = get("kept/int8 GPTQ") if get("kept/int8 GPTQ") is not None else get("kept/int8")
    int4 = get("kept/int4 GPTQ") if get("kept/int4 GPTQ") is not None else get("kept/int4")
    gaps = gptq_gaps(records) if records else pd.DataFrame()
    worst = float(gaps["gptq - rtn"].min()) if len(gaps) else None
    return [
        {"claim": "bits kept at int8 (GPTQ; embeddings quantized too)", "paper": 1.0, "lab": int8,
         "expect": (0.95, 1.05), "fmt": ".0%", "note": "Part 3.3: int8 costs nothing"},
        {"claim": "R at int8 (bits / param)", "paper": PAPER_R["int8"], "lab": get("R/int8 GPTQ") or get("R/int8"),
         "fmt": ".2f", "note": "Part 3.3 reads 2 at capacity; ours is the fp32 model's R times what int8 keeps"},
        {"claim": "bits kept at int4 (GPTQ, one scale per channel)", "paper": 0.35, "lab": int4,
         "expect": (0.0, 0.5), "fmt": ".0%", "note": "Part 3.3: 2 → 0.7 bits/param, 'more than 2×' lost"},
        {"claim": "GPTQ − round to nearest, fraction kept (worst case)", "paper": "≥ 0", "lab": worst,
         "expect": (-0.03, 1.0), "fmt": "+.3f", "note": "GPTQ minimises each layer's output error"},
        {"claim": "bits per storage bit (most of any scheme)", "paper": "≤ 1", "lab": get("max bits per storage bit"),
         "expect": (0.0, 1.0), "fmt": ".3f", "note": "a b-bit parameter holds at most b bits"},
    ]


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def figure_kept(records: Iterable[Mapping[str, Any]], embeddings: str = "quantized", title: str | None = None
                ) -> go.Figure:
    """Bars of the fraction of bits kept per scheme, one bar per model, with Part 3.3's fractions (2 → 2
    bits at int8, 2 → 0.7 at int4, GPTQ) as a series of their own."""
    from labkit import plots

    wide = kept_table(records, embeddings)
    schemes = [c for c in wide.columns if c not in ("model", "params")]
    series = {str(row["model"]): [None if pd.isna(row[s]) else float(row[s]) for s in schemes]
              for _, row in wide.iterrows()}
    paper = [(_paper_r(s) / PAPER_R["fp16"]) if _paper_r(s) is not None else None for s in schemes]
    series["Part 3.3 (GPTQ, GPT-2)"] = paper
    kept = "embeddings quantized too" if embeddings == "quantized" else "embeddings kept in fp32"
    return plots.grouped_bars(schemes, series, title=title or f"Fraction of the bits kept ({kept})",
                              y_title="bits / bits at fp32", hlines={"fp32": 1.0}, text_format=".0%")


def figure_storage(records: Iterable[Mapping[str, Any]], title: str = "Knowledge against storage: bits "
                   "learned per parameter vs bits stored per parameter") -> go.Figure:
    """R of every quantized model against its storage bits per parameter (log x), with the line R = storage
    (a parameter of b bits holds at most b bits) and Part 3.3's 2 bits per parameter."""
    from labkit import plots

    table_ = schemes_table(records)
    top = table_[table_.exposures == table_.exposures.max()]
    series: dict[str, Any] = {}
    for (embeddings, method), part in top.groupby(["embeddings", "method"], sort=False):
        name = {"cast": "float casts", "rtn": "round to nearest", "gptq": "GPTQ"}[method]
        name = name if method == "cast" else f"{name}, embeddings {embeddings}"
        series[name] = {"x": list(part.storage_bits_per_param), "y": list(part.R), "mode": "markers",
                        "text": [f"{m}: {s}" for m, s in zip(part.model, part.scheme, strict=True)]}
    lo = max(1.0, 0.8 * float(top.storage_bits_per_param.min()))
    hi = 1.2 * float(top.storage_bits_per_param.max())
    series["limit: R = storage bits"] = {"x": [lo, hi], "y": [lo, hi], "mode": "lines", "dash": "dot",
                                         "color": "#888"}
    return plots.curves(series, title=title, x_title="storage bits per parameter (log)", y_title="R (bits / P)",
                        log_x=True, hlines={"2 bits / param (Part 3.3)": 2.0}, hovermode="closest")


# --------------------------------------------------------------------------------------------------
# Precomputed results (results/quantization_cpu_full.json)
# --------------------------------------------------------------------------------------------------


def precomputed(path: str | None = None) -> dict[str, Any] | None:
    """The committed cpu-full results (``{"provenance", "records"}``), or None when the file is absent."""
    return load_results(path or PRECOMPUTED)


def provenance_view(results: Mapping[str, Any] | None, profile: str = "cpu-full") -> Table:
    """A results file's provenance as chapter 2 shows it (``capacity.provenance_view``)."""
    return capacity.provenance_view(results, NAME, profile)


__all__ = ["CHAPTER", "NAME", "PAPER_R", "PROFILES", "SCHEMES", "Expect", "QuantizationRun", "Sizes",
           "calibration_tokens", "claims", "cost", "evaluate", "figure_kept", "figure_storage", "gptq_gaps",
           "grid", "grid_view", "headline", "kept_table", "kept_view", "parse_scheme", "precision_summary",
           "precomputed", "provenance_view", "run", "schemes_table", "summary_view", "sweep"]
