"""Training: one recipe (``TrainConfig``) and the loop that applies it to one model.

Why one recipe for the whole lab: every chapter compares *bits learned per parameter* across models,
exposures and datasets, and that comparison is only fair when the optimisation recipe and the meaning
of "exposure" are identical everywhere. ``TrainConfig`` writes every default once (AdamW with betas
(0.9, 0.98), 2% linear warmup, cosine decay to 0.1×, clipping at 1, the recipe of Part 3.3,
allenzhu2024physics33, with the learning rate and weight decay that suit the lab's tiny CPU models);
``train`` (one model) and ``labkit.batched.train_batched`` (many same-shape models at once) are two
loops over the same pieces defined here: the schedule (``lr_at``), the optimizer groups
(``param_groups``), the data of an exposure (``stage_exposure``) and the loss history (``LossLog``).

Exposure (the unit of training)
    One exposure = every item's record (person, library item) seen exactly once. Exposure ``e`` trains
    on ``dataset.exposure(e)`` (bioS "fresh" mode re-renders templates and sentence order there; static
    datasets return the same batch) in minibatches drawn from a permutation of the items seeded by
    ``(seed, e)``. Hence ``steps = ceil(n_items / batch_size) × exposures``; the last minibatch of each
    exposure holds the ``n_items mod batch_size`` remaining items (no item is dropped or repeated).

    Part 3.3 counts exposures through tokens instead: it trains on biographies packed into 512-token
    windows and calls "E exposures" the number of training tokens divided by N × (tokens per
    biography). Packing splits biographies across windows and the tokens per biography vary with the
    templates, so a person's knowledge is seen *about* E times there; here every record is seen
    *exactly* E times, with the whole record in one context. ``TrainHistory.tokens_seen`` gives the
    token count for comparison.

Threads: ``train`` leaves ``torch.set_num_threads`` to the caller (``labkit.setup`` or a sweep
executor), since only the caller knows whether other runs share the CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labkit import distributed
from labkit.checkpoint import Checkpointer
from labkit.checks import check_choice, check_fraction, check_int, check_positive, invalid
from labkit.data.base import TokenBatch, TokenDataset
from labkit.loss import IGNORE_INDEX
from labkit.runtime import resolve_device, seed_everything

DEFAULT_MOE_AUX_WEIGHT = 0.01
AMP_CHOICES = ("auto", "bf16", "off", "fp32", True, False, None)


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe: what a run is trained *with*, every default written once.

    ``exposures``: how often every record is seen; ``batch_size``: items per optimizer step; ``lr``: the
    peak learning rate, reached after a ``warmup`` fraction of the steps and decayed by a cosine to
    ``min_lr_ratio × lr`` at the last step; AdamW with ``betas`` and decoupled ``weight_decay`` on
    matrices (``param_groups``); gradient-norm clipping at ``grad_clip`` (None or 0: off); ``amp``: the
    forward pass's precision (``autocast_context``); ``seed``: initialisation-independent randomness of
    the loop (item order, dropout). Defaults: the best CPU recipe of the lab's tiny models (lr 5e-3,
    batch 128, weight decay 0.05) and Part 3.3's shorter budget of 100 exposures.

    Where the run executes (device), how it reports (progress, log interval) and whether it writes
    checkpoints are not part of the recipe: they do not change what is learned.
    """

    exposures: int = 100
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 0.05
    warmup: float = 0.02
    min_lr_ratio: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float | None = 1.0
    amp: str | bool | None = "auto"
    seed: int = 0

    #: fields that may differ between models trained together by ``labkit.batched.train_batched``
    PER_MODEL = ("lr", "weight_decay", "grad_clip", "seed")

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: normalise once, here
        put(self, "exposures", check_int("exposures", self.exposures, 1))
        put(self, "batch_size", check_int("batch_size", self.batch_size, 1))
        put(self, "lr", check_positive("lr", self.lr))
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, int | float) \
                or not self.weight_decay >= 0:
            raise invalid("weight_decay", self.weight_decay, "a number >= 0")
        put(self, "weight_decay", float(self.weight_decay))
        put(self, "warmup", check_fraction("warmup", self.warmup, closed=False))
        put(self, "min_lr_ratio", check_fraction("min_lr_ratio", self.min_lr_ratio))
        betas = tuple(self.betas) if isinstance(self.betas, Sequence) else ()
        if len(betas) != 2 or not all(isinstance(b, int | float) and 0 <= b < 1 for b in betas):
            raise invalid("betas", self.betas, "two numbers in [0, 1)")
        put(self, "betas", (float(betas[0]), float(betas[1])))
        if self.grad_clip is not None:
            if isinstance(self.grad_clip, bool) or not isinstance(self.grad_clip, int | float) \
                    or not self.grad_clip >= 0:
                raise invalid("grad_clip", self.grad_clip, "None or a number >= 0 (0: off)")
            put(self, "grad_clip", float(self.grad_clip) or None)
        check_choice("amp", self.amp, AMP_CHOICES)
        put(self, "seed", check_int("seed", self.seed, 0))

    @classmethod
    def of(cls, config: TrainConfig | None = None, **changes: Any) -> TrainConfig:
        """``config`` (default: the defaults) with ``changes`` applied; unknown names fail in one line."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        for name in changes:
            if name not in allowed:
                raise invalid("training setting", name, ", ".join(allowed))
        return dataclasses.replace(config or cls(), **changes)

    def shared(self) -> dict[str, Any]:
        """The fields models trained together must share (all but ``PER_MODEL``)."""
        return {k: v for k, v in asdict(self).items() if k not in self.PER_MODEL}

    def steps_per_exposure(self, n_items: int) -> int:
        """Optimizer steps that show every item once: ``ceil(n_items / batch_size)``."""
        return steps_per_exposure(n_items, self.batch_size)

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate of optimizer step ``step`` of ``total_steps`` under this recipe."""
        return lr_at(step, total_steps, self.lr, self.warmup, self.min_lr_ratio)


@dataclass
class TrainHistory:
    """What a training run did, ready to plot (``history.exposures`` vs ``history.losses``).

    ``steps``, ``exposures``, ``tokens``, ``losses`` and ``lrs`` are parallel lists with one entry per
    logged point: the optimizer steps done, the fractional exposures done (steps / steps per
    exposure), the non-pad tokens processed, the mean training loss (nats per target token) over the
    steps since the previous logged point, and the learning rate of the last of those steps.
    ``final_loss`` is the mean training loss over the last exposure (every item counted once).
    """

    steps: list[int] = field(default_factory=list)
    exposures: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    total_steps: int = 0
    steps_per_exposure: int = 0
    tokens_seen: int = 0
    wall_time: float = 0.0
    device: str = ""
    final_loss: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (for sweep results)."""
        return asdict(self)

    def summary(self, points: int = 50) -> dict[str, list[float]]:
        """About ``points`` (exposure, loss) pairs, evenly spaced with the last one kept, rounded: the
        loss curve a sweep record stores (the full history would dwarf the result)."""
        n = len(self.losses)
        keep = sorted({round(i * (n - 1) / max(1, points - 1)) for i in range(points)}) if n else []
        return {"exposures": [round(self.exposures[i], 3) for i in keep],
                "losses": [round(self.losses[i], 5) for i in keep]}


# --------------------------------------------------------------------------------------------------
# The pieces both loops use
# --------------------------------------------------------------------------------------------------


def steps_per_exposure(n_items: int, batch_size: int) -> int:
    """Optimizer steps that show every item once: ``ceil(n_items / batch_size)``."""
    return -(-n_items // batch_size)


def lr_at(step: int, total_steps: int, lr: float, warmup: float, min_lr_ratio: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine to min_lr_ratio × lr.

    Warmup lasts ``ceil(warmup × total_steps)`` steps and reaches ``lr`` at its last step; the cosine
    then reaches ``min_lr_ratio × lr`` exactly at the last step. A pure function of the step, so a
    resumed run needs no scheduler state beyond the step counter.
    """
    n_warm = math.ceil(warmup * total_steps)
    if step < n_warm:
        return lr * (step + 1) / n_warm
    decay_steps = total_steps - n_warm - 1
    progress = (step - n_warm) / decay_steps if decay_steps > 0 else 1.0
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay every trainable tensor with ≥ 2 dims (matrices and embeddings), not 1-D ones.

    Why embeddings decay too: with tied embeddings the token matrix *is* the output projection, so
    "no decay on embeddings" cannot be applied consistently to tied and untied models; the rule
    "matrices decay, norm gains and biases do not" is GPT-2/nanoGPT's and matches the HF-style recipe
    of Part 3.3 (which exempts only biases and norms). Frozen parameters (``requires_grad=False``,
    labkit.freeze) are left out of the optimizer entirely.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW of the recipe, fused where torch supports it (far fewer kernel launches per step)."""
    groups = param_groups(model, config.weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=True)
    except (RuntimeError, ValueError):  # device or dtype without a fused kernel
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, foreach=True)


def record_lengths(batch: TokenBatch) -> torch.Tensor:
    """Per item, the number of leading positions that matter: up to the last loss target or span end.

    Positions after it are padding (or untrained tail tokens) that no target or entity depends on in a
    causal model, so batches can be trimmed to the longest such length of their items.
    """
    seq = batch.tokens.shape[1]
    pos = torch.arange(1, seq + 1)
    length = (batch.loss_mask.cpu() * pos).amax(dim=1)
    for span in batch.spans.values():
        length = torch.maximum(length, span[:, 1].cpu())
    return length.clamp(min=1)


def shifted_targets(batch: TokenBatch) -> torch.Tensor:
    """``targets[:, t]`` = the token that the logits at t must predict (``tokens[:, t+1]``), or IGNORE_INDEX."""
    tokens, mask = batch.tokens, batch.loss_mask
    targets = torch.full_like(tokens, IGNORE_INDEX)
    targets[:, :-1] = tokens[:, 1:].masked_fill(~mask[:, 1:], IGNORE_INDEX)
    return targets


def exposure_permutation(seed: int, exposure: int, n_items: int) -> torch.Tensor:
    """The item order of exposure ``exposure``: a function of (seed, exposure) only, so resuming mid-run
    reproduces it without replaying earlier exposures."""
    state = np.random.SeedSequence([seed, exposure, 0x7A11]).generate_state(1, dtype=np.uint64)[0]
    gen = torch.Generator().manual_seed(int(state) & (2**63 - 1))
    return torch.randperm(n_items, generator=gen)


def model_loss(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``targets`` (IGNORE_INDEX: none): the model's own ``loss`` where it has one
    (labkit's Transformer fuses unembedding and loss, see labkit.loss), else from its logits."""
    if callable(getattr(model, "loss", None)):
        return model.loss(tokens, targets)
    logits = model(tokens)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


def moe_aux_loss(model: nn.Module) -> torch.Tensor | None:
    """The model's MoE load-balancing loss of the last forward, weighted; None when it has no gradient.

    labkit.model keeps a constant zero ``aux_loss`` for dense models, which is skipped (nothing to learn
    from it). The weight is ``model.cfg.moe_aux_weight`` when present, else 0.01 (Switch Transformer).
    """
    aux = getattr(model, "aux_loss", None)
    if not isinstance(aux, torch.Tensor) or not aux.requires_grad:
        return None
    return getattr(getattr(model, "cfg", None), "moe_aux_weight", DEFAULT_MOE_AUX_WEIGHT) * aux


def autocast_context(device: torch.device, amp: str | bool | None) -> AbstractContextManager:
    """The forward pass's precision: bf16 autocast on CUDA by default, fp32 elsewhere.

    Why not bf16 on the CPU too: for the lab's tiny models the casts cost more than the faster matmuls
    gain (benchmarks/README.md); it only pays above a few million parameters. ``amp``: "auto",
    "bf16" / True, "off" / "fp32" / False / None.
    """
    check_choice("amp", amp, AMP_CHOICES)
    enabled = device.type == "cuda" if amp == "auto" else amp in (True, "bf16")
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


@dataclass
class StagedExposure:
    """One exposure staged on the device: inputs, shifted targets, item order and per-step lengths
    (``labkit.batched`` stacks those of several models)."""

    tokens: torch.Tensor
    targets: torch.Tensor
    order: torch.Tensor  # item permutation, on the device
    lengths: list[int]  # trimmed sequence length of each step's minibatch
    step_tokens: list[int]  # non-pad tokens of each step's minibatch
    step_targets: list[int]  # loss targets of each step's minibatch
    step_target_counts: torch.Tensor  # the same as float64 on the device (what LossLog weighs losses by)

    def minibatch(self, j: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of step ``j`` of the exposure, trimmed to that minibatch's length."""
        idx = self.order[j * batch_size : (j + 1) * batch_size]
        return (self.tokens.index_select(0, idx)[:, : self.lengths[j]],
                self.targets.index_select(0, idx)[:, : self.lengths[j]])


def _stage(batch: TokenBatch, device: torch.device, cache: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """Move an exposure's tensors to the device once; static datasets return the same batch every time."""
    if cache.get("batch") is not batch:
        cache["batch"] = batch
        cache["tensors"] = (
            batch.tokens.to(device, torch.long),
            shifted_targets(batch).to(device, torch.long),
            record_lengths(batch),
            batch.loss_mask[:, 1:].sum(dim=1).cpu(),
        )
    return cache["tensors"]


def stage_exposure(
    dataset: TokenDataset, e: int, seed: int, batch_size: int, device: torch.device, cache: dict[str, Any]
) -> StagedExposure:
    """Exposure ``e`` of ``dataset`` ready to train on: tensors moved to ``device`` once per batch
    (``cache`` remembers them across calls), the items in the order of ``(seed, e)``, and per step of
    ``batch_size`` items its trimmed length, non-pad tokens and loss targets."""
    batch = dataset.exposure(e)
    if batch.tokens.shape[0] != dataset.n_items:
        raise ValueError(f"exposure {e} has {batch.tokens.shape[0]} items, dataset.n_items is {dataset.n_items}")
    tokens, targets, lengths, n_targets = _stage(batch, device, cache)
    order = exposure_permutation(seed, e, dataset.n_items)
    per_step = torch.split(lengths[order], batch_size)
    step_targets = [int(chunk.sum()) for chunk in torch.split(n_targets[order], batch_size)]
    return StagedExposure(
        tokens=tokens,
        targets=targets,
        order=order.to(device),
        lengths=[int(chunk.max()) for chunk in per_step],
        step_tokens=[int(chunk.sum()) for chunk in per_step],
        step_targets=step_targets,
        step_target_counts=torch.tensor(step_targets, dtype=torch.float64, device=device),
    )



class LossLog:
    """The loss history of M models trained in lockstep (M = 1 for ``train``).

    Step losses are summed on the device and read back only at logged points (a device sync per
    logged point, not per step); ``end_exposure`` turns the target-weighted sum of the exposure into
    ``final_loss``. Its ``state`` goes into checkpoints, so a resumed run continues the same averages.
    """

    def __init__(self, histories: Sequence[TrainHistory], device: torch.device, log_every: int) -> None:
        self.histories = list(histories)
        self.log_every = log_every
        self.window_sum = torch.zeros(len(histories), device=device)
        self.window_n = 0
        self.exposure_sum = torch.zeros(len(histories), device=device, dtype=torch.float64)

    def step(self, step: int, losses: torch.Tensor, targets: torch.Tensor, tokens: Sequence[int],
             rates: Sequence[float]) -> list[float] | None:
        """Record optimizer step ``step`` (1-based): detached per-model mean losses (M,), their loss
        targets (M,) and non-pad tokens; returns the window means when this step is a logged point."""
        self.window_sum += losses
        self.window_n += 1
        self.exposure_sum += losses.double() * targets
        for history, n in zip(self.histories, tokens, strict=True):
            history.tokens_seen += int(n)
        total = self.histories[0].total_steps
        if step % self.log_every and step != total:
            return None
        means = (self.window_sum / self.window_n).tolist()
        for history, mean, rate in zip(self.histories, means, rates, strict=True):
            history.steps.append(step)
            history.exposures.append(step / history.steps_per_exposure)
            history.tokens.append(history.tokens_seen)
            history.losses.append(mean)
            history.lrs.append(rate)
        self.window_sum.zero_()
        self.window_n = 0
        return means

    def end_exposure(self, targets: torch.Tensor) -> None:
        """Close an exposure whose models had ``targets`` (M,) loss targets in all."""
        finals = (self.exposure_sum / targets.to(self.exposure_sum).clamp(min=1)).tolist()
        for history, final in zip(self.histories, finals, strict=True):
            history.final_loss = final
        self.exposure_sum.zero_()

    def state(self) -> dict[str, Any]:
        return {"histories": [h.to_dict() for h in self.histories], "window_sum": self.window_sum.tolist(),
                "window_n": self.window_n, "exposure_sum": self.exposure_sum.tolist()}

    def load(self, state: dict[str, Any]) -> None:
        for history, saved in zip(self.histories, state["histories"], strict=True):
            history.__dict__.update(TrainHistory(**saved).__dict__)
        self.window_sum.copy_(torch.tensor(state["window_sum"]))
        self.window_n = int(state["window_n"])
        self.exposure_sum.copy_(torch.tensor(state["exposure_sum"], dtype=torch.float64))


@dataclass(frozen=True)
class TrainPlan:
    """What both loops derive from a recipe before the first step: device, precision, step counts."""

    config: TrainConfig
    device: torch.device
    autocast: AbstractContextManager
    steps_per_exposure: int
    total_steps: int
    log_every: int

    @classmethod
    def make(cls, config: TrainConfig, n_items: int, device: str | torch.device = "auto",
             log_every: int | None = None) -> TrainPlan:
        """Resolve the device, seed every generator with ``config.seed`` and count the steps.

        ``log_every``: steps between logged losses (default: about 200 points per run)."""
        device = resolve_device(device)
        seed_everything(config.seed)
        spe = config.steps_per_exposure(n_items)
        total = spe * config.exposures
        if log_every is not None:
            check_int("log_every", log_every, 1)
        return cls(config, device, autocast_context(device, config.amp), spe, total,
                   log_every or max(1, total // 200))

    def histories(self, n: int) -> list[TrainHistory]:
        return [TrainHistory(total_steps=self.total_steps, steps_per_exposure=self.steps_per_exposure,
                             device=str(self.device)) for _ in range(n)]


def progress_bar(plan: TrainPlan, initial: int, enabled: bool, desc: str):
    """The tqdm bar of a training loop (updated at logged points only)."""
    from tqdm.auto import tqdm

    return tqdm(total=plan.total_steps, initial=initial, disable=not enabled, desc=desc, unit="step", leave=False)


def _fingerprint(config: TrainConfig, dataset: TokenDataset, device: torch.device) -> str:
    """The settings a checkpoint must share with the run that resumes it, with a hash of exposure 0's
    tokens (a checkpoint must not be resumed on other data, e.g. another data seed)."""
    digest = hashlib.sha256(dataset.exposure(0).tokens.cpu().numpy().tobytes()).hexdigest()[:16]
    return json.dumps({**asdict(config), "data": digest, "n_items": dataset.n_items,
                       "kind": getattr(dataset, "kind", "?"), "device_type": device.type}, sort_keys=True, default=str)


# --------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------


def train(
    model: nn.Module,
    dataset: TokenDataset,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    log_every: int | None = None,
    callback: Callable[[int], None] | None = None,
    ddp: bool | None = None,
    **recipe: Any,
) -> TrainHistory:
    """Train ``model`` in place on ``dataset`` with the recipe ``config`` (``recipe``: changes to it,
    e.g. ``train(model, data, exposures=1000, lr=3e-2)``); return the loss history.

    Loss: mean cross-entropy (nats) over the ``loss_mask`` targets of the minibatch, plus the model's
    MoE load-balancing loss when it has one. Same seed, same machine → identical numbers; the model is
    moved to ``device`` (``"auto"``: CUDA when visible) and stays there.

    Checkpoints: with ``checkpoint_dir``, one every ``checkpoint_every`` steps (if set) and one at the
    end. With ``resume=True`` a checkpoint of the *same* run (same data, recipe and model shapes) is
    loaded and training continues from its step, to bit-identical final weights on the CPU; a finished
    run returns at once. Other settings raise ValueError, an untrustworthy checkpoint CheckpointError.
    ``callback(step)`` runs after every optimizer step (evaluations during training, interrupts in tests).

    Several processes (``labkit.distributed``): inside a process group of more than one process (e.g.
    under ``torchrun``, after ``labkit.distributed.init()``) the model trains with DistributedDataParallel,
    each process computing its slice of every minibatch: the same global batch, and up to float
    rounding the same weights, as one process; only rank 0 shows progress and writes checkpoints.
    ``ddp``: None (the default) uses DDP exactly then; False never.
    """
    config = TrainConfig.of(config, **recipe)
    if checkpoint_every and checkpoint_dir is None:
        raise ValueError("checkpoint_every needs a checkpoint_dir")
    place = distributed.world()
    if ddp and place.size == 1:
        raise ValueError("ddp=True needs a process group of several processes (torchrun, labkit.distributed.init); "
                         "allowed: None (DDP when there is one), False")
    use_ddp = place.size > 1 and ddp is not False
    plan = TrainPlan.make(config, dataset.n_items, device, log_every)
    model.to(plan.device)
    engine = distributed.wrap(model, model_loss, plan.device) if use_ddp else None
    progress = progress and place.main
    optimizer = make_optimizer(model, config)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    (history,) = plan.histories(1)
    log = LossLog([history], plan.device, plan.log_every)
    ckpt = None if checkpoint_dir is None else Checkpointer(
        checkpoint_dir, _fingerprint(config, dataset, plan.device), checkpoint_every)
    restored = ckpt.restore(model, optimizer) if ckpt is not None and resume else None
    step, elapsed = (restored["step"], restored["loop"]["elapsed"]) if restored else (0, 0.0)
    if restored:
        log.load(restored["loop"]["log"])
    bar = progress_bar(plan, step, progress, "train")
    cache: dict[str, Any] = {}
    t0 = time.perf_counter() - elapsed
    was_training = model.training
    model.train()
    try:
        while step < plan.total_steps:
            e, j0 = divmod(step, plan.steps_per_exposure)
            ex = stage_exposure(dataset, e, config.seed, config.batch_size, plan.device, cache)
            for j in range(j0, plan.steps_per_exposure):
                x, y = ex.minibatch(j, config.batch_size)
                rate = config.lr_at(step, plan.total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = rate
                weight = 1.0
                if engine is not None:
                    x, y, weight = distributed.shard(x, y, place, IGNORE_INDEX)
                with plan.autocast:
                    loss = model_loss(model, x, y) if engine is None else engine(x, y) * weight
                aux = moe_aux_loss(model)
                optimizer.zero_grad(set_to_none=True)
                (loss if aux is None else loss + aux).backward()
                if engine is not None:  # the mean loss of the whole minibatch, as one process logs it
                    loss = distributed.mean_over_world(loss, place)
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip, foreach=True)
                optimizer.step()
                step += 1
                means = log.step(step, loss.detach().reshape(1), ex.step_target_counts[j : j + 1],
                                 ex.step_tokens[j : j + 1], [rate])
                if means is not None:
                    bar.update(step - bar.n)
                    bar.set_postfix(loss=f"{means[0]:.4f}", refresh=False)
                if callback is not None:
                    callback(step)
                if ckpt is not None and place.main and ckpt.due(step, plan.total_steps):
                    ckpt.save(step, model, optimizer, {"elapsed": time.perf_counter() - t0, "log": log.state()})
            log.end_exposure(ex.step_target_counts.sum().reshape(1))
        if restored is None or restored["step"] < plan.total_steps:  # not a finished run loaded from disk
            history.wall_time = time.perf_counter() - t0
            if ckpt is not None and place.main:
                ckpt.save(step, model, optimizer, {"elapsed": history.wall_time, "log": log.state()})
    finally:
        bar.close()
        model.train(was_training)
    return history


def finetune(pretrained: nn.Module, dataset: TokenDataset, config: TrainConfig | None = None, *,
             device: str | torch.device = "auto", progress: bool = False, **recipe: Any
             ) -> tuple[nn.Module, TrainHistory]:
    """A copy of ``pretrained`` trained further on ``dataset`` with the recipe ``config`` (``recipe``:
    changes to it), and its history; ``pretrained`` itself is left untouched.

    Why a copy: one pretrained model serves several finetunings (and is probed as it was pretrained),
    as in Part 3.1's pretrain-then-finetune protocol (allenzhu2023part31). The loss is the dataset's
    ``loss_mask``: for QA data (``labkit.data.extraction.QAData``) the answers only. The schedule
    (warmup, cosine decay) restarts: a finetuning is a training run of its own.
    """
    import copy

    model = copy.deepcopy(pretrained)
    return model, train(model, dataset, config, device=device, progress=progress, **recipe)
