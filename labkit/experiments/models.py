"""The model families a sweep config can name, and building a model from a config.

Why a module: every experiment's config (JSON, hashed by ``labkit.sweep``) says which model to train
as a few keys (``model``, ``d_model``, ``n_layer``, ``n_head``, ``model_overrides``), and every
experiment must turn those keys into the same ``ModelConfig`` for the same data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labkit.checks import invalid
from labkit.data.base import TokenDataset
from labkit.data.registry import context_length, make_dataset
from labkit.model import ModelConfig, ParamCount, Transformer, count_params, gpt2, tiny


@dataclass(frozen=True)
class TinyModels:
    """The lab's CPU GPTs (absolute positions, GELU MLP, tied): one per width in ``widths``."""

    widths: tuple[int, ...]
    n_layer: int = 2
    n_head: int = 2

    def keys(self) -> list[dict[str, Any]]:
        return [{"model": "tiny", "d_model": int(d), "n_layer": self.n_layer, "n_head": self.n_head}
                for d in self.widths]


@dataclass(frozen=True)
class GPT2Models:
    """Part 3.3's GPT2-ℓ-h (allenzhu2024part33): ℓ layers, h heads, width 64h, rotary positions."""

    shapes: tuple[tuple[int, int], ...]

    def keys(self) -> list[dict[str, Any]]:
        return [{"model": "gpt2", "n_layer": int(l), "n_head": int(h), "d_model": 64 * int(h)}
                for l, h in self.shapes]  # noqa: E741 (the paper's ℓ)


Models = TinyModels | GPT2Models


def model_config(config: Mapping[str, Any], dataset: TokenDataset) -> ModelConfig:
    """The ``ModelConfig`` of a sweep config on its dataset (vocabulary and context come from the data);
    ``model_overrides`` changes any ``ModelConfig`` field (positions, attention, MLP kind, ...)."""
    preset = config.get("model", "tiny")
    overrides = dict(config.get("model_overrides", {}))
    vocab, max_len = dataset.vocab_size, context_length(config, dataset)
    if preset == "tiny":
        return tiny(vocab, max_len, d_model=int(config["d_model"]), n_layer=int(config.get("n_layer", 2)),
                    n_head=int(config.get("n_head", 2)), **overrides)
    if preset == "gpt2":
        return gpt2(int(config["n_layer"]), int(config["n_head"]), vocab, max_len, **overrides)
    raise invalid("model", preset, "'tiny', 'gpt2'")


def param_count(config: Mapping[str, Any], dataset: TokenDataset | None = None) -> ParamCount:
    """Parameters of the config's model on ``dataset`` (default: the config's own), embedding rows of
    tokens that never occur excluded (as Part 3.3 counts P)."""
    dataset = dataset if dataset is not None else make_dataset(config)
    return count_params(Transformer(model_config(config, dataset)), used_tokens=dataset.used_tokens())
