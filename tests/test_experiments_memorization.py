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
        mine = [c for c in grid if c["d_model"] == d and c["data"] == "uniform" and "series" not in c]
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


def _plateau(d: int, library: int, exposures: int, seed: int, loss_bpp: float, params: int = 1000,
             non_embedding: int = 900) -> dict:
    record = _mac(d, library, 0, params, loss_bpp)
    record["config"].update({"series": "plateau", "exposures": exposures, "seed": seed})
    record["result"].update({"non_embedding_params": non_embedding, "bits_per_item": BITS_PER_ITEM})
    return record


# d=16: libraries of 1 and 4 bits/P (P = 1000, 16 bits an item) at 2000 exposures over two seeds, and the
# largest one at 500 and 1000 for seed 0 only
PLATEAU = [_plateau(16, 62, 2000, 0, 0.98), _plateau(16, 62, 2000, 1, 1.0), _plateau(16, 250, 2000, 0, 2.2),
           _plateau(16, 250, 2000, 1, 2.4), _plateau(16, 250, 500, 0, 1.5), _plateau(16, 250, 1000, 0, 2.0)]


def test_plateau_grid_reads_capacity_over_libraries_and_the_curve_over_exposures():
    sizes = memorization.PROFILES["cpu-full"].sizes
    plateau = memorization.plateau_grid(sizes, sizes.seeds)
    assert plateau == [c for c in memorization.grid(sizes, sizes.seeds) if c.get("series") == "plateau"]
    assert {c["method"] for c in plateau} == {"mac"} and {c["data"] for c in plateau} == {"uniform"}
    for d in sizes.plateau_models.widths:
        for seed in sizes.seeds:
            mine = [c for c in plateau if c["d_model"] == d and c["seed"] == seed]
            at = sorted(c["n_items"] for c in mine if c["exposures"] == sizes.plateau_at)
            assert len(at) == len(sizes.plateau_bits)  # one library per multiple of P
            curve = sorted(c["exposures"] for c in mine if c["n_items"] == at[-1])
            widest = d == max(sizes.plateau_models.widths)
            expected = [e for e in sizes.plateau_exposures if widest and (seed == 0 or e <= sizes.plateau_at)]
            assert curve == (expected or [sizes.plateau_at])
            assert {c["lr"] for c in mine} == {sizes.plateau_recipe[1] * sizes.lr_width / d}  # 1/width rates
    # MLS and MAC run for the first seed only, with the 1/width rates too
    main = [c for c in memorization.grid(sizes, sizes.seeds) if "series" not in c]
    assert {c["seed"] for c in main} == {0}
    assert {(c["d_model"], c["lr"]) for c in main} == {(d, sizes.lr * 24 / d) for d in sizes.models.widths}


def test_plateau_table_and_values_average_over_seeds():
    runs = memorization.runs_table(RECORDS + PLATEAU)
    table = memorization.plateau_table(runs)
    assert list(table[["library", "exposures", "seeds"]].itertuples(index=False, name=None)) == [
        (62, 2000, 2), (250, 500, 1), (250, 1000, 1), (250, 2000, 2)]
    last = table.iloc[-1]
    assert last["loss bits/P"] == pytest.approx(2.3) and (last["low"], last["high"]) == (2.2, 2.4)
    assert last["loss bits/P_ne"] == pytest.approx(2.3 * 1000 / 900)
    assert last["library bits/P"] == pytest.approx(250 * BITS_PER_ITEM / 1000)
    (value,) = memorization.plateau_values(runs).to_dict("records")
    assert (value["d_model"], value["exposures"], value["library"]) == (16, 2000, 250)
    assert value["loss bits/P"] == pytest.approx(2.3)
    # the plateau series never joins MLS / MAC pairs
    assert len(memorization.pairs_table(runs)) == len(memorization.pairs_table(memorization.runs_table(RECORDS)))
    assert memorization.plateau_table(runs[runs.series == "main"]).empty


def test_claims_read_morris_count_off_the_plateau_series():
    morris = memorization.claims(memorization.runs_table(RECORDS + PLATEAU))[2]
    assert morris["lab"] == pytest.approx(2.3)
    assert morris["note"].startswith("d=16, 2,000 exposures (seeds 2.20-2.40); non-embedding 2.56; fp32: 3.8")
    assert paper_vs_lab([morris])["status"][0] == DIFFERS
    high = [_plateau(16, 250, 2000, s, 3.7) for s in (0, 1)]
    assert paper_vs_lab(memorization.claims(memorization.runs_table(RECORDS + high)))["status"][2] == REPRODUCES


def test_plateau_figures_draw_the_seeds_spread():
    runs = memorization.runs_table(RECORDS + PLATEAU)
    library = memorization.figure_plateau(runs)
    curve = next(t for t in library.data if t.name.startswith("d=16"))
    assert list(curve.x) == pytest.approx([62 * 16 / 1000, 4.0]) and list(curve.y) == pytest.approx([0.99, 2.3])
    assert list(curve.error_y.array) == pytest.approx([0.01, 0.1])
    assert list(curve.error_y.arrayminus) == pytest.approx([0.01, 0.1])
    names = [t.name.replace("<br>", " ") for t in library.data]  # long legend entries are wrapped
    assert "everything memorized (y = x)" in names and "Morris et al.: 3.6" in names
    exposures = memorization.figure_plateau_exposures(runs)
    curve = next(t for t in exposures.data if t.name.startswith("d=16"))
    assert list(curve.x) == [500, 1000, 2000] and list(curve.y) == pytest.approx([1.5, 2.0, 2.3])
    with pytest.raises(ValueError, match="no plateau series"):
        memorization.figure_plateau(memorization.runs_table(RECORDS))


def test_committed_cpu_full_results_are_todays_grid():
    from labkit.sweep import config_hash

    pre = memorization.precomputed()
    assert pre is not None, "results/memorization_cpu_full.json is committed"
    sizes = memorization.PROFILES["cpu-full"].sizes
    assert sorted(config_hash(r["config"]) for r in pre["records"]) == sorted(
        config_hash(c) for c in memorization.grid(sizes, sizes.seeds))
    values = memorization.plateau_values(memorization.runs_table(pre["records"]))
    assert list(values.d_model) == [16, 24] and (values.seeds == 2).all()
