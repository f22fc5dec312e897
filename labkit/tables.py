"""Results as pandas DataFrames whose text and HTML are fixed by the chapter, not by the machine.

Why not a plain DataFrame: its text repr depends on display options and the terminal's width (wide
frames wrap differently), float columns print with a precision chosen from the values, and a pandas
``Styler`` writes a random id into its HTML and its object address into its text. The chapters'
tables go to the website (HTML) and to nbval, which compares the text of cells marked
``# NBVAL_CHECK_OUTPUT`` across machines, so both reprs must be a pure function of the table.

:func:`table` builds a :class:`Table` from a list of dicts (records, as ``labkit.sweep`` stores them):
it picks, orders and renames columns and formats each column (thousands separators, fixed decimals,
percentages); the numbers stay numbers for the asserts that follow. :func:`paper_vs_lab` is the
"paper's number next to the lab's" table that every chapter shows.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from labkit.checks import invalid

__all__ = ["MISSING", "Table", "checks_view", "paper_vs_lab", "table"]

#: What a missing value (None, NaN) shows.
MISSING = "—"

Format = str | Callable[[Any], str]


def _format_value(value: Any, fmt: Format | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if callable(fmt):
        return str(fmt(value))
    if fmt is not None:
        return format(value, fmt)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format(float(value), ".4g")  # a float without a format: 4 significant digits, never more
    return str(value)


def _numeric(values: Sequence[Any]) -> bool:
    """A column of numbers (missing values aside) is right-aligned in text; anything else left-aligned."""
    present = [v for v in values if not (v is None or (isinstance(v, float) and math.isnan(v)))]
    return bool(present) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present)


class Table(pd.DataFrame):
    """A DataFrame that displays with per-column formats, in text and HTML fixed by its contents.

    ``formats``: column label → format spec (``",d"``, ``".2f"``, ``".1%"``) or a function value → text;
    columns without one show ints as they are and floats with 4 significant digits. ``show_index``:
    whether the index is part of the display (it is when :func:`table` was given ``index``).
    """

    _metadata = ["formats", "show_index"]

    @property
    def _constructor(self) -> type[Table]:
        return Table

    def formatted(self) -> pd.DataFrame:
        """The table as text cells, exactly as displayed (a plain DataFrame of strings)."""
        formats = getattr(self, "formats", None) or {}
        cells = {column: [_format_value(v, formats.get(column)) for v in self[column].tolist()]
                 for column in self.columns}
        index = pd.Index([_format_value(v, None) for v in self.index.tolist()], name=self.index.name)
        return pd.DataFrame(cells, columns=list(self.columns), index=index if self._shows_index() else None)

    def _shows_index(self) -> bool:
        return bool(getattr(self, "show_index", False))

    def to_text(self) -> str:
        """The plain-text display: every row and column, numbers right-aligned and text left-aligned,
        never wrapped at a terminal's width (pandas' own text wraps at ``display.width``)."""
        cells = self.formatted()
        columns = [(str(c), cells[c].tolist(), _numeric(self[c].tolist())) for c in cells.columns]
        if self._shows_index():
            columns.insert(0, (str(self.index.name or ""), cells.index.tolist(), _numeric(self.index.tolist())))
        widths = [max([len(name), *map(len, values)]) for name, values, _ in columns]

        def line(texts: Sequence[str]) -> str:
            return "  ".join(text.rjust(w) if right else text.ljust(w)
                             for text, w, (_, _, right) in zip(texts, widths, columns, strict=True)).rstrip()

        lines = [line([name for name, _, _ in columns])]
        lines += [line([values[i] for _, values, _ in columns]) for i in range(len(cells))]
        return "\n".join(lines)

    def to_lab_html(self) -> str:
        """The HTML display: pandas' plain ``<table class="dataframe lab-table">``, with no ids."""
        return self.formatted().to_html(index=self._shows_index(), border=0, classes="lab-table", escape=True)

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        return self.to_lab_html()


def _records(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[Mapping[str, Any]]:
    if isinstance(rows, pd.DataFrame):
        return rows.to_dict("records")
    records = list(rows)
    for i, row in enumerate(records):
        if not isinstance(row, Mapping):
            raise invalid(f"rows[{i}]", row, "a mapping of column -> value (one dict per row)")
    return records


def table(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    columns: Sequence[str] | Mapping[str, str] | None = None,
    formats: Mapping[str, Format] | None = None,
    index: str | None = None,
) -> Table:
    """A :class:`Table` of ``rows`` (one dict per row; a key missing from a row shows as "—").

    ``columns``: the keys to show, in order (a list), or key → displayed label (a dict); None shows
    every key in the order first seen. ``formats``: key (or label) → format spec or function, e.g.
    ``{"params": ",d", "R": ".2f", "fraction_learned": ".1%"}``. ``index``: a key whose values label the
    rows (shown as the index); None shows no index. A key that no row has is an error naming it and
    the keys there are.
    """
    records = _records(rows)
    available = list(dict.fromkeys(key for row in records for key in row))
    allowed = ", ".join(map(str, available)) or "none (no rows)"
    labels = dict(columns) if isinstance(columns, Mapping) else {key: key for key in (columns or available)}
    for key in (*labels, *([index] if index is not None else [])):
        if key not in available:
            raise invalid("column", key, allowed)
    formats = dict(formats or {})
    by_label = {}
    for key, fmt in formats.items():
        if key not in labels and key not in labels.values():
            raise invalid("formats key", key, ", ".join(labels) or "none")
        by_label[labels.get(key, key)] = fmt
    shown = [key for key in labels if key != index]
    data = {labels[key]: [row.get(key) for row in records] for key in shown}
    frame = Table(data, columns=[labels[key] for key in shown])
    if index is not None:
        frame.index = pd.Index([row.get(index) for row in records], name=labels.get(index, index))
    frame.formats = by_label
    frame.show_index = index is not None
    return frame


# --------------------------------------------------------------------------------------------------
# The paper's numbers next to the lab's
# --------------------------------------------------------------------------------------------------

_CLAIM_KEYS = ("claim", "paper", "lab", "status", "expect", "fmt", "note")
REPRODUCES, DIFFERS, NOT_RUN = "✓ reproduces", "✗ does not reproduce", "not run"


def _status(claim: Mapping[str, Any]) -> str:
    status, lab = claim.get("status"), claim.get("lab")
    if isinstance(status, str):
        return status
    if status is not None:
        return REPRODUCES if status else DIFFERS
    if lab is None or (isinstance(lab, float) and math.isnan(lab)):
        return NOT_RUN
    expect = claim.get("expect")
    if expect is None:
        return MISSING
    low, high = expect
    if not isinstance(lab, numbers.Real):
        raise invalid("lab", lab, "a number when 'expect' gives a range")
    return REPRODUCES if (low is None or lab >= low) and (high is None or lab <= high) else DIFFERS


def paper_vs_lab(claims: Iterable[Mapping[str, Any]], *, lab: str = "this lab", notes: bool | None = None) -> Table:
    """The comparison every chapter shows: claim, the paper's number, the lab's number, and a status.

    Each claim is a dict with ``claim`` (text), ``paper`` (a number or text such as "≥ 2, ≤ 2.3") and
    ``lab`` (the measured number; None: not run), and optionally ``fmt`` (format of the numbers,
    default ``".2f"``), ``expect`` (``(low, high)``: the lab's number reproduces the claim when it lies
    in the range; either end may be None), ``status`` (True / False / a text, overriding ``expect``)
    and ``note``. ``lab`` names the lab's column (e.g. "this run (quick)"). The note column is shown
    when some claim has a note (``notes`` forces it on or off).
    """
    rows = []
    for i, claim in enumerate(claims):
        unknown = [key for key in claim if key not in _CLAIM_KEYS]
        if unknown or "claim" not in claim:
            raise invalid(f"claims[{i}] key", unknown[0] if unknown else "claim (missing)", ", ".join(_CLAIM_KEYS))
        fmt = claim.get("fmt", ".2f")

        def shown(value: Any, fmt: Format = fmt) -> str:
            return value if isinstance(value, str) else _format_value(value, fmt)

        rows.append({"claim": claim["claim"], "paper": shown(claim.get("paper")), lab: shown(claim.get("lab")),
                     "status": _status(claim), "note": claim.get("note", "")})
    with_notes = any(row["note"] for row in rows) if notes is None else notes
    columns = ["claim", "paper", lab, "status", *(["note"] if with_notes else [])]
    return table(rows, columns=columns) if rows else Table({c: [] for c in columns}, columns=columns)


def checks_view(rows: Iterable[Mapping[str, Any]]) -> Table:
    """What a chapter's claim cell asserts, as a table: each row's ``check`` (text), ``lab`` (the measured
    number, two decimals; None shows as missing) and whether it ``holds`` ("yes" / "NO")."""
    return table([{"check": r["check"], "lab": _format_value(r["lab"], ".2f"), "holds": "yes" if r["holds"] else "NO"}
                  for r in rows], columns=["check", "lab", "holds"])

