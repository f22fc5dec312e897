"""Sphinx extension of the lab's website: keep each page's script list clean.

sphinx-thebe (loaded by jupyter-book 1 whether or not thebe is used) registers its inline
configuration script (``const THEBE_JS_URL = ...``) twice, which raises "Identifier has already been
declared" in the browser. Dropping exact duplicates from a page's scripts fixes that without touching
what any page loads.
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


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _deduplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
