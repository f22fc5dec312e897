"""One model trained by several processes: DistributedDataParallel over ``torch.distributed``.

Why: a sweep spreads many runs over machines, but one large run (a ``full`` profile's biggest model,
or a reader's own) still takes one process hours. ``torchrun --nproc_per_node=N -m labkit train ...``
starts N processes; each computes the gradient of a slice of every minibatch, DDP averages them, and
all N take the same optimizer step: the same global batch and, up to float rounding, the same weights
as one process. ``labkit.train.train`` does this by itself when it runs inside a process group of
several processes (``init`` joins the one torchrun describes). Backend: gloo on the CPU, NCCL on GPUs
(one GPU per process, ``cuda:LOCAL_RANK``).

What makes the result the one-process result: every process builds the same data and model (same
seeds) and takes the same minibatch, trimmed to the same length; process r computes the loss of rows
``tensor_split(minibatch, world)[r]`` and scales it by (its loss targets / the minibatch's) × world, so
the average DDP takes is the gradient of the whole minibatch's mean loss, and clipping and AdamW then
act on identical gradients everywhere. What differs: float rounding (smaller matmuls, the all-reduce's
order), and a mixture-of-experts' load-balancing loss, computed per process as in any DDP trainer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from labkit.checks import check_choice

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class World:
    """This process's place among the processes training one model (a world of one: no distribution)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0


def world() -> World:
    """The process group this process belongs to, or a world of one when none is initialised."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def init(backend: str = "auto") -> World:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``); outside torchrun (or with one process) do nothing and
    return a world of one. ``backend``: ``"auto"`` (NCCL when a GPU is visible, else gloo)."""
    import torch.distributed as dist

    check_choice("backend", backend, BACKENDS)
    if dist.is_available() and dist.is_initialized():
        return world()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend='nccl' needs CUDA GPUs, and none is visible; allowed: 'gloo', 'auto'")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" then means this process's GPU
    dist.init_process_group(backend)
    return world()


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun program), if this process is in one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _Loss(nn.Module):
    """The training loss as a module's ``forward``, so DDP (which hooks ``forward``) can wrap it."""

    def __init__(self, model: nn.Module, loss_fn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model, tokens, targets)


def wrap(model: nn.Module, loss_fn, device: torch.device) -> nn.Module:
    """``loss_fn(model, tokens, targets)`` as a DistributedDataParallel module: calling it computes the
    loss, and backward averages the gradients of every process (``model`` keeps its own parameters)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(_Loss(model, loss_fn), device_ids=ids)


def shard(tokens: torch.Tensor, targets: torch.Tensor, place: World,
          ignore_index: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """This process's rows of a minibatch (every process holds all of it) and the weight of its mean
    loss: (its loss targets / the minibatch's) × world size, so that DDP's average of the weighted
    gradients is the gradient of the whole minibatch's mean loss.

    A process whose rows hold no target (a last minibatch smaller than the world) computes the loss of
    the minibatch's row with the most targets, with weight 0: it must still run forward and backward,
    since every process takes part in each gradient all-reduce."""
    counts = (targets != ignore_index).sum(dim=1)
    rows = torch.tensor_split(torch.arange(tokens.shape[0], device=tokens.device), place.size)[place.rank]
    mine, total = int(counts[rows].sum()), int(counts.sum())
    if mine == 0:
        best = counts.argmax().reshape(1)
        return tokens.index_select(0, best), targets.index_select(0, best), 0.0
    return tokens.index_select(0, rows), targets.index_select(0, rows), mine / total * place.size


def mean_over_world(value: torch.Tensor, place: World) -> torch.Tensor:
    """The mean of ``value`` over the processes (what one process would have computed, for the loss log)."""
    import torch.distributed as dist

    total = value.detach().clone()
    dist.all_reduce(total)
    return total / place.size
