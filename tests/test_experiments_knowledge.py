"""Chapter 5's experiment: the grid, freezing in the run, the analysis tables and claims, trained-model
files (save, load, refuse a mismatch) and the ``models`` command's selection.

One smoke-sized sweep is trained once per session (``smoke_records``, about 10 s); the rest is tables.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from labkit.experiments import knowledge, models, select_configs
from labkit.tables import DIFFERS, REPRODUCES, paper_vs_lab

SMOKE = knowledge.PROFILES["smoke"]


@pytest.fixture(scope="module")
def smoke_records():
    return knowledge.sweep(SMOKE, 0, None, progress=False).records


def test_grid_has_every_variant_per_budget_and_one_analysed_run():
    sizes = knowledge.PROFILES["cpu-full"].sizes
    grid = knowledge.grid(sizes, sizes.seeds)
    trained = [c for c in grid if c["method"] == "train"]
    assert len(trained) == len(sizes.exposures) * (1 + len(sizes.variants)) * len(sizes.seeds)
    analysed = [c for c in trained if c.get("analyse")]
    assert [(c["variant"], c["exposures"]) for c in analysed] == [("none", 1000)] * len(sizes.seeds)
    assert {c["batch_size"] for c in trained if c["exposures"] == 100} == {32}  # chapter 2's recipe
    saved = [c for c in grid if c["method"] == "saved"]
    assert [c["model_config"]["exposures"] for c in saved] == [100, 1000]
    assert all("series" not in c["model_config"] and c["model_config"]["seed"] == 0 for c in saved)
    freeze = {c["variant"]: c["freeze"] for c in trained}
    assert freeze["none"] == [] and freeze["attention"] == ["blocks.*.attn"] and freeze["layer 1"] == ["blocks.1"]
    with pytest.raises(ValueError, match="variants: 'bogus' is not valid; allowed: none, attention"):
        knowledge.grid(knowledge.Sizes(variants=("bogus",)))


def test_freezing_leaves_frozen_parameters_at_their_initial_values():
    config = next(c for c in knowledge.grid(SMOKE.sizes) if c["variant"] == "all but embeddings")
    setup = knowledge.run.setup(dict(config))
    frozen = {n for n, p in setup.model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("blocks.", "ln_final")) for n in frozen)
    assert not any(n.startswith(("embed", "pos_embed")) for n in frozen)


def test_smoke_sweep_tables_claims_and_figures(smoke_records):
    table = knowledge.freezing_table(smoke_records)
    assert list(table.variant) == ["none", "all but embeddings"]
    assert table.loc[0, "bits / none"] == 1.0 and table.loc[1, "trainable_params"] < table.loc[0, "trainable_params"]
    (record,) = knowledge.analysed(smoke_records)
    probes = knowledge.probes_table(record)
    layers = ["embedding", "block 0", "block 1"]
    assert list(dict.fromkeys(probes.layer)) == layers and set(probes.site) == {"name", "key"}
    assert sorted(probes.attribute.unique()) == list(range(SMOKE.sizes.attributes))
    assert (probes.selectivity == probes.accuracy - probes.control_accuracy).all()
    summary = knowledge.probe_summary(record)
    assert len(summary) == 2 * len(layers) * 2  # trained and untrained × layers × sites
    ablations = knowledge.ablation_summary(record)
    assert list(ablations.columns) == ["component", "lost (zero)", "lost (mean)"] and len(ablations) == 8
    h = knowledge.headline(record)
    assert h["last_layer"] == "block 1" and 0 <= h["min_lost/zero"] <= 1.0 + 1e-9
    claims = knowledge.claims(smoke_records)
    assert [c["paper"] for c in claims][-1] == "not published"
    assert claims[3]["lab"] == pytest.approx(table.loc[1, "bits / none"])
    heat = knowledge.figure_probes(record)
    assert len(heat.data) == 2 and list(heat.data[0].y) == layers
    bars = knowledge.figure_freezing(smoke_records)
    assert [t.name for t in bars.data if t.type == "bar"] == [f"{SMOKE.sizes.exposures[0]} exposures"]
    assert knowledge.figure_ablations(record).data


def test_claims_read_the_probe_and_ablation_numbers():
    def record(key_acc: float, name_acc: float, lost: float) -> dict:
        probes = []
        for layer, hook in (("embedding", "hook_embed"), ("block 0", "blocks.0.hook_resid_post"),
                            ("block 1", "blocks.1.hook_resid_post")):
            for site, acc in (("name", name_acc), ("key", key_acc if layer == "block 1" else 0.1)):
                probes.append({"hook": hook, "layer": layer, "site": site, "attribute": 0, "accuracy": acc,
                               "control_accuracy": 0.2, "selectivity": acc - 0.2, "chance": 0.1})
        untrained = [{**p, "accuracy": 0.1, "selectivity": -0.1} for p in probes]
        ablations = [{"component": c, "kind": k, "fraction_lost": lost} for c in ("a", "b") for k in ("zero", "mean")]
        return {"config": {"method": "saved", "analyse": True, "model_config": {"d_model": 8, "exposures": 100}},
                "result": {"probes": probes, "probes_untrained": untrained, "ablations": ablations}}

    shown = paper_vs_lab(knowledge.claims([record(0.6, 0.1, 0.9)]))
    assert list(shown["status"])[:3] == [REPRODUCES] * 3
    shown = paper_vs_lab(knowledge.claims([record(0.2, 0.5, 0.2)]))
    assert list(shown["status"])[:3] == [DIFFERS] * 3


def test_trained_model_files_round_trip_and_refuse_a_mismatch(tmp_path):
    config = next(c for c in knowledge.grid(SMOKE.sizes) if c["variant"] == "none")
    setup = knowledge.run.setup(dict(config))
    meta = models.save_trained(setup.model, config, tmp_path, {"bits": 1.5, "history": {"x": [1]}}, "the command")
    record = json.loads(meta.read_text())
    assert record["result"] == {"bits": 1.5} and record["command"] == "the command"
    loaded = models.load_trained(config, tmp_path)
    assert not loaded.training
    tokens = torch.tensor([[1, 5, 6, 7]])
    assert torch.equal(loaded(tokens), setup.model.eval()(tokens))
    other = {**config, "seed": 9}
    with pytest.raises(models.ModelFileError, match="no trained model for config hash"):
        models.load_trained(other, tmp_path)
    record["config"]["seed"] = 9  # an edited file: its config no longer hashes to its name
    meta.write_text(json.dumps(record))
    with pytest.raises(models.ModelFileError, match="holds a model for config hash .*regenerate it with: the command"):
        models.load_trained(config, tmp_path)


def test_committed_chapter_2_models_load_and_match_their_sweep_records():
    from labkit.data.registry import make_dataset
    from labkit.experiments import capacity, models_folder
    from labkit.measure import bits_learned

    folder = models_folder("capacity", "cpu-full")
    configs = knowledge.saved_configs(knowledge.PROFILES["cpu-full"].sizes)
    committed = {json.dumps(r["config"], sort_keys=True): r["result"] for r in capacity.precomputed()["records"]}
    for config in configs:
        model = models.load_trained(config, folder)
        bits = bits_learned(model, make_dataset(config)).bits
        assert bits == pytest.approx(models.trained_record(config, folder)["result"]["bits"], rel=1e-6)
        # the sweep trained the same config batched with its other seed: equal up to float rounding
        assert bits == pytest.approx(committed[json.dumps(config, sort_keys=True)]["bits"], rel=0.03)


def test_select_configs_filters_by_value_and_names_unknown_keys():
    grid = [{"a": 1, "b": 2}, {"a": 1, "b": 3, "series": "plateau"}]
    assert select_configs(grid, {"a": 1, "series": None}) == [grid[0]]
    with pytest.raises(ValueError, match="where key 'c' is not valid; allowed: a, b, series"):
        select_configs(grid, {"c": 1})


def test_models_command_rejects_bad_input_in_one_line(capsys):
    from labkit.cli import main

    assert main(["models", "capacity", "--profile", "cpu-full", "--where", "nokey"]) == 2
    assert "where='nokey' is not valid; allowed: KEY=VALUE" in capsys.readouterr().err
    assert main(["models", "capacity", "--profile", "cpu-full", "--where", "seed=7"]) == 2
    assert "matches no config" in capsys.readouterr().err


def test_probe_summary_is_a_dataframe_per_model_and_site(smoke_records):
    (record,) = knowledge.analysed(smoke_records)
    summary = knowledge.probe_summary(record)
    assert isinstance(summary, pd.DataFrame) and set(summary.model) == {"trained", "untrained"}
