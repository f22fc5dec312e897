"""line_panels and slider_explorer: shared legends, and a slider/dropdown grid that needs no kernel."""

from __future__ import annotations

import plotly.io as pio
import pytest

from labkit import plots


def test_line_panels_share_colors_and_one_legend_entry_per_series():
    fig = plots.line_panels([("N", [1, 2, 3], {"a": [1, 2, 3], "b": [3, 2, 1]}),
                             ("D", [10, 20], {"a": [5, 6], "c": [1, 1]})], y_title="bits", log_y=True)
    names = [(t.name, t.showlegend, t.line.color, t.xaxis) for t in fig.data]
    assert [n for n, *_ in names] == ["a", "b", "a", "c"]
    assert [s for _, s, *_ in names] == [True, True, False, True]
    assert names[0][2] == names[2][2] != names[1][2]
    assert names[2][3] == "x2" and fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert fig.layout.yaxis.title.text == "bits" and fig.layout.xaxis2.title.text == "D"


def test_line_panels_take_settings_per_panel():
    fig = plots.line_panels([("N", [1, 2], {"a": [1, 2]}), ("D", [1, 2], {"a": [3, 4]})],
                            y_title=["bits", "bits per person"], log_x=True, log_y=[True, False])
    assert fig.layout.yaxis.title.text == "bits" and fig.layout.yaxis2.title.text == "bits per person"
    assert (fig.layout.yaxis.type, fig.layout.yaxis2.type) == ("log", "linear")
    assert fig.layout.xaxis.type == fig.layout.xaxis2.type == "log"
    with pytest.raises(ValueError, match="log_y has 3 values for 2 panels"):
        plots.line_panels([("N", [1], {"a": [1]}), ("D", [1], {"a": [1]})], log_y=[True, True, False])


def test_line_panels_validates():
    with pytest.raises(ValueError, match="panels is empty"):
        plots.line_panels([])
    with pytest.raises(ValueError, match="series 'a' has 1 values for 2 x values in panel 1"):
        plots.line_panels([("x", [1, 2], {"a": [1]})])


def _explorer():
    grid = [[1, 2, 3], [10, 20, 30]]  # two slider values, three x values
    views = {"bits": ("bits", {"total": grid, "part": [[0, 1, 1], [5, 5, 5]]}),
             "params": ("parameters", {"at 2 bits/param": [[0.5, 1, 1.5], [5, 10, 15]]})}
    return plots.slider_explorer([1, 10, 100], views, [10, 1000], slider_label="D", log_x=True, active=1)


def test_slider_explorer_embeds_every_step_and_view():
    fig = _explorer()
    assert [t.name for t in fig.data] == ["total", "part", "at 2 bits/param"]
    assert [t.visible for t in fig.data] == [True, True, False]
    assert list(fig.data[0].y) == [10, 20, 30]  # the active step is drawn first
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["10", "1000"]
    assert steps[0].args[0]["y"] == [[1, 2, 3], [0, 1, 1], [0.5, 1, 1.5]]
    buttons = fig.layout.updatemenus[0].buttons
    assert list(buttons[1].args) == [{"visible": [False, False, True]}, {"yaxis.title.text": "parameters"}]
    assert fig.layout.xaxis.type == "log"
    # all data lives in the figure JSON: nothing needs a kernel
    assert "1000" in pio.to_json(fig)


def test_slider_explorer_validates():
    with pytest.raises(ValueError, match="views is empty"):
        plots.slider_explorer([1], {}, [1], slider_label="D")
    with pytest.raises(ValueError, match="active=2"):
        plots.slider_explorer([1], {"v": ("y", {"t": [[1]]})}, [1], slider_label="D", active=2)
    with pytest.raises(ValueError, match="trace 't': grid must be 2 rows"):
        plots.slider_explorer([1], {"v": ("y", {"t": [[1]]})}, [1, 2], slider_label="D")
