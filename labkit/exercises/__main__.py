"""``python -m labkit.exercises insert NOTEBOOK...`` (or ``list``): the exercises of the lab's chapters.

``insert`` replaces each notebook's "## Exercises" section with freshly generated cells (or inserts
it before "## Summary", or before ``--before HEADING``), leaving every other cell and its outputs
untouched; ``--check`` only reports, and exits 1 when a section is missing or out of date. ``list``
prints every exercise with its marks.
"""

from __future__ import annotations

import argparse
import sys

from labkit.exercises.registry import CHAPTERS, exercises


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.exercises", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("insert", help="insert or refresh the exercise section of chapter notebooks")
    put.add_argument("notebooks", nargs="+", help="notebooks/NN_topic.ipynb (the chapter is read from NN)")
    put.add_argument("--check", action="store_true", help="do not write; exit 1 if a section is out of date")
    put.add_argument("--before", default="## Summary", metavar="HEADING",
                     help="where a new section goes: before this heading (default: '## Summary'; else at the end)")
    commands.add_parser("list", help="list every chapter's exercises")
    args = parser.parse_args(argv)
    if args.command == "list":
        for chapter in CHAPTERS:
            for number, ex in enumerate(exercises(chapter), start=1):
                print(f"chapter {chapter} exercise {number}: {ex.label:28s} {ex.marks}  {ex.title}")
        return 0
    from labkit.exercises.notebook import insert

    stale = False
    for notebook in args.notebooks:
        report = insert(notebook, before=args.before, write=not args.check)
        stale |= "up to date" not in report
        print(report)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
