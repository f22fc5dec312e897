"""labkit.experiments.capacity: what chapter 2 shows (the claims next to the paper's, the scaling slope,
the display tables and the figures), on hand-made sweep records, so no test trains a model."""

from __future__ import annotations

import json
import math

import pytest

from labkit.data.registry import make_dataset
from labkit.experiments import capacity
from labkit.tables import REPRODUCES, Table, paper_vs_lab

BIOD = {"data": "biod", "K": 2, "C": 1, "D": 8, "L": 1, "T": 8, "name_pools": [6, 6], "model": "tiny",
        "d_model": 8, "n_layer": 2, "n_head": 2, "N": 20, "exposures": 100, "batch_size": 8, "lr": 1e-3,
        "weight_decay": 0.05, "seed": 0}


def _record(exposures, d, R, params, seed=0, N=20, losses=(3.0, 2.0, 1.5)):
    """A sweep record as ``labkit.sweep`` stores it, with the result keys chapter 2 reads."""
    bits = R * params
    return {"config": {**BIOD, "d_model": d, "exposures": exposures, "seed": seed, "N": N},
            "result": {"R": R, "R_nonembedding": 2 * R, "bits": bits, "params": params,
                       "non_embedding_params": params // 2, "information_bits": 10 * bits,
                       "fraction_learned": 0.1, "final_loss": losses[-1], "wall_time": 1.0, "steps": 30,
                       "history": {"exposures": [1.0, 10.0, float(exposures)], "losses": list(losses)}}}


def _runs(*records):
    return capacity.runs_table(list(records))


#: quick-like runs: R = 2 at 1000 exposures at both sizes (linear), 0.3 at 100
LINEAR = [_record(100, 8, 0.3, 1000), _record(100, 16, 0.3, 4000),
          _record(1000, 8, 2.0, 1000), _record(1000, 16, 2.0, 4000)]


def test_scaling_slope_is_one_for_a_constant_ratio_and_reads_either_parameter_count():
    runs = _runs(*LINEAR)
    assert capacity.scaling_slope(runs, 1000) == pytest.approx(1.0)
    # R doubling from P = 1000 to 4000: bits grow as P^1.5
    rising = _runs(_record(1000, 8, 1.0, 1000), _record(1000, 16, 2.0, 4000))
    assert capacity.scaling_slope(rising, 1000) == pytest.approx(1.5)
    assert capacity.scaling_slope(rising, 1000, "non_embedding_params") == pytest.approx(1.5)
    assert capacity.scaling_slope(_runs(_record(1000, 8, 2.0, 1000)), 1000) is None  # one size
    assert capacity.scaling_slope(runs, 300) is None  # budget not run


def test_claims_put_the_lab_next_to_the_paper_with_the_profiles_thresholds():
    runs = _runs(*LINEAR)
    expect = capacity.PROFILES["quick"].expect
    rows = capacity.claims(capacity.peaks(runs), expect, runs)
    assert [r["claim"] for r in rows] == [
        "peak R at 1000 exposures, at least 2", "peak R at 1000 exposures, at most 2.3",
        "peak R at 100 exposures, about 1", "gain in peak R, 100 → 1000 exposures",
        "slope of log bits vs log P, 1000 exposures"]
    assert [r["lab"] for r in rows] == pytest.approx([2.0, 2.0, 0.3, 1.7, 1.0])
    assert rows[0]["expect"] == (expect.R_min, None) and rows[3]["expect"] == (expect.gap_min, None)
    assert rows[1]["expect"] == (None, capacity.PAPER_CEILING)
    shown = paper_vs_lab(rows, lab="this run")
    assert isinstance(shown, Table)
    assert list(shown.status) == [REPRODUCES, REPRODUCES, "✗ does not reproduce", REPRODUCES, REPRODUCES]
    assert list(shown.paper) == ["≥ 2", "≤ 2.3", "≈ 1", "≈ 1 (2 vs 1)", "1 (linear)"]


def test_claims_fail_a_peak_above_the_ceiling_and_a_slope_far_from_linear():
    runs = _runs(_record(100, 8, 0.9, 1000), _record(100, 16, 0.9, 4000),
                 _record(1000, 8, 1.2, 1000), _record(1000, 16, 2.5, 4000))
    rows = capacity.claims(capacity.peaks(runs), capacity.PROFILES["cpu-full"].expect, runs)
    status = list(paper_vs_lab(rows).status)
    assert status == [REPRODUCES, "✗ does not reproduce", REPRODUCES, REPRODUCES, "✗ does not reproduce"]


def test_claims_without_results_or_at_other_budgets():
    expect = capacity.PROFILES["cpu-full"].expect
    absent = paper_vs_lab(capacity.claims(None, expect))  # precomputed file absent: the paper's rows, not run
    assert len(absent) == 5 and set(absent.status) == {"not run"} and absent.paper[0] == "≥ 2"
    smoke = _runs(_record(10, 8, 0.0, 1000), _record(300, 8, 0.4, 1000))
    rows = capacity.claims(capacity.peaks(smoke), capacity.PROFILES["smoke"].expect, smoke)
    assert [r["claim"] for r in rows][:4] == ["peak R at 300 exposures", "peak R at 300 exposures, at most 2.3",
                                              "peak R at 10 exposures", "gain in peak R, 10 → 300 exposures"]
    assert [r["paper"] for r in rows] == ["—", "≤ 2.3", "—", "—", "1 (linear)"]
    assert rows[2]["expect"] is None and rows[4]["lab"] is None  # one size: no slope
    one_budget = capacity.claims(capacity.peaks(_runs(LINEAR[2], LINEAR[3])), expect)
    assert len(one_budget) == 3  # no fewer-exposures row and no gain


def test_display_tables_are_lab_tables_with_fixed_formats():
    grid = capacity.grid(capacity.PROFILES["smoke"].sizes, seeds=(0,))
    text = capacity.grid_view(grid).to_text().splitlines()
    assert text[0].split() == ["d", "heads", "P", "P", "non-emb", "N", "information", "(bits)", "information",
                               "/", "2P", "exposures"]
    assert text[1].split()[-2:] == ["10,", "200"] and "," in text[1].split()[2]  # P with a thousands separator
    runs = _runs(*LINEAR)
    shown = capacity.runs_view(runs)
    assert isinstance(shown, Table) and "seed" not in shown.columns and list(shown["R"]) == [0.3, 0.3, 2.0, 2.0]
    assert shown.to_text().splitlines()[1].split() == ["100", "8", "1,000", "20", "30", "300", "10.0%", "0.30",
                                                       "0.60", "1.500", "1"]
    seeds = _runs(*LINEAR, _record(1000, 8, 1.0, 1000, seed=1))
    assert list(capacity.runs_view(seeds).columns)[:3] == ["exposures", "d", "seed"]
    sizes = capacity.sizes_view(seeds)
    assert list(sizes.columns) == ["exposures", "d", "P", "N", "R", "R min", "R max", "R non-emb", "seeds"]
    assert list(sizes.R) == pytest.approx([0.3, 0.3, 1.5, 2.0]) and list(sizes.seeds) == [1, 1, 2, 1]
    assert len(capacity.sizes_view(None)) == 0


def test_peaks_view_and_provenance_view():
    peaks = capacity.peaks(_runs(*LINEAR))
    shown = capacity.peaks_view({"this run": peaks, "cpu-full (precomputed)": None})
    assert list(shown.columns) == ["paper (Part 3.3)", "this run"] and list(shown.index) == [100, 1000]
    assert shown.at[1000, "this run"] == "2.00 / 4.00 (d=8)"  # the first of two equal sizes
    lines = shown.to_text().splitlines()
    assert lines[0].split()[0] == "exposures" and lines[2].split()[:4] == ["1000", "≥", "2,", "≤"]
    meta = {"command": "python -m labkit sweep capacity", "load_average_at_end": [1.25, 2.0], "cpus": 2}
    rows = capacity.provenance_view({"provenance": meta, "records": []})
    assert list(rows.field) == ["command", "cpus", "load_average_at_end"]
    assert list(rows.value) == ["python -m labkit sweep capacity", "2", "1.25, 2.00"]
    absent = capacity.provenance_view(None)
    assert len(absent) == 1 and "labkit sweep capacity --profile cpu-full" in absent.value[0]


def test_precomputed_runs_read_the_committed_file_or_none(tmp_path, monkeypatch):
    monkeypatch.setattr(capacity, "PRECOMPUTED", tmp_path / "absent.json")
    assert capacity.precomputed() is None and capacity.precomputed_runs() is None
    path = tmp_path / "capacity_cpu_full.json"
    records = [_record(100, 8, 0.3, 1000), _record(1000, 8, 2.0, 1000)]
    for record in records:
        del record["result"]["history"]  # the committed file keeps no loss curves
    path.write_text(json.dumps({"provenance": {"profile": "cpu-full"}, "records": records}))
    monkeypatch.setattr(capacity, "PRECOMPUTED", path)
    runs = capacity.precomputed_runs()
    assert list(runs.exposures) == [100, 1000] and list(runs.R) == [0.3, 2.0]


def test_figure_capacity_colors_by_exposures_and_marks_each_run():
    ours, theirs = _runs(*LINEAR), _runs(_record(100, 32, 0.9, 9000), _record(1000, 32, 2.4, 9000))
    fig = capacity.figure_capacity({"this run": ours, "cpu-full": theirs, "absent": None})
    names = [t.name for t in fig.data]
    assert names[:2] == ["1 bit/param", "2 bits/param"]
    points = {t.name.replace("<br>", " "): t for t in fig.data[2:]}
    assert list(points) == ["this run, 100 exposures", "this run, 1000 exposures", "cpu-full, 100 exposures",
                            "cpu-full, 1000 exposures"]
    mine, precomputed = points["this run, 1000 exposures"], points["cpu-full, 1000 exposures"]
    assert list(mine.x) == [1000, 4000] and list(mine.y) == [2000, 8000]
    assert mine.marker.color == precomputed.marker.color != points["this run, 100 exposures"].marker.color
    assert mine.marker.symbol == "circle" and precomputed.marker.symbol == "diamond-open"
    assert mine.text[0] == "d=8, N=20, R=2.00 (non-emb 4.00)"
    assert fig.layout.xaxis.type == "log"


def test_figure_peaks_shows_the_paper_and_both_parameter_counts():
    peaks = capacity.peaks(_runs(*LINEAR))
    fig = capacity.figure_peaks({"this run": peaks, "cpu-full": None})
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["paper (all params)", "this run, all params", "this run, non-embedding"]
    assert list(bars[0].x) == ["100", "1000"] and list(bars[0].y) == [1.0, 2.0]
    assert list(bars[2].y) == [0.6, 4.0]
    lines = [t.name for t in fig.data if t.type == "scatter"]
    assert lines == ["2 bits/param", "1 bit/param"]


def test_figure_loss_curves_name_the_steps_and_draw_the_no_knowledge_plateau():
    records = [_record(1000, 8, 2.0, 1000, N=20), _record(100, 16, 0.3, 4000, N=20)]
    fig = capacity.figure_loss_curves(records)
    names = [t.name.replace("<br>", " ") for t in fig.data]
    assert names[:2] == ["d=16, 100 exposures (3 steps/exposure)", "d=8, 1000 exposures (3 steps/exposure)"]
    plateau = fig.data[-1]
    expected = capacity.no_knowledge_loss(make_dataset(records[0]["config"]))
    assert list(plateau.y) == pytest.approx([expected, expected])
    assert expected == pytest.approx((2 * math.log(6) + 2 * math.log(8)) / (2 + 2 + 2 * 2 - 1))
    assert fig.layout.xaxis.type == "log"


def test_recipes_per_exposure_and_the_plateau_sweep_in_the_grid():
    sizes = capacity.PROFILES["cpu-full"].sizes
    grid = capacity.grid(sizes, (0, 1))
    sized = [c for c in grid if "series" not in c]
    assert {(c["exposures"], c["batch_size"], c["lr"]) for c in sized} == {(100, 32, 9e-3), (1000, 128, 1.5e-2)}
    plateau = [c for c in grid if c.get("series") == "plateau"]
    n16 = next(c["N"] for c in sized if c["d_model"] == 16)
    assert sorted({c["N"] for c in plateau}) == [round(f * n16) for f in (0.25, 0.5, 2.0, 4.0)]
    assert {c["d_model"] for c in plateau} == {16} and {c["seed"] for c in plateau} == {0}
    assert all("series" not in c for c in capacity.grid(capacity.PROFILES["quick"].sizes))  # quick hashes unchanged


def test_the_plateau_runs_stay_out_of_the_peaks_and_form_their_own_table():
    records = LINEAR + [_record(1000, 8, 9.0, 1000, N=80), _record(1000, 8, 0.9, 1000, N=5)]
    for r in records[-2:]:
        r["config"]["series"] = "plateau"
    runs = _runs(*records)
    assert capacity.peaks(runs).at[1000, "R"] == pytest.approx(2.0)  # the R = 9 plateau run is no model size
    table = capacity.plateau_table(runs)
    assert list(table[table.exposures == 1000].N) == [5, 20, 80] and list(table.R)[-3:] == [0.9, 2.0, 9.0]
    assert capacity.plateau_table(_runs(*LINEAR)).empty


def test_figure_plateau_and_peak_error_bars():
    records = LINEAR + [_record(1000, 8, 9.0, 1000, N=80), _record(1000, 8, 2.0, 1000, seed=1)]
    records[-2]["config"]["series"] = "plateau"
    runs = _runs(*records)
    fig = capacity.figure_plateau(runs)
    assert [t.name.replace("<br>", " ") for t in fig.data][:3] == [
        "information in the data", "bits learned, 100 exposures", "bits learned, 1000 exposures"]
    assert list(fig.data[2].x) == [20, 80]
    with pytest.raises(ValueError, match="no N sweep"):
        capacity.figure_plateau(_runs(*LINEAR))
    bars = capacity.figure_peaks({"this run": capacity.peaks(runs)})
    lab = next(t for t in bars.data if t.name.replace("<br>", " ") == "this run, all params")
    assert lab.error_y.array[1] == pytest.approx(0.0) and lab.error_y.array[0] is None  # 2 seeds at 1000 only
