"""Device choice and seeding: the two things every experiment does first.

Why a module of its own: notebooks, the trainer and the CLI must agree on what ``device="auto"``
means and on how a seed reaches every random number generator, or "same seed, same numbers" breaks.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into ``cuda`` when a GPU is visible, else ``cpu``; validate anything else."""
    if isinstance(device, torch.device):
        return device
    name = str(device)
    base = name.split(":")[0]
    if base not in DEVICE_CHOICES:
        raise ValueError(f"device={name!r} is not valid; allowed: {', '.join(DEVICE_CHOICES)} (optionally 'cuda:N')")
    if base == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} requested but CUDA is not available; use device='auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a torch.Generator seeded the same way.

    Returning a generator lets callers draw data without touching the global stream, so that adding
    a plot or a probe to a notebook does not change the numbers of a later training run.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} is not valid; allowed: a non-negative integer")
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move a finished temp file onto ``path`` atomically, as an ordinary file (mkstemp makes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    Why: results and checkpoints are read back by resumable sweeps; a run killed mid-write must leave
    nothing that looks valid. The temp file lives in the same folder so ``os.replace`` is atomic.
    """
    import tempfile
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
