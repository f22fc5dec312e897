"""The data of Part 3.1's knowledge-extraction protocols (allenzhu2023part31): QA pairs, the split of
people into a QA-training and a QA-test half, mixed training, and the celebrity population.

Part 3.1 asks whether a model that has memorized biographies can *answer questions* about them. Every
protocol trains on the biographies of all N people and asks the six questions
(:data:`QA_ATTRIBUTES`, ``labkit.data.bios.QA_TEMPLATES``) about the people of the QA-test half, whose
QA pairs it never saw; the QA-training half teaches the question format:

- **pretrain + finetune**: pretrain on the biographies (:class:`~labkit.data.bios.BioS`, single or
  augmented), then finetune on :class:`QAData` of the training half;
- **mixed training**: one training on :class:`MixedData`, the biographies of everyone and the QA
  pairs of the training half together;
- **celebrity**: :class:`CelebrityBioS`, where the training half (the celebrities) has augmented
  biographies and the test half (the minority) one fixed biography each; finetuned on the celebrities'
  QA, tested on the minority's.

QA records carry the loss on the answer only (the value, the full stop and EOS): the question is a
prompt, not knowledge, which is the choice of Part 3.1's QA finetuning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from labkit import info
from labkit.checks import check_fraction, check_int, invalid
from labkit.data import rng_for
from labkit.data.base import StaticDataset, TokenBatch, concat_batches
from labkit.data.bios import KNOWLEDGE_ATTRIBUTES, SENTENCE_ATTRIBUTES, BioS, Pools
from labkit.info import BitsLearned
from labkit.tokenizer import PAD_ID

#: The six questions of Part 3.1, one per biography sentence (the company city is asked although it is a
#: function of the employer: a model may answer one and not the other).
QA_ATTRIBUTES = SENTENCE_ATTRIBUTES
_STREAM_SPLIT = 41


@dataclass(frozen=True)
class PeopleSplit:
    """Person indices of the QA-training half (``train``) and the QA-test half (``test``), sorted and
    disjoint. Every person is in one of them: the test people's biographies are in pretraining, only
    their QA pairs are held out."""

    train: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        if np.intersect1d(self.train, self.test).size:
            raise ValueError("a person is in both halves of the split; allowed: disjoint train and test people")

    @classmethod
    def halves(cls, N: int, seed: int = 0, train_fraction: float = 0.5) -> PeopleSplit:
        """A random ``train_fraction`` of ``N`` people for QA training, the rest for testing
        (deterministic in ``seed``; both halves non-empty)."""
        N = check_int("N", N, 2)
        train_fraction = check_fraction("train_fraction", train_fraction, closed=False)
        n_train = round(train_fraction * N)
        if not 1 <= n_train < N:
            raise invalid("train_fraction", train_fraction, f"a fraction leaving both halves non-empty for N={N}")
        order = rng_for(seed, _STREAM_SPLIT).permutation(N)
        return cls(np.sort(order[:n_train]), np.sort(order[n_train:]))

    @property
    def N(self) -> int:
        return len(self.train) + len(self.test)


class QAData(StaticDataset):
    """The QA pairs of ``people`` for ``attributes`` as a dataset: one record per (attribute, person),
    attribute-major ("What is the birth city of X? Answer: Princeton, NJ."), loss on the answer only.

    Spans: ``"name"`` (the name in the question) and ``"answer"`` (the value in the answer); the row's
    person and attribute are ``person_of_row`` and ``attribute_of_row``.
    """

    kind = "bios_qa"

    def __init__(self, bios: BioS, people: Sequence[int] | np.ndarray,
                 attributes: Sequence[str] = QA_ATTRIBUTES) -> None:
        self.bios = bios
        self.people = np.asarray(people, dtype=np.int64).reshape(-1)
        if not len(self.people):
            raise invalid("people", list(self.people), "one or more person indices")
        self.attributes = tuple(attributes)
        for a in self.attributes:
            if a not in QA_ATTRIBUTES:
                raise invalid("attributes", a, ", ".join(QA_ATTRIBUTES))
        if not self.attributes or len(set(self.attributes)) != len(self.attributes):
            raise invalid("attributes", self.attributes, "distinct names among " + ", ".join(QA_ATTRIBUTES))
        self.vocab_size = bios.vocab_size
        self.n_items = len(self.people) * len(self.attributes)
        self.person_of_row = np.tile(self.people, len(self.attributes))
        self.attribute_of_row = np.repeat(np.arange(len(self.attributes)), len(self.people))

    def __repr__(self) -> str:
        return f"QAData({self.bios!r}, {len(self.people)} people, attributes={self.attributes})"

    def _build(self) -> TokenBatch:
        parts = []
        for a in self.attributes:
            batch = self.bios.qa(a, self.people)  # raises on an index outside the population
            parts.append(TokenBatch(batch.tokens, batch.loss_mask,
                                    {"name": batch.spans["name"], "answer": batch.spans[f"value/{a}"]}))
        return concat_batches(parts)

    def rows(self, attribute: str) -> np.ndarray:
        """The rows holding ``attribute``'s question (in ``people`` order)."""
        if attribute not in self.attributes:
            raise invalid("attribute", attribute, ", ".join(self.attributes))
        return np.flatnonzero(self.attribute_of_row == self.attributes.index(attribute))

    def _log2_sizes(self) -> np.ndarray:
        """Per row, log2 of the number of values its attribute can take; 0 for the company city, which
        is not knowledge of its own (a function of the employer)."""
        sizes = self.bios.pools.attribute_sizes()
        per_attribute = [math.log2(sizes[a]) if a in KNOWLEDGE_ATTRIBUTES else 0.0 for a in self.attributes]
        return np.asarray(per_attribute)[self.attribute_of_row]

    def information_bits(self) -> float:
        """The answers' information: Σ over rows of log2 |values of the row's attribute| (company city
        rows excluded), the attributes being uniform and independent."""
        return float(self._log2_sizes().sum())

    def bits_learned(self, entity_loss) -> BitsLearned:
        """Bits of the answers the model gives (Def 4.3's value term over QA rows): Σ_rows log2 |A_row| −
        Σ_rows answer loss / ln 2, company city rows excluded. ``entity_loss["answer"]``: per row, in nats."""
        loss = torch.as_tensor(entity_loss["answer"], dtype=torch.float64).numpy()
        if loss.shape != (self.n_items,):
            raise invalid("entity_loss['answer']", tuple(loss.shape), f"({self.n_items},), one loss per row")
        sizes = self._log2_sizes()
        return info.values_bits(float(sizes.sum()), float(loss[sizes > 0].sum()))


class MixedData:
    """Part 3.1's mixed training: the biographies of everyone and the QA pairs of the training half,
    shuffled together. One exposure is every biography once (``bios.exposure(e)``: an augmented
    population cycles its biographies as in pretraining) and every QA pair once; ``qa_token_share`` is
    the QA pairs' share of the training tokens. Information and bits learned are the biographies' (the
    QA pairs repeat their knowledge)."""

    kind = "bios+qa"

    def __init__(self, bios: BioS, qa: QAData) -> None:
        if qa.bios is not bios:
            raise ValueError("qa must be built on the same BioS population as bios")
        self.bios, self.qa = bios, qa
        self.vocab_size = bios.vocab_size
        self.n_items = bios.n_items + qa.n_items
        self._cache: tuple[TokenBatch, TokenBatch] | None = None

    def __repr__(self) -> str:
        return f"MixedData({self.bios!r}, {self.qa!r})"

    def exposure(self, index: int) -> TokenBatch:
        """Exposure ``index``: the biographies first (rows 0..N-1), then the QA pairs (the trainer
        shuffles the rows); the same batch object while the biographies repeat."""
        bios = self.bios.exposure(index)
        if self._cache is None or self._cache[0] is not bios:
            self._cache = (bios, concat_batches([bios, self.qa.exposure(0)]))
        return self._cache[1]

    @property
    def qa_token_share(self) -> float:
        """The QA pairs' fraction of the non-pad tokens of exposure 0."""
        qa = int((self.qa.exposure(0).tokens != PAD_ID).sum())
        return qa / (qa + int((self.bios.exposure(0).tokens != PAD_ID).sum()))

    def used_tokens(self) -> torch.Tensor:
        return torch.unique(torch.cat([self.bios.used_tokens(), self.qa.used_tokens()]))

    def information_bits(self) -> float:
        return self.bios.information_bits()

    def bits_learned(self, entity_loss) -> BitsLearned:
        """Of the biographies: pass losses measured on ``self.bios``."""
        return self.bios.bits_learned(entity_loss)


class CelebrityBioS:
    """One bioS population in which the ``celebrities`` have augmented biographies (``multi`` fixed
    renderings, sentence order permuted) and everyone else (the minority) one fixed biography, as in
    Part 3.1's celebrity experiment. Row i of every exposure is person i; ``augmented`` and ``plain`` are
    the two renderings of the same people (same seed, same pools). Information and bits learned are
    those of the population."""

    kind = "bios"

    def __init__(self, N: int, celebrities: Sequence[int] | np.ndarray, seed: int = 0, multi: int = 5,
                 permute: bool = True, pools: Pools | None = None) -> None:
        self.plain = BioS(N, seed, mode="single", pools=pools)
        self.augmented = BioS(N, seed, mode="single", multi=multi, permute=permute, pools=self.plain.pools)
        self.celebrity = np.zeros(self.plain.n_items, dtype=bool)
        index = np.asarray(celebrities, dtype=np.int64).reshape(-1)
        if not len(index) or index.min() < 0 or index.max() >= N:
            raise invalid("celebrities", index[:5].tolist(), f"one or more person indices in [0, {N})")
        self.celebrity[index] = True
        self.people, self.n_items, self.seed = self.plain.people, self.plain.n_items, self.plain.seed
        self.vocab_size, self.tokenizer, self.pools = self.plain.vocab_size, self.plain.tokenizer, self.plain.pools
        self.multi, self.permute = multi, permute
        self._cache: tuple[int, TokenBatch] | None = None

    def __repr__(self) -> str:
        return (f"CelebrityBioS(N={self.n_items}, celebrities={int(self.celebrity.sum())}, seed={self.seed}, "
                f"multi={self.multi}, permute={self.permute})")

    def exposure(self, index: int) -> TokenBatch:
        """Celebrities' rows from the augmented rendering ``index``, the minority's from their one biography."""
        variant = check_int("index", index, 0) % self.multi
        if self._cache is None or self._cache[0] != variant:
            both = concat_batches([self.augmented.exposure(index), self.plain.exposure(0)])
            rows = torch.from_numpy(np.where(self.celebrity, 0, self.n_items) + np.arange(self.n_items))
            self._cache = (variant, both.select(rows))
        return self._cache[1]

    def qa(self, attribute: str, people: Sequence[int] | np.ndarray | None = None) -> TokenBatch:
        return self.plain.qa(attribute, people)

    def used_tokens(self) -> torch.Tensor:
        return torch.unique(torch.cat([self.plain.used_tokens(), self.augmented.used_tokens()]))

    def information_bits(self) -> float:
        return self.plain.information_bits()

    def bits_learned(self, entity_loss) -> BitsLearned:
        return self.plain.bits_learned(entity_loss)
