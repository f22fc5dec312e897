"""Plotly figures shared by chapters, and the renderer that makes them work offline everywhere.

Why a renderer of our own: plotly's notebook renderers either embed 3.5 MB of plotly.js in every
figure or load it from a CDN. The lab's website must render offline and stay small, so each figure is
emitted as (1) the plotly mime type, which JupyterLab and VS Code render natively, and (2) a bare
``<div>`` plus a ``Plotly.newPlot`` call that uses the one copy of plotly.js the website serves
(``_config.yml``: ``html_js_files``).

Why figures of our own class (``LabFigure``): displaying a plain plotly figure goes through plotly's
renderer registry, whose import pulls in nbformat and, through it, jsonschema's format checkers (a
grammar compiled at import): seconds of every notebook kernel's start, more than importing torch. A
``LabFigure`` builds the same bundle directly, so a chapter never pays for it. ``use_lab_renderer``
still registers the renderer for plain figures (``fig.show()``), at that cost, for code that wants it.

Layout rules shared by every figure helper, so that nothing a reader needs is drawn over anything else:

- the title sits above the plot area, left-aligned (away from plotly's mode bar at the top right), and
  pushes the top margin as far as it needs (``title.automargin``);
- the legend sits below the plot, under the x-axis title, in equal columns; the figure grows by the
  legend's height so the plot area keeps its size, and long entries are wrapped onto several lines;
- horizontal reference lines ("2 bits/param", a loss plateau) are drawn across the whole plot and
  named in the legend, never annotated in the plot, where labels collide with bars, bar labels,
  curves and each other.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer
from plotly.subplots import make_subplots

RENDERER_NAME = "labkit"
TEMPLATE = "plotly_white"


def lab_bundle(fig_dict: dict) -> dict:
    """Plotly mime bundle + HTML without embedded plotly.js (see module docstring)."""
    fig_json = json.loads(pio.to_json(fig_dict, validate=False, remove_uids=False))
    html = pio.to_html(fig_dict, include_plotlyjs=False, include_mathjax=False, full_html=False,
                       default_width="100%", default_height=450, validate=False)
    return {"application/vnd.plotly.v1+json": fig_json, "text/html": html}


class LabRenderer(MimetypeRenderer):
    """``lab_bundle`` as a plotly renderer, for plain figures (``use_lab_renderer``)."""

    def to_mimebundle(self, fig_dict: dict) -> dict:
        return lab_bundle(fig_dict)


class LabFigure(go.Figure):
    """A plotly figure that displays itself as ``lab_bundle`` (every figure helper here returns one)."""

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs) -> dict:  # noqa: ANN001 (IPython's API)
        return lab_bundle(self.to_dict())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)

    def show(self, *args, **kwargs) -> None:  # noqa: ARG002 (plotly's signature; the lab has one renderer)
        self._ipython_display_()


def use_template() -> None:
    """The lab's plotly template (cheap; called by ``labkit.setup``)."""
    pio.templates.default = TEMPLATE


def use_lab_renderer() -> None:
    """Make the lab renderer plotly's default for plain figures too (idempotent; imports plotly's
    renderer registry, see the module docstring)."""
    if RENDERER_NAME not in pio.renderers:
        pio.renderers[RENDERER_NAME] = LabRenderer()
    pio.renderers.default = RENDERER_NAME
    use_template()


# Colors shared by same-named series across panels (plotly's default qualitative palette).
_PALETTE = ("#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880",
            "#FF97FF", "#FECB52")

# --------------------------------------------------------------------------------------------------
# Layout: title, legend and reference lines (module docstring)
# --------------------------------------------------------------------------------------------------

#: Pixel sizes the legend layout is estimated with (plotly's default 12 px font): an entry's symbol,
#: an average character, a line of text; and the space under the plot for tick labels and an axis title.
LEGEND_SYMBOL_PX, LEGEND_CHAR_PX, LEGEND_LINE_PX = 40, 6.8, 19
TICKS_PX, AXIS_TITLE_PX = 34, 28
#: Plot width the legend's columns are planned for: a figure about 560 px wide (a narrow browser window;
#: the website's content column is wider) less the side margins. Wider figures only give entries room.
PLANNED_PLOT_PX = 460
MARGIN = dict(l=70, r=30)
_REFERENCE_DASHES = ("dot", "dash", "dashdot", "longdash")
_REFERENCE_COLOR = "#888"


def _title(text: str) -> dict:
    """Left-aligned above the plot area; ``automargin`` makes room for it whatever its length or lines."""
    return dict(text=text, x=0, xref="paper", xanchor="left", y=1, yref="paper", yanchor="bottom",
                pad=dict(b=14), automargin=True)


def legend_columns(names: Sequence[str], plot_px: int = PLANNED_PLOT_PX) -> tuple[int, int]:
    """(columns, characters per line) for legend entries below a plot ``plot_px`` wide: three equal
    columns when the longest entry fits in one, else two, with longer entries wrapped to fit."""
    def chars(columns: int) -> int:
        return int((plot_px / columns - LEGEND_SYMBOL_PX) / LEGEND_CHAR_PX)

    longest = max((len(n) for n in names), default=0)
    return (3, chars(3)) if longest <= chars(3) else (2, chars(2))


def wrap_name(name: str, chars: int) -> str:
    """A legend entry on lines of at most ``chars`` characters (plotly breaks lines at ``<br>``)."""
    if "<br>" in name or len(name) <= chars:
        return name
    return "<br>".join(textwrap.wrap(name, chars, break_long_words=False, break_on_hyphens=False))


def _legend_entries(fig: go.Figure) -> list:
    return [t for t in fig.data if t.showlegend is not False and t.name is not None]


def legend_below(fig: go.Figure, height: int) -> go.Figure:
    """Put the legend under the plot in equal columns and grow the figure by its height (``height`` is
    the figure's height without a legend), so the legend covers neither the title nor the plot."""
    entries = _legend_entries(fig)
    layout = fig.layout.to_plotly_json()
    titled = any((axis.get("title") or {}).get("text") for key, axis in layout.items() if key.startswith("xaxis"))
    axis_block = TICKS_PX + (AXIS_TITLE_PX if titled else 0)
    if len(entries) < 2 and fig.layout.showlegend is not True:  # plotly shows no legend for one trace
        fig.update_layout(height=height, margin=dict(t=50, b=axis_block, **MARGIN))
        return fig
    columns, chars = legend_columns([t.name for t in entries])
    for trace in fig.data:
        if trace.name is not None:
            trace.name = wrap_name(trace.name, chars)
    lines = [trace.name.count("<br>") + 1 for trace in entries]
    rows = [max(lines[i:i + columns]) for i in range(0, len(lines), columns)]
    block = sum(rows) * LEGEND_LINE_PX + 16
    fig.update_layout(
        height=height + block,
        margin=dict(t=50, b=axis_block + block, **MARGIN),
        legend=dict(orientation="h", x=0, xref="paper", xanchor="left", y=0, yref="container", yanchor="bottom",
                    entrywidth=round(0.995 / columns, 3), entrywidthmode="fraction", valign="top",
                    font=dict(size=12), tracegroupgap=0),
    )
    return fig


def reference_lines(fig: go.Figure, hlines: Mapping[str, float] | None, *, color: str = _REFERENCE_COLOR) -> go.Figure:
    """Horizontal lines at ``{label: y}`` across the whole plot, each named in the legend.

    Why traces and not ``add_hline`` annotations: an annotation sits at a fixed corner of its line, so
    labels of close lines collide with each other, with bars and their value labels, and with a legend.
    A legend entry (distinct dash per line) cannot collide, and clicking it hides the line. The lines
    live on a hidden x axis spanning [0, 1] over the plot, so they reach both edges whatever the main
    x axis is (log, categories); the y values share the main y axis, which ranges over them.
    """
    if not hlines:
        return fig
    used = [int(key[5:] or 1) for key in fig.layout.to_plotly_json() if key.startswith("xaxis")]
    number = max(used, default=1) + 1
    fig.update_layout({f"xaxis{number}": dict(overlaying="x", range=[0, 1], visible=False, fixedrange=True,
                                              type="linear")})
    for k, (label, y) in enumerate(hlines.items()):
        fig.add_trace(go.Scatter(x=[0, 1], y=[float(y), float(y)], xaxis=f"x{number}", mode="lines", name=label,
                                 hoverinfo="skip", line=dict(color=color, dash=_REFERENCE_DASHES[k % 4], width=1.5)))
    return fig


def loss_curve(
    steps: Sequence[float],
    losses: Sequence[float],
    *,
    title: str = "Training loss",
    x_title: str = "step",
    y_title: str = "loss (nats per token)",
    name: str = "loss",
    log_y: bool = False,
    hlines: Mapping[str, float] | None = None,
    height: int = 420,
) -> go.Figure:
    """A training-loss curve; pass several runs by adding traces to the returned figure.

    ``hlines``: label → y of reference lines named in the legend (e.g. ``{"chance: ln V": math.log(V)}``).
    """
    fig = LabFigure(go.Scatter(x=list(steps), y=list(losses), mode="lines", name=name))
    fig.update_layout(title=_title(title), xaxis_title=x_title, yaxis_title=y_title, hovermode="x unified")
    if log_y:
        fig.update_yaxes(type="log")
    return legend_below(reference_lines(fig, hlines), height)


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
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.1, figure=LabFigure())
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
    fig.update_layout(title=_title(title), hovermode="x unified")
    return legend_below(fig, height)


def heatmap_panels(
    panels: Sequence[tuple[str, Sequence[Sequence[float]], Sequence[Sequence[str]] | None]],
    x: Sequence[str],
    y: Sequence[str],
    *,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    zrange: tuple[float, float] = (0.0, 1.0),
    colorbar_title: str = "",
    height: int = 420,
) -> go.Figure:
    """A row of heatmaps on one color scale, e.g. probe accuracy (layer × attribute) at two positions.

    ``panels``: ``(panel title, z, hover text or None)`` per panel, z as rows of ``y`` by columns of
    ``x``; every value is also written in its cell, so the numbers read without hovering."""
    if not panels:
        raise ValueError("panels is empty; allowed: one or more (title, z, text) panels")
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.08, figure=LabFigure(),
                        subplot_titles=[name for name, _, _ in panels])
    for col, (name, z, text) in enumerate(panels, start=1):
        if len(z) != len(y) or any(len(row) != len(x) for row in z):
            raise ValueError(f"panel {name!r}: z must have {len(y)} rows of {len(x)} values")
        fig.add_trace(go.Heatmap(z=[list(r) for r in z], x=list(x), y=list(y), zmin=zrange[0], zmax=zrange[1],
                                 colorscale="Viridis", showscale=col == len(panels), name=name,
                                 colorbar=dict(title=dict(text=colorbar_title)),
                                 texttemplate="%{z:.2f}", hovertext=text,
                                 hovertemplate="%{y}, %{x}: %{z:.2f}<br>%{hovertext}<extra></extra>"
                                 if text is not None else "%{y}, %{x}: %{z:.2f}<extra></extra>"),
                      row=1, col=col)
        fig.update_xaxes(title_text=x_title, row=1, col=col)
        fig.update_yaxes(title_text=y_title if col == 1 else "", showticklabels=col == 1, row=1, col=col)
    fig.update_layout(title=_title(title), height=height, margin=dict(t=110))
    return fig


def _per_panel(value: object, n: int, name: str) -> list:
    if isinstance(value, (str, bool)):
        return [value] * n
    values = list(value)  # type: ignore[call-overload]
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values for {n} panels; allowed: one value, or one per panel")
    return values


#: Characters per line of the slider explorer's legend, a column to the right of the plot.
EXPLORER_LEGEND_CHARS = 18


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
    fig = LabFigure()
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
    for trace in fig.data:  # the legend is a narrow column at the right
        trace.name = wrap_name(trace.name, EXPLORER_LEGEND_CHARS)
    # the slider sits below the plot, so the legend goes to its right, under the view menu
    fig.update_layout(
        title=_title(title), height=height, hovermode="x unified", xaxis_title=x_title, yaxis_title=y_titles[0],
        sliders=[dict(active=active, steps=steps, currentvalue=dict(prefix=f"{slider_label} = "), pad=dict(t=60))],
        legend=dict(orientation="v", x=1.02, xanchor="left", y=0.86 if len(views) > 1 else 1, yanchor="top"),
        margin=dict(t=50, b=40, **MARGIN),
    )
    if len(views) > 1:
        buttons = [dict(method="update", label=name,
                        args=[{"visible": [o == v for o in owner]}, {"yaxis.title.text": y_titles[v]}])
                   for v, name in enumerate(views)]
        fig.update_layout(updatemenus=[dict(buttons=buttons, direction="down", x=1.02, xanchor="left", y=1,
                                            yanchor="top", showactive=True)])
    fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_yaxes(type="log" if log_y else "linear")
    return fig


# --------------------------------------------------------------------------------------------------
# Capacity and memorization (chapters 2 and 3)
# --------------------------------------------------------------------------------------------------


def color(i: int) -> str:
    """The i-th color of the lab's palette (plotly's default), to match series across figures."""
    return _PALETTE[i % len(_PALETTE)]


def _series(name: str, spec) -> dict:
    """A series given as ``(x, y)`` or as a dict with ``x``, ``y`` and optional ``text``, ``symbol``,
    ``dash``, ``color``, ``mode``; returned as a dict with x and y as float lists of equal length."""
    spec = dict(spec) if isinstance(spec, Mapping) else {"x": spec[0], "y": spec[1]}
    x, y = [float(v) for v in spec["x"]], [float(v) for v in spec["y"]]
    if len(x) != len(y):
        raise ValueError(f"series {name!r} has {len(x)} x values and {len(y)} y values")
    return {**spec, "x": x, "y": y}


def capacity_plot(
    series: Mapping[str, object],
    *,
    ratios: Sequence[float] = (1.0, 2.0),
    title: str = "Bits learned vs parameters",
    x_title: str = "parameters P",
    y_title: str = "bits learned",
    height: int = 480,
) -> go.Figure:
    """Bits learned against parameters on log-log axes, with reference lines ``bits = r × P``.

    ``series``: name → ``(params, bits)`` or a dict with ``x``, ``y`` and optional ``text`` (hover),
    ``symbol``, ``dash``, ``color``. Each ratio r in ``ratios`` is drawn as a grey dotted line labelled
    "r bits/param" across the range of the data (on log axes a constant ratio is a line of slope 1, so
    a model at its capacity sits on a line and the offset between lines is the ratio).
    """
    if not series:
        raise ValueError("series is empty; allowed: one or more name -> (params, bits)")
    data = {name: _series(name, spec) for name, spec in series.items()}
    xs = [v for s in data.values() for v in s["x"] if v > 0]
    fig = LabFigure()
    if xs:
        lo, hi = min(xs) / 1.5, max(xs) * 1.5
        for k, r in enumerate(ratios):
            label = f"{r:g} bit{'' if r == 1 else 's'}/param"
            fig.add_trace(go.Scatter(x=[lo, hi], y=[r * lo, r * hi], mode="lines", name=label, hoverinfo="skip",
                                     line=dict(color="#888", dash=("dot", "dash", "dashdot")[k % 3], width=1.5)))
    point = "P=%{x:,.0f}<br>bits=%{y:,.0f}<extra>%{fullData.name}</extra>"
    for k, (name, s) in enumerate(data.items()):
        color = s.get("color", _PALETTE[k % len(_PALETTE)])
        fig.add_trace(go.Scatter(x=s["x"], y=s["y"], mode=s.get("mode", "lines+markers"), name=name,
                                 text=s.get("text"), line=dict(color=color, dash=s.get("dash", "solid")),
                                 marker=dict(size=9, symbol=s.get("symbol", "circle"), color=color),
                                 hovertemplate=point if s.get("text") is None else "%{text}<br>" + point))
    fig.update_xaxes(type="log", title_text=x_title)
    fig.update_yaxes(type="log", title_text=y_title)
    fig.update_layout(title=_title(title))
    return legend_below(fig, height)


def grouped_bars(
    categories: Sequence[object],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    hlines: Mapping[str, float] | None = None,
    text_format: str = ".2f",
    height: int = 420,
    ranges: Mapping[str, Sequence[tuple[float, float] | None]] | None = None,
) -> go.Figure:
    """Bars grouped by category (e.g. exposures), one bar per series (e.g. paper, quick run,
    precomputed run), each labelled with its value; ``None`` leaves a gap (a missing measurement) and a
    series with no values at all is left out. ``hlines``: label → y of horizontal reference lines, named
    in the legend (:func:`reference_lines`). ``ranges``: series name → one ``(low, high)`` per category
    (None: no bar), drawn as an error bar from low to high (e.g. the spread over seeds)."""
    if not series:
        raise ValueError("series is empty; allowed: one or more name -> values (one per category)")
    cats = [str(c) for c in categories]
    fig = LabFigure()
    top = max((float(y) for y in (hlines or {}).values()), default=0.0)
    for k, (name, values) in enumerate(series.items()):
        values = list(values)
        if len(values) != len(cats):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(cats)} categories")
        if all(v is None for v in values):
            continue
        top = max([top, *(float(v) for v in values if v is not None)])
        spread = list((ranges or {}).get(name, [None] * len(cats)))
        if len(spread) != len(cats):
            raise ValueError(f"ranges {name!r} has {len(spread)} values for {len(cats)} categories")
        error = None
        if any(r is not None and v is not None for r, v in zip(spread, values, strict=True)):
            top = max([top, *(float(r[1]) for r in spread if r is not None)])
            pairs = list(zip(spread, values, strict=True))
            error = dict(type="data", symmetric=False, thickness=1.2, width=3,
                         array=[None if r is None or v is None else r[1] - v for r, v in pairs],
                         arrayminus=[None if r is None or v is None else v - r[0] for r, v in pairs])
        fig.add_trace(go.Bar(x=cats, y=values, name=name, marker_color=_PALETTE[k % len(_PALETTE)],
                             text=[None if v is None else format(v, text_format) for v in values],
                             textposition="outside", textfont=dict(size=10), cliponaxis=False, error_y=error))
    if top > 0:  # room above the tallest bar for its label
        fig.update_yaxes(range=[0, 1.15 * top])
    fig.update_layout(title=_title(title), barmode="group", xaxis_title=x_title, yaxis_title=y_title,
                      xaxis_type="category")
    return legend_below(reference_lines(fig, hlines), height)


def agreement_plot(
    series: Mapping[str, object],
    *,
    band: float = 2.0,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    log: bool = True,
    height: int = 460,
) -> go.Figure:
    """Two measurements of the same quantity against each other (e.g. MAC vs MLS): points, the line
    y = x and the band y = x / band .. x × band. ``series``: name → ``(x, y)`` or a dict as in
    :func:`capacity_plot` (``text`` labels each point)."""
    if not series:
        raise ValueError("series is empty; allowed: one or more name -> (x, y)")
    if not band >= 1:
        raise ValueError(f"band={band!r} is not valid; allowed: a factor >= 1")
    data = {name: _series(name, spec) for name, spec in series.items()}
    values = [v for s in data.values() for v in (*s["x"], *s["y"]) if v > 0 or not log]
    fig = LabFigure()
    if values:
        lo, hi = min(values), max(values)
        lo, hi = (lo / 1.5, hi * 1.5) if log else (lo - 0.1 * (hi - lo + 1), hi + 0.1 * (hi - lo + 1))
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(color="#444", width=1),
                                 hoverinfo="skip"))
        if band > 1:
            for factor, label in ((band, f"×{band:g}"), (1 / band, f"÷{band:g}")):
                fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * factor, hi * factor], mode="lines", name=label,
                                         line=dict(color="#aaa", dash="dot", width=1), hoverinfo="skip",
                                         legendgroup="band", showlegend=factor > 1))
    for k, (name, s) in enumerate(data.items()):
        color = s.get("color", _PALETTE[k % len(_PALETTE)])
        fig.add_trace(go.Scatter(x=s["x"], y=s["y"], mode="markers+text" if s.get("text") is not None else "markers",
                                 textposition=label_positions(s["x"], s["y"], log=log), textfont=dict(size=11),
                                 text=s.get("text"), name=name,
                                 marker=dict(size=10, symbol=s.get("symbol", "circle"), color=color)))
    kind = "log" if log else "linear"
    fig.update_xaxes(type=kind, title_text=x_title)
    fig.update_yaxes(type=kind, title_text=y_title)
    fig.update_layout(title=_title(title))
    return legend_below(fig, height)


def label_positions(x: Sequence[float], y: Sequence[float], *, log: bool = True, close: float = 0.08) -> list[str]:
    """Text positions for point labels that keep the labels of points at nearly the same x apart.

    Points whose x lie within ``close`` (in log10 units on log axes, else relative to the x range) form a
    column; in each column the upper half is labelled above its point, the lower half below, and a
    middle point to its right, instead of every label "top center" on top of its neighbours'."""
    def position(v: float) -> float:
        return math.log10(v) if log and v > 0 else v

    xs = [position(v) for v in x]
    scale = 1.0 if log else (max(xs, default=0) - min(xs, default=0)) or 1.0
    order = sorted(range(len(xs)), key=lambda i: (xs[i], y[i]))
    out = ["top center"] * len(xs)
    column: list[int] = []
    for i in [*order, None]:
        if i is not None and (not column or abs(xs[i] - xs[column[0]]) <= close * scale):
            column.append(i)
            continue
        ranked = sorted(column, key=lambda j: y[j])
        half = len(ranked) // 2
        for rank, j in enumerate(ranked):
            middle = len(ranked) % 2 == 1 and rank == half and len(ranked) > 1
            out[j] = "middle right" if middle else "bottom center" if rank < half else "top center"
        column = [] if i is None else [i]
    return out


def curves(
    series: Mapping[str, object],
    *,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    log_x: bool = False,
    log_y: bool = False,
    hlines: Mapping[str, float] | None = None,
    height: int = 420,
    hovermode: str = "x unified",
) -> go.Figure:
    """Several curves with their own x values (e.g. loss vs exposures of runs of different lengths).

    ``series``: name → ``(x, y)`` or a dict as in :func:`capacity_plot` (``text``: shown on hover), optionally
    with ``spread``: ``(low, high)`` per point, drawn as error bars (e.g. the min and max over seeds);
    ``hlines``: label → y of horizontal reference lines (e.g. a loss plateau), named in the legend
    (:func:`reference_lines`); ``hovermode``: plotly's (``"closest"`` for scattered points)."""
    if not series:
        raise ValueError("series is empty; allowed: one or more name -> (x, y)")
    fig = LabFigure()
    for k, (name, spec) in enumerate(series.items()):
        s = _series(name, spec)
        color = s.get("color", _PALETTE[k % len(_PALETTE)])
        spread = s.get("spread")  # (low, high) per point: error bars from the spread over seeds
        error = None if spread is None else dict(
            type="data", symmetric=False, array=[h - y for h, y in zip(spread[1], s["y"], strict=True)],
            arrayminus=[y - lo for lo, y in zip(spread[0], s["y"], strict=True)], color=color, thickness=1.5)
        fig.add_trace(go.Scatter(x=s["x"], y=s["y"], mode=s.get("mode", "lines"), name=name, error_y=error,
                                 text=s.get("text"), line=dict(color=color, dash=s.get("dash", "solid")),
                                 marker=dict(color=color, symbol=s.get("symbol", "circle"), size=8)))
    fig.update_xaxes(type="log" if log_x else "linear", title_text=x_title)
    fig.update_yaxes(type="log" if log_y else "linear", title_text=y_title)
    fig.update_layout(title=_title(title), hovermode=hovermode)
    return legend_below(reference_lines(fig, hlines), height)
