"""Chapter 0's experiment: a tiny transformer memorises a library of random facts, measured in bits.

A library of N items, each a key followed by S value tokens drawn uniformly from V symbols, holds
exactly N·S·log2 V bits (``labkit.data.uniform``). The chapter trains one tiny model on it and reads
off, every few exposures, how many of those bits the model holds (``labkit.measure.bits_learned``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from labkit.data import uniform
from labkit.experiments.base import Execution, Profile, derive
from labkit.measure import bits_learned
from labkit.model import ModelConfig, Transformer
from labkit.train import TrainConfig, TrainHistory, train

NAME = "welcome"
CHAPTER = "00_welcome"


@dataclass(frozen=True)
class Sizes:
    """The library (N items of S value tokens over V symbols), the model and its training; the bits
    curve is measured at about ``curve_points`` points during training."""

    N: int = 256
    S: int = 6
    V: int = 32
    d_model: int = 32
    n_layer: int = 2
    n_head: int = 2
    exposures: int = 150
    batch_size: int = 64
    lr: float = 5e-3
    curve_points: int = 15


@dataclass(frozen=True)
class Expect:
    """The claim cell's threshold: the share of the library's bits the model must have learned."""

    min_fraction: float = 0.9


QUICK = Profile(Sizes(), Expect(), Execution(processes=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    "smoke": derive(QUICK, sizes=dict(N=32, S=4, V=16, d_model=16, exposures=60, batch_size=16, lr=1e-2),
                    expect=dict(min_fraction=0.4)),
    "quick": QUICK,
    "full": derive(QUICK, sizes=dict(N=2048, S=8, V=64, d_model=64, exposures=400, batch_size=128, lr=3e-3)),
}


def library(sizes: Sizes, seed: int = 0) -> uniform.RandomSequences:
    """The chapter's library of random facts."""
    return uniform.sample(sizes.N, sizes.S, sizes.V, seed=seed)


def model(sizes: Sizes, data: uniform.RandomSequences, seed: int = 0) -> Transformer:
    """The chapter's tiny transformer, with a context that fits one record."""
    config = ModelConfig(vocab_size=data.vocab_size, max_len=int(data.exposure(0).tokens.shape[1]),
                         n_layer=sizes.n_layer, n_head=sizes.n_head, d_model=sizes.d_model)
    return Transformer(config, seed=seed)


@dataclass
class Trained:
    """A trained model, its loss history, and the bits it held during training (``curve``: one row per
    measurement with ``exposures`` and ``bits``)."""

    model: Transformer
    history: TrainHistory
    curve: pd.DataFrame


def train_with_bits_curve(sizes: Sizes, data: uniform.RandomSequences, net: Transformer, seed: int = 0,
                          device: str | torch.device = "auto", **kwargs: Any) -> Trained:
    """Train ``net`` on ``data`` and measure its bits learned every ``exposures / curve_points``
    exposures (a training callback at exposure boundaries, so the curve costs a few evaluations only)."""
    recipe = TrainConfig(exposures=sizes.exposures, batch_size=sizes.batch_size, lr=sizes.lr, seed=seed)
    spe = recipe.steps_per_exposure(data.n_items)
    every = spe * max(1, sizes.exposures // sizes.curve_points)
    curve: list[dict[str, float]] = []

    def measure(step: int) -> None:
        if step % every == 0:
            curve.append({"exposures": step / spe, "bits": bits_learned(net, data, device=device).bits})

    history = train(net, data, recipe, device=device, callback=measure, **kwargs)
    return Trained(net, history, pd.DataFrame(curve))
