"""labkit.experiments.extraction: the grid of protocols (trained, or the committed models loaded), the
data of each protocol, the probes' inputs and groups, one tiny run end to end, and the checks, tables and
claims on hand-made records (a broken result must fail the checks)."""

from __future__ import annotations

import pytest
import torch

from labkit.data.bios import BioS
from labkit.data.extraction import QA_ATTRIBUTES, CelebrityBioS, MixedData
from labkit.experiments import extraction
from labkit.tables import Table

SMOKE = extraction.PROFILES["smoke"]


def _record(protocol, test, train=1.0, stored=1.0, seed=0, series="main", N=400, exposures=300, probes=()):
    config = {"protocol": protocol, "series": series, "seed": seed, "N": N, "exposures": exposures,
              "method": "train"}
    result = {"qa_test": dict.fromkeys(QA_ATTRIBUTES, test), "qa_train": dict.fromkeys(QA_ATTRIBUTES, train),
              "memorized_test": dict.fromkeys(QA_ATTRIBUTES, stored), "probes": list(probes)}
    return {"config": config, "result": result}


def _probes(q_accuracy, p_accuracy=0.5):
    rows = []
    for a in QA_ATTRIBUTES:
        for site, position, acc in (("P", f"before_value/{a}", p_accuracy), ("Q", "name_last", q_accuracy)):
            rows.append({"hook": "blocks.1.hook_resid_post", "position": position, "target": a, "accuracy": acc,
                         "control_accuracy": 0.01, "selectivity": acc - 0.01, "chance": 0.02, "site": site,
                         "group": "everyone"})
    return rows


GOOD = [_record("single", 0.02, probes=_probes(0.05)), _record("augmented", 0.5, probes=_probes(0.4)),
        _record("mixed", 0.1), _record("celebrity", 0.04),
        _record("single", 0.0, seed=1), _record("augmented", 0.45, seed=1)]


def test_cpu_full_grid_protocols_seeds_scale_and_kept_models():
    sizes = extraction.PROFILES["cpu-full"].sizes
    configs = extraction.grid(sizes, sizes.seeds)
    main = [c for c in configs if c["series"] == "main"]
    assert [(c["protocol"], c["seed"]) for c in main] == [(p, s) for s in (0, 1) for p in extraction.PROTOCOLS]
    scale = [(c["protocol"], c["N"], c["exposures"]) for c in configs if c["series"] == "scale"]
    assert scale == [(p, n, e) for n, e in sizes.scale for p in ("single", "augmented")]
    assert [c["protocol"] for c in configs if c.get("keep_model")] == list(extraction.PROTOCOLS)
    assert {c["seed"] for c in configs if c.get("keep_model")} == {0}
    by = {c["protocol"]: c for c in main if c["seed"] == 0}
    assert (by["single"]["multi"], by["single"]["permute"]) == (1, False)
    assert (by["augmented"]["multi"], by["augmented"]["permute"]) == (5, True)
    assert (by["celebrity"]["multi"], by["mixed"]["multi"]) == (5, 1)  # celebrity: the augmented rendering
    assert [c["probe"] for c in main if c["seed"] == 0] == [True, True, False, False]


def test_quick_grid_loads_the_models_the_cpu_full_sweep_keeps():
    quick, full = extraction.PROFILES["quick"].sizes, extraction.PROFILES["cpu-full"].sizes
    kept = [extraction.pretrain_part(c) for c in extraction.grid(full, full.seeds) if c.get("keep_model")]
    saved = extraction.grid(quick)
    assert [c["method"] for c in saved] == ["saved"] * 4
    assert [c["model_config"] for c in saved] == kept
    assert [c["probe"] for c in saved] == [True, True, False, True]
    with pytest.raises(ValueError, match="seed=1 is not valid; allowed: 0 with method='saved'"):
        extraction.grid(quick, seeds=(1,))


def test_protocol_data():
    config = extraction.grid(SMOKE.sizes)[0]
    for protocol, kind in (("single", BioS), ("augmented", BioS), ("mixed", MixedData), ("celebrity", CelebrityBioS)):
        data, bios, split = extraction.pretraining_data({**config, "protocol": protocol,
                                                         "multi": 1 if protocol in ("single", "mixed") else 5,
                                                         "permute": protocol in ("augmented", "celebrity")})
        assert isinstance(data, kind) and bios.mode == "single"
        assert bios.multi == (5 if protocol == "augmented" else 1)  # whose QA pairs are asked: the same people
        assert len(split.train) == len(split.test) == config["N"] // 2
        if protocol == "mixed":
            assert data.n_items == config["N"] + 6 * len(split.train)
        if protocol == "celebrity":
            assert data.celebrity[split.train].all() and not data.celebrity[split.test].any()
    with pytest.raises(ValueError, match="protocol"):
        extraction.pretraining_data({**config, "protocol": "celebrities"})


def test_probe_inputs_and_groups():
    bios = BioS(30, seed=2, mode="single")
    names = extraction.bare_names(bios)
    for i in (0, 17):
        s, e = names.spans["name"][i].tolist()
        assert names.tokens[i, 0] == 1 and bios.tokenizer.decode(names.tokens[i, s:e]) == bios.people.full_name(i)
    labels = extraction.probe_labels(bios)
    assert set(labels) == set(QA_ATTRIBUTES) and int(labels["birth_date"].max()) < 12
    month = bios.people[3].birth_date.split()[0]
    from labkit.data.bios import MONTHS

    assert MONTHS[int(labels["birth_date"][3])] == month
    sub = names.select([4, 1])
    assert torch.equal(sub.tokens, names.tokens[[4, 1]])
    split = extraction.PeopleSplit.halves(30)
    assert list(extraction.probe_groups("celebrity", split)) == ["celebrities", "minority"]
    assert list(extraction.probe_groups("single", split)) == ["everyone"]


def test_a_tiny_run_end_to_end():
    config = {**extraction.grid(SMOKE.sizes)[1], "probe": True}  # augmented
    result = extraction.run(config)
    assert set(result["qa_test"]) == set(QA_ATTRIBUTES) == set(result["memorized_test"])
    assert all(0 <= v <= 1 for v in result["qa_train"].values())
    assert result["finetune"]["steps"] == 2 * config["finetune_exposures"]  # 20 people x 6 pairs, batch 64
    assert len(result["answers"]) == 12 and {a["attribute"] for a in result["answers"]} == set(QA_ATTRIBUTES)
    probes = extraction.probes_table([{"config": config, "result": result}])
    assert set(probes.site) == {"P", "Q"} and set(probes.protocol) == {"augmented"}
    assert len(probes) == 6 + 5 + 6  # P at each attribute's own key and at the first one (birth date's), Q
    from labkit.data.registry import make_dataset

    assert result["information_bits"] == make_dataset(config).information_bits()


def test_checks_hold_on_good_records_and_fail_on_broken_ones():
    expect = extraction.PROFILES["cpu-full"].expect
    rows = extraction.checks(GOOD, expect)
    assert len(rows) == 5 and all(r["holds"] for r in rows), rows
    no_gap = [_record("single", 0.3, probes=_probes(0.05)), _record("augmented", 0.31, probes=_probes(0.4))]
    assert not extraction.checks(no_gap, expect)[0]["holds"]
    forgot = [_record("single", 0.0, stored=0.1), _record("augmented", 0.5)]
    assert [r["holds"] for r in extraction.checks(forgot, expect)][1:3] == [False, True]
    untuned = [_record("single", 0.0, train=0.2), _record("augmented", 0.5)]
    assert not next(r for r in extraction.checks(untuned, expect) if "training half" in r["check"])["holds"]


def test_tables_views_claims_and_figures():
    s = extraction.summary(GOOD).set_index("protocol")
    assert s.loc["augmented", "test"] == pytest.approx(0.475) and s.loc["augmented", "seeds"] == 2
    assert (s.loc["augmented", "test_min"], s.loc["augmented", "test_max"]) == (0.45, 0.5)
    assert list(extraction.attributes_table(GOOD).index) == list(extraction.PROTOCOLS)
    means = extraction.probe_means(GOOD).set_index(["protocol", "site"])["accuracy"]
    assert means["augmented", "Q (bare name)"] == pytest.approx(0.4)
    claims = extraction.claims(GOOD)
    assert [c["lab"] for c in claims] == pytest.approx([0.01, 0.475, 0.1, 0.04, 0.35])  # the last: Q-probing gap
    assert claims[0]["expect"] == (0.0, 0.2) and claims[1]["expect"][0] == pytest.approx(0.11)
    for view in (extraction.summary_view(GOOD), extraction.attributes_view(GOOD), extraction.probes_view(GOOD)):
        assert isinstance(view, Table) and len(view)
    fig = extraction.figure_protocols({"lab": GOOD, "absent": None})
    assert [t.name for t in fig.data] == ["paper (allenzhu2023part31)", "lab"]
    assert [t.type for t in extraction.figure_probes(GOOD).data] == ["bar", "bar", "scatter"]  # + chance
    scale = GOOD + [_record("single", 0.0, series="scale", N=100), _record("augmented", 0.05, series="scale", N=100)]
    assert list(extraction.figure_scale(scale).data[0].x) == ["N=100, 300 exp.", "N=400, 300 exp."]
    assert extraction.probed_label("celebrity: minority") == "celebrity: minority"


def test_sizes_reject_unknown_protocols_and_methods():
    with pytest.raises(ValueError, match="protocols.*allowed: single, augmented, mixed, celebrity"):
        extraction.Sizes(protocols=("single", "double"))
    with pytest.raises(ValueError, match="method.*allowed: 'train', 'saved'"):
        extraction.Sizes(method="load")


def test_the_committed_cpu_full_results_and_models_match_the_grid():
    from labkit.experiments.models import load_trained
    from labkit.sweep import config_hash

    data = extraction.precomputed()
    assert data is not None, "results/extraction_cpu_full.json is committed"
    sizes = extraction.PROFILES["cpu-full"].sizes
    assert sorted(r["hash"] for r in data["records"]) == sorted(config_hash(c) for c in
                                                                extraction.grid(sizes, sizes.seeds))
    for config in extraction.grid(extraction.PROFILES["quick"].sizes):
        model = load_trained(config["model_config"], extraction.models_folder())
        assert model.cfg.d_model == 64
