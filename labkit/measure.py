"""Measuring what a model knows: per-entity losses, exact recall, bits learned, MLS and MAC.

Why here and not in each chapter: Part 3.3's definitions (allenzhu2024part33: bits learned from losses
*summed over an entity's tokens*, R = bits / parameters without unused embedding rows) and Härmä et al.'s
MLS/MAC (harma2024empirical) are easy to get subtly wrong (averaging instead of summing, an off-by-one
between logits and targets, counting embedding rows of tokens that never occur). Every chapter reads its
numbers from here.

Position convention (labkit.data.base): the loss of token t is ``-log p(tokens[t] | tokens[:t])``,
read from the logits at position t - 1; an entity span [start, end) covers tokens start..end-1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from labkit.data.base import TokenBatch, TokenDataset
from labkit.model import count_params
from labkit.runtime import resolve_device, seed_everything
from labkit.train import TrainConfig, TrainHistory, record_lengths, train


@dataclass
class EntityScores:
    """Per item and entity span: summed loss (nats, float64), exact recall (bool) and span length."""

    loss: dict[str, torch.Tensor]
    correct: dict[str, torch.Tensor]
    n_tokens: dict[str, torch.Tensor]


def _as_batch(data: TokenBatch | TokenDataset, exposure: int) -> TokenBatch:
    return data if isinstance(data, TokenBatch) else data.exposure(exposure)


def score_entities(
    model: nn.Module,
    data: TokenBatch | TokenDataset,
    device: str | torch.device = "auto",
    batch_size: int = 128,
    exposure: int = 0,
) -> EntityScores:
    """Teacher-forced losses and argmax correctness of every entity span of every item, in batches.

    ``data`` is a TokenBatch or a dataset (its exposure ``exposure`` is scored; for bioS fresh mode
    any rendering carries the same knowledge). Runs under inference mode in fp32 on ``device`` (the
    model is moved there) and restores the model's train/eval mode afterwards.
    """
    batch = _as_batch(data, exposure)
    n, seq = batch.tokens.shape
    for name, span in batch.spans.items():
        if n and (int(span[:, 0].min()) < 1 or int(span[:, 1].max()) > seq or bool((span[:, 1] < span[:, 0]).any())):
            raise ValueError(f"span {name!r} is outside [1, {seq}] or has end < start")
    device = resolve_device(device)
    lengths = record_lengths(batch)
    loss = {name: torch.zeros(n, dtype=torch.float64) for name in batch.spans}
    correct = {name: torch.zeros(n, dtype=torch.bool) for name in batch.spans}
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                hi = min(lo + batch_size, n)
                length = int(lengths[lo:hi].max())
                x = batch.tokens[lo:hi, :length].to(device, torch.long)
                logits = model(x)[:, :-1].float()
                target = x[:, 1:]
                # column t holds the loss / correctness of token t (column 0: nothing is predicted there)
                nll = F.pad(F.cross_entropy(logits.transpose(1, 2), target, reduction="none"), (1, 0)).double()
                right = F.pad(logits.argmax(-1) == target, (1, 0), value=True)
                pos = torch.arange(length, device=device)
                for name, span in batch.spans.items():
                    start, end = span[lo:hi, 0:1].to(device), span[lo:hi, 1:2].to(device)
                    inside = (pos >= start) & (pos < end)
                    loss[name][lo:hi] = (nll * inside).sum(1).cpu()
                    correct[name][lo:hi] = (right | ~inside).all(1).cpu()
    finally:
        model.train(was_training)
    n_tokens = {name: (span[:, 1] - span[:, 0]).cpu() for name, span in batch.spans.items()}
    return EntityScores(loss=loss, correct=correct, n_tokens=n_tokens)


def entity_losses(
    model: nn.Module,
    data: TokenBatch | TokenDataset,
    device: str | torch.device = "auto",
    batch_size: int = 128,
    exposure: int = 0,
) -> dict[str, torch.Tensor]:
    """Span name → (n_items,) loss in nats *summed* over the span's tokens (Part 3.3's p1, p2, p3)."""
    return score_entities(model, data, device, batch_size, exposure).loss


def span_group(names: list[str] | Mapping[str, Any], span: str) -> list[str]:
    """The spans that make up ``span``: itself if present, else every ``span/...`` sub-span.

    So ``"value"`` is the value of a random sequence, and for bioD the conjunction of all
    ``"value/<attr>"`` spans (their ``chunk0`` sub-spans lie inside them and change nothing).
    """
    names = list(names)
    group = [span] if span in names else [n for n in names if n.startswith(span + "/")]
    if not group:
        raise ValueError(f"span={span!r} not found; allowed: {', '.join(sorted(names))}")
    return group


def recalled(
    model: nn.Module,
    dataset: TokenBatch | TokenDataset,
    span: str = "value",
    device: str | torch.device = "auto",
    batch_size: int = 128,
) -> torch.Tensor:
    """(n_items,) bool: the model recalls the item's ``span`` exactly (every token is the argmax).

    Teacher forcing suffices: greedy decoding of the span from the true prefix emits the first
    token's argmax; if that is right the prefix is again the true one, and so on, so greedy decoding
    reproduces the span exactly iff every teacher-forced argmax is right (ties broken the same way).
    For a group such as bioD's ``"value"`` every ``value/<attr>`` must be recalled (``span_group``).
    """
    scores = score_entities(model, dataset, device, batch_size)
    group = span_group(scores.correct, span)
    return torch.stack([scores.correct[name] for name in group]).all(0)


# --------------------------------------------------------------------------------------------------
# Bits learned and the capacity ratio
# --------------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """Bits of a dataset a model holds, and the capacity ratio R = bits / params (Part 3.3).

    ``params`` excludes embedding rows of tokens that never occur in the dataset; R is also given
    against non-embedding parameters, since embeddings are a large share of tiny models (a third to a half
    of the parameters of chapter 2's ``cpu-full`` models).
    ``breakdown`` holds the dataset's terms of ``bits`` (each clipped at 0, labkit.info); ``unclipped``
    the same terms before clipping (negative: worse than knowing only the marginal distribution).
    """

    bits: float
    params: int
    non_embedding_params: int | None
    bits_per_param: float
    bits_per_nonembedding_param: float | None
    information_bits: float
    breakdown: dict[str, float] = field(default_factory=dict)
    unclipped: dict[str, float] = field(default_factory=dict)

    @property
    def fraction_learned(self) -> float:
        """bits / information content of the dataset (1.0: the model knows everything)."""
        return self.bits / self.information_bits if self.information_bits else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction_learned": self.fraction_learned}


def parameter_count(model: nn.Module, dataset: TokenDataset, params: Any = None) -> tuple[int, int | None]:
    """(P, non-embedding P): from ``params`` (an int, or an object with ``.total``) or labkit.model.count_params."""
    if params is None:
        params = count_params(model, used_tokens=dataset.used_tokens())
    if isinstance(params, int):
        return params, None
    non_embedding = getattr(params, "non_embedding", None)
    return int(params.total), None if non_embedding is None else int(non_embedding)


def _plain(value: Any) -> Any:
    """Tensors and numbers of a breakdown as plain floats, so results are JSON-ready."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def bits_learned(
    model: nn.Module,
    dataset: TokenDataset,
    device: str | torch.device = "auto",
    params: Any = None,
    batch_size: int = 128,
) -> Measurement:
    """Bits learned (``dataset.bits_learned`` of the per-entity losses) and R = bits / params.

    ``params``: None → ``count_params(model, used_tokens=dataset.used_tokens())``; an int overrides the
    total (then the non-embedding figures are None), e.g. for models that labkit.model cannot count.
    """
    learned = dataset.bits_learned(entity_losses(model, dataset, device, batch_size))
    total, non_embedding = parameter_count(model, dataset, params)
    bits = float(learned.bits)
    return Measurement(
        bits=bits,
        params=total,
        non_embedding_params=non_embedding,
        bits_per_param=bits / total if total else float("nan"),
        bits_per_nonembedding_param=bits / non_embedding if non_embedding else None,
        information_bits=float(dataset.information_bits()),
        breakdown=_plain(dict(getattr(learned, "breakdown", {}) or {})),
        unclipped=_plain(dict(getattr(learned, "unclipped", {}) or {})),
    )


# --------------------------------------------------------------------------------------------------
# Memorisation capacity: MLS and MAC (Härmä et al.)
# --------------------------------------------------------------------------------------------------

TrainFn = Callable[..., TrainHistory]


@dataclass
class Probe:
    """One fresh training on a library of ``n`` items and how much of it was recalled."""

    n: int
    fraction_recalled: float
    complete: bool
    final_loss: float
    wall_time: float


@dataclass
class MLSResult:
    """Maximum library size: the largest n whose library a fresh model memorised completely.

    ``bits`` is the information content of that library (``information_bits()`` of the n-item
    dataset), ``bits_per_param`` divides it by the model's parameter count. ``capped`` is True when
    even ``max_size`` was memorised (the MLS is then only a lower bound). ``history`` lists every
    probe as (n, fraction recalled), in the order run.
    """

    size: int
    bits: float
    params: int
    bits_per_param: float
    capped: bool
    threshold: float
    probes: list[Probe]

    @property
    def history(self) -> list[tuple[int, float]]:
        return [(p.n, p.fraction_recalled) for p in self.probes]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "history": self.history}


def mls(
    make_model: Callable[[], nn.Module],
    make_dataset: Callable[[int], TokenDataset],
    recipe: TrainConfig | None = None,
    start: int = 16,
    max_size: int = 4096,
    tolerance: float = 0.05,
    threshold: float = 1.0,
    span: str = "value",
    device: str | torch.device = "auto",
    params: Any = None,
    train_fn: TrainFn = train,
) -> MLSResult:
    """Maximum library size: double n from ``start`` until a probe fails, then bisect.

    Each probe builds a fresh model (``make_model()``, called right after ``seed_everything(seed)``
    with the training seed so the same initialisation is used at every n; make_model should not
    reseed differently) and a library ``make_dataset(n)``, trains it with ``train_fn(model, dataset,
    recipe, device=device, progress=False)`` (default recipe: ``TrainConfig()``) and counts the items
    whose ``span`` is recalled exactly (``recalled``).

    A library counts as memorised when the recalled fraction is ≥ ``threshold`` (1.0 = every item,
    the definition; 0.99 tolerates a stray item that an unlucky seed or a flat argmax tie loses, which
    would otherwise make the search erratic). Bisection stops once the bracket (lo memorised, hi not)
    is at most ``max(1, tolerance × lo)`` items wide, so the MLS is found to within ``tolerance`` (relative);
    tolerance=0 finds it exactly. The search assumes memorisation is monotone in n; ``probes`` shows
    when noise breaks that.
    """
    if not 0 < threshold <= 1 or start < 1 or max_size < start or tolerance < 0:
        got = f"threshold={threshold}, start={start}, max_size={max_size}, tolerance={tolerance}"
        raise ValueError(f"{got} is not valid; allowed: 0 < threshold <= 1, 1 <= start <= max_size, tolerance >= 0")
    recipe = recipe or TrainConfig()
    probes: list[Probe] = []
    best: tuple[nn.Module, TokenDataset] | None = None

    def probe(n: int) -> bool:
        nonlocal best
        seed_everything(recipe.seed)
        model, dataset = make_model(), make_dataset(n)
        t0 = time.perf_counter()
        history = train_fn(model, dataset, recipe, device=device, progress=False)
        fraction = float(recalled(model, dataset, span, device).float().mean())
        complete = fraction >= threshold
        probes.append(Probe(n, fraction, complete, float(history.final_loss), time.perf_counter() - t0))
        if complete and (best is None or n > best[1].n_items):
            best = (model, dataset)
        return complete

    lo, hi, n = 0, None, start
    while hi is None:
        if probe(n):
            lo = n
            if n >= max_size:
                break
            n = min(2 * n, max_size)
        else:
            hi = n
    while hi is not None and hi - lo > max(1, math.floor(tolerance * lo)):
        mid = (lo + hi) // 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    if best is None:
        total = parameter_count(make_model(), make_dataset(start), params)[0]
        bits = 0.0
    else:
        total = parameter_count(best[0], best[1], params)[0]
        bits = float(best[1].information_bits())
    return MLSResult(lo, bits, total, bits / total if total else float("nan"), hi is None, threshold, probes)


@dataclass
class MACResult:
    """Maximum attainable capacity: items recalled after training on a library larger than capacity.

    ``bits_recalled`` = items_recalled × bits_per_item, with bits_per_item = information_bits() /
    n_items (exact for random libraries; for bioD it spreads the value-set term K·log2 C(T^L, D) over
    the people). ``measurement`` is the loss-based (Morris-style) ``bits_learned`` of the same model,
    which also credits partially known items.
    """

    n_items: int
    items_recalled: int
    bits_per_item: float
    bits_recalled: float
    params: int
    bits_per_param: float
    measurement: Measurement
    history: TrainHistory

    @property
    def fraction_recalled(self) -> float:
        return self.items_recalled / self.n_items if self.n_items else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("measurement", "history")},
            "fraction_recalled": self.fraction_recalled,
            "measurement": self.measurement.to_dict(),
            "history": self.history.to_dict(),
        }


def mac(
    model: nn.Module,
    dataset: TokenDataset,
    recipe: TrainConfig | None = None,
    span: str = "value",
    device: str | torch.device = "auto",
    params: Any = None,
    train_fn: TrainFn = train,
) -> MACResult:
    """Train ``model`` once on ``dataset`` (meant to exceed its capacity) and count what it recalls exactly."""
    history = train_fn(model, dataset, recipe or TrainConfig(), device=device, progress=False)
    n_recalled = int(recalled(model, dataset, span, device).sum())
    measurement = bits_learned(model, dataset, device, params)
    per_item = float(dataset.information_bits()) / dataset.n_items
    bits = n_recalled * per_item
    return MACResult(
        n_items=dataset.n_items,
        items_recalled=n_recalled,
        bits_per_item=per_item,
        bits_recalled=bits,
        params=measurement.params,
        bits_per_param=bits / measurement.params if measurement.params else float("nan"),
        measurement=measurement,
        history=history,
    )
