"""Greedy generation and exact-match answers: how the lab asks a model a question.

Part 3.1 (allenzhu2023part31) scores knowledge extraction by generation: the model reads "What is the
birth city of Anya Briar Forger? Answer:" and its greedy continuation must be the true value. Two tools:

- :func:`greedy`: batched greedy decoding of prompts until a stop token, for showing answers;
- :func:`answer_correct`: for every record of a batch, whether greedy decoding from the text before its
  ``answer`` span reproduces the answer *and* the token after it (the full stop: "Princeton" is wrong
  when the answer is "Princeton, NJ"). It runs teacher-forced, one forward pass per minibatch: greedy
  decoding emits a sequence exactly when each of its tokens is the most likely one after the ones before,
  so comparing argmaxes at the answer's positions is the same test as generating, without the loop
  (the tests check the two agree).

No KV cache: the lab's models are tiny, each new token is one forward pass over the whole prefix, and the
model keeps one code path.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from labkit.checks import check_int, invalid
from labkit.data.base import TokenBatch
from labkit.runtime import resolve_device
from labkit.tokenizer import EOS_ID

__all__ = ["answer_correct", "greedy", "qa_accuracy"]


@contextmanager
def _evaluating(model: nn.Module, device: str | torch.device) -> Iterator[torch.device]:
    """The model on ``device`` in eval mode, without gradients; its train/eval mode restored afterwards."""
    device = resolve_device(device)
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            yield device
    finally:
        model.train(was_training)


def greedy(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
           stop: Collection[int] = (EOS_ID,), device: str | torch.device = "auto") -> list[list[int]]:
    """The greedy continuation of each prompt (token ids), up to and including the first ``stop`` token
    or ``max_new_tokens`` tokens. Prompts of equal length decode together (a causal model needs no
    padding then, so a prompt's continuation does not depend on the others); the model's ``max_len``
    caps prompt plus continuation."""
    check_int("max_new_tokens", max_new_tokens, 1)
    prompts = [list(map(int, p)) for p in prompts]
    if any(not p for p in prompts):
        raise invalid("prompts", "an empty prompt", "prompts of one or more token ids (BOS first)")
    limit = getattr(getattr(model, "cfg", None), "max_len", None)
    out: list[list[int]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    with _evaluating(model, device) as device:
        stops = torch.tensor(sorted(set(stop)), device=device, dtype=torch.int64)
        for length, rows in by_length.items():
            steps = max_new_tokens if limit is None else min(max_new_tokens, limit - length)
            if steps < 1:
                raise invalid("prompts", f"a prompt of {length} tokens", f"prompts shorter than max_len={limit}")
            seq = torch.tensor([prompts[i] for i in rows], device=device)
            active = torch.ones(len(rows), dtype=torch.bool, device=device)
            for _ in range(steps):
                nxt = model(seq)[:, -1].argmax(-1)
                for k in torch.nonzero(active).flatten().tolist():
                    out[rows[k]].append(int(nxt[k]))
                active &= ~torch.isin(nxt, stops)
                if not bool(active.any()):
                    break
                seq = torch.cat([seq, nxt[:, None]], dim=1)
    return out


def answer_correct(model: nn.Module, batch: TokenBatch, span: str = "answer", batch_size: int = 512,
                   device: str | torch.device = "auto") -> torch.Tensor:
    """(n,) bool: whether greedy decoding from each record's tokens before ``span`` reproduces the span's
    tokens and the one token after it (module docstring). Records need a token after the span."""
    if span not in batch.spans:
        raise invalid("span", span, ", ".join(batch.spans) or "a span of the batch (it has none)")
    check_int("batch_size", batch_size, 1)
    start, end = batch.spans[span][:, 0], batch.spans[span][:, 1] + 1  # + the closing token
    if bool((start < 1).any()) or bool((end > batch.tokens.shape[1]).any()):
        raise invalid("span", span, "a span after position 0 with a token after it in every record")
    positions = torch.arange(batch.tokens.shape[1])
    right = []
    with _evaluating(model, device) as device:
        for lo in range(0, batch.tokens.shape[0], batch_size):
            tokens = batch.tokens[lo : lo + batch_size]
            s, e = start[lo : lo + batch_size, None], end[lo : lo + batch_size, None]
            width = int(e.max())
            predicted = model(tokens[:, : width - 1].to(device)).argmax(-1).cpu()  # predicted[t] is for t + 1
            inside = (positions[None, 1:width] >= s) & (positions[None, 1:width] < e)
            hit = (predicted == tokens[:, 1:width]) | ~inside
            right.append(hit.all(dim=1))
    return torch.cat(right)


def qa_accuracy(model: nn.Module, qa, device: str | torch.device = "auto") -> dict[str, float]:
    """Exact-match accuracy per attribute of a ``labkit.data.extraction.QAData`` (greedy answers, the
    full stop included), in the order of ``qa.attributes``."""
    correct = answer_correct(model, qa.exposure(0), "answer", device=device).numpy()
    return {a: float(correct[qa.rows(a)].mean()) for a in qa.attributes}
