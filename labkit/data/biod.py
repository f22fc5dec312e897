"""bioD(N, K, C, D, L, T): Part 3.3's knowledge dataset with every size a knob (allenzhu2024part33, Def 2.2).

N people with distinct names drawn without replacement from N0 possible names; K attributes; for each
attribute a set of D distinct values, each a string of L tokens over a vocabulary of T tokens; each
person's value of an attribute is C chunks, each drawn uniformly from that attribute's set.

Why a second knowledge dataset: bioS fixes the sizes (and carries English template text); bioD lets a
chapter turn one knob at a time (longer values, bigger sets, more attributes) while the information
content stays exactly computable (labkit.info.biod_information, Prop 2.3), which is what checking
"2 bits per parameter across K, C, D, L, T" needs.

Names: ``name_pools`` gives the size of each name-token pool (default bioS's 400 × 400 × 1000, N0 = 1.6e8,
three name tokens); ``name_pools=(100, 100)`` gives 2-token names and N0 = 10,000, the bioD of chapter 2's
``cpu-full`` profile (``notebooks/02_capacity_scaling_law.ipynb``). Each pool has its own tokens.
``N0`` may be passed too, as a check: it must equal the pools' product.

Record (compact, no text): ``[BOS, name tokens, key_1, value_1 (C·L tokens), ..., key_K, value_K, EOS]``,
keys in fixed order, every token a training target. Spans: "name", "value/<k>" (k = 0..K-1, the C·L value
tokens) and "value/<k>/chunk0" (its first L tokens: Def 4.1's p3). The data is static: every exposure is
the same batch. Generation is vectorized (no loop over people), so sizes of 100k people and more are
cheap to build (timings in ``benchmarks/README.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from labkit import info
from labkit.data import check_int, loss_mask, rng_for
from labkit.data.base import StaticDataset, TokenBatch
from labkit.info import BitsLearned
from labkit.tokenizer import BOS_ID, EOS_ID, BlockVocab

DEFAULT_NAME_POOLS: tuple[int, ...] = info.BIOS_NAME_POOLS  # three name tokens, N0 = 1.6e8, as in bioS
_STREAM_NAMES, _STREAM_SETS, _STREAM_VALUES = 21, 22, 23


def distinct_strings(rng: np.random.Generator, D: int, L: int, T: int) -> np.ndarray:
    """D distinct strings of L tokens in [0, T), as a (D, L) int64 array, uniform over all such sets.

    When T^L fits in int64, D codes are drawn without replacement and written in base T; otherwise
    (T^L astronomically large) random strings are drawn and the rare duplicates redrawn.
    """
    space = T**L
    if space < 2**62:
        codes = rng.choice(space, size=D, replace=False).astype(np.int64)
        digits = np.empty((D, L), dtype=np.int64)
        for pos in range(L - 1, -1, -1):
            codes, digits[:, pos] = np.divmod(codes, T)
        return digits
    strings = rng.integers(0, T, (D, L), dtype=np.int64)
    while True:
        _, first = np.unique(strings, axis=0, return_index=True)
        duplicate = np.ones(D, dtype=bool)
        duplicate[first] = False
        if not duplicate.any():
            return strings
        strings[duplicate] = rng.integers(0, T, (int(duplicate.sum()), L), dtype=np.int64)


class BioD(StaticDataset):
    """bioD(N, K, C, D, L, T) as a :class:`~labkit.data.base.TokenDataset` (see the module docstring).

    Arrays: ``names`` (N, len(name_pools)) pool indices; ``value_sets`` (K, D, L) token codes in [0, T);
    ``chunks`` (N, K, C) indices into each attribute's set. ``vocab`` maps codes to token ids.
    """

    kind = "biod"

    def __init__(self, N: int, K: int, C: int, D: int, L: int, T: int, seed: int = 0, N0: int | None = None,
                 name_pools: Sequence[int] | None = None) -> None:
        pools = tuple(DEFAULT_NAME_POOLS if name_pools is None else name_pools)
        if not pools:
            raise ValueError("name_pools=() is not valid; allowed: one or more pool sizes >= 1")
        pools = tuple(check_int(f"name_pools[{i}]", p, 1) for i, p in enumerate(pools))
        n0 = math.prod(pools)
        if N0 is not None and check_int("N0", N0, 1) != n0:
            raise ValueError(f"N0={N0} is not valid; allowed: N0 = prod(name_pools) = {n0} (name_pools={pools}); "
                             "pass name_pools to choose the name space, e.g. name_pools=(100, 100) for N0 = 10,000")
        self.N, self.K, self.C, self.D, self.L, self.T, self.N0 = info.check_biod_parameters(N, K, C, D, L, T, n0)
        self.name_pools = pools
        self.seed = check_int("seed", seed, 0)
        self.n_items = self.N
        self.vocab = BlockVocab([*((f"n{i}_", p) for i, p in enumerate(pools)), ("k", self.K), ("t", self.T)])
        self.vocab_size = self.vocab.vocab_size

        flat = rng_for(seed, _STREAM_NAMES).choice(n0, size=self.N, replace=False).astype(np.int64)
        names = np.empty((self.N, len(pools)), dtype=np.int64)
        for pos in range(len(pools) - 1, -1, -1):
            flat, names[:, pos] = np.divmod(flat, pools[pos])
        self.names = names
        sets_rng = rng_for(seed, _STREAM_SETS)
        self.value_sets = np.stack([distinct_strings(sets_rng, self.D, self.L, self.T) for _ in range(self.K)])
        self.chunks = rng_for(seed, _STREAM_VALUES).integers(0, self.D, (self.N, self.K, self.C), dtype=np.int64)

    def __repr__(self) -> str:
        return (f"BioD(N={self.N}, K={self.K}, C={self.C}, D={self.D}, L={self.L}, T={self.T}, "
                f"seed={self.seed}, name_pools={self.name_pools})")

    @property
    def record_length(self) -> int:
        """Tokens per record: BOS + name + K·(key + C·L) + EOS."""
        return 2 + len(self.name_pools) + self.K * (1 + self.C * self.L)

    def value_start(self, k: int) -> int:
        """Position of the first value token of attribute k."""
        return 1 + len(self.name_pools) + k * (1 + self.C * self.L) + 1

    def render(self, names: np.ndarray, chunks: np.ndarray) -> torch.Tensor:
        """Records of people with ``names`` (n, len(name_pools)) pool indices and ``chunks`` (n, K, C)
        indices into this dataset's value sets: (n, record_length) token ids. The dataset's own records
        are ``render(self.names, self.chunks)``; other people in the same format (the junk of
        ``labkit.data.junk``) come from other arrays."""
        n, K, CL = len(names), self.K, self.C * self.L
        offsets = np.array([self.vocab.offset(f"n{i}_") for i in range(len(self.name_pools))], dtype=np.int64)
        name_ids = names + offsets
        values = self.value_sets[np.arange(K)[None, :, None], chunks]  # (n, K, C, L)
        values = values.reshape(n, K, CL) + self.vocab.offset("t")
        keys = np.broadcast_to(self.vocab.offset("k") + np.arange(K)[None, :, None], (n, K, 1))
        body = np.concatenate([keys, values], axis=2).reshape(n, K * (1 + CL))
        tokens = np.concatenate([np.full((n, 1), BOS_ID), name_ids, body, np.full((n, 1), EOS_ID)], axis=1)
        return torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))

    def _build(self) -> TokenBatch:
        N, K, CL = self.N, self.K, self.C * self.L
        t = self.render(self.names, self.chunks)

        def span(start: int, length: int) -> torch.Tensor:
            return torch.tensor([start, start + length], dtype=torch.int64).expand(N, 2).contiguous()

        spans = {"name": span(1, len(self.name_pools))}
        for k in range(K):
            spans[f"value/{k}"] = span(self.value_start(k), CL)
            spans[f"value/{k}/chunk0"] = span(self.value_start(k), self.L)
        return TokenBatch(t, loss_mask(t), spans)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Readable record, e.g. ``"n0_12 n1_7 k0 t5 t9 k1 t0 t3"``."""
        return self.vocab.decode(ids)

    def information_bits(self) -> float:
        """Prop 2.3, exact form (labkit.info.biod_information)."""
        return info.biod_information(self.N, self.K, self.C, self.D, self.L, self.T, self.N0)

    def bits_learned(self, entity_loss: Mapping[str, torch.Tensor]) -> BitsLearned:
        """Def 4.1: p1 = "name"; p2, p3 = "value/<k>" and "value/<k>/chunk0" averaged over people and k."""
        p1 = info.mean_loss(entity_loss, "name")
        p2 = sum(info.mean_loss(entity_loss, f"value/{k}") for k in range(self.K)) / self.K
        p3 = sum(info.mean_loss(entity_loss, f"value/{k}/chunk0") for k in range(self.K)) / self.K
        return info.biod_bits(self.N, self.K, self.C, self.D, self.L, self.T, p1, p2, p3, self.N0)


def sample(N: int, K: int, C: int, D: int, L: int, T: int, seed: int = 0, N0: int | None = None,
           name_pools: Sequence[int] | None = None) -> BioD:
    """bioD(N, K, C, D, L, T) for ``seed`` (Part 3.3, Def 2.2); same arguments as :class:`BioD`."""
    return BioD(N, K, C, D, L, T, seed=seed, N0=N0, name_pools=name_pools)
