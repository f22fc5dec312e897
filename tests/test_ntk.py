"""labkit.ntk: Jacobians (torch.func and finite differences), parameter Jacobians, the empirical NTK, and the
NTK-parameterised MLP."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import raises_invalid, tiny_model

from labkit import ntk
from labkit.data.uniform import RandomSequences


def worked(v: torch.Tensor) -> torch.Tensor:
    x, y = v[0], v[1]
    return torch.stack([x**4 + 3 * y**2 * x, 5 * y**2 - 2 * x * y + 1])


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_the_worked_example_has_exactly_the_hand_derived_jacobian(mode):
    J = ntk.jacobian(worked, torch.tensor([1.0, 2.0], dtype=torch.float64), mode=mode)
    assert torch.equal(J, torch.tensor([[16.0, 12.0], [-4.0, 18.0]], dtype=torch.float64))


def test_jacobian_shapes_modes_and_finite_differences_agree():
    A = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]], dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:  # R^3 -> R^2, nonlinear
        return torch.sin(A @ x) + x[0] * x[2]

    x = torch.tensor([0.3, -0.2, 0.9], dtype=torch.float64)
    rev, fwd, fd = ntk.jacobian(f, x), ntk.jacobian(f, x, mode="fwd"), ntk.finite_differences(f, x)
    assert rev.shape == fwd.shape == fd.shape == (2, 3)
    assert torch.allclose(rev, fwd, atol=1e-12) and torch.allclose(rev, fd, atol=1e-8)
    exact = torch.cos(A @ x)[:, None] * A + torch.tensor([[x[2], 0, x[0]], [x[2], 0, x[0]]], dtype=torch.float64)
    assert torch.allclose(rev, exact, atol=1e-12)
    # matrix-valued inputs keep their shape: out.shape + x.shape
    M = torch.randn(2, 2, dtype=torch.float64)
    assert ntk.finite_differences(lambda m: (m @ m).sum(0), M).shape == (2, 2, 2)
    with raises_invalid("mode='back' is not valid; allowed: 'rev', 'fwd'"):
        ntk.jacobian(f, x, mode="back")
    with raises_invalid("eps=0.0 is not valid; allowed: a number > 0"):
        ntk.finite_differences(f, x, eps=0)


def _manual_jacobian(model: torch.nn.Module, inputs: torch.Tensor, output=None) -> torch.Tensor:
    """(n, k, P) by plain autograd, one example and one output at a time."""
    rows = []
    for x in inputs:
        y = model(x.unsqueeze(0)).squeeze(0)
        y = (y if output is None else output(y, x)).reshape(-1)
        per_output = []
        for a in range(y.numel()):
            grads = torch.autograd.grad(y[a], list(model.parameters()), retain_graph=True, allow_unused=True)
            per_output.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                                         for g, p in zip(grads, model.parameters(), strict=True)]))
        rows.append(torch.stack(per_output))
    return torch.stack(rows)


def test_param_jacobian_matches_autograd_per_example():
    model = ntk.NTKMLP(3, 5, depth=2, d_out=2, seed=1).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    jac = ntk.param_jacobian(model, x)
    assert list(jac) == [name for name, _ in model.named_parameters()]
    for (name, p), j in zip(model.named_parameters(), jac.values(), strict=True):
        assert j.shape == (4, 2, *p.shape), name
    assert torch.allclose(ntk.flat_jacobian(model, x), _manual_jacobian(model, x), atol=1e-12)
    assert all(p.grad is None for p in model.parameters())  # the model itself is untouched


def test_empirical_ntk_is_the_gram_matrix_of_the_parameter_jacobian():
    model = ntk.NTKMLP(2, 16, depth=1, seed=0)
    gen = torch.Generator().manual_seed(0)
    x, z = torch.randn(6, 2, generator=gen), torch.randn(3, 2, generator=gen)
    K = ntk.empirical_ntk(model, x)
    J = _manual_jacobian(model, x).double()[:, 0]
    assert K.dtype == torch.float64 and K.shape == (6, 6)
    assert torch.allclose(K, J @ J.T, rtol=1e-5)
    assert torch.equal(K, K.T)
    assert torch.linalg.eigvalsh(K).min() >= -1e-10 * torch.linalg.eigvalsh(K).max()
    cross = ntk.empirical_ntk(model, z, x)
    assert cross.shape == (3, 6)
    both = ntk.empirical_ntk(model, torch.cat([z, x]))
    # float32 Jacobians of a batch of 3 and of 9 round differently: equal to float32 precision
    block = both[:3, 3:]
    assert (cross - block).abs().max() <= 1e-6 * block.abs().max()


def test_outputs_sum_is_the_trace_of_the_full_kernel():
    model = ntk.NTKMLP(2, 8, d_out=3, seed=2)
    x = torch.randn(5, 2)
    full = ntk.empirical_ntk(model, x, outputs="full")
    summed = ntk.empirical_ntk(model, x)
    assert full.shape == (5, 5, 3, 3)
    assert torch.allclose(full.diagonal(dim1=2, dim2=3).sum(-1), summed, rtol=1e-12)
    J = _manual_jacobian(model, x).double()
    assert torch.allclose(full, torch.einsum("isp,jtp->ijst", J, J), rtol=1e-5, atol=1e-9)
    with raises_invalid("outputs='trace' is not valid; allowed: 'sum', 'full'"):
        ntk.empirical_ntk(model, x, outputs="trace")


def test_the_lab_transformer_ntk_is_exact_and_batched_without_the_sdpa_fallback():
    data = RandomSequences(6, S=2, V=5, seed=0)
    model = tiny_model(data, d_model=8, n_layer=1)
    tokens = data.exposure(0).tokens

    def output(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return logits[-2:, :4]  # the last two positions, four logits each

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # vmap's slow fallback for scaled_dot_product_attention warns
        K = ntk.empirical_ntk(model, tokens, output=output)
    J = _manual_jacobian(model, tokens, output).double()
    assert torch.allclose(K, torch.einsum("isp,jsp->ij", J, J), rtol=1e-4, atol=1e-10)
    assert not any(point._forward_hooks for point in model.hook_dict.values()), "the no-op hooks are removed"


def test_relative_change_and_kernel_distance():
    K = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    assert ntk.relative_change(K, K) == 0 and ntk.kernel_distance(K, K) == pytest.approx(0, abs=1e-15)
    assert ntk.relative_change(K, 3 * K) == pytest.approx(2.0)
    assert ntk.kernel_distance(K, 3 * K) == pytest.approx(0, abs=1e-15)  # a rescaling is no change of shape
    other = torch.tensor([[2.0, -1.0], [-1.0, 3.0]], dtype=torch.float64)
    assert 0 < ntk.kernel_distance(K, other) <= 1


def test_ntk_mlp_shapes_parameterisation_and_errors():
    model = ntk.NTKMLP(2, 10, depth=3, seed=0)
    assert model(torch.randn(7, 2)).shape == (7,)
    assert ntk.NTKMLP(2, 10, d_out=4)(torch.randn(7, 2)).shape == (7, 4)
    assert sum(p.numel() for p in model.parameters()) == (2 * 10 + 10) + 2 * (100 + 10) + (10 + 1)
    assert torch.equal(ntk.NTKMLP(2, 10, seed=5).weights[0], ntk.NTKMLP(2, 10, seed=5).weights[0])
    assert "width=10" in repr(model)
    with raises_invalid("activation='gelu' is not valid; allowed: 'tanh', 'relu', 'erf'"):
        ntk.NTKMLP(2, 10, activation="gelu")
    with raises_invalid("width=0 is not valid"):
        ntk.NTKMLP(2, 0)


def test_the_ntk_at_initialisation_becomes_deterministic_as_the_width_grows():
    """Jacot et al.: in the NTK parameterisation Θ_0 converges to a fixed kernel; across seeds it varies
    less and less as the width grows (about like 1/sqrt(width))."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])

    def spread(width: int) -> float:
        kernels = torch.stack([ntk.empirical_ntk(ntk.NTKMLP(2, width, seed=s), x) for s in range(6)])
        return float(kernels.std(0).norm() / kernels.mean(0).norm())

    narrow, wide = spread(8), spread(2048)
    assert wide < narrow / 5, (narrow, wide)
