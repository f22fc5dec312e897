"""Plotly figures shared by chapters, and the renderer that makes them work offline everywhere.

Why a renderer of our own: plotly's notebook renderers either embed 3.5 MB of plotly.js in every
figure or load it from a CDN. The lab's website must render offline and stay small, so each figure is
emitted as (1) the plotly mime type, which JupyterLab and VS Code render natively, and (2) a bare
``<div>`` plus a ``Plotly.newPlot`` call that uses the one copy of plotly.js the website serves
(``_config.yml``: ``html_js_files``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer

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
