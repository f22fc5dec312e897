"""Chapter 10's experiment: the grid, one smoke sweep's tables, claims and figures, the dynamic program's
checks, and the committed results against today's grid.

One smoke-sized sweep runs once per module (``smoke_records``, about 10 s); the rest is tables.
"""

from __future__ import annotations

import pytest

from labkit.data.cfg import preset
from labkit.experiments import grammars
from labkit.tables import DIFFERS, REPRODUCES, paper_vs_lab

SMOKE = grammars.PROFILES["smoke"]


@pytest.fixture(scope="module")
def smoke_records():
    return grammars.sweep(SMOKE, 0, None, progress=False).records


def test_grid_has_every_variant_the_budgets_and_a_baseline_per_seed():
    sizes = grammars.PROFILES["cpu-full"].sizes
    grid = grammars.grid(sizes, sizes.seeds)
    variants = [c for c in grid if c.get("series") == "variants"]
    assert sorted({c["variant"] for c in variants}) == sorted(grammars.VARIANTS)
    assert len(variants) == len(grammars.VARIANTS) * len(sizes.seeds) and all(c["probe"] for c in variants)
    budgets = [c for c in grid if c.get("series") == "budget"]
    assert sorted({c["exposures"] for c in budgets}) == sorted(sizes.budgets)
    assert {c["variant"] for c in budgets} == {sizes.reference}
    assert [c["seed"] for c in grid if c["method"] == "baseline"] == list(sizes.seeds)
    assert {c["grammar"] for c in grid} == {"medium"} and {c["data"] for c in grid} == {"cfg"}
    uniform = next(c for c in variants if c["variant"] == "uniform")
    assert uniform["model_overrides"] == {"attention": "uniform"}
    with pytest.raises(ValueError, match="variants='bogus' is not valid; allowed: absolute, rotary"):
        grammars.grid(grammars.Sizes(variants=("bogus",)))


def test_dp_checks_accept_the_grammar_and_reject_corruptions():
    grammar = preset("small", 0)
    strings = grammar.sample(100, seed=0)
    checks = grammars.dp_checks(grammar, strings, 100, seed=0)
    assert checks["training_accepted"] == 1.0 and checks["corruptions"] == 100
    assert checks["corruptions_rejected"] >= 0.95
    other = grammars.dp_checks(grammar, strings[:50], 50, seed=1)  # other strings, other corruptions
    assert other["corruptions"] == 50 and other["corruptions_rejected"] >= 0.9


def test_smoke_sweep_tables_claims_and_figures(smoke_records):
    table = grammars.variants_table(smoke_records)
    assert list(table.model) == [*SMOKE.sizes.variants, "trigram", "bigram", "untrained"]
    assert (table.accuracy.between(0, 1)).all() and (table.kl_bits >= 0).all()
    untrained = table.set_index("model").loc["untrained"]
    assert untrained.kl_bits > table.set_index("model").loc["rotary"].kl_bits  # training moved the model
    budgets = grammars.budget_table(smoke_records)
    assert list(budgets.exposures) == sorted([*SMOKE.sizes.budgets, SMOKE.sizes.exposures])
    probes = grammars.probes_table(smoke_records)
    assert list(probes.variant) == list(SMOKE.sizes.variants)
    assert {"embedding", "layer 0", "layer 1", "token only", "chance"} <= set(probes.columns)
    levels = grammars.probe_levels(smoke_records)
    assert set(levels.target) == {"ancestor", "boundary"} and set(levels.level) == {1, 2}
    (row,) = grammars.grammar_table(smoke_records).to_dict("records")
    assert row["training strings accepted"] == 1.0 and row["possible"] == "11-35"
    h = grammars.headline(smoke_records)
    assert h["best"] in SMOKE.sizes.variants and h["kl/full"] < h["kl/shortest"]
    claims = grammars.claims(smoke_records)
    assert claims[0]["lab"] == h[f"accuracy/{h['best']}"] and claims[4]["lab"] == pytest.approx(h["probe gain"])
    assert grammars.figure_accuracy(smoke_records).data and grammars.figure_kl(smoke_records).data
    assert len(grammars.figure_budget(smoke_records).data[0].x) == len(budgets)
    assert {t.name for t in grammars.figure_probes(smoke_records).data} >= {"rotary, ancestor", "rotary, boundary"}
    assert grammars.variants_view(smoke_records).to_text()


def test_claims_read_the_numbers_and_are_not_run_without_records():
    assert all(c["lab"] is None for c in grammars.claims(None))

    def record(variant: str, accuracy: float, kl: float, series: str = "variants", exposures: int = 40) -> dict:
        measures = {"accuracy": accuracy, "completion_accuracy": accuracy, "kl_bits": kl, "diversity": 0.9,
                    "ended": 1.0}
        return {"config": {"method": "train", "variant": variant, "series": series, "seed": 0, "N": 10,
                           "exposures": exposures},
                "result": {**measures, "final_loss": 0.5, "probes": []}}

    good = [record("absolute", 0.4, 0.2), record("rotary", 0.6, 0.1), record("relative", 0.55, 0.12),
            record("uniform", 0.5, 0.15), record("rotary", 0.1, 0.5, "budget", 5)]
    shown = paper_vs_lab(grammars.claims(good))
    assert list(shown["status"])[1:4] == [REPRODUCES] * 3
    bad = [record("absolute", 0.6, 0.1), record("rotary", 0.4, 0.2), record("relative", 0.3, 0.3),
           record("uniform", 0.1, 0.5), record("rotary", 0.3, 0.15, "budget", 5)]
    shown = paper_vs_lab(grammars.claims(bad))
    assert list(shown["status"])[1:4] == [DIFFERS] * 3


def test_committed_results_match_todays_grid():
    pre = grammars.precomputed()
    if pre is None:
        pytest.skip("results/grammars_cpu_full.json is not committed yet")
    from labkit.sweep import config_hash

    sizes = grammars.PROFILES["cpu-full"].sizes
    expected = {config_hash(c) for c in grammars.grid(sizes, sizes.seeds)}
    assert {config_hash(r["config"]) for r in pre["records"]} == expected
