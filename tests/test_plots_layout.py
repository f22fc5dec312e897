"""Figure layouts: titles, legends and reference lines never cover each other or the plot.

Two levels: the layout parameters every helper sets (always checked), and the drawn geometry: each
chapter-like figure is rendered by plotly.js in headless Chromium at the website's width and at a
narrow one, and the bounding boxes of title, legend entries, plot area, axis titles, tick labels,
slider and menus must not intersect. Without Chromium the geometry test skips (in CI it fails, as
the site's browser test does).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import plotly
import pytest

from labkit import plots

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
LONG = "cpu-full (precomputed), 1000 exposures, with a name long enough to need wrapping"


def _figures() -> dict[str, plotly.graph_objects.Figure]:
    """One figure per helper, with the series names and sizes the chapters use."""
    capacity = {"this run (quick), 100 exposures": ([2800, 5300], [600, 1500]),
                "this run (quick), 1000 exposures": ([2800, 5300], [5000, 11000]),
                "cpu-full (precomputed), 100 exposures": dict(x=[14e3, 25e3, 40e3, 58e3], y=[5.6e3, 21e3, 37e3, 53e3]),
                LONG: dict(x=[14e3, 25e3, 40e3, 58e3], y=[27e3, 60e3, 95e3, 140e3], symbol="diamond-open")}
    bars = {"paper (all params)": [1.0, 2.0], "this run, all params": [0.27, 2.06],
            "this run, non-embedding": [0.41, 3.14], "cpu-full, all params": [0.92, 2.47],
            "cpu-full, non-embedding": [1.38, 3.71]}
    losses = {f"d={d}, {e} exposures ({s} steps/exposure)": ([1, 10, e], [5, 3, 2]) for d, s in ((8, 2), (12, 4))
              for e in (100, 1000)}
    grid = [[1.0, 10.0, 100.0], [2.0, 20.0, 200.0]]
    views = {"total bits": ("bits", {"all": grid, "names": grid, "value sets": grid}),
             "parameters needed": ("parameters", {"at 2 bits/param": grid, "at 1 bit/param": grid})}
    return {
        "capacity_plot": plots.capacity_plot(capacity, title="Bits learned vs parameters (bioD, 2-layer GPTs)"),
        "grouped_bars": plots.grouped_bars([100, 1000], bars, title="Peak capacity ratio R by exposures",
                                           x_title="exposures per person", y_title="bits per parameter",
                                           hlines={"2 bits/param": 2.0, "1 bit/param": 1.0}),
        "curves": plots.curves(losses, title="Training loss at each exposure budget (this run)", x_title="exposures",
                               log_x=True, y_title="training loss (nats per token)",
                               hlines={"knows no person (value and name marginals)": 2.1, "chance": 4.0}),
        "agreement_plot": plots.agreement_plot(
            {"items": dict(x=[128, 256, 128, 256], y=[100, 200, 80, 260],
                           text=["rand d=8, MAC on 256", "rand d=12, MAC on 512", "rand d=8, MAC on 512",
                                 "rand d=12, MAC on 1,024"]),
             "bits": dict(x=[2048, 4096], y=[1600, 3200], symbol="square")},
            title="MAC against MLS (same model, same training recipe)", x_title="MLS", y_title="MAC"),
        "line_panels": plots.line_panels(
            [("people N (D = 100)", [1e3, 1e5, 1e7], {"paper (Prop 2.3)": [3e4, 3e6, 3e8], "intern notes": [1, 2, 3],
                                                     "name term alone": [1e4, 1e6, 1e8]}),
             ("value-set size D", [10, 100, 1000], {"paper (Prop 2.3)": [20, 40, 60], "intern notes": [1, 1, 1]})],
            title="bioD(N, K=4, C=2, D, L=3, T=100): paper vs notes", y_title=["bits", "bits per person"],
            log_x=True, log_y=[True, False]),
        "slider_explorer": plots.slider_explorer([1e3, 1e4, 1e5], views, [10, 100], slider_label="D",
                                                 x_title="people N", title="bioD(N, K=4, C=2, D, L=3, T=100)",
                                                 log_x=True, log_y=True),
        "loss_curve": plots.loss_curve([0, 1, 2], [3.0, 2.0, 1.0], title="Training loss on the value tokens",
                                       hlines={"chance: ln V": 3.4}),
    }


FIGURES = _figures()


# --------------------------------------------------------------------------------------------------
# Layout parameters
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_title_sits_above_the_plot_and_makes_its_own_room(name):
    title = FIGURES[name].layout.title
    assert (title.yref, title.y, title.yanchor, title.automargin) == ("paper", 1, "bottom", True)
    assert (title.xref, title.x, title.xanchor) == ("paper", 0, "left")  # away from the mode bar (top right)


@pytest.mark.parametrize("name", sorted(set(FIGURES) - {"slider_explorer", "loss_curve"}))
def test_legend_is_below_the_plot_with_room_for_it(name):
    fig = FIGURES[name]
    legend, margin = fig.layout.legend, fig.layout.margin
    assert (legend.orientation, legend.yref, legend.y, legend.yanchor) == ("h", "container", 0, "bottom")
    entries = [t for t in fig.data if t.showlegend is not False]
    columns, chars = plots.legend_columns([t.name.replace("<br>", " ") for t in entries])
    assert legend.entrywidthmode == "fraction" and legend.entrywidth * columns <= 1
    # the bottom margin holds the axis, then every legend row (a wrapped entry takes several lines)
    lines = [t.name.count("<br>") + 1 for t in entries]
    rows = sum(max(lines[i:i + columns]) for i in range(0, len(lines), columns))
    assert margin.b >= plots.TICKS_PX + rows * plots.LEGEND_LINE_PX
    assert fig.layout.height - margin.b - margin.t >= 300  # the plot area keeps its size
    for trace in entries:  # long entries are wrapped to the column width
        assert all(len(line) <= chars for line in trace.name.split("<br>")), trace.name


def test_long_legend_entries_are_wrapped_not_cut():
    name = next(t.name for t in FIGURES["capacity_plot"].data if t.name.replace("<br>", " ").startswith(LONG[:30]))
    assert "<br>" in name and name.replace("<br>", " ") == LONG
    assert plots.wrap_name("short", 10) == "short" and plots.wrap_name("a<br>b", 1) == "a<br>b"
    assert plots.legend_columns(["x" * 5])[0] == 3 and plots.legend_columns(["x" * 60])[0] == 2


def test_slider_explorer_keeps_legend_and_menu_right_of_the_plot_and_the_slider_below():
    fig = FIGURES["slider_explorer"]
    legend, menu, slider = fig.layout.legend, fig.layout.updatemenus[0], fig.layout.sliders[0]
    assert legend.x > 1 and legend.xanchor == "left" and menu.x > 1 and menu.xanchor == "left"
    assert menu.y == 1 and menu.yanchor == "top" and legend.y < menu.y  # the menu above the legend
    assert slider.pad.t >= 50  # below the x-axis title


def test_reference_lines_are_named_in_the_legend_not_annotated():
    fig = FIGURES["curves"]
    lines = [t for t in fig.data if t.xaxis == "x2"]
    assert [t.name.replace("<br>", " ") for t in lines] == ["knows no person (value and name marginals)", "chance"]
    assert len({t.line.dash for t in lines}) == 2 and all(t.hoverinfo == "skip" for t in lines)
    assert not fig.layout.annotations and not fig.layout.shapes
    overlay = fig.layout.xaxis2
    assert (overlay.overlaying, tuple(overlay.range), overlay.visible) == ("x", (0, 1), False)
    bars = FIGURES["grouped_bars"]
    assert [t.name for t in bars.data if t.xaxis == "x2"] == ["2 bits/param", "1 bit/param"]
    assert bars.layout.yaxis.range[1] > 3.71  # the tallest bar and its label fit
    assert not bars.layout.annotations


def test_reference_lines_use_a_free_axis_on_figures_with_subplots():
    fig = plots.line_panels([("N", [1, 2], {"a": [1, 2]}), ("D", [1, 2], {"a": [3, 4]})])
    plots.reference_lines(fig, {"level": 1.5})
    assert fig.data[-1].xaxis == "x3" and fig.layout.xaxis3.overlaying == "x"
    assert plots.reference_lines(fig, None) is fig and plots.reference_lines(fig, {}) is fig


def test_close_point_labels_go_above_and_below():
    positions = plots.label_positions([128, 256, 128, 256], [100, 200, 80, 260])
    assert positions == ["top center", "bottom center", "bottom center", "top center"]
    assert plots.label_positions([1, 10, 100], [1, 2, 3]) == ["top center"] * 3  # far apart: all above
    assert plots.label_positions([5, 5, 5], [1, 2, 3], log=False) == ["bottom center", "middle right", "top center"]
    points = FIGURES["agreement_plot"].data[-2]
    assert list(points.textposition) == positions


def test_one_trace_needs_no_legend_space():
    fig = plots.loss_curve([0, 1], [2.0, 1.0])
    assert fig.layout.height == 420 and fig.layout.margin.b < 100


# --------------------------------------------------------------------------------------------------
# Drawn geometry, in a browser
# --------------------------------------------------------------------------------------------------

_MEASURE = """() => {
  const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const all = (sel) => Array.from(document.querySelectorAll(sel)).filter(e => e.getBoundingClientRect().width > 0);
  return {
    title: all('.gtitle').map(box), plots: all('.draglayer .nsewdrag').map(box),
    xtitles: all('.g-xtitle text, .g-x2title text').map(box), xticks: all('.xtick text, .x2tick text').map(box),
    legend: all('.legend .traces').map(box), sliders: all('.slider-container').map(box),
    menus: all('.updatemenu-header-group').map(box), annotations: all('.annotation').map(box),
    svg: box(document.querySelector('.main-svg')),
  };
}"""


def _overlap(a, b, slack=1.0) -> bool:
    return a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack and b[1] < a[3] - slack


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("LAB_REQUIRE_BROWSER") or os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM} (CI requires it: apt-get install chromium)")
        pytest.skip(f"Chromium not installed ({CHROMIUM}); install Debian's chromium to check drawn layouts")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = chromium.new_page()
        page.set_content("<html><body style='margin:0'><div id='fig'></div></body></html>")
        page.add_script_tag(path=str(PLOTLY_JS))
        yield page
        chromium.close()


@pytest.mark.parametrize("width", [760, 560])
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_drawn_figure_has_no_overlapping_parts(browser, name, width):
    fig = json.loads(FIGURES[name].to_json())
    fig["layout"]["width"] = width
    browser.evaluate("([data, layout]) => Plotly.newPlot('fig', data, layout)", [fig["data"], fig["layout"]])
    boxes = browser.evaluate(_MEASURE)
    left, top, right, bottom = boxes["svg"]
    assert boxes["title"] and boxes["plots"]
    fixed = {"title": boxes["title"], "plot area": boxes["plots"], "x-axis title": boxes["xtitles"],
             "slider": boxes["sliders"], "menu": boxes["menus"]}
    legend = boxes["legend"]
    for i, entry in enumerate(legend):  # inside the figure, clear of each other and of everything else
        assert left - 1 <= entry[0] and entry[2] <= right + 1 and entry[3] <= bottom + 1, (name, width, entry)
        assert not any(_overlap(entry, other) for other in legend[i + 1:]), (name, width, "legend entries overlap")
        for part, found in {**fixed, "tick label": boxes["xticks"]}.items():
            assert not any(_overlap(entry, b) for b in found), (name, width, f"legend covers the {part}")
    for part, found in fixed.items():
        if part != "title":
            assert not any(_overlap(t, b) for t in boxes["title"] for b in found), (name, width, f"title on {part}")
    assert not boxes["annotations"]


def test_heatmap_panels_share_one_scale_and_check_their_shapes():
    z = [[0.1, 0.9], [0.5, 0.3], [0.2, 0.4]]
    fig = plots.heatmap_panels([("name", z, None), ("key", z, [["a", "b"]] * 3)], ["k0", "k1"],
                               ["embedding", "block 0", "block 1"], title="probes", colorbar_title="accuracy")
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 2 and [t.showscale for t in heat] == [False, True]  # one color bar for both
    assert all((t.zmin, t.zmax) == (0.0, 1.0) for t in heat) and list(heat[1].y) == ["embedding", "block 0", "block 1"]
    assert [a.text for a in fig.layout.annotations] == ["name", "key"]
    with pytest.raises(ValueError, match="panel 'bad': z must have 3 rows of 2 values"):
        plots.heatmap_panels([("bad", [[0.1, 0.2]], None)], ["k0", "k1"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="panels is empty"):
        plots.heatmap_panels([], ["k0"], ["a"])
