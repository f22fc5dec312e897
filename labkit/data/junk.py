"""Useful bioD records mixed with junk: the data of Part 3.3's "junk data" experiment (allenzhu2024part33).

Part 3.3 trains on a mixture where 7/8 of the tokens are *junk*: knowledge seen too rarely to be
learned. The capacity left for the useful 1/8 collapses, unless the junk is repetitive (it is learned
once and costs little) or every useful record starts with a *domain token* (a website's name) that
tells the model which source is worth memorizing. :class:`JunkMixture` is that data for a bioD dataset:

- **useful** records: a :class:`~labkit.data.biod.BioD` dataset, every record once per exposure, so
  *exposures count the useful data*, as in the paper;
- **junk** records, ``ratio`` times the useful tokens in every exposure, in the same record format
  and vocabulary:

  - ``"fresh"``: people whose names the useful data does not use, with values drawn anew for every
    exposure (never the same record twice: nothing to learn but the marginals);
  - ``"repetitive"``: a fixed set of ``repetitive_size`` such records, cycled (learned early, then
    cheap);
  - ``"none"``: no junk (the clean baseline, with the same code path);

- ``domain_token``: a reserved token (the last id of the vocabulary) right after BOS of every useful
  record; junk records do not have it.

The bit meter must read the useful records only, as they appear in training (with their domain token):
:meth:`JunkMixture.useful` is that dataset, and its ``bits_learned`` / ``information_bits`` are the
useful bioD's. The trainer shuffles useful and junk records together within each exposure.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from labkit.checks import check_choice, check_int, check_positive
from labkit.data import loss_mask, rng_for
from labkit.data.base import StaticDataset, TokenBatch, concat_batches
from labkit.data.biod import BioD
from labkit.info import BitsLearned
from labkit.tokenizer import PAD_ID

JUNK_KINDS = ("none", "fresh", "repetitive")
_STREAM_JUNK_NAMES, _STREAM_JUNK_VALUES = 31, 32


class UsefulRecords(StaticDataset):
    """The useful records of a mixture as the model sees them in training (with the domain token, when
    there is one): what the bit meter measures. Information and bits are the useful bioD's."""

    kind = "biod"

    def __init__(self, biod: BioD, domain_id: int | None, vocab_size: int) -> None:
        self.biod, self.domain_id, self.vocab_size, self.n_items = biod, domain_id, vocab_size, biod.n_items

    def _build(self) -> TokenBatch:
        batch = self.biod.exposure(0)
        if self.domain_id is None:
            return batch
        tokens = torch.cat([batch.tokens[:, :1], torch.full((self.n_items, 1), self.domain_id), batch.tokens[:, 1:]],
                           dim=1)
        # the domain token is a prompt (it says where the record comes from), not content: no target
        return TokenBatch(tokens, loss_mask(tokens, 2), {name: span + 1 for name, span in batch.spans.items()})

    def information_bits(self) -> float:
        return self.biod.information_bits()

    def bits_learned(self, entity_loss) -> BitsLearned:
        return self.biod.bits_learned(entity_loss)


class JunkMixture:
    """A bioD dataset mixed with junk at ``ratio`` junk tokens per useful token (module docstring).

    ``n_items``: useful plus junk records per exposure; ``junk_records``: junk records per exposure,
    chosen so that junk tokens / useful tokens is as close to ``ratio`` as whole records allow
    (:attr:`token_ratio` is the ratio actually rendered). Deterministic for ``seed`` and the exposure.
    """

    kind = "biod_junk"

    def __init__(self, useful: BioD, junk: str = "fresh", ratio: float = 7.0, domain_token: bool = False,
                 repetitive_size: int = 16, seed: int = 0) -> None:
        self.junk = check_choice("junk", junk, JUNK_KINDS)
        self.ratio = 0.0 if junk == "none" else check_positive("ratio", ratio)
        self.repetitive_size = check_int("repetitive_size", repetitive_size, 1)
        self.seed = check_int("seed", seed, 0)
        self.biod, self.domain_token = useful, bool(domain_token)
        self.vocab_size = useful.vocab_size + (1 if domain_token else 0)
        domain_id = useful.vocab_size if domain_token else None
        self._useful = UsefulRecords(useful, domain_id, self.vocab_size)
        useful_tokens = useful.n_items * (useful.record_length + (1 if domain_token else 0))
        self.junk_records = round(self.ratio * useful_tokens / useful.record_length)
        self.n_items = useful.n_items + self.junk_records
        free = np.setdiff1d(np.arange(useful.N0), self._flat_names(useful.names))
        if self.junk_records and len(free) == 0:
            raise ValueError(f"junk={junk!r} needs names the useful data does not use; allowed: N < N0 = {useful.N0}")
        self._free_names = free
        self._repetitive = self._junk_batch(0, self.repetitive_size) if junk == "repetitive" else None

    def __repr__(self) -> str:
        return (f"JunkMixture({self.biod!r}, junk={self.junk!r}, ratio={self.ratio:g}, "
                f"domain_token={self.domain_token}, junk_records={self.junk_records})")

    def _flat_names(self, names: np.ndarray) -> np.ndarray:
        flat = np.zeros(len(names), dtype=np.int64)
        for pos, pool in enumerate(self.biod.name_pools):
            flat = flat * pool + names[:, pos]
        return flat

    def _junk_batch(self, stream: int, n: int) -> torch.Tensor:
        """``n`` junk records (token ids, bioD layout): names from the unused ones, values uniform."""
        b = self.biod
        picks = rng_for(self.seed, _STREAM_JUNK_NAMES, stream).choice(len(self._free_names), size=n,
                                                                       replace=n > len(self._free_names))
        flat = self._free_names[picks]
        names = np.empty((n, len(b.name_pools)), dtype=np.int64)
        for pos in range(len(b.name_pools) - 1, -1, -1):
            flat, names[:, pos] = np.divmod(flat, b.name_pools[pos])
        chunks = rng_for(self.seed, _STREAM_JUNK_VALUES, stream).integers(0, b.D, (n, b.K, b.C), dtype=np.int64)
        return b.render(names, chunks)

    def useful(self) -> UsefulRecords:
        """The useful records as trained on: the dataset the bit meter reads."""
        return self._useful

    @property
    def token_ratio(self) -> float:
        """Junk tokens per useful token in one exposure (non-PAD tokens, as rendered)."""
        useful = int((self._useful.exposure(0).tokens != PAD_ID).sum())
        junk = self._junk_tokens(0)
        return float((junk != PAD_ID).sum()) / useful if junk is not None else 0.0

    def _junk_tokens(self, index: int) -> torch.Tensor | None:
        if not self.junk_records:
            return None
        if self._repetitive is not None:
            reps = math.ceil(self.junk_records / self.repetitive_size)
            return self._repetitive.repeat(reps, 1)[: self.junk_records]
        return self._junk_batch(1 + index, self.junk_records)

    def exposure(self, index: int) -> TokenBatch:
        """Exposure ``index``: every useful record once (first), then this exposure's junk records."""
        useful = self._useful.exposure(index)
        junk = self._junk_tokens(index)
        if junk is None:
            return TokenBatch(useful.tokens, useful.loss_mask, {})
        return concat_batches([TokenBatch(useful.tokens, useful.loss_mask, {}),
                               TokenBatch(junk, loss_mask(junk), {})])

    def used_tokens(self) -> torch.Tensor:
        """Every token id that occurs: the useful records', the junk's and the domain token."""
        ids = [self._useful.used_tokens()]
        junk = self._junk_tokens(0)
        if junk is not None:
            ids.append(torch.unique(junk))
        return torch.unique(torch.cat(ids))

    def information_bits(self) -> float:
        """Of the useful data (the junk holds nothing a model can keep)."""
        return self.biod.information_bits()

    def bits_learned(self, entity_loss) -> BitsLearned:
        """Of the useful data; pass losses measured on :meth:`useful`."""
        return self.biod.bits_learned(entity_loss)
