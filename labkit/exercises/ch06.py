"""Exercises of chapter 6 (quantization and knowledge capacity): int8 round to nearest by hand, what a
quantized weight costs to store, and a prediction of how much int3 keeps.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against the lab's own code (``labkit.quant``) on hidden cases. A prediction cannot be checked
against an answer the checker does not have (the chapter measures it), so its checker only checks that
it is a fraction, and ``check_predicted_kept_int3(fn, measured=...)`` prints the chapter's value next to it.
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Callable, Mapping
from typing import Any

import torch

from labkit.checks import invalid
from labkit.exercises.check import CheckResult, Exercise


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 round to nearest, one scale per output channel (row of w).

    w: (rows, columns) float32. Per row, s = max|w_row| / 127 (in float32), and
    q = round(w / s), half to even as torch.round does, clamped to [-127, 127].
    Returns (q as an int8 (rows, columns) tensor, s as a float32 (rows,) tensor);
    an all-zero row gets s = 0 and q = 0 (no nan).
    """
    w = w.float()
    s = w.abs().amax(dim=1) / 127  # the row's largest |w| lands on ±127
    safe = torch.where(s > 0, s, torch.ones_like(s))  # an all-zero row: w / 1 = 0
    q = torch.round(w / safe[:, None]).clamp(-127, 127)
    return q.to(torch.int8), s


def storage_bits_per_param(rows: int, columns: int, bits: int, group_size: int | None,
                           scale_bits: int = 16, zero_point: bool = False) -> float:
    """Storage bits per weight of a (rows, columns) matrix quantized to `bits`.

    Every weight is a `bits`-bit integer; each group of `group_size` consecutive
    columns of a row (None: the whole row) stores one `scale_bits`-bit scale and,
    if zero_point, one `bits`-bit zero point.
    """
    groups = rows * (1 if group_size is None else columns // group_size)
    extra = scale_bits + (bits if zero_point else 0)  # per group
    return (rows * columns * bits + groups * extra) / (rows * columns)


def predicted_kept_int3() -> float:
    """Your prediction: the fraction (0 to 1) of the quick model's bits that int3 keeps.

    int3: 3-bit integers, one scale per output channel, round to nearest, the
    embeddings quantized too. Commit to a number before you compare it with the table.
    """
    # int3 has 7 levels, -3..3: the step is a third of the row's largest |w|, so
    # most weights of a row land on 0 or one step. int4 (15 levels) already loses
    # most of what a tiny model at capacity stores, and int3 is coarser still.
    return 0.02


# --------------------------------------------------------------------------------------------------
# References (the lab's code), what the checkers compare, and hidden cases
# --------------------------------------------------------------------------------------------------


def _quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``labkit.quant.quantize_tensor`` with float32 scales (no float16 rounding), its integers recovered."""
    from labkit.quant import quantize_tensor

    dequantized, scales, _ = quantize_tensor(w, 8, None, True, scale_bits=32)
    s = scales[:, 0] if scales.ndim == 2 else scales  # (rows, 1 group) -> (rows,)
    safe = torch.where(s > 0, s, torch.ones_like(s))
    return torch.round(dequantized / safe[:, None]).to(torch.int8), s


def _dtype(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return str(value.dtype).removeprefix("torch.")
    return type(value).__name__


def _within_half_a_step(q: object, s: object, w: torch.Tensor) -> bool:
    """|q·s − w| <= s/2 for every element (float64, a relative slack of 1e-6 for s's own rounding)."""
    try:
        q64, s64 = torch.as_tensor(q).double(), torch.as_tensor(s).double()
    except (TypeError, ValueError, RuntimeError):
        return False
    if q64.shape != w.shape or s64.shape != w.shape[:1]:
        return False
    error = (q64 * s64[:, None] - w.double()).abs()
    return bool((error <= s64[:, None] / 2 * (1 + 1e-6)).all())  # nan compares False


def _int8_outcome(fn: Callable[..., Any], case: Mapping[str, Any]) -> dict:
    """The pair (q, s), their dtypes and whether every weight is within half a step of its level."""
    w = case["w"]
    out = fn(w=w.clone())  # a copy: the bound is checked against the weights as they were given
    pair = isinstance(out, tuple | list) and len(out) == 2
    q, s = out if pair else (None, None)
    return {"a pair (q, s)": pair, "q": q, "s": s, "q dtype": _dtype(q), "s dtype": _dtype(s),
            "|q·s − w| <= s/2 everywhere": _within_half_a_step(q, s, w)}


def _int8_cases(rng: random.Random) -> list[dict]:
    generator = torch.Generator().manual_seed(rng.randrange(2**31))

    def normal(rows: int, columns: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(rows, columns, generator=generator) * scale

    with_zero_row = normal(3, 5)
    with_zero_row[1] = 0.0  # an all-zero row: its scale is 0, and w / s would be 0/0
    # exact halves: a row whose largest |w| is 127 has s = 1, one with 63.5 has s = 0.5, so w / s is exactly
    # k + 0.5 and torch.round takes the even neighbour (0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 126.5 -> 126)
    halves = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5],
                           [0.25, 0.75, -63.5, 1.25, -1.75, 3.0, 62.75, 0.0]])
    # the largest magnitude is negative: max(w) is not max|w|
    negative = torch.tensor([[-3.0, 1.0, 2.0, -0.5], [0.1, -7.5, 7.0, 2.0], [-0.2, -0.4, -0.1, -0.3]])
    outliers = normal(6, 32, 0.02)
    outliers[0, 3], outliers[2, 17], outliers[5, 0] = 1.5, -2.0, 0.9  # one outlier coarsens its row's grid
    rows_of_all_sizes = normal(64, 96) * 10 ** (4 * torch.rand(64, 1, generator=generator) - 3)
    cases = [dict(w=normal(4, 8)), dict(w=with_zero_row), dict(w=halves), dict(w=negative), dict(w=outliers),
             dict(w=normal(1, 16, 0.1)),  # one row
             dict(w=torch.tensor([[0.3], [-1.2], [0.0], [4.0], [-0.05], [2.5], [-7.0], [0.6]])),  # one column
             dict(w=normal(8, 8, 0.5)),  # square: per-column scales have the right shape, not the right values
             dict(w=rows_of_all_sizes)]
    for _ in range(3):
        cases.append(dict(w=normal(rng.randint(2, 40), rng.randint(2, 70), rng.uniform(0.01, 3.0))))
    return cases


def _storage_bits_per_param(rows: int, columns: int, bits: int, group_size: int | None, scale_bits: int = 16,
                            zero_point: bool = False) -> float:
    from labkit.quant import storage_bits

    return storage_bits((rows, columns), bits, group_size, not zero_point, scale_bits) / (rows * columns)


def _storage_cases(rng: random.Random) -> list[dict]:
    cases = [dict(rows=16, columns=64, bits=4, group_size=None),  # a width-16 model's MLP output, per channel
             dict(rows=16, columns=64, bits=4, group_size=32),
             dict(rows=16, columns=64, bits=4, group_size=8),
             dict(rows=16, columns=16, bits=4, group_size=4),  # the chapter's int4 g4: as dear as int8
             dict(rows=16, columns=64, bits=8, group_size=None),
             dict(rows=4096, columns=4096, bits=4, group_size=128),  # an LLM's layer
             dict(rows=64, columns=16, bits=3, group_size=None, zero_point=True),
             dict(rows=11008, columns=4096, bits=4, group_size=128, scale_bits=16, zero_point=True),
             dict(rows=32, columns=96, bits=8, group_size=32, scale_bits=32),
             dict(rows=24, columns=40, bits=5, group_size=40, scale_bits=32, zero_point=True),  # a group = a row
             dict(rows=1, columns=1, bits=2, group_size=None)]
    for _ in range(3):
        group = rng.choice([None, 1, 2, 4, 8, 16, 32, 64, 128])
        columns = (group or rng.randint(1, 64)) * rng.randint(1, 32)
        cases.append(dict(rows=rng.randint(1, 512), columns=columns, bits=rng.randint(2, 8), group_size=group,
                          scale_bits=rng.choice([16, 32]), zero_point=rng.random() < 0.5))
    return cases


#: what the prediction checker expects of every call
VALID_PREDICTION = "a float in [0, 1]"


def _a_valid_prediction() -> float:
    return 0.5


def _prediction_verdict(fn: Callable[..., Any], case: Mapping[str, Any]) -> str:
    """:data:`VALID_PREDICTION` for a fraction in [0, 1], the same on a second call; else what is wrong."""
    value, again = fn(**case), fn(**case)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"a {type(value).__name__}, not a float"
    value = float(value)
    if math.isnan(value):
        return "nan, not a float"
    if 2 <= value <= 100:
        return f"{value:g} is above 1 (a percentage? return {value / 100:g})"
    if not 0 <= value <= 1:
        return f"{value:g} is outside [0, 1]"
    if isinstance(again, bool) or not isinstance(again, numbers.Real) or float(again) != value:
        return f"{value:g}, then {again!r} on a second call"
    return VALID_PREDICTION


def _prediction_cases(rng: random.Random) -> list[dict]:
    return [{} for _ in range(6)]  # a prediction takes no arguments: six calls, the same fraction each time


INT8_RTN = Exercise(
    chapter=6, id="int8-rtn", title="int8, round to nearest, per channel", difficulty=2, importance=5,
    statement=r"""
Round to nearest (RTN) is the baseline every quantizer is measured against, and Part 3.3
{cite:p}`allenzhu2024part33` finds that int8 costs a model none of its knowledge. Write
`quantize_int8(w)` for a 2-D float32 weight `w` (rows = output channels, as in an `nn.Linear`): one
scale per row, $s = \max_j |w_{ij}| / 127$ computed in float32 (no rounding of $s$ to float16, which
`labkit.quant` does by default), and $q = \mathrm{clamp}(\mathrm{round}(w / s), -127, 127)$, rounding
exact halves to the even neighbour as `torch.round` does. Return `(q, s)`: `q` an int8 tensor of `w`'s
shape, `s` a float32 tensor of shape `(rows,)`. An all-zero row gets $s = 0$ and $q = 0$, not nan. The
checker compares both with `labkit.quant.quantize_tensor` (8 bits, per channel, 32-bit scales) on
hidden cases (random weights, a zero row, rows with outliers or a negative largest entry, exact
halves, a single row or column) and checks $|q s - w| \le s/2$ for every weight. Why does the grid
leave $-128$ unused, and what does one outlier do to the other weights of its row?
""",
    solution=quantize_int8, reference=_quantize_int8, cases=_int8_cases, evaluate=_int8_outcome,
    imports=("import torch",))

STORAGE_BITS = Exercise(
    chapter=6, id="storage-bits", title="What a quantized weight costs", difficulty=1, importance=4,
    statement=r"""
A quantized weight is more than its integers: each group of `group_size` consecutive columns of a row
(or the whole row, `group_size=None`) stores its own scale of `scale_bits` bits (16 for float16) and,
for an asymmetric grid, a zero point of `bits` bits. Write `storage_bits_per_param(rows, columns, bits,
group_size, scale_bits=16, zero_point=False)`: the storage bits per weight of a `(rows, columns)`
matrix. For example, int4 in groups of 32 with 16-bit scales costs $4 + 16/32 = 4.5$ bits. The checker
compares it with `labkit.quant.storage_bits`. Then use it: in a width-16 lab model the MLP's output
layer is a $16 \times 64$ weight. What does int4 cost per weight with one scale per channel, in groups
of 32, in groups of 8, and the chapter's int4 in groups of 4 on a $16 \times 16$ attention weight,
next to int8 per channel? And a $4096 \times 4096$ layer of an LLM in groups of 128? Why are scales so
expensive in a tiny model, and what does that do to the bits per storage bit of a grouped scheme?
""",
    solution=storage_bits_per_param, reference=_storage_bits_per_param, cases=_storage_cases, rtol=1e-12,
    atol=1e-12)

PREDICT_INT3 = Exercise(
    chapter=6, id="predict-int3", title="Predict: how much does int3 keep?", difficulty=2, importance=3,
    statement=r"""
Before you read the table above (or rerun the chapter), predict: what fraction of the quick model's
bits of knowledge survives **int3**, one scale per output channel, round to nearest, with the
embeddings quantized too? Write `predicted_kept_int3()` returning your prediction as a float in
$[0, 1]$ (0.25 for a quarter, not 25). Think about what int8 keeps, how many levels int3 leaves a row
($-3 \dots 3$), and how close to capacity a tiny model is trained. This is a prediction, not a
computation: the checker cannot know the answer without running the model, so it only checks that you
return the same valid fraction on each of its calls; the answer is the chapter's measurement (see the
table above, and compare with int4 and with what GPTQ {cite:p}`frantar2022gptq` recovers). How far off
were you, and which way? `check_predicted_kept_int3(predicted_kept_int3, measured=...)` prints the
measured fraction next to yours.
""",
    solution=predicted_kept_int3, reference=_a_valid_prediction, cases=_prediction_cases,
    evaluate=_prediction_verdict)

EXERCISES = [INT8_RTN, STORAGE_BITS, PREDICT_INT3]

check_quantize_int8 = INT8_RTN.checker()
check_storage_bits_per_param = STORAGE_BITS.checker()
_check_prediction = PREDICT_INT3.checker()


def check_predicted_kept_int3(fn: Callable[..., Any], measured: float | None = None) -> CheckResult:
    """Check that your ``predicted_kept_int3()`` returns a fraction in [0, 1] (the same on every call);
    print what happened and return a result that is truthy on a pass. With ``measured`` (the chapter's
    fraction of bits kept at int3), a passing prediction is printed next to it."""
    if measured is not None and (isinstance(measured, bool) or not isinstance(measured, numbers.Real)
                                 or not math.isfinite(measured)):
        raise invalid("measured", measured, "None or the chapter's fraction of bits kept at int3 (a finite number)")
    result = _check_prediction(fn)
    if result and measured is not None:
        predicted, measured = float(fn()), float(measured)
        print(f"  you predicted {predicted:.1%} of the bits kept at int3; the chapter measured {measured:.1%} "
              f"({100 * (predicted - measured):+.1f} percentage points)")
    return result
