"""``python -m labkit``: rerun a chapter with parameters, list profiles.

Why a wrapper around papermill: a mistyped parameter must fail in one clear line *before* a kernel
starts (papermill alone injects unknown names silently), and a failed run must never leave a
half-written notebook behind or overwrite the committed one unless asked (``--in-place``).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from labkit import profiles

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
    """Check names, types and (for ``profile``) allowed values; return the parameters to inject."""
    defaults = notebook_parameters(notebook)
    for name, value in given.items():
        if name not in defaults:
            raise ParameterError(f"unknown parameter {name!r} for {notebook.name}; allowed: {', '.join(defaults)}")
        default = defaults[name]
        if default is None or value is None:
            continue
        expected = type(default)
        ok = isinstance(value, expected) and isinstance(value, bool) == isinstance(default, bool)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            given[name], ok = float(value), True
        if not ok:
            raise ParameterError(f"parameter {name}={value!r} has the wrong type; allowed: a {expected.__name__} "
                                 f"(default {default!r})")
    chapter = notebook.stem
    if "profile" in given and chapter in profiles.CHAPTERS:
        allowed = profiles.profiles_of(chapter)
        if given["profile"] not in allowed:
            raise ParameterError(f"parameter profile={given['profile']!r} is not valid; allowed: {', '.join(allowed)}")
    if "seed" in given and isinstance(given["seed"], int) and given["seed"] < 0:
        raise ParameterError(f"parameter seed={given['seed']!r} is not valid; allowed: an integer >= 0")
    return given


def default_output(notebook: Path, parameters: dict[str, Any]) -> Path:
    suffix = "".join(f"__{k}-{v}" for k, v in sorted(parameters.items())) or "__defaults"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in suffix)
    return DEFAULT_RUNS_DIR / f"{notebook.stem}{safe}.ipynb"


def run_notebook(notebook: Path, parameters: dict[str, Any], output: Path, *, progress: bool = True,
                 cwd: Path | None = None) -> Path:
    """Execute ``notebook`` with papermill into ``output`` atomically (temp file, then rename)."""
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


def _cmd_run(args: argparse.Namespace) -> int:
    notebook = Path(args.notebook)
    if notebook.suffix != ".ipynb" or not notebook.is_file():
        raise ParameterError(f"notebook={args.notebook!r} is not an existing .ipynb file")
    given = {name: parse_value(value) for name, value in (args.parameters or [])}
    parameters = validate_parameters(notebook, given)
    if args.in_place and args.output:
        raise ParameterError("use either --in-place or -o/--output, not both")
    output = notebook if args.in_place else Path(args.output) if args.output else default_output(notebook, parameters)
    print(f"running {notebook} with {parameters or 'default parameters'} -> {output}", flush=True)
    run_notebook(notebook, parameters, output, progress=not args.quiet)
    print(f"wrote {output}")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    for chapter in [args.chapter] if args.chapter else profiles.chapters():
        for profile in profiles.profiles_of(chapter):
            print(f"{chapter:32s} {profile:9s} {dict(profiles.resolve(chapter, profile))}")
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from labkit import book

    source = book.stage_book(args.profile, args.seed) if args.execute else book.ROOT
    book.build_site(source_dir=source, output_root=book.ROOT)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a chapter notebook with parameters (papermill)")
    run.add_argument("notebook", help="path to notebooks/NN_topic.ipynb")
    run.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="set a parameter of the notebook's parameters cell (repeatable)")
    run.add_argument("-o", "--output", help=f"output notebook (default: {DEFAULT_RUNS_DIR}/<name>__<params>.ipynb)")
    run.add_argument("--in-place", action="store_true", help="overwrite the input notebook with the executed one")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)
    prof = sub.add_parser("profiles", help="list chapters, their profiles and sizes")
    prof.add_argument("chapter", nargs="?")
    prof.set_defaults(func=_cmd_profiles)
    site = sub.add_parser("book", help="build the website (_build/html); --execute reruns every chapter first")
    site.add_argument("--execute", action="store_true", help="execute every chapter with papermill before building")
    site.add_argument("--profile", default="quick", help="profile for --execute (default: quick)")
    site.add_argument("--seed", type=int, default=None, help="seed for --execute (default: each notebook's own)")
    site.set_defaults(func=_cmd_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ParameterError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # papermill's execution errors: one line here, the notebook has the rest
        if type(error).__name__ == "PapermillExecutionError":
            print(f"error: the notebook failed: {getattr(error, 'ename', '')}: {getattr(error, 'evalue', error)}",
                  file=sys.stderr)
            return 1
        raise
