"""Build the lab's website: execute chapters with papermill, gather offline assets, run jupyter-book.

Why here and not in a shell script: ``make book`` (execute every chapter, then build) and
``make site`` (build from the committed outputs) share every step but the first, the test-suite
builds the site too, and the list of JavaScript the site serves must be checked in one place, since
the website has to render with no network at all.

Executed notebooks go to a staging copy of the book (``_build/book-src``), so a ``full`` run never
silently overwrites the committed notebooks (use ``python -m labkit run ... --in-place`` for that).
In that copy papermill's injected-parameters cell is hidden from the page: a reader sees the chapter,
not ``profile = "full"`` twice.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = "_site_assets"  # not "_static": jupyter-book 1 would auto-load every .js found there
BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")
BOOK_DIRS = ("book",)
NODE_MODULES = ROOT / "site" / "node_modules"
INJECTED_TAG = "injected-parameters"  # papermill's tag on the cell it adds after the parameters cell
HIDDEN_TAG = "remove-cell"  # jupyter-book 1 (myst-nb) leaves a cell with this tag off the page

# (source inside site/node_modules, destination inside the assets folder); folders are copied whole.
NPM_ASSETS = (
    ("mathjax/es5/tex-chtml.js", "mathjax/tex-chtml.js"),
    ("mathjax/es5/output/chtml/fonts/woff-v2", "mathjax/output/chtml/fonts/woff-v2"),
    ("mathjax/es5/input/tex/extensions", "mathjax/input/tex/extensions"),
    ("requirejs/require.js", "require.js"),
    ("@jupyter-widgets/html-manager/dist", "html-manager"),
)


def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    """Notebooks in the order of ``_toc.yml`` (the order a reader meets them)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").is_file()]


def collect_assets(source_dir: Path) -> Path:
    """Copy plotly.js (from the installed plotly) and the npm assets into ``source_dir/_site_assets``."""
    import plotly

    if not NODE_MODULES.is_dir():
        raise FileNotFoundError(f"{NODE_MODULES} is missing: run `make assets` (npm ci in site/) first")
    dest = source_dir / ASSETS_DIR
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", dest / "plotly.min.js")
    for src, dst in NPM_ASSETS:
        source, target = NODE_MODULES / src, dest / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            # the widget manager's dist holds three 3.6 MB bundles; the site loads only embed-amd.js
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.map", "embed.js", "libembed-amd.js"))
        else:
            shutil.copy2(source, target)
    return dest


def hide_injected_parameters(notebook: Path) -> int:
    """Tag papermill's injected-parameters cell(s) of ``notebook`` with ``remove-cell``; return how many.

    The cell stays in the file (the executed notebook still records what it ran with); only the page
    leaves it out. Rewrites the file only when a tag was added.
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    hidden = 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if INJECTED_TAG in tags and HIDDEN_TAG not in tags:
            cell.metadata["tags"] = [*tags, HIDDEN_TAG]
            hidden += 1
    if hidden:
        nbformat.write(nb, notebook)
    return hidden


def stage_book(profile: str, seed: int | None = None, root: Path = ROOT) -> Path:
    """Copy the book's pages to ``root/_build/book-src`` and execute every chapter into it with ``profile``.

    Parameters are validated for every chapter before the first one runs, so a profile one chapter
    lacks fails in seconds rather than after the others have executed.
    """
    from labkit.runner import run_notebook, validate_parameters

    notebooks = chapter_notebooks(root)
    given = {"profile": profile} if seed is None else {"profile": profile, "seed": seed}
    runs = [(notebook, validate_parameters(notebook, dict(given))) for notebook in notebooks]
    stage = root / "_build" / "book-src"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy2(root / name, stage / name)
    for name in BOOK_DIRS:
        shutil.copytree(root / name, stage / name)
    for index, (notebook, parameters) in enumerate(runs, 1):
        target = stage / notebook.relative_to(root)
        print(f"[{index}/{len(runs)}] executing {notebook.relative_to(root)} ({parameters})", flush=True)
        run_notebook(notebook, parameters, target, progress=False, cwd=notebook.parent)
        hide_injected_parameters(target)
    return stage


def build_site(source_dir: Path = ROOT, output_root: Path = ROOT) -> Path:
    """Run ``jupyter-book build -W -n --keep-going``; return the folder holding index.html."""
    collect_assets(source_dir)
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(source_dir),
               "--path-output", str(output_root), "--all", "-W", "-n", "--keep-going"]
    subprocess.run(command, check=True)
    html = output_root / "_build" / "html"
    print(f"\nThe lab's website is built: open {html / 'index.html'}\n"
          f"(or serve it: python -m http.server -d {html} 8000, then http://127.0.0.1:8000)")
    return html
