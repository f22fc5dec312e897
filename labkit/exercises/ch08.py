"""Exercises of chapter 8 (knowledge extraction): exact-match answers from one forward pass, the bits
the QA-test half asks for, and a celebrity population's rows.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against the lab's own code (``labkit.generate``, ``labkit.data.extraction``) on hidden cases.
"""

from __future__ import annotations

import math
import random

from labkit.exercises.check import Exercise

_NAME_POOLS = (20, 20, 20)


def answers_correct(predicted: list[list[int]], tokens: list[list[int]],
                    answers: list[tuple[int, int]]) -> list[bool]:
    """Per record: does greedy decoding from the tokens before its answer [start, end)
    reproduce the answer and the one token after it? predicted[i][t] is the model's
    most likely token after tokens[i][: t + 1] (argmax of the logits at t)."""
    out = []
    for pred, toks, (start, end) in zip(predicted, tokens, answers, strict=True):
        out.append(all(pred[t - 1] == toks[t] for t in range(start, end + 1)))
    return out


def qa_test_bits(n_test: int, attribute_sizes: dict[str, int]) -> float:
    """Bits of knowledge the six questions ask about n_test people: each knowledge
    attribute's log2 |values| per person; the company city is no knowledge of its
    own."""
    return n_test * sum(math.log2(size) for name, size in attribute_sizes.items()
                        if name != "company_city")


def celebrity_rows(augmented: list[list[int]], plain: list[list[int]],
                   celebrity: list[bool], pad: int = 0) -> list[list[int]]:
    """Row i is person i: from the augmented rendering for a celebrity, else from the
    plain one; every row padded with `pad` to the longest row of the two renderings."""
    width = max(len(row) for row in augmented + plain)
    rows = [a if c else p
            for a, p, c in zip(augmented, plain, celebrity, strict=True)]
    return [row + [pad] * (width - len(row)) for row in rows]


# --------------------------------------------------------------------------------------------------
# References: the lab's own code on the case's data
# --------------------------------------------------------------------------------------------------


def _answers_correct(predicted: list[list[int]], tokens: list[list[int]], answers: list[tuple[int, int]]) -> list[bool]:
    import torch

    from labkit.data.base import TokenBatch
    from labkit.generate import answer_correct

    class Fixed(torch.nn.Module):  # a "model" whose argmax at position t of record i is predicted[i][t]
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # called once, on all records in order
            return torch.nn.functional.one_hot(torch.tensor(predicted)[:, : x.shape[1]], 64).float()

    t = torch.tensor(tokens)
    batch = TokenBatch(t, t != 0, {"answer": torch.tensor(answers)})
    return answer_correct(Fixed(), batch, device="cpu").tolist()


def _answers_cases(rng: random.Random) -> list[dict]:
    """Records with a perfect prediction, or one wrong token: in the answer, at the full stop after it,
    or outside both (which must not matter)."""
    cases = []
    for _ in range(6):
        tokens, predicted, answers = [], [], []
        for _ in range(rng.randint(2, 6)):
            width = rng.randint(7, 10)
            toks = [1, *(rng.randint(3, 63) for _ in range(width - 2)), 2]
            start = rng.randint(2, width - 4)
            end = rng.randint(start + 1, width - 2)
            pred = toks[1:] + [2]  # predicted[t] is the token at t + 1: a perfect model ...
            where = rng.choice(["none", "answer", "stop", "before", "after"])  # ... or one wrong token
            j = {"none": None, "answer": rng.randrange(start - 1, end - 1), "stop": end - 1,
                 "before": rng.randrange(0, start - 1), "after": rng.randrange(end, width)}[where]
            if j is not None:
                pred[j] = 3 + (pred[j] - 2) % 60
            tokens.append(toks)
            predicted.append(pred)
            answers.append((start, end))
        width = max(map(len, tokens))
        tokens = [t + [0] * (width - len(t)) for t in tokens]
        predicted = [p + [0] * (width - len(p)) for p in predicted]
        cases.append(dict(predicted=predicted, tokens=tokens, answers=answers))
    return cases


def _qa_test_bits(n_test: int, attribute_sizes: dict[str, int]) -> float:
    from labkit.data.bios import BioS, Pools
    from labkit.data.extraction import QAData

    first, middle, last = _NAME_POOLS
    sizes = dict(attribute_sizes)
    pools = Pools.load(first=first, middle=middle, last=last, cities=sizes["birth_city"],
                       universities=sizes["university"], majors=sizes["major"], employers=sizes["employer"])
    bios = BioS(n_test, mode="single", pools=pools)
    return QAData(bios, range(n_test)).information_bits()


def _bits_cases(rng: random.Random) -> list[dict]:
    from labkit.data.bios import Pools
    from labkit.data.extraction import QA_ATTRIBUTES

    def asked(pools: Pools) -> dict[str, int]:  # the six questions' attributes (gender is not asked)
        sizes = {**pools.attribute_sizes(), "company_city": len(pools.company_cities)}
        return {a: sizes[a] for a in QA_ATTRIBUTES}

    cases = [dict(n_test=200, attribute_sizes=asked(Pools.load()))]
    for _ in range(5):
        pools = Pools.load(cities=rng.randint(2, 200), universities=rng.randint(2, 300), majors=rng.randint(2, 100),
                           employers=rng.randint(2, 263))
        cases.append(dict(n_test=rng.randint(1, 400), attribute_sizes=asked(pools)))
    return cases


def _celebrity_rows(augmented: list[list[int]], plain: list[list[int]], celebrity: list[bool],
                    pad: int = 0) -> list[list[int]]:
    import numpy as np
    import torch

    from labkit.data.base import TokenBatch
    from labkit.data.extraction import CelebrityBioS

    def batch(rows: list[list[int]]) -> TokenBatch:
        width = max(map(len, rows))
        t = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        return TokenBatch(t, t != pad, {})

    class Rendering:  # stands in for a BioS rendering of the case's rows
        def __init__(self, rows: list[list[int]]) -> None:
            self.batch = batch(rows)

        def exposure(self, index: int) -> TokenBatch:
            return self.batch

    population = CelebrityBioS.__new__(CelebrityBioS)  # the lab's row assembly on the case's renderings
    population.augmented, population.plain = Rendering(augmented), Rendering(plain)
    population.celebrity, population.n_items = np.asarray(celebrity, dtype=bool), len(celebrity)
    population.multi, population._cache = 1, None
    return population.exposure(0).tokens.tolist()


def _celebrity_cases(rng: random.Random) -> list[dict]:
    cases = [dict(augmented=[[1, 5, 6, 2], [1, 7, 2]], plain=[[1, 8, 2], [1, 9, 9, 9, 9, 2]],
                  celebrity=[True, False])]
    for _ in range(5):
        n = rng.randint(1, 6)
        augmented, plain = ([[1, *(rng.randint(3, 50) for _ in range(rng.randint(1, 7))), 2] for _ in range(n)]
                            for _ in range(2))
        cases.append(dict(augmented=augmented, plain=plain, celebrity=[rng.random() < 0.5 for _ in range(n)]))
    return cases


ANSWERS_CORRECT = Exercise(
    chapter=8, id="answers-correct", title="Exact match without generating", difficulty=2, importance=5,
    statement=r"""
Greedy decoding emits a sequence exactly when each of its tokens is the model's most likely next token
after the ones before it. So whether a model answers a question right can be read off **one** forward
pass over the question *and* the true answer: at every position of the answer (and of the full stop
after it) the argmax of the logits one position earlier must be the true token. Given `predicted[i][t]`
(the argmax of record i's logits at position t), the records' `tokens` and each answer's span
`[start, end)`, write `answers_correct(predicted, tokens, answers)`: one bool per record, True when the
answer and the token at `end` (the full stop) are all predicted. The checker runs
`labkit.generate.answer_correct` on the same predictions.
""",
    solution=answers_correct, reference=_answers_correct, cases=_answers_cases)

QA_TEST_BITS = Exercise(
    chapter=8, id="qa-test-bits", title="How many bits does the QA-test half ask for?", difficulty=1,
    importance=3,
    statement=r"""
The held-out questions ask for knowledge the model saw only in biographies. How much? Every attribute
is uniform and independent, so a person's answers hold $\sum_a \log_2 |A_a|$ bits (chapter 1), where the
company city adds nothing: it is a function of the employer. Write `qa_test_bits(n_test,
attribute_sizes)` for $n_{\text{test}}$ people and a dict of attribute name → number of values
(`"company_city"` included, and to be left out). The checker asks `labkit.data.extraction.QAData` for
the information of real QA data with those pools. Predict first: at this chapter's scale (200 test
people, the paper's pools), is it more or less than the model's parameter count?
""",
    solution=qa_test_bits, reference=_qa_test_bits, cases=_bits_cases, imports=("import math",))

CELEBRITY_ROWS = Exercise(
    chapter=8, id="celebrity-rows", title="Assemble a celebrity population", difficulty=2, importance=2,
    statement=r"""
In the celebrity protocol one population has two renderings of its biographies: the celebrities' come
from the augmented one (five biographies, sentences permuted), everyone else's from the plain one. Row
$i$ of an exposure must stay person $i$ (the QA split and the probes index people by row). Given both
renderings as token lists (row $i$ = person $i$) and a celebrity flag per person, write
`celebrity_rows(augmented, plain, celebrity, pad=0)`, padding every row with `pad` to the longest row
of the two renderings (that is what `labkit.data.base.concat_batches` does). The checker runs
`labkit.data.extraction.CelebrityBioS` on the same rows.
""",
    solution=celebrity_rows, reference=_celebrity_rows, cases=_celebrity_cases)

EXERCISES = [ANSWERS_CORRECT, QA_TEST_BITS, CELEBRITY_ROWS]

check_answers_correct = ANSWERS_CORRECT.checker()
check_qa_test_bits = QA_TEST_BITS.checker()
check_celebrity_rows = CELEBRITY_ROWS.checker()
