"""Train several same-shape models in one batched computation: the lever for the speed of sweeps.

Why: a chapter is a sweep of many tiny trainings (sizes × exposures × seeds × learning rates), and a
tiny model cannot keep a CPU (let alone a GPU) busy: each step is a few hundred small kernels and
Python dispatch. Models of one architecture can instead run as *one* model with stacked weights: every
matrix product becomes a batched product over the model axis, so dispatch is paid once per step for
all of them (and on a GPU the kernels get large enough to fill it).

What stays exactly the recipe of :func:`labkit.train.train` (the same ``TrainConfig``, ``TrainPlan``,
``stage_exposure`` and ``LossLog``; tested against it):

- initialisation: the given models' own weights are stacked (build them with ``Transformer(cfg, seed)``);
- data: model m trains on its own dataset, in the item order ``exposure_permutation(seeds[m], e)``,
  with the same minibatches (the last one of an exposure holds the remainder);
- loss: mean cross-entropy over model m's own targets of the minibatch (models never mix);
- AdamW (betas, eps 1e-8, decoupled decay on the tensors ``param_groups`` decays), per-model learning
  rate through ``lr_at`` (warmup + cosine), and gradient-norm clipping on *each model's own* norm.
  Adam is elementwise, so a stacked step is the separate steps side by side; the learning rate, the
  decay and the clip factor are per-model vectors broadcast over that model's slice.

Results equal separate ``train`` runs up to float rounding (different kernel shapes sum in another
order), not bit for bit.

Two engines compute the stacked forward pass:

- ``"direct"``: batched matmuls written out (``torch.bmm`` on stacked weights, one SDPA call over
  models × batch, norm gains folded into the next matmul's weights). Covers the lab's common models:
  softmax attention with absolute, rotary or no positions, GELU / gated / no MLP, LayerNorm /
  RMSNorm, tied or not, with or without biases.
- ``"vmap"``: ``torch.func.vmap`` of ``functional_call`` on the real :class:`Transformer`, hence every
  dense configuration (relative, ALiBi, position-only and uniform attention too). PyTorch has no
  vmap rule for the CPU SDPA kernel and loops over the models there, so it is the slower engine.

What batching buys on a CPU: it removes per-step overhead (Python, dispatch, optimizer loops), so it
pays where steps are small and fades where a step is compute-bound matmuls already; using both cores
(``labkit.sweep.process_executor``) is the larger lever there. The measured ratios, and the command
that measures them, are in benchmarks/README.md (``benchmarks/bench_sweep.py``).

MoE models are not batchable (routing is data-dependent control flow); train them with ``train``.

Memory: glibc hands every freed block of ≥ 32 MB back to the OS, so a stacked step, whose activations
easily pass that size, page-faults all of them in again on every step (a large slowdown, measured in
benchmarks/bench_sweep.py). :func:`keep_freed_memory` switches
that off for the process; ``train_batched`` calls it on the CPU (the process then keeps its peak
memory until it exits, which a training process does anyway).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from labkit.data.base import TokenDataset
from labkit.loss import linear_cross_entropy
from labkit.model import ModelConfig, Transformer
from labkit.tokenizer import PAD_ID
from labkit.train import (
    IGNORE_INDEX,
    LossLog,
    StagedExposure,
    TrainConfig,
    TrainHistory,
    TrainPlan,
    param_groups,
    progress_bar,
    stage_exposure,
    train,
)

ENGINES = ("auto", "direct", "vmap")
ADAM_EPS = 1e-8  # torch.optim.AdamW's default, which labkit.train uses
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s max_norm / (norm + 1e-6)

# The knob values the direct engine implements; any other value (or a ModelConfig field it does not
# know, added after it was written) sends a model to the vmap engine instead of a silently wrong path.
_DIRECT = {
    "pos": {"absolute", "rotary", "none"},
    "attention": {"softmax"},
    "mlp": {"gelu", "gated", "none"},
    "norm": {"layernorm", "rmsnorm"},
    "moe_experts": {0},
}
_DIRECT_FREE = {"vocab_size", "max_len", "n_layer", "n_head", "d_model", "mlp_ratio", "moe_top_k", "moe_aux_weight",
                "tie_embeddings", "bias", "rope_base", "rel_buckets", "rel_max_distance"}

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters
_memory_kept = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of unmapping it (see the module docstring).

    Without this, every tensor of ≥ 32 MB is a fresh ``mmap`` whose pages fault in on first touch, each
    step. Process-wide and permanent; a no-op (False) where the C library is not glibc.
    """
    global _memory_kept
    if _memory_kept:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):
        return False
    _memory_kept = ok
    return ok


def direct_supported(cfg: ModelConfig) -> bool:
    """Whether the direct engine implements ``cfg`` (else the vmap engine is used)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in _DIRECT:
            if value not in _DIRECT[f.name]:
                return False
        elif f.name not in _DIRECT_FREE:
            return False  # a knob added to ModelConfig after this engine was written
    return True


def batchable(model: nn.Module) -> bool:
    """Whether ``model`` can be trained by ``train_batched`` at all: a dense labkit Transformer."""
    return isinstance(model, Transformer) and model.cfg.moe_experts == 0


# --------------------------------------------------------------------------------------------------
# Stacked parameters
# --------------------------------------------------------------------------------------------------


class StackedParams:
    """The trainable parameters of M same-shape models as one (M, P) matrix, row m = model m.

    ``params[name]`` is a (M, *shape) view into the matrix that autograd treats as a leaf; its ``.grad``
    is a view into one (M, P) gradient matrix, so backward accumulates straight into it. The optimizer
    step, the per-model gradient norms and the clipping are then a handful of whole-matrix operations
    per step, whatever the number of parameter tensors. Frozen parameters (``requires_grad=False``) are
    stacked as constants and never updated.
    """

    def __init__(self, models: Sequence[nn.Module], device: torch.device) -> None:
        base = models[0]
        self.shapes = {name: tuple(p.shape) for name, p in base.named_parameters()}
        trainable = [name for name, p in base.named_parameters() if p.requires_grad]
        for model in models[1:]:
            named = dict(model.named_parameters())
            if {n: tuple(p.shape) for n, p in named.items()} != self.shapes:
                raise ValueError("models differ in parameter names or shapes; only same-shape models train together")
            if [n for n, p in named.items() if p.requires_grad] != trainable:
                raise ValueError("models differ in which parameters are frozen (requires_grad)")
        M = len(models)
        sizes = [math.prod(self.shapes[n]) for n in trainable]
        self.offsets = dict(zip(trainable, [sum(sizes[:i]) for i in range(len(sizes))], strict=True))
        P = sum(sizes)
        with torch.no_grad():
            self.flat = torch.empty(M, P, device=device)
            for m, model in enumerate(models):
                named = dict(model.named_parameters())
                if P:
                    torch.cat([named[n].detach().reshape(-1).to(device) for n in trainable], out=self.flat[m])
        self.grad = torch.zeros_like(self.flat)
        self.params: dict[str, torch.Tensor] = {}
        for name, size in zip(trainable, sizes, strict=True):
            off = self.offsets[name]
            view = self.flat[:, off : off + size].view(M, *self.shapes[name]).requires_grad_()
            view.grad = self.grad[:, off : off + size].view(M, *self.shapes[name])
            self.params[name] = view
        for name in self.shapes:
            if name not in self.params:
                self.params[name] = torch.stack([dict(m.named_parameters())[name].detach() for m in models]).to(device)
        decayed = {id(p) for p in param_groups(base, 1.0)[0]["params"]}
        mask = torch.zeros(P, device=device)
        for name, p in base.named_parameters():
            if id(p) in decayed:
                mask[self.offsets[name] : self.offsets[name] + math.prod(self.shapes[name])] = 1.0
        self.decay_mask = mask

    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy row m into model m's parameters (which stay on their device)."""
        with torch.no_grad():
            for m, model in enumerate(models):
                for name, p in model.named_parameters():
                    if name in self.offsets:
                        p.copy_(self.params[name][m])


class StackedAdamW:
    """AdamW on a ``StackedParams`` with per-model learning rate, weight decay and gradient clipping.

    The arithmetic is ``torch.optim.AdamW``'s (fused kernel: decoupled decay ``p -= lr·wd·p`` first,
    then ``m = lerp(m, g, 1-β1)``, ``v = β2·v + (1-β2)·g²``, ``p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps)``),
    and clipping is ``clip_grad_norm_``'s (``g *= min(1, max_norm / (‖g‖ + 1e-6))``) with ‖g‖ taken over
    each model's own row.
    """

    def __init__(self, stack: StackedParams, betas: tuple[float, float], weight_decay: torch.Tensor,
                 grad_clip: torch.Tensor | None) -> None:
        self.stack, self.betas = stack, betas
        self.exp_avg = torch.zeros_like(stack.flat)
        self.exp_avg_sq = torch.zeros_like(stack.flat)
        self.weight_decay = weight_decay.to(stack.flat)[:, None]  # (M, 1)
        self.grad_clip = None if grad_clip is None else grad_clip.to(stack.flat)
        self.steps = 0

    def zero_grad(self) -> None:
        self.stack.grad.zero_()

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update with learning rates ``lr`` (M,)."""
        p, g = self.stack.flat, self.stack.grad
        if self.grad_clip is not None:
            coef = (self.grad_clip / (torch.linalg.vector_norm(g, dim=1) + CLIP_EPS)).clamp_(max=1.0)
            g.mul_(coef[:, None])
        self.steps += 1
        beta1, beta2 = self.betas
        lr = lr.to(p)[:, None]
        p.mul_(1 - lr * self.weight_decay * self.stack.decay_mask)
        self.exp_avg.lerp_(g, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = self.exp_avg_sq.sqrt().div_(math.sqrt(1 - beta2**self.steps)).add_(ADAM_EPS)
        p.addcdiv_(self.exp_avg * (-lr / (1 - beta1**self.steps)), denom)


# --------------------------------------------------------------------------------------------------
# Stacked forward passes
# --------------------------------------------------------------------------------------------------


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Per-model ``F.linear``: x (M, N, in), weight (M, out, in), bias (M, out) or None."""
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _normalize(cfg: ModelConfig, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm / RMSNorm without gain and bias (eps as in labkit.model's modules)."""
    if cfg.norm == "rmsnorm":
        return F.rms_norm(x, (x.shape[-1],), eps=1e-6)
    return F.layer_norm(x, (x.shape[-1],), eps=1e-5)


def _fold_norm(p: Mapping[str, torch.Tensor], norm: str, weight: torch.Tensor,
               bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of ``linear(norm(x))`` with the norm's gain g and shift b folded in.

    ``(n(x)·g + b) Wᵀ + c = n(x) (W·g)ᵀ + (W b + c)``: the gain then costs an op on a (M, out, in) weight
    instead of on the (M, tokens, d) activations, forward and backward.
    """
    shift = p.get(f"{norm}.bias")
    if shift is not None:
        folded = torch.bmm(weight, shift.unsqueeze(2)).squeeze(2)
        bias = folded if bias is None else bias + folded
    return weight * p[f"{norm}.weight"].unsqueeze(1), bias


def _normed_linear(cfg: ModelConfig, x: torch.Tensor, p: Mapping[str, torch.Tensor], norm: str,
                   weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return _linear(_normalize(cfg, x), *_fold_norm(p, norm, weight, bias))


def direct_features(
    base: Transformer, p: Mapping[str, torch.Tensor], tokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """M stacked models on tokens (M, B, T): ``(h, W, b)`` with logits = ``h Wᵀ + b`` per model.

    h (M, B·T, d) is the final residual stream normalised without gain, W (M, vocab, d) and b
    (M, vocab) or None the unembedding with the final norm folded in (``_fold_norm``); the caller
    computes the logits, in chunks if it likes. Mirrors ``Transformer.forward`` with idle hooks (the
    equality is tested for every supported knob); ``p``: name -> (M, *shape); ``base`` (one of the
    models, on the same device) lends its rotary tables.
    """
    cfg = base.cfg
    M, B, T = tokens.shape
    if T > cfg.max_len:
        raise ValueError(f"sequence length {T} exceeds max_len={cfg.max_len}")
    d, H, V = cfg.d_model, cfg.n_head, cfg.vocab_size
    offsets = torch.arange(M, device=tokens.device).mul_(V).view(M, 1, 1)
    x = F.embedding(tokens + offsets, p["embed.weight"].reshape(M * V, d))  # (M, B, T, d)
    if cfg.pos == "absolute":
        x = x + p["pos_embed.weight"][:, None, :T]
    x = x.reshape(M, B * T, d)
    for layer, block in enumerate(base.blocks):
        pre = f"blocks.{layer}."
        qkv = _normed_linear(cfg, x, p, pre + "ln1", p[pre + "attn.qkv.weight"], p.get(pre + "attn.qkv.bias"))
        q, k, v = (t.view(M * B, T, H, d // H).transpose(1, 2) for t in qkv.split(d, dim=-1))
        if cfg.pos == "rotary":
            q, k = block.attn._rotate(q), block.attn._rotate(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(M, B * T, d)
        x = x + _linear(y, p[pre + "attn.out.weight"], p.get(pre + "attn.out.bias"))
        if cfg.mlp != "none":
            h = _normed_linear(cfg, x, p, pre + "ln2", p[pre + "mlp.fc.weight"], p.get(pre + "mlp.fc.bias"))
            if cfg.mlp == "gated":
                gate, up = h.chunk(2, dim=-1)
                h = F.silu(gate) * up
            else:
                h = F.gelu(h)
            x = x + _linear(h, p[pre + "mlp.proj.weight"], p.get(pre + "mlp.proj.bias"))
    head = p["embed.weight"] if cfg.tie_embeddings else p["unembed.weight"]
    return (_normalize(cfg, x), *_fold_norm(p, "ln_final", head, None))


def direct_logits(base: Transformer, p: Mapping[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Logits (M, B, T, vocab) of M stacked models on tokens (M, B, T) (see ``direct_features``)."""
    M, B, T = tokens.shape
    return _linear(*direct_features(base, p, tokens)).view(M, B, T, -1)


def vmap_logits(base: Transformer, p: Mapping[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Logits (M, B, T, vocab) through ``vmap(functional_call(base, ...))``: any dense configuration."""

    def one(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(base, params, (x,))

    return torch.func.vmap(one)(dict(p), tokens)


def resolve_engine(cfg: ModelConfig, engine: str = "auto") -> str:
    """``"auto"`` → ``"direct"`` where it applies, else ``"vmap"``; validates explicit choices."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is not valid; allowed: {', '.join(map(repr, ENGINES))}")
    if cfg.moe_experts:
        raise ValueError("MoE models cannot be trained batched (data-dependent routing); use labkit.train.train")
    if engine == "auto":
        return "direct" if direct_supported(cfg) else "vmap"
    if engine == "direct" and not direct_supported(cfg):
        raise ValueError(f"engine='direct' does not implement this model ({cfg}); use engine='vmap' or 'auto'")
    return engine


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------

HEAD_CHUNK_BYTES = 8 * 2**20  # logits per chunk of models: small enough to stay in the CPU's cache


def stacked_nll(engine: str, base: Transformer, p: Mapping[str, torch.Tensor], tokens: torch.Tensor,
                targets: torch.Tensor, autocast: AbstractContextManager | None = None) -> torch.Tensor:
    """Summed cross-entropy (M,) of each stacked model over its targets (IGNORE_INDEX: not a target).

    The direct engine computes logits and loss one model at a time, with ``labkit.loss`` where it
    applies (fp32 on the CPU, no head bias), as ``train`` does; otherwise a few models at a time with
    ``F.cross_entropy``. The (models × tokens × vocab) logits are the largest tensor of a tiny model's
    step, and in one piece they fall out of the CPU caches (the log-softmax's forward and backward then
    run several times slower than for the models one by one; benchmarks/bench_sweep.py).
    """
    M, B, T = tokens.shape
    autocast = autocast or nullcontext()
    with autocast:
        if engine == "vmap":
            logits = vmap_logits(base, p, tokens)
        else:
            hidden, head, head_bias = direct_features(base, p, tokens)
    if engine == "vmap":
        nll = F.cross_entropy(logits.flatten(0, 2).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                              reduction="none")
        return nll.view(M, -1).sum(1)
    if head_bias is None and not isinstance(autocast, torch.autocast):  # linear_cross_entropy: CPU or not
        counts = (targets != IGNORE_INDEX).flatten(1).sum(1)
        means = torch.stack([linear_cross_entropy(hidden[m], head[m], targets[m]) for m in range(M)])
        return torch.where(counts > 0, means * counts, torch.zeros_like(means))  # no targets: 0, not nan
    per_chunk = max(1, HEAD_CHUNK_BYTES // max(1, B * T * base.cfg.vocab_size * 4))
    sums = []
    for m0 in range(0, M, per_chunk):
        m1 = min(M, m0 + per_chunk)
        with autocast:
            logits = _linear(hidden[m0:m1], head[m0:m1], None if head_bias is None else head_bias[m0:m1])
        nll = F.cross_entropy(logits.flatten(0, 1).float(), targets[m0:m1].flatten(), ignore_index=IGNORE_INDEX,
                              reduction="none")
        sums.append(nll.view(m1 - m0, -1).sum(1))
    return torch.cat(sums)


def _stack_exposures(exposures: list[StagedExposure]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens and targets (M, n, W) and item orders (M, n) of one exposure of every model.

    Datasets of one shape may still render records of different widths (bioS fresh mode); narrower
    ones are padded with PAD tokens and ignored targets, which a causal model never looks at.
    """
    width = max(ex.tokens.shape[1] for ex in exposures)
    tokens = torch.stack([F.pad(ex.tokens, (0, width - ex.tokens.shape[1]), value=PAD_ID) for ex in exposures])
    targets = torch.stack([F.pad(ex.targets, (0, width - ex.targets.shape[1]), value=IGNORE_INDEX)
                           for ex in exposures])
    return tokens, targets, torch.stack([ex.order for ex in exposures])


def _per_model_configs(configs: TrainConfig | Sequence[TrainConfig] | None, M: int,
                       recipe: dict[str, Any]) -> list[TrainConfig]:
    """One recipe per model (``recipe``: changes applied to every one), sharing all but ``PER_MODEL``."""
    if configs is None or isinstance(configs, TrainConfig):
        configs = [configs] * M
    configs = [TrainConfig.of(c, **recipe) for c in configs]
    if len(configs) != M:
        raise ValueError(f"configs has {len(configs)} recipes for {M} models; allowed: one recipe or one per model")
    shared = configs[0].shared()
    for config in configs[1:]:
        for name, value in config.shared().items():
            if value != shared[name]:
                raise ValueError(f"{name}={value!r} differs from {shared[name]!r} of the first model; allowed: "
                                 f"models trained together differ only in {', '.join(TrainConfig.PER_MODEL)}")
    return configs


def train_batched(
    models: Sequence[nn.Module],
    datasets: TokenDataset | Sequence[TokenDataset],
    configs: TrainConfig | Sequence[TrainConfig] | None = None,
    *,
    device: str | torch.device = "auto",
    engine: str = "auto",
    progress: bool = True,
    log_every: int | None = None,
    **recipe: Any,
) -> list[TrainHistory]:
    """Train same-shape ``models`` together, model m as ``train(models[m], datasets[m], configs[m])`` would.

    ``datasets`` and ``configs`` take one value for all models or one per model; recipes may differ only
    in ``TrainConfig.PER_MODEL`` (learning rate, weight decay, clipping, seed), and ``recipe`` changes
    every one of them. Every dataset must have the same ``n_items`` (the models step in lockstep); the
    records may differ. Returns one ``TrainHistory`` per model, in order; the trained weights are left
    in ``models`` (moved to ``device``). A history's ``wall_time`` is the batch's wall time divided by
    the number of models (its share of the machine).

    No checkpoints: a batch is a unit of a sweep, whose per-run result files are the resume points.
    ``engine``: ``"auto"`` (direct batched matmuls where implemented, else vmap), ``"direct"``, ``"vmap"``.
    """
    models = list(models)
    M = len(models)
    if M == 0:
        raise ValueError("models is empty; allowed: one or more labkit Transformers of one shape")
    if not all(isinstance(m, Transformer) for m in models):
        raise ValueError("train_batched trains labkit.model.Transformer models only")
    cfg = models[0].cfg
    if any(m.cfg != cfg for m in models):
        raise ValueError("models have different ModelConfigs; only same-shape models train together")
    engine = resolve_engine(cfg, engine)
    if isinstance(datasets, Sequence):
        datasets = list(datasets)
        if len(datasets) != M:
            raise ValueError(f"datasets has {len(datasets)} values for {M} models; allowed: one value or one per model")
    else:
        datasets = [datasets] * M
    configs = _per_model_configs(configs, M, recipe)
    n_items = datasets[0].n_items
    if any(ds.n_items != n_items for ds in datasets):
        raise ValueError(f"datasets have different n_items ({sorted({ds.n_items for ds in datasets})}); "
                         "allowed: the same n_items for every model (they step in lockstep)")
    plan = TrainPlan.make(configs[0], n_items, device, log_every)  # seeds as train() does; no dropout here
    device, batch_size = plan.device, configs[0].batch_size
    if device.type == "cpu":
        keep_freed_memory()
    was_training = [m.training for m in models]
    for model in models:
        model.to(device)
    base = models[0]
    stack = StackedParams(models, device)
    clips = [c.grad_clip or 0.0 for c in configs]
    clip = torch.tensor([c if c > 0 else math.inf for c in clips]) if any(c > 0 for c in clips) else None
    optimizer = StackedAdamW(stack, configs[0].betas, torch.tensor([c.weight_decay for c in configs]), clip)
    histories = plan.histories(M)
    log = LossLog(histories, device, plan.log_every)
    rows = torch.arange(M, device=device)[:, None]
    step = 0
    caches: list[dict[str, Any]] = [{} for _ in models]
    bar = progress_bar(plan, 0, progress, f"train ×{M}")
    t0 = time.perf_counter()
    base.train()
    try:
        for e in range(configs[0].exposures):
            staged = [stage_exposure(ds, e, c.seed, batch_size, device, cache)
                      for ds, c, cache in zip(datasets, configs, caches, strict=True)]
            tokens, targets, orders = _stack_exposures(staged)
            n_targets = torch.stack([ex.step_target_counts for ex in staged], dim=1)  # (spe, M)
            for j in range(plan.steps_per_exposure):
                length = max(ex.lengths[j] for ex in staged)
                idx = orders[:, j * batch_size : (j + 1) * batch_size]
                x = tokens[:, :, :length][rows, idx]
                y = targets[:, :, :length][rows, idx]
                rates = [c.lr_at(step, plan.total_steps) for c in configs]
                loss = stacked_nll(engine, base, stack.params, x, y, plan.autocast) / n_targets[j].clamp(min=1).float()
                optimizer.zero_grad()
                with warnings.catch_warnings():  # grads are strided views of one matrix, on purpose
                    warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout")
                    loss.sum().backward()
                optimizer.step(torch.tensor(rates))
                step += 1
                if log.step(step, loss.detach(), n_targets[j], [ex.step_tokens[j] for ex in staged], rates):
                    bar.update(step - bar.n)
            log.end_exposure(n_targets.sum(0))
        wall = time.perf_counter() - t0
        for history in histories:
            history.wall_time = wall / M
    finally:
        bar.close()
        stack.write_back(models)
        for model, mode in zip(models, was_training, strict=True):
            model.train(mode)
    return histories


# --------------------------------------------------------------------------------------------------
# Sweep run functions that can batch
# --------------------------------------------------------------------------------------------------


@dataclass
class RunSetup:
    """What one sweep run trains: a model, its dataset and its recipe."""

    model: nn.Module
    dataset: TokenDataset
    config: TrainConfig = field(default_factory=TrainConfig)
    extra: dict[str, Any] = field(default_factory=dict)  # anything ``finish`` wants back


class BatchableRun(ABC):
    """A sweep run function (``run(config) -> dict``) that the sweep executors can batch.

    Subclasses say how to build a run (``setup``) and what to report after training (``finish``);
    this class provides the three faces the executors of ``labkit.sweep`` use:

    - ``__call__(config)``: one run, trained by ``labkit.train.train`` (what the serial executor does);
    - ``shape_key(config)``: runs with equal keys can train together (same ModelConfig, n_items, frozen
      parameters and shared recipe; learning rate, seed, weight decay, clipping and data may differ);
      None for runs that cannot batch (MoE, other model classes);
    - ``run_many(configs)``: runs of one key trained by ``train_batched``, one result per config.

    Define subclasses in a module, not a notebook cell: the process executor pickles them by reference.
    """

    @abstractmethod
    def setup(self, config: dict[str, Any]) -> RunSetup:
        """Build the (untrained) model and dataset of ``config`` and its recipe."""

    @abstractmethod
    def finish(self, config: dict[str, Any], setup: RunSetup, history: TrainHistory) -> dict[str, Any]:
        """The JSON-ready result of a finished run (e.g. bits learned of ``setup.model``)."""

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        return self.run_with_model(config)[0]

    def run_with_model(self, config: dict[str, Any]) -> tuple[dict[str, Any], nn.Module]:
        """One run, as ``__call__``, and its trained model (``python -m labkit train --save-model``).
        Inside a process group of several processes ``train`` uses DDP (``labkit.distributed``)."""
        s = self.setup(config)
        return self.finish(config, s, train(s.model, s.dataset, s.config, progress=False)), s.model

    def shape_key(self, config: dict[str, Any]) -> Hashable | None:
        """What must be equal for runs to train together. Builds the run; override to make it cheaper."""
        return _shape_key(self.setup(config))

    def run_many(self, configs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        setups = [self.setup(c) for c in configs]
        keys = {_shape_key(s) for s in setups}
        if None in keys or len(keys) != 1:
            raise ValueError("run_many needs configs of one shape key (see shape_key)")
        histories = train_batched([s.model for s in setups], [s.dataset for s in setups],
                                  [s.config for s in setups], progress=False)
        return [self.finish(c, s, h) for c, s, h in zip(configs, setups, histories, strict=True)]


def _shape_key(setup: RunSetup) -> Hashable | None:
    """None when the run cannot train batched (not a dense labkit Transformer)."""
    if not batchable(setup.model):
        return None
    frozen = tuple(n for n, p in setup.model.named_parameters() if not p.requires_grad)
    shared = tuple(sorted((k, repr(v)) for k, v in setup.config.shared().items()))
    return (setup.model.cfg, setup.dataset.n_items, shared, frozen)
