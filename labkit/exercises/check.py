"""Run a learner's function against a reference on hidden cases, and say plainly what happened.

Why a framework rather than ``assert`` cells: an intern who gets a number wrong needs to know *which*
input broke and by how much, an unfinished stub must not stop a papermill run or the book build, and
a bug that raises inside the learner's code is that case's failure, not a traceback that hides the
other cases. Every chapter's checkers (``labkit.exercises.chNN``) are built on :class:`Exercise`.

Values are compared structurally: numbers within a relative and an absolute tolerance (integers
exactly), tensors and arrays element-wise (same shape), mappings key by key, sequences item by item.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import random
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CheckResult", "Exercise", "compare", "describe", "import_block", "mark_bars", "marks"]

#: One mark per level, ARENA style: filled for the level, hollow for the rest.
_DIFFICULTY, _IMPORTANCE, _EMPTY = "🔴", "🔵", "⚪"
_MAX_MARK = 5


def mark_bars(difficulty: int, importance: int) -> tuple[str, str]:
    """The two bars of marks, e.g. ``("🔴🔴⚪⚪⚪", "🔵🔵🔵🔵⚪")``, for levels 1-5."""
    bars = []
    for name, level, mark in (("difficulty", difficulty, _DIFFICULTY), ("importance", importance, _IMPORTANCE)):
        if not (isinstance(level, int) and 1 <= level <= _MAX_MARK):
            raise ValueError(f"{name}={level!r} is not valid; allowed: an integer 1 <= {name} <= {_MAX_MARK}")
        bars.append(mark * level + _EMPTY * (_MAX_MARK - level))
    return bars[0], bars[1]


def marks(difficulty: int, importance: int) -> str:
    """``Difficulty: 🔴🔴⚪⚪⚪  Importance: 🔵🔵🔵🔵⚪`` for levels 1-5 (ARENA's marks)."""
    hard, useful = mark_bars(difficulty, importance)
    return f"Difficulty: {hard}  Importance: {useful}"


# --------------------------------------------------------------------------------------------------
# Describing and comparing values
# --------------------------------------------------------------------------------------------------


def _is_tensor(value: object) -> bool:
    # duck-typed so that this module does not import torch (a checker of plain floats stays fast)
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _as_array(value: object) -> np.ndarray | None:
    """A tensor, array or (nested) list as an ndarray; None for anything else."""
    if _is_tensor(value):
        return value.detach().cpu().numpy()  # type: ignore[attr-defined]
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list | tuple):
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):
            return None
        return array if array.dtype != object else None
    return None


def _scalar(value: object) -> object:
    """Numpy scalars and one-element tensors/arrays as plain Python numbers; anything else unchanged."""
    if isinstance(value, np.generic):
        return value.item()
    if (_is_tensor(value) or isinstance(value, np.ndarray)) and getattr(value, "ndim", None) == 0:
        return value.item()  # type: ignore[attr-defined]
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def describe(value: object, width: int = 60) -> str:
    """A short, readable rendering of an argument or result for messages (tensors by shape and dtype)."""
    value = _scalar(value)
    if isinstance(value, float):
        return f"{value:.10g}"
    if _is_tensor(value) or isinstance(value, np.ndarray):
        kind = "tensor" if _is_tensor(value) else "array"
        shape = tuple(value.shape)  # type: ignore[attr-defined]
        if math.prod(shape) <= 8:
            return f"{kind}({np.asarray(_as_array(value)).tolist()})"
        return f"{kind}(shape={shape}, dtype={str(value.dtype).removeprefix('torch.')})"  # type: ignore[attr-defined]
    if isinstance(value, Mapping):
        inner = ", ".join(f"{describe(k, 20)}: {describe(v, 20)}" for k, v in value.items())
        text = "{" + inner + "}"
    elif isinstance(value, list | tuple):
        opening, closing = "[]" if isinstance(value, list) else "()"
        shown = [describe(v, width if len(value) == 1 else 20) for v in value[:4]]
        more = f", ... ({len(value)} items)" if len(value) > 4 else ""
        text = opening + ", ".join(shown) + more + closing
    elif isinstance(value, int) and abs(value) >= 10**12:
        text = f"{value:.4g}" if abs(value) < 10**300 else f"<int of {len(str(abs(value)))} digits>"
    else:
        text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _tolerance(rtol: float, atol: float) -> str:
    parts = [f"relative {rtol:g}" if rtol else "", f"absolute {atol:g}" if atol else ""]
    return "tolerance " + (", ".join(p for p in parts if p) or "0: exact")


def _close(got: float, expected: float, rtol: float, atol: float) -> bool:
    if math.isnan(expected):
        return math.isnan(got)
    if math.isinf(expected) or math.isinf(got):
        return got == expected
    return math.isclose(got, expected, rel_tol=rtol, abs_tol=atol)


def _diff(got: object, expected: object, rtol: float, atol: float, path: str) -> tuple[str, str] | None:
    """None if ``got`` matches ``expected``; else (where, what differs) for the first difference."""
    got, expected = _scalar(got), _scalar(expected)
    if isinstance(expected, bool):
        if isinstance(got, bool | np.bool_) and bool(got) == expected:
            return None
        return path, f"got {describe(got)}, expected {expected}"
    if _is_number(expected):
        if not _is_number(got):
            return path, f"got {describe(got)} ({type(got).__name__}), expected a number ({describe(expected)})"
        if isinstance(expected, numbers.Integral):  # counts, steps, sizes: exactly
            ok = isinstance(got, numbers.Integral) and got == expected or (
                isinstance(got, float) and got.is_integer() and int(got) == expected)
            return None if ok else (path, f"got {describe(got)}, expected {describe(expected)} (exactly)")
        try:
            ok = _close(float(got), float(expected), rtol, atol)  # type: ignore[arg-type]
        except (TypeError, OverflowError):
            ok = False
        return None if ok else (path, f"got {describe(got)}, expected {describe(expected)} ({_tolerance(rtol, atol)})")
    if _is_tensor(expected) or isinstance(expected, np.ndarray):
        return _diff_array(got, _as_array(expected), rtol, atol, path)
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return path, f"got {describe(got)} ({type(got).__name__}), expected a dict with keys {list(expected)}"
        missing, extra = [k for k in expected if k not in got], [k for k in got if k not in expected]
        if missing or extra:
            what = "; ".join(p for p in (f"missing keys {missing}" if missing else "",
                                         f"unexpected keys {extra}" if extra else "") if p)
            return path, f"{what} (expected keys {list(expected)})"
        for key, value in expected.items():
            found = _diff(got[key], value, rtol, atol, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(expected, Sequence) and not isinstance(expected, str):
        if not isinstance(got, Sequence) or isinstance(got, str):
            return path, f"got {describe(got)} ({type(got).__name__}), expected a sequence of {len(expected)}"
        if len(got) != len(expected):
            return path, f"got a sequence of {len(got)}, expected {len(expected)} items"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            found = _diff(g, e, rtol, atol, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if got == expected else (path, f"got {describe(got)}, expected {describe(expected)}")


def _diff_array(got: object, expected: np.ndarray, rtol: float, atol: float, path: str) -> tuple[str, str] | None:
    array = _as_array(got)
    if array is None:
        return path, f"got {describe(got)} ({type(got).__name__}), expected a tensor of shape {expected.shape}"
    if array.shape != expected.shape:
        return path, f"got shape {tuple(array.shape)}, expected shape {tuple(expected.shape)}"
    if expected.dtype == bool or not np.issubdtype(expected.dtype, np.number):
        bad = array != expected
    else:
        try:
            bad = ~np.isclose(array.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol,
                              equal_nan=True)
        except (TypeError, ValueError):
            return path, f"got dtype {array.dtype}, expected numbers like {expected.dtype}"
    if not bad.any():
        return None
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"{path}[{', '.join(map(str, index))}]"
    return where, (f"got {describe(array[index])}, expected {describe(expected[index])}"
                   f" ({int(bad.sum())} of {bad.size} elements differ; {_tolerance(rtol, atol)})")


def compare(got: object, expected: object, rtol: float = 1e-6, atol: float = 1e-9) -> str | None:
    """None when ``got`` matches ``expected``; else one line saying what differs (and where, if nested)."""
    found = _diff(got, expected, rtol, atol, "")
    if found is None:
        return None
    where, what = found
    if not where:
        return f"returned {what.removeprefix('got ')}"
    return f"returned {describe(got, 100)}: at {where} {what}"


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """What a checker found: truthy only when every case agreed.

    ``status``: "passed", "failed" or "not implemented"; ``case``: the 1-based number of the first
    failing case (None otherwise). The message is printed when the check runs (so that ``assert
    check_x(fn)`` in a solution cell shows it too); displaying the result in a notebook adds nothing.
    """

    status: str
    message: str
    n_cases: int
    case: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self) -> None:
        """Nothing: the message was printed when the check ran, and a second copy would only repeat it."""


# --------------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------------

CaseMaker = Callable[[random.Random], Sequence[Mapping[str, Any]]]


class _NotImplemented(Exception):
    """The learner's function is still the stub (raised NotImplementedError, or returned None / ...)."""


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, raising :class:`_NotImplemented` where it returns None or ``...`` (what an unfilled stub returns)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        if out is None or out is Ellipsis:
            raise _NotImplemented(f"returned {out!r}")
        return out

    return call


def _signature(fn: Callable) -> str:
    return fn.__name__ + str(inspect.signature(fn))


def _source(fn: Callable) -> str:
    return textwrap.dedent(inspect.getsource(fn)).strip()


def import_block(lines: Sequence[str]) -> str:
    """Import statements merged and ordered as the linter's isort rules want them in a notebook cell.

    Sections: standard library, third party, then the lab (``labkit``), a blank line between them;
    in each, ``import x`` lines first, then ``from x import ...`` with the names merged and sorted
    (constants, classes, then the rest)."""
    plain: dict[int, set[str]] = {}
    names: dict[int, dict[str, set[str]]] = {}
    for line in lines:
        words = line.split()
        module = words[1]
        top = module.split(".")[0]
        section = 0 if top in sys.stdlib_module_names else 2 if top == "labkit" else 1
        if words[0] == "import":
            plain.setdefault(section, set()).add(module)
        else:
            names.setdefault(section, {}).setdefault(module, set()).update(
                n.strip() for n in line.split(" import ", 1)[1].split(","))

    def by_type(name: str) -> tuple[int, str]:
        return (0 if name.isupper() and len(name) > 1 else 1 if name[0].isupper() else 2), name

    blocks = []
    for section in sorted(set(plain) | set(names)):
        block = [f"import {m}" for m in sorted(plain.get(section, ()))]
        block += [_from_import(m, sorted(ns, key=by_type)) for m, ns in sorted(names.get(section, {}).items())]
        blocks.append("\n".join(block))
    return "\n\n".join(blocks)


#: notebook code lines fit the book's page (the notebook tests check 88 characters)
MAX_LINE = 88


def _from_import(module: str, names: Sequence[str]) -> str:
    """``from module import a, b``, wrapped in parentheses one name per line when it would not fit."""
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= MAX_LINE:
        return line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"


@dataclass(frozen=True)
class Exercise:
    """One exercise: its text, the learner's stub, the solution and the hidden cases that check it.

    ``solution`` is a real function of the chapter's exercise module: its source is what the solution
    cell shows, and the tests check that it passes, so the solution on the page cannot rot. The hidden
    cases are ``cases(random.Random(seed))`` (fixed edge cases plus seeded random ones); the expected
    values come from ``reference`` (the lab's own implementation, e.g. ``labkit.info``) at check time.
    ``evaluate(fn, case)`` turns a function and a case into the value compared (default ``fn(**case)``);
    ``imports``: the import statements the learner's code needs (e.g. ``"import math"``).
    """

    chapter: int
    id: str
    title: str
    difficulty: int
    importance: int
    statement: str
    solution: Callable[..., Any]
    reference: Callable[..., Any]
    cases: CaseMaker
    imports: tuple[str, ...] = ()
    hint: str = ""
    rtol: float = 1e-6
    atol: float = 1e-9
    seed: int = 0
    evaluate: Callable[[Callable[..., Any], Mapping[str, Any]], Any] | None = None
    _marks: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_marks", marks(self.difficulty, self.importance))

    # ---- names the cells use
    @property
    def name(self) -> str:
        """The function the learner writes (the solution's name)."""
        return self.solution.__name__

    @property
    def checker_name(self) -> str:
        return f"check_{self.name}"

    @property
    def label(self) -> str:
        """Sphinx label of the exercise (unique across the book): ``ch01-biod-information``."""
        return f"ch{self.chapter:02d}-{self.id}"

    @property
    def marks(self) -> str:
        return self._marks

    @property
    def module(self) -> str:
        return f"labkit.exercises.ch{self.chapter:02d}"

    # ---- sources of the cells
    def import_lines(self) -> list[str]:
        """The imports the learner's code and the checker call need (the checker's own import included)."""
        return [*self.imports, f"from {self.module} import {self.checker_name}"]

    def stub_source(self, imports: bool = True) -> str:
        """The learner's cell: the solution's signature and docstring, then the checker call.

        ``imports=False`` leaves the imports out, for a section whose first cell imports for every exercise."""
        source = _source(self.solution)
        head = source.split('"""', 2)
        if inspect.getdoc(self.solution) is None or len(head) < 3:
            raise ValueError(f"solution {self.name} needs a docstring: the stub shows it to the learner")
        hint = "".join(f"    # {line}\n" for line in self.hint.splitlines()) if self.hint else ""
        stub = '"""'.join(head[:2]) + f'"""\n{hint}    raise NotImplementedError  # your code here'
        prefix = import_block(self.import_lines()) + "\n\n\n" if imports else ""
        return f"{prefix}{stub}\n\n\n{self.checker_name}({self.name})\n"

    def solution_source(self) -> str:
        """The solution cell: the solution's source, then an ``assert`` that it passes (CI runs it).

        It has no imports: it comes right after the stub cell, whose imports it shares."""
        return f"{_source(self.solution)}\n\n\nassert {self.checker_name}({self.name})\n"

    # ---- checking
    def checker(self) -> Callable[[Callable[..., Any]], CheckResult]:
        """The chapter module's ``check_<name>(fn)``, with a docstring naming what it checks."""

        def check(fn: Callable[..., Any]) -> CheckResult:
            result = self.check(fn)
            print(result.message)
            return result

        check.__name__ = check.__qualname__ = self.checker_name
        check.__module__ = self.module
        check.__doc__ = (f"Check your ``{_signature(self.solution)}`` against the lab's reference on hidden "
                         f"cases; print what happened and return a result that is truthy on a pass.")
        return check

    def hidden_cases(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self.cases(random.Random(self.seed))]

    def _value(self, fn: Callable[..., Any], case: Mapping[str, Any]) -> Any:
        arguments = copy.deepcopy(dict(case))  # a function that changes its inputs cannot spoil the next call
        if self.evaluate is not None:
            return self.evaluate(fn, arguments)
        return fn(**arguments)

    def call_text(self, case: Mapping[str, Any]) -> str:
        return f"{self.name}({', '.join(f'{k}={describe(v, 60)}' for k, v in case.items())})"

    def check(self, fn: Callable[..., Any]) -> CheckResult:
        """Run ``fn`` on every hidden case (without printing); see :class:`CheckResult`."""
        cases = self.hidden_cases()
        name = getattr(fn, "__name__", self.name)
        not_done = f"⏳ {name} is not implemented yet: write it above, then rerun this cell."
        if not callable(fn):
            return CheckResult("failed", f"✗ {self.checker_name} needs the function itself, got {describe(fn)}",
                               len(cases), 1)
        for number, case in enumerate(cases, start=1):
            expected = self._value(self.reference, case)
            try:
                got = self._value(_guarded(fn), case)
            except (NotImplementedError, _NotImplemented) as error:
                if number == 1:
                    return CheckResult("not implemented", not_done, len(cases), None)
                how = str(error) if isinstance(error, _NotImplemented) else "raised NotImplementedError"
                return self._failed(number, len(cases), case, f"{how}: not implemented for this case")
            except Exception as error:  # the learner's bug is this case's failure, not the notebook's
                message = str(error).strip().splitlines()[0] if str(error).strip() else ""
                return self._failed(number, len(cases), case, f"raised {type(error).__name__}: {message}".rstrip(": "))
            problem = compare(got, expected, self.rtol, self.atol)
            if problem:
                return self._failed(number, len(cases), case, problem)
        return CheckResult("passed", f"✓ all {len(cases)} cases agree", len(cases))

    def _failed(self, number: int, total: int, case: Mapping[str, Any], what: str) -> CheckResult:
        return CheckResult("failed", f"✗ case {number} of {total}: {self.call_text(case)} {what}", total, number)
