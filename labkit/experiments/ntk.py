"""Appendix (chapter 12): Jacobians and the neural tangent kernel, from the best linear map to lazy training.

The appendix goes from linear maps of the plane (matrices, the determinant as area scaling) to the
Jacobian as the best linear map near a point (the intern notes' worked example f(x, y) = (x⁴ + 3y²x,
5y² − 2xy + 1) at (1, 2), by hand, with ``torch.func`` and by finite differences), to the Jacobian of a
network with respect to its parameters and the empirical NTK Θ(x, x') = J(x) J(x')ᵀ built from it
(``labkit.ntk``; jacot2018ntk). Its experiment measures the two sides of the lazy regime
(chizat2019lazy):

- **wide MLPs** (``labkit.ntk.NTKMLP``, NTK parameterisation) trained by full-batch gradient descent on
  a regression task on the unit circle: how far Θ moves during training as the width grows
  (lee2019wide: it stops moving, and the network evolves as its linearisation, kernel regression with
  Θ), and how close the trained network is to that linearised model;
- **the lab's tiny transformers** (``labkit.model.Transformer``) trained with the lab's recipe to
  memorize a bioD library (chapter 2's task): how far their Θ moves.

Everything the chapter shows is built here: the linear-map tables and offline slider figures, the
Jacobian checks, the grid and run function of ``python -m labkit sweep ntk``, the tables, figures and
claims, and the committed ``cpu-full`` results.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from labkit import ntk
from labkit.checks import invalid
from labkit.experiments.base import Execution, Profile, derive, load_results, results_path, run_grid
from labkit.experiments.base import provenance_line as base_provenance_line
from labkit.tables import Table, table

if TYPE_CHECKING:
    import plotly.graph_objects as go

NAME = "ntk"
CHAPTER = "12_ntk_appendix"
#: Lee et al. (lee2019wide): the relative change of Θ during training falls like width^(-1/2) (a bound;
#: faster decay is consistent with it).
PAPER_SLOPE = -0.5
#: Where the linearised model counts as matching the trained network: rms gap / rms prediction.
LINEAR_MATCH = 0.05


# --------------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """What the appendix measures.

    MLPs: ``NTKMLP`` of each width in ``widths`` and depth in ``depths`` (hidden layers; depths above 1
    only up to ``max_deep_width``), ``activation``, bias scale ``beta``, trained by full-batch gradient
    descent (``steps`` steps of learning rate ``lr``) on ``n_train`` points of the unit circle, target
    sin(``frequency`` θ), tested on ``n_test`` evenly spaced angles; ``demo_width``: the MLP whose kernel
    the chapter draws. Transformers: the lab's tiny GPTs of width ``d_models`` (``n_layer`` layers,
    ``n_head`` heads) trained with chapter 2's recipe (``exposures``, ``batch_size``, ``tf_lr``,
    ``weight_decay``) on bioD with ``K`` attributes of ``D`` = T values, names from ``name_pools``, ``N``
    people; their Θ is measured on the first ``n_probe`` people. ``seeds``: the seeds of ``python -m
    labkit sweep ntk`` (a notebook runs its own)."""

    widths: tuple[int, ...] = (16, 64, 256, 1024, 4096)
    depths: tuple[int, ...] = (1, 2)
    max_deep_width: int = 256
    activation: str = "tanh"
    beta: float = 0.1
    n_train: int = 32
    n_test: int = 64
    frequency: int = 3
    steps: int = 1000
    lr: float = 1.0
    demo_width: int = 256
    d_models: tuple[int, ...] = (16, 32)
    n_layer: int = 2
    n_head: int = 2
    K: int = 4
    D: int = 16
    name_pools: tuple[int, int] = (20, 20)
    N: int = 200
    exposures: int = 300
    batch_size: int = 128
    tf_lr: float = 3e-2
    weight_decay: float = 0.05
    n_probe: int = 32
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Expect:
    """The claim cell's thresholds: at the widest MLP Θ moves by at most ``max_change_widest`` (relative)
    and the trained network is within ``max_linear_gap`` of its linearisation; Θ of the narrowest moves
    ``min_change_ratio`` times more than that of the widest, and the fitted exponent of change against
    width is at most ``max_slope``; the transformer's Θ moves by at least ``min_transformer_change``
    (relative) and ``min_transformer_distance`` (shape), after it learned ``min_bits_fraction`` of the
    library's bits."""

    max_change_widest: float = 0.02
    max_linear_gap: float = LINEAR_MATCH
    min_change_ratio: float = 20.0
    max_slope: float = -0.4
    min_transformer_change: float = 1.0
    min_transformer_distance: float = 0.1
    min_bits_fraction: float = 0.6


QUICK = Profile(Sizes(), Expect(), Execution(processes=1, threads=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(widths=(16, 256, 2048), depths=(1,), n_train=16, n_test=32, steps=300,
                                      demo_width=64, d_models=(8,), N=32, name_pools=(8, 8), exposures=120,
                                      batch_size=16, n_probe=8),
                    expect=dict(max_change_widest=0.05, min_change_ratio=4.0, max_slope=-0.3,
                                max_linear_gap=0.1, min_bits_fraction=0.4, min_transformer_distance=0.05)),
    "quick": QUICK,
    # seven widths (16 .. 65,536) of one hidden layer and four (16 .. 1024) of two, the transformers at
    # three widths (a lower learning rate, which d_model 64 needs, and so more exposures), three seeds
    # each; a few minutes on the lab's 2-core CPU (results/README.md)
    "cpu-full": derive(QUICK, sizes=dict(widths=(16, 64, 256, 1024, 4096, 16384, 65536), max_deep_width=1024,
                                         d_models=(16, 32, 64), tf_lr=1e-2, exposures=600, seeds=(0, 1, 2)),
                       run=dict(processes=2), expect=dict(max_change_widest=0.005, min_change_ratio=100.0)),
    # paper-like: wider and deeper MLPs, more data, larger transformers. Not run yet; an estimate: the
    # parameter Jacobians of the largest runs (depth 3 at width 2048: 8.4M parameters × 384 inputs; the
    # d_model 128 transformer: 64 people × 64 logits × 0.4M parameters) take 6-13 GB, so a GPU with 16 GB
    # or more, minutes there and hours on the lab's CPU
    "full": derive(QUICK, sizes=dict(widths=(16, 64, 256, 1024, 4096, 16384, 65536, 262144), depths=(1, 2, 3),
                                     max_deep_width=2048, n_train=128, n_test=256, steps=3000,
                                     d_models=(16, 32, 64, 128), N=1000, name_pools=(40, 40), exposures=1000,
                                     tf_lr=1e-2, n_probe=64, seeds=(0, 1, 2, 3, 4)),
                   run=dict(processes=1), expect=dict(max_change_widest=0.001, min_change_ratio=300.0)),
}
#: The committed cpu-full results that the appendix shows next to its own run (absent until regenerated).
PRECOMPUTED = results_path(NAME, "cpu-full")


# --------------------------------------------------------------------------------------------------
# Linear maps of the plane
# --------------------------------------------------------------------------------------------------

#: Example linear maps (2 × 2 matrices): stretch x by 2 and squash y by 1/2, rotate by 30°, shear, reflect in
#: the diagonal, collapse the plane onto a line (rank 1, det 0), and the worked example's Jacobian at (1, 2) / 10.
EXAMPLE_MAPS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "identity": ((1.0, 0.0), (0.0, 1.0)),
    "stretch": ((2.0, 0.0), (0.0, 0.5)),
    "rotation 30°": ((math.cos(math.pi / 6), -math.sin(math.pi / 6)),
                     (math.sin(math.pi / 6), math.cos(math.pi / 6))),
    "shear": ((1.0, 1.0), (0.0, 1.0)),
    "reflection": ((0.0, 1.0), (1.0, 0.0)),
    "rank 1": ((1.0, 2.0), (0.5, 1.0)),
    "J(1, 2) / 10": ((1.6, 1.2), (-0.4, 1.8)),
}


def polygon_area(points: np.ndarray) -> float:
    """Signed area of a closed polygon (vertices in order, (m, 2)), by the shoelace formula: positive
    for counter-clockwise vertices."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


UNIT_SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])


def linear_maps_table(maps: Mapping[str, Sequence[Sequence[float]]] = EXAMPLE_MAPS) -> Table:
    """One row per map A: the images A(1, 0) and A(0, 1) (its columns), det A, and the signed area of the
    unit square's image (shoelace formula), which equals det A: the determinant is the factor by which
    A scales areas, negative when A flips orientation."""
    rows = []
    for name, a in maps.items():
        A = np.array(a, dtype=float)
        image = UNIT_SQUARE @ A.T
        # rounded, + 0.0: a determinant of 0 computed as -1e-16 must not print as "-0.000" on some machines
        rows.append({"map": name, "A(1, 0)": _vec(A[:, 0]), "A(0, 1)": _vec(A[:, 1]),
                     "det A": round(float(np.linalg.det(A)), 12) + 0.0,
                     "area of the square's image": round(polygon_area(image), 12) + 0.0})
    return table(rows, formats={"det A": ".3f", "area of the square's image": ".3f"}, index="map")


def below(x: float, floor: float = 1e-8) -> str:
    """A tiny error for a table that nbval compares across machines: "0" for exactly 0, "< 1e-08" below
    ``floor`` (float rounding, which differs between machines, decides the digits there), else the value."""
    return "0" if x == 0 else f"< {floor:.0e}" if abs(x) < floor else f"{x:.1e}"


def _vec(v: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:.3g}" for x in v) + ")"


def _title(text: str) -> dict:
    """Left-aligned above the plot area (the lab's title placement, ``labkit.plots``)."""
    return dict(text=text, x=0, xref="paper", xanchor="left", y=1, yref="paper", yanchor="bottom", pad=dict(b=14),
                automargin=True)


def _grid_lines(low: float, high: float, n: int, samples: int = 2, ys: tuple[float, float] | None = None,
                ) -> list[np.ndarray]:
    """Grid lines of the square [low, high]² (or [low, high] × ys), ``n`` per direction, each ``samples``
    points long: (samples, 2) arrays."""
    y_low, y_high = ys if ys is not None else (low, high)
    lines = []
    for x in np.linspace(low, high, n):
        lines.append(np.stack([np.full(samples, x), np.linspace(y_low, y_high, samples)], axis=1))
    for y in np.linspace(y_low, y_high, n):
        lines.append(np.stack([np.linspace(low, high, samples), np.full(samples, y)], axis=1))
    return lines


def _coords(values: np.ndarray) -> np.ndarray:
    """Plot coordinates as float32, which plotly stores base64-encoded (a quarter of the size of a list
    of numbers in the notebook; more precision than a figure can show)."""
    return np.asarray(values, dtype=np.float32)


def _joined(lines: Iterable[np.ndarray]) -> tuple[list[float | None], list[float | None]]:
    """Polylines as one trace's x and y, separated by None (one trace draws the whole grid)."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for line in lines:
        xs += [round(float(v), 4) for v in line[:, 0]] + [None]
        ys += [round(float(v), 4) for v in line[:, 1]] + [None]
    return xs, ys


def _slider(names: Sequence[str], prefix: str) -> dict:
    """A slider whose steps show plotly frames by name: it works on a static page, without a kernel."""
    show = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    steps = [dict(method="animate", label=name, args=[[name], show]) for name in names]
    return dict(active=0, steps=steps, currentvalue=dict(prefix=prefix), pad=dict(t=40), x=0, len=1.0)


def figure_linear_maps(maps: Mapping[str, Sequence[Sequence[float]]] = EXAMPLE_MAPS, extent: float = 2.0) -> go.Figure:
    """The plane under each map of ``maps``, one slider step per map (plotly frames, offline): the grid
    [-extent, extent]² in grey and its image in blue, the unit square's image shaded (area |det A|), and
    the images of (1, 0) and (0, 1), the matrix's columns."""
    import plotly.graph_objects as go

    from labkit import plots

    grid = _grid_lines(-extent, extent, int(2 * extent) + 1)

    def traces(A: np.ndarray) -> list:
        gx, gy = _joined([line @ A.T for line in grid])
        square = np.vstack([UNIT_SQUARE, UNIT_SQUARE[:1]]) @ A.T
        arrow = dict(symbol="arrow", angleref="previous", size=12)

        def column(j: int, name: str, color: int) -> go.Scatter:
            return go.Scatter(x=[0, A[0, j]], y=[0, A[1, j]], mode="lines+markers", name=name, marker=arrow,
                              line=dict(color=plots.color(color), width=3))

        return [go.Scatter(x=gx, y=gy, mode="lines", name="image of the grid",
                           line=dict(color=plots.color(0), width=1)),
                go.Scatter(x=_coords(square[:, 0]), y=_coords(square[:, 1]), mode="lines", fill="toself",
                           name="image of the unit square", line=dict(color=plots.color(2))),
                column(0, "A(1, 0): first column", 1), column(1, "A(0, 1): second column", 3)]

    def note(name: str, A: np.ndarray) -> list[dict]:
        text = (f"{name}<br>A = [[{A[0, 0]:.3g}, {A[0, 1]:.3g}], [{A[1, 0]:.3g}, {A[1, 1]:.3g}]]"
                f"<br>det A = {np.linalg.det(A):.3g}")
        return [dict(text=text, x=0.01, y=0.99, xref="paper", yref="paper", xanchor="left", yanchor="top",
                     showarrow=False, align="left", bgcolor="rgba(255,255,255,0.8)")]

    matrices = {name: np.array(a, dtype=float) for name, a in maps.items()}
    first = next(iter(matrices))
    gx, gy = _joined(grid)
    fig = plots.LabFigure([go.Scatter(x=gx, y=gy, mode="lines", name="the grid (before)", hoverinfo="skip",
                                      line=dict(color="#ccc", width=1)), *traces(matrices[first])])
    fig.frames = [go.Frame(name=name, data=traces(A), traces=[1, 2, 3, 4], layout=dict(annotations=note(name, A)))
                  for name, A in matrices.items()]
    reach = 1.15 * max(extent * float(np.abs(A).sum(axis=1).max()) for A in matrices.values())
    fig.update_layout(title=_title("A linear map moves (1, 0) and (0, 1) to its columns and scales areas by det A"),
                      annotations=note(first, matrices[first]), sliders=[_slider(list(matrices), "map: ")])
    fig.update_xaxes(range=[-reach, reach], zeroline=True)
    fig.update_yaxes(range=[-reach, reach], scaleanchor="x", scaleratio=1, zeroline=True)
    return _room_for_slider(plots.legend_below(fig, 560))


#: Pixels a slider takes under a plot's tick labels (its rail, tick labels and current value).
SLIDER_PX = 100


def _room_for_slider(fig: go.Figure) -> go.Figure:
    """Put the figure's slider right under the plot's tick labels and grow the figure by its height, so
    that it sits between the plot and the legend below (``labkit.plots.legend_below``), covering neither."""
    margin = fig.layout.margin
    fig.update_layout(height=fig.layout.height + SLIDER_PX, margin=dict(b=margin.b + SLIDER_PX))
    fig.layout.sliders[0].update(y=0, yanchor="top", pad=dict(t=40, b=0))
    return fig


# --------------------------------------------------------------------------------------------------
# The worked example: a Jacobian by hand, by torch.func and by finite differences
# --------------------------------------------------------------------------------------------------

WORKED_POINT = (1.0, 2.0)
#: ∂(x⁴ + 3y²x, 5y² − 2xy + 1)/∂(x, y) = [[4x³ + 3y², 6xy], [−2y, 10y − 2x]] at (1, 2).
WORKED_JACOBIAN = ((16.0, 12.0), (-4.0, 18.0))


def worked_example(v: torch.Tensor) -> torch.Tensor:
    """The intern notes' map f(x, y) = (x⁴ + 3y²x, 5y² − 2xy + 1), on a tensor v = (x, y)."""
    x, y = v[0], v[1]
    return torch.stack([x**4 + 3 * y**2 * x, 5 * y**2 - 2 * x * y + 1])


def worked_jacobian(x: float, y: float) -> np.ndarray:
    """The worked example's Jacobian derived by hand: [[4x³ + 3y², 6xy], [−2y, 10y − 2x]]."""
    return np.array([[4 * x**3 + 3 * y**2, 6 * x * y], [-2 * y, 10 * y - 2 * x]])


def _worked_numpy(points: np.ndarray) -> np.ndarray:
    x, y = points[..., 0], points[..., 1]
    return np.stack([x**4 + 3 * y**2 * x, 5 * y**2 - 2 * x * y + 1], axis=-1)


def jacobian_methods(f: Callable[[torch.Tensor], torch.Tensor] = worked_example,
                     point: Sequence[float] = WORKED_POINT, eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """The Jacobian of ``f`` at ``point`` three ways (float64): ``torch.func.jacrev`` (reverse mode),
    ``jacfwd`` (forward mode) and central finite differences with step ``eps``."""
    x = torch.tensor(point, dtype=torch.float64)
    return {"jacrev": ntk.jacobian(f, x, mode="rev"), "jacfwd": ntk.jacobian(f, x, mode="fwd"),
            f"finite differences (ε = {eps:g})": ntk.finite_differences(f, x, eps)}


def jacobian_table(found: Mapping[str, torch.Tensor], by_hand: Sequence[Sequence[float]] = WORKED_JACOBIAN) -> Table:
    """One row per method: the Jacobian's four entries and the largest difference from the hand-derived one."""
    exact = np.array(by_hand, dtype=float)
    rows = [{"method": "by hand", "J11": exact[0, 0], "J12": exact[0, 1], "J21": exact[1, 0], "J22": exact[1, 1],
             "max |J − by hand|": 0.0}]
    for name, J in found.items():
        J = J.detach().double().numpy()
        rows.append({"method": name, "J11": J[0, 0], "J12": J[0, 1], "J21": J[1, 0], "J22": J[1, 1],
                     "max |J − by hand|": float(np.abs(J - exact).max())})
    entries = {key: ".6f" for key in ("J11", "J12", "J21", "J22")}
    return table(rows, formats={**entries, "max |J − by hand|": below}, index="method")


#: Points of the local-Jacobian figure (the first is the worked example's) and half the side of the square.
LOCAL_POINTS = ((1.0, 2.0), (0.3, 0.4), (0.7, 1.0), (1.4, 0.6), (1.2, 1.5), (0.4, 2.2))
LOCAL_HALF = 0.15
DOMAIN = ((0.0, 1.6), (0.0, 2.4))


def _square(center: Sequence[float], half: float, per_side: int = 12) -> np.ndarray:
    """The boundary of the square of half-side ``half`` around ``center``, counter-clockwise, closed."""
    t = np.linspace(-half, half, per_side, endpoint=False)
    cx, cy = center
    sides = [np.stack([cx + t, np.full_like(t, cy - half)], 1), np.stack([np.full_like(t, cx + half), cy + t], 1),
             np.stack([cx - t, np.full_like(t, cy + half)], 1), np.stack([np.full_like(t, cx - half), cy - t], 1)]
    boundary = np.vstack(sides)
    return np.vstack([boundary, boundary[:1]])


def area_ratio(center: Sequence[float], half: float, f: Callable[[np.ndarray], np.ndarray] = _worked_numpy) -> float:
    """Area of f's image of the square around ``center`` over the square's area (boundary densely
    sampled, shoelace formula): tends to det J(center) as ``half`` → 0."""
    boundary = _square(center, half, per_side=400)[:-1]
    return polygon_area(f(boundary)) / (2 * half) ** 2


def local_jacobian_table(points: Sequence[Sequence[float]] = LOCAL_POINTS, halves: Sequence[float] = (LOCAL_HALF, 0.01),
                         ) -> Table:
    """Per point p: J(p) of the worked example (by hand), det J(p), and the area ratio of f's image of a
    small square around p for each half-side in ``halves``: the determinant is the local area scaling."""
    rows = []
    for p in points:
        J = worked_jacobian(*p)
        row = {"p": _vec(p), "J(p)": "[" + ", ".join(_vec(r) for r in J) + "]", "det J(p)": float(np.linalg.det(J))}
        row.update({f"area ratio, h = {h:g}": area_ratio(p, h) for h in halves})
        rows.append(row)
    formats = {"det J(p)": ".2f", **{f"area ratio, h = {h:g}": ".2f" for h in halves}}
    return table(rows, formats=formats, index="p")


def figure_local_jacobian(points: Sequence[Sequence[float]] = LOCAL_POINTS, half: float = LOCAL_HALF) -> go.Figure:
    """The worked example f near a slider-chosen point p (plotly frames, offline). Left: the domain with a
    small square around p. Right, zoomed around f(p): the image of the domain's grid (grey), f's image of
    the square (curved, blue) and the best linear map's image f(p) + J(p)(square − p) (a parallelogram,
    dashed), which hugs it."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from labkit import plots

    (x0, x1), (y0, y1) = DOMAIN
    grid = _grid_lines(x0, x1, 9, samples=30, ys=(y0, y1))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14, figure=plots.LabFigure())
    gx, gy = _joined(grid)
    ix, iy = _joined([_worked_numpy(line) for line in grid])
    fig.add_trace(go.Scatter(x=gx, y=gy, mode="lines", name="grid", line=dict(color="#bbb", width=1),
                             hoverinfo="skip", legendgroup="grid"), row=1, col=1)
    fig.add_trace(go.Scatter(x=ix, y=iy, mode="lines", name="grid", line=dict(color="#bbb", width=1),
                             hoverinfo="skip", legendgroup="grid", showlegend=False), row=1, col=2)

    def traces(p: Sequence[float]) -> list:
        square = _square(p, half)
        image = _worked_numpy(square)
        J, fp = worked_jacobian(*p), _worked_numpy(np.array(p))
        linear = fp + (square - np.array(p)) @ J.T
        return [go.Scatter(x=_coords(square[:, 0]), y=_coords(square[:, 1]), mode="lines", fill="toself",
                           name="square around p", line=dict(color=plots.color(0)), xaxis="x", yaxis="y"),
                go.Scatter(x=[p[0]], y=[p[1]], mode="markers", name="p", marker=dict(color="black", size=8),
                           xaxis="x", yaxis="y"),
                go.Scatter(x=_coords(image[:, 0]), y=_coords(image[:, 1]), mode="lines", fill="toself",
                           name="f(square): the true image", line=dict(color=plots.color(0)), xaxis="x2", yaxis="y2"),
                go.Scatter(x=_coords(linear[:, 0]), y=_coords(linear[:, 1]), mode="lines",
                           name="f(p) + J(p)(square − p): the best linear map",
                           line=dict(color=plots.color(1), dash="dash", width=2), xaxis="x2", yaxis="y2")]

    def layout(p: Sequence[float]) -> dict:
        J, fp = worked_jacobian(*p), _worked_numpy(np.array(p))
        image = _worked_numpy(_square(p, half))
        span = 1.15 * float(np.max(np.abs(image - fp)))
        text = (f"p = {_vec(p)}: J(p) = [{_vec(J[0])}, {_vec(J[1])}], det J(p) = {np.linalg.det(J):.3g}<br>"
                f"area of f(square) / area of square = {area_ratio(p, half):.3g}")
        note = dict(text=text, x=0, y=1.02, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                    showarrow=False, align="left")
        return dict(xaxis2=dict(range=[fp[0] - span, fp[0] + span]), yaxis2=dict(range=[fp[1] - span, fp[1] + span]),
                    annotations=[note])

    first = points[0]
    for trace in traces(first):
        fig.add_trace(trace)
    names = [_vec(p) for p in points]
    fig.frames = [go.Frame(name=name, data=traces(p), traces=[2, 3, 4, 5], layout=layout(p))
                  for name, p in zip(names, points, strict=True)]
    fig.update_layout(**layout(first), sliders=[_slider(names, "p = ")],
                      title=_title("The best linear map near p: f(p + h) ≈ f(p) + J(p) h"))
    fig.update_xaxes(range=[x0 - 0.1, x1 + 0.1], title_text="x", row=1, col=1)
    fig.update_yaxes(range=[y0 - 0.1, y1 + 0.1], scaleanchor="x", scaleratio=1, title_text="y", row=1, col=1)
    fig.update_xaxes(title_text="f₁(x, y), zoomed around f(p)", row=1, col=2)
    fig.update_yaxes(scaleanchor="x2", scaleratio=1, title_text="f₂(x, y)", row=1, col=2)
    fig = plots.legend_below(fig, 520)
    fig.update_layout(margin=dict(t=110))
    fig.layout.title.pad = dict(b=44)
    return _room_for_slider(fig)


# --------------------------------------------------------------------------------------------------
# The Jacobian of a tiny network with respect to its parameters
# --------------------------------------------------------------------------------------------------


def tiny_network(seed: int = 0) -> ntk.NTKMLP:
    """A 2 → 3 → 1 tanh network (NTK parameterisation, 13 parameters)."""
    return ntk.NTKMLP(2, 3, depth=1, seed=seed).double()


def param_jacobian_table(model: torch.nn.Module, x: torch.Tensor, eps: float = 1e-6) -> Table:
    """Per parameter tensor of ``model``: its shape, the shape of ∂f(x)/∂θ (``labkit.ntk.param_jacobian``,
    one example, one output) and the largest difference from central finite differences in that tensor."""
    from torch.func import functional_call

    jac = ntk.param_jacobian(model, x.unsqueeze(0))
    params = {name: p.detach() for name, p in model.named_parameters()}
    rows = []
    for name, p in params.items():
        def f(value: torch.Tensor, name: str = name) -> torch.Tensor:
            return functional_call(model, {**params, name: value}, (x.unsqueeze(0),)).reshape(-1)

        fd = ntk.finite_differences(f, p, eps)
        rows.append({"parameter": name, "shape": str(tuple(p.shape)), "∂f/∂θ shape": str(tuple(jac[name].shape[2:])),
                     "max |jacrev − finite differences|": float((jac[name][0].double() - fd).abs().max())})
    return table(rows, formats={"max |jacrev − finite differences|": below})


# --------------------------------------------------------------------------------------------------
# Data: a regression on the unit circle, and a bioD library
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Circle:
    """Points x = (cos θ, sin θ) of the unit circle with targets y = sin(k θ): ``train`` (random angles,
    sorted, so that kernel matrices show their structure) and ``test`` (evenly spaced angles)."""

    angles: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    test_angles: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def circle(n_train: int, n_test: int, frequency: int, seed: int = 0) -> Circle:
    """The MLPs' regression task (``Circle``); the training angles are drawn from ``seed``."""
    generator = torch.Generator().manual_seed(10_000 + int(seed))
    angles = (torch.rand(n_train, generator=generator, dtype=torch.float64) * 2 * math.pi).sort().values
    test = torch.arange(n_test, dtype=torch.float64) * (2 * math.pi / n_test)

    def points(a: torch.Tensor) -> torch.Tensor:
        return torch.stack([a.cos(), a.sin()], dim=1).float()

    return Circle(angles, points(angles), torch.sin(frequency * angles).float(), test, points(test),
                  torch.sin(frequency * test).float())


def mlp_config(sizes: Sizes, width: int, depth: int = 1, seed: int = 0, details: bool = True) -> dict[str, Any]:
    """The run config of one MLP of the grid (``details``: keep the kernels, spectra and predictions)."""
    return {"kind": "mlp", "width": int(width), "depth": int(depth), "activation": sizes.activation,
            "beta": float(sizes.beta), "n_train": sizes.n_train, "n_test": sizes.n_test,
            "frequency": sizes.frequency, "steps": sizes.steps, "lr": float(sizes.lr), "seed": int(seed),
            "details": bool(details)}


def transformer_config(sizes: Sizes, d_model: int, seed: int = 0, details: bool = True) -> dict[str, Any]:
    """The run config of one transformer of the grid (keys of ``labkit.data.registry`` and
    ``labkit.experiments.models``; ``details`` as in ``mlp_config``)."""
    return {"kind": "transformer", "data": "biod", "K": sizes.K, "C": 1, "D": sizes.D, "L": 1, "T": sizes.D,
            "name_pools": list(sizes.name_pools), "N": sizes.N, "model": "tiny", "d_model": int(d_model),
            "n_layer": sizes.n_layer, "n_head": sizes.n_head, "exposures": sizes.exposures,
            "batch_size": sizes.batch_size, "lr": float(sizes.tf_lr), "weight_decay": float(sizes.weight_decay),
            "n_probe": sizes.n_probe, "seed": int(seed), "details": bool(details)}


def grid(sizes: Sizes, seeds: Iterable[int] = (0,)) -> list[dict[str, Any]]:
    """Every MLP (width × depth, depths above 1 up to ``max_deep_width``) and every transformer width,
    for each seed; the runs of the first seed keep their details (kernels, spectra, predictions: what
    the figures draw), the others only their numbers, which keeps results files small."""
    configs = []
    seeds = list(seeds)
    for seed in seeds:
        details = seed == seeds[0]
        for depth in sizes.depths:
            widths = [w for w in sizes.widths if depth == 1 or w <= sizes.max_deep_width]
            configs += [mlp_config(sizes, w, depth, seed, details) for w in widths]
        configs += [transformer_config(sizes, d, seed, details) for d in sizes.d_models]
    return configs


def library(config: Mapping[str, Any]):
    """The transformer's bioD library and its model (chapter 2's data and tiny GPT)."""
    from labkit.data.registry import make_dataset
    from labkit.experiments.models import model_config
    from labkit.model import Transformer

    data = make_dataset(config, int(config["N"]))
    return data, Transformer(model_config(config, data), seed=int(config.get("seed", 0)))


def value_logits(data) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``output(logits, tokens)`` for ``labkit.ntk``: the logits over the T value tokens at the positions
    that predict each attribute's value, (K, T) per person: what memorizing the library changes."""
    positions = torch.tensor([data.value_start(k) - 1 for k in range(data.K)])
    first = data.vocab.offset("t")
    return lambda logits, tokens: logits[positions, first:first + data.T]


# --------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------


def _eigs(kernel: torch.Tensor) -> list[float]:
    return [float(f"{v:.6g}") for v in torch.linalg.eigvalsh(kernel).flip(0).tolist()]


def _details(config: Mapping[str, Any], details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` when the config keeps them (``grid``), else nothing."""
    return dict(details) if config.get("details", True) else {}


def _cosine(kernel: torch.Tensor) -> list[list[float]]:
    """Θ(x, x') / √(Θ(x, x) Θ(x', x')): the cosine of the two inputs' features, rounded for storage."""
    d = kernel.diagonal().clamp_min(1e-300).sqrt()
    return [[round(float(v), 3) for v in row] for row in kernel / d[:, None] / d[None, :]]


def linearized_predictions(theta_train: torch.Tensor, theta_test: torch.Tensor, f0_train: torch.Tensor,
                           f0_test: torch.Tensor, y: torch.Tensor, lr: float, steps: int | None) -> torch.Tensor:
    """Test predictions of the network's linearisation after ``steps`` of full-batch gradient descent on
    ½·mean (f − y)² with learning rate ``lr`` (lee2019wide):

        f_t(x) = f_0(x) + Θ(x, X) Θ⁻¹ (I − (I − lr Θ / n)^t) (y − f_0(X)),

    Θ = Θ(X, X) at initialisation, n = len(X); ``steps=None`` gives t → ∞, kernel regression with Θ
    (ridgeless: Θ⁻¹ is applied in its eigenbasis, directions with λ ≈ 0 dropped)."""
    n = len(y)
    lam, U = torch.linalg.eigh(theta_train.double())
    residual = U.T @ (y.double() - f0_train.double())
    floor = 1e-12 * float(lam.max())
    safe = lam.clamp_min(floor)
    if steps is None:
        factor = torch.where(lam > floor, 1 / safe, torch.zeros_like(lam))
    else:  # (1 - (1 - a)^t) / λ, a = lr λ / n, written with expm1/log1p so that small λ stay exact
        a = (lr * lam / n).clamp(max=1.999)
        shrink = -torch.expm1(steps * torch.log1p(-a.clamp(min=-0.999)))
        factor = torch.where(lam > floor, shrink / safe, torch.full_like(lam, lr * steps / n))
    return f0_test.double() + theta_test.double() @ (U @ (factor * residual))


def _rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean())


def run_mlp(config: Mapping[str, Any], device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train one ``NTKMLP`` by full-batch gradient descent and measure how far its Θ moved and how close
    it stayed to its linearisation (see ``run``)."""
    data = circle(int(config["n_train"]), int(config["n_test"]), int(config["frequency"]), int(config["seed"]))
    model = ntk.NTKMLP(2, int(config["width"]), int(config["depth"]), activation=config["activation"],
                       beta=float(config["beta"]), seed=int(config["seed"])).to(device)
    x, y, x_test = data.x.to(device), data.y.to(device), data.x_test.to(device)
    theta0 = ntk.empirical_ntk(model, x)
    theta0_test = ntk.empirical_ntk(model, x_test, x)
    first_layer = model.weights[0].detach().clone()
    with torch.no_grad():
        f0, f0_test = model(x), model(x_test)
    steps, lr = int(config["steps"]), float(config["lr"])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        loss = 0.5 * (model(x) - y).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 20) == 0 or step == steps - 1:
            losses.append((step + 1, loss.item()))
    theta1 = ntk.empirical_ntk(model, x)
    with torch.no_grad():
        net = model(x_test).double().cpu()
        final = float(0.5 * (model(x) - y).pow(2).mean())
    linear = linearized_predictions(theta0, theta0_test, f0, f0_test, y, lr, steps).cpu()
    kernel = linearized_predictions(theta0, theta0_test, f0, f0_test, y, lr, None).cpu()
    truth = data.y_test.double()
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "rel_change": ntk.relative_change(theta0, theta1),
            "kernel_distance": ntk.kernel_distance(theta0, theta1),
            "weight_change": float((model.weights[0].detach() - first_layer).norm() / first_layer.norm()),
            "train_loss": final, "loss_curve": {"steps": [s for s, _ in losses], "losses": [v for _, v in losses]},
            "test_mse_net": _mse(net, truth), "test_mse_linear": _mse(linear, truth),
            "test_mse_kernel": _mse(kernel, truth),
            "linear_gap": _rms(net - linear) / _rms(linear), "kernel_gap": _rms(net - kernel) / _rms(kernel),
            **_details(config, {
                "eigs_before": _eigs(theta0), "eigs_after": _eigs(theta1),
                "kernel_before": _cosine(theta0), "kernel_after": _cosine(theta1),
                "predictions": {name: [round(float(v), 5) for v in values] for name, values in (
                    ("angle", data.test_angles), ("truth", truth), ("net", net), ("linearized", linear),
                    ("kernel regression", kernel))}})}


def run_transformer(config: Mapping[str, Any], device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train one of the lab's tiny transformers on its bioD library with chapter 2's recipe and measure
    how far its Θ (value logits of the first ``n_probe`` people) moved (see ``run``)."""
    from labkit.measure import bits_learned
    from labkit.train import TrainConfig, train

    data, model = library(config)
    model.to(device)
    probe = data.exposure(0).tokens[:int(config["n_probe"])].to(device)
    output = value_logits(data)
    theta0 = ntk.empirical_ntk(model, probe, output=output)
    recipe = TrainConfig(exposures=int(config["exposures"]), batch_size=int(config["batch_size"]),
                         lr=float(config["lr"]), weight_decay=float(config["weight_decay"]), seed=int(config["seed"]))
    history = train(model, data, recipe, device=device, progress=False)
    theta1 = ntk.empirical_ntk(model, probe, output=output)
    found = bits_learned(model, data, device=device)
    return {"params": found.params, "rel_change": ntk.relative_change(theta0, theta1),
            "kernel_distance": ntk.kernel_distance(theta0, theta1),
            "trace_ratio": float(theta1.trace() / theta0.trace()), "bits": found.bits,
            "information_bits": found.information_bits, "bits_fraction": found.bits / found.information_bits,
            "bits_per_param": found.bits_per_param, "final_loss": history.final_loss, "steps": history.total_steps,
            "history": history.summary(20),
            **_details(config, {"eigs_before": _eigs(theta0), "eigs_after": _eigs(theta1),
                                "kernel_before": _cosine(theta0), "kernel_after": _cosine(theta1)})}


def run(config: dict[str, Any]) -> dict[str, Any]:
    """One run of the grid (``config["kind"]``), on a GPU when one is visible, else on the CPU.

    ``mlp``: Θ on the training inputs before and after full-batch gradient descent: ``rel_change`` =
    ‖Θ_T − Θ_0‖_F / ‖Θ_0‖_F, ``kernel_distance`` (shape only), ``weight_change`` (first layer,
    relative); test errors of the trained network, of its linearisation at the same step
    (``linearized_predictions``) and of kernel regression with Θ_0 (t → ∞), and the rms gaps between
    the network and those two; eigenvalues and cosine-normalised kernels before and after; the test
    predictions. ``transformer``: the same kernel measures on the value logits of the probe people,
    the bits learned (``labkit.measure.bits_learned``) and the training history.
    """
    from labkit.runtime import resolve_device

    t0 = time.perf_counter()
    kind, device = config.get("kind"), resolve_device("auto")
    if kind == "mlp":
        out = run_mlp(config, device)
    elif kind == "transformer":
        out = run_transformer(config, device)
    else:
        raise invalid("kind", kind, "'mlp', 'transformer'")
    return {**out, "wall_time": time.perf_counter() - t0, "device": str(device), "threads": torch.get_num_threads()}


def cost(config: Mapping[str, Any]) -> float:
    """Rough relative cost, for the order in which a sweep starts its runs: MLP steps × parameters,
    transformer steps × 400 d_model² (roughly calibrated on the lab's CPU, Jacobians included)."""
    if config.get("kind") == "mlp":
        width, depth = int(config["width"]), int(config["depth"])
        return float(config["steps"]) * (4 * width + (depth - 1) * width**2 + 2000)
    steps = math.ceil(int(config["N"]) / int(config["batch_size"])) * int(config["exposures"])
    return float(steps) * 400 * int(config["d_model"]) ** 2


def sweep(profile: Profile[Sizes, Expect], seed: int = 0, results_dir: str | None = None, **kwargs: Any):
    """Run the appendix's grid for one seed through ``labkit.sweep``; returns the ``SweepReport``."""
    return run_grid(grid(profile.sizes, (seed,)), run, profile.run, results_dir, cost=cost, prefix=NAME, **kwargs)


# --------------------------------------------------------------------------------------------------
# The kernels the chapter draws before running the grid
# --------------------------------------------------------------------------------------------------


@dataclass
class Kernels:
    """Θ at initialisation of the demo MLP (on the circle's training inputs) and of the first transformer
    of the grid (on its probe people), with the inputs."""

    mlp: torch.Tensor
    transformer: torch.Tensor
    circle: Circle
    mlp_width: int
    d_model: int


def kernels_at_init(sizes: Sizes, seed: int = 0) -> Kernels:
    """``Kernels`` of the profile's demo MLP and first transformer, at initialisation."""
    data = circle(sizes.n_train, sizes.n_test, sizes.frequency, seed)
    mlp = ntk.NTKMLP(2, sizes.demo_width, sizes.depths[0], activation=sizes.activation, beta=sizes.beta, seed=seed)
    config = transformer_config(sizes, sizes.d_models[0], seed)
    bio, model = library(config)
    probe = bio.exposure(0).tokens[:sizes.n_probe]
    return Kernels(ntk.empirical_ntk(mlp, data.x), ntk.empirical_ntk(model, probe, output=value_logits(bio)), data,
                   sizes.demo_width, sizes.d_models[0])


def kernel_checks(kernels: Mapping[str, torch.Tensor]) -> Table:
    """Per kernel: its size, the largest asymmetry |Θ − Θᵀ| relative to max |Θ|, and its smallest and
    largest eigenvalues (a Gram matrix J Jᵀ: symmetric, eigenvalues ≥ 0 up to rounding)."""
    rows = []
    for name, K in kernels.items():
        eigs = torch.linalg.eigvalsh(K)
        rows.append({"kernel": name, "n": K.shape[0], "asymmetry": float((K - K.T).abs().max() / K.abs().max()),
                     "smallest eigenvalue": float(eigs[0]), "largest eigenvalue": float(eigs[-1]),
                     "smallest / largest": float(eigs[0] / eigs[-1])})
    return table(rows, formats={"asymmetry": ".1e", "smallest eigenvalue": ".2e", "largest eigenvalue": ".3g",
                                "smallest / largest": ".1e"}, index="kernel")


def is_psd(K: torch.Tensor, tol: float = 1e-10) -> bool:
    """Symmetric (to ``tol`` of max |Θ|) with no eigenvalue below −``tol`` × the largest."""
    eigs = torch.linalg.eigvalsh(K)
    return bool((K - K.T).abs().max() <= tol * K.abs().max() and eigs[0] >= -tol * eigs[-1])


def figure_kernels(panels: Mapping[str, Sequence[Sequence[float]] | torch.Tensor], title: str, rows: int = 1,
                   ) -> go.Figure:
    """Heatmaps of cosine-normalised kernels Θ(x, x') / √(Θ(x, x) Θ(x', x')), one panel per entry of
    ``panels`` (a kernel tensor, normalised here, or an already normalised nested list), on one color scale."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from labkit import plots

    names = list(panels)
    cols = math.ceil(len(names) / rows)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.08, vertical_spacing=0.14,
                        figure=plots.LabFigure())
    for i, name in enumerate(names):
        value = panels[name]
        # float32 arrays: plotly stores them base64-encoded, a quarter of the size of a list of numbers
        matrix = np.asarray(_cosine(value) if isinstance(value, torch.Tensor) else value, dtype=np.float32)
        at = dict(row=i // cols + 1, col=i % cols + 1)
        fig.add_trace(go.Heatmap(z=matrix, coloraxis="coloraxis", name=name,
                                 hovertemplate="i=%{y}, j=%{x}: %{z:.3f}<extra></extra>"), **at)
        # the diagonal Θ(x, x), where every cosine is 1 (also the trace the website's browser test finds)
        n = len(matrix) - 1
        fig.add_trace(go.Scatter(x=[0, n], y=[0, n], mode="lines", name="x = x′", hoverinfo="skip",
                                 line=dict(color="rgba(0,0,0,0.35)", width=1, dash="dot"), showlegend=False), **at)
    for k, name in enumerate(names, start=1):
        n, suffix = len(panels[name]), "" if k == 1 else str(k)
        # square cells: the axes shrink their domain to the matrix, rows from the top as in a matrix
        fig.layout[f"xaxis{suffix}"].update(range=[-0.5, n - 0.5], constrain="domain", showgrid=False)
        fig.layout[f"yaxis{suffix}"].update(range=[n - 0.5, -0.5], constrain="domain", showgrid=False,
                                            scaleanchor=f"x{suffix}")
    fig.update_layout(title=_title(title), height=330 * rows + 110, margin=dict(t=110, b=40, l=50, r=30),
                      coloraxis=dict(colorscale="RdBu", cmin=-1, cmax=1, reversescale=True,
                                     colorbar=dict(title="cosine")))
    fig.layout.title.pad = dict(b=36)  # above the panels' own titles
    return fig


def before_after(records: Iterable[Mapping[str, Any]], depth: int = 1) -> dict[str, list[list[float]]]:
    """The stored cosine-normalised kernels of the narrowest and widest MLP of ``depth`` and of the first
    transformer (seed 0, or the smallest seed present), before training and then after it: the panels of
    ``figure_kernels(..., rows=2)``."""
    records = sorted((r for r in records if "kernel_before" in r["result"]), key=lambda r: r["config"]["seed"])
    mlps: dict[int, Mapping[str, Any]] = {}
    for r in records:
        if r["config"]["kind"] == "mlp" and r["config"]["depth"] == depth:
            mlps.setdefault(r["config"]["width"], r)
    chosen = [(f"MLP width {w:,}", mlps[w]) for w in sorted(mlps)[:: max(1, len(mlps) - 1)]]
    transformers = [r for r in records if r["config"]["kind"] == "transformer"]
    if transformers:
        first = min(transformers, key=lambda r: r["config"]["d_model"])
        chosen.append((f"transformer d_model {first['config']['d_model']}", first))
    panels = {f"{name}: Θ_0": r["result"]["kernel_before"] for name, r in chosen}
    panels.update({f"{name}: Θ_T": r["result"]["kernel_after"] for name, r in chosen})
    return panels


def spectra_before_after(records: Iterable[Mapping[str, Any]]) -> dict[str, list[float]]:
    """The stored eigenvalues of Θ before and after training of the widest depth-1 MLP and of the first
    transformer (the runs :func:`before_after` draws), for :func:`figure_spectra`."""
    records = [r for r in records if "eigs_before" in r["result"]]
    chosen = []
    mlps = [r for r in records if r["config"]["kind"] == "mlp" and r["config"]["depth"] == 1]
    if mlps:
        widest = max(mlps, key=lambda r: (r["config"]["width"], -r["config"]["seed"]))
        chosen.append((f"MLP width {widest['config']['width']:,}", widest))
    transformers = [r for r in records if r["config"]["kind"] == "transformer"]
    if transformers:
        first = min(transformers, key=lambda r: (r["config"]["d_model"], r["config"]["seed"]))
        chosen.append((f"transformer d_model {first['config']['d_model']}", first))
    out = {}
    for name, r in chosen:
        out[f"{name}: Θ_0"], out[f"{name}: Θ_T"] = r["result"]["eigs_before"], r["result"]["eigs_after"]
    return out


def figure_spectra(spectra: Mapping[str, Sequence[float]], title: str = "Eigenvalues of Θ (normalised by the largest)",
                   ) -> go.Figure:
    """Eigenvalues of kernels, largest first, each divided by its largest (log scale): how many directions
    a kernel learns fast (large eigenvalues) and how many it hardly learns at all."""
    from labkit import plots

    series = {}
    for name, eigs in spectra.items():
        values = sorted((float(v) for v in eigs), reverse=True)
        top = values[0]
        kept = [(i + 1, v / top) for i, v in enumerate(values) if v > 1e-12 * top]
        series[name] = dict(x=[i for i, _ in kept], y=[v for _, v in kept], mode="lines+markers")
    fig = plots.curves(series, title=title, x_title="index (largest first)", y_title="λ_i / λ_1", log_y=True)
    return fig.update_yaxes(exponentformat="power")


# --------------------------------------------------------------------------------------------------
# Tables of the grid's results
# --------------------------------------------------------------------------------------------------


def grid_table(configs: Iterable[Mapping[str, Any]]) -> Table:
    """One row per run of a grid: kind, size, parameters, training."""
    rows = []
    for c in configs:
        if c["kind"] == "mlp":
            P = 4 * c["width"] + (c["depth"] - 1) * (c["width"] ** 2 + c["width"]) + 1
            rows.append({"kind": "MLP", "size": f"width {c['width']:,}, depth {c['depth']}", "P": P,
                         "data": f"{c['n_train']} points, sin({c['frequency']}θ)",
                         "training": f"GD, {c['steps']:,} steps, lr {c['lr']:g}", "seed": c["seed"]})
        else:
            from labkit.data.registry import make_dataset
            from labkit.experiments.models import param_count

            P = param_count(c, make_dataset(c, int(c["N"]))).total
            rows.append({"kind": "transformer", "size": f"d_model {c['d_model']}, {c['n_layer']} layers",
                         "P": P, "data": f"bioD, N = {c['N']}, K = {c['K']}, D = T = {c['D']}",
                         "training": f"AdamW, {c['exposures']} exposures, lr {c['lr']:g}", "seed": c["seed"]})
    return table(rows, formats={"P": ",d"})


def runs_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: kind, width (MLP width or transformer d_model), depth, seed and the scalar results."""
    rows = []
    for record in records:
        config, result = record["config"], record["result"]
        row = {"kind": config["kind"], "width": config.get("width", config.get("d_model")),
               "depth": config.get("depth", config.get("n_layer")), "seed": config["seed"]}
        row.update({k: v for k, v in result.items() if not isinstance(v, Mapping | list)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values(["kind", "depth", "width", "seed"], ignore_index=True)


def by_width(runs: pd.DataFrame, kind: str = "mlp") -> pd.DataFrame:
    """Mean (and min, max) over seeds of the kernel measures, per depth and width of one kind."""
    cols = [c for c in ("rel_change", "kernel_distance", "weight_change", "linear_gap", "kernel_gap", "test_mse_net",
                        "test_mse_linear", "test_mse_kernel", "train_loss", "bits_fraction") if c in runs.columns]
    sub = runs[runs.kind == kind]
    grouped = sub.groupby(["depth", "width"], sort=True)
    means = grouped[cols].mean()
    means["rel_change_min"], means["rel_change_max"] = grouped["rel_change"].min(), grouped["rel_change"].max()
    means["params"], means["n_seeds"] = grouped["params"].first(), grouped["seed"].count()
    return means.reset_index()


def fit_power_law(widths: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(c, α) of the least-squares line log value = log c + α log width: value ≈ c · width^α."""
    lx, ly = np.log(np.asarray(widths, dtype=float)), np.log(np.asarray(values, dtype=float))
    alpha, logc = np.polyfit(lx, ly, 1)
    return float(math.exp(logc)), float(alpha)


def width_at(c: float, alpha: float, target: float = 0.1) -> float:
    """The width at which c · width^α falls to ``target`` (α < 0)."""
    return (target / c) ** (1 / alpha)


def lazy_table(runs: pd.DataFrame) -> Table:
    """The width sweep: per MLP depth and width, P, Θ's relative change (mean, and the range over seeds
    when there are several), its shape change, the first layer's relative weight change, and the final
    training loss."""
    means = by_width(runs)
    ranges = {"rel_change_min": "min", "rel_change_max": "max"} if (means["n_seeds"] > 1).any() else {}
    return table(means, columns={"depth": "depth", "width": "width", "params": "P", "rel_change": "Θ change",
                                 **ranges, "kernel_distance": "Θ shape change", "weight_change": "W₁ change",
                                 "train_loss": "train loss", **({"n_seeds": "seeds"} if ranges else {})},
                 formats={"width": ",d", "P": ",d", "Θ change": ".2e", **{k: ".2e" for k in ranges.values()},
                          "Θ shape change": ".1e", "W₁ change": ".1e", "train loss": ".1e"})


def regression_table(runs: pd.DataFrame) -> Table:
    """Kernel regression with Θ against the trained network: per MLP, test errors of the network, of its
    linearisation at the same step and of kernel regression (t → ∞), and the rms gap between the network
    and its linearisation, relative to the prediction's rms."""
    means = by_width(runs)
    return table(means, columns={"depth": "depth", "width": "width", "test_mse_net": "test MSE: network",
                                 "test_mse_linear": "linearised (same step)",
                                 "test_mse_kernel": "kernel regression (t → ∞)",
                                 "linear_gap": "network vs linearised"},
                 formats={"width": ",d", "test MSE: network": ".2e", "linearised (same step)": ".2e",
                          "kernel regression (t → ∞)": ".2e", "network vs linearised": ".1%"})


def transformer_table(runs: pd.DataFrame) -> Table:
    """The lab's transformers: P, bits learned (share of the library), Θ's relative change and shape
    change, and how much the trace of Θ grew."""
    sub = runs[runs.kind == "transformer"]
    grouped = sub.groupby("width", sort=True)
    means = grouped[["params", "bits_fraction", "rel_change", "kernel_distance", "trace_ratio"]].mean().reset_index()
    return table(means, columns={"width": "d_model", "params": "P", "bits_fraction": "bits learned",
                                 "rel_change": "Θ change", "kernel_distance": "Θ shape change",
                                 "trace_ratio": "trace Θ_T / trace Θ_0"},
                 formats={"P": ",.0f", "bits learned": ".1%", "Θ change": ".3g", "Θ shape change": ".3f",
                          "trace Θ_T / trace Θ_0": ".3g"})


# --------------------------------------------------------------------------------------------------
# Figures of the grid's results
# --------------------------------------------------------------------------------------------------


def figure_lazy(runs: pd.DataFrame, title: str = "The lazy regime: Θ stops moving as the width grows") -> go.Figure:
    """Θ's relative change against width (log-log), one curve per MLP depth (seeds: the range as error
    bars), with the fitted power law of each depth, a width^(-1/2) reference through the narrowest point,
    and the lab's transformers (width = d_model) as diamonds."""
    from labkit import plots

    means = by_width(runs)
    series: dict[str, dict[str, Any]] = {}
    for k, (depth, group) in enumerate(means.groupby("depth", sort=True)):
        w, ch = list(group["width"]), list(group["rel_change"])
        series[f"MLP, {depth} hidden layer{'s' if depth > 1 else ''}"] = dict(x=w, y=ch, mode="lines+markers",
                                                                              color=plots.color(k))
        if len(w) >= 2:
            c, alpha = fit_power_law(w, ch)
            series[f"fit, depth {depth}: {c:.3g} · width^{alpha:.2f}"] = dict(
                x=[w[0], w[-1]], y=[c * w[0] ** alpha, c * w[-1] ** alpha], dash="dot", color=plots.color(k))
        if k == 0:
            series["width^(-1/2) (Lee et al.'s rate)"] = dict(
                x=[w[0], w[-1]], y=[ch[0], ch[0] * (w[-1] / w[0]) ** PAPER_SLOPE], dash="dash", color="#888")
    tf = runs[runs.kind == "transformer"]
    if len(tf):
        tmeans = tf.groupby("width", sort=True)["rel_change"].mean()
        series["lab transformers (width = d_model)"] = dict(x=list(tmeans.index), y=list(tmeans.values),
                                                            mode="markers", symbol="diamond", color=plots.color(3))
    return plots.curves(series, title=title, x_title="width", y_title="‖Θ_T − Θ_0‖ / ‖Θ_0‖", log_x=True, log_y=True,
                        hlines={"10% change": 0.1})


def figure_predictions(records: Iterable[Mapping[str, Any]], widths: Sequence[int] | None = None, depth: int = 1,
                       seed: int | None = None) -> go.Figure:
    """Test predictions on the circle of the narrowest and widest MLPs (or ``widths``): the trained network
    (solid) and its linearisation (dotted), with the target, against the angle θ."""
    from labkit import plots

    mlps = [r for r in records if r["config"]["kind"] == "mlp" and r["config"]["depth"] == depth
            and (seed is None or r["config"]["seed"] == seed) and "predictions" in r["result"]]
    by = {}
    for r in sorted(mlps, key=lambda r: r["config"]["seed"]):
        by.setdefault(r["config"]["width"], r)
    chosen = sorted(by) if widths is None else list(widths)
    chosen = [chosen[0], chosen[-1]] if widths is None and len(chosen) > 1 else chosen
    first = by[chosen[0]]["result"]["predictions"]
    series: dict[str, dict[str, Any]] = {"target sin(kθ)": dict(x=first["angle"], y=first["truth"], color="#444")}
    for k, w in enumerate(chosen):
        p = by[w]["result"]["predictions"]
        series[f"width {w:,}: trained network"] = dict(x=p["angle"], y=p["net"], color=plots.color(k + 1))
        series[f"width {w:,}: linearised model"] = dict(x=p["angle"], y=p["linearized"], dash="dot",
                                                        color=plots.color(k + 1))
    return plots.curves(series, title="Trained network vs its linearisation (test angles)", x_title="angle θ",
                        y_title="f(cos θ, sin θ)")


# --------------------------------------------------------------------------------------------------
# The claims, next to the papers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """The headline numbers of a grid's results: the MLP width sweep (depth 1) and the transformers."""

    widths: list[int]
    changes: list[float]
    c: float
    alpha: float
    widest_gap: float
    narrowest_gap: float
    transformer_change: float | None
    transformer_distance: float | None
    transformer_bits: float | None

    @property
    def change_ratio(self) -> float:
        """Θ change of the narrowest MLP over that of the widest."""
        return self.changes[0] / self.changes[-1]


def summarize(runs: pd.DataFrame, depth: int = 1) -> Summary:
    """``Summary`` of a runs table (MLPs of ``depth`` hidden layers; transformers: the mean over all)."""
    means = by_width(runs)
    mlp = means[means.depth == depth].sort_values("width")
    widths, changes = [int(w) for w in mlp["width"]], [float(v) for v in mlp["rel_change"]]
    c, alpha = fit_power_law(widths, changes) if len(widths) > 1 else (math.nan, math.nan)
    tf = runs[runs.kind == "transformer"]
    has_tf = len(tf) > 0
    return Summary(widths, changes, c, alpha, float(mlp["linear_gap"].iloc[-1]), float(mlp["linear_gap"].iloc[0]),
                   float(tf["rel_change"].min()) if has_tf else None,
                   float(tf["kernel_distance"].min()) if has_tf else None,
                   float(tf["bits_fraction"].min()) if has_tf else None)


def claims(summary: Summary | None, expect: Expect | None = None) -> list[dict[str, Any]]:
    """The appendix's claims for ``labkit.tables.paper_vs_lab``; ``summary`` None (results absent) gives
    the same claims marked "not run"."""
    expect = expect or Expect()
    s = summary
    widest = f"width {s.widths[-1]:,}" if s else ""
    return [
        {"claim": "Θ stays (nearly) constant during training as width → ∞ (Jacot et al.)", "paper": "→ 0",
         "lab": s.changes[-1] if s else None, "fmt": ".2e", "expect": (None, expect.max_change_widest),
         "note": f"relative change ‖Θ_T − Θ_0‖/‖Θ_0‖ at {widest}" if s else "at the widest width"},
        {"claim": "exponent α of Θ's change ≈ c · width^α (Lee et al.: O(width^-1/2))", "paper": f"≤ {PAPER_SLOPE:g}",
         "lab": s.alpha if s else None, "fmt": ".2f", "expect": (None, expect.max_slope),
         "note": f"fit over widths {s.widths[0]:,}-{s.widths[-1]:,}; ×{s.change_ratio:.0f} from narrowest to widest"
                 if s else "fit of change ≈ c · width^α"},
        {"claim": "a wide network trains like its linearisation (Lee et al.)", "paper": "gap → 0",
         "lab": s.widest_gap if s else None, "fmt": ".2%", "expect": (None, expect.max_linear_gap),
         "note": f"rms(network − linearised) / rms, {widest}; narrowest: {s.narrowest_gap:.1%}" if s else ""},
        {"claim": "practical networks are not lazy: the lab's memorizing transformers (Chizat et al.)",
         "paper": "Θ moves", "lab": s.transformer_change if s else None, "fmt": ".3g",
         "expect": (expect.min_transformer_change, None),
         "note": (f"Θ change (smallest over runs); shape change {s.transformer_distance:.2f}, "
                  f"{s.transformer_bits:.0%} of the library's bits learned") if s and s.transformer_change else ""},
    ]


# --------------------------------------------------------------------------------------------------
# Precomputed results (results/ntk_cpu_full.json)
# --------------------------------------------------------------------------------------------------


def precomputed(path: str | None = None) -> dict[str, Any] | None:
    """The committed cpu-full results (``{"provenance", "records"}``), or None when the file is absent."""
    return load_results(path or PRECOMPUTED)


def provenance_line(results: Mapping[str, Any] | None, profile: str = "cpu-full") -> str:
    """Where this chapter's precomputed results come from, or the command that makes them
    (``base.provenance_line``)."""
    return base_provenance_line(results, NAME, profile)


def summary_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """What ``python -m labkit sweep ntk`` prints: the width sweep and the transformers."""
    runs = runs_table(records)
    frames = [by_width(runs, kind) for kind in ("mlp", "transformer")]
    return pd.concat([f.assign(kind=kind) for f, kind in zip(frames, ("mlp", "transformer"), strict=True) if len(f)],
                     ignore_index=True)
