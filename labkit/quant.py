"""Post-training weight quantization: the same trained model, stored in fewer bits per parameter.

Why: the lab measures knowledge in bits and compares it with the bits a model *stores*. Part 3.3
(allenzhu2024part33) asks how much knowledge survives when the weights are quantized (int8, int4); this
module turns a trained fp32 ``labkit.model.Transformer`` into its quantized twin, so that the bit meter
(``labkit.measure``) can be rerun on it and bits learned set against ``QuantReport.bits_per_param``.
``quantize`` returns a new model whose every weight is exactly a value of the scheme, stored dequantized in
float32 so the ordinary forward pass (and every hook) runs unchanged; the input model is never touched.

Schemes: ``"fp32"`` (a float32 copy), ``"bf16"`` and ``"fp16"`` (every floating parameter rounded to that
type) and ``"int8"``, ``"int6"``, ``"int5"``, ``"int4"``, ``"int3"`` (b-bit integers times a scale; int6 and
int5 fill in where a small model's knowledge gives way). Integer schemes quantize the
weight of every ``nn.Linear`` (attention, MLP, router, an untied unembedding); with ``embeddings=True``
also the tables: every ``nn.Embedding`` (token, absolute and relative positions, hence a tied
unembedding) and the position attention's ``pos_logits``, always one scale per row (per token for the
token embedding). Norm weights and all biases stay fp32: they are a tiny share of the parameters, and a
norm's gain scales one feature of every token, so its rounding error would reach every later layer.

The integer grid, per row of a weight (one output feature) or per group of ``group_size`` consecutive
input columns of a row:

- symmetric: ``w ≈ s·q``, ``q`` in ``[-(2^(b-1)-1), 2^(b-1)-1]``, ``s = max|w| / (2^(b-1)-1)``; the
  level ``-2^(b-1)`` is unused, so that 0 is exact and the grid is symmetric.
- asymmetric: ``w ≈ s·(q - z)``, ``q`` in ``[0, 2^b-1]``, ``s = (max - min) / (2^b-1)``, integer zero point
  ``z = round(-min / s)``. As in GPTQ's reference implementation the range is widened to contain 0 (min
  <= 0 <= max), so that ``z`` fits in b bits and 0 is exact.

Storage (``QuantReport``, ``storage_bits``): b bits per quantized weight, plus per row or group one scale
of ``scale_bits`` bits (16: float16, the default; 32: float32) and, asymmetric, one b-bit zero point;
everything kept is 32 bits. With 16-bit scales the scale is rounded *up* to the nearest float16 before the
weights are rounded, so the model really is what a float16 scale can express and no weight falls off the
grid: the error stays at most half a scale per element. Defaults (``group_size="auto"``): int8-int5 one scale
per output channel; int4 and int3 groups of 32 columns where 32 divides the layer's ``in_features``, per
channel where it does not (with 8 or 16 levels one outlier coarsens a whole row's grid; a group of 32
costs half a bit per weight in 16-bit scales).

Methods for integer schemes: ``"rtn"`` rounds every weight to the nearest level. ``"gptq"``
(frantar2022gptq) rounds one input column at a time and moves each column's rounding error onto the
columns not yet rounded, weighted by the inverse Hessian ``H = 2 XᵀX / n`` of the layer's inputs ``X``,
which minimises the layer's *output* error ``‖XWᵀ - XŴᵀ‖`` on those inputs rather than the weight error.
``X`` comes from running ``calibration`` (token ids, records of the training data) through the model,
sequentially as in the paper: each layer sees the inputs produced by the layers before it *already
quantized*, so it can correct their errors. Tables are always rounded to nearest: a lookup's input is
one-hot, so its Hessian is diagonal and GPTQ would have no error to move. A layer that receives no
calibration input (an expert no token is routed to) is rounded to nearest too.

Float casts and symmetric round to nearest are idempotent: quantizing the result again the same way
changes nothing. Asymmetric grids are not in general (after one pass a group's extreme value can sit one
level inside the grid, and a second pass fits a finer grid to the narrower range), nor is rounding a GPTQ
model to nearest (its updated weights need not reach a row's or group's last level either).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import torch
from torch import nn

from labkit.checks import check_positive, invalid

SCHEMES = ("fp32", "bf16", "fp16", "int8", "int6", "int5", "int4", "int3")
METHODS = ("rtn", "gptq")
FLOAT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
INT_BITS = {"int8": 8, "int6": 6, "int5": 5, "int4": 4, "int3": 3}
AUTO_GROUP = 32  # group_size="auto": int4 / int3 use groups of 32 columns where 32 divides in_features
SCALE_BITS = (16, 32)
DAMP = 0.01  # GPTQ's dampening: H + DAMP · mean(diag H) · I, the reference implementation's default
_BLOCK = 128  # GPTQ's lazy batch: columns updated together, as in the reference implementation
_CALIBRATION_BATCH = 64  # records per forward pass when collecting GPTQ's layer inputs
_NORMS = (nn.LayerNorm, nn.RMSNorm)

__all__ = ["METHODS", "SCHEMES", "QuantReport", "gptq_tensor", "quantize", "quantize_tensor", "storage_bits"]


@dataclass(frozen=True)
class QuantReport:
    """What ``quantize`` did and what the result costs to store.

    ``quantized_params`` are stored in the scheme (for float schemes: every parameter, cast), ``kept_params``
    stay fp32 (norms, biases, and the tables unless ``embeddings``); the two add up to the model's
    parameter count (``labkit.model.count_params(model).total``; a tied embedding counts once).
    ``storage_bits`` counts every weight, scale and zero point (see the module docstring);
    ``bits_per_param`` spreads it over all parameters, ``bits_per_quantized_param`` over the quantized ones
    only (4.5 for int4 in groups of 32 with 16-bit scales). ``group_sizes`` is ``(name, group_size)`` for
    every integer-quantized tensor (None: one scale per row), i.e. how ``group_size="auto"`` resolved.
    ``method`` is ``"cast"`` for the float schemes; ``group_size`` and ``symmetric`` are as passed.
    """

    scheme: str
    method: str
    group_size: int | str | None
    symmetric: bool
    embeddings: bool
    scale_bits: int
    quantized_params: int
    kept_params: int
    storage_bits: int
    bits_per_param: float
    bits_per_quantized_param: float
    group_sizes: tuple[tuple[str, int | None], ...] = ()

    @property
    def total_params(self) -> int:
        return self.quantized_params + self.kept_params

    def as_dict(self) -> dict[str, object]:
        """Every field but ``group_sizes``: one row of a results table."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "group_sizes"}


# --- one tensor --------------------------------------------------------------------------------------
def _check_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise invalid("bits", bits, "an integer 2..8")
    return bits


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise invalid(name, value, "True, False")
    return value


def _check_scale_bits(scale_bits: object) -> int:
    if isinstance(scale_bits, bool) or scale_bits not in SCALE_BITS:
        raise invalid("scale_bits", scale_bits, ", ".join(map(str, SCALE_BITS)))
    return scale_bits  # type: ignore[return-value]


def _group_width(group_size: object, columns: int) -> int:
    """The number of columns that share a scale: ``columns`` for None (per row), else ``group_size``."""
    if group_size is None:
        return columns
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 or columns % group_size:
        divisors = ", ".join(str(d) for d in range(1, columns + 1) if columns % d == 0)
        allowed = f"None (per output channel) or a divisor of {columns} columns: {divisors}"
        raise invalid("group_size", group_size, allowed)
    return group_size


def _check_matrix(name: str, w: object) -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or not w.dtype.is_floating_point or not w.numel():
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise invalid(name, shape, "a non-empty 2-D floating-point tensor (rows, columns)")
    if not torch.isfinite(w).all():
        raise invalid(name, "a tensor with inf or nan", "finite values")
    return w.detach().float()


def _round_scale(s: torch.Tensor, scale_bits: int) -> torch.Tensor:
    """``s`` as stored: float32 as is, or the nearest float16 *at or above* ``s`` (rounding down would
    put the largest weight beyond the last level, so it would be clipped by more than half a scale)."""
    if scale_bits == 32:
        return s
    if (s > torch.finfo(torch.float16).max).any():
        raise invalid("scale_bits", scale_bits, "32 for weights this large (a scale above float16's maximum)")
    s16 = s.to(torch.float16)
    s16 = torch.where(s16.float() < s, torch.nextafter(s16, torch.full_like(s16, float("inf"))), s16)
    return s16.float()


def _params(w: torch.Tensor, bits: int, symmetric: bool, scale_bits: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scale and zero point (None if symmetric) of each row of ``w`` (..., columns), shaped (..., 1)."""
    if symmetric:
        return _round_scale(w.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1), scale_bits), None
    qmax = 2**bits - 1
    lo, hi = w.amin(-1, keepdim=True).clamp(max=0), w.amax(-1, keepdim=True).clamp(min=0)
    s = _round_scale((hi - lo) / qmax, scale_bits)
    zero = torch.where(s > 0, torch.round(-lo / torch.where(s > 0, s, 1)), 0).clamp(0, qmax)
    return s, zero


def _fake(w: torch.Tensor, s: torch.Tensor, zero: torch.Tensor | None, bits: int) -> torch.Tensor:
    """Round ``w`` to the grid of ``(s, zero)`` and map back to floats (exact: small integers times a
    float16 scale are float32 numbers). A zero scale (an all-zero row or group) gives 0, not nan."""
    safe = torch.where(s > 0, s, 1)
    if zero is None:
        qmax = 2 ** (bits - 1) - 1
        return torch.round(w / safe).clamp(-qmax, qmax) * s
    return (torch.round(w / safe) + zero).clamp(0, 2**bits - 1).sub(zero) * s


def quantize_tensor(w: torch.Tensor, bits: int, group_size: int | None = None, symmetric: bool = True, *,
                    scale_bits: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Round a weight (rows, columns) to the nearest level of a ``bits``-bit grid (2..8); return
    ``(dequantized, scales, zeros)``.

    One scale per row (``group_size=None``; a row of an ``nn.Linear`` weight is one output feature) or per
    group of ``group_size`` consecutive columns of a row, which must divide the number of columns.
    ``dequantized`` is float32 with ``w``'s shape; ``scales`` and ``zeros`` are float32 (rows, groups),
    ``zeros`` integer-valued and None when ``symmetric`` (no zero point is stored). Every element is within
    half its scale of ``w``, and ``dequantized = (q - zeros) · scales`` for integers ``q`` of the range.
    """
    w = _check_matrix("w", w)
    bits, symmetric = _check_bits(bits), _check_flag("symmetric", symmetric)
    scale_bits = _check_scale_bits(scale_bits)
    rows, columns = w.shape
    g = _group_width(group_size, columns)
    grouped = w.reshape(rows, columns // g, g)
    s, zero = _params(grouped, bits, symmetric, scale_bits)
    deq = _fake(grouped, s, zero, bits).reshape(rows, columns)
    return deq, s.squeeze(-1), None if zero is None else zero.squeeze(-1)


def storage_bits(shape: tuple[int, int] | torch.Size, bits: int, group_size: int | None = None,
                 symmetric: bool = True, scale_bits: int = 16) -> int:
    """Bits to store a (rows, columns) weight quantized to ``bits``: the integers, one ``scale_bits`` scale
    per row or group and, asymmetric, one ``bits``-bit zero point per row or group. Per weight that is
    ``bits + (scale_bits [+ bits]) / group``, e.g. 4 + 16/32 = 4.5 for symmetric int4 in groups of 32."""
    if len(shape) != 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise invalid("shape", shape, "(rows, columns), two positive integers")
    bits, symmetric = _check_bits(bits), _check_flag("symmetric", symmetric)
    scale_bits = _check_scale_bits(scale_bits)
    rows, columns = shape
    groups = rows * (columns // _group_width(group_size, columns))
    return rows * columns * bits + groups * (scale_bits + (0 if symmetric else bits))


# --- GPTQ ----------------------------------------------------------------------------------------------
def _gptq(w: torch.Tensor, hessian: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
          scale_bits: int, damp: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """GPTQ (frantar2022gptq) of one weight (rows, columns) given ``hessian`` = 2 XᵀX / n (columns,
    columns); the reference implementation's algorithm (lazy batches of columns, Cholesky form of H⁻¹),
    without reordering columns."""
    W = w.detach().float().clone()
    rows, columns = W.shape
    g = _group_width(group_size, columns)
    H = hessian.detach().double().cpu().clone()  # a (columns, columns) solve: CPU float64 on any device
    dead = H.diagonal() == 0  # inputs that are always 0: their weights can be anything, take 0
    H.diagonal()[dead] = 1
    W[:, dead.to(W.device)] = 0
    H.diagonal().add_(damp * H.diagonal().mean())
    L, info = torch.linalg.cholesky_ex(H)
    if info:
        raise invalid("damp", damp, "a larger value: the calibration Hessian is not positive definite")
    # H⁻¹ = UᵀU with U upper triangular: row i of U is how column i's error spreads to later columns
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True).to(W.device, torch.float32)
    Q = torch.zeros_like(W)
    scales = W.new_zeros(rows, columns // g)
    zeros = None if symmetric else W.new_zeros(rows, columns // g)
    if g == columns:  # per channel: the row's scale comes from the weights before any update
        s, zero = _params(W, bits, symmetric, scale_bits)
    block = g * max(1, _BLOCK // g) if g < columns else _BLOCK  # whole groups per block: see below
    for i1 in range(0, columns, block):
        i2 = min(i1 + block, columns)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Err1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            if g < columns and col % g == 0:  # a group's scale from its weights as updated so far
                s, zero = _params(W1[:, i:i + g], bits, symmetric, scale_bits)
            if col % g == 0:
                scales[:, col // g] = s[:, 0]
                if zeros is not None:
                    zeros[:, col // g] = zero[:, 0]
            q = _fake(W1[:, i:i + 1], s, zero, bits)[:, 0]
            Q[:, col] = q
            err = (W1[:, i] - q) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # the block's errors reach the later columns at once
    return Q, scales, zeros


def gptq_tensor(w: torch.Tensor, inputs: torch.Tensor, bits: int, group_size: int | None = None,
                symmetric: bool = True, *, damp: float = DAMP,
                scale_bits: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """GPTQ (frantar2022gptq) of one ``nn.Linear`` weight (out, in) for the layer inputs ``inputs``
    (..., in); returns ``(dequantized, scales, zeros)`` as ``quantize_tensor`` does, on the same grid, but
    chosen to make ``inputs @ dequantized.T`` close to ``inputs @ w.T`` rather than each weight close to
    its own value. ``damp`` adds ``damp · mean(diag H)`` to the Hessian's diagonal (its inverse must exist
    even when the inputs span fewer than ``in`` directions)."""
    w = _check_matrix("w", w)
    bits, symmetric = _check_bits(bits), _check_flag("symmetric", symmetric)
    scale_bits, damp = _check_scale_bits(scale_bits), check_positive("damp", damp)
    _group_width(group_size, w.shape[1])
    if not isinstance(inputs, torch.Tensor) or not inputs.numel() or inputs.shape[-1] != w.shape[1]:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise invalid("inputs", shape, f"a non-empty tensor (..., {w.shape[1]}) of the layer's inputs")
    x = inputs.detach().reshape(-1, w.shape[1]).float()
    return _gptq(w, 2 * x.T @ x / len(x), bits, group_size, symmetric, scale_bits, damp)


class _Captured(Exception):
    """Raised by the input-collecting hook to end a calibration forward pass once the layer has run."""


def _hessian(model: nn.Module, linear: nn.Linear, chunks: list[torch.Tensor],
             via_features: bool) -> torch.Tensor | None:
    """2 XᵀX / n over the inputs X that ``linear`` receives when ``model`` runs the calibration ``chunks``
    (None if it receives none, e.g. an expert no token is routed to). ``via_features``: the layer is the
    untied unembedding, which ``Transformer.forward`` applies with ``F.linear`` rather than as a module
    call, so its inputs are taken from ``model.features``."""
    columns = linear.in_features
    H = torch.zeros(columns, columns, device=linear.weight.device)
    seen = [0]

    def add(x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, columns).float()
        H.addmm_(x.T, x)
        seen[0] += len(x)

    if via_features:
        for chunk in chunks:
            add(model.features(chunk))
    else:
        def hook(module: nn.Module, args: tuple) -> None:
            add(args[0])
            raise _Captured  # the rest of the forward pass is not needed

        handle = linear.register_forward_pre_hook(hook)
        try:
            for chunk in chunks:
                try:
                    model(chunk)
                except _Captured:
                    pass
        finally:
            handle.remove()
    return 2 * H / seen[0] if seen[0] else None


def _call_order(model: nn.Module, linears: list[nn.Linear], chunks: list[torch.Tensor]) -> list[nn.Linear]:
    """``linears`` in the order the forward pass first calls them (the order GPTQ quantizes them in)."""
    order: dict[int, nn.Linear] = {}

    def note(module: nn.Module, args: tuple) -> None:
        order.setdefault(id(module), module)

    handles = [lin.register_forward_pre_hook(note) for lin in linears]
    try:
        for chunk in chunks:
            model(chunk)
    finally:
        for handle in handles:
            handle.remove()
    return list(order.values())


# --- a model -------------------------------------------------------------------------------------------
def _sort_parameters(model: nn.Module) -> tuple[dict[str, nn.Linear], dict[str, nn.Parameter], dict[str, nn.Parameter]]:
    """Split the parameters into linear weights ``{name: layer}``, tables and kept ``{name: parameter}``.
    A weight shared by a Linear and an Embedding (tying) is a table."""
    kinds: dict[int, str] = {}
    owners: dict[int, nn.Linear] = {}
    for module in model.modules():
        for p_name, p in module.named_parameters(recurse=False):
            if isinstance(module, nn.Embedding):
                kind = "table"
            elif isinstance(module, nn.Linear) and p_name == "weight":
                kind, owners[id(p)] = "linear", module
            elif isinstance(module, _NORMS) or p.ndim != 2 or "bias" in p_name:
                kind = "kept"
            else:
                kind = "table"  # pos_logits: a table of positions, like an embedding
            if kinds.get(id(p)) != "table":
                kinds[id(p)] = kind
    linears, tables, kept = {}, {}, {}
    for name, p in model.named_parameters():
        if kinds[id(p)] == "linear":
            linears[name] = owners[id(p)]
        else:
            (tables if kinds[id(p)] == "table" else kept)[name] = p
    return linears, tables, kept


def _resolve_groups(scheme: str, group_size: int | str | None, linears: dict[str, nn.Linear]) -> dict[str, int | None]:
    """Each linear weight's group size; an explicit one must divide every layer's ``in_features``."""
    if group_size == "auto":
        auto = AUTO_GROUP if scheme in ("int4", "int3") else None
        return {name: auto if auto and lin.in_features % auto == 0 else None for name, lin in linears.items()}
    widths = sorted({lin.in_features for lin in linears.values()})
    if group_size is not None and any(w % group_size for w in widths):
        common = [d for d in range(1, widths[0] + 1) if all(w % d == 0 for w in widths)]
        raise invalid("group_size", group_size, f"'auto', None (per output channel) or a divisor of every layer's "
                      f"in_features {widths}: {', '.join(map(str, common))}")
    return dict.fromkeys(linears, group_size)


def _check_calibration(model: nn.Module, calibration: object) -> torch.Tensor:
    cfg = getattr(model, "cfg", None)
    max_len, vocab = getattr(cfg, "max_len", None), getattr(cfg, "vocab_size", None)
    allowed = f"a LongTensor of token ids (n, T), n >= 1, 1 <= T <= max_len={max_len}, ids in [0, {vocab})"
    if not isinstance(calibration, torch.Tensor):
        raise invalid("calibration", type(calibration).__name__, allowed)
    dtype, shape = calibration.dtype, tuple(calibration.shape)
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise invalid("calibration", f"a {dtype} tensor", allowed)
    if len(shape) != 2 or not calibration.numel() or (max_len is not None and shape[1] > max_len):
        raise invalid("calibration", f"a tensor of shape {shape}", allowed)
    lo, hi = int(calibration.min()), int(calibration.max())
    if lo < 0 or (vocab is not None and hi >= vocab):
        raise invalid("calibration", f"ids in [{lo}, {hi}]", allowed)
    return calibration.long()


def quantize(model: nn.Module, scheme: str, *, group_size: int | str | None = "auto", method: str = "rtn",
             symmetric: bool = True, calibration: torch.Tensor | None = None, embeddings: bool = False,
             return_report: bool = False, damp: float = DAMP,
             scale_bits: int = 16) -> nn.Module | tuple[nn.Module, QuantReport]:
    """A quantized copy of ``model`` (a labkit ``Transformer``), or ``(copy, QuantReport)`` with
    ``return_report``; ``model`` itself is unchanged.

    ``scheme``: one of ``SCHEMES`` (see the module docstring for what each stores). For the integer
    schemes: ``group_size`` None (one scale per output channel), an int (groups of that many input
    columns; it must divide every quantized layer's ``in_features``) or ``"auto"`` (int8 per channel,
    int4/int3 groups of 32 where 32 divides ``in_features``, int6/int5 per channel); ``method`` ``"rtn"`` or ``"gptq"``;
    ``symmetric`` or asymmetric with a zero point; ``embeddings`` also quantizes the tables, per row.
    ``calibration`` (token ids (n, T), records of the training data) is what GPTQ collects the layer
    inputs from and must be given with ``method="gptq"``; round to nearest and the float schemes do not
    use it (it is still checked), so one sweep can pass it to every method. ``damp`` is GPTQ's dampening,
    ``scale_bits`` the storage of a scale (16 or 32).
    """
    if scheme not in SCHEMES:
        raise invalid("scheme", scheme, ", ".join(map(repr, SCHEMES)))
    if method not in METHODS:
        raise invalid("method", method, ", ".join(map(repr, METHODS)))
    symmetric, embeddings = _check_flag("symmetric", symmetric), _check_flag("embeddings", embeddings)
    return_report = _check_flag("return_report", return_report)
    scale_bits, damp = _check_scale_bits(scale_bits), check_positive("damp", damp)
    if group_size != "auto" and group_size is not None and (
            isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1):
        raise invalid("group_size", group_size, "'auto', None (per output channel) or a positive integer")
    if method == "gptq" and calibration is None:
        raise invalid("calibration", None, "token ids (n, T) from the training data: method='gptq' needs them")
    if calibration is not None:
        calibration = _check_calibration(model, calibration)
    out = copy.deepcopy(model).float()
    total = sum(p.numel() for p in out.parameters())
    with torch.no_grad():
        if scheme in FLOAT_DTYPES:
            for p in out.parameters():
                p.copy_(p.to(FLOAT_DTYPES[scheme]).float())
            bits = torch.finfo(FLOAT_DTYPES[scheme]).bits
            report = QuantReport(scheme, "cast", group_size, symmetric, embeddings, scale_bits, total, 0,
                                 bits * total, float(bits), float(bits))
        else:
            report = _quantize_integers(out, scheme, group_size, method, symmetric, calibration, embeddings,
                                        damp, scale_bits, total)
    return (out, report) if return_report else out


def _quantize_integers(model: nn.Module, scheme: str, group_size: int | str | None, method: str, symmetric: bool,
                       calibration: torch.Tensor | None, embeddings: bool, damp: float, scale_bits: int,
                       total: int) -> QuantReport:
    """Quantize ``model`` (the copy) in place; the report of what was stored."""
    bits = INT_BITS[scheme]
    linears, tables, kept = _sort_parameters(model)
    groups = _resolve_groups(scheme, group_size, linears)
    if not embeddings:
        kept, tables = {**tables, **kept}, {}
    for p in tables.values():  # first, so that GPTQ's layer inputs come from quantized embeddings
        p.copy_(quantize_tensor(p, bits, None, symmetric, scale_bits=scale_bits)[0])
    todo = dict(linears)
    if method == "gptq":
        was_training = model.training
        model.eval()
        chunks = list(calibration.to(next(model.parameters()).device).split(_CALIBRATION_BATCH))
        names = {id(lin): name for name, lin in linears.items()}
        order = _call_order(model, list(linears.values()), chunks)
        unembed = getattr(model, "unembed", None)
        if isinstance(unembed, nn.Linear) and id(unembed) in names and hasattr(model, "features"):
            order = [lin for lin in order if lin is not unembed] + [unembed]
        for lin in order:
            name = names[id(lin)]
            H = _hessian(model, lin, chunks, via_features=lin is unembed)
            if H is not None:  # a layer that received no inputs is rounded to nearest below
                lin.weight.copy_(_gptq(lin.weight, H, bits, groups[name], symmetric, scale_bits, damp)[0])
                del todo[name]
        model.train(was_training)
    for name, lin in todo.items():
        lin.weight.copy_(quantize_tensor(lin.weight, bits, groups[name], symmetric, scale_bits=scale_bits)[0])
    stored = sum(storage_bits(tuple(lin.weight.shape), bits, groups[name], symmetric, scale_bits)
                 for name, lin in linears.items())
    stored += sum(storage_bits(tuple(p.shape), bits, None, symmetric, scale_bits) for p in tables.values())
    quantized = sum(lin.weight.numel() for lin in linears.values()) + sum(p.numel() for p in tables.values())
    kept_params = sum(p.numel() for p in kept.values())
    assert quantized + kept_params == total
    storage = stored + 32 * kept_params
    return QuantReport(scheme, method, group_size, symmetric, embeddings, scale_bits, quantized, kept_params, storage,
                       storage / total, stored / quantized if quantized else float("nan"),
                       tuple(groups.items()) + tuple((name, None) for name in tables))
