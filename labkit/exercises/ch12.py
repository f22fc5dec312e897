"""Exercises of the appendix (chapter 12, Jacobians and the NTK): a Jacobian by hand, the NTK of a
one-unit network in closed form, and the width at which Θ stops moving.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against the lab's own tools on hidden cases: ``torch.func.jacrev`` (``labkit.ntk.jacobian``),
``labkit.ntk.empirical_ntk`` of the same network written as a module, and the chapter's power-law fit
(``labkit.experiments.ntk.fit_power_law`` / ``width_at``).
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn

from labkit.exercises.check import Exercise


def polar_jacobian(r: float, theta: float) -> torch.Tensor:
    """The 2 x 2 Jacobian of (r, theta) -> (r cos theta, r sin theta), derived by hand.

    Rows: the outputs x, y; columns: the inputs r, theta. A float64 tensor.
    """
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -r * s],
                         [s, r * c]], dtype=torch.float64)


def one_unit_ntk(x: torch.Tensor, x2: torch.Tensor, w: float, b: float,
                 a: float) -> torch.Tensor:
    """Theta(x_i, x2_j) of f(x) = a * tanh(w * x + b), parameters w, b, a: closed form.

    x: (n,) and x2: (m,) scalar inputs; returns the (n, m) kernel (float64).
    """
    x, x2 = x.double(), x2.double()
    t, t2 = torch.tanh(w * x + b), torch.tanh(w * x2 + b)
    s, s2 = 1 - t**2, 1 - t2**2  # tanh' = sech^2 = 1 - tanh^2
    # df/dw = a s x, df/db = a s, df/da = t: sum the three products
    dw = a**2 * torch.outer(s * x, s2 * x2)
    db = a**2 * torch.outer(s, s2)
    da = torch.outer(t, t2)
    return dw + db + da


def predict_lazy_width(widths: list, changes: list, target: float = 0.1) -> float:
    """The width at which the fitted power law change = c * width**alpha equals target.

    Fit a line to (log width, log change) by least squares, then solve for the width.
    """
    lw = torch.tensor(widths, dtype=torch.float64).log()
    lc = torch.tensor(changes, dtype=torch.float64).log()
    alpha = ((lw - lw.mean()) * (lc - lc.mean())).sum() / ((lw - lw.mean()) ** 2).sum()
    log_c = lc.mean() - alpha * lw.mean()
    return float(torch.exp((math.log(target) - log_c) / alpha))


# --------------------------------------------------------------------------------------------------
# References (the lab's tools) and hidden cases
# --------------------------------------------------------------------------------------------------


def _polar_reference(r: float, theta: float) -> torch.Tensor:
    from labkit import ntk

    def polar(v: torch.Tensor) -> torch.Tensor:
        return torch.stack([v[0] * torch.cos(v[1]), v[0] * torch.sin(v[1])])

    return ntk.jacobian(polar, torch.tensor([r, theta], dtype=torch.float64))


class OneUnit(nn.Module):
    """f(x) = a · tanh(w x + b): one hidden unit, three parameters, scalar inputs (batch,)."""

    def __init__(self, w: float, b: float, a: float) -> None:
        super().__init__()
        self.w, self.b, self.a = (nn.Parameter(torch.tensor(float(v), dtype=torch.float64)) for v in (w, b, a))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * torch.tanh(self.w * x + self.b)


def _one_unit_reference(x: torch.Tensor, x2: torch.Tensor, w: float, b: float, a: float) -> torch.Tensor:
    from labkit import ntk

    return ntk.empirical_ntk(OneUnit(w, b, a), x.double(), x2.double())


def _lazy_width_reference(widths: list, changes: list, target: float = 0.1) -> float:
    from labkit.experiments.ntk import fit_power_law, width_at

    c, alpha = fit_power_law(widths, changes)
    return width_at(c, alpha, target)


def _polar_cases(rng: random.Random) -> list[dict]:
    cases = [dict(r=1.0, theta=0.0), dict(r=2.0, theta=math.pi / 2), dict(r=0.5, theta=math.pi),
             dict(r=0.0, theta=1.0), dict(r=3.0, theta=-2.5)]
    cases += [dict(r=rng.uniform(0, 5), theta=rng.uniform(-math.pi, math.pi)) for _ in range(5)]
    return cases


def _one_unit_cases(rng: random.Random) -> list[dict]:
    generator = torch.Generator().manual_seed(rng.randrange(2**31))

    def inputs(n: int) -> torch.Tensor:
        return torch.randn(n, generator=generator, dtype=torch.float64) * 2

    cases = [dict(x=torch.tensor([0.0, 1.0]), x2=torch.tensor([0.0, 1.0]), w=1.0, b=0.0, a=1.0),
             dict(x=torch.tensor([2.0]), x2=torch.tensor([-1.0, 0.5, 3.0]), w=0.5, b=0.3, a=-2.0),
             dict(x=inputs(4), x2=inputs(4), w=0.0, b=0.0, a=1.0)]
    for _ in range(4):
        cases.append(dict(x=inputs(rng.randint(1, 6)), x2=inputs(rng.randint(1, 6)), w=rng.uniform(-2, 2),
                          b=rng.uniform(-1, 1), a=rng.uniform(-2, 2)))
    return cases


def _lazy_width_cases(rng: random.Random) -> list[dict]:
    cases = [dict(widths=[16, 64, 256, 1024], changes=[0.4, 0.1, 0.025, 0.00625], target=0.1),  # exact: 64
             dict(widths=[10, 100, 1000], changes=[1.0, 10 ** -0.5, 0.1], target=0.1),  # slope -1/2: 1000
             dict(widths=[16, 64, 256, 1024, 4096], changes=[0.43, 0.28, 0.046, 0.014, 0.004], target=0.01)]
    for _ in range(4):
        alpha, c = rng.uniform(-1.2, -0.3), rng.uniform(0.5, 20)
        widths = sorted(rng.sample([2**k for k in range(3, 17)], rng.randint(3, 7)))
        changes = [c * w**alpha * math.exp(rng.gauss(0, 0.2)) for w in widths]
        cases.append(dict(widths=widths, changes=changes, target=rng.choice([0.1, 0.05, 0.01])))
    return cases


POLAR_JACOBIAN = Exercise(
    chapter=12, id="polar-jacobian", title="A Jacobian by hand", difficulty=1, importance=3,
    statement=r"""
Polar coordinates map $(r, \theta)$ to $(x, y) = (r\cos\theta,\ r\sin\theta)$. Derive the Jacobian
$\partial(x, y)/\partial(r, \theta)$ by hand ({eq}`eq-jacobian`: one row per output, one column per
input) and write `polar_jacobian(r, theta)` returning it as a 2 × 2 float64 tensor, without automatic
differentiation. The checker compares it with `torch.func.jacrev` at hidden points. Then compute its
determinant by hand: why does the area element of the plane read $dx\,dy = r\,dr\,d\theta$?
""",
    solution=polar_jacobian, reference=_polar_reference, cases=_polar_cases, imports=("import math", "import torch"),
    rtol=1e-9, atol=1e-12)

ONE_UNIT_NTK = Exercise(
    chapter=12, id="one-unit-ntk", title="The NTK of a one-unit network, in closed form", difficulty=2, importance=4,
    statement=r"""
The smallest network with a hidden layer, $f(x) = a \tanh(w x + b)$, has three parameters $(w, b, a)$
and scalar inputs. Its NTK ({eq}`eq-ntk`) is a sum of three products of partial derivatives,
$\Theta(x, x') = \sum_{p \in \{w, b, a\}} \partial_p f(x)\, \partial_p f(x')$. Derive them by hand
($\tanh' = 1 - \tanh^2$) and write `one_unit_ntk(x, x2, w, b, a)`: the $(n, m)$ matrix
$\Theta(x_i, x2_j)$ for input tensors `x` of shape $(n,)$ and `x2` of shape $(m,)$, with tensor
operations (no loop over inputs). The checker compares it with `labkit.ntk.empirical_ntk` of the same
network written as a module. Which of the three terms is left when $a = 0$, and what does that say
about how a network whose output weight starts at 0 begins to learn?
""",
    solution=one_unit_ntk, reference=_one_unit_reference, cases=_one_unit_cases, imports=("import torch",),
    rtol=1e-9, atol=1e-12)

PREDICT_LAZY_WIDTH = Exercise(
    chapter=12, id="predict-lazy-width", title="When does Θ stop moving?", difficulty=2, importance=3,
    statement=r"""
The width sweep measures how much Θ moves during training, $\Delta(w) = \|\Theta_T - \Theta_0\|_F /
\|\Theta_0\|_F$, at a few widths $w$. On log-log axes the points lie close to a line,
$\Delta(w) \approx c\, w^{\alpha}$ ({eq}`eq-power-law`). Write `predict_lazy_width(widths, changes,
target)`: fit $\log \Delta = \log c + \alpha \log w$ by least squares and return the width at which the
fitted line reaches `target` (e.g. 0.1: Θ moves by less than 10%). Then apply it to the sweep's table
above (`lazy` holds its columns `depth`, `width` and `Θ change`; take the rows of depth 1): at
which width does Θ move by less than 10%, and by less than 1%? Is the prediction an interpolation or an
extrapolation, and how far would you trust it?
""",
    solution=predict_lazy_width, reference=_lazy_width_reference, cases=_lazy_width_cases,
    imports=("import math", "import torch"), rtol=1e-6)

EXERCISES = [POLAR_JACOBIAN, ONE_UNIT_NTK, PREDICT_LAZY_WIDTH]

check_polar_jacobian = POLAR_JACOBIAN.checker()
check_one_unit_ntk = ONE_UNIT_NTK.checker()
check_predict_lazy_width = PREDICT_LAZY_WIDTH.checker()
