"""Chapter 3's experiment module beyond one run: the library sample, the bits-per-parameter table, the
claims set next to the papers' numbers, the figures, the cpu-full profile and its precomputed results.

Records are written by hand (as ``labkit.sweep`` stores them), so nothing here trains a model.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest

from labkit.experiments import base, memorization
from labkit.tables import DIFFERS, NOT_RUN, REPRODUCES, paper_vs_lab

UNIFORM = {"data": "uniform", "S": 4, "V": 16, "key_base": 10, "model": "tiny", "n_layer": 2, "n_head": 2,
           "exposures": 1000, "batch_size": 256, "lr": 3e-2, "weight_decay": 0.05, "seed": 0, "max_size": 4096}
BITS_PER_ITEM = 4 * math.log2(16)


def _mls(d: int, items: int, params: int, probes: list[tuple[int, float]]) -> dict:
    config = {**UNIFORM, "d_model": d, "method": "mls", "start": 32, "tolerance": 0.25, "threshold": 1.0}
    bits = items * BITS_PER_ITEM
    result = {"items": items, "bits": bits, "params": params, "bits_per_param": bits / params, "capped": False,
              "probes": [{"n": n, "fraction_recalled": f, "complete": f == 1.0, "final_loss": 0.1,
                          "wall_time": 1.0} for n, f in probes], "wall_time": 5.0}
    return {"config": config, "result": result}


def _mac(d: int, library: int, items: int, params: int, loss_bpp: float) -> dict:
    config = {**UNIFORM, "d_model": d, "method": "mac", "n_items": library}
    bits = items * BITS_PER_ITEM
    result = {"items": items, "bits": bits, "params": params, "bits_per_param": bits / params,
              "n_items": library, "fraction_recalled": items / library, "loss_bits": loss_bpp * params,
              "loss_bits_per_param": loss_bpp, "wall_time": 2.0}
    return {"config": config, "result": result}


# two widths; d=8 with MAC on two libraries (the larger one further beyond capacity), d=12 on one
RECORDS = [
    _mac(12, 494, 205, 3948, 1.52),
    _mls(8, 128, 1864, [(32, 1.0), (64, 1.0), (128, 1.0), (256, 0.4), (192, 0.8), (160, 0.95)]),
    _mac(8, 233, 78, 1864, 1.33),
    _mac(8, 932, 20, 1864, 1.25),
    _mls(12, 256, 3948, [(32, 1.0), (64, 1.0), (128, 1.0), (256, 1.0), (512, 0.5), (384, 0.9), (320, 0.97)]),
]


def runs():
    return memorization.runs_table(RECORDS)


def test_sample_table_shows_keys_values_and_the_bits_of_each_item():
    sample = memorization.sample_table({**UNIFORM, "d_model": 8}, 3)
    assert list(sample.columns) == ["key", "value", "bits"] and sample.index.name == "item"
    assert list(sample["key"]) == ["d0", "d1", "d2"]  # item i's key is i in base 10
    assert all(len(v.split()) == 4 and all(t.startswith("v") for t in v.split()) for v in sample["value"])
    assert list(sample["bits"]) == [BITS_PER_ITEM] * 3
    assert sample.to_text().splitlines()[0].split() == ["item", "key", "value", "bits"]
    assert sample.to_text() == memorization.sample_table({**UNIFORM, "d_model": 12}, 3).to_text()  # data only
    biod = {"data": "biod", "K": 2, "C": 1, "D": 8, "L": 1, "T": 8, "name_pools": [6, 6], "seed": 0}
    assert list(memorization.sample_table(biod, 2).columns) == ["record", "bits"]


def test_bits_per_param_table_takes_the_largest_mac_library_of_each_model():
    bits = memorization.bits_per_param_table(runs())
    assert list(bits.columns) == ["model", "P", "MAC library", "MLS bits/P", "MAC bits/P", "loss bits/P"]
    assert list(bits["model"]) == ["uniform d=8", "uniform d=12"] and list(bits["P"]) == [1864, 3948]
    assert list(bits["MAC library"]) == [932, 494]
    assert bits["loss bits/P"].tolist() == [1.25, 1.52]
    assert bits["MLS bits/P"][0] == pytest.approx(128 * BITS_PER_ITEM / 1864)
    assert bits["MAC bits/P"][0] == pytest.approx(20 * BITS_PER_ITEM / 1864)


def test_claims_set_the_lab_next_to_the_papers_and_say_what_reproduces():
    claims = memorization.claims(runs())
    assert [c["paper"] for c in claims] == ["grows with P", "≈ 1", memorization.MORRIS_BITS_PER_PARAM]
    growth, agreement, morris = claims
    assert growth["lab"] == "uniform: 128 → 256 items (d = 8 → 12)" and growth["status"] is True
    # MAC / MLS: 20/128 = 0.16 (outside ×2), 78/128 = 0.61, 205/256 = 0.80
    assert agreement["lab"] == "0.16 to 0.80" and agreement["status"] is False
    assert morris["lab"] == 1.52 and morris["expect"] == memorization.MORRIS_REPRODUCED
    assert morris["note"] == "exact recall (MLS): 1.04 to 1.10 bits/P"
    shown = paper_vs_lab(claims, lab="this run")
    assert list(shown["status"]) == [REPRODUCES, DIFFERS, DIFFERS]
    assert list(shown["paper"]) == ["grows with P", "≈ 1", "3.60"] and shown["this run"][2] == "1.52"
    # within the factor: agreement; at Morris et al.'s plateau: reproduced; a narrower model larger: not
    close = [r for r in RECORDS if r["config"].get("n_items") != 932]
    assert memorization.claims(memorization.runs_table(close))[1]["status"] is True
    plateau = [_mac(12, 494, 205, 3948, 3.5) if r["config"].get("n_items") == 494 else r for r in RECORDS]
    assert paper_vs_lab(memorization.claims(memorization.runs_table(plateau)))["status"][2] == REPRODUCES
    shrinks = [_mls(12, 100, 3948, [(32, 1.0)]) if r["config"]["method"] == "mls" and r["config"]["d_model"] == 12
               else r for r in RECORDS]
    assert memorization.claims(memorization.runs_table(shrinks))[0]["status"] is False


def test_claims_without_results_are_marked_not_run():
    claims = memorization.claims(None)
    assert [c["lab"] for c in claims] == [None, None, None]
    assert list(paper_vs_lab(claims)["status"]) == [NOT_RUN] * 3


def test_figures_are_built_from_records_with_the_lab_helpers():
    recall = memorization.figure_recall(RECORDS)
    assert isinstance(recall, go.Figure)
    names = [t.name.replace("<br>", " ") for t in recall.data]  # long legend entries are wrapped
    assert "uniform, d=8: MLS probes (MLS = 128)" in names and "all recalled (y = x)" in names
    probes = recall.data[names.index("uniform, d=8: MLS probes (MLS = 128)")]
    assert list(probes.x) == [32, 64, 128, 160, 192, 256]  # sorted by library size
    assert list(probes.y) == pytest.approx([32, 64, 128, 152, 153.6, 102.4])  # items recalled
    macs = recall.data[names.index("uniform, d=8: MAC")]
    assert list(macs.x) == [233, 932] and list(macs.y) == [78, 20] and macs.marker.symbol == "diamond"
    assert recall.layout.xaxis.type == recall.layout.yaxis.type == "log"
    pairs = memorization.pairs_table(runs())
    agreement = memorization.figure_agreement(pairs)
    items = next(t for t in agreement.data if t.name == "items")
    assert len(items.x) == 3 and "uniform d=8, MAC on 932" in items.text
    assert {t.name for t in agreement.data} >= {"y = x", f"×{memorization.AGREEMENT_FACTOR:g}"}
    bars = memorization.figure_bits_per_param(memorization.bits_per_param_table(runs()))
    assert [t.name.replace("<br>", " ") for t in bars.data if isinstance(t, go.Bar)] == [
        "MLS (exact recall)", "MAC (exact recall)", "MAC library, loss bits (Morris-style)"]
    morris = [t for t in bars.data if t.name == "Morris et al.: 3.6"]
    assert len(morris) == 1 and set(morris[0].y) == {3.6}


def test_cpu_full_profile_traces_mac_over_growing_libraries():
    profile = memorization.PROFILES["cpu-full"]
    assert list(base.PROFILE_ORDER).index("cpu-full") > list(base.PROFILE_ORDER).index("quick")
    grid = memorization.grid(profile.sizes)
    for d in profile.sizes.models.widths:
        mine = [c for c in grid if c["d_model"] == d]
        assert [c["method"] for c in mine].count("mls") == 1
        libraries = [c["n_items"] for c in mine if c["method"] == "mac"]
        assert len(libraries) == len(profile.sizes.mac_bits_per_param) and libraries == sorted(libraries)
    assert profile.sizes.exposures == 1000 and profile.sizes.start == 32  # longer training, finer search


def test_precomputed_results_absent_and_present(tmp_path):
    assert memorization.PRECOMPUTED == base.RESULTS_DIR / "memorization_cpu_full.json"
    missing = tmp_path / "memorization_cpu_full.json"
    assert memorization.precomputed(missing) is None
    line = memorization.provenance_line(None)
    assert "memorization_cpu_full.json is absent" in line
    assert base.regenerate_command("memorization", "cpu-full") in line
    meta = base.provenance("03_mls_vs_mac", "cpu-full", "the command", 12.3, base.Execution(2, 1))
    base.save_results(missing, RECORDS, meta)
    loaded = memorization.precomputed(missing)
    assert len(loaded["records"]) == len(RECORDS)
    line = memorization.provenance_line(loaded)
    assert line.startswith("precomputed (cpu-full, 5 runs): the command") and "12.3 s" in line
    assert memorization.claims(memorization.runs_table(loaded["records"]))[0]["status"] is True
