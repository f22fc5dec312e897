"""Weights files and resumable training checkpoints, written atomically.

Why a module of its own: a run of the lab may be killed at any moment (a laptop lid, a cluster's
time limit) and must resume to the same final weights, bit for bit on the CPU; and a trained model is
shared as a safetensors file that later chapters load. Both need the same careful writes.

A checkpoint is a pair of files in its folder: ``step-<k>.safetensors`` (the weights) and
``step-<k>.pt`` (``torch.save`` of plain containers, loadable with ``weights_only=True``: step, optimizer
state, torch RNG states, the loop's loss accumulators, a fingerprint of the run's settings and the
sha256 of the weights file). Each file is written to a temp file in the same folder, fsynced and moved
into place with ``os.replace``; the state file is written *last*, so it is the commit marker: a kill
between the two writes leaves an orphan weights file that resume ignores. Older checkpoints are
deleted after a new one is committed. A state file that is unreadable, or whose weights are missing or
do not match its hash, raises :class:`CheckpointError` instead of being loaded or silently skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from labkit.runtime import atomic_write_bytes

CHECKPOINT_FORMAT = 2


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be trusted (corrupt, truncated, or from a different run)."""


def weights_bytes(model: nn.Module) -> bytes:
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


def load_weights_bytes(model: nn.Module, data: bytes) -> None:
    """Load ``weights_bytes`` output into ``model`` (strict: every name and shape must match)."""
    tensors = safetensors.torch.load(data)
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    for name, source in json.loads(header.get("__metadata__", {}).get("aliases", "{}")).items():
        tensors[name] = tensors[source]
    model.load_state_dict(tensors, strict=True)


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Write the model's weights to a safetensors file, atomically (for sharing a trained model)."""
    atomic_write_bytes(Path(path), weights_bytes(model))


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load weights written by ``save_weights`` or a trainer checkpoint into ``model`` (strict)."""
    load_weights_bytes(model, Path(path).read_bytes())


class Checkpointer:
    """The checkpoints of one training run in ``directory``: save every ``every`` steps, restore the latest.

    ``fingerprint`` (a string) holds the settings a checkpoint must share with the run that resumes it:
    restoring a checkpoint written under other settings raises ``ValueError`` rather than continuing
    someone else's run. One writer per folder.
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: str, every: int | None = None) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.every = every

    def due(self, step: int, total_steps: int) -> bool:
        """Whether to write a periodic checkpoint after ``step`` (the final one is written by the caller)."""
        return bool(self.every) and step % self.every == 0 and step < total_steps

    def save(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, loop: dict[str, Any]) -> None:
        """Commit a checkpoint of ``model``, ``optimizer``, the RNG states and the loop state ``loop``."""
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        state = {
            "format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint, "step": step, "loop": loop,
            "optimizer": optimizer.state_dict(), "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        weights = weights_bytes(model)
        stem = f"step-{step:09d}"
        atomic_write_bytes(self.directory / f"{stem}.safetensors", weights)
        buffer = io.BytesIO()
        torch.save({**state, "weights_sha256": hashlib.sha256(weights).hexdigest()}, buffer)
        atomic_write_bytes(self.directory / f"{stem}.pt", buffer.getvalue())
        # older checkpoints, orphans of interrupted writes and temp files of killed writes
        for path in [*self.directory.glob("step-*"), *self.directory.glob(".step-*.tmp")]:
            if path.name.split(".")[0] != stem:
                path.unlink(missing_ok=True)

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Load the latest checkpoint into ``model`` and ``optimizer``, restore the RNG states and return
        ``{"step": ..., "loop": ...}``; None when there is none."""
        found = self._read()
        if found is None:
            return None
        state, weights = found
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"checkpoint in {self.directory} was written by a run with other settings:\n  "
                f"{state['fingerprint']}\nthis run:\n  {self.fingerprint}\nuse another checkpoint_dir or resume=False"
            )
        try:
            load_weights_bytes(model, weights)
        except Exception as err:
            raise CheckpointError(f"the checkpoint in {self.directory} does not fit this model ({err})") from err
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        return {"step": int(state["step"]), "loop": state["loop"]}

    def _paths(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob("step-*.pt"):
            try:
                found.append((int(path.stem.split("-", 1)[1]), path))
            except ValueError:
                continue
        return sorted(found)

    def _read(self) -> tuple[dict[str, Any], bytes] | None:
        """The latest committed checkpoint's state and weights bytes, verified; None if there is none."""
        found = self._paths() if self.directory.is_dir() else []
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
