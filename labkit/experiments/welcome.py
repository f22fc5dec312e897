"""Chapter 0's experiment: a tiny transformer memorises a library of random facts, measured in bits.

A library of N items, each a key followed by S value tokens drawn uniformly from V symbols, holds
exactly N·S·log2 V bits (``labkit.data.uniform``). The chapter trains one tiny model on it
(``train_with_bits_curve``: the one "Run it" call, no grid and no sweep), reads off, every few
exposures, how many of those bits the model holds (``labkit.measure.bits_learned``), and shows what it
measured as ``labkit.tables`` tables (``samples_table``, ``information_table``, ``params_table``,
``training_table``, ``results_table``, ``claims_table``, ``profiles_table``) and ``labkit.plots``
figures (``figure_loss``, ``figure_bits``). ``describe_items`` feeds the chapter's item explorer.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from labkit.data import uniform
from labkit.experiments.base import Execution, Profile, derive
from labkit.measure import bits_learned, recalled
from labkit.model import ModelConfig, Transformer, count_params
from labkit.runtime import resolve_device
from labkit.tables import Table, paper_vs_lab, table
from labkit.train import TrainConfig, TrainHistory, train

if TYPE_CHECKING:
    import plotly.graph_objects as go

NAME = "welcome"
CHAPTER = "00_welcome"
#: Bits per parameter at capacity: Part 3.3 (allenzhu2024part33) on biographies, Morris et al.
#: (morris2025memorize) on uniformly random sequences; chapter 0 uses the first to size its library.
PAPER_BITS_PER_PARAM = 2.0
MORRIS_BITS_PER_PARAM = 3.6


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


# --------------------------------------------------------------------------------------------------
# Data and model
# --------------------------------------------------------------------------------------------------


def library(sizes: Sizes, seed: int = 0) -> uniform.RandomSequences:
    """The chapter's library of random facts."""
    return uniform.sample(sizes.N, sizes.S, sizes.V, seed=seed)


def model(sizes: Sizes, data: uniform.RandomSequences, seed: int = 0) -> Transformer:
    """The chapter's tiny transformer, with a context that fits one record."""
    config = ModelConfig(vocab_size=data.vocab_size, max_len=int(data.exposure(0).tokens.shape[1]),
                         n_layer=sizes.n_layer, n_head=sizes.n_head, d_model=sizes.d_model)
    return Transformer(config, seed=seed)


def _value_start(data: uniform.RandomSequences) -> int:
    """Position of an item's first value token: after BOS and the key digits."""
    return 1 + data.key_digits


def samples_table(data: uniform.RandomSequences, n: int = 3) -> Table:
    """The first ``n`` items of the library as text: item number, key tokens, value tokens."""
    tokens = data.exposure(0).tokens
    first = _value_start(data)
    rows = [{"item": i, "key": data.decode(tokens[i, 1:first]), "value": data.decode(tokens[i, first:])}
            for i in range(min(n, data.N))]
    return table(rows, columns=["item", "key", "value"])


def information_table(data: uniform.RandomSequences) -> Table:
    """The library's information content N·S·log2 V, with its factors."""
    row = {"N": data.N, "S": data.S, "V": data.V, "log2 V": math.log2(data.V),
           "bits": data.information_bits()}
    return table([row], columns={"N": "items N", "S": "tokens S", "V": "symbols V", "log2 V": "bits per token",
                                 "bits": "bits N·S·log2 V"},
                 formats={"N": ",d", "log2 V": ".3f", "bits": ",.0f"})


def params_table(net: Transformer, data: uniform.RandomSequences,
                 bits_per_param: float = PAPER_BITS_PER_PARAM) -> Table:
    """The model's parameter count P (embedding rows of tokens the data never uses left out, as Part 3.3
    counts it), what it could hold at ``bits_per_param`` bits per parameter, and the share of that the
    library fills (below 100%: the model has room to memorise the whole library)."""
    counts = count_params(net, used_tokens=data.used_tokens())
    capacity = bits_per_param * counts.total
    row = {"P": counts.total, "non_embedding": counts.non_embedding, "capacity": capacity,
           "information": data.information_bits(), "fill": data.information_bits() / capacity}
    return table([row], columns={"P": "parameters P", "non_embedding": "non-embedding",
                                 "capacity": f"capacity at {bits_per_param:g} bits/param",
                                 "information": "library (bits)", "fill": "library / capacity"},
                 formats={"P": ",d", "non_embedding": ",d", "capacity": ",.0f", "information": ",.0f",
                          "fill": ".1%"})


# --------------------------------------------------------------------------------------------------
# Training with a bits curve
# --------------------------------------------------------------------------------------------------


@dataclass
class Trained:
    """A trained model, its loss history, and the bits it held during training (``curve``: one row per
    measurement with ``exposures`` and ``bits``, from the untrained model at 0 exposures on)."""

    model: Transformer
    history: TrainHistory
    curve: pd.DataFrame


def recipe(sizes: Sizes, seed: int = 0) -> TrainConfig:
    """The lab's one training recipe with the chapter's exposures, batch size and learning rate."""
    return TrainConfig(exposures=sizes.exposures, batch_size=sizes.batch_size, lr=sizes.lr, seed=seed)


def train_with_bits_curve(sizes: Sizes, data: uniform.RandomSequences, net: Transformer, seed: int = 0,
                          device: str | torch.device = "auto", **kwargs: Any) -> Trained:
    """Train ``net`` on ``data`` and measure its bits learned before training and every
    ``exposures / curve_points`` exposures (a training callback at exposure boundaries, so the curve costs
    a few evaluations only; evaluating changes nothing in the training, which draws no random numbers
    from the model). ``kwargs`` go to ``labkit.train.train`` (e.g. ``progress=False``)."""
    config = recipe(sizes, seed)
    spe = config.steps_per_exposure(data.n_items)
    every = spe * max(1, sizes.exposures // sizes.curve_points)
    curve: list[dict[str, float]] = [{"exposures": 0.0, "bits": bits_learned(net, data, device=device).bits}]

    def measure(step: int) -> None:
        if step % every == 0:
            curve.append({"exposures": step / spe, "bits": bits_learned(net, data, device=device).bits})

    history = train(net, data, config, device=device, callback=measure, **kwargs)
    return Trained(net, history, pd.DataFrame(curve))


def training_table(trained: Trained) -> Table:
    """What the training did: steps, exposures, wall time (bits measurements included), final loss."""
    h = trained.history
    row = {"steps": h.total_steps, "exposures": h.total_steps // max(1, h.steps_per_exposure),
           "steps_per_exposure": h.steps_per_exposure, "wall": h.wall_time, "loss": h.final_loss}
    return table([row], columns={"steps": "steps", "exposures": "exposures",
                                 "steps_per_exposure": "steps per exposure", "wall": "wall time (s)",
                                 "loss": "final loss (nats/token)"},
                 formats={"steps": ",d", "wall": ".1f", "loss": ".3f"})


def figure_loss(trained: Trained, data: uniform.RandomSequences) -> go.Figure:
    """The training loss per value token (log scale) with the loss of a uniform guess, ln V."""
    from labkit import plots

    h = trained.history
    return plots.loss_curve(h.exposures, h.losses, x_title="exposures", title="Training loss on the value tokens",
                            y_title="loss (nats per value token)", name="training loss", log_y=True,
                            hlines={"chance: ln V": math.log(data.V)})


def figure_bits(trained: Trained, data: uniform.RandomSequences) -> go.Figure:
    """The bits the model holds during training, with the library's information content N·S·log2 V."""
    from labkit import plots

    curve = trained.curve
    series = {"bits learned": {"x": curve["exposures"], "y": curve["bits"], "mode": "lines+markers"}}
    return plots.curves(series, title="Bits the model holds during training", x_title="exposures",
                        y_title="bits learned", hlines={"information N·S·log2 V": data.information_bits()})


# --------------------------------------------------------------------------------------------------
# Measurement, the claim, and the explorer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """The chapter's headline numbers: bits learned of the library's information (Morris et al.'s count),
    the share of items recalled exactly, the parameter count P and bits per parameter."""

    bits: float
    information_bits: float
    recalled: float
    params: int
    non_embedding_params: int

    @property
    def fraction_learned(self) -> float:
        """bits / information content (1.0: the model knows the whole library)."""
        return self.bits / self.information_bits

    @property
    def bits_per_param(self) -> float:
        """bits / P."""
        return self.bits / self.params

    def to_dict(self) -> dict[str, float]:
        """The fields and the derived ratios, as plain numbers."""
        return {**dataclasses.asdict(self), "fraction_learned": self.fraction_learned,
                "bits_per_param": self.bits_per_param}


def measure(net: Transformer, data: uniform.RandomSequences, device: str | torch.device = "auto") -> Result:
    """Bits learned (``labkit.measure.bits_learned``) and exact recall (``labkit.measure.recalled``)."""
    found = bits_learned(net, data, device=device)
    share = recalled(net, data, device=device).float().mean().item()
    return Result(bits=found.bits, information_bits=found.information_bits, recalled=share,
                  params=found.params, non_embedding_params=int(found.non_embedding_params or 0))


def results_table(result: Result) -> Table:
    """The headline numbers of one trained model, one row."""
    return table([result.to_dict()],
                 columns={"bits": "bits learned", "information_bits": "information (bits)",
                          "fraction_learned": "share learned", "recalled": "items recalled exactly",
                          "params": "parameters P", "bits_per_param": "bits / parameter"},
                 formats={"bits": ",.0f", "information_bits": ",.0f", "fraction_learned": ".1%",
                          "recalled": ".1%", "params": ",d", "bits_per_param": ".2f"})


def claims(result: Result, expect: Expect) -> list[dict[str, Any]]:
    """The chapter's claims for ``labkit.tables.paper_vs_lab``: below capacity a model memorises (nearly)
    the whole random library; the capacity itself (bits per parameter when the data exceeds it) is not
    reached here, since the library fills a fraction of it."""
    fill = result.information_bits / (PAPER_BITS_PER_PARAM * result.params)
    return [
        {"claim": "share of a random library below capacity that is memorised", "paper": "≈ 100%",
         "lab": result.fraction_learned, "fmt": ".1%", "expect": (expect.min_fraction, None),
         "note": f"threshold of this profile: ≥ {expect.min_fraction:.0%}"},
        {"claim": "bits per parameter at capacity",
         "paper": f"≈ {PAPER_BITS_PER_PARAM:g} (Part 3.3), ≈ {MORRIS_BITS_PER_PARAM:g} (Morris et al.)",
         "lab": result.bits_per_param, "fmt": ".2f", "status": "not tested here",
         "note": f"the library fills {fill:.0%} of 2 bits × P; chapter 2 measures capacity"},
    ]


def claims_table(result: Result, expect: Expect, profile: str = "quick") -> Table:
    """The paper's numbers next to this run's (``claims``), with a reproduces / not tested status."""
    return paper_vs_lab(claims(result, expect), lab=f"this run ({profile})")


def value_predictions(net: Transformer, data: uniform.RandomSequences,
                      device: str | torch.device = "auto") -> torch.Tensor:
    """(N, S) token ids: the model's argmax for each value token given the true prefix (teacher forcing;
    equal to greedy decoding wherever the earlier tokens are right, ``labkit.measure.recalled``)."""
    tokens = data.exposure(0).tokens
    first = _value_start(data)
    chosen = resolve_device(device)
    was_training = net.training
    net.to(chosen).eval()
    try:
        with torch.inference_mode():
            logits = net(tokens.to(chosen))
    finally:
        net.train(was_training)
    return logits[:, first - 1:first - 1 + data.S].argmax(-1).cpu()


def item_html(data: uniform.RandomSequences, predictions: torch.Tensor, i: int) -> str:
    """Item ``i`` as HTML: its key, then the model's value tokens, green where right and red where wrong
    (hovering a wrong token shows the right one)."""
    tokens = data.exposure(0).tokens[i]
    first = _value_start(data)
    cells = []
    for guess, truth in zip(predictions[i].tolist(), tokens[first:first + data.S].tolist(), strict=True):
        text = html.escape(data.decode([guess]))
        if guess == truth:
            cells.append(f"<span style='color:green'>{text}</span>")
        else:
            right = html.escape(data.decode([truth]))
            cells.append(f"<span style='color:red' title='right: {right}'>{text}</span>")
    n_right = int((predictions[i] == tokens[first:first + data.S]).sum())
    key = html.escape(data.decode(tokens[1:first]))
    return f"key {key} &rarr; {' '.join(cells)} ({n_right} of {data.S} right)"


def describe_items(net: Transformer, data: uniform.RandomSequences,
                   device: str | torch.device = "auto") -> Callable[[int], str]:
    """``describe(i)`` for ``labkit.widgets.item_explorer``: item ``i`` as the trained model recalls it
    (``item_html``; the predictions are computed once, here)."""
    predictions = value_predictions(net, data, device)
    return lambda i: item_html(data, predictions, i)


# --------------------------------------------------------------------------------------------------
# The chapter at every scale
# --------------------------------------------------------------------------------------------------


def profiles_table(profiles: Mapping[str, Profile[Sizes, Expect]] | None = None) -> Table:
    """Per profile: the library (N, S, V and its bits), the model (width, P), the training (exposures,
    steps) and the library's share of 2 bits × P (at every scale the model has room for the library)."""
    rows = []
    for name, chosen in (profiles or PROFILES).items():
        sizes = chosen.sizes
        data = library(sizes)
        P = count_params(model(sizes, data), used_tokens=data.used_tokens()).total
        bits = data.information_bits()
        rows.append({"profile": name, "N": sizes.N, "S": sizes.S, "V": sizes.V, "bits": bits,
                     "d_model": sizes.d_model, "P": P, "exposures": sizes.exposures,
                     "steps": recipe(sizes).steps_per_exposure(sizes.N) * sizes.exposures,
                     "fill": bits / (PAPER_BITS_PER_PARAM * P)})
    return table(rows, columns={"profile": "profile", "N": "N", "S": "S", "V": "V", "bits": "library (bits)",
                                "d_model": "d_model", "P": "parameters P", "exposures": "exposures",
                                "steps": "steps", "fill": "library / (2 bits × P)"},
                 formats={"N": ",d", "bits": ",.0f", "P": ",d", "steps": ",d", "fill": ".1%"}, index="profile")
