"""Chapter 1's experiment (``labkit.experiments.information``): its tables, figures and claims agree with
``labkit.info`` and the data generators, and its claim ranges hold at every profile."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest

from labkit import info, tables
from labkit.data import biod, bios
from labkit.experiments import information as I


@pytest.fixture(scope="module")
def small_biod():
    return biod.sample(50, **I.RUNNING_EXAMPLE, seed=3)


def test_attribute_table_adds_the_bits_of_bios_attributes():
    t = I.attribute_table()
    assert dict(t["options"].iloc[:-1]) == info.BIOS_ATTRIBUTE_SIZES
    assert t.loc["one person (S0)", "options"] == math.prod(info.BIOS_ATTRIBUTE_SIZES.values())
    assert t.loc["one person (S0)", "bits"] == pytest.approx(info.LOG2_S0)
    assert t.loc["gender", "bits"] == 1.0
    custom = I.attribute_table({"city": 200, "coin": 2})
    assert custom.loc["one person (S0)", "bits"] == pytest.approx(math.log2(400))
    assert "2.12e+14" in repr(t) and "67,200" in repr(t)


def test_renderings_show_the_same_facts_and_wrap():
    texts = I.bios_renderings(30, seed=2, person=4)
    person = bios.BioS(30, 2, mode="single").people[4]
    assert len(texts) == 6 and len(set(texts.values())) == 6  # six different texts ...
    assert all(person.full_name in t and person.employer in t for t in texts.values())  # ... of the same facts
    wrapped = I.wrap_texts({"a": "word " * 40, "b": "x"}, width=30)
    assert wrapped.startswith("[a]\n") and "\n\n[b]\nx" in wrapped
    assert max(len(line) for line in wrapped.splitlines()) <= 30


def test_qa_table_splits_questions_from_answers():
    data = bios.BioS(20, 1, mode="single")
    t = I.qa_table(data, person=3)
    assert list(t.index) == list(bios.SENTENCE_ATTRIBUTES)
    assert t.loc["birth_city", "answer"] == data.people[3].birth_city + "."
    assert all(q.endswith("?") and data.people[3].full_name in q for q in t["question"])


def test_record_chunks_and_table_read_the_value_sets_back(small_biod):
    data, tokens = small_biod, small_biod.exposure(0).tokens
    t0 = data.vocab.offset("t")
    for i, k in ((0, 0), (7, 3), (49, 2)):
        chunks = I.record_chunks(data, tokens[i], k)
        assert chunks == [data.decode(data.value_sets[k, data.chunks[i, k, c]] + t0) for c in range(data.C)]
    t = I.record_table(data, people=[0, 5])
    assert len(t) == 2 * data.K and list(t.columns) == ["person", "name", "attribute", "chunk 1", "chunk 2"]
    assert t["chunk 2"].iloc[data.K + 1] == I.record_chunks(data, tokens[5], 1)[1]
    assert I.value_set_sample(data, k=1, n=2).endswith(f"... ({data.D} strings)")


def test_terms_table_is_prop_2_3_term_by_term():
    t = I.terms_table(10_000)
    assert list(t.index) == ["names", "values", "value sets", "total"]
    assert t.loc["total", "exact"] == pytest.approx(info.biod_information(10_000, **I.RUNNING_EXAMPLE))
    assert t.loc["total", "approx"] == pytest.approx(info.biod_information(10_000, **I.RUNNING_EXAMPLE, exact=False))
    assert t.loc["values", "exact"] == t.loc["values", "approx"] == pytest.approx(10_000 * 4 * 2 * math.log2(100))
    assert t.loc["total", "exact / person"] == pytest.approx(t.loc["total", "exact"] / 10_000)
    assert t.loc[["names", "values", "value sets"], "exact"].sum() == pytest.approx(t.loc["total", "exact"])


def test_stirling_gap_is_just_below_log2_e():
    for N in (1000, 10_000, 100_000):
        gap = I.stirling_gap_per_person(N)
        assert 1.43 < gap < math.log2(math.e)
    assert I.stirling_gap_per_person(10) < I.stirling_gap_per_person(1000)  # the ½·log2(2πN)/N term


@pytest.mark.parametrize("profile", ["smoke", "quick", "full"])
def test_every_profile_expects_what_its_numbers_give(profile):
    p = I.PROFILES[profile]
    low, high = p.expect.gap_per_person
    assert low <= I.stirling_gap_per_person(p.sizes.N) <= high
    low, high = p.expect.log2_S0
    assert low <= info.LOG2_S0 <= high and round(low, 2) <= I.PAPER_LOG2_S0 <= round(high, 2)
    quotes = I.quotes_table()
    assert quotes["approx matches"].sum() == p.expect.quotes_approx
    assert quotes["exact matches"].sum() == p.expect.quotes_exact
    reference = I.reference_table()
    assert reference.loc["intern notes", "bits"] < p.expect.notes_share_max * reference.loc["Prop 2.3 (paper)", "bits"]


def test_rounding_to_the_quotes():
    assert I.round_sig(615_574.0, 2) == 620_000.0 and I.round_sig(1.0388e9, 1) == 1e9
    assert I.quote_range(0.62e6, 2) == pytest.approx((0.615e6, 0.625e6))
    assert I.quote_range(1e9, 1) == pytest.approx((0.5e9, 1.5e9))
    assert [I.matches_quote(N, exact=False) for N in I.BIOS_QUOTES] == [True] * 4
    assert [I.matches_quote(N, exact=True) for N in I.BIOS_QUOTES] == [False, False, False, True]
    t = I.quotes_table()
    assert t["N"].tolist() == list(I.BIOS_QUOTES)
    assert t["approx"].tolist() == pytest.approx([info.bios_information(N, exact=False) / 1e6 for N in I.BIOS_QUOTES])
    assert t.formatted()["approx matches"].tolist() == ["✓"] * 4
    assert t.formatted()["N"].tolist()[-1] == "20,000,000"


def test_notes_formula_is_the_garbled_one():
    run = dict(I.REFERENCE_RUN)
    N, K, C, D, L, T, N0 = (run[k] for k in ("N", "K", "C", "D", "L", "T", "N0"))
    by_hand = info.log2_binom(N0, N) + N * K * math.log2(C) + K * math.log2(D) + K * info.log2_binom(T, L)
    assert I.notes_formula(**run) == pytest.approx(by_hand)
    assert round(I.notes_formula(**run)) == 8934 and round(info.biod_information(**run)) == 200_806
    with pytest.raises(ValueError, match="k=50 is not valid"):
        I.notes_formula(**dict(run, L=50, T=20))
    t = I.reference_table()
    assert t.loc["held by the model (R × P)", "bits"] == pytest.approx(I.REFERENCE_R * I.REFERENCE_PARAMS)
    assert t.loc["Prop 2.3 (paper)", "/ (2 bits × P)"] == pytest.approx(200_806 / (2 * 40_448), rel=1e-5)
    growth = I.growth_table(1000, D=(10, 10_000))
    assert growth.loc["intern notes", "increase"] == pytest.approx(4 * math.log2(1000))
    assert growth.loc["Prop 2.3 (paper)", "increase"] > 1000 * 4 * 2 * math.log2(1000)
    assert growth.formatted()["increase"].tolist()[1] == "39.9"


def test_versus_and_the_paper_vs_notes_figure():
    configs = [dict(I.RUNNING_EXAMPLE, N=n) for n in (100, 1000)]
    series = I.versus(configs, per=10)
    assert series["paper (Prop 2.3)"][1] == pytest.approx(info.biod_information(**configs[1]) / 10)
    assert series["intern notes"][0] == pytest.approx(I.notes_formula(**configs[0]) / 10)
    fig = I.figure_paper_vs_notes(1000, [1000, 10_000, 100_000])
    assert isinstance(fig, go.Figure) and len(fig.data) == 6
    assert sum(trace.showlegend is not False for trace in fig.data) == 3  # one legend entry per series
    assert list(fig.data[3].x) == list(I.D_GRID)


def test_explorer_views_are_the_terms_on_the_grid():
    people, D_steps = [1000, 10_000], [10, 100, 1000]
    views = I.explorer_views(people, D_steps)
    assert list(views) == ["total bits", "bits per person", "parameters needed"]
    y_title, traces = views["bits per person"]
    assert y_title == "bits per person" and list(traces) == ["all", "names", "values", "value sets"]
    assert all(len(grid) == len(D_steps) and all(len(row) == len(people) for row in grid) for grid in traces.values())
    terms = info.biod_information_terms(**dict(I.RUNNING_EXAMPLE, N=10_000, D=1000))
    assert traces["value sets"][2][1] == pytest.approx(terms["diversity"] / 10_000)
    assert views["total bits"][1]["all"][2][1] == pytest.approx(sum(terms.values()))
    assert views["parameters needed"][1]["at 2 bits/param"][2][1] == pytest.approx(sum(terms.values()) / 2)
    assert I.closest_index([10, 30, 100, 300], 100) == 2 and I.closest_index([10, 1000], 90) == 0


def test_explorer_figure_has_a_slider_step_per_D():
    sizes = I.PROFILES["smoke"].sizes
    fig = I.figure_explorer(sizes)
    assert isinstance(fig, go.Figure)
    slider = fig.layout.sliders[0]
    assert [step.label for step in slider.steps] == ["10", "100", "1000"] and slider.active == 1
    assert len(fig.data[0].x) == len(sizes.people_grid()) == 9
    assert "D, L=3" in fig.layout.title.text


def test_calculator_matches_info_and_explains_the_notes_failure():
    shape = dict(I.RUNNING_EXAMPLE, N=500, N0=info.N0_BIOS)
    out = I.calculator(**shape)
    assert out["information (exact), bits"] == info.biod_information(**shape)
    assert out["parameters needed at 2 bits/param"] == out["information (exact), bits"] / 2
    assert out["intern notes' formula, bits"] == pytest.approx(I.notes_formula(**shape))
    assert I.calculator(**dict(shape, L=50, T=20))["intern notes' formula, bits"] == "undefined (L > T)"


def test_bits_table_reads_losses_into_bits():
    N = 1000
    losses = {"nothing": (math.log(info.N0_BIOS), info.LOG2_S0 * info.LN2), "everything": (math.log(N), 0.0)}
    learned = {name: info.bios_bits(N, *ps) for name, ps in losses.items()}
    content = info.bios_information(N, exact=False)
    t = I.bits_table(losses, learned, content)
    assert list(t.columns) == ["p1", "p2", "names", "values", "total", "share"]
    assert t.loc["everything", "share"] == pytest.approx(1.0) and abs(t.loc["nothing", "total"]) < 1e-6 * N
    assert t.formatted()["share"].tolist() == ["0.0%", "100.0%"]
    biod_learned = {"oracle": info.biod_bits(N, **I.RUNNING_EXAMPLE, p1=math.log(N), p2=0.0, p3=0.0)}
    t = I.bits_table({"oracle": (math.log(N), 0.0, 0.0)}, biod_learned)
    assert list(t.columns) == ["p1", "p2", "p3", "names", "values", "value sets", "total"]


def test_claims_reproduce_and_a_wrong_range_fails_them():
    table = tables.paper_vs_lab(I.claims(I.QUICK.expect), lab="this run")
    status = table["status"].tolist()
    assert status[:5] == [tables.REPRODUCES] * 5 and status[5:] == [tables.NOT_RUN] * 2
    assert table["paper"].tolist()[:2] == ["47.59", "0.62"]
    assert "exact form: 0.630, ✗" in table["note"].tolist()[1] and "✓" in table["note"].tolist()[4]
    broken = I.Expect(log2_S0=(47.6, 47.7))
    assert tables.paper_vs_lab(I.claims(broken))["status"].tolist()[0] == tables.DIFFERS
