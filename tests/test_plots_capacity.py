"""capacity_plot, grouped_bars, agreement_plot and curves: the figures of chapters 2 and 3."""

from __future__ import annotations

import plotly.io as pio
import pytest

from labkit import plots


def test_capacity_plot_has_log_axes_ratio_lines_and_one_trace_per_series():
    fig = plots.capacity_plot({"1000 exposures": ([1e3, 1e4], [2.1e3, 1.9e4]),
                               "100 exposures": dict(x=[1e3, 1e4], y=[900, 1e4], text=["a", "b"], symbol="diamond")})
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"
    names = [t.name for t in fig.data]
    assert names == ["1 bit/param", "2 bits/param", "1000 exposures", "100 exposures"]
    one, two = fig.data[0], fig.data[1]
    assert [y / x for x, y in zip(one.x, one.y, strict=True)] == [1.0, 1.0]
    assert [y / x for x, y in zip(two.x, two.y, strict=True)] == [2.0, 2.0]
    assert min(two.x) < 1e3 and max(two.x) > 1e4  # the lines span the data
    assert list(fig.data[3].text) == ["a", "b"] and fig.data[3].marker.symbol == "diamond"
    pio.to_json(fig)  # serialisable for the offline renderer


def test_capacity_plot_validates():
    with pytest.raises(ValueError, match="series is empty"):
        plots.capacity_plot({})
    with pytest.raises(ValueError, match="series 'a' has 2 x values and 1 y values"):
        plots.capacity_plot({"a": ([1, 2], [1])})
    assert len(plots.capacity_plot({"a": ([], [])}).data) == 1  # no data: no ratio lines, no error


def test_grouped_bars_leave_gaps_and_draw_reference_lines():
    fig = plots.grouped_bars([100, 1000], {"paper": [1.0, 2.0], "lab": [None, 2.4], "absent": [None, None]},
                             hlines={"2 bits": 2.0})
    assert [t.type for t in fig.data] == ["bar", "bar", "scatter"] and fig.layout.barmode == "group"
    assert [t.name for t in fig.data] == ["paper", "lab", "2 bits"] and fig.layout.yaxis.range[1] > 2.4
    assert list(fig.data[0].x) == ["100", "1000"] and list(fig.data[1].text) == [None, "2.40"]
    line = fig.data[2]  # the reference line: a trace across the plot, named in the legend, not an annotation
    assert list(line.y) == [2.0, 2.0] and line.xaxis == "x2" and not fig.layout.annotations
    with pytest.raises(ValueError, match="series 'lab' has 1 values for 2 categories"):
        plots.grouped_bars([1, 2], {"lab": [1.0]})
    with pytest.raises(ValueError, match="series is empty"):
        plots.grouped_bars([1], {})


def test_agreement_plot_draws_identity_and_band():
    fig = plots.agreement_plot({"items": ([100, 200], [60, 240])}, band=2.0, x_title="MLS", y_title="MAC")
    identity, above, below, points = fig.data
    assert list(identity.y) == list(identity.x)
    assert [y / x for x, y in zip(above.x, above.y, strict=True)] == [2.0, 2.0]
    assert [y / x for x, y in zip(below.x, below.y, strict=True)] == [0.5, 0.5]
    assert above.showlegend and not below.showlegend and list(points.y) == [60, 240]
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text == "MLS"
    assert len(plots.agreement_plot({"a": ([1], [1])}, band=1.0).data) == 2  # band 1: no band lines
    with pytest.raises(ValueError, match="band=0.5 is not valid"):
        plots.agreement_plot({"a": ([1], [1])}, band=0.5)


def test_color_cycles_the_palette():
    assert plots.color(0) != plots.color(1) and plots.color(0) == plots.color(10)


def test_curves_take_their_own_x_and_reference_lines():
    fig = plots.curves({"short": ([1, 2], [3.0, 2.0]),
                        "long": dict(x=[1, 10, 100], y=[3, 1, 0.5], dash="dot", mode="markers", symbol="diamond")},
                       log_x=True, hlines={"plateau": 2.5}, x_title="exposures")
    assert [len(t.x) for t in fig.data] == [2, 3, 2] and fig.data[1].line.dash == "dot"
    assert fig.data[1].marker.symbol == "diamond" and fig.data[1].mode == "markers"
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "linear"
    assert fig.data[2].name == "plateau" and list(fig.data[2].y) == [2.5, 2.5] and fig.layout.xaxis2.type == "linear"
    with pytest.raises(ValueError, match="series is empty"):
        plots.curves({})


def test_grouped_bars_draw_ranges_as_asymmetric_error_bars():
    fig = plots.grouped_bars(["a", "b"], {"lab": [1.0, 2.0], "paper": [1.5, None]},
                             ranges={"lab": [(0.5, 1.25), None]})
    error = fig.data[0].error_y
    assert list(error.array) == [0.25, None] and list(error.arrayminus) == [0.5, None] and not error.symmetric
    assert fig.data[1].error_y.array is None  # a series without ranges has no error bars
    with pytest.raises(ValueError, match="ranges 'lab' has 1 values for 2 categories"):
        plots.grouped_bars(["a", "b"], {"lab": [1.0, 2.0]}, ranges={"lab": [(0.5, 1.5)]})
