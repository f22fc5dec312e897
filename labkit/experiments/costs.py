"""What a profile's grid costs before it runs: training FLOPs per run from its config, and GPU-hours.

Why: a ``full`` profile is meant for a GPU or a cluster, and a reader must know whether it is an
afternoon on one GPU or a week on eight before asking for either. The count is the standard one for
transformers (Kaplan et al. 2020): training (forward + backward) costs 6 FLOPs per weight of every
matrix a token passes through, plus 6 × layers × context × width for the attention scores and their
weighted sum (causal: half the square). GPU-hours divide that by a GPU's peak at a stated utilisation,
or, where larger, multiply the optimizer steps by a stated time per step (a model this small cannot
fill a GPU, and each step pays kernel-launch latency): both are assumptions, not measurements, so
every number here is an estimate, and is labelled as one wherever it is shown.

Counted: the trainings only. The measurements after training (a few forward passes over the data)
add a few percent at 100+ exposures; other work a run does (an NTK's Jacobians) is not counted.
An experiment tells how many records a run trains on with ``trained_records(config)`` (an MLS search
trains many libraries); the default is the config's items (``N`` or ``n_items``) × ``exposures``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labkit.data.registry import make_dataset, max_people
from labkit.experiments.models import model_config
from labkit.model import ModelConfig, Transformer, count_params
from labkit.train import record_lengths

#: dense bf16 peak of an NVIDIA A100 (FLOP/s), the GPU most clusters offer
A100_BF16_PEAK = 312e12
#: the fraction of that peak assumed for the lab's small models (their kernels are small: an assumption)
UTILISATION = 0.10
#: seconds assumed for one optimizer step of a small model on a GPU, whatever its FLOPs: a few hundred
#: kernel launches of eager PyTorch (an assumption; batching same-shape runs shares it among up to 8)
STEP_SECONDS = 3e-3
SAMPLE_ITEMS = 256  # records sampled to measure the tokens of a minibatch


def flops_per_token(cfg: ModelConfig, context: int) -> float:
    """Training FLOPs per token of a model: 6 × (matrix weights a token uses: attention, MLP, routed
    experts only, and the unembedding, tied or not) + 6 × n_layer × context × d_model (attention)."""
    counts = count_params(Transformer(cfg))
    matrices = counts.active - counts.embedding - counts.position - counts.norm - counts.unembedding
    matrices += cfg.vocab_size * cfg.d_model
    return 6.0 * matrices + 6.0 * cfg.n_layer * context * cfg.d_model


@functools.lru_cache(maxsize=256)
def _per_record(spec_json: str) -> tuple[float, float]:
    """(training FLOPs per record, tokens per record) of a config without its recipe: a sample of
    records is trimmed as a minibatch is (to its longest record), and that length is the context."""
    config = json.loads(spec_json)
    items = [int(config[k]) for k in ("N", "n_items", "max_size") if config.get(k)]
    sample = make_dataset(config, min(SAMPLE_ITEMS, max_people(config), *items))
    cfg = model_config(config, sample)
    batch = int(config.get("batch_size", 128))
    lengths = record_lengths(sample.exposure(0)).float()
    chunks = lengths.split(max(1, min(batch, SAMPLE_ITEMS)))
    tokens = float(sum(float(c.max()) * len(c) for c in chunks) / len(lengths))
    return flops_per_token(cfg, round(tokens)) * tokens, tokens


def _records(config: Mapping[str, Any]) -> float | None:
    items = config.get("N", config.get("n_items"))
    if items is None or "exposures" not in config:
        return None
    return float(items) * float(config["exposures"])


def run_flops(config: Mapping[str, Any], trained_records: Any = None) -> float | None:
    """Estimated training FLOPs of one run; None when its config names no transformer training (no
    ``model``, no items or exposures). ``trained_records(config)``: the experiment's own count."""
    if "model" not in config:
        return None
    records = trained_records(config) if trained_records is not None else _records(config)
    if records is None:
        return None
    skip = {"seed", "lr", "weight_decay", "exposures", "method", "start", "tolerance", "threshold"}
    spec = {k: v for k, v in config.items() if k not in skip}
    per_record, _ = _per_record(json.dumps(spec, sort_keys=True))
    return per_record * float(records)


def run_steps(config: Mapping[str, Any], trained_records: Any = None) -> float | None:
    """Estimated optimizer steps of one run (its records / ``batch_size``): what bounds the time of a
    model too small to fill a GPU, whose every step costs a kernel-launch latency whatever its FLOPs."""
    if "model" not in config:
        return None
    records = trained_records(config) if trained_records is not None else _records(config)
    return None if records is None else float(records) / int(config.get("batch_size", 128))


@dataclass(frozen=True)
class Cost:
    """A grid's estimated cost: ``runs`` in all, ``estimated`` of them counted, their training ``flops``,
    optimizer ``steps``, and ``gpu_hours`` on an A100 at ``utilisation`` of its bf16 peak (an estimate)."""

    runs: int
    estimated: int
    flops: float
    steps: float = 0.0
    utilisation: float = UTILISATION
    peak: float = A100_BF16_PEAK

    step_seconds: float = STEP_SECONDS

    @property
    def gpu_hours(self) -> float:
        """The larger of the FLOP-bound time (``flops`` at ``utilisation`` of ``peak``) and the
        latency-bound time (``steps`` × ``step_seconds``), in hours: small models are latency-bound."""
        return max(self.flops / (self.peak * self.utilisation), self.steps * self.step_seconds) / 3600

    def line(self) -> str:
        """One line, e.g. what ``sweep --dry-run`` prints."""
        counted = "" if self.estimated == self.runs else f" ({self.estimated} of {self.runs} runs counted)"
        return (f"estimate: {self.flops:.2e} training FLOPs in {self.steps:.2e} optimizer steps{counted}, about "
                f"{self.gpu_hours:.2g} GPU-hours on an A100 (assumed: {self.utilisation:.0%} of its bf16 peak, "
                f"at least {self.step_seconds * 1e3:g} ms a step)")


def grid_cost(grid: Sequence[Mapping[str, Any]], trained_records: Any = None,
              utilisation: float = UTILISATION) -> Cost:
    """The estimated cost of a grid (``run_flops`` of each config, summed); a config that names no
    transformer training, or whose model cannot be built (the run would fail as well), is not counted."""

    def estimate(config: Mapping[str, Any]) -> tuple[float, float] | None:
        try:
            flops = run_flops(config, trained_records)
        except ValueError:
            return None
        return None if flops is None else (flops, run_steps(config, trained_records) or 0.0)

    known = [e for e in map(estimate, grid) if e is not None]
    return Cost(len(grid), len(known), float(sum(f for f, _ in known)), float(sum(s for _, s in known)), utilisation)
