"""Build the lab's website: execute chapters with papermill, gather offline assets, run jupyter-book.

Why here and not in a shell script: ``make book`` (execute every chapter, then build) and
``make site`` (build from the committed outputs) share every step but the first, the test-suite
builds the site too, and the list of JavaScript the site serves must be checked in one place, since
the website has to render with no network at all.

Executed notebooks go to a staging copy of the book (``_build/book-src``), so a ``full`` run never
silently overwrites the committed notebooks (use ``python -m labkit run ... --in-place`` for that).
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


def stage_book(profile: str, seed: int | None = None, root: Path = ROOT) -> Path:
    """Copy the book's pages to ``_build/book-src`` and execute every chapter into it with ``profile``."""
    from labkit.cli import run_notebook, validate_parameters

    stage = root / "_build" / "book-src"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy2(root / name, stage / name)
    for name in BOOK_DIRS:
        shutil.copytree(root / name, stage / name)
    notebooks = chapter_notebooks(root)
    for index, notebook in enumerate(notebooks, 1):
        parameters = {"profile": profile} if seed is None else {"profile": profile, "seed": seed}
        parameters = validate_parameters(notebook, parameters)
        target = stage / notebook.relative_to(root)
        print(f"[{index}/{len(notebooks)}] executing {notebook.relative_to(root)} ({parameters})", flush=True)
        run_notebook(notebook, parameters, target, progress=False, cwd=notebook.parent)
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
