"""Jacobians and the empirical neural tangent kernel (NTK), with ``torch.func``.

The Jacobian of a map f: R^n -> R^m at x is the m × n matrix of partial derivatives, the best linear
map approximating f near x: f(x + h) = f(x) + J(x) h + o(|h|). ``jacobian(f, x)`` computes it with
``torch.func.jacrev`` (reverse mode: one vector-Jacobian product per output) or ``jacfwd`` (forward
mode: one Jacobian-vector product per input), and ``finite_differences`` checks either in float64.

For a network f(x; θ) the Jacobian that matters for training is the one with respect to the
parameters θ (P of them). Gradient descent on a loss of the outputs moves the outputs at every input
x by J(x) Δθ, and Δθ is a sum of J(x')ᵀ (...) over the training inputs x', so the outputs evolve through
the **empirical neural tangent kernel** (jacot2018ntk)

    Θ(x, x') = J(x) J(x')ᵀ = Σ_p ∂f(x)/∂θ_p · ∂f(x')/∂θ_p,

a similarity of two inputs that decomposes into the feature map x -> J(x) (a kernel is a Gram matrix
of some feature map; here the features are the parameter gradients). ``empirical_ntk(model, inputs)``
returns it for a batch of inputs: per-example Jacobians from ``torch.func.functional_call`` inside
``vmap(jacrev(...))``, one parameter tensor's Gram at a time, accumulated in float64.

A model with several outputs per example (logits over a vocabulary, at several positions) has one
kernel per pair of outputs; ``outputs="sum"`` (the default) returns Σ_a Θ_aa(x, x'), the trace over
the outputs, an (n, m) matrix; ``outputs="full"`` returns all of them, (n, m, k, k).

``NTKMLP`` is the network of the NTK papers (jacot2018ntk, lee2019wide): standard normal weights,
each layer's pre-activation divided by the square root of its fan-in (the "NTK parameterisation"), so
that Θ has a finite limit as the width grows and a fixed learning rate suits every width.

The lab's ``Transformer`` runs ``F.scaled_dot_product_attention`` when no hook listens to its attention
pattern; that kernel has no batching rule for ``vmap`` on the CPU (vmap would fall back to a slow
loop, with a warning), so ``empirical_ntk`` attaches a no-op hook to every ``hook_pattern`` while it
runs, which switches the model to its explicit softmax path: the same function, in plain matmuls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from labkit.checks import check_choice, check_int, check_positive

__all__ = ["NTKMLP", "empirical_ntk", "finite_differences", "flat_jacobian", "jacobian", "kernel_distance",
           "param_jacobian", "relative_change"]

#: Elements of a float64 block in the Gram products (bounds the memory of one block to ~128 MB).
_BLOCK = 2**24
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh, "relu": torch.relu, "erf": torch.erf}


# --------------------------------------------------------------------------------------------------
# Jacobians of plain functions
# --------------------------------------------------------------------------------------------------


def jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, mode: str = "rev") -> torch.Tensor:
    """The Jacobian of ``f`` at ``x``: shape ``f(x).shape + x.shape`` (an (m, n) matrix for f: R^n -> R^m).

    ``mode="rev"``: ``torch.func.jacrev`` (one vector-Jacobian product per output, cheap for few
    outputs); ``"fwd"``: ``torch.func.jacfwd`` (one Jacobian-vector product per input, cheap for few
    inputs). Both give the same matrix up to float rounding.
    """
    from torch.func import jacfwd, jacrev

    check_choice("mode", mode, ("rev", "fwd"))
    return (jacrev if mode == "rev" else jacfwd)(f)(x)


def finite_differences(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences (f(x + ε e_j) - f(x - ε e_j)) / 2ε for every input coordinate j, in float64:
    the Jacobian to O(ε²) without any automatic differentiation, shape ``f(x).shape + x.shape``."""
    eps = check_positive("eps", eps)
    x = x.detach().to(torch.float64)
    out_shape = f(x).shape
    columns = []
    for j in range(x.numel()):
        step = torch.zeros(x.numel(), dtype=torch.float64)
        step[j] = eps
        step = step.reshape(x.shape)
        columns.append(((f(x + step) - f(x - step)) / (2 * eps)).reshape(-1))
    return torch.stack(columns, dim=-1).reshape(*out_shape, *x.shape)


# --------------------------------------------------------------------------------------------------
# Parameter Jacobians and the empirical NTK
# --------------------------------------------------------------------------------------------------

Output = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def _vmappable(model: nn.Module) -> Iterator[None]:
    """The lab's Transformer on its explicit attention path (module docstring); other models as they are."""
    hook_dict = getattr(model, "hook_dict", None)
    if not isinstance(hook_dict, Mapping) or not hasattr(model, "hooks"):
        yield
        return
    patterns = [name for name in hook_dict if name.endswith("attn.hook_pattern")]
    with model.hooks([(name, lambda tensor, hook: None) for name in patterns]):
        yield


def param_jacobian(model: nn.Module, inputs: torch.Tensor, output: Output | None = None,
                   params: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The per-example Jacobian of the model's outputs with respect to each parameter tensor:
    ``{name: (n, k, *param.shape)}`` for ``n = len(inputs)`` examples with k outputs each.

    Each example x runs alone (``model(x[None])``, the batch dimension removed again); ``output(y, x)``
    turns the model's output y for x into the outputs to differentiate (default: y), flattened to k
    values. ``params``: the parameters to differentiate (default: every parameter of ``model``, at its
    current values); the model's own tensors are not changed.
    """
    from torch.func import functional_call, jacrev, vmap

    if params is None:
        params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def outputs(p: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        y = functional_call(model, (dict(p), buffers), (x.unsqueeze(0),)).squeeze(0)
        return (y if output is None else output(y, x)).reshape(-1)

    with _vmappable(model):
        return dict(vmap(jacrev(outputs), in_dims=(None, 0))(dict(params), inputs))


def flat_jacobian(model: nn.Module, inputs: torch.Tensor, output: Output | None = None) -> torch.Tensor:
    """:func:`param_jacobian` as one (n, k, P) tensor, parameters in ``model.named_parameters()`` order."""
    jac = param_jacobian(model, inputs, output)
    n = len(inputs)
    return torch.cat([j.reshape(n, j.shape[1], -1) for j in jac.values()], dim=-1)


def _gram(a: torch.Tensor, b: torch.Tensor, full: bool) -> torch.Tensor:
    """Σ_p a[i, s, p] b[j, t, p] in float64, in blocks of parameters: (n, m) summed over s = t, or the
    full (n, m, k, k)."""
    n, k, P = a.shape
    m = b.shape[0]
    out = torch.zeros((n, m, k, k) if full else (n, m), dtype=torch.float64, device=a.device)
    step = max(1, _BLOCK // max(1, (n + m) * k))
    for start in range(0, P, step):
        x, y = a[..., start:start + step].double(), b[..., start:start + step].double()
        out += torch.einsum("isp,jtp->ijst", x, y) if full else torch.einsum("isp,jsp->ij", x, y)
    return out


def empirical_ntk(model: nn.Module, inputs: torch.Tensor, other: torch.Tensor | None = None, *,
                  output: Output | None = None, outputs: str = "sum") -> torch.Tensor:
    """The empirical NTK Θ(x, x') = J(x) J(x')ᵀ of ``model`` at its current parameters (float64).

    ``inputs``: a batch of n examples (the model's input without its batch dimension, stacked);
    ``other``: a second batch of m examples (default: ``inputs``, giving the symmetric (n, n) Gram
    matrix, positive semi-definite). ``output(y, x)``: what to differentiate, as in
    :func:`param_jacobian`. ``outputs="sum"``: Σ over the k outputs of the per-output kernel, shape
    (n, m) (for a model with one output per example, its NTK); ``"full"``: every pair of outputs,
    (n, m, k, k).
    """
    check_choice("outputs", outputs, ("sum", "full"))
    full = outputs == "full"
    left = param_jacobian(model, inputs, output)
    right = left if other is None else param_jacobian(model, other, output)
    n, m = len(inputs), len(inputs if other is None else other)
    kernel = None
    for name, j in left.items():
        part = _gram(j.reshape(n, j.shape[1], -1), right[name].reshape(m, right[name].shape[1], -1), full)
        kernel = part if kernel is None else kernel + part
    if kernel is None:
        raise ValueError("model has no parameters; allowed: a model with at least one parameter")
    if other is None:  # J Jᵀ is symmetric; a blocked float sum need not be to the last bit on every CPU
        kernel = (kernel + (kernel.permute(1, 0, 3, 2) if full else kernel.T)) / 2
    return kernel


def relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """‖after − before‖_F / ‖before‖_F: how far a kernel moved, relative to where it started (0: not at all)."""
    return float((after - before).norm() / before.norm())


def kernel_distance(before: torch.Tensor, after: torch.Tensor) -> float:
    """1 − ⟨before, after⟩_F / (‖before‖_F ‖after‖_F): how much a kernel's *shape* moved, blind to its
    scale (0 for a kernel that only grew or shrank; at most 1 for PSD kernels; Fort et al.'s distance)."""
    return float(1 - (before * after).sum() / (before.norm() * after.norm()))


# --------------------------------------------------------------------------------------------------
# The network of the NTK papers
# --------------------------------------------------------------------------------------------------


class NTKMLP(nn.Module):
    """A fully connected network in the NTK parameterisation (jacot2018ntk, lee2019wide):
    ``depth`` hidden layers of ``width`` units, ``d_out`` outputs (one: the output is squeezed to a
    scalar per example),

        h_1 = W_1 x / √d_in + β b_1,   h_{l+1} = W_{l+1} φ(h_l) / √width + β b_{l+1},

    every weight and bias standard normal (drawn from ``seed`` on the CPU), ``β`` the bias scale and φ
    the ``activation`` (tanh, relu, erf). The 1/√fan-in factors keep Θ finite as the width grows, so one
    learning rate trains every width (in the standard parameterisation Θ grows with the width).
    """

    def __init__(self, d_in: int, width: int, depth: int = 1, d_out: int = 1, *, activation: str = "tanh",
                 beta: float = 0.1, seed: int | None = 0) -> None:
        super().__init__()
        self.d_in, self.width = check_int("d_in", d_in, 1), check_int("width", width, 1)
        self.depth, self.d_out = check_int("depth", depth, 1), check_int("d_out", d_out, 1)
        self.activation = str(check_choice("activation", activation, tuple(ACTIVATIONS)))
        self.beta = float(beta)
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        dims = [self.d_in, *[self.width] * self.depth, self.d_out]
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(o, i, generator=generator))
                                        for i, o in zip(dims[:-1], dims[1:], strict=True))
        self.biases = nn.ParameterList(nn.Parameter(torch.randn(o, generator=generator)) for o in dims[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs of a batch x (batch, d_in): (batch,) for one output, else (batch, d_out)."""
        phi = ACTIVATIONS[self.activation]
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w.T / math.sqrt(w.shape[1]) + self.beta * b
            if layer < self.depth:
                x = phi(x)
        return x.squeeze(-1) if self.d_out == 1 else x

    def extra_repr(self) -> str:
        return (f"d_in={self.d_in}, width={self.width}, depth={self.depth}, d_out={self.d_out}, "
                f"activation={self.activation!r}, beta={self.beta:g}")
