"""tables: DataFrames whose text and HTML are a pure function of the table (nbval compares the text)."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from labkit import tables
from labkit.tables import MISSING, Table, paper_vs_lab, table

ROWS = [dict(exposures=1000, d_model=16, params=12_345, R=2.0634, learned=0.9712, model="gpt"),
        dict(exposures=100, d_model=24, params=40_448, R=0.3, learned=None, model="gpt-long")]
COLUMNS = {"exposures": "exposures", "d_model": "d", "params": "P", "R": "R", "learned": "learned", "model": "model"}
FORMATS = {"params": ",d", "R": ".2f", "learned": ".1%"}


def _build() -> Table:
    return table([dict(r) for r in ROWS], columns=COLUMNS, formats=FORMATS)


def test_table_is_a_dataframe_with_numbers_and_formatted_display():
    t = _build()
    assert isinstance(t, pd.DataFrame) and list(t.columns) == ["exposures", "d", "P", "R", "learned", "model"]
    assert t["R"].max() == 2.0634 and t["P"].sum() == 52_793  # numbers stay numbers
    assert repr(t) == ("exposures   d       P     R  learned  model\n"
                       "     1000  16  12,345  2.06    97.1%  gpt\n"
                       "      100  24  40,448  0.30        —  gpt-long")
    html = t._repr_html_()
    assert "<td>12,345</td>" in html and "<td>97.1%</td>" in html and f"<td>{MISSING}</td>" in html
    assert html.startswith('<table class="dataframe lab-table">')


def test_reprs_are_identical_across_builds_and_carry_no_ids():
    first, second = _build(), _build()
    assert repr(first) == repr(second) and first._repr_html_() == second._repr_html_()
    html = first._repr_html_()
    assert not re.search(r'\bid="', html) and "uuid" not in html and "0x" not in repr(first)
    # and they do not depend on pandas' display options (width, precision)
    with pd.option_context("display.width", 20, "display.precision", 2, "display.max_columns", 2):
        assert repr(_build()) == repr(first) and _build()._repr_html_() == html


def test_formats_apply_by_key_or_label_and_accept_functions():
    by_label = table(ROWS, columns=COLUMNS, formats={"P": ",d", "R": lambda r: f"R={r:.1f}"})
    assert by_label.formatted()["P"].tolist() == ["12,345", "40,448"]
    assert by_label.formatted()["R"].tolist() == ["R=2.1", "R=0.3"]
    plain = table(ROWS, columns=["R", "d_model"])
    assert plain.formatted()["R"].tolist() == ["2.063", "0.3"]  # floats without a format: 4 significant digits


def test_columns_order_and_default_and_index():
    assert list(table(ROWS).columns) == ["exposures", "d_model", "params", "R", "learned", "model"]
    assert list(table(ROWS, columns=["model", "R"]).columns) == ["model", "R"]
    by_size = table(ROWS, columns=["model", "R"], index="d_model")
    assert repr(by_size).splitlines()[0] == "d_model  model         R"
    assert by_size.loc[24, "model"] == "gpt-long"
    assert "0" not in repr(table(ROWS, columns=["model"])).splitlines()[1]  # no RangeIndex in the display


def test_missing_keys_show_as_missing():
    t = table([dict(a=1, b=2.5), dict(a=2)], formats={"b": ".1f"})
    assert t.formatted()["b"].tolist() == ["2.5", MISSING] and math.isnan(t["b"].iloc[1])


def test_column_errors_name_the_bad_column_and_the_allowed_ones():
    with pytest.raises(ValueError, match=r"column='Rx' is not valid; allowed: exposures, d_model, params, R, learned, "
                                         r"model"):
        table(ROWS, columns=["R", "Rx"])
    with pytest.raises(ValueError, match=r"column='seed' is not valid"):
        table(ROWS, index="seed")
    with pytest.raises(ValueError, match=r"formats key='Q' is not valid; allowed: R"):
        table(ROWS, columns=["R"], formats={"Q": ".2f"})
    with pytest.raises(ValueError, match=r"rows\[1\]=3 is not valid; allowed: a mapping"):
        table([dict(a=1), 3])


def test_derived_tables_keep_their_formats():
    t = _build().sort_values("R")
    assert isinstance(t, Table) and t.formatted()["P"].tolist() == ["40,448", "12,345"]


def test_paper_vs_lab_statuses_and_formats():
    claims = [dict(claim="peak R, 1000 exposures", paper="≥ 2, ≤ 2.3", lab=2.063, expect=(1.8, 2.6)),
              dict(claim="peak R, 100 exposures", paper=1.0, lab=0.27, expect=(0.8, None), note="too few steps"),
              dict(claim="R at cpu-full", paper=2, lab=None),
              dict(claim="MAC ≈ MLS", paper="≈ 1", lab=0.61, fmt=".1f", status="partly"),
              dict(claim="bits ≤ information", paper="always", lab="always", status=True)]
    t = paper_vs_lab(claims, lab="this run (quick)")
    assert list(t.columns) == ["claim", "paper", "this run (quick)", "status", "note"]
    assert t["status"].tolist() == [tables.REPRODUCES, tables.DIFFERS, tables.NOT_RUN, "partly", tables.REPRODUCES]
    assert t["paper"].tolist() == ["≥ 2, ≤ 2.3", "1.00", "2.00", "≈ 1", "always"]
    assert t["this run (quick)"].tolist() == ["2.06", "0.27", MISSING, "0.6", "always"]
    assert repr(t) == repr(paper_vs_lab(claims, lab="this run (quick)"))
    assert "note" not in paper_vs_lab(claims[:1]).columns  # no notes, no note column
    assert list(paper_vs_lab([]).columns) == ["claim", "paper", "this lab", "status"]


def test_paper_vs_lab_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"claims\[0\] key='papr' is not valid; allowed: claim, paper, lab"):
        paper_vs_lab([dict(claim="x", papr=1.0)])
    with pytest.raises(ValueError, match=r"claims\[0\] key='claim \(missing\)'"):
        paper_vs_lab([dict(paper=1.0)])
    with pytest.raises(ValueError, match="a number when 'expect' gives a range"):
        paper_vs_lab([dict(claim="x", lab="high", expect=(1, 2))])


def test_checks_view_shows_each_check_its_number_and_whether_it_holds():
    from labkit.tables import MISSING, checks_view

    shown = checks_view([{"check": "R ≥ 1", "lab": 1.2345, "holds": True}, {"check": "absent", "lab": None,
                                                                            "holds": False}])
    assert list(shown.columns) == ["check", "lab", "holds"]
    assert list(shown["lab"]) == ["1.23", MISSING] and list(shown["holds"]) == ["yes", "NO"]
