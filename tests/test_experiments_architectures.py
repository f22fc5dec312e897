"""labkit.experiments.architectures: the grid of variants, the ratios to the reference, the swap table,
the checks the claim cell asserts and the figure, on hand-made sweep records (one test trains two tiny
runs, to check that a variant's knobs reach the model it trains)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from labkit.experiments import architectures as arch
from labkit.experiments import base
from labkit.model import Transformer
from labkit.tables import Table

QUICK = arch.PROFILES["quick"].sizes


def _record(variant, exposures, R, seed=0, params=1000, active=None, lr=1e-2):
    bits = R * params
    config = {**arch.variant_keys(QUICK, variant), "data": "biod", "K": 8, "C": 1, "D": 64, "L": 1, "T": 64,
              "name_pools": [30, 30], "N": 160, "exposures": exposures, "batch_size": 16, "lr": lr,
              "weight_decay": 0.05, "seed": seed}
    return {"config": config,
            "result": {"R": R, "R_nonembedding": 2 * R, "bits": bits, "params": params,
                       "non_embedding_params": params // 2, "param_groups": {"active": active or params},
                       "information_bits": 10 * bits, "fraction_learned": 0.1, "final_loss": 1.0,
                       "wall_time": 1.0, "steps": 30}}


#: the reference at R 0.4 / 2.0; gated loses 1.3x at 100 (two seeds each) and nothing at 1000
RECORDS = [_record("reference", 100, 0.5, 0), _record("reference", 100, 0.3, 1), _record("reference", 1000, 2.0),
           _record("gated", 100, 0.3, 0), _record("gated", 100, 0.316, 1), _record("gated", 1000, 2.1),
           _record("no_mlp", 100, 0.2, params=600), _record("no_mlp", 1000, 1.9, params=600),
           _record("llama", 100, 0.3, 0), _record("llama_gelu", 100, 0.4, 0),
           _record("moe", 1000, 1.5, params=4000, active=1600)]


def test_every_variant_builds_a_model_whose_knobs_it_names():
    sizes = arch.PROFILES["cpu-full"].sizes
    configs = arch.grid(arch.PROFILES["smoke"].sizes)
    assert {c["variant"] for c in configs} == {"reference", "no_mlp"}
    from labkit.data.registry import make_dataset
    from labkit.experiments.models import model_config

    dataset = make_dataset({**configs[0], "N": 20})
    for name in sizes.variants:
        cfg = model_config(arch.variant_keys(sizes, name), dataset)
        for knob, value in arch.VARIANTS[name].overrides.items():
            assert getattr(cfg, knob) == (sizes.moe_experts if knob == "moe_experts" else value), (name, knob)
        Transformer(cfg)  # every variant is a valid model
    assert model_config(arch.variant_keys(sizes, "gated"), dataset).d_mlp == round(4 * 16 * 2 / 3)


def test_grid_sizes_data_per_variant_and_pairs_seeds_at_the_fewest_exposures():
    sizes = arch.PROFILES["cpu-full"].sizes
    configs = arch.grid(sizes, (0,))
    per = {(c["variant"], c["exposures"]): [] for c in configs}
    for c in configs:
        per[c["variant"], c["exposures"]].append(c["seed"])
    assert set(per) == {(v, e) for v in arch.VARIANTS for e in (100, 1000)}
    for (variant, exposures), seeds in per.items():
        assert seeds == ([0, 1] if variant in sizes.paired and exposures == 100 else [0]), (variant, exposures)
    assert len({c["N"] for c in configs}) == 1  # every variant learns the same people
    from labkit.data.registry import make_dataset
    from labkit.experiments.models import param_count

    first = {c["variant"]: c for c in configs}
    dataset = make_dataset(first["reference"])
    bits, P = dataset.information_bits(), {v: param_count(c, dataset) for v, c in first.items()}
    assert bits == pytest.approx(2.5 * 2 * P["reference"].total, rel=0.05)  # sized for the reference
    assert bits > 2 * P["moe"].total and P["moe"].active < P["moe"].total  # MoE too has more than it can store
    lr = {(c["variant"], c["exposures"]) for c in configs if c["batch_size"] != sizes.batch_size[c["exposures"]]}
    assert not lr
    assert {c["lr"] for c in configs if c["exposures"] == 1000 and c["variant"] == "reference"} == {sizes.lr[1000]}
    # each family's rate is the GELU family's times its measured factor
    assert [c["lr"] for c in configs if c["exposures"] == 100 and c["variant"] == "no_mlp"] == [
        pytest.approx(sizes.lr[100] * arch.LR_FACTOR[100]["no_mlp"])]


def test_lr_search_grid_tries_each_family_at_each_factor():
    sizes = arch.PROFILES["lr-search"].sizes
    configs = arch.grid(sizes)
    assert {arch.VARIANTS[c["variant"]].family for c in configs} == set(arch.FAMILIES)
    rates = sorted({c["lr"] for c in configs if c["variant"] == "reference" and c["exposures"] == 100})
    assert rates == pytest.approx([1e-2 / 3, 1e-2, 3e-2, 9e-2], rel=1e-3)
    assert {c["lr"] for c in configs if c["variant"] == "moe" and c["exposures"] == 1000} == {0.01, 0.03, 0.09, 0.27}


def test_sizes_reject_unknown_variants_and_missing_recipes():
    with pytest.raises(ValueError, match="variants.*allowed: reference, gated"):
        arch.Sizes(variants=("reference", "transformer-xl"))
    with pytest.raises(ValueError, match="d_model=32 is not valid; allowed: 64 \\* n_head = 128"):
        arch.Sizes(model="gpt2", d_model=32)
    with pytest.raises(ValueError, match="model='llama' is not valid"):
        arch.Sizes(model="llama")
    full = arch.PROFILES["full"].sizes
    assert arch.variant_keys(full, "gated")["model"] == "gpt2"
    from labkit.data.registry import make_dataset
    from labkit.experiments.models import model_config

    dataset = make_dataset({"data": "biod", "K": 2, "D": 8, "T": 8, "name_pools": [6, 6], "N": 10})
    for name in full.variants:  # every full variant is a valid GPT2-ℓ-h
        Transformer(model_config(arch.variant_keys(full, name), dataset))
    assert arch.variant_keys(full, "uniform_attention")["model_overrides"]["pos"] == "absolute"
    with pytest.raises(ValueError, match="batch_size.*every exposure budget"):
        arch.Sizes(exposures=(100, 300))
    allowed = "smoke, quick, cpu-full, full, lr-search, lr-search-cpu-full"
    with pytest.raises(ValueError, match=f"profile='huge' is not valid.*{allowed}"):
        base.select(arch.PROFILES, "huge", "04_architecture_capacity")


def test_ratios_divide_seed_means_by_the_reference_and_carry_the_spread_and_paper():
    ratios = arch.ratios(arch.runs_table(RECORDS))
    assert arch.ratio_at(ratios, "reference", 100) == pytest.approx(1.0)
    assert arch.ratio_at(ratios, "gated", 100) == pytest.approx(0.308 / 0.4)
    assert arch.ratio_at(ratios, "gated", 1000) == pytest.approx(1.05)
    assert arch.ratio_at(ratios, "moe", 100) is None
    gated = ratios[(ratios.variant == "gated") & (ratios.exposures == 100)].iloc[0]
    assert (gated.n_seeds, gated.ratio_min, gated.ratio_max) == (2, pytest.approx(0.75), pytest.approx(0.79))
    assert gated.paper == "≈ 1/1.3" and gated.ratio_nonembedding == pytest.approx(gated.ratio)  # R_ne = 2R here
    moe = ratios[ratios.variant == "moe"].iloc[0]
    assert moe.R_active == pytest.approx(1.5 * 4000 / 1600) and moe.active_params == 1600


def test_swap_table_reads_both_directions_with_seed_spread():
    swaps = arch.swap_table(arch.ratios(arch.runs_table(RECORDS)), 100)
    assert list(swaps.swap) == ["GPT: GELU → gated MLP", "LLaMA: gated → GELU MLP"]
    assert swaps.ratio.tolist() == pytest.approx([0.77, 4 / 3])
    assert swaps.iloc[0]["ratio min"] == pytest.approx(0.75) and swaps.iloc[0].seeds == "2 / 2"
    at_1000 = arch.swap_table(arch.ratios(arch.runs_table(RECORDS)), 1000)
    assert list(at_1000.swap) == ["GPT: GELU → gated MLP"]  # no LLaMA at 1000: that direction is left out


def test_checks_pass_a_healthy_sweep_and_fail_a_broken_variant():
    expect = dataclasses.replace(arch.PROFILES["quick"].expect, no_mlp_drop=0.05)
    rows = arch.checks(arch.ratios(arch.runs_table(RECORDS)), expect)
    assert all(r["holds"] for r in rows), rows
    names = [r["check"] for r in rows]
    assert names[0] == "reference R at 1000 exposures ≥ 1" and any(n.startswith("no_mlp: ratio at 100") for n in names)
    assert not any(n.startswith("moe") for n in names)  # MoE is compared to the paper, not to the band
    spread = next(r for r in rows if r["check"].startswith("max |ln ρ|"))
    assert spread["lab"] == pytest.approx(abs(math.log(0.4 / 0.4 * 0.2 / 0.4)) - abs(math.log(1.5 / 2.0)))
    broken = [r for r in RECORDS if r["config"]["variant"] != "gated"] + [_record("gated", 1000, 0.5)]
    failed = [r["check"] for r in arch.checks(arch.ratios(arch.runs_table(broken)), expect) if not r["holds"]]
    assert failed == ["gated: R / R(reference) at 1000 exposures in [0.75, 1.35]",
                      "max |ln ρ| over variants: 100 exposures ≥ 1000 exposures + 0.1"]
    # the no-MLP drop fails when no MLP does as well at 100 as at 1000; without a threshold it is not checked
    flat = [r for r in RECORDS if r["config"]["variant"] != "no_mlp"] + [
        _record("no_mlp", 100, 0.4, params=600), _record("no_mlp", 1000, 2.0, params=600)]
    failed = [r["check"] for r in arch.checks(arch.ratios(arch.runs_table(flat)), expect) if not r["holds"]]
    assert failed[-1] == "no_mlp: ratio at 100 exposures ≥ 0.05 below its ratio at 1000"
    # MoE: checked against its ceiling where the profile sets one; exempt variants leave the band check
    strict = dataclasses.replace(expect, moe_max=0.7, exempt=("gated",))
    rows = arch.checks(arch.ratios(arch.runs_table(broken)), strict)
    assert [r["check"] for r in rows if not r["holds"]] == [
        "max |ln ρ| over variants: 100 exposures ≥ 1000 exposures + 0.1",
        "moe: R / R(reference) at 1000 exposures ≤ 0.7"]
    assert not any(r["check"].startswith("gated") for r in rows)
    quick = arch.checks(arch.ratios(arch.runs_table(flat)), arch.PROFILES["quick"].expect)
    assert not any(r["check"].startswith("no_mlp: ratio") for r in quick)


def test_lr_search_table_picks_the_best_rate_per_family_and_exposures():
    records = [_record("reference", 100, R, lr=lr) for lr, R in ((1e-3, 0.2), (3e-3, 0.5), (1e-2, 0.4))]
    best = arch.best_lr(arch.runs_table(records))
    assert best.to_dict("records")[0] == {"family": "gelu", "exposures": 100, "best lr": 3e-3, "R at best": 0.5,
                                          "tried (lr: R)": "0.001: 0.20, 0.003: 0.50, 0.01: 0.40"}
    assert arch.summary_table(records).equals(best)
    assert "ratio" in arch.summary_table(RECORDS)


def test_views_and_figure_show_every_variant_with_the_paper():
    ratios = arch.ratios(arch.runs_table(RECORDS))
    for view in (arch.ratios_view(ratios), arch.swap_view(arch.swap_table(ratios, 100)), arch.lr_view(None)):
        assert isinstance(view, Table)
    fig = arch.figure_ratios({"this run": ratios, "cpu-full (precomputed)": None})
    names = [t.name for t in fig.data]
    assert names == ["paper, 100 exposures", "this run, 100 exposures", "paper, 1000 exposures",
                     "this run, 1000 exposures", "as the reference"]
    assert list(fig.data[0].x) == [arch.VARIANTS[v].label for v in ("reference", "gated", "no_mlp", "llama",
                                                                     "llama_gelu", "moe")]
    assert fig.data[1].y[list(fig.data[1].x).index("gated MLP")] == pytest.approx(0.77)
    assert math.isclose(fig.data[0].y[1], 1 / 1.3)


def test_precomputed_runs_are_none_without_a_file(tmp_path):
    assert arch.precomputed_runs(tmp_path / "absent.json") is None


def test_a_variant_trains_the_model_it_names():
    configs = [c for c in arch.grid(arch.PROFILES["smoke"].sizes) if c["exposures"] == 10]
    results = {c["variant"]: arch.run(c) for c in configs}
    groups = {v: r["param_groups"] for v, r in results.items()}
    assert groups["no_mlp"]["mlp"] == 0 < groups["reference"]["mlp"]
    assert all(r["bits"] >= 0 and r["steps"] > 0 for r in results.values())


def test_committed_cpu_full_results_are_todays_grid_and_pass_their_checks():
    results = arch.precomputed()
    if results is None:
        pytest.skip("results/architectures_cpu_full.json is absent")
    from labkit.sweep import canonical_json

    grid = arch.grid(arch.PROFILES["cpu-full"].sizes, (0,))
    assert sorted(canonical_json(r["config"]) for r in results["records"]) == sorted(map(canonical_json, grid))
    rows = arch.checks(arch.ratios(arch.precomputed_runs()), arch.PROFILES["cpu-full"].expect)
    assert len(rows) >= 6 and all(r["holds"] for r in rows), rows
