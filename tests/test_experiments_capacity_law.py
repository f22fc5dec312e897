"""Chapter 2's parameterized law (capacity's ``law-cpu-full`` profile): one bioD knob at a time from the
base data, N sized per setting, and the table, checks and claims on hand-made records."""

from __future__ import annotations

import math

import pytest

from labkit.experiments import capacity
from labkit.tables import Table

LAW = capacity.PROFILES["law-cpu-full"]


def test_law_grid_turns_one_knob_at_a_time():
    grid = capacity.grid(LAW.sizes)
    assert [c["knob"] for c in grid] == ["base", *(k for k, _ in LAW.sizes.knobs)]
    base = {k: grid[0][k] for k in capacity.LAW_KNOBS}
    assert base == {"K": 8, "C": 1, "D": 256, "L": 1, "T": 256}
    for config, (knob, value) in zip(grid[1:], LAW.sizes.knobs, strict=True):
        changed = {k for k in capacity.LAW_KNOBS if config[k] != base[k]}
        assert changed == {knob} and config[knob] == value
        assert config["series"] == "law" and config["exposures"] == 1000 and config["d_model"] == 16
    by_knob = {c["knob"] + str(c[c["knob"]] if c["knob"] != "base" else ""): c["N"] for c in grid}
    assert by_knob["C4"] < by_knob["C2"] < by_knob["base"] < by_knob["K4"]  # more bits a person, fewer people
    with pytest.raises(ValueError, match="knobs: 'Z' is not valid; allowed: K, C, D, L, T"):
        capacity.grid(capacity.Sizes(knobs=(("Z", 3),)))


def _record(knob, R, diversity_learned=10.0, **sizes):
    config = {"data": "biod", "name_pools": [100, 100], "K": 8, "C": 1, "D": 256, "L": 1, "T": 256, "N": 500,
              "seed": 0, "series": "law", "knob": knob, **sizes}
    bits = R * 14000
    return {"config": config, "result": {"params": 14000, "non_embedding_params": 6000, "information_bits": 3 * bits,
                                         "breakdown": {"name": 100.0, "values": bits - 100 - diversity_learned,
                                                       "diversity": diversity_learned},
                                         "bits": bits, "R": R, "R_nonembedding": bits / 6000,
                                         "fraction_learned": 0.3, "wall_time": 1.0}}


RECORDS = [_record("L", 1.9, 500.0, L=4), _record("base", 2.2), _record("K", 2.0, K=4), _record("T", 2.1, T=2048)]


def test_law_table_orders_settings_and_splits_the_terms():
    law = capacity.law_table(RECORDS)
    assert list(law.setting) == ["base (K=8, C=1, D=256, L=1, T=256)", "K = 4", "L = 4", "T = 2048"]
    row = law.set_index("setting").loc["L = 4"]
    assert row.info_diversity == pytest.approx(8 * math.log2(math.comb(256**4, 256)))  # K·log2 C(T^L, D)
    assert row.info_values == pytest.approx(500 * 8 * 8) and row.diversity == 500.0
    assert isinstance(capacity.law_view(law), Table)
    assert len(capacity.figure_law(law).data) == 3  # two bar series and the 2 bits/param line


def test_law_checks_and_claims():
    law = capacity.law_table(RECORDS)
    rows = capacity.law_checks(law, LAW.expect)
    assert all(r["holds"] for r in rows) and len(rows) == 2 + 1  # only L = 4 has T^L > D² (T = 2048: no)
    assert "all but L" in rows[0]["check"] and "K = 4" in rows[0]["check"]  # L is off the law (measured)
    broken = capacity.law_table([_record("base", 2.2), _record("L", 1.9, 0.0, L=4), _record("K", 0.4, K=4)])
    failed = [r["check"] for r in capacity.law_checks(broken, LAW.expect) if not r["holds"]]
    assert len(failed) == 2 and "lowest R" in failed[0] and "diversity" in failed[1]
    assert capacity.credits_the_set({"L": 4, "T": 256, "D": 256}) and not capacity.credits_the_set(
        {"L": 1, "T": 2048, "D": 256})
    claims = dict(zip(capacity.LAW_KNOBS, capacity.law_claims(law), strict=True))
    assert claims["K"]["lab"] == 2.0 and claims["C"]["lab"] == 2.2  # C not turned: the base only
    assert [c["lab"] for c in capacity.law_claims(None)] == [None] * 5


def test_the_committed_law_results_match_the_grid_and_its_checks():
    from labkit.sweep import config_hash

    data = capacity.law_precomputed()
    assert data is not None, "results/capacity_law_cpu_full.json is committed"
    assert sorted(r["hash"] for r in data["records"]) == sorted(config_hash(c) for c in capacity.grid(LAW.sizes))
    law = capacity.law_table(data["records"])
    assert all(r["holds"] for r in capacity.law_checks(law, LAW.expect))
