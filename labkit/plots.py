"""Plotly figures shared by chapters, and the renderer that makes them work offline everywhere.

Why a renderer of our own: plotly's notebook renderers either embed 3.5 MB of plotly.js in every
figure or load it from a CDN. The lab's website must render offline and stay small, so each figure is
emitted as (1) the plotly mime type, which JupyterLab and VS Code render natively, and (2) a bare
``<div>`` plus a ``Plotly.newPlot`` call that uses the one copy of plotly.js the website serves
(``_config.yml``: ``html_js_files``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer
from plotly.subplots import make_subplots

RENDERER_NAME = "labkit"
TEMPLATE = "plotly_white"


class LabRenderer(MimetypeRenderer):
    """Plotly mime bundle + HTML without embedded plotly.js (see module docstring)."""

    def to_mimebundle(self, fig_dict: dict) -> dict:
        fig_json = json.loads(pio.to_json(fig_dict, validate=False, remove_uids=False))
        html = pio.to_html(
            fig_dict,
            include_plotlyjs=False,
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=450,
            validate=False,
        )
        return {"application/vnd.plotly.v1+json": fig_json, "text/html": html}


def use_lab_renderer() -> None:
    """Make the lab renderer plotly's default (idempotent); called by ``labkit.setup``."""
    if RENDERER_NAME not in pio.renderers:
        pio.renderers[RENDERER_NAME] = LabRenderer()
    pio.renderers.default = RENDERER_NAME
    pio.templates.default = TEMPLATE


def loss_curve(
    steps: Sequence[float],
    losses: Sequence[float],
    *,
    title: str = "Training loss",
    x_title: str = "step",
    y_title: str = "loss (nats per token)",
    name: str = "loss",
    log_y: bool = False,
) -> go.Figure:
    """A training-loss curve; pass several runs by adding traces to the returned figure."""
    fig = go.Figure(go.Scatter(x=list(steps), y=list(losses), mode="lines", name=name))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, hovermode="x unified")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


# Colors shared by same-named series across panels (plotly's default qualitative palette).
_PALETTE = ("#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880",
            "#FF97FF", "#FECB52")


def line_panels(
    panels: Sequence[tuple[str, Sequence[float], Mapping[str, Sequence[float]]]],
    *,
    title: str = "",
    y_title: str | Sequence[str] = "",
    log_x: bool | Sequence[bool] = False,
    log_y: bool | Sequence[bool] = False,
    height: int = 420,
) -> go.Figure:
    """A row of line charts with one shared legend, e.g. one quantity against two different knobs.

    ``panels``: ``(x_title, x, {series name: y})`` per panel. ``y_title``, ``log_x`` and ``log_y`` take
    one value for every panel or a sequence with one value per panel. A series name that appears in
    several panels keeps one color and one legend entry (clicking it hides the series in every panel).
    """
    if not panels:
        raise ValueError("panels is empty; allowed: one or more (x_title, x, {name: y}) panels")
    y_titles, logs_x, logs_y = (_per_panel(v, len(panels), name) for v, name in
                                ((y_title, "y_title"), (log_x, "log_x"), (log_y, "log_y")))
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.1)
    colors: dict[str, str] = {}
    for col, (x_title, x, series) in enumerate(panels, start=1):
        for name, y in series.items():
            if len(y) != len(x):
                raise ValueError(f"series {name!r} has {len(y)} values for {len(x)} x values in panel {col}")
            shown = name in colors
            color = colors.setdefault(name, _PALETTE[len(colors) % len(_PALETTE)])
            fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines+markers", name=name, legendgroup=name,
                                     showlegend=not shown, line=dict(color=color), marker=dict(size=5)),
                          row=1, col=col)
        fig.update_xaxes(title_text=x_title, type="log" if logs_x[col - 1] else "linear", row=1, col=col)
        fig.update_yaxes(title_text=y_titles[col - 1], type="log" if logs_y[col - 1] else "linear", row=1, col=col)
    fig.update_layout(title=title, height=height, hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0))
    return fig


def _per_panel(value: object, n: int, name: str) -> list:
    if isinstance(value, (str, bool)):
        return [value] * n
    values = list(value)  # type: ignore[call-overload]
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values for {n} panels; allowed: one value, or one per panel")
    return values


def slider_explorer(
    x: Sequence[float],
    views: Mapping[str, tuple[str, Mapping[str, Sequence[Sequence[float]]]]],
    slider_values: Sequence[float],
    *,
    slider_label: str,
    x_title: str = "",
    title: str = "",
    log_x: bool = False,
    log_y: bool = False,
    active: int = 0,
    height: int = 520,
) -> go.Figure:
    """Line charts over ``x`` for a precomputed grid: a slider picks a parameter value, a dropdown a view.

    ``views``: ``{view name: (y axis title, {trace name: grid})}`` where ``grid[i]`` is the y values (one
    per x) at ``slider_values[i]``. Everything is embedded in the figure (slider steps restyle the traces'
    y, the dropdown switches which traces are visible), so it works on a static web page with no kernel.
    """
    if not views:
        raise ValueError("views is empty; allowed: one or more {name: (y_title, {trace: grid})}")
    n_steps = len(slider_values)
    if not 0 <= active < n_steps:
        raise ValueError(f"active={active} is not valid; allowed: 0 <= active < {n_steps} (len(slider_values))")
    owner: list[int] = []  # view index of each trace
    grids: list[list[list[float]]] = []
    fig = go.Figure()
    for v, (_, traces) in enumerate(views.values()):
        for name, grid in traces.items():
            rows = [list(map(float, row)) for row in grid]
            if len(rows) != n_steps or any(len(r) != len(x) for r in rows):
                raise ValueError(f"trace {name!r}: grid must be {n_steps} rows (slider values) of {len(x)} values")
            grids.append(rows)
            owner.append(v)
            fig.add_trace(go.Scatter(x=list(x), y=rows[active], mode="lines", name=name, visible=v == 0,
                                     line=dict(color=_PALETTE[(len(owner) - 1 - owner.index(v)) % len(_PALETTE)])))
    steps = [dict(method="restyle", label=f"{value:g}", args=[{"y": [g[i] for g in grids]}])
             for i, value in enumerate(slider_values)]
    y_titles = [y_title for y_title, _ in views.values()]
    fig.update_layout(
        title=title, height=height, hovermode="x unified", xaxis_title=x_title, yaxis_title=y_titles[0],
        sliders=[dict(active=active, steps=steps, currentvalue=dict(prefix=f"{slider_label} = "), pad=dict(t=50))],
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
        margin=dict(t=110),
    )
    if len(views) > 1:
        buttons = [dict(method="update", label=name,
                        args=[{"visible": [o == v for o in owner]}, {"yaxis.title.text": y_titles[v]}])
                   for v, name in enumerate(views)]
        fig.update_layout(updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.16,
                                            yanchor="bottom", showactive=True)])
    fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_yaxes(type="log" if log_y else "linear")
    return fig
