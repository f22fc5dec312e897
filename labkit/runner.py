"""Papermill runs of the chapter notebooks: parameters checked before a kernel starts, outputs atomic.

Why a wrapper around papermill: a mistyped parameter must fail in one clear line *before* a kernel
starts (papermill alone injects unknown names silently), and a failed run must never leave a
half-written notebook behind or overwrite the committed one unless asked. ``python -m labkit run``
(``labkit.cli``), the website build (``labkit.site``) and the notebook tests all run notebooks through
here, so they accept and reject the same parameters.

Profiles are checked against ``labkit.profiles`` for notebooks named after a chapter
(``notebooks/00_welcome.ipynb`` -> chapter ``00_welcome``); other notebooks are checked by the types of
their ``parameters`` cell alone.
"""

from __future__ import annotations

import ast
import os
import tempfile
from pathlib import Path
from typing import Any

from labkit import profiles
from labkit.checks import check_like

#: Where ``python -m labkit run`` writes an executed copy when neither ``-o`` nor ``--in-place`` is given.
DEFAULT_RUNS_DIR = Path("_build") / "runs"


class ParameterError(ValueError):
    """A notebook parameter that is unknown, of the wrong type or out of range."""


def parse_value(text: str) -> Any:
    """Parse ``-p name VALUE`` like Python literals (3, 0.5, True/true, 'x'); anything else is a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """Names and default values of the notebook's ``parameters`` cell."""
    import papermill

    found = papermill.inspect_notebook(str(notebook))
    if not found:
        raise ParameterError(f"{notebook} has no cell tagged 'parameters'")
    return {name: parse_value(info["default"]) for name, info in found.items()}


def validate_parameters(notebook: Path, given: dict[str, Any]) -> dict[str, Any]:
    """Check names, types and (for ``profile`` and ``seed``) allowed values; return the parameters to inject.

    An int given for a float default becomes a float (``-p lr 1`` means 1.0); ``None`` on either side
    skips the type check (a default of ``None`` means "any value"). ``given`` is updated in place.
    """
    defaults = notebook_parameters(notebook)
    for name, value in given.items():
        if name not in defaults:
            raise ParameterError(f"unknown parameter {name!r} for {notebook.name}; allowed: {', '.join(defaults)}")
        default = defaults[name]
        if default is None or value is None:
            continue
        try:
            given[name] = check_like(name, value, default)
        except ValueError:
            raise ParameterError(f"parameter {name}={value!r} has the wrong type; allowed: a "
                                 f"{type(default).__name__} (default {default!r})") from None
    chapter = notebook.stem
    if "profile" in given and chapter in profiles.chapters():
        allowed = profiles.profiles_of(chapter)
        if given["profile"] not in allowed:
            raise ParameterError(f"parameter profile={given['profile']!r} is not valid; allowed: {', '.join(allowed)}")
    if "seed" in given and isinstance(given["seed"], int) and given["seed"] < 0:
        raise ParameterError(f"parameter seed={given['seed']!r} is not valid; allowed: an integer >= 0")
    return given


def default_output(notebook: Path, parameters: dict[str, Any]) -> Path:
    """``_build/runs/<stem>__<name>-<value>....ipynb``: one file per parameter set, so reruns never collide."""
    suffix = "".join(f"__{k}-{v}" for k, v in sorted(parameters.items())) or "__defaults"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in suffix)
    return DEFAULT_RUNS_DIR / f"{notebook.stem}{safe}.ipynb"


def run_notebook(notebook: Path, parameters: dict[str, Any], output: Path, *, progress: bool = True,
                 cwd: Path | None = None) -> Path:
    """Execute ``notebook`` with papermill into ``output`` atomically (temp file, then rename).

    ``parameters`` are injected as given (validate them first with :func:`validate_parameters`);
    ``cwd`` is the kernel's working folder (default: the notebook's folder, where its relative paths
    point). On failure papermill's ``PapermillExecutionError`` propagates and ``output`` is untouched.
    """
    import papermill

    from labkit.runtime import publish  # imports torch: only when a notebook actually runs

    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=".tmp.ipynb", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        papermill.execute_notebook(
            str(notebook), str(tmp), parameters=parameters, progress_bar=progress,
            cwd=str(cwd or notebook.parent), kernel_name="python3",
        )
        publish(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output
