"""Datasets by kind: one place that turns a JSON data spec into a dataset.

Why: sweep configs are JSON (they are hashed, cached and shipped to worker processes), so an
experiment names its data as ``{"data": "biod", "K": 8, ...}``. Each kind registers how to build it,
how many people (items) it can have at most, and the context length a model needs for it; experiments
never switch on the kind themselves, and a new kind is one entry here.

Spec keys by kind (defaults in brackets):

- ``biod``: ``K, C [1], D, L [1], T, name_pools [400, 400, 1000]`` (bioD of Part 3.3).
- ``bios``: ``mode ["fresh"]``, ``multi [1]``, ``permute [null: on in fresh mode]``, ``name_pools
  [400, 400, 1000]`` (synthetic biographies of Parts 3.1-3.3; ``multi``/``permute``: Part 3.1's augmentations).
- ``uniform``: ``S, V, key_base [10]`` (uniformly random key → value libraries).
- ``biod_junk``: bioD's keys plus ``junk ["fresh"]`` (``none``, ``fresh``, ``repetitive``),
  ``junk_ratio [7]``, ``domain_token [false]``, ``repetitive_size [16]`` (bioD mixed with junk,
  ``labkit.data.junk``; ``N`` counts the useful people).
- ``cfg``: ``grammar`` (a preset of ``labkit.data.cfg``: ``cfg3b``, ``medium``, ``small``, ``tiny``),
  ``grammar_seed [0]`` (strings of a layered context-free grammar, Part 1; ``N`` strings per exposure, fresh at
  every exposure).

Every kind also reads ``N`` (the number of people or items) and ``data_seed`` (default: ``seed``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from labkit import info
from labkit.checks import check_choice, invalid
from labkit.data import biod, bios, cfg, junk, uniform
from labkit.data.base import TokenDataset


@dataclass(frozen=True)
class DataKind:
    """How to build one kind of dataset from a spec, and the two facts about it experiments need."""

    build: Callable[[Mapping[str, Any], int, int], TokenDataset]  # (spec, N, seed) -> dataset
    max_people: Callable[[Mapping[str, Any]], int]  # the largest N the spec allows
    context: Callable[[Mapping[str, Any], TokenDataset], int]  # max_len a model needs for the spec's data
    keys: Callable[[Mapping[str, Any]], dict[str, Any]]  # the spec's data keys, defaults filled, JSON types


def _biod_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"data": "biod", "K": int(spec["K"]), "C": int(spec.get("C", 1)), "D": int(spec["D"]),
            "L": int(spec.get("L", 1)), "T": int(spec["T"]),
            "name_pools": [int(p) for p in spec.get("name_pools", biod.DEFAULT_NAME_POOLS)]}


def _biod(spec: Mapping[str, Any], n: int, seed: int) -> TokenDataset:
    k = _biod_keys(spec)
    return biod.sample(n, k["K"], k["C"], k["D"], k["L"], k["T"], seed=seed, name_pools=tuple(k["name_pools"]))


def _junk_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {**_biod_keys(spec), "data": "biod_junk", "junk": str(spec.get("junk", "fresh")),
            "junk_ratio": float(spec.get("junk_ratio", 7.0)), "domain_token": bool(spec.get("domain_token", False)),
            "repetitive_size": int(spec.get("repetitive_size", 16))}


def _junk(spec: Mapping[str, Any], n: int, seed: int) -> TokenDataset:
    k = _junk_keys(spec)
    return junk.JunkMixture(_biod(spec, n, seed), k["junk"], k["junk_ratio"], k["domain_token"], k["repetitive_size"],
                            seed=seed)


def _bios_context(spec: Mapping[str, Any], dataset: TokenDataset) -> int:
    """Renderings vary in length: twice the longest of a few renderings of a sample (rotary: no cost)."""
    sample = _bios(spec, min(dataset.n_items, 2000), dataset.seed)
    return 2 * max(int(sample.exposure(e).tokens.shape[1]) for e in range(4))


def _bios_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    permute = spec.get("permute")
    return {"data": "bios", "mode": str(spec.get("mode", "fresh")), "multi": int(spec.get("multi", 1)),
            "permute": None if permute is None else bool(permute),
            "name_pools": [int(p) for p in spec.get("name_pools", info.BIOS_NAME_POOLS)]}


def _bios(spec: Mapping[str, Any], n: int, seed: int) -> bios.BioS:
    k = _bios_keys(spec)
    if len(k["name_pools"]) != 3:
        raise invalid("name_pools", k["name_pools"], "three sizes: first, middle and last names")
    first, middle, last = k["name_pools"]
    pools = bios.Pools.load(first=first, middle=middle, last=last)
    return bios.BioS(n, seed, mode=k["mode"], multi=k["multi"], permute=k["permute"], pools=pools)


def _uniform_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"data": "uniform", "S": int(spec["S"]), "V": int(spec["V"]), "key_base": int(spec.get("key_base", 10))}


def _uniform_context(spec: Mapping[str, Any], dataset: TokenDataset) -> int:
    """Room for the key of the largest library the spec will build (MLS grows libraries up to
    ``max_size``), so that every library size of a search trains the same model."""
    largest = max(int(spec.get(k) or 0) for k in ("N", "max_size", "n_items"))
    return 1 + uniform.key_length(max(largest, dataset.N), dataset.key_base) + dataset.S


def _cfg_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    grammar = check_choice("grammar", spec.get("grammar"), list(cfg.PRESETS))
    return {"data": "cfg", "grammar": str(grammar), "grammar_seed": int(spec.get("grammar_seed", 0))}


def _cfg(spec: Mapping[str, Any], n: int, seed: int) -> TokenDataset:
    k = _cfg_keys(spec)
    return cfg.CFGDataset(k["grammar"], n, seed=seed, grammar_seed=k["grammar_seed"])


def _cfg_context(spec: Mapping[str, Any], dataset: TokenDataset) -> int:
    """The grammar's longest string + BOS + EOS (``dataset.context``): every record of every exposure fits.
    Affordable for every preset (seed 0: small 37, medium 41, cfg3b 288 tokens), and a context is only a cap:
    the trainer trims each minibatch to its longest record, so a rare long string costs nothing elsewhere."""
    return int(dataset.context)


KINDS: dict[str, DataKind] = {
    "biod": DataKind(
        build=_biod,
        max_people=lambda spec: math.prod(_biod_keys(spec)["name_pools"]),
        context=lambda spec, dataset: int(dataset.exposure(0).tokens.shape[1]),
        keys=_biod_keys,
    ),
    "biod_junk": DataKind(
        build=_junk,
        max_people=lambda spec: math.prod(_biod_keys(spec)["name_pools"]) - 1,  # junk needs an unused name
        context=lambda spec, dataset: int(dataset.exposure(0).tokens.shape[1]),
        keys=_junk_keys,
    ),
    "bios": DataKind(
        build=_bios,
        max_people=lambda spec: math.prod(_bios_keys(spec)["name_pools"]),  # distinct full names
        context=_bios_context,
        keys=_bios_keys,
    ),
    "uniform": DataKind(
        build=lambda spec, n, seed: uniform.sample(n, int(spec["S"]), int(spec["V"]), seed=seed,
                                                   key_base=int(spec.get("key_base", 10))),
        max_people=lambda spec: 10**9,
        context=_uniform_context,
        keys=_uniform_keys,
    ),
    "cfg": DataKind(
        build=_cfg,
        max_people=lambda spec: 10**9,  # fresh strings every exposure: no pool to exhaust
        context=_cfg_context,
        keys=_cfg_keys,
    ),
}


def kind_of(spec: Mapping[str, Any]) -> DataKind:
    """The registered kind of ``spec["data"]`` (default ``"biod"``), with the lab's one-line error."""
    name = spec.get("data", "biod")
    if name not in KINDS:
        raise invalid("data", name, ", ".join(map(repr, KINDS)))
    return KINDS[name]


def make_dataset(spec: Mapping[str, Any], N: int | None = None) -> TokenDataset:
    """The spec's dataset; ``N`` overrides ``spec["N"]`` (an MLS search builds libraries of many sizes)."""
    n = int(spec["N"] if N is None else N)
    return kind_of(spec).build(spec, n, int(spec.get("data_seed", spec.get("seed", 0))))


def context_length(spec: Mapping[str, Any], dataset: TokenDataset) -> int:
    """The context a model needs for the spec's data (``spec["max_len"]`` wins when given)."""
    return int(spec["max_len"]) if "max_len" in spec else kind_of(spec).context(spec, dataset)


def data_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The data part of a sweep config from a profile's data spec (``kind`` or ``data`` names the kind)."""
    spec = dict(spec)
    if "kind" in spec:
        spec["data"] = spec.pop("kind")
    return kind_of(spec).keys(spec)


def max_people(spec: Mapping[str, Any]) -> int:
    """The largest N the spec's data allows (bioD: the number of distinct names)."""
    return kind_of(spec).max_people(spec)
