"""labkit.experiments.junk: the grid of conditions, loss factors against the clean run, the checks the
claim cell asserts, the paper's factors and the figures, on hand-made records (one test trains the
smoke grid's clean and fresh runs, to check the bit meter reads the useful records only)."""

from __future__ import annotations

import pytest

from labkit.experiments import junk
from labkit.tables import Table


def _record(condition, exposures, bits, seed=0, steps=100):
    c = junk.CONDITIONS[condition]
    config = {"data": "biod_junk", "junk": c.junk, "domain_token": c.domain_token, "condition": condition,
              "model": "tiny", "d_model": 8, "n_layer": 2, "n_head": 2, "N": 100, "exposures": exposures,
              "batch_size": 32, "lr": 1e-2, "seed": seed}
    return {"config": config, "result": {"bits": bits, "R": bits / 2800, "R_nonembedding": bits / 1500, "params": 2800,
                                         "non_embedding_params": 1500, "param_groups": {"active": 2800},
                                         "information_bits": 9000.0, "steps": steps, "tokens_seen": 12 * steps * 32,
                                         "final_loss": 1.0, "wall_time": 1.0,
                                         "history": {"exposures": [1.0, float(exposures)], "losses": [3.0, 2.0]}}}


RECORDS = [_record("clean", 100, 450, steps=400), _record("fresh", 100, 60, steps=2500),
           _record("repetitive", 100, 700, steps=2500), _record("domain", 100, 600, steps=2700),
           _record("clean", 300, 1700), _record("fresh", 300, 65)]


def test_grid_trains_every_condition_on_the_same_people_with_the_same_recipe():
    sizes = junk.PROFILES["cpu-full"].sizes
    configs = junk.grid(sizes)
    assert [(c["condition"], c["exposures"]) for c in configs] == [
        (name, e) for name in ("clean", "fresh", "repetitive", "domain") for e in (100, 300)]
    assert {c["N"] for c in configs} == {600} and {c["batch_size"] for c in configs} == {32}
    assert {(c["junk"], c["domain_token"]) for c in configs if c["condition"] == "domain"} == {("fresh", True)}
    with pytest.raises(ValueError, match="conditions.*allowed: clean, fresh"):
        junk.Sizes(conditions=("clean", "stale"))
    with pytest.raises(ValueError, match="includes 'clean'"):
        junk.Sizes(conditions=("fresh",))


def test_factors_divide_clean_bits_and_carry_the_paper():
    factors = junk.factors(junk.runs_table(RECORDS))
    assert junk.factor_at(factors, "fresh", 100) == pytest.approx(7.5)
    assert junk.factor_at(factors, "fresh", 300) == pytest.approx(1700 / 65)
    assert junk.factor_at(factors, "repetitive", 100) == pytest.approx(450 / 700)
    assert junk.factor_at(factors, "domain", 300) is None and junk.factor_at(None, "fresh", 100) is None
    assert factors.set_index(["condition", "exposures"]).loc[("fresh", 100), "paper"] == "≈ 20"
    rows = {r["claim"]: r for r in junk.claims(factors)}
    fresh = rows["7:1 fresh junk: bits(clean) / bits at 100 exposures"]
    assert fresh["lab"] == pytest.approx(7.5) and fresh["expect"] == pytest.approx((20 / 1.5, 30.0))
    assert rows["7:1 fresh junk: bits(clean) / bits at 1000 exposures"]["lab"] is None


def test_checks_hold_for_a_healthy_run_and_fail_when_junk_does_no_harm():
    expect = junk.PROFILES["quick"].expect
    runs = junk.runs_table(RECORDS)
    rows = junk.checks(junk.factors(runs), runs, expect)
    assert [r["holds"] for r in rows] == [True] * 4 and rows[1]["lab"] == pytest.approx(7.5)
    harmless = [r for r in RECORDS if r["config"]["condition"] != "fresh"] + [_record("fresh", 100, 400)]
    runs = junk.runs_table(harmless)
    failed = [r["check"] for r in junk.checks(junk.factors(runs), runs, expect) if not r["holds"]]
    assert failed == ["fresh: bits(clean) / bits(fresh) at 100 exposures ≥ 3"]
    broken_token = [r for r in RECORDS if r["config"]["condition"] != "domain"] + [_record("domain", 100, 50)]
    runs = junk.runs_table(broken_token)
    failed = [r["check"] for r in junk.checks(junk.factors(runs), runs, expect) if not r["holds"]]
    assert failed == ["domain: bits(clean) / bits(domain) at 100 exposures ≤ 2"]


def test_views_and_figures():
    runs = junk.runs_table(RECORDS)
    assert isinstance(junk.factors_view(junk.factors(runs)), Table)
    assert isinstance(junk.grid_view(junk.grid(junk.PROFILES["smoke"].sizes)), Table)
    fig = junk.figure_bits_vs_tokens({"this run": runs, "cpu-full": None})
    names = [t.name.replace("<br>", " ") for t in fig.data]
    assert names == [f"{c.label} (this run)" for c in junk.CONDITIONS.values()]
    assert list(fig.data[1].y) == [60, 65] and fig.layout.xaxis.type == "log"
    curves = junk.figure_learning_curves(RECORDS)
    assert curves.data[0].name.replace("<br>", " ") == "clean (no junk), 100 exposures"


def test_smoke_runs_measure_the_useful_records_only():
    configs = [c for c in junk.grid(junk.PROFILES["smoke"].sizes) if c["condition"] in ("clean", "fresh")]
    results = {c["condition"]: junk.run(c) for c in configs}
    for result in results.values():
        assert result["information_bits"] == results["clean"]["information_bits"]  # the useful data's
        assert 0 <= result["bits"] <= result["information_bits"]
    assert results["fresh"]["steps"] > 3 * results["clean"]["steps"]  # 3:1 junk: 4x the records per exposure


def test_committed_cpu_full_results_are_todays_grid_and_pass_their_checks():
    results = junk.precomputed()
    if results is None:
        pytest.skip("results/junk_cpu_full.json is absent")
    from labkit.sweep import canonical_json

    grid = junk.grid(junk.PROFILES["cpu-full"].sizes, (0,))
    assert sorted(canonical_json(r["config"]) for r in results["records"]) == sorted(map(canonical_json, grid))
    runs = junk.precomputed_runs()
    rows = junk.checks(junk.factors(runs), runs, junk.PROFILES["cpu-full"].expect)
    assert len(rows) == 4 and all(r["holds"] for r in rows), rows
