"""Sphinx extension of the lab's website: make every page's scripts work together, offline.

- sphinx-thebe (loaded by jupyter-book 1 whether or not thebe is used) registers its inline
  configuration script (``const THEBE_JS_URL = ...``) twice, which raises "Identifier has already
  been declared" in the browser. Exact duplicates are dropped from each page's scripts.
- Pages with saved widget state load the ipywidgets HTML manager. It fetches its fonts relative to
  ``__jupyter_widgets_assets_path__`` and its AMD module's URL (else relative to the page: 404s;
  the inline script sets both, the latter through require.js's pre-load ``require`` config), and typesets widget labels
  with the MathJax 2 call ``MathJax.Hub.Queue``, which MathJax 3 (served here) does not have. A small
  inline script sets the assets path and gives whatever object ``window.MathJax`` holds (the config,
  then MathJax 3 itself) a ``Hub.Queue`` that forwards to MathJax 3's ``typesetPromise``.
"""

from __future__ import annotations

from typing import Any


def _deduplicate_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        key = (str(getattr(script, "filename", script) or ""), str(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


WIDGETS_COMPAT_JS = r"""
(function () {
  var root = document.documentElement.dataset.content_root || "";
  var assets = new URL(root + "_static/html-manager/", location.href).href;
  window.__jupyter_widgets_assets_path__ = assets;
  // read by require.js when it loads: the manager's AMD modules (and so its fonts) live in _static
  if (typeof window.require === "undefined") {
    window.require = {paths: {"@jupyter-widgets/html-manager/dist": assets.replace(/\/$/, "")}};
  }
  var hub = {Queue: function (job) {
    var mj = window.MathJax, el = job && job[2];
    if (mj && mj.typesetPromise) { mj.typesetPromise(el ? [el] : undefined).catch(function () {}); }
  }};
  var current = window.MathJax;
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { if (value && !value.Hub) { value.Hub = hub; } current = value; }
  });
  if (current) { window.MathJax = current; }
})();
"""


def setup(app: Any) -> dict[str, Any]:
    app.add_js_file(None, body=WIDGETS_COMPAT_JS, priority=150)
    app.connect("html-page-context", _deduplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
