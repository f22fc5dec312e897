"""Linear probes: where does a trained model make knowledge linearly readable?

Why: bits learned (labkit.measure) say *how much* a model knows; a probe says *where* the knowledge sits.
A multinomial logistic regression reads an attribute of a person from the model's activation at one
hook and one token position (alain2016probes); if it predicts the attribute of held-out people, the
activation holds that attribute linearly. Part 3.1's question of whether knowledge is already at the
name, or only retrieved at the attribute's key token, is a probe at ``"name_last"`` against one at
``"before_value/<k>"``.

A probe that is too expressive learns the task itself instead of reading the representation, so every
accuracy comes with a control task (hewitt2019control): each *type* of input gets a fixed random label
drawn from the true labels' empirical distribution, the same for every item of that type. Hewitt & Liang's
type is the word at the probed position; here it is by default the last name token (``"name_last"``),
the "word" a person's attributes attach to, shared by the people whose names end alike. (The token at the
probed position itself would be degenerate at a key token, which is the same for everyone.) A probe can
score on the control task only by memorising which type maps to which label, so ``selectivity = accuracy
- control accuracy`` is what the representation adds beyond the probe's own capacity. (A map from each
true label value to a control label would not do: a bijection of the classes leaves a multinomial probe's
accuracy unchanged.)

The probe is a small softmax regression in torch (float64, full-batch L-BFGS, standardised features, L2
penalty with scikit-learn's ``C`` convention) rather than scikit-learn: at the lab's sizes (hundreds of
items, tens to hundreds of features) it fits in milliseconds, is deterministic for a seed, and keeps
scikit-learn and SciPy out of the lab's dependencies.

Positions are named relative to a dataset's spans (labkit.data.base): ``"<span>_first"``,
``"<span>_last"`` (the span's first / last token) and ``"before_<span>"`` (the token just before it,
whose logits predict the span's first token: for bioD's ``"value/<k>"`` that is the key token); an int is
an explicit position, the same for every item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from labkit.checks import check_fraction, check_int, check_positive, invalid
from labkit.data.base import TokenBatch, TokenDataset
from labkit.runtime import resolve_device

if TYPE_CHECKING:
    import pandas as pd

Position = str | int

__all__ = ["ProbeResult", "activations", "control_labels", "fit_probe", "position_names", "probe_table",
           "resolve_positions", "target_labels"]


# --------------------------------------------------------------------------------------------------
# Positions and activations
# --------------------------------------------------------------------------------------------------


def position_names(batch: TokenBatch) -> list[str]:
    """Every named position ``batch``'s spans define (what ``positions`` may name besides integers)."""
    return [form for span in batch.spans for form in (f"{span}_first", f"{span}_last", f"before_{span}")]


def _batch(data: TokenBatch | TokenDataset) -> TokenBatch:
    return data if isinstance(data, TokenBatch) else data.exposure(0)


def resolve_positions(data: TokenBatch | TokenDataset, positions: Sequence[Position]) -> dict[Position, torch.Tensor]:
    """``{position: (n_items,) int64 token index}`` for named or integer ``positions`` (module docstring)."""
    batch = _batch(data)
    n, seq = batch.tokens.shape
    out: dict[Position, torch.Tensor] = {}
    for pos in positions:
        if isinstance(pos, int) and not isinstance(pos, bool):
            check_int("positions", pos, 0, seq - 1)
            out[pos] = torch.full((n,), pos, dtype=torch.int64)
            continue
        index = None
        if isinstance(pos, str):
            if pos.startswith("before_") and pos[len("before_"):] in batch.spans:
                index = batch.spans[pos[len("before_"):]][:, 0] - 1
            elif pos.endswith("_first") and pos[: -len("_first")] in batch.spans:
                index = batch.spans[pos[: -len("_first")]][:, 0].clone()
            elif pos.endswith("_last") and pos[: -len("_last")] in batch.spans:
                index = batch.spans[pos[: -len("_last")]][:, 1] - 1
        if index is None:
            raise invalid("positions", pos, f"an integer in [0, {seq}) or one of {', '.join(position_names(batch))}")
        out[pos] = index.to(torch.int64)
    return out


def _probe_hooks(model: nn.Module) -> list[str]:
    """Hooks with a (batch, pos, ...) layout (the attention pattern: (batch, head, query, key)); the MoE
    experts' hooks see routed tokens, not positions, so they cannot be probed at a position."""
    return [name for name in model.hook_names() if ".experts." not in name]


def _check_hooks(model: nn.Module, hooks: Sequence[str] | str) -> list[str]:
    names = [hooks] if isinstance(hooks, str) else list(hooks)
    allowed = _probe_hooks(model)
    for name in names:
        if name not in allowed:
            raise invalid("hooks", name, ", ".join(allowed))
    if not names:
        raise invalid("hooks", hooks, "one or more of " + ", ".join(allowed))
    return names


def _gather(name: str, act: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(b, d) activations of each item at its own position ``index`` (b,), the rest flattened."""
    rows = torch.arange(len(index), device=act.device)
    if name.endswith(("hook_pattern", "hook_attn_scores")):  # (batch, head, query, key): the query's row
        picked = act[rows, :, index]
    else:
        picked = act.expand(len(index), *act.shape[1:])[rows, index]  # hook_pos_embed has batch 1
    return picked.reshape(len(index), -1)


@torch.no_grad()
def activations(
    model: nn.Module,
    dataset: TokenBatch | TokenDataset,
    hooks: Sequence[str] | str,
    positions: Sequence[Position],
    device: str | torch.device = "auto",
    batch_size: int = 256,
) -> dict[tuple[str, Position], torch.Tensor]:
    """``{(hook, position): (n_items, d) float32 CPU tensor}``: each item's activation at ``hook`` and
    ``positions`` (named from the spans, or integers), in batches of ``batch_size`` items.

    Only the requested hooks are cached (``run_with_cache`` with a names filter). A hook's trailing
    dimensions are flattened (``attn.hook_z``: heads × d_head). The model runs in eval mode on ``device``
    and its train/eval mode is restored afterwards.
    """
    batch = _batch(dataset)
    names = _check_hooks(model, hooks)
    index = resolve_positions(batch, positions)
    check_int("batch_size", batch_size, 1)
    device = resolve_device(device)
    n = batch.tokens.shape[0]
    chunks: dict[tuple[str, Position], list[torch.Tensor]] = {(h, p): [] for h in names for p in index}
    was_training = model.training
    model.to(device).eval()
    try:
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            length = max(int(idx[lo:hi].max()) + 1 for idx in index.values()) if hi > lo else 1
            _, cache = model.run_with_cache(batch.tokens[lo:hi, :length].to(device), names_filter=names)
            for (hook, pos), out in chunks.items():
                out.append(_gather(hook, cache[hook], index[pos][lo:hi].to(device)).float().cpu())
    finally:
        model.train(was_training)
    return {key: torch.cat(parts) if parts else torch.zeros(0, 0) for key, parts in chunks.items()}


# --------------------------------------------------------------------------------------------------
# The probe and its control task
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """Accuracies of one probe. ``chance`` is the majority-class rate of all labels (>= 1 / n_classes):
    what a probe that ignores its features can reach."""

    train_accuracy: float
    test_accuracy: float
    chance: float
    n_classes: int
    n_train: int
    n_test: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split(n: int, seed: int, test_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    n_test = round(test_fraction * n)
    if not 1 <= n_test < n:
        raise invalid("test_fraction", test_fraction, f"a fraction leaving >= 1 test and >= 1 train item of n={n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_test:], order[:n_test]


def fit_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    seed: int = 0,
    test_fraction: float = 0.25,
    C: float = 1.0,
    max_iter: int = 100,
) -> ProbeResult:
    """Fit a multinomial logistic regression from ``features`` (n, d) to ``labels`` (n,) on a random
    ``1 - test_fraction`` of the items (split by ``seed``) and score it on the rest.

    Objective as scikit-learn's ``LogisticRegression(C=C)``: summed cross-entropy + ||W||² / (2C), bias
    unpenalised, on features standardised with the training items' mean and std. Full-batch L-BFGS in
    float64 from zero weights on the CPU, so the result depends on the data and the seed only.
    """
    features = torch.as_tensor(features)
    labels = torch.as_tensor(labels)
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise invalid("labels", tuple(labels.shape), f"shape ({features.shape[0]},) for features of shape "
                      f"{tuple(features.shape)} (n, d)")
    check_int("seed", seed, 0)
    check_fraction("test_fraction", test_fraction)
    check_positive("C", C)
    check_int("max_iter", max_iter, 1)
    x = features.detach().to("cpu", torch.float64)
    classes, y = torch.unique(labels.cpu(), return_inverse=True)
    n_classes = len(classes)
    chance = float(torch.bincount(y).max()) / len(y)
    train_idx, test_idx = _split(len(y), seed, test_fraction)
    mean, std = x[train_idx].mean(0), x[train_idx].std(0, correction=0)
    x = (x - mean) / torch.where(std > 1e-12, std, torch.ones_like(std))
    xtr, ytr = x[train_idx], y[train_idx]
    weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ weight + bias, ytr, reduction="sum") + (weight**2).sum() / (2 * C)
        loss.backward()
        return loss

    if n_classes > 1:
        with torch.enable_grad():
            opt.step(closure)
    with torch.no_grad():
        pred = (x @ weight + bias).argmax(1)
    right = pred == y
    return ProbeResult(
        train_accuracy=float(right[train_idx].double().mean()),
        test_accuracy=float(right[test_idx].double().mean()),
        chance=chance,
        n_classes=n_classes,
        n_train=len(train_idx),
        n_test=len(test_idx),
    )


def control_labels(labels: torch.Tensor, types: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Hewitt & Liang's control task (hewitt2019control): each distinct value of ``types`` (n,) gets one
    label drawn at random (by ``seed``) from the empirical distribution of ``labels`` (n,), and every item
    of that type carries it. The control labels thus have the true labels' distribution in expectation,
    but relate to the input only through its type."""
    labels, types = torch.as_tensor(labels).cpu(), torch.as_tensor(types).cpu()
    if labels.shape != types.shape or labels.ndim != 1:
        raise invalid("types", tuple(types.shape), f"shape {tuple(labels.shape)}, one type per label")
    unique, inverse = torch.unique(types, return_inverse=True)
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    draw = torch.randint(len(labels), (len(unique),), generator=gen)
    return labels[draw][inverse]


# --------------------------------------------------------------------------------------------------
# Targets and the table
# --------------------------------------------------------------------------------------------------


def target_labels(dataset: Any, targets: Sequence[str] | Mapping[str, torch.Tensor] | None = None
                  ) -> dict[str, torch.Tensor]:
    """``{target: (n_items,) labels}``. A mapping is taken as given. For bioD, ``"value/<k>"`` is the
    index of attribute k's first chunk in its value set and ``"value/<k>/chunk<c>"`` that of chunk c;
    None means every ``"value/<k>"``."""
    if isinstance(targets, Mapping):
        return {name: torch.as_tensor(labels) for name, labels in targets.items()}
    chunks = getattr(dataset, "chunks", None)
    if chunks is None:
        raise invalid("targets", targets, "a mapping {name: (n_items,) labels} for a dataset without bioD chunks")
    chunks = torch.as_tensor(chunks)
    _, K, C = chunks.shape
    allowed = {f"value/{k}": chunks[:, k, 0] for k in range(K)}
    allowed |= {f"value/{k}/chunk{c}": chunks[:, k, c] for k in range(K) for c in range(C)}
    names = [f"value/{k}" for k in range(K)] if targets is None else [targets] if isinstance(targets, str) else targets
    for name in names:
        if name not in allowed:
            raise invalid("targets", name, ", ".join(allowed))
    return {name: allowed[name] for name in names}


def probe_table(
    model: nn.Module,
    dataset: TokenBatch | TokenDataset,
    hooks: Sequence[str] | str | None = None,
    positions: Sequence[Position] = ("name_last",),
    targets: Sequence[str] | Mapping[str, torch.Tensor] | None = None,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
    C: float = 1.0,
    control_type: Position = "auto",
    device: str | torch.device = "auto",
    max_iter: int = 100,
) -> pd.DataFrame:
    """One row per (hook, position, target): held-out ``accuracy``, ``control_accuracy`` (the control
    task, ``control_labels`` with the token at the position as the type), ``selectivity`` (their
    difference), ``chance`` (majority-class rate), ``train_accuracy`` and ``n_classes``.

    ``control_type`` picks the type of each item for the control task: the token at a position (a name
    or an int as in ``positions``), ``"probed"`` (the token at the probed position, Hewitt & Liang's
    word type), ``"item"`` (every item its own type: plain shuffled labels) or ``"auto"`` (``"name_last"``
    where the data has a name span, else ``"probed"``).

    ``max_iter``: L-BFGS iterations of each fit (``fit_probe``).

    ``layers`` (block indices) adds ``blocks.{L}.hook_resid_post`` to ``hooks``; with neither, every
    block's residual stream is probed, plus the embedding. ``targets``: see ``target_labels`` (a
    TokenBatch needs a mapping).
    """
    import pandas as pd

    names = [] if hooks is None else [hooks] if isinstance(hooks, str) else list(hooks)
    n_layer = model.cfg.n_layer
    for layer in layers or []:
        check_int("layers", layer, 0, n_layer - 1)
        names.append(f"blocks.{layer}.hook_resid_post")
    if hooks is None and layers is None:
        names = ["hook_embed", *(f"blocks.{layer}.hook_resid_post" for layer in range(n_layer))]
    labels = target_labels(dataset, targets)
    batch = _batch(dataset)
    acts = activations(model, batch, names, positions, device=device)
    index = resolve_positions(batch, positions)
    if control_type == "auto":
        control_type = "name_last" if "name" in batch.spans else "probed"
    rows_of = torch.arange(batch.tokens.shape[0])
    fixed_types = None
    if control_type == "item":
        fixed_types = rows_of
    elif control_type != "probed":
        try:
            fixed_types = batch.tokens[rows_of, resolve_positions(batch, [control_type])[control_type]]
        except ValueError:
            raise invalid("control_type", control_type, "'auto', 'probed', 'item', an integer position or one of "
                          + ", ".join(position_names(batch))) from None
    rows = []
    for (hook, pos), feats in acts.items():
        types = batch.tokens[rows_of, index[pos]] if fixed_types is None else fixed_types
        for target, y in labels.items():
            if y.shape != (feats.shape[0],):
                raise invalid("targets", target, f"labels of shape ({feats.shape[0]},), one per item")
            real = fit_probe(feats, y, seed, test_fraction, C, max_iter)
            control = fit_probe(feats, control_labels(y, types, seed), seed, test_fraction, C, max_iter)
            rows.append({"hook": hook, "position": pos, "target": target, "accuracy": real.test_accuracy,
                         "control_accuracy": control.test_accuracy,
                         "selectivity": real.test_accuracy - control.test_accuracy, "chance": real.chance,
                         "train_accuracy": real.train_accuracy, "n_classes": real.n_classes})
    return pd.DataFrame(rows, columns=["hook", "position", "target", "accuracy", "control_accuracy", "selectivity",
                                       "chance", "train_accuracy", "n_classes"])
