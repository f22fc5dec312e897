"""Widgets react to their controls; the plotly renderer emits offline-friendly bundles."""

from __future__ import annotations

import ipywidgets as w
import plotly.io as pio
import pytest

from labkit import plots, widgets


def test_item_explorer_updates_on_slider():
    panel = widgets.item_explorer(5, lambda i: f"<b>item {i}</b>")
    slider, view = panel.children
    assert view.value == "<b>item 0</b>"
    slider.value = 3
    assert view.value == "<b>item 3</b>"
    with pytest.raises(ValueError, match="n_items=0"):
        widgets.item_explorer(0, str)


def test_calculator_recomputes_and_explains_errors():
    n = w.IntText(value=4, description="n")

    def compute(n):
        if n < 1:
            raise ValueError(f"n={n} is not valid; allowed: >= 1")
        return {"bits": n * 2.0, "items": n}

    panel = widgets.calculator({"n": n}, compute, title="demo")
    out = panel.children[-1]
    assert "<b>8</b>" in out.value
    n.value = 1000
    assert "2,000" in out.value and "1,000" in out.value
    n.value = 0
    assert "n=0 is not valid" in out.value


def test_lab_renderer_emits_plotly_json_and_html_without_plotly_js():
    plots.use_lab_renderer()
    assert pio.renderers.default == plots.RENDERER_NAME
    fig = plots.loss_curve([0, 1, 2], [3.0, 2.0, 1.0])
    bundle = pio.renderers[plots.RENDERER_NAME].to_mimebundle(fig.to_dict())
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["y"] == [3.0, 2.0, 1.0]
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html and "<div" in html
    assert len(html) < 20_000, "plotly.js must not be embedded"
    assert "cdn" not in html.lower()


def test_lab_figures_display_the_lab_bundle_without_plotly_renderers():
    import subprocess
    import sys

    code = ("import sys\nfrom labkit import plots\nplots.use_template()\n"
            "fig = plots.line_panels([('x', [1, 2], {'a': [1, 2]}), ('x', [1, 2], {'a': [2, 3]})])\n"
            "assert isinstance(fig, plots.LabFigure) and len(fig.data) == 2\n"
            "bundle = fig._repr_mimebundle_()\n"
            "key = 'application/vnd.plotly.v1+json'\n"
            "assert bundle[key] == plots.lab_bundle(fig.to_dict())[key]\n"
            "assert 'Plotly.newPlot' in bundle['text/html']\n"
            "assert 'nbformat' not in sys.modules and 'plotly.io._renderers' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    for fig in (plots.loss_curve([0, 1], [2.0, 1.0]), plots.curves({"a": ([1, 2], [3, 4])}),
                plots.grouped_bars(["x"], {"a": [1.0]})):
        assert isinstance(fig, plots.LabFigure)
