"""Shared test helpers, and the per-notebook time budget of a test run.

Helpers: notebooks written on the fly (``write_notebook``, the ``make_notebook`` fixture), the small
datasets and models several test files train (``library``, ``biographies``, ``tiny_model``), per-item
loss tensors (``constant_losses``) and the check of the lab's one-line parameter errors
(``raises_invalid``). Test modules import the plain functions with ``from conftest import ...``; that
works because this is the only ``conftest.py`` of the test run (a second one, e.g. in the repository
root, would make the name ambiguous: then move the helpers to a module of their own).

Time budget: ``make test`` runs ``pytest tests notebooks --nbval-lax``; nbval re-executes every chapter
with its committed (``quick``) parameters and ``tests/test_notebooks.py`` runs each with the ``smoke``
profile. The lab promises chapters that run in about a minute on a 2-core CPU, so the session prints a
table of both times per notebook and fails, naming the notebook, when one is over its budget. The hooks
live in a plugin object registered from here rather than in conftest hooks, because pytest calls a
conftest's per-test hooks only for tests below its folder, and nbval's items are in ``notebooks/``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
import pytest
import torch
from hypothesis import settings

if TYPE_CHECKING:  # imported where used, so a broken labkit.model fails its own tests, not every test
    from labkit.data.bios import BioS
    from labkit.data.uniform import RandomSequences
    from labkit.model import Transformer

# One torch thread for the whole suite: the tiny models here are memory bound, and on the 2-core CI
# machine a second thread competes with notebook kernels and the site build (up to 10x slower).
torch.set_num_threads(1)

# No per-example deadline for property tests: on a shared 2-core machine the time of one example says
# more about the other jobs than about the code, and a flaky deadline hides real failures.
settings.register_profile("lab", deadline=None)
settings.load_profile("lab")

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------------
# Notebooks written on the fly
# --------------------------------------------------------------------------------------------------


def write_notebook(path: Path, parameters: str, body: str) -> Path:
    """A two-cell notebook: a cell tagged ``parameters`` and a body cell."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def make_notebook(tmp_path):
    """``make_notebook(name, parameters, body)``: a notebook in ``tmp_path`` named like a chapter."""
    def make(name: str = "00_welcome.ipynb", parameters: str = 'profile = "quick"\nseed = 0\nlr = 0.5',
             body: str = "print(profile, seed)") -> Path:
        return write_notebook(tmp_path / name, parameters, body)

    return make


# --------------------------------------------------------------------------------------------------
# Small data, models and losses
# --------------------------------------------------------------------------------------------------


def library(n: int, seed: int = 0) -> RandomSequences:
    """n random key → value items: 3 value tokens over 16 symbols (12 bits per item)."""
    from labkit.data.uniform import RandomSequences

    return RandomSequences(n, S=3, V=16, seed=seed)


@functools.cache
def biographies(n: int = 20) -> BioS:
    """bioS in fresh mode: each exposure a new rendering, records of different lengths (padded)."""
    from labkit.data.bios import BioS

    return BioS(n, seed=0, mode="fresh")


def tiny_model(data, seed: int = 0, **overrides) -> Transformer:
    """A 2-layer GPT of width 32 (``overrides`` change any ``tiny`` knob) sized for ``data``'s vocabulary."""
    from labkit.model import Transformer, tiny

    return Transformer(tiny(data.vocab_size, max_len=80, **{"d_model": 32, **overrides}), seed=seed)


def constant_losses(n: int, value: float) -> torch.Tensor:
    """n per-item losses all equal to ``value``, in float64 as labkit.measure returns them.

    float64 matters: an oracle's name loss ln N rounded to float32 is off by 1e-7 nats, which times
    N people is visible in bits learned compared at rel=1e-12.
    """
    return torch.full((n,), float(value), dtype=torch.float64)


def raises_invalid(message: str) -> AbstractContextManager:
    """``pytest.raises(ValueError)`` whose message contains ``message`` literally (no regex escaping)."""
    return pytest.raises(ValueError, match=re.escape(message))


# --------------------------------------------------------------------------------------------------
# Per-notebook time budget
# --------------------------------------------------------------------------------------------------

QUICK_BUDGET_S = 75.0  # nbval run of a chapter with its committed quick parameters
APPENDIX_QUICK_BUDGET_S = 60.0  # an appendix is a side trip: it gets less than a chapter
SMOKE_BUDGET_S = 15.0  # papermill run with the smoke profile, kernel start included
SMOKE_TEST = "test_notebook_runs_with_smoke_profile_and_another_seed"
_SMOKE_ID = re.compile(rf"::{SMOKE_TEST}\[(?P<stem>[^\]]+)\]$")


def is_appendix(stem: str) -> bool:
    """Appendix notebooks: "appendix" in the name, or chapter 12."""
    return "appendix" in stem.lower() or stem.startswith("12_")


def budgets(stem: str) -> dict[str, float]:
    """Seconds allowed to notebook ``stem`` per run: ``{"quick": ..., "smoke": ...}``."""
    return {"quick": APPENDIX_QUICK_BUDGET_S if is_appendix(stem) else QUICK_BUDGET_S, "smoke": SMOKE_BUDGET_S}


def notebook_times(reports: Iterable[tuple[str, str, str, float]]) -> dict[str, dict[str, float]]:
    """``{stem: {"quick": s, "smoke": s}}`` from the ``(path, nodeid, phase, seconds)`` of a run's test reports.

    ``path`` is the file a test item comes from (``report.location[0]``: nbval's node ids of notebooks
    outside the root folder lack it). quick: the sum over every phase (setup, call, teardown) of a
    notebook's nbval cell items, i.e. its whole re-execution, kernel start included. smoke: the call phase
    of the smoke test of that notebook (papermill starts its own kernel inside the call). A notebook
    missing from a run has no entry.
    """
    times: dict[str, dict[str, float]] = {}
    for path, nodeid, phase, seconds in reports:
        if path.endswith(".ipynb"):
            entry = times.setdefault(Path(path).stem, {})
            entry["quick"] = entry.get("quick", 0.0) + seconds
        elif phase == "call" and (match := _SMOKE_ID.search(nodeid)):
            times.setdefault(match["stem"], {})["smoke"] = seconds
    return times


def over_budget(times: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One line per notebook and run over its budget, e.g. ``"00_welcome: quick 80.2 s > 75 s"``; [] if none."""
    lines = []
    for stem in sorted(times):
        allowed = budgets(stem)
        for run, seconds in sorted(times[stem].items()):
            if seconds > allowed[run]:
                lines.append(f"{stem}: {run} {seconds:.1f} s > {allowed[run]:g} s")
    return lines


def budget_table(times: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The report printed at the end of a run: each notebook's times against its budgets."""
    def cell(stem: str, run: str) -> str:
        seconds = times[stem].get(run)
        if seconds is None:
            return f"{'-':>8} / {budgets(stem)[run]:3g}  "
        flag = "!!" if seconds > budgets(stem)[run] else "  "
        return f"{seconds:8.1f} / {budgets(stem)[run]:3g}{flag}"

    width = max(len("notebook"), *(len(stem) for stem in times))
    lines = [f"{'notebook':<{width}}  {'quick s / budget':>16}  {'smoke s / budget':>16}",
             *(f"{stem:<{width}}  {cell(stem, 'quick'):>16}  {cell(stem, 'smoke'):>16}" for stem in sorted(times)),
             "quick: nbval re-execution, all cells, kernel start included; smoke: papermill run with the smoke "
             "profile, kernel start included; !! = over budget"]
    return lines


class NotebookBudget:
    """Records every test report; at the end fails the session if a notebook ran over its budget."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, str, str, float]] = []
        self.failures: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.append((report.location[0], report.nodeid, report.when, report.duration))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.failures = over_budget(notebook_times(self.reports))
        if self.failures and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        times = notebook_times(self.reports)
        if not times:
            return
        terminalreporter.section("notebook time budget")
        for line in budget_table(times):
            terminalreporter.write_line(line)
        for line in self.failures:
            terminalreporter.write_line(f"OVER BUDGET {line}", red=True, bold=True)


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("lab-notebook-budget"):
        config.pluginmanager.register(NotebookBudget(), "lab-notebook-budget")
