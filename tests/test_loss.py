"""labkit.loss.linear_cross_entropy must *be* F.cross_entropy of the logits: value and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labkit.loss import IGNORE_INDEX, linear_cross_entropy
from labkit.model import Transformer, tiny


def reference(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(hidden.reshape(-1, hidden.shape[-1]) @ weight.t(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def value_and_grads(fn, hidden, weight, targets, **kwargs):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = fn(h, w, targets, **kwargs)
    loss.backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("chunk_rows", [1, 7, 256, 10_000])
@pytest.mark.parametrize("ignored", [0.0, 0.3])
def test_equals_cross_entropy_of_the_logits(chunk_rows, ignored):
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(5, 9, 12, generator=g), torch.randn(31, 12, generator=g)
    targets = torch.randint(0, 31, (5, 9), generator=g)
    targets[torch.rand(5, 9, generator=g) < ignored] = IGNORE_INDEX
    expected = value_and_grads(reference, hidden, weight, targets)
    got = value_and_grads(linear_cross_entropy, hidden, weight, targets, chunk_rows=chunk_rows)
    for e, v in zip(expected, got, strict=True):
        torch.testing.assert_close(v, e, rtol=1e-5, atol=1e-6)
    assert got[1].shape == hidden.shape  # the gradient keeps the (batch, seq, d) shape


def test_no_targets_is_nan_and_grads_are_zero():
    hidden, weight = torch.randn(4, 6), torch.randn(10, 6)
    loss, gh, gw = value_and_grads(linear_cross_entropy, hidden, weight, torch.full((4,), IGNORE_INDEX))
    assert math.isnan(float(loss)) and math.isnan(float(reference(hidden, weight, torch.full((4,), IGNORE_INDEX))))
    assert float(gh.abs().max()) == 0 and float(gw.abs().max()) == 0  # a step without targets learns nothing


def test_a_second_backward_through_the_same_loss_is_refused_not_wrong():
    hidden = torch.randn(8, 5, requires_grad=True)
    weight = torch.randn(11, 5, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.randint(0, 11, (8,)))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward"):
        loss.backward()


def test_falls_back_to_plain_cross_entropy_under_autocast():
    hidden, weight, targets = torch.randn(6, 8), torch.randn(13, 8), torch.randint(0, 13, (6,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(hidden, weight, targets)
        expected = F.cross_entropy(F.linear(hidden, weight).float(), targets)
    assert float(loss) == float(expected)


def test_transformer_loss_equals_cross_entropy_of_its_logits():
    model = Transformer(tiny(29, 16, d_model=16), seed=0)
    tokens = torch.randint(0, 29, (4, 15), generator=torch.Generator().manual_seed(1))
    targets = torch.roll(tokens, -1, dims=1)
    targets[:, -1] = IGNORE_INDEX
    fused = model.loss(tokens, targets)
    fused.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    plain = F.cross_entropy(model(tokens).flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    plain.backward()
    torch.testing.assert_close(fused, plain)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-5, atol=1e-7, msg=name)
