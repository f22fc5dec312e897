"""Helpers shared by the chapters' exercise tests (``tests/test_exercises_chNN.py``)."""

from __future__ import annotations

import re


def rejected(check, fn) -> str:
    """Run an exercise checker on a wrong answer ``fn``: it must fail on a named hidden case (the
    message starts "✗ case i of n: name("); returns the message, for the test to read further."""
    result = check(fn)
    assert not result and result.status == "failed", result.message
    assert re.match(r"✗ case \d+ of \d+: \w+\(", result.message), result.message
    return result.message
