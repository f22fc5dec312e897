"""The per-notebook time budget of a test run (``tests/conftest.py``), fed with made-up durations."""

from __future__ import annotations

from conftest import SMOKE_TEST, budget_table, budgets, notebook_times, over_budget

SMOKE = f"tests/test_notebooks.py::{SMOKE_TEST}"


def reports(stem: str, cells: list[float], smoke: float | None = None) -> list[tuple[str, str, str, float]]:
    """What a run reports for one notebook: nbval cell items (setup, call, teardown) and its smoke test."""
    found = []
    for i, seconds in enumerate(cells):
        cell = (f"notebooks/{stem}.ipynb", f"notebooks/{stem}.ipynb::Cell {i}")
        found += [(*cell, "setup", 0.5 if i == 0 else 0.0), (*cell, "call", seconds), (*cell, "teardown", 0.0)]
    if smoke is not None:
        test = ("tests/test_notebooks.py", f"{SMOKE}[{stem}]")
        found += [(*test, "setup", 0.1), (*test, "call", smoke), (*test, "teardown", 0.1)]
    return found


def test_quick_sums_every_phase_of_the_cells_and_smoke_is_the_call_phase():
    times = notebook_times([*reports("00_welcome", [10.0, 20.0], smoke=7.0), *reports("01_bits", [1.0]),
                            ("tests/test_cli.py", "tests/test_cli.py::test_parse_value[3-3]", "call", 99.0),
                            ("tests/test_notebooks.py", f"{SMOKE}[02_cap]", "setup", 30.0),  # not the run itself
                            ("../elsewhere/03_x.ipynb", "::Cell 0", "call", 2.0)])  # outside the root folder
    assert times == {"00_welcome": {"quick": 30.5, "smoke": 7.0}, "01_bits": {"quick": 1.5}, "03_x": {"quick": 2.0}}


def test_within_budget_passes():
    times = notebook_times([*reports("00_welcome", [74.0], smoke=14.9), *reports("12_appendix_ntk", [59.0])])
    assert over_budget(times) == []


def test_each_run_over_its_budget_fails_naming_the_notebook():
    times = notebook_times([*reports("00_welcome", [70.0, 10.0], smoke=15.5), *reports("01_bits", [5.0], smoke=1.0),
                            *reports("12_appendix_ntk", [61.0]), *reports("99_appendix_extra", [60.5])])
    assert over_budget(times) == ["00_welcome: quick 80.5 s > 75 s", "00_welcome: smoke 15.5 s > 15 s",
                                  "12_appendix_ntk: quick 61.5 s > 60 s", "99_appendix_extra: quick 61.0 s > 60 s"]


def test_appendix_notebooks_get_less_time():
    assert budgets("03_mls_vs_mac") == {"quick": 75.0, "smoke": 15.0}
    assert budgets("12_ntk")["quick"] == budgets("07_Appendix_probes")["quick"] == 60.0


def test_the_table_shows_both_runs_and_flags_what_is_over():
    table = budget_table({"00_welcome": {"quick": 80.0, "smoke": 3.0}, "01_bits": {"quick": 20.0}})
    assert table[0].split() == ["notebook", "quick", "s", "/", "budget", "smoke", "s", "/", "budget"]
    assert table[1].split() == ["00_welcome", "80.0", "/", "75!!", "3.0", "/", "15"]
    assert table[2].split() == ["01_bits", "20.0", "/", "75", "-", "/", "15"]
    assert "kernel start included" in table[-1]
