"""Chapter 6's experiment: scheme names, the grid (trained and committed models), the measurement of a
quantized model, the tables, claims and figures, and the committed results against today's grid.

One smoke-sized sweep is trained once per module (``smoke_records``, a few seconds); the rest is tables.
"""

from __future__ import annotations

import json

import pytest

from labkit import quant
from labkit.experiments import capacity, quantization
from labkit.tables import DIFFERS, REPRODUCES, paper_vs_lab

SMOKE = quantization.PROFILES["smoke"]


@pytest.fixture(scope="module")
def smoke_records():
    return quantization.sweep(SMOKE, 0, None, progress=False).records


@pytest.mark.parametrize(("label", "expected"), [
    ("fp32", ("fp32", {"group_size": None})),
    ("int8 GPTQ", ("int8", {"group_size": None, "method": "gptq"})),
    ("int4 g8", ("int4", {"group_size": 8})),
    ("int3 g4 GPTQ", ("int3", {"group_size": 4, "method": "gptq"})),
])
def test_scheme_labels_parse_into_quantize_options(label, expected):
    assert quantization.parse_scheme(label) == expected


@pytest.mark.parametrize("label", ["int2", "int4 g0", "int4 GPTQ GPTQ", "bf16 GPTQ", "fp16 g8", "", "int4 rtn"])
def test_bad_scheme_labels_name_the_parameter(label):
    with pytest.raises(ValueError, match="schemes: .* is not valid; allowed"):
        quantization.parse_scheme(label)
    with pytest.raises(ValueError, match="schemes"):
        quantization.grid(quantization.Sizes(schemes=("fp32", label)))


def test_quick_grid_trains_one_model_and_cpu_full_quantizes_the_committed_ones():
    (config,) = quantization.grid(quantization.PROFILES["quick"].sizes)
    assert config["method"] == "train" and config["exposures"] == 1000 and config["schemes"][0] == "fp32"
    sizes = quantization.PROFILES["cpu-full"].sizes
    grid = quantization.grid(sizes, sizes.seeds)
    assert {c["method"] for c in grid} == {"saved"}
    sources = [c["model_config"] for c in grid]
    assert sources == capacity.committed_configs(sizes.saved)
    assert {(s["d_model"], s["exposures"]) for s in sources} == {(d, e) for d in (16, 24, 32, 40) for e in (100, 1000)}
    assert all(s["seed"] == 0 and "series" not in s for s in sources)
    for label in sizes.schemes:  # groups of 8 divide every width and 4 x width
        group = quantization.parse_scheme(label)[1]["group_size"]
        assert group is None or all(d % group == 0 for d in (16, 24, 32, 40))


def test_smoke_sweep_measures_every_scheme_twice_for_integers(smoke_records):
    (record,) = smoke_records
    rows = record["result"]["schemes"]
    floats = [s for s in SMOKE.sizes.schemes if quantization.parse_scheme(s)[0] not in quant.INT_BITS]
    assert len(rows) == len(floats) + 2 * (len(SMOKE.sizes.schemes) - len(floats))
    fp32 = next(r for r in rows if r["scheme"] == "fp32")
    assert fp32["kept"] == 1.0 and fp32["bits"] == pytest.approx(record["result"]["bits"], rel=1e-6)
    assert fp32["storage_bits_per_param"] == 32
    assert all(r["bits_per_storage_bit"] <= 1 for r in rows)
    int8 = {r["embeddings"]: r for r in rows if r["scheme"] == "int8"}
    assert set(int8) == {"quantized", "fp32"}
    assert int8["quantized"]["storage_bits"] < int8["fp32"]["storage_bits"]  # embeddings at 8 bits, not 32
    assert 8 < int8["quantized"]["quantized_bits_per_param"] < 10  # 8 bits + a 16-bit scale per row


def test_tables_claims_and_figures(smoke_records):
    summary = quantization.precision_summary(smoke_records)
    assert list(summary.scheme[:2]) == ["fp32", "bf16"] and summary.loc[0, "kept"] == 1.0
    assert summary.loc[summary.scheme == "int8 GPTQ", "paper R"].iloc[0] == 2.0
    wide = quantization.kept_table(smoke_records)
    assert list(wide.columns[:3]) == ["model", "params", "fp32"] and len(wide) == 1
    gaps = quantization.gptq_gaps(smoke_records)
    assert set(gaps.precision) == {"int8", "int4"} and len(gaps) == 4  # 2 precisions x 2 embeddings choices
    h = quantization.headline(smoke_records)
    assert h["kept/fp32"] == 1.0 and h["R/fp32"] == pytest.approx(smoke_records[0]["result"]["R"])
    claims = quantization.claims(smoke_records)
    assert claims[0]["lab"] == pytest.approx(h["kept/int8 GPTQ"])
    assert claims[3]["lab"] == pytest.approx(gaps["gptq - rtn"].min())
    bars = quantization.figure_kept(smoke_records)
    model = f"d=8, {SMOKE.sizes.exposures[0]} exp."
    assert [t.name for t in bars.data if t.type == "bar"] == [model, "Part 3.3 (GPTQ, GPT-2)"]
    scatter = quantization.figure_storage(smoke_records)
    assert "limit: R = storage bits" in {t.name for t in scatter.data}
    assert quantization.summary_view(smoke_records).to_text()


def test_claims_without_records_are_not_run_and_read_the_numbers():
    assert all(c["lab"] is None for c in quantization.claims(None))

    def record(int8: float, int4: float) -> dict:
        rows = []
        for scheme, kept in (("fp32", 1.0), ("int8 GPTQ", int8), ("int8", int8), ("int4 GPTQ", int4),
                             ("int4", int4)):
            precision, options = quantization.parse_scheme(scheme)
            method = "gptq" if options.get("method") else ("cast" if precision == "fp32" else "rtn")
            rows.append({"scheme": scheme, "precision": precision, "method": method, "group_size": None,
                         "embeddings": "quantized", "bits": 1000 * kept, "R": 2 * kept, "kept": kept,
                         "storage_bits": 8000, "storage_bits_per_param": 16.0, "bits_per_storage_bit": kept / 8})
        return {"config": {"method": "train", "d_model": 8, "exposures": 1000, "seed": 0},
                "result": {"params": 500, "schemes": rows}}

    shown = paper_vs_lab(quantization.claims([record(0.99, 0.3)]))
    assert list(shown["status"])[0] == REPRODUCES and list(shown["status"])[2] == REPRODUCES
    shown = paper_vs_lab(quantization.claims([record(0.5, 0.9)]))
    assert list(shown["status"])[0] == DIFFERS and list(shown["status"])[2] == DIFFERS


def test_committed_results_match_todays_grid():
    pre = quantization.precomputed()
    if pre is None:
        pytest.skip("results/quantization_cpu_full.json is not committed yet")
    from labkit.sweep import config_hash

    sizes = quantization.PROFILES["cpu-full"].sizes
    expected = {config_hash(c) for c in quantization.grid(sizes, sizes.seeds)}
    assert {config_hash(r["config"]) for r in pre["records"]} == expected
    assert all(json.dumps(r["result"]["schemes"]) for r in pre["records"])


def test_committed_models_are_the_ones_quantized():
    """Each committed chapter 2 model loads (config-hash check) and its fp32 bits in the results file are
    those its model file records; against the sweep's record of the same config (trained batched with
    its other seed, so equal only up to float rounding grown along training) within 10%."""
    pre = quantization.precomputed()
    if pre is None:
        pytest.skip("results/quantization_cpu_full.json is not committed yet")
    from labkit.experiments import models, models_folder

    folder = models_folder("capacity", "cpu-full")
    sweep = {json.dumps(r["config"], sort_keys=True): r["result"] for r in capacity.precomputed()["records"]}
    for record in pre["records"]:
        source = record["config"]["model_config"]
        saved = models.trained_record(source, folder)
        assert saved is not None and models.load_trained(source, folder) is not None
        assert record["result"]["bits"] == pytest.approx(saved["result"]["bits"], rel=1e-6)
        assert record["result"]["R"] == pytest.approx(sweep[json.dumps(source, sort_keys=True)]["R"], rel=0.1)
