"""The website builds with -W (warnings are errors) and renders offline in a real browser.

The browser test serves ``_build/html`` on 127.0.0.1, opens every chapter in headless Chromium and
asserts that each plotly figure drew its traces, that no request left 127.0.0.1 and that no request
failed, and that the page raised no JavaScript error. In CI (``LAB_REQUIRE_BROWSER=1``) a missing
Chromium is a failure; on a laptop without it the test skips and says why.

The staging tests (``make book``'s first step) stage a one-chapter book in a temporary folder: the
chapter runs with the requested profile, papermill's injected-parameters cell is hidden from the page,
and a profile the chapter lacks fails before anything is written.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
from conftest import write_notebook

from labkit import site as labsite

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
CHAPTER_PAGES = [p.relative_to(labsite.ROOT).with_suffix(".html").as_posix() for p in labsite.chapter_notebooks()]


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    return labsite.build_site(source_dir=labsite.ROOT, output_root=out)


def test_site_has_every_page_and_serves_its_own_javascript(site):
    assert (site / "index.html").is_file()
    for page in [*CHAPTER_PAGES, "book/bibliography.html", "book/running_the_lab.html"]:
        assert (site / page).is_file(), page
    assert (site / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert (site / "_static" / "require.js").is_file()
    assert (site / "_static" / "html-manager" / "embed-amd.js").is_file()
    remote = re.compile(r"""<(?:script|link)[^>]+(?:src|href)=["'](?:https?:)?//""")
    for html in site.rglob("*.html"):
        text = html.read_text()
        assert not remote.search(text), f"{html.relative_to(site)} loads a remote script or stylesheet"


def test_bibliography_is_rendered(site):
    text = (site / "book" / "bibliography.html").read_text()
    assert "knowledge capacity scaling laws" in text.lower() and "how much do language models memorize" in text.lower()


def _browser_or_skip():
    if not Path(CHROMIUM).exists():
        if os.environ.get("LAB_REQUIRE_BROWSER") or os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM} (CI requires it: apt-get install chromium)")
        pytest.skip(f"Chromium not installed ({CHROMIUM}); install Debian's chromium to run the browser test")
    return pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.parametrize("page", [*CHAPTER_PAGES, "book/intro.html"])
def test_page_renders_offline_in_chromium(server, page, tmp_path):
    sync_api = _browser_or_skip()
    requests, failures, errors = [], [], []
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            tab = context.new_page()
            tab.on("request", lambda r: requests.append(r.url))
            tab.on("requestfailed", lambda r: failures.append(f"{r.url} ({r.failure})"))
            tab.on("response", lambda r: r.status >= 400 and failures.append(f"{r.url} (HTTP {r.status})"))
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("console", lambda m: m.type == "error" and errors.append(f"{m.text} at {m.location}"))
            tab.goto(f"{server}/{page}", wait_until="load")
            n_figures = tab.locator("div.plotly-graph-div").count()
            if page in CHAPTER_PAGES:
                assert n_figures >= 1, f"{page} shows no plotly figure"
                # a drawn trace: g.trace (scatter, bars), g.hm (a heatmap, drawn as an image)
                drawn = "svg.main-svg g.trace, svg.main-svg g.hm"
                tab.wait_for_function(
                    f"n => document.querySelectorAll('div.plotly-graph-div').length > 0"
                    f" && [...document.querySelectorAll('div.plotly-graph-div')].every("
                    f"d => d.querySelector('{drawn}'))", arg=n_figures, timeout=20_000)
            if "application/vnd.jupyter.widget-view+json" in tab.content():
                # saved widget state: the HTML manager must draw the widgets (static, no kernel)
                tab.wait_for_selector(".jupyter-widgets", state="attached", timeout=20_000)
            tab.wait_for_load_state("networkidle")
        finally:
            context.close()
    outside = [u for u in requests if urlparse(u).hostname not in ("127.0.0.1", None) and not u.startswith("data:")]
    assert not outside, f"requests outside 127.0.0.1: {outside}"
    assert not failures, f"failed requests: {failures}"
    assert not errors, f"JavaScript errors: {errors}"


def tiny_book(root: Path, notebook: str, parameters: str = 'profile = "quick"\nseed = 0') -> Path:
    """The smallest book ``stage_book`` can stage: the config files, one page and one chapter notebook."""
    (root / "book").mkdir(parents=True)
    (root / "book" / "intro.md").write_text("# Intro\n")
    (root / "_config.yml").write_text("title: tiny\n")
    (root / "references.bib").write_text("")
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n- file: notebooks/{notebook}\n")
    (root / "notebooks").mkdir()
    return write_notebook(root / "notebooks" / f"{notebook}.ipynb", parameters, "print(profile, seed)")


def test_staged_chapters_run_with_the_profile_and_hide_the_injected_cell(tmp_path):
    notebook = tiny_book(tmp_path, "99_tiny")
    before = notebook.read_bytes()
    stage = labsite.stage_book("smoke", seed=3, root=tmp_path)
    assert stage == tmp_path / "_build" / "book-src"
    assert {p.name for p in stage.iterdir()} == {"_config.yml", "_toc.yml", "references.bib", "book", "notebooks"}
    executed = nbformat.read(stage / "notebooks" / "99_tiny.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source
    assert injected[0].metadata["tags"] == ["injected-parameters", "remove-cell"]  # off the page, still in the file
    assert "smoke 3" in executed.cells[-1].outputs[0]["text"]
    assert notebook.read_bytes() == before  # the committed notebook is never touched
    assert labsite.hide_injected_parameters(stage / "notebooks" / "99_tiny.ipynb") == 0  # already hidden


def test_a_profile_a_chapter_lacks_fails_before_anything_is_staged(tmp_path):
    tiny_book(tmp_path, "00_welcome")  # a real chapter's name: its profiles are checked
    with pytest.raises(ValueError, match="profile='qiuck' is not valid; allowed: smoke, quick, full"):
        labsite.stage_book("qiuck", root=tmp_path)
    assert not (tmp_path / "_build").exists()
