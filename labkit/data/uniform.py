"""Uniformly random token sequences with keys: pure information to memorize.

The data of Morris et al.'s memorization measurement (morris2025memorize) and of Härmä et al.'s MLS /
MAC (harma2024empirical); chapter 0 (``notebooks/00_welcome.ipynb``) and chapter 3 use it. The module
is called ``uniform``, not ``random``, so that it never shadows the standard library's ``random``.

N items; item i is a key (i written in base ``key_base`` with key-digit tokens, a vocabulary separate
from the values) followed by S value tokens drawn uniformly from V. Why: random data has no structure to
generalize from, so everything a model gets right beyond chance is memorized, and the information is
exactly N·S·log2 V bits. The key lets MLS / MAC ask "recall item i" (prompt ``[BOS, key]``, check the S
value tokens); Morris et al.'s loss-based count reads the same value span.

Record: ``[BOS, key digits (most significant first), value tokens (S)]`` (no EOS: nothing follows).
Loss mask: the value tokens only; the key is the question, and its tokens are known to anyone who
knows the library's size. Spans: "key", "value". Static: every exposure is the same batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from labkit import info
from labkit.data import check_int, loss_mask, rng_for
from labkit.data.base import StaticDataset, TokenBatch
from labkit.info import BitsLearned
from labkit.tokenizer import BOS_ID, BlockVocab

_STREAM_VALUES = 31


def key_length(N: int, base: int) -> int:
    """Digits needed to write 0 .. N-1 in ``base`` (at least 1)."""
    digits, reach = 1, base
    while reach < N:
        digits, reach = digits + 1, reach * base
    return digits


class RandomSequences(StaticDataset):
    """N uniformly random sequences of S tokens over V, each behind a unique key (module docstring).

    ``values``: (N, S) int64 codes in [0, V). Token ids: key digit d -> ``vocab.offset("d") + d``,
    value v -> ``vocab.offset("v") + v``.
    """

    kind = "random"

    def __init__(self, N: int, S: int, V: int, seed: int = 0, key_base: int = 10) -> None:
        self.N = check_int("N", N, 1)
        self.S = check_int("S", S, 1)
        self.V = check_int("V", V, 2)
        self.key_base = check_int("key_base", key_base, 2)
        self.seed = check_int("seed", seed, 0)
        self.n_items = self.N
        self.key_digits = key_length(self.N, self.key_base)
        self.vocab = BlockVocab([("d", self.key_base), ("v", self.V)])
        self.vocab_size = self.vocab.vocab_size
        self.values = rng_for(seed, _STREAM_VALUES).integers(0, self.V, (self.N, self.S), dtype=np.int64)

    def __repr__(self) -> str:
        return f"RandomSequences(N={self.N}, S={self.S}, V={self.V}, seed={self.seed}, key_base={self.key_base})"

    def keys(self) -> np.ndarray:
        """(N, key_digits) key-digit codes of every item (item i = i in base ``key_base``)."""
        index = np.arange(self.N, dtype=np.int64)
        powers = self.key_base ** np.arange(self.key_digits - 1, -1, -1, dtype=np.int64)
        return (index[:, None] // powers[None, :]) % self.key_base

    def _build(self) -> TokenBatch:
        key_ids = self.keys() + self.vocab.offset("d")
        tokens = np.concatenate([np.full((self.N, 1), BOS_ID), key_ids, self.values + self.vocab.offset("v")], axis=1)
        t = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))
        first_value = 1 + self.key_digits

        def span(start: int, end: int) -> torch.Tensor:
            return torch.tensor([start, end], dtype=torch.int64).expand(self.N, 2).contiguous()

        spans = {"key": span(1, first_value), "value": span(first_value, first_value + self.S)}
        return TokenBatch(t, loss_mask(t, first_value), spans)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Readable record, e.g. ``"d0 d4 d2 v17 v3 ..."``."""
        return self.vocab.decode(ids)

    def information_bits(self) -> float:
        """N·S·log2 V."""
        return info.random_information(self.N, self.S, self.V)

    def bits_learned(self, entity_loss: Mapping[str, torch.Tensor]) -> BitsLearned:
        """Morris-style: per item S·log2 V - loss("value")/ln 2, clipped at 0, summed (scaled to N)."""
        info.mean_loss(entity_loss, "value")  # validates presence
        return info.random_bits(entity_loss["value"], self.S, self.V, n_items=self.N)


def sample(N: int, S: int, V: int, seed: int = 0, key_base: int = 10) -> RandomSequences:
    """N random sequences of S tokens over V with keys; same arguments as :class:`RandomSequences`."""
    return RandomSequences(N, S, V, seed=seed, key_base=key_base)
