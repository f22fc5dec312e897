"""Freeze or re-initialise parameter groups by name pattern.

Why: "where does knowledge live?" experiments train a model with some groups frozen at their random
initialisation (attention only, MLP only, embeddings fixed) or reset a group after training. Groups
are addressed by fnmatch patterns over module paths, e.g. ``"blocks.*.attn"``, ``"*.mlp"``,
``"embed"``, ``"blocks.0"``, or a full parameter name like ``"blocks.1.mlp.fc.weight"``. A pattern
matches a parameter when it matches the parameter's name or any module path above it (``*`` also
crosses dots). With tied embeddings ``"embed"`` is the unembedding too, and ``"unembed"`` matches
nothing.

Freeze before building the optimizer: AdamW skips parameters whose ``.grad`` is None, so frozen
parameters also escape weight decay.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

import torch.nn as nn


def group_names(model: nn.Module) -> list[str]:
    """Module paths that hold parameters, layer indices folded to ``*`` (what a pattern can name)."""
    names: dict[str, None] = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")[:-1]
        for end in range(1, len(parts) + 1):
            names[re.sub(r"\.\d+(?=\.|$)", ".*", ".".join(parts[:end]))] = None
    return list(names)


def parameters_matching(model: nn.Module, pattern: str | list[str]) -> dict[str, nn.Parameter]:
    """``{name: parameter}`` for the parameters under modules whose path matches ``pattern`` (or any of
    a list of patterns). A pattern that matches nothing raises ``ValueError`` listing valid groups."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    found: dict[str, nn.Parameter] = {}
    for pat in patterns:
        hits = {name: p for name, p in model.named_parameters() if _matches(name, pat)}
        if not hits:
            tied = " (embeddings are tied: 'embed' is the unembedding too)" if fnmatchcase("unembed", pat) else ""
            groups = ", ".join(group_names(model))
            raise ValueError(f"pattern={pat!r} matches no parameter{tied}; allowed groups: {groups}")
        found.update(hits)
    return found


def _matches(param_name: str, pattern: str) -> bool:
    parts = param_name.split(".")
    return any(fnmatchcase(".".join(parts[:end]), pattern) for end in range(1, len(parts) + 1))


def freeze(model: nn.Module, patterns: str | list[str]) -> list[str]:
    """Set ``requires_grad=False`` on every matching parameter; return their names."""
    params = parameters_matching(model, patterns)
    for p in params.values():
        p.requires_grad_(False)
    return list(params)


def reinitialize(model: nn.Module, patterns: str | list[str], seed: int) -> list[str]:
    """Draw the matching parameters afresh with the model's own initialisation, from ``seed`` alone
    (the same seed gives the same values whatever else the model or the global RNG did)."""
    params = parameters_matching(model, patterns)
    if not hasattr(model, "init_weights"):
        raise TypeError(f"{type(model).__name__} has no init_weights(names, seed); use a labkit Transformer")
    model.init_weights(names=set(params), seed=seed)
    return list(params)
