"""ipywidgets panels for people running the notebooks in Jupyter.

Why separate from plots: widgets need a live kernel, so on the static website they are inert (the
site's interactivity comes from plotly sliders and dropdowns instead). Panels here therefore never
carry a result the chapter's text depends on; they let a reader poke at the objects a chapter built.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w


def item_explorer(n_items: int, describe: Callable[[int], str], *, label: str = "item") -> w.VBox:
    """A slider over ``range(n_items)``; ``describe(i)`` returns the HTML shown for item ``i``."""
    if n_items < 1:
        raise ValueError(f"n_items={n_items!r} is not valid; allowed: >= 1")
    slider = w.IntSlider(value=0, min=0, max=n_items - 1, description=label, continuous_update=False)
    view = w.HTML(describe(0))
    slider.observe(lambda change: setattr(view, "value", describe(change["new"])), names="value")
    return w.VBox([slider, view])


def calculator(controls: Mapping[str, w.ValueWidget], compute: Callable[..., Mapping[str, Any]],
               *, title: str = "") -> w.VBox:
    """Live table of ``compute(**values)`` as the ``controls`` change (e.g. bits of a dataset vs its sizes)."""
    out = w.HTML()

    def refresh(_: Any = None) -> None:
        try:
            rows = compute(**{name: c.value for name, c in controls.items()})
            body = "".join(f"<tr><td>{html.escape(str(k))}</td><td><b>{html.escape(_fmt(v))}</b></td></tr>"
                           for k, v in rows.items())
            out.value = f"<table>{body}</table>"
        except ValueError as error:  # invalid combinations are explained, not raised, in a live panel
            out.value = f"<span style='color:#b00'>{html.escape(str(error))}</span>"

    for control in controls.values():
        control.observe(refresh, names="value")
    refresh()
    header = [w.HTML(f"<b>{html.escape(title)}</b>")] if title else []
    return w.VBox([*header, *controls.values(), out])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
