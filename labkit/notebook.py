"""``labkit.setup``: the first call of every chapter.

It does what a chapter must not get wrong or do differently from the others: resolve the profile
into its typed sizes, run settings and expectations (``labkit.profiles``), validate the parameters,
pick the device (never hard-coded), seed every random number generator, and switch plotly to the
offline template (figures of ``labkit.plots`` render offline by themselves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from labkit import plots, profiles, runtime


@dataclass(frozen=True)
class Setup:
    chapter: str
    profile: str
    seed: int
    device: torch.device
    config: profiles.Profile
    generator: torch.Generator

    @property
    def sizes(self) -> Any:
        """What the chapter measures at this profile (the experiment's ``Sizes``)."""
        return self.config.sizes

    @property
    def expect(self) -> Any:
        """The thresholds the chapter's claim cell asserts at this profile."""
        return self.config.expect

    @property
    def run(self) -> Any:
        """How the chapter's sweeps use the machine (processes, threads)."""
        return self.config.run

    def describe(self) -> str:
        return (f"{self.chapter}: profile={self.profile} seed={self.seed} device={self.device} "
                f"torch={torch.__version__} threads={torch.get_num_threads()}")


def setup(chapter: str, profile: str = "quick", seed: int = 0, device: str = "auto", *,
          threads: int | None = None, verbose: bool = True, **overrides: Any) -> Setup:
    """Resolve ``profile`` for ``chapter``, seed everything with ``seed`` and choose ``device``.

    ``threads``: CPU threads for torch. Default: 1 on the CPU. The lab's models are tiny and memory
    bound, so a second thread buys little when the machine is idle and costs several times more when
    anything else runs (benchmarks/README.md); sweeps get their parallelism from processes instead
    (labkit.sweep).
    """
    config = profiles.resolve(chapter, profile, **overrides)
    generator = runtime.seed_everything(seed)
    chosen = runtime.resolve_device(device)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r} is not valid; allowed: None or a positive integer")
    if chosen.type == "cpu":
        torch.set_num_threads(threads or 1)
    plots.use_template()
    result = Setup(chapter, profile, seed, chosen, config, generator)
    if verbose:
        print(result.describe())
    return result
