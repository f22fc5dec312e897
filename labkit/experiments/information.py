"""Chapter 1's experiment: knowledge as bits. No training, only counting (``labkit.info``).

The chapter samples bioS and bioD people, derives the information content of bioD (Prop 2.3 of Part
3.3, allenzhu2024part33) term by term, sets the bioS totals usually quoted for Part 3.3 beside both
forms of the formula, tests the intern notes' (wrong) formula, precomputes an offline explorer over
data sizes, and turns hand-made losses into bits learned (Def 4.1, Def 4.3). Its profiles only change
how many people the samples hold and how fine the grids are; every number is exact arithmetic, so the
claim cell's ranges (``Expect``) are the precision of the paper's quotes, not noise.

Everything the chapter shows is built here: tables (``labkit.tables``), figures (``figure_*``,
``labkit.plots``) and the claims of its paper-vs-lab table (``claims``).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from labkit import info, plots, tables
from labkit.data import bios
from labkit.data.biod import BioD
from labkit.experiments.base import Execution, Profile, derive
from labkit.tables import Table

NAME = "information"
CHAPTER = "01_knowledge_as_bits"


@dataclass(frozen=True)
class Sizes:
    """``N``: people in the samples and demos; the explorer's grid spans N = 1e3 .. 1e7 with
    ``grid_per_decade`` points per decade, and one slider step per value set size in ``explorer_D``."""

    N: int = 10_000
    grid_per_decade: int = 8
    explorer_D: tuple[int, ...] = (10, 30, 100, 300, 1000, 3000, 10_000)

    def people_grid(self) -> list[int]:
        """N from 1e3 to 1e7, ``grid_per_decade`` points per decade (log-spaced, rounded)."""
        return np.logspace(3, 7, 4 * self.grid_per_decade + 1).round().astype(int).tolist()


@dataclass(frozen=True)
class Expect:
    """The claim cell's ranges. ``log2_S0``: the bits of one bioS person, Part 3.3's 47.59 to its two
    decimals; ``quotes_approx`` / ``quotes_exact``: how many of the four quoted bioS totals the approximate
    and the exact form reproduce to the quote's precision; ``gap_per_person``: the exact minus the
    approximate name term per person at the profile's N (Stirling: just below log2 e ≈ 1.4427, less for
    small N); ``notes_share_max``: the most of Prop 2.3's bits the intern notes' formula may find on the
    reference run without the chapter's point (it misses nearly all of them) failing."""

    log2_S0: tuple[float, float] = (47.585, 47.595)
    quotes_approx: int = 4
    quotes_exact: int = 1
    gap_per_person: tuple[float, float] = (1.435, math.log2(math.e))
    notes_share_max: float = 0.05


QUICK = Profile(Sizes(), Expect(), Execution(processes=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(N=200, grid_per_decade=2, explorer_D=(10, 100, 1000)),
                    expect=dict(gap_per_person=(1.41, math.log2(math.e)))),
    "quick": QUICK,
    "full": derive(QUICK, sizes=dict(N=100_000, grid_per_decade=16,
                                     explorer_D=(10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000))),
}

#: The chapter's running example of bioD (N: the profile's).
RUNNING_EXAMPLE: Mapping[str, int] = {"K": 4, "C": 2, "D": 100, "L": 3, "T": 100}
#: Value set sizes of the figure "paper vs notes" (its second panel).
D_GRID: tuple[int, ...] = (10, 30, 100, 300, 1000, 3000, 10_000)

#: Totals usually quoted for Part 3.3's bioS(N): N -> (quoted bits, significant digits of the quote).
BIOS_QUOTES: Mapping[int, tuple[float, int]] = {10_000: (0.62e6, 2), 100_000: (5.8e6, 2),
                                                1_000_000: (55e6, 2), 20_000_000: (1e9, 1)}
#: Part 3.3's log2 S0 (Def 4.3), to the two decimals it is quoted with.
PAPER_LOG2_S0 = 47.59
#: Part 3.1 (allenzhu2023part31): QA accuracy on the held-out half of the people after finetuning on the
#: other half, pretrained on ``single`` biographies and on ``multi5`` + ``permute``.
PAPER_EXTRACTION = {"single": 0.097, "multi5 + permute": 0.966}
#: Part 3.3's headline capacity: bits stored per parameter at about 1000 exposures per person.
PAPER_BITS_PER_PARAM = 2.0

#: The lab's reference run (chapter 2's setting): bioD-like data with N0 = 10,000 two-token names.
REFERENCE_RUN: Mapping[str, int] = {"N": 3000, "K": 8, "C": 1, "D": 256, "L": 1, "T": 256, "N0": 10_000}
#: Parameters of the reference run's 2-layer transformer, and the capacity ratio it was measured at.
REFERENCE_PARAMS = 40_448
REFERENCE_R = 2.44

_TERM_LABELS = {"name": "names", "values": "values", "diversity": "value sets"}
_TERM_COUNTS = {"name": "which N of N0 names", "values": "N·K·C chunks, one of D each",
                "diversity": "K sets of D strings of T^L"}


# --------------------------------------------------------------------------------------------------
# Bits of a fact and of a bioS person
# --------------------------------------------------------------------------------------------------


def _options(n: int) -> str:
    return f"{n:,d}" if n < 10**7 else f"{n:.2e}"


def attribute_table(sizes: Mapping[str, int] | None = None) -> Table:
    """One row per independent uniform attribute (default: bioS's, from its value pools): its options and
    bits, log2(options); a last row "one person" with their product S0 and log2 S0, the sum of the bits."""
    sizes = dict(bios.Pools.load().attribute_sizes() if sizes is None else sizes)
    rows = [{"attribute": name, "options": n, "bits": math.log2(n)} for name, n in sizes.items()]
    S0 = math.prod(sizes.values())
    rows.append({"attribute": "one person (S0)", "options": S0, "bits": sum(math.log2(n) for n in sizes.values())})
    return tables.table(rows, formats={"options": _options, "bits": ".3f"}, index="attribute")


def bios_renderings(N: int, seed: int = 0, person: int = 0) -> dict[str, str]:
    """Person ``person`` of bioS(N) in each rendering the chapter shows: label -> biography text."""

    def data(**kwargs: Any) -> bios.BioS:
        return bios.BioS(N, seed, **kwargs)

    return {
        "single": data(mode="single").text(person),
        "multi3, 2nd biography": data(mode="single", multi=3).text(person, 1),
        "single + permute": data(mode="single", permute=True).text(person),
        "single + fullname": data(mode="single", fullname=True).text(person),
        "fresh, exposure 0": data().text(person, exposure=0),
        "fresh, exposure 1": data().text(person, exposure=1),
    }


def wrap_texts(texts: Mapping[str, str], width: int = 76) -> str:
    """``texts`` (label -> text) as "[label]" headers over paragraphs wrapped at ``width`` characters."""
    return "\n\n".join(f"[{label}]\n{textwrap.fill(text, width)}" for label, text in texts.items())


def qa_table(data: bios.BioS, person: int = 0) -> Table:
    """The question-answer pairs of one person, one row per attribute: question and answer (the part a
    model is scored on)."""
    rows = []
    for attribute in bios.SENTENCE_ATTRIBUTES:
        question, answer = data.qa_text(person, attribute).split(" Answer: ")
        rows.append({"attribute": attribute, "question": question, "answer": answer})
    return tables.table(rows, index="attribute")


# --------------------------------------------------------------------------------------------------
# bioD records
# --------------------------------------------------------------------------------------------------


def record_chunks(data: BioD, record: torch.Tensor | Sequence[int], k: int) -> list[str]:
    """The C chunks (L tokens each) of attribute ``k`` read off one record's tokens, as text."""
    start, L = data.value_start(k), data.L
    return [data.decode(record[start + c * L: start + (c + 1) * L]) for c in range(data.C)]


def value_set_sample(data: BioD, k: int = 0, n: int = 4) -> str:
    """The first ``n`` strings of attribute ``k``'s value set, e.g. "t23 t0 t33, t4 t88 t13, ... (100 strings)"."""
    t0 = data.vocab.offset("t")
    first = [data.decode(v + t0) for v in data.value_sets[k, :n]]
    return f"{', '.join(first)} ... ({data.D} strings)"


def record_table(data: BioD, people: Iterable[int] = (0, 1)) -> Table:
    """One row per (person, attribute) of ``people``'s records: the name and the attribute's C chunks, read
    off the record tokens (exposure 0)."""
    tokens = data.exposure(0).tokens
    n_names = len(data.name_pools)
    rows = []
    for i in people:
        name = data.decode(tokens[i, 1: 1 + n_names])
        for k in range(data.K):
            row: dict[str, Any] = {"person": i, "name": name, "attribute": f"k{k}"}
            row.update({f"chunk {c + 1}": text for c, text in enumerate(record_chunks(data, tokens[i], k))})
            rows.append(row)
    return tables.table(rows)


# --------------------------------------------------------------------------------------------------
# Prop 2.3, term by term
# --------------------------------------------------------------------------------------------------


def terms_table(N: int, shape: Mapping[str, int] = RUNNING_EXAMPLE, N0: int = info.N0_BIOS) -> Table:
    """Prop 2.3's three terms of bioD(N, **shape) and their total, exact and approximate, in bits and in
    bits per person (index: the term; the numbers stay numbers)."""
    exact = info.biod_information_terms(N, **shape, N0=N0)
    approx = info.biod_information_terms(N, **shape, N0=N0, exact=False)
    rows = [{"term": _TERM_LABELS[key], "counts": _TERM_COUNTS[key], "exact": exact[key], "approx": approx[key]}
            for key in exact]
    rows.append({"term": "total", "counts": "", "exact": sum(exact.values()), "approx": sum(approx.values())})
    for row in rows:
        row["exact / person"], row["approx / person"] = row["exact"] / N, row["approx"] / N
    return tables.table(rows, formats={"exact": ",.0f", "approx": ",.0f", "exact / person": ".2f",
                                       "approx / person": ".2f"}, index="term")


def stirling_gap_per_person(N: int, N0: int = info.N0_BIOS) -> float:
    """Exact minus approximate name term, per person: (log2 C(N0, N) - N·log2(N0/N)) / N, just below
    log2 e for 1 << N << N0 (the bioS and bioD forms differ by exactly this, times N)."""
    return (info.bios_information(N, N0) - info.bios_information(N, N0, exact=False)) / N


# --------------------------------------------------------------------------------------------------
# The quoted bioS totals
# --------------------------------------------------------------------------------------------------


def round_sig(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant digits (0.6156e6, 2 -> 0.62e6)."""
    return float(f"{x:.{digits - 1}e}")


def quote_range(quote: float, digits: int) -> tuple[float, float]:
    """The numbers that round to ``quote`` at ``digits`` significant digits: quote ± half its last digit."""
    half = 0.5 * 10 ** (math.floor(math.log10(abs(quote))) - digits + 1)
    return quote - half, quote + half


def matches_quote(N: int, exact: bool, quotes: Mapping[int, tuple[float, int]] = BIOS_QUOTES) -> bool:
    """Whether bioS(N)'s information (exact or approximate form) rounds to the quoted total for N."""
    quote, digits = quotes[N]
    return round_sig(info.bios_information(N, exact=exact), digits) == quote


def quotes_table(quotes: Mapping[int, tuple[float, int]] = BIOS_QUOTES) -> Table:
    """bioS(N) in millions of bits, both forms, against the quoted totals: whether each form rounds to the
    quote (✓ / ✗; the columns hold bools), and the parameters a model needs at 2 bits/param (millions,
    approximate form)."""
    rows = []
    for N, (quote, _) in quotes.items():
        exact, approx = info.bios_information(N), info.bios_information(N, exact=False)
        rows.append({"N": N, "exact": exact / 1e6, "approx": approx / 1e6, "quoted": quote / 1e6,
                     "exact matches": matches_quote(N, True, quotes), "approx matches": matches_quote(N, False, quotes),
                     "P at 2 bits/param": approx / 2e6})
    mark = {True: "✓", False: "✗"}.__getitem__
    return tables.table(rows, formats={"N": ",d", "exact": ",.3f", "approx": ",.3f", "quoted": ".4g",
                                       "exact matches": mark, "approx matches": mark,
                                       "P at 2 bits/param": ",.3f"})


# --------------------------------------------------------------------------------------------------
# The intern notes' formula
# --------------------------------------------------------------------------------------------------


def notes_formula(N: int, K: int, C: int, D: int, L: int, T: int, N0: int = info.N0_BIOS) -> float:
    """The intern notes' (wrong) formula for bioD, written out only to test it against Prop 2.3:
    ``log2 C(N0, N) + N·K·log2 C + K·log2 D + K·log2 C(T, L)``. ``ValueError`` for L > T, where
    C(T, L) does not exist."""
    return info.log2_binom(N0, N) + N * K * math.log2(C) + K * math.log2(D) + K * info.log2_binom(T, L)


def reference_table(run: Mapping[str, int] = REFERENCE_RUN, params: int = REFERENCE_PARAMS,
                    R: float = REFERENCE_R) -> Table:
    """The reference run's data by Prop 2.3 and by the intern notes, and the bits its model was measured to
    hold (R × P): bits, bits per person, and the ratio to what a model stores at 2 bits/param."""
    N = run["N"]
    rows = [{"count": "Prop 2.3 (paper)", "bits": info.biod_information(**run)},
            {"count": "intern notes", "bits": notes_formula(**run)},
            {"count": "held by the model (R × P)", "bits": R * params}]
    for row in rows:
        row["per person"], row["/ (2 bits × P)"] = row["bits"] / N, row["bits"] / (2 * params)
    return tables.table(rows, formats={"bits": ",.0f", "per person": ".1f", "/ (2 bits × P)": ".2f"},
                        index="count")


def growth_table(N: int, shape: Mapping[str, int] = RUNNING_EXAMPLE, D: tuple[int, int] = (10, 10_000)) -> Table:
    """bioD(N, **shape) at two value set sizes D by Prop 2.3 and by the intern notes, and the increase."""
    low, high = (dict(shape, N=N, D=d) for d in D)
    rows = [{"formula": label, f"D = {D[0]:,}": f(**low), f"D = {D[1]:,}": f(**high), "increase": f(**high) - f(**low)}
            for label, f in (("Prop 2.3 (paper)", info.biod_information), ("intern notes", notes_formula))]
    def bits(x: float) -> str:
        return f"{x:,.1f}" if abs(x) < 1000 else f"{x:,.0f}"

    return tables.table(rows, formats={f"D = {D[0]:,}": ",.0f", f"D = {D[1]:,}": ",.0f", "increase": bits},
                        index="formula")


def versus(configs: Sequence[Mapping[str, int]], per: float = 1.0) -> dict[str, list[float]]:
    """Prop 2.3, the intern notes and the name term alone for each bioD config, divided by ``per``."""
    return {"paper (Prop 2.3)": [info.biod_information(**z) / per for z in configs],
            "intern notes": [notes_formula(**z) / per for z in configs],
            "name term alone": [info.biod_information_terms(**z)["name"] / per for z in configs]}


def _shape_title(shape: Mapping[str, int], free: str) -> str:
    knobs = ", ".join(k if k == free else f"{k}={v}" for k, v in shape.items())
    return f"bioD(N, {knobs})"


def figure_paper_vs_notes(N: int, people: Sequence[int], shape: Mapping[str, int] = RUNNING_EXAMPLE,
                          d_grid: Sequence[int] = D_GRID) -> go.Figure:
    """Two panels: total bits against N (``people``, D of ``shape``) and bits per person against D
    (``d_grid``, at N), by Prop 2.3, by the intern notes and for the name term alone."""
    by_n = versus([dict(shape, N=n) for n in people])
    by_d = versus([dict(shape, N=N, D=d) for d in d_grid], per=N)
    return plots.line_panels(
        [(f"people N (D = {shape['D']:,})", list(people), by_n), (f"value-set size D (N = {N:,})", list(d_grid), by_d)],
        title=f"{_shape_title(shape, 'D')}: paper vs notes", y_title=["bits", "bits per person"],
        log_x=True, log_y=[True, False])


# --------------------------------------------------------------------------------------------------
# The explorer
# --------------------------------------------------------------------------------------------------

Grid = list[list[float]]


def explorer_views(people: Sequence[int], D_steps: Sequence[int],
                   shape: Mapping[str, int] = RUNNING_EXAMPLE) -> dict[str, tuple[str, dict[str, Grid]]]:
    """The slider explorer's views of bioD(N, **shape, D): ``{view: (y title, {trace: grid})}``, a grid
    holding one row per slider value D and one value per N. Views: total bits and bits per person (all
    terms and each term), and the parameters needed at 2 and at 1 bit per parameter."""
    terms = {(d, n): info.biod_information_terms(**dict(shape, N=n, D=d)) for d in D_steps for n in people}

    def grid(f: Callable[[Mapping[str, float], int], float]) -> Grid:
        return [[f(terms[d, n], n) for n in people] for d in D_steps]

    def all_terms(per_person: bool) -> dict[str, Grid]:
        def scale(n: int) -> int:
            return n if per_person else 1

        out = {"all": grid(lambda t, n: sum(t.values()) / scale(n))}
        for key, label in _TERM_LABELS.items():
            out[label] = grid(lambda t, n, key=key: t[key] / scale(n))
        return out

    return {
        "total bits": ("bits", all_terms(per_person=False)),
        "bits per person": ("bits per person", all_terms(per_person=True)),
        "parameters needed": ("parameters", {"at 2 bits/param": grid(lambda t, n: sum(t.values()) / 2),
                                             "at 1 bit/param": grid(lambda t, n: sum(t.values()))}),
    }


def closest_index(values: Sequence[float], target: float) -> int:
    """Index of the value nearest to ``target`` on a log scale (the explorer's starting slider step)."""
    return int(np.argmin([abs(math.log(v / target)) for v in values]))


def figure_explorer(sizes: Sizes, shape: Mapping[str, int] = RUNNING_EXAMPLE) -> go.Figure:
    """The offline explorer: bioD(N, **shape) over ``sizes.people_grid()``, a slider over
    ``sizes.explorer_D`` (starting nearest to the shape's D) and a menu of :func:`explorer_views`."""
    people, D_steps = sizes.people_grid(), list(sizes.explorer_D)
    return plots.slider_explorer(
        people, explorer_views(people, D_steps, shape), D_steps, slider_label="D", x_title="people N",
        title=_shape_title(shape, "D"), log_x=True, log_y=True, active=closest_index(D_steps, shape["D"]))


def calculator(N: int, K: int, C: int, D: int, L: int, T: int, N0: int = info.N0_BIOS) -> dict[str, Any]:
    """What the chapter's live calculator shows for bioD(N, K, C, D, L, T): the information (both forms),
    per person, the parameters needed at 2 and 1 bit/param, and the intern notes' number."""
    bits = info.biod_information(N, K, C, D, L, T, N0)
    try:
        notes: float | str = notes_formula(N, K, C, D, L, T, N0)
    except ValueError:
        notes = "undefined (L > T)"
    return {"information (exact), bits": bits,
            "approximate form, bits": info.biod_information(N, K, C, D, L, T, N0, exact=False),
            "bits per person": bits / N,
            "parameters needed at 2 bits/param": bits / 2,
            "parameters needed at 1 bit/param": bits,
            "intern notes' formula, bits": notes}


# --------------------------------------------------------------------------------------------------
# From losses to bits learned
# --------------------------------------------------------------------------------------------------


def bits_table(losses: Mapping[str, Sequence[float]], learned: Mapping[str, info.BitsLearned],
               content: float | None = None) -> Table:
    """One row per hand-made model: its losses p1, p2 (, p3) in nats, the bits learned per term (clipped at
    0, Def 4.1 / 4.3) and in total, and, given the data's ``content``, the share of it (index: model)."""
    rows = []
    for name, ps in losses.items():
        row: dict[str, Any] = {"model": name, **{f"p{i + 1}": p for i, p in enumerate(ps)}}
        row.update({_TERM_LABELS[key]: bits for key, bits in learned[name].breakdown.items()})
        row["total"] = learned[name].bits
        if content is not None:
            row["share"] = learned[name].bits / content
        rows.append(row)
    formats: dict[str, str] = {key: ".2f" for key in rows[0] if key.startswith("p")} if rows else {}
    formats.update({label: ",.0f" for label in ("names", "values", "value sets", "total") if rows and label in rows[0]})
    if content is not None:
        formats["share"] = ".1%"
    return tables.table(rows, formats=formats, index="model")


# --------------------------------------------------------------------------------------------------
# The paper's numbers next to the lab's
# --------------------------------------------------------------------------------------------------


def claims(expect: Expect, quotes: Mapping[int, tuple[float, int]] = BIOS_QUOTES) -> list[dict[str, Any]]:
    """The rows of the chapter's ``labkit.tables.paper_vs_lab`` table: log2 S0, each quoted bioS total
    (the approximate form, within the quote's rounding; the exact form in the note), and the claims the
    chapter states but does not measure (lab None: "not run")."""
    rows: list[dict[str, Any]] = [
        {"claim": "log2 S0: bits of one bioS person", "paper": f"{PAPER_LOG2_S0:.2f}", "lab": info.LOG2_S0,
         "expect": expect.log2_S0, "fmt": ".3f", "note": "Def 4.3 of Part 3.3"}]
    for N, (quote, digits) in quotes.items():
        low, high = quote_range(quote, digits)
        exact = info.bios_information(N) / 1e6
        rows.append({"claim": f"bioS(N = {N:,}), million bits", "paper": quote / 1e6,
                     "lab": info.bios_information(N, exact=False) / 1e6, "expect": (low / 1e6, high / 1e6),
                     "fmt": ".4g", "note": f"approximate form (exact form: {exact:,.3f}, "
                     + ("✓)" if matches_quote(N, True, quotes) else "✗)")})
    rows.append({"claim": "QA on held-out people, single vs multi5 + permute",
                 "paper": " / ".join(f"{v:.1%}" for v in PAPER_EXTRACTION.values()), "lab": None,
                 "note": "needs pretraining and QA finetuning: not measured here"})
    rows.append({"claim": "bits stored per parameter (1000 exposures)", "paper": f"≈ {PAPER_BITS_PER_PARAM:g}",
                 "lab": None, "note": "measured in chapter 2; here only P ≈ bits / 2"})
    return rows
