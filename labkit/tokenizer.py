"""Word-level tokenizers over known vocabularies: text for bioS, symbol blocks for bioD and random data.

Why word level: every dataset of the lab is synthetic, so its whole vocabulary is known in advance. One
token per word (punctuation and the possessive ``'s`` are tokens of their own) keeps a biography short,
makes an entity such as "Princeton, NJ" or "March 3, 1950" a clean run of tokens whose loss we can sum,
and gives deterministic ids: ``PAD = 0, BOS = 1, EOS = 2``, then the words in sorted order. Part 3.3 counts
parameters without the embedding rows of tokens that never occur; the datasets report those ids through
``used_tokens()``, the tokenizers supply the table.

bioD and random sequences have no text: their tokens are symbols in contiguous blocks (name pools, keys,
values), built by :class:`BlockVocab`, which shares the id table and ``decode`` with :class:`Tokenizer`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>")

_WORD_RE = re.compile(r"'s\b|\w+|[^\w\s]")
_NO_SPACE_BEFORE = frozenset({",", ".", "?", "!", ":", ";", "'s", "-"})
_NO_SPACE_AFTER = frozenset({"-"})  # hyphenated words ("Winston-Salem") come back joined


def split_words(text: str) -> list[str]:
    """Split text into word tokens: runs of letters/digits, single punctuation marks, and ``'s``."""
    return _WORD_RE.findall(text)


class Vocabulary:
    """An id <-> string table whose first entries are the special tokens (shared by both tokenizers)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with the special tokens {SPECIAL_TOKENS}")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self._ids) != len(self.tokens):
            raise ValueError("vocabulary entries must be unique")

    pad_id, bos_id, eos_id = PAD_ID, BOS_ID, EOS_ID

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def token(self, token_id: int) -> str:
        """The string of one token id."""
        return self.tokens[token_id]

    def id_of(self, token: str) -> int:
        """The id of one token; ``ValueError`` naming the token if it is not in the vocabulary."""
        try:
            return self._ids[token]
        except KeyError:
            raise ValueError(f"token {token!r} is not in the vocabulary ({self.vocab_size} tokens)") from None

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Readable text of a token sequence: words joined by spaces, no space before punctuation."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out: list[str] = []
        for i in ids:
            if skip_special and i < len(SPECIAL_TOKENS):
                continue
            tok = self.tokens[i]
            if out and tok not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
                out.append(" ")
            out.append(tok)
        return "".join(out)


class Tokenizer(Vocabulary):
    """Word-level tokenizer over a fixed word list (bioS text).

    Ids are deterministic: the special tokens, then the distinct words in sorted (code point) order, so
    the same word list gives the same ids on every machine and in every process.
    """

    def __init__(self, words: Iterable[str]) -> None:
        specials = set(SPECIAL_TOKENS)
        super().__init__(SPECIAL_TOKENS + tuple(sorted(set(words) - specials)))

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Tokenizer:
        """A tokenizer whose vocabulary is every word occurring in ``texts``."""
        words: set[str] = set()
        for text in texts:
            words.update(split_words(text))
        return cls(words)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of ``text`` (optionally wrapped in BOS/EOS); unknown words raise ``ValueError``."""
        ids = [self.id_of(w) for w in split_words(text)]
        return ([BOS_ID] if bos else []) + ids + ([EOS_ID] if eos else [])

    def encode_spans(
        self, pieces: Sequence[tuple[str, str | None]], bos: bool = True, eos: bool = True
    ) -> tuple[list[int], dict[str, tuple[int, int]]]:
        """Encode text given as labelled pieces and return ``(ids, spans)``.

        ``pieces`` is a sequence of ``(text, label)``; a labelled piece's tokens become the span
        ``label -> (start, end)`` (end exclusive, positions in the returned ids, BOS included). Pieces
        are tokenized separately, so put piece boundaries at word boundaries (spaces or punctuation),
        e.g. ``[("Anya Briar Forger", "name"), (" was born in ", None), ("Princeton, NJ", "city"), (".", None)]``.
        """
        ids: list[int] = [BOS_ID] if bos else []
        spans: dict[str, tuple[int, int]] = {}
        for text, label in pieces:
            start = len(ids)
            ids.extend(self.encode(text))
            if label is not None:
                if label in spans:
                    raise ValueError(f"span label {label!r} used twice")
                spans[label] = (start, len(ids))
        if eos:
            ids.append(EOS_ID)
        return ids, spans


class BlockVocab(Vocabulary):
    """Symbol vocabulary in contiguous blocks, for datasets without text (bioD, random sequences).

    ``BlockVocab([("n0_", 100), ("n1_", 100), ("k", 8), ("t", 256)])`` gives ids 3..102 to ``n0_0 ..
    n0_99``, then ``n1_*``, keys ``k0..k7`` and values ``t0..t255``: a block is a range of ids, so data
    generators turn integer codes into token ids with one addition (vectorized).
    """

    def __init__(self, blocks: Sequence[tuple[str, int]]) -> None:
        tokens = list(SPECIAL_TOKENS)
        self._offsets: dict[str, int] = {}
        for prefix, size in blocks:
            if prefix in self._offsets:
                raise ValueError(f"block prefix {prefix!r} used twice")
            self._offsets[prefix] = len(tokens)
            tokens.extend(f"{prefix}{i}" for i in range(size))
        super().__init__(tokens)

    def offset(self, prefix: str) -> int:
        """The id of the first token of block ``prefix``."""
        return self._offsets[prefix]
