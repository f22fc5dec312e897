"""The appendix's experiment (labkit.experiments.ntk): linear maps, the worked example, the grid and its runs,
the linearised model, the tables, claims and figures, and the committed cpu-full results."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from labkit import experiments, plots
from labkit.experiments import base
from labkit.experiments import ntk as chapter
from labkit.tables import paper_vs_lab

SMOKE = chapter.PROFILES["smoke"].sizes


def test_linear_maps_scale_areas_by_their_determinant():
    table = chapter.linear_maps_table()
    assert list(table.index) == list(chapter.EXAMPLE_MAPS)
    assert np.allclose(table["det A"], table["area of the square's image"])
    assert table.loc["reflection", "det A"] == pytest.approx(-1) and table.loc["rank 1", "det A"] == pytest.approx(0)
    assert table.loc["shear", "A(0, 1)"] == "(1, 1)"  # the columns are the images of (1, 0) and (0, 1)
    assert chapter.polygon_area(np.array([[0, 0], [2, 0], [2, 3], [0, 3]], dtype=float)) == 6.0
    assert chapter.polygon_area(np.array([[0, 0], [0, 3], [2, 3], [2, 0]], dtype=float)) == -6.0


def test_the_worked_example_three_ways_and_the_determinant_as_local_area_scaling():
    found = chapter.jacobian_methods()
    exact = torch.tensor(chapter.WORKED_JACOBIAN, dtype=torch.float64)
    assert torch.equal(found["jacrev"], exact) and torch.equal(found["jacfwd"], exact)
    fd = next(v for k, v in found.items() if k.startswith("finite"))
    assert torch.allclose(fd, exact, atol=1e-6) and not torch.equal(fd, exact)
    assert np.array_equal(chapter.worked_jacobian(1.0, 2.0), np.array(chapter.WORKED_JACOBIAN))
    table = chapter.jacobian_table(found)
    assert list(table.index)[0] == "by hand" and table["max |J − by hand|"].max() < 1e-6
    for p in chapter.LOCAL_POINTS:  # the area ratio tends to det J as the square shrinks, like h
        det = float(np.linalg.det(chapter.worked_jacobian(*p)))
        errors = [abs(chapter.area_ratio(p, h) - det) for h in (0.1, 0.01)]
        assert errors[1] < errors[0] / 5 and errors[1] < 0.02 * abs(det)
    assert chapter.below(0) == "0" and chapter.below(2.8e-9) == "< 1e-08" and chapter.below(3e-5) == "3.0e-05"


def test_param_jacobian_table_agrees_with_finite_differences():
    table = chapter.param_jacobian_table(chapter.tiny_network(), torch.tensor([0.3, -0.7], dtype=torch.float64))
    assert list(table["parameter"]) == ["weights.0", "weights.1", "biases.0", "biases.1"]
    assert list(table["shape"]) == list(table["∂f/∂θ shape"])
    assert table["max |jacrev − finite differences|"].max() < 1e-8


@pytest.mark.parametrize("profile", list(chapter.PROFILES))
def test_grid_of_every_profile(profile):
    sizes = chapter.PROFILES[profile].sizes
    grid = chapter.grid(sizes, seeds=(3, 4))
    json.dumps(grid)
    per_seed = sum(1 for d in sizes.depths for w in sizes.widths if d == 1 or w <= sizes.max_deep_width)
    assert len(grid) == 2 * (per_seed + len(sizes.d_models))
    assert {c["seed"] for c in grid} == {3, 4}
    assert all(c["details"] == (c["seed"] == 3) for c in grid)  # details for the first seed only
    assert all(c["depth"] == 1 or c["width"] <= sizes.max_deep_width for c in grid if c["kind"] == "mlp")
    assert all(chapter.cost(c) > 0 for c in grid)
    table = chapter.grid_table(chapter.grid(sizes))
    assert len(table) == per_seed + len(sizes.d_models) and (table["P"] > 0).all()


def test_quick_and_larger_profiles_widen_the_sweep():
    quick, full = chapter.PROFILES["quick"].sizes, chapter.PROFILES["cpu-full"].sizes
    assert max(full.widths) > max(quick.widths) and len(full.seeds) > len(quick.seeds)
    assert max(chapter.PROFILES["full"].sizes.widths) > max(full.widths)


def _mlp(width, **changes):
    return {**chapter.mlp_config(SMOKE, width), **changes}


def test_an_mlp_run_measures_the_kernel_and_its_linearisation():
    result = chapter.run(_mlp(64))
    json.dumps(result, allow_nan=False)
    assert result["params"] == 4 * 64 + 1 and result["train_loss"] < 0.05
    assert 0 < result["rel_change"] < 1 and 0 <= result["kernel_distance"] < result["rel_change"]
    assert len(result["predictions"]["net"]) == SMOKE.n_test
    assert len(result["kernel_before"]) == SMOKE.n_train and len(result["eigs_before"]) == SMOKE.n_train
    assert result["eigs_before"] == sorted(result["eigs_before"], reverse=True)
    assert 0 < result["linear_gap"] < 0.5
    slim = chapter.run(_mlp(64, details=False))
    assert "kernel_before" not in slim and "predictions" not in slim
    assert slim["rel_change"] == pytest.approx(result["rel_change"], rel=1e-6)
    with pytest.raises(ValueError, match="kind='cnn' is not valid; allowed: 'mlp', 'transformer'"):
        chapter.run({"kind": "cnn"})


def test_theta_moves_less_as_the_width_grows():
    """The lazy regime, as a test that can fail: 16x wider, Θ moves several times less during the same
    training, and the network stays closer to its linearisation."""
    narrow, wide = chapter.run(_mlp(16)), chapter.run(_mlp(1024))
    assert wide["rel_change"] < narrow["rel_change"] / 4
    assert wide["weight_change"] < narrow["weight_change"] / 2
    assert wide["linear_gap"] < narrow["linear_gap"]


def test_a_transformer_run_memorizes_and_moves_its_kernel():
    config = {**chapter.transformer_config(SMOKE, 8), "N": 24, "exposures": 60, "n_probe": 4}
    result = chapter.run(config)
    json.dumps(result, allow_nan=False)
    assert 0 <= result["bits_fraction"] <= 1 and result["bits"] <= result["information_bits"]
    assert result["rel_change"] > 1 and 0 < result["kernel_distance"] <= 1 and result["trace_ratio"] > 1
    assert len(result["kernel_after"]) == 4 and result["steps"] == 60 * 2


def test_the_linearised_model_is_exact_for_a_model_that_is_linear_in_its_parameters():
    """For f(x; θ) = θ · φ(x) (fixed features) gradient descent *is* its linearisation: the closed form
    must reproduce 50 explicit steps, and t → ∞ must interpolate the training targets."""
    generator = torch.Generator().manual_seed(0)
    phi = torch.randn(8, 20, generator=generator, dtype=torch.float64)
    phi_test = torch.randn(5, 20, generator=generator, dtype=torch.float64)
    theta0 = torch.randn(20, generator=generator, dtype=torch.float64)
    y = torch.randn(8, generator=generator, dtype=torch.float64)
    K, K_test = phi @ phi.T, phi_test @ phi.T
    lr, steps, theta = 0.05, 50, theta0.clone()
    for _ in range(steps):
        theta -= lr * phi.T @ (phi @ theta - y) / len(y)
    closed = chapter.linearized_predictions(K, K_test, phi @ theta0, phi_test @ theta0, y, lr, steps)
    assert torch.allclose(closed, phi_test @ theta, atol=1e-10)
    assert torch.allclose(chapter.linearized_predictions(K, K, phi @ theta0, phi @ theta0, y, lr, None), y, atol=1e-8)
    assert torch.allclose(chapter.linearized_predictions(K, K_test, phi @ theta0, phi_test @ theta0, y, lr, 0),
                          phi_test @ theta0)


def test_kernels_at_init_are_symmetric_psd_gram_matrices():
    kernels = chapter.kernels_at_init(SMOKE)
    found = {"mlp": kernels.mlp, "transformer": kernels.transformer}
    assert kernels.mlp.shape == (SMOKE.n_train,) * 2 and kernels.transformer.shape == (SMOKE.n_probe,) * 2
    assert all(chapter.is_psd(K) for K in found.values())
    table = chapter.kernel_checks(found)
    assert (table["asymmetry"] == 0).all() and (table["smallest / largest"] > -1e-10).all()
    assert not chapter.is_psd(torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64))  # eigenvalue -1
    assert not chapter.is_psd(torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64))  # not symmetric


def test_power_law_fit_and_the_width_it_predicts():
    widths = [16, 64, 256, 1024]
    c, alpha = chapter.fit_power_law(widths, [3.0 * w**-0.75 for w in widths])
    assert c == pytest.approx(3.0) and alpha == pytest.approx(-0.75)
    assert 3.0 * chapter.width_at(c, alpha, 0.01) ** -0.75 == pytest.approx(0.01)


def _records(changes, transformer=(400.0, 0.5, 0.9)):
    records = []
    for (width, change) in changes.items():
        records.append({"config": chapter.mlp_config(SMOKE, width, 1, 0),
                        "result": {"params": 4 * width + 1, "rel_change": change, "kernel_distance": change / 10,
                                   "weight_change": change, "linear_gap": change / 4, "kernel_gap": 0.1,
                                   "test_mse_net": 0.01, "test_mse_linear": 0.02, "test_mse_kernel": 0.0,
                                   "train_loss": 1e-4}})
    change, distance, bits = transformer
    records.append({"config": chapter.transformer_config(SMOKE, 8, 0),
                    "result": {"params": 2000, "rel_change": change, "kernel_distance": distance,
                               "trace_ratio": 100.0, "bits_fraction": bits}})
    return records


def test_summary_and_claims_reproduce_when_theta_freezes_and_fail_when_it_does_not():
    expect = chapter.Expect()
    good = chapter.summarize(chapter.runs_table(_records({16: 0.4, 256: 0.04, 4096: 0.004})))
    assert good.widths == [16, 256, 4096] and good.change_ratio == pytest.approx(100)
    assert good.alpha == pytest.approx(-math.log(10) / math.log(16))
    assert good.transformer_change == 400.0 and good.widest_gap == pytest.approx(0.001)
    shown = paper_vs_lab(chapter.claims(good, expect))
    assert (shown["status"] == "✓ reproduces").all(), shown
    # a kernel that does not freeze (the standard parameterisation at a fixed learning rate) fails the claims
    flat = chapter.summarize(chapter.runs_table(_records({16: 0.4, 256: 0.35, 4096: 0.3}, (0.2, 0.01, 0.9))))
    table = paper_vs_lab(chapter.claims(flat, expect))
    assert (table["status"] != "✓ reproduces").all(), table
    assert flat.change_ratio < expect.min_change_ratio and flat.alpha > expect.max_slope
    absent = paper_vs_lab(chapter.claims(None))
    assert (absent["status"] == "not run").all()


def test_tables_and_figures_of_a_small_sweep():
    report = chapter.sweep(chapter.PROFILES["smoke"], 0, progress=False)
    records = report.records
    runs = chapter.runs_table(records)
    assert len(runs) == len(SMOKE.widths) + len(SMOKE.d_models)
    lazy = chapter.lazy_table(runs)
    assert list(lazy["width"]) == list(SMOKE.widths) and "min" not in lazy.columns  # one seed: no range
    assert len(chapter.regression_table(runs)) == len(SMOKE.widths)
    assert list(chapter.transformer_table(runs)["d_model"]) == list(SMOKE.d_models)
    panels = chapter.before_after(records)
    assert len(panels) == 6 and all(len(m) in (SMOKE.n_train, SMOKE.n_probe) for m in panels.values())
    spectra = chapter.spectra_before_after(records)
    assert list(spectra) == [f"MLP width {max(SMOKE.widths):,}: Θ_0", f"MLP width {max(SMOKE.widths):,}: Θ_T",
                             "transformer d_model 8: Θ_0", "transformer d_model 8: Θ_T"]
    figures = [chapter.figure_lazy(runs), chapter.figure_predictions(records),
               chapter.figure_kernels(panels, "before and after", rows=2),
               chapter.figure_spectra(chapter.spectra_before_after(records)),
               chapter.figure_linear_maps(), chapter.figure_local_jacobian()]
    assert all(isinstance(f, plots.LabFigure) for f in figures)
    bundle = figures[0]._repr_mimebundle_()
    assert "application/vnd.plotly.v1+json" in bundle and "<div" in bundle["text/html"]
    assert not chapter.summary_table(records).empty


@pytest.mark.parametrize("figure", [chapter.figure_linear_maps, chapter.figure_local_jacobian])
def test_slider_figures_work_offline_with_one_frame_per_step(figure):
    fig = figure()
    steps = fig.layout.sliders[0].steps
    assert len(fig.frames) == len(steps) >= 6
    assert [s.args[0][0] for s in steps] == [f.name for f in fig.frames]
    assert all(s.method == "animate" for s in steps)
    # the frames restyle traces that exist, and the slider sits between the plot and the legend
    assert all(max(f.traces) < len(fig.data) for f in fig.frames)
    assert fig.layout.margin.b >= chapter.SLIDER_PX
    html = plots.lab_bundle(fig.to_dict())["text/html"]
    assert "addFrames" in html or "frames" in html


def test_the_sweep_command_knows_the_appendix():
    assert experiments.EXPERIMENTS["ntk"] == ("labkit.experiments.ntk", "12_ntk_appendix")
    assert "ntk" in experiments.sweepable()
    assert base.regenerate_command("ntk", "cpu-full").endswith("--out results/ntk_cpu_full.json")
    assert chapter.PRECOMPUTED == base.RESULTS_DIR / "ntk_cpu_full.json"
    assert "absent" in chapter.provenance_line(None)


def test_the_committed_cpu_full_results_match_the_grid_of_their_profile():
    data = chapter.precomputed()
    assert data is not None, "results/ntk_cpu_full.json is committed"
    from labkit.sweep import config_hash

    sizes = chapter.PROFILES["cpu-full"].sizes
    grid = chapter.grid(sizes, sizes.seeds)
    assert sorted(r["hash"] for r in data["records"]) == sorted(config_hash(c) for c in grid)
    summary = chapter.summarize(chapter.runs_table(data["records"]))
    expect = chapter.PROFILES["cpu-full"].expect
    assert summary.change_ratio >= expect.min_change_ratio and summary.alpha <= expect.max_slope
    assert summary.transformer_change >= expect.min_transformer_change
    assert "precomputed (cpu-full" in chapter.provenance_line(data)
