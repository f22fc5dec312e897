"""The one shape every dataset takes on its way into a model: token ids, a loss mask and entity spans.

Why: the trainer, the bit meter (per-entity losses), MLS/MAC and the probes all work on any dataset
(bioS, bioD, random sequences, ...) without knowing which it is. A dataset renders one *exposure*
(every item seen once) as a ``TokenBatch``; static datasets return the same batch each time, bioS in
"fresh" mode re-renders templates and sentence order per exposure (Part 3.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from labkit.tokenizer import PAD_ID

if TYPE_CHECKING:
    from labkit.info import BitsLearned


@dataclass(frozen=True)
class TokenBatch:
    """One exposure of a dataset, padded to a common length.

    tokens:    (n_items, seq_len) int64 token ids; item i's record, padded at the end with PAD.
    loss_mask: (n_items, seq_len) bool; True where token t is a training target (t >= 1, not PAD).
               The loss at position t is -log p(tokens[t] | tokens[:t]), from the logits at t - 1.
    spans:     entity name -> (n_items, 2) int64 [start, end) token positions of that entity's tokens
               (same indexing as ``tokens``; start >= 1). Names: "name", "value/<attr>",
               "value/<attr>/chunk0" (bioD first chunk), "value" (random sequences).
    """

    tokens: torch.Tensor
    loss_mask: torch.Tensor
    spans: dict[str, torch.Tensor]

    def __post_init__(self) -> None:
        if self.tokens.shape != self.loss_mask.shape:
            raise ValueError(f"tokens {tuple(self.tokens.shape)} and loss_mask {tuple(self.loss_mask.shape)} differ")
        for name, span in self.spans.items():
            if span.shape != (self.tokens.shape[0], 2):
                raise ValueError(f"span {name!r} has shape {tuple(span.shape)}, expected ({self.tokens.shape[0]}, 2)")

    def select(self, rows: torch.Tensor | Sequence[int]) -> TokenBatch:
        """The records ``rows`` (item indices, in that order), with their masks and spans."""
        index = torch.as_tensor(rows, dtype=torch.int64)
        return TokenBatch(self.tokens[index], self.loss_mask[index], {k: v[index] for k, v in self.spans.items()})


@runtime_checkable
class TokenDataset(Protocol):
    """What the trainer and the bit meter need from a dataset."""

    kind: str  # "bios", "biod", "random", ...
    n_items: int  # people (bioS/bioD) or library items (random)
    vocab_size: int

    def exposure(self, index: int) -> TokenBatch:
        """Render exposure ``index`` (0-based). Deterministic for the dataset's seed and ``index``."""
        ...

    def used_tokens(self) -> torch.Tensor:
        """Sorted int64 ids of every token that can occur (for parameter counts, Part 3.3)."""
        ...

    def information_bits(self) -> float:
        """Information content of the dataset in bits (labkit.info)."""
        ...

    def bits_learned(self, entity_loss: dict[str, torch.Tensor]) -> BitsLearned:
        """Bits of this dataset a model holds, from per-item entity losses in nats (labkit.info)."""
        ...


class StaticDataset:
    """Base of datasets whose every exposure is the same batch (bioD, random sequences).

    Subclasses implement ``_build()``; the batch is built once, on first use, and shared by every
    exposure, so ``used_tokens`` and the trainer never pay for it twice.
    """

    _batch: TokenBatch | None = None

    def _build(self) -> TokenBatch:
        raise NotImplementedError

    def exposure(self, index: int) -> TokenBatch:
        """All items in index order; the same batch for every exposure ``index >= 0``."""
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"index={index!r} is not valid; allowed: an integer >= 0")
        if self._batch is None:
            self._batch = self._build()
        return self._batch

    def used_tokens(self) -> torch.Tensor:
        """Sorted ids of the tokens that occur in the records."""
        return torch.unique(self.exposure(0).tokens)


def concat_batches(batches: list[TokenBatch] | tuple[TokenBatch, ...]) -> TokenBatch:
    """The rows of several batches, in order, padded to the longest (PAD, no loss).

    Spans: those every batch has (a span missing from one batch would have no value for its rows), with
    each batch's positions unchanged, since padding only adds columns at the end.
    """
    if not batches:
        raise ValueError("batches=[] is not valid; allowed: one or more TokenBatch")
    width = max(b.tokens.shape[1] for b in batches)

    def padded(t: torch.Tensor, value: int | bool) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    shared = [name for name in batches[0].spans if all(name in b.spans for b in batches)]
    return TokenBatch(torch.cat([padded(b.tokens, PAD_ID) for b in batches]),
                      torch.cat([padded(b.loss_mask, False) for b in batches]),
                      {name: torch.cat([b.spans[name] for b in batches]) for name in shared})
