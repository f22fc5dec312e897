"""Exercises: every solution passes its checker, plausible wrong answers fail on a named case, stubs
say "not implemented yet" without raising, and the generated cells are valid notebook cells."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest
import torch

from labkit import exercises, info
from labkit.exercises import ch00, ch01, ch02, ch03, compare
from labkit.exercises.__main__ import main as exercises_main
from labkit.exercises.notebook import insert, setup_source

ROOT = Path(__file__).resolve().parents[1]
ALL = [ex for chapter in exercises.CHAPTERS for ex in exercises.exercises(chapter)]


@pytest.fixture(params=ALL, ids=lambda ex: ex.label)
def ex(request):
    return request.param


# --------------------------------------------------------------------------------------------------
# Every exercise: solution, stub, failing learner, metadata
# --------------------------------------------------------------------------------------------------


def _run(source: str, namespace: dict, name: str) -> None:
    exec(compile(source, name, "exec"), namespace)


def test_solution_cell_passes_when_run_after_the_section_imports(ex, capsys):
    namespace: dict = {}
    _run(setup_source([ex]), namespace, "setup")
    _run(ex.solution_source(), namespace, ex.label)  # the cell asserts that it passes
    assert re.fullmatch(r"✓ all \d+ cases agree\n", capsys.readouterr().out)


def test_solution_function_passes_its_checker(ex):
    result = ex.check(ex.solution)
    assert result and result.status == "passed" and result.case is None


def test_stub_cell_reports_not_implemented_and_does_not_raise(ex, capsys):
    namespace: dict = {}
    _run(ex.stub_source(), namespace, ex.label)  # a stub cell with its own imports stands alone
    out = capsys.readouterr().out
    assert "is not implemented yet" in out and ex.name in out
    result = namespace[ex.checker_name](namespace[ex.name])
    assert not result and result.status == "not implemented"


@pytest.mark.parametrize("stub_result", [None, Ellipsis])
def test_a_stub_returning_none_or_ellipsis_is_not_implemented(ex, stub_result):
    result = ex.check(lambda *args, **kwargs: stub_result)
    assert not result and result.status == "not implemented" and "not implemented yet" in result.message


def test_an_exception_in_the_learner_is_a_failing_case(ex):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    result = ex.check(broken)
    assert not result and result.status == "failed" and result.case == 1
    assert result.message.startswith(f"✗ case 1 of {result.n_cases}: {ex.name}(")
    assert result.message.endswith("raised ZeroDivisionError: division by zero")


def test_hidden_cases_are_seeded_and_several(ex):
    first, again = ex.hidden_cases(), ex.hidden_cases()
    assert len(first) >= 6
    assert [ex.call_text(c) for c in first] == [ex.call_text(c) for c in again]


def test_exercise_metadata(ex):
    assert 1 <= ex.difficulty <= 5 and 1 <= ex.importance <= 5 and ex.statement.strip() and ex.title
    assert re.fullmatch(r"ch\d\d-[a-z0-9-]+", ex.label)
    assert ex.checker_name == f"check_{ex.name}"
    module = __import__(ex.module, fromlist=[ex.checker_name])
    assert getattr(module, ex.checker_name).__name__ == ex.checker_name


def test_cell_sources_fit_the_website_code_column(ex):
    for source in (ex.stub_source(), ex.solution_source()):
        assert max(map(len, source.splitlines())) <= 88, "the site's code cells show about 88 characters"


def test_every_chapter_has_two_to_four_exercises():
    for chapter in exercises.CHAPTERS:
        assert 2 <= len(exercises.exercises(chapter)) <= 4
    assert len({ex.label for ex in ALL}) == len(ALL)
    with pytest.raises(ValueError, match=r"chapter=9 is not valid; allowed: 0, 1, 2, 3"):
        exercises.exercises(9)
    with pytest.raises(ValueError, match="exercise_id='nope' is not valid for chapter 1; allowed: person-bits"):
        exercises.exercise(1, "nope")


# --------------------------------------------------------------------------------------------------
# Plausible wrong answers are rejected, and the message names the case
# --------------------------------------------------------------------------------------------------


def _rejected(check, fn) -> str:
    result = check.__wrapped__(fn) if hasattr(check, "__wrapped__") else check(fn)
    assert not result and result.status == "failed", result.message
    assert re.match(r"✗ case \d+ of \d+: \w+\(", result.message), result.message
    return result.message


def test_ch00_wrong_answers(capsys):
    _rejected(ch00.check_library_bits, lambda N, S, V: N * S * math.log(V))  # nats, not bits
    _rejected(ch00.check_library_bits, lambda N, S, V: N * math.log2(V))  # forgot the S tokens
    message = _rejected(ch00.check_training_steps, lambda N, B, E: N // B * E)  # floor: drops the last batch
    assert "expected" in message and "(exactly)" in message
    _rejected(ch00.check_training_steps, lambda N, B, E: math.ceil(N * E / B))  # ceil of the total
    _rejected(ch00.check_bits_memorized,  # no clipping: items worse than chance subtract bits
              lambda item_loss, S, V: (S * math.log2(V) - item_loss / math.log(2)).sum().item())
    _rejected(ch00.check_bits_memorized,  # nats taken for bits
              lambda item_loss, S, V: (S * math.log2(V) - item_loss).clamp(min=0).sum().item())


def _biod_without_value_sets(N, K, C, D, L, T, N0):
    return info.log2_binom(N0, N) + N * K * C * math.log2(D)


def _biod_approximate(N, K, C, D, L, T, N0):
    return info.biod_information(N, K, C, D, L, T, N0, exact=False)


def _biod_intern_notes(N, K, C, D, L, T, N0):
    return info.log2_binom(N0, N) + N * K * math.log2(C) + K * math.log2(D) + K * info.log2_binom(T, L)


def test_ch01_wrong_answers(capsys):
    _rejected(ch01.check_person_bits, lambda options: sum(math.log(n) for n in options.values()))
    _rejected(ch01.check_person_bits, lambda options: math.log2(sum(options.values())))
    message = _rejected(ch01.check_biod_information, _biod_without_value_sets)
    assert "case 1 of" in message and "N=1000, K=4, C=2, D=100, L=3, T=100, N0=160000000" in message
    assert "relative 1e-06" in message
    _rejected(ch01.check_biod_information, _biod_approximate)
    _rejected(ch01.check_biod_information, _biod_intern_notes)
    _rejected(ch01.check_biod_information, lambda **kw: info.biod_information(**kw) * math.log(2))  # nats
    message = _rejected(ch01.check_log2_binomial,  # the textbook lgamma form loses everything for huge n
                        lambda n, k: (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2))
    assert "n=1e+30, k=100" in message


def _ratio_clipping_the_total(N, K, C, D, L, T, N0, p1, p2, p3, P):
    unclipped = info.biod_bits(N, K, C, D, L, T, p1, p2, p3, N0).unclipped
    return max(0.0, sum(unclipped.values())) / P


def test_ch02_wrong_answers(capsys):
    _rejected(ch02.check_capacity_ratio, _ratio_clipping_the_total)  # a bad name term cancels learned values
    _rejected(ch02.check_capacity_ratio,  # nats taken for bits
              lambda N, K, C, D, L, T, N0, p1, p2, p3, P: info.biod_bits(
                  N, K, C, D, L, T, p1 * math.log(2), p2 * math.log(2), p3 * math.log(2), N0).bits / P)
    _rejected(ch02.check_capacity_ratio,  # forgot the value sets
              lambda N, K, C, D, L, T, N0, p1, p2, p3, P: (lambda b: (b["name"] + b["values"]) / P)(
                  info.biod_bits(N, K, C, D, L, T, p1, p2, p3, N0).breakdown))
    _rejected(ch02.check_people_needed, lambda **kw: ch02.people_needed(**kw) - 1)  # largest N below the target

    def approximate(P, K, D, N0, factor):
        n = 1
        while info.biod_information(n, K, 1, D, 1, D, N0, exact=False) < factor * 2 * P:
            n += 1
        return n

    _rejected(ch02.check_people_needed, approximate)

    def best_single_run(rows):
        best = {}
        for row in rows:
            if row["exposures"] not in best or row["R"] > best[row["exposures"]]["R"]:
                best[row["exposures"]] = {"d_model": row["d_model"], "R": row["R"]}
        return best

    message = _rejected(ch02.check_peak_ratio, best_single_run)
    assert "case 1 of" in message and "at [100]['R'] got 0.6, expected 0.4" in message

    def keyed_by_string(rows):
        return {str(k): v for k, v in ch02.peak_ratio(rows).items()}

    assert "missing keys" in _rejected(ch02.check_peak_ratio, keyed_by_string)


def test_ch03_wrong_answers(capsys):
    def partial_credit(predictions, targets, V):  # counts correct tokens as fractions of items
        items = (predictions == targets).float().mean(dim=1).sum().item()
        return {"items": items, "bits": items * targets.shape[1] * math.log2(V)}

    message = _rejected(ch03.check_mac_bits, partial_credit)
    assert "case 2 of" in message and "at ['items']" in message  # every item has one wrong token

    def any_token(predictions, targets, V):
        items = int((predictions == targets).any(dim=1).sum())
        return {"items": items, "bits": items * targets.shape[1] * math.log2(V)}

    _rejected(ch03.check_mac_bits, any_token)

    def natural_log(predictions, targets, V):
        items = int((predictions == targets).all(dim=1).sum())
        return {"items": items, "bits": items * targets.shape[1] * math.log(V)}

    assert "at ['bits']" in _rejected(ch03.check_mac_bits, natural_log)

    def linear_scan(memorizes, start, max_size):
        n = 0
        while n < max_size and memorizes(n + 1):
            n += 1
        return n

    message = _rejected(ch03.check_mls_search, linear_scan)  # right answer, far too many trainings
    assert "trainings'] got False, expected True" in message and "<a model that memorizes up to 300 items>" in message

    def first_failure(memorizes, start, max_size):
        return ch03.mls_search(memorizes, start, max_size) + 1

    _rejected(ch03.check_mls_search, first_failure)


# --------------------------------------------------------------------------------------------------
# The checking framework
# --------------------------------------------------------------------------------------------------


def test_compare_numbers_tensors_dicts_and_sequences():
    assert compare(1.0 + 1e-9, 1.0) is None and compare(1.1, 1.0).startswith("returned 1.1, expected 1")
    assert compare(3, 3) is None and compare(3.0, 3) is None and "exactly" in compare(4, 3)
    assert compare(float("nan"), float("nan")) is None and compare(1e-12, 0.0) is None
    assert "expected a number" in compare("3", 3.0) and "expected a number" in compare(True, 1.0)
    assert compare(torch.tensor(2.0), 2.0) is None  # a 0-d tensor is a number
    assert compare(torch.ones(2, 3), torch.ones(2, 3).numpy()) is None
    assert "returned shape (3,), expected shape (2, 3)" in compare(torch.ones(3), torch.ones(2, 3))
    bad = torch.ones(2, 3)
    bad[1, 2] = 5
    assert "at [1, 2] got 5, expected 1 (1 of 6 elements differ" in compare(bad, torch.ones(2, 3))
    assert compare({"a": 1, "b": [1.0, 2.0]}, {"a": 1, "b": (1.0, 2.0)}) is None
    assert "at ['b'][1] got 3, expected 2" in compare({"a": 1, "b": [1.0, 3.0]}, {"a": 1, "b": [1.0, 2.0]})
    assert "missing keys ['b']" in compare({"a": 1}, {"a": 1, "b": 2})
    assert "returned a sequence of 1, expected 2 items" in compare([1], [1, 2])
    assert compare(True, True) is None and "expected False" in compare(True, False)


def test_tolerances_are_relative_and_absolute():
    assert compare(100.00001, 100.0, rtol=1e-6, atol=0) is None
    assert compare(100.001, 100.0, rtol=1e-6, atol=0) is not None
    assert compare(0.001, 0.0, rtol=1e-6, atol=0.01) is None


def test_the_checker_prints_and_the_result_adds_nothing_when_displayed(capsys):
    result = ch00.check_library_bits(ch00.library_bits)
    assert capsys.readouterr().out.startswith("✓ all")
    assert result._ipython_display_() is None
    assert "not implemented" in ch00.LIBRARY_BITS.check(lambda N, S, V: None).message
    assert "needs the function itself" in ch00.LIBRARY_BITS.check(3).message


def test_a_learner_that_changes_its_inputs_does_not_spoil_the_next_case(capsys):
    seen = defaultdict(int)

    def destructive(item_loss, S, V):
        seen["calls"] += 1
        out = ch00.bits_memorized(item_loss, S, V)
        item_loss.zero_()
        return out

    assert ch00.check_bits_memorized(destructive) and seen["calls"] == len(ch00.BITS_MEMORIZED.hidden_cases())


def test_a_case_that_returns_none_after_the_first_is_a_failure():
    calls = []

    def partly(N, S, V):
        calls.append(N)
        return ch00.library_bits(N, S, V) if len(calls) == 1 else None

    result = ch00.LIBRARY_BITS.check(partly)
    assert result.status == "failed" and result.case == 2 and "returned None: not implemented for this case" in \
        result.message


def test_marks_render_arena_style():
    assert exercises.marks(2, 4) == "Difficulty: 🔴🔴⚪⚪⚪  Importance: 🔵🔵🔵🔵⚪"
    with pytest.raises(ValueError, match="difficulty=6 is not valid"):
        exercises.marks(6, 1)


# --------------------------------------------------------------------------------------------------
# Cells and the insert command
# --------------------------------------------------------------------------------------------------


def test_cells_are_the_exercise_the_stub_and_a_gated_dropdown_solution():
    statement, stub, start, solution, end = exercises.cells(1, "biod-information")
    assert stub.source.startswith("import math\n\nfrom labkit.exercises.ch01 import check_biod_information\n"
                                  "from labkit.info import log2_binom\n\n\ndef biod_information(")
    assert statement.cell_type == "markdown" and statement.source.startswith(
        "````{exercise} The information in bioD, Prop 2.3\n:label: ch01-biod-information\n")
    assert "🔴🔴🔴⚪⚪" in statement.source and "🔵🔵🔵🔵🔵" in statement.source and statement.source.endswith("````")
    assert stub.cell_type == "code" and stub.source.endswith("check_biod_information(biod_information)")
    assert "raise NotImplementedError" in stub.source
    assert start.source == "```{solution-start} ch01-biod-information\n:class: dropdown\n```"
    assert solution.metadata == {"jupyter": {"source_hidden": True}, "tags": ["solution"]}
    assert solution.source.endswith("assert check_biod_information(biod_information)")
    assert end.source == "```{solution-end}\n```"
    assert [c.id for c in exercises.cells(1, "biod-information")] == [c.id for c in (statement, stub, start, solution,
                                                                                     end)]  # deterministic ids
    heading, setup, *rest = exercises.section(1)
    assert heading.source.startswith("## Exercises") and setup.source == (
        "import math\nfrom collections.abc import Mapping\n\n"
        "from labkit.exercises.ch01 import (\n    check_biod_information,\n    check_log2_binomial,\n"
        "    check_person_bits,\n)\n"
        "from labkit.info import log2_binom")
    assert len(rest) == 5 * len(exercises.exercises(1)) and "import" not in rest[1].source.split("def ")[0]
    nbformat.validate(nbformat.v4.new_notebook(cells=exercises.section(1)))


def test_a_whole_section_runs_top_to_bottom_and_is_lint_clean(tmp_path, capsys):
    for chapter in exercises.CHAPTERS:
        namespace: dict = {}
        for cell in exercises.section(chapter):
            if cell.cell_type == "code":
                _run(cell.source, namespace, cell.id)
        out = capsys.readouterr().out
        assert out.count("not implemented yet") == out.count("✓ all") == len(exercises.exercises(chapter))
        nb = nbformat.v4.new_notebook(cells=exercises.section(chapter))
        nbformat.write(nb, tmp_path / f"{chapter:02d}_section.ipynb")
    # the project's lint settings for notebooks (pyproject.toml), on the generated cells
    ignores = [f"--extend-per-file-ignores=*.ipynb:{code}" for code in ("E402", "E501", "F401")]
    config = ["--config", str(ROOT / "pyproject.toml"), *ignores]
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *config, str(tmp_path)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def without_exercises(source: Path, copy: Path) -> str | None:
    """Copy a committed chapter without its exercise section; return the heading that followed it."""
    nb = nbformat.read(source, as_version=4)
    start = next((i for i, c in enumerate(nb.cells) if c.source.startswith("## Exercises")), None)
    following = None
    if start is not None:
        end = next(i for i in range(start + 1, len(nb.cells)) if nb.cells[i].source.startswith(("## ", "# ")))
        following = nb.cells[end].source.splitlines()[0]
        nb.cells = nb.cells[:start] + nb.cells[end:]
    nbformat.write(nb, copy)
    return following


@pytest.mark.parametrize("name", ["01_knowledge_as_bits", "03_mls_vs_mac"])
def test_insert_puts_the_section_before_the_summary_and_leaves_other_cells_alone(tmp_path, name, capsys):
    source = ROOT / "notebooks" / f"{name}.ipynb"
    copy = tmp_path / source.name
    without_exercises(source, copy)
    before = nbformat.read(copy, as_version=4)
    report = insert(copy)
    assert "inserted" in report and "Summary" in report
    after = nbformat.read(copy, as_version=4)
    section = exercises.section(int(name[:2]))
    start = next(i for i, c in enumerate(after.cells) if c.source.startswith("## Exercises"))
    assert [c.source for c in after.cells[start:start + len(section)]] == [c.source for c in section]
    assert after.cells[start + len(section)].source.startswith("## Summary")
    rest = after.cells[:start] + after.cells[start + len(section):]
    old = before.cells
    # the same cells with the same outputs; only a cell holding '## Summary' mid-way may have been split in two
    assert [c.get("outputs") for c in rest if c.cell_type == "code"] == [c.get("outputs") for c in old
                                                                          if c.cell_type == "code"]
    assert "\n".join(c.source for c in rest).replace("\n\n", "\n") == "\n".join(c.source for c in old).replace(
        "\n\n", "\n")
    # after a papermill run (which adds metadata to every cell) a second insert finds the section up to date;
    # a changed one is refreshed in place, and unchanged cells keep their outputs
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
        cell.metadata["papermill"] = {"status": "completed"}
    nbformat.write(nb, copy)
    assert "up to date" in insert(copy)
    nb = nbformat.read(copy, as_version=4)
    solution = next(c for c in nb.cells if c.get("id") == f"ch{name[:2]}-{exercises.exercises(int(name[:2]))[0].id}"
                    "-solution")
    solution.outputs = [nbformat.v4.new_output("stream", name="stdout", text="✓ all 8 cases agree\n")]
    nb.cells[start + 2].source = "# an old statement, starting like a heading"
    nb.cells[start + 3].source = "# an old stub"
    nbformat.write(nb, copy)
    assert "replacing cells" in insert(copy)
    refreshed = nbformat.read(copy, as_version=4)
    assert [c.source for c in refreshed.cells[start:start + 4]] == [c.source for c in section[:4]]
    kept = next(c for c in refreshed.cells if c.get("id") == solution.id)
    assert kept.outputs == solution.outputs
    assert len(refreshed.cells) == len(after.cells)


def test_insert_command_line(tmp_path, capsys):
    copy = tmp_path / "02_capacity_scaling_law.ipynb"
    without_exercises(ROOT / "notebooks" / copy.name, copy)
    assert exercises_main(["insert", "--check", str(copy)]) == 1  # not there yet
    assert exercises_main(["insert", str(copy)]) == 0
    assert exercises_main(["insert", "--check", str(copy)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert exercises_main(["list"]) == 0 and "ch03-mls-search" in capsys.readouterr().out
    welcome = tmp_path / "00_welcome.ipynb"
    heading = without_exercises(ROOT / "notebooks" / welcome.name, welcome) or "## Rerun it your way"
    assert exercises_main(["insert", "--before", heading, str(welcome)]) == 0
    cells = nbformat.read(welcome, as_version=4).cells
    start = next(i for i, c in enumerate(cells) if c.source.startswith("## Exercises"))
    after = start + len(exercises.section(0))
    assert cells[after].source.startswith(heading)
    with pytest.raises(ValueError, match="a chapter named NN_topic.ipynb"):
        insert(tmp_path / "welcome.ipynb")
