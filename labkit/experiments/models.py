"""The model families a sweep config can name, building a model from a config, and trained models kept
as files.

Why a module: every experiment's config (JSON, hashed by ``labkit.sweep``) says which model to train
as a few keys (``model``, ``d_model``, ``n_layer``, ``n_head``, ``model_overrides``), and every
experiment must turn those keys into the same ``ModelConfig`` for the same data.

Trained models as artifacts: ``save_trained`` writes a trained model of a config as two files named by
the config's hash, ``<hash>.safetensors`` (the weights) and ``<hash>.json`` (the config, its hash, the
``ModelConfig``, the run's scalar results and the command that regenerates it), so that later chapters
study the very models a sweep trained (``results/models/``) instead of retraining them. ``load_trained``
rebuilds the model from the config and refuses a file made for another config or shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labkit.checks import invalid
from labkit.data.base import TokenDataset
from labkit.data.registry import context_length, make_dataset
from labkit.model import ModelConfig, ParamCount, Transformer, count_params, gpt2, tiny
from labkit.runtime import atomic_write_bytes


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


# --------------------------------------------------------------------------------------------------
# Trained models as files
# --------------------------------------------------------------------------------------------------


class ModelFileError(ValueError):
    """A trained-model file is missing, or was made for another config or model shape."""


def trained_paths(config: Mapping[str, Any], folder: str | os.PathLike) -> tuple[Path, Path]:
    """``(<hash>.safetensors, <hash>.json)`` of ``config`` in ``folder`` (hash: ``labkit.sweep.config_hash``)."""
    from labkit.sweep import config_hash

    stem = Path(folder) / config_hash(config)
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _model_config_dict(model: Transformer) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(model.cfg), default=str))


def save_trained(model: Transformer, config: Mapping[str, Any], folder: str | os.PathLike,
                 result: Mapping[str, Any] | None = None, command: str | None = None) -> Path:
    """Write ``model`` (trained on ``config``) to ``folder`` as ``<hash>.safetensors`` and ``<hash>.json``
    (config, hash, ModelConfig, the scalars of ``result``, ``command``), each atomically, weights first;
    returns the JSON's path."""
    from labkit.checkpoint import weights_bytes
    from labkit.sweep import canonical_json, config_hash

    weights, meta = trained_paths(config, folder)
    scalars = {k: v for k, v in (result or {}).items() if not isinstance(v, Mapping | list)}
    record = {"config": json.loads(canonical_json(config)), "config_hash": config_hash(config),
              "model_config": _model_config_dict(model), "result": scalars, "command": command,
              "weights": weights.name}
    atomic_write_bytes(weights, weights_bytes(model))
    atomic_write_bytes(meta, (json.dumps(record, indent=1, sort_keys=True, default=str) + "\n").encode())
    return meta


def trained_record(config: Mapping[str, Any], folder: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON written by ``save_trained`` for ``config`` in ``folder``, or None when there is none."""
    _, meta = trained_paths(config, folder)
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def load_trained(config: Mapping[str, Any], folder: str | os.PathLike) -> Transformer:
    """The trained model of ``config`` saved in ``folder`` by ``save_trained``, in eval mode.

    Raises ``ModelFileError`` when the files are absent, when the JSON's config does not hash to the
    requested config's hash (a renamed or edited file), or when the ``ModelConfig`` rebuilt from the
    config today differs from the one saved (labkit's model changed since the file was made).
    """
    from labkit.checkpoint import load_weights
    from labkit.sweep import config_hash

    weights, meta = trained_paths(config, folder)
    record = trained_record(config, folder)
    wanted = config_hash(config)
    if record is None or not weights.is_file():
        raise ModelFileError(f"no trained model for config hash {wanted} in {folder}; allowed: a folder written "
                             "by save_trained (python -m labkit models ...)")
    if config_hash(record.get("config", {})) != wanted or record.get("config_hash") != wanted:
        raise ModelFileError(f"{meta} holds a model for config hash {config_hash(record.get('config', {}))}, not "
                             f"{wanted}; regenerate it with: {record.get('command') or 'python -m labkit models'}")
    model = Transformer(model_config(config, make_dataset(config)))
    if _model_config_dict(model) != record.get("model_config"):
        raise ModelFileError(f"{meta}: the model this config builds today differs from the saved one "
                             f"(labkit.model changed); regenerate it with: {record.get('command')}")
    load_weights(model, weights)
    return model.eval()
