"""Training: exposures → steps, AdamW, warmup + cosine, gradient clipping, seeds, atomic checkpoints.

Why one trainer for the whole lab: every chapter compares *bits learned per parameter* across models,
exposures and datasets, and that comparison is only fair when the optimisation recipe (REFERENCE §4,
§12: AdamW, betas (0.9, 0.98), 2% warmup, cosine to 0.1×) and the meaning of "exposure" are identical.

Exposure (the unit of training)
    One exposure = every item's record (person, library item) seen exactly once. Exposure ``e`` trains
    on ``dataset.exposure(e)`` (bioS "fresh" mode re-renders templates and sentence order there; static
    datasets return the same batch) in minibatches drawn from a permutation of the items seeded by
    ``(seed, e)``. Hence ``steps = ceil(n_items / batch_size) × exposures``; the last minibatch of each
    exposure holds the ``n_items mod batch_size`` remaining items (no item is dropped or repeated).

    Part 3.3 counts exposures through tokens instead: it trains on biographies packed into 512-token
    windows and calls "E exposures" the number of training tokens divided by N × (tokens per
    biography). Packing splits biographies across windows and the tokens per biography vary with the
    templates, so a person's knowledge is seen *about* E times there (and the paper's accounting is not
    fully consistent between sections); here every record is seen *exactly* E times, with the whole
    record in one context. ``TrainHistory.tokens_seen`` gives the token count for comparison.

Threads: ``train`` leaves ``torch.set_num_threads`` to the caller. On the 2-core lab machine one job
with 2 threads, or two jobs with 1 thread each (better for sweeps, REFERENCE §12), are both sensible,
and only the caller knows which one it is running.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from labkit.data.base import TokenBatch, TokenDataset
from labkit.loss import IGNORE_INDEX
from labkit.runtime import atomic_write_bytes, resolve_device, seed_everything

CHECKPOINT_FORMAT = 1
DEFAULT_MOE_AUX_WEIGHT = 0.01


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be trusted (corrupt, truncated, or from a different run)."""


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


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW, fused where torch supports it: the fused step is ~5× faster than the loop on CPU for tiny models."""
    groups = param_groups(model, weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    except (RuntimeError, ValueError):  # device or dtype without a fused kernel
        return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


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


def autocast_context(device: torch.device, amp: str | bool) -> AbstractContextManager:
    """The forward pass's precision: bf16 autocast on CUDA by default, fp32 elsewhere.

    Why not bf16 on the CPU too: for the lab's tiny models the casts cost more than the faster matmuls
    gain (measured on the 2-core AVX512-BF16 CPU: a 40k-parameter step 2× slower); it only pays above
    a few million parameters (DESIGN). ``amp``: "auto", "bf16" / True, "off" / "fp32" / False / None.
    """
    if amp == "auto":
        enabled = device.type == "cuda"
    elif amp in (True, "bf16"):
        enabled = True
    elif amp in (False, None, "off", "fp32"):
        enabled = False
    else:
        raise ValueError(f"amp={amp!r} is not valid; allowed: 'auto', 'bf16', 'off', True, False")
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


# --------------------------------------------------------------------------------------------------
# Checkpoints
#
# A checkpoint is a pair of files in checkpoint_dir: ``step-<k>.safetensors`` (the weights) and
# ``step-<k>.pt`` (torch.save of plain containers, loadable with weights_only=True: step, optimizer
# state, torch RNG states, loss-history accumulators, a fingerprint of the run's settings and the
# sha256 of the weights file). Each file is written to a temp file in the same directory, fsynced and
# moved into place with os.replace; the state file is written *last*, so it is the commit marker: a
# kill between the two writes leaves an orphan weights file that resume ignores. Older checkpoints are
# deleted after a new one is committed. A state file that is unreadable, or whose weights are missing
# or do not match its hash, raises CheckpointError instead of being loaded or silently skipped.
# --------------------------------------------------------------------------------------------------


def _weights_bytes(model: nn.Module) -> bytes:
    """safetensors bytes of the state dict; tied tensors are stored once and re-linked on load."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor.detach().cpu().contiguous()
    return safetensors.torch.save(tensors, metadata={"aliases": json.dumps(aliases)})


def _load_weights(model: nn.Module, data: bytes) -> None:
    tensors = safetensors.torch.load(data)
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    for name, source in json.loads(header.get("__metadata__", {}).get("aliases", "{}")).items():
        tensors[name] = tensors[source]
    model.load_state_dict(tensors, strict=True)


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Write the model's weights to a safetensors file, atomically (for sharing a trained model)."""
    atomic_write_bytes(Path(path), _weights_bytes(model))


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load weights written by ``save_weights`` or a trainer checkpoint into ``model`` (strict)."""
    _load_weights(model, Path(path).read_bytes())


def _checkpoint_paths(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob("step-*.pt"):
        try:
            found.append((int(path.stem.split("-", 1)[1]), path))
        except ValueError:
            continue
    return sorted(found)


def _save_checkpoint(directory: Path, step: int, model: nn.Module, state: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    weights = _weights_bytes(model)
    stem = f"step-{step:09d}"
    atomic_write_bytes(directory / f"{stem}.safetensors", weights)
    buffer = io.BytesIO()
    torch.save({**state, "weights_sha256": hashlib.sha256(weights).hexdigest()}, buffer)
    atomic_write_bytes(directory / f"{stem}.pt", buffer.getvalue())
    # older checkpoints, orphans of interrupted writes and temp files of killed writes (one writer per dir)
    for path in [*directory.glob("step-*"), *directory.glob(".step-*.tmp")]:
        if path.name.split(".")[0] != stem:
            path.unlink(missing_ok=True)


def _read_checkpoint(directory: Path) -> tuple[dict[str, Any], bytes] | None:
    """The latest committed checkpoint's state and weights bytes, verified; None if there is none."""
    found = _checkpoint_paths(directory) if directory.is_dir() else []
    if not found:
        return None
    _, state_path = found[-1]
    weights_path = state_path.with_suffix(".safetensors")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        weights = weights_path.read_bytes()
    except Exception as err:  # unpickling errors vary by torch version; any failure means "corrupt"
        raise CheckpointError(
            f"checkpoint {state_path} cannot be read ({err}); delete it or pass resume=False"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {state_path} has an unknown format; delete it or pass resume=False")
    if hashlib.sha256(weights).hexdigest() != state.get("weights_sha256"):
        raise CheckpointError(
            f"weights {weights_path} do not match {state_path} (corrupt); delete them or resume=False"
        )
    return state, weights


# --------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------


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
    return StagedExposure(
        tokens=tokens,
        targets=targets,
        order=order.to(device),
        lengths=[int(chunk.max()) for chunk in per_step],
        step_tokens=[int(chunk.sum()) for chunk in per_step],
        step_targets=[int(chunk.sum()) for chunk in torch.split(n_targets[order], batch_size)],
    )


def _data_digest(dataset: TokenDataset) -> str:
    """Hash of exposure 0's tokens: a checkpoint must not be resumed on other data (e.g. another data seed)."""
    return hashlib.sha256(dataset.exposure(0).tokens.cpu().numpy().tobytes()).hexdigest()[:16]


def _fingerprint(**settings: Any) -> str:
    """The settings a checkpoint must share with the run that resumes it (JSON, compared as a string)."""
    return json.dumps(settings, sort_keys=True, default=str)


def train(
    model: nn.Module,
    dataset: TokenDataset,
    exposures: int = 100,
    batch_size: int = 128,
    lr: float = 5e-3,
    seed: int = 0,
    device: str | torch.device = "auto",
    *,
    weight_decay: float = 0.05,
    warmup: float = 0.02,
    min_lr_ratio: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.98),
    grad_clip: float | None = 1.0,
    amp: str | bool = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    log_every: int | None = None,
    callback: Callable[[int], None] | None = None,
) -> TrainHistory:
    """Train ``model`` in place on ``dataset`` for ``exposures`` exposures; return the loss history.

    Steps: ``ceil(dataset.n_items / batch_size) × exposures`` (see the module docstring for how this
    relates to Part 3.3's token-based count). Loss: mean cross-entropy (nats) over the ``loss_mask``
    targets of the minibatch, plus the model's MoE load-balancing loss when it exposes ``aux_loss``.
    Optimiser: AdamW (decay on ≥2-D tensors only, see ``param_groups``), linear warmup over a
    ``warmup`` fraction of the steps, cosine decay to ``min_lr_ratio × lr``, gradient-norm clipping
    at ``grad_clip`` (None or 0: off). Defaults (lr 5e-3, batch 128, weight decay 0.05) are REFERENCE
    §12's best CPU recipe; 100 exposures is Part 3.3's shorter budget.

    Reproducibility: ``seed_everything(seed)`` is called first (dropout, if any, draws from it); the
    item order of exposure e depends only on (seed, e). Same seed, same machine → identical numbers.
    The model is moved to ``device`` (``"auto"``: CUDA when visible) and stays there.

    Checkpoints: with ``checkpoint_dir``, a checkpoint is written every ``checkpoint_every`` steps (if
    set) and at the end. With ``resume=True`` an existing checkpoint of the *same* run (same data,
    settings and model shapes) is loaded and training continues from its step, giving
    bit-identical final weights on CPU; a finished run returns at once. A checkpoint of different
    settings raises ValueError, an untrustworthy one CheckpointError. ``resume=False`` starts over.

    ``log_every``: steps between logged losses (default: ~200 points per run); only logging forces a
    device sync. ``callback(step)`` is called after every optimizer step (for evaluations during
    training, or to interrupt a run in tests); it costs one Python call per step.
    """
    if exposures < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"exposures={exposures}, batch_size={batch_size}, lr={lr}: all must be positive")
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup={warmup!r} is not valid; allowed: a fraction of the steps in [0, 1)")
    if checkpoint_every and checkpoint_dir is None:
        raise ValueError("checkpoint_every needs a checkpoint_dir")
    device = resolve_device(device)
    seed_everything(seed)
    was_training = model.training
    model.to(device)
    autocast = autocast_context(device, amp)
    spe = steps_per_exposure(dataset.n_items, batch_size)
    total_steps = spe * exposures
    log_every = log_every or max(1, total_steps // 200)
    optimizer = make_optimizer(model, lr, weight_decay, betas)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    fingerprint = _fingerprint(
        data=_data_digest(dataset) if ckpt_dir is not None else None,
        n_items=dataset.n_items, kind=getattr(dataset, "kind", "?"), exposures=exposures, batch_size=batch_size,
        lr=lr, seed=seed, weight_decay=weight_decay, warmup=warmup, min_lr_ratio=min_lr_ratio, betas=list(betas),
        grad_clip=grad_clip, amp=str(amp), device_type=device.type,
    )  # fmt: skip

    # Loop state; everything here goes into a checkpoint, so a resumed run continues it exactly.
    history = TrainHistory(total_steps=total_steps, steps_per_exposure=spe, device=str(device))
    step, elapsed = 0, 0.0
    window_sum = torch.zeros((), device=device)  # step losses since the last log point (no sync per step)
    window_n = 0
    exposure_sum = torch.zeros((), device=device, dtype=torch.float64)  # target-weighted loss, this exposure
    found = _read_checkpoint(ckpt_dir) if ckpt_dir is not None and resume else None
    state = None if found is None else found[0]
    if found is not None:
        if state["fingerprint"] != fingerprint:
            raise ValueError(
                f"checkpoint in {ckpt_dir} was written by a run with other settings:\n  {state['fingerprint']}\n"
                f"this run:\n  {fingerprint}\nuse another checkpoint_dir or resume=False"
            )
        try:
            _load_weights(model, found[1])
        except Exception as err:
            raise CheckpointError(f"the checkpoint in {ckpt_dir} does not fit this model ({err})") from err
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        history = TrainHistory(**state["history"])
        step, elapsed, window_n = int(state["step"]), float(state["elapsed"]), int(state["window_n"])
        window_sum.fill_(state["window_sum"])
        exposure_sum.fill_(state["exposure_sum"])

    def checkpoint() -> None:
        state = {
            "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "step": step, "elapsed": elapsed,
            "optimizer": optimizer.state_dict(), "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "history": history.to_dict(), "window_sum": float(window_sum), "window_n": window_n,
            "exposure_sum": float(exposure_sum),
        }  # fmt: skip
        _save_checkpoint(ckpt_dir, step, model, state)

    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=step, disable=not progress, desc="train", unit="step", leave=False)
    cache: dict[str, Any] = {}
    t0 = time.perf_counter() - elapsed
    model.train()
    try:
        while step < total_steps:
            e, j0 = divmod(step, spe)
            ex = stage_exposure(dataset, e, seed, batch_size, device, cache)
            for j in range(j0, spe):
                idx = ex.order[j * batch_size : (j + 1) * batch_size]
                x = ex.tokens.index_select(0, idx)[:, : ex.lengths[j]]
                y = ex.targets.index_select(0, idx)[:, : ex.lengths[j]]
                rate = lr_at(step, total_steps, lr, warmup, min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = rate
                with autocast:
                    loss = model_loss(model, x, y)
                aux = moe_aux_loss(model)
                optimizer.zero_grad(set_to_none=True)
                (loss if aux is None else loss + aux).backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
                optimizer.step()
                step += 1
                loss = loss.detach()
                window_sum += loss
                window_n += 1
                exposure_sum += loss * ex.step_targets[j]
                history.tokens_seen += ex.step_tokens[j]
                if step % log_every == 0 or step == total_steps:
                    mean = float(window_sum) / window_n
                    history.steps.append(step)
                    history.exposures.append(step / spe)
                    history.tokens.append(history.tokens_seen)
                    history.losses.append(mean)
                    history.lrs.append(rate)
                    window_sum.zero_()
                    window_n = 0
                    bar.update(step - bar.n)
                    bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
                if callback is not None:
                    callback(step)
                if ckpt_dir is not None and checkpoint_every and step % checkpoint_every == 0 and step < total_steps:
                    elapsed = time.perf_counter() - t0
                    checkpoint()
            history.final_loss = float(exposure_sum) / max(sum(ex.step_targets), 1)
            exposure_sum.zero_()
        if state is None or state["step"] < total_steps:  # not a finished run loaded from its checkpoint
            history.wall_time = elapsed = time.perf_counter() - t0
            if ckpt_dir is not None:
                checkpoint()
    finally:
        bar.close()
        model.train(was_training)
    return history
