"""Greedy generation and exact-match answers (labkit.generate)."""

from __future__ import annotations

import numpy as np
import torch
from conftest import raises_invalid

from labkit.data.bios import BioS, Pools
from labkit.data.extraction import QAData
from labkit.generate import answer_correct, greedy, qa_accuracy
from labkit.model import Transformer, tiny
from labkit.tokenizer import EOS_ID
from labkit.train import train

POOLS = Pools.load(first=10, middle=10, last=10)


def _qa(n: int = 12) -> tuple[BioS, QAData]:
    data = BioS(n, seed=0, mode="single", pools=POOLS)
    return data, QAData(data, range(n))


def _trained(data, qa, exposures: int = 60) -> Transformer:
    model = Transformer(tiny(data.vocab_size, 80, d_model=32), seed=0)
    train(model, qa, exposures=exposures, lr=1e-2, batch_size=16, progress=False)
    return model


def _by_generation(model, qa) -> np.ndarray:
    """Exact match the slow way: generate from each question and compare the text."""
    batch = qa.exposure(0)
    start, end = batch.spans["answer"][:, 0], batch.spans["answer"][:, 1]
    prompts = [batch.tokens[i, : start[i]].tolist() for i in range(len(start))]
    outs = greedy(model, prompts, max_new_tokens=12)
    want = [batch.tokens[i, start[i] : end[i] + 1].tolist() for i in range(len(start))]
    return np.array([o[: len(w)] == w for o, w in zip(outs, want, strict=True)])


def test_teacher_forced_exact_match_equals_greedy_generation():
    data, qa = _qa()
    for model in (Transformer(tiny(data.vocab_size, 80, d_model=32), seed=1), _trained(data, qa)):
        fast = answer_correct(model, qa.exposure(0)).numpy()
        assert np.array_equal(fast, _by_generation(model, qa))
    assert 0.5 < fast.mean()  # the trained model answers (its own training questions) — not a vacuous match


def test_qa_accuracy_per_attribute():
    data, qa = _qa()
    model = _trained(data, qa)
    acc = qa_accuracy(model, qa)
    assert list(acc) == list(qa.attributes)
    correct = answer_correct(model, qa.exposure(0)).numpy()
    assert acc["major"] == correct[qa.rows("major")].mean()
    assert np.mean(list(acc.values())) == correct.mean()


def test_greedy_stops_and_does_not_depend_on_the_batch():
    data, qa = _qa()
    model = _trained(data, qa, exposures=30)
    batch = qa.exposure(0)
    start = batch.spans["answer"][:, 0]
    prompts = [batch.tokens[i, : start[i]].tolist() for i in range(6)] + [[1, 5]]
    together = greedy(model, prompts, max_new_tokens=10)
    alone = [greedy(model, [p], max_new_tokens=10)[0] for p in prompts]
    assert together == alone
    for out in together:
        assert len(out) <= 10 and (EOS_ID not in out[:-1])
    assert model.training  # mode restored


def test_greedy_and_answer_correct_reject_bad_input():
    data, qa = _qa(4)
    model = Transformer(tiny(data.vocab_size, 20, d_model=16), seed=0)
    with raises_invalid("max_new_tokens"):
        greedy(model, [[1]], max_new_tokens=0)
    with raises_invalid("prompts"):
        greedy(model, [[]], max_new_tokens=2)
    with raises_invalid("prompts"):
        greedy(model, [[1] * 20], max_new_tokens=2)
    with raises_invalid("span"):
        answer_correct(model, qa.exposure(0), span="value")
    batch = qa.exposure(0)
    assert torch.equal(answer_correct(model, batch, batch_size=5), answer_correct(model, batch))
