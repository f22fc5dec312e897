"""What a model learned of a context-free grammar: its samples, its next-token distribution, its parse trees.

Why: Part 1 (allenzhu2023part1) asks three questions of a transformer trained on strings of a deep, ambiguous
grammar (labkit.data.cfg), and this module answers each for any model of the lab:

* Does it generate the language? :func:`generation_accuracy` samples strings from BOS (or completes valid
  prefixes cut from fresh grammar samples, the paper's "completions") and checks them with the grammar's exact
  membership test; :func:`diversity` against :func:`grammar_diversity` tells whether it does so by repeating
  a few memorised strings.
* Does it match the distribution? :func:`kl_to_grammar` is the KL divergence, in bits per position, from the
  grammar's exact next-token distribution (:meth:`Grammar.next_token_table`) to the model's, along strings of
  the grammar, the prediction of EOS included.
* Does it encode the parse? :func:`probe_structure` fits linear probes (labkit.probe) from the residual stream
  to each token's nonterminal ancestor and to whether it ends a subtree, level by level, with Hewitt & Liang's
  control task (hewitt2019control) beside each accuracy.

The baseline that says how hard each question is: :class:`NGramModel` (:func:`fit_ngram`), an add-k smoothed
n-gram model of the training strings. A grammar's strings are locally regular, so a trigram gets many
next-token probabilities roughly right, but it has no notion of where a subtree ends, and its strings fail the
membership test: on the seed-0 ``"small"`` grammar a trigram of 5,000 strings has 0.80 bits of KL per
position (a uniform model 1.56, a bigram 0.98) and almost none of its strings (0.2%) are accepted.

Models. Every function takes either an ``nn.Module`` that maps ``(batch, seq)`` ids to ``(batch, seq, vocab)``
logits in the layout of :class:`labkit.data.cfg.CFGDataset` (terminals ``0 .. T-1``, ``EOS = T``,
``BOS = T + 1``; the lab's ``Transformer`` trained on that dataset), or any object with
``next_token_probs(prefix)`` returning the probabilities of the T terminals and EOS after a terminal prefix (a
mapping ``{id: p}`` or a sequence of T + 1 numbers): :class:`NGramModel`, a test's oracle, a
:class:`~labkit.data.cfg.Grammar` itself. Such an object may also offer ``next_token_table(tokens)`` (all
prefixes of a string at once), which :func:`next_token_tables` then uses. :func:`next_token_distribution` and
:func:`next_token_tables` are that common interface. A transformer's distribution is restricted to the T + 1
ids a string can continue with: its softmax is taken over the logits of ``0 .. T`` only, i.e. renormalised
without BOS and PAD (whose probability is mass a trained model puts nowhere, and an untrained one anywhere).

Everything runs without gradients, in eval mode (restored afterwards), batched, on the model's own device;
randomness comes from generators seeded by ``seed``, so results are deterministic for a seed (on one device).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from labkit.checks import check_choice, check_fraction, check_int, check_positive, invalid
from labkit.data import rng_for
from labkit.data.cfg import CFGDataset, Grammar, Parse
from labkit.probe import control_labels, fit_probe

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["KLResult", "NGramModel", "NextTokenModel", "Samples", "ancestor_labels", "boundary_labels",
           "diversity", "fit_ngram", "generation_accuracy", "grammar_diversity", "kl_to_grammar",
           "next_token_distribution", "next_token_tables", "probe_structure", "sample_strings"]

_STREAM_PREFIXES, _STREAM_ROWS = 51, 52
Strings = Sequence[Sequence[int]]


@runtime_checkable
class NextTokenModel(Protocol):
    """A next-token model without logits: the probabilities of the T terminals and EOS after a terminal prefix."""

    def next_token_probs(self, prefix: Sequence[int]) -> Mapping[int, float] | Sequence[float] | np.ndarray:
        ...


Model = nn.Module | NextTokenModel


# --------------------------------------------------------------------------------------------------
# The common interface: next-token distributions of any model
# --------------------------------------------------------------------------------------------------


def _grammar_of(source: Grammar | CFGDataset, name: str = "grammar") -> Grammar:
    if isinstance(source, CFGDataset):
        return source.grammar
    if isinstance(source, Grammar):
        return source
    raise invalid(name, source, "a Grammar (labkit.data.cfg.preset) or a CFGDataset")


def _check_model(model: Model, n_terminals: int) -> None:
    if isinstance(model, nn.Module):
        vocab = getattr(getattr(model, "cfg", None), "vocab_size", None)
        if vocab is not None and vocab != n_terminals + 3:
            raise invalid("model", f"a model with vocab_size={vocab}",
                          f"vocab_size = T + 3 = {n_terminals + 3} (CFGDataset's layout for T={n_terminals} terminals)")
    elif not isinstance(model, NextTokenModel):
        raise invalid("model", model, "an nn.Module over CFGDataset's ids or an object with next_token_probs(prefix)")


def _strings(strings: Strings, n_terminals: int, name: str = "strings") -> list[list[int]]:
    """``strings`` as lists of ints, every one a terminal ``0 .. T-1``."""
    if isinstance(strings, str | bytes) or not isinstance(strings, Sequence):
        raise invalid(name, strings, "a list of token lists")
    out = []
    for s in strings:
        s = s.tolist() if hasattr(s, "tolist") else s
        if isinstance(s, str) or not isinstance(s, Sequence) or not all(
                isinstance(t, numbers.Integral) and not isinstance(t, bool) and 0 <= t < n_terminals for t in s):
            raise invalid(name, s, f"token lists of terminal ids 0 .. {n_terminals - 1}")
        out.append([int(t) for t in s])
    return out


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextmanager
def _evaluating(model: Model) -> Iterator[None]:
    """Eval mode and no gradients for an ``nn.Module`` (its mode restored afterwards); nothing for others."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _records(strings: list[list[int]], n_terminals: int, device: torch.device) -> torch.Tensor:
    """``[BOS, tokens]`` right-padded with PAD (causal: what follows a position never changes its logits)."""
    width = 1 + max((len(s) for s in strings), default=0)
    tokens = torch.full((len(strings), width), n_terminals + 2, dtype=torch.int64)
    tokens[:, 0] = n_terminals + 1
    for i, s in enumerate(strings):
        tokens[i, 1 : 1 + len(s)] = torch.tensor(s, dtype=torch.int64)
    return tokens.to(device)


def _module_logprobs(model: nn.Module, strings: list[list[int]], n_terminals: int, batch_size: int,
                     last_only: bool, temperature: float = 1.0) -> list[np.ndarray]:
    """Per string, float64 log-probabilities over ``0 .. T`` after every prefix ((len + 1, T + 1)), or after the
    whole string only ((T + 1,)) with ``last_only``."""
    device = _device(model)
    out: list[np.ndarray] = []
    for lo in range(0, len(strings), batch_size):
        chunk = strings[lo : lo + batch_size]
        logits = model(_records(chunk, n_terminals, device))[..., : n_terminals + 1].double() / temperature
        logp = torch.log_softmax(logits, dim=-1)
        if last_only:
            ends = torch.tensor([len(s) for s in chunk], device=device)
            rows = logp[torch.arange(len(chunk), device=device), ends].cpu().numpy()
            out.extend(rows)
        else:
            logp = logp.cpu().numpy()
            out.extend(logp[i, : len(s) + 1] for i, s in enumerate(chunk))
    return out


def _as_probs(value: Any, n_terminals: int, name: str = "next_token_probs") -> np.ndarray:
    """A model's answer (mapping id -> p, or T + 1 numbers) as a float64 array over ``0 .. T``."""
    if isinstance(value, Mapping):
        probs = np.zeros(n_terminals + 1)
        for token, p in value.items():
            if not 0 <= int(token) <= n_terminals:
                raise invalid(name, token, f"ids 0 .. {n_terminals} (terminals and EOS)")
            probs[int(token)] = float(p)
    else:
        probs = np.asarray(value, dtype=np.float64)
        if probs.shape != (n_terminals + 1,):
            raise invalid(name, f"an answer of shape {probs.shape}", f"{n_terminals + 1} probabilities (T, EOS)")
    return probs


def _tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``p ** (1 / temperature)``, renormalised: what ``softmax(logits / temperature)`` is for probabilities."""
    if temperature != 1.0:
        probs = probs ** (1.0 / temperature)
    total = probs.sum(axis=-1, keepdims=True)
    return probs / np.where(total > 0, total, 1.0)


def next_token_distribution(model: Model, prefixes: Strings, n_terminals: int, temperature: float = 1.0,
                            batch_size: int = 256) -> np.ndarray:
    """(len(prefixes), T + 1) float64: each prefix's next-token distribution over the T terminals and EOS.

    ``prefixes`` are terminal strings (no BOS: a transformer gets ``[BOS, prefix]``). ``temperature`` divides a
    transformer's logits (``p ** (1 / temperature)``, renormalised, for other models). One forward per
    ``batch_size`` prefixes for an ``nn.Module``; one ``next_token_probs`` call per prefix otherwise."""
    n_terminals = check_int("n_terminals", n_terminals, 1)
    temperature = check_positive("temperature", temperature)
    check_int("batch_size", batch_size, 1)
    _check_model(model, n_terminals)
    prefixes = _strings(prefixes, n_terminals, "prefixes")
    if not prefixes:
        return np.zeros((0, n_terminals + 1))
    with _evaluating(model):
        if isinstance(model, nn.Module):
            return np.exp(np.stack(_module_logprobs(model, prefixes, n_terminals, batch_size, True, temperature)))
        return _tempered(np.stack([_as_probs(model.next_token_probs(p), n_terminals) for p in prefixes]), temperature)


def next_token_tables(model: Model, strings: Strings, n_terminals: int, batch_size: int = 256) -> list[np.ndarray]:
    """Per string, the (len + 1, T + 1) table whose row k is the model's next-token distribution after the first k
    tokens (row len: the prediction of EOS): one forward per ``batch_size`` strings for an ``nn.Module``, the
    model's own ``next_token_table`` where it has one, else ``next_token_probs`` of every prefix."""
    n_terminals = check_int("n_terminals", n_terminals, 1)
    check_int("batch_size", batch_size, 1)
    _check_model(model, n_terminals)
    strings = _strings(strings, n_terminals)
    with _evaluating(model):
        if isinstance(model, nn.Module):
            return [np.exp(t) for t in _module_logprobs(model, strings, n_terminals, batch_size, False)]
        table = getattr(model, "next_token_table", None)
        if callable(table):
            return [np.asarray(table(s), dtype=np.float64).reshape(len(s) + 1, n_terminals + 1) for s in strings]
        return [np.stack([_as_probs(model.next_token_probs(s[:k]), n_terminals) for k in range(len(s) + 1)])
                for s in strings]


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Samples(Sequence):
    """Generated strings: a sequence of token lists (terminals only, EOS dropped) with what happened to each.

    strings:        the token lists, prefix included.
    ended:          per string, whether the model emitted EOS; False means it reached ``max_len`` tokens
                    without, and the string counts as a failure whatever its tokens.
    prefix_lengths: per string, the length of the prefix it completes (0 from BOS).
    """

    strings: list[list[int]]
    ended: list[bool]
    prefix_lengths: list[int] = field(default_factory=list)

    def __getitem__(self, i):  # type: ignore[override]
        return self.strings[i]

    def __len__(self) -> int:
        return len(self.strings)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.strings)


def _generate(model: Model, n_terminals: int, prefixes: list[list[int]], seed: int, max_len: int,
              temperature: float, batch_size: int) -> Samples:
    """Ancestral sampling of every row at once, one token per step; inverse-CDF draws from uniforms fixed per
    (row, step) up front, so a string depends on the seed and its row only, not on which rows are batched."""
    n = len(prefixes)
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 0x5A4D]).generate_state(1)[0]))
    uniforms = torch.rand((n, max_len + 1), generator=gen, dtype=torch.float64).numpy()
    strings = [list(p) for p in prefixes]
    steps = [0] * n
    ended = [False] * n
    active = list(range(n))
    with _evaluating(model):
        while active:
            probs = next_token_distribution(model, [strings[i] for i in active], n_terminals, temperature, batch_size)
            cdf = np.cumsum(probs, axis=1)
            cdf /= np.where(cdf[:, -1:] > 0, cdf[:, -1:], 1.0)
            u = uniforms[active, [steps[i] for i in active]]
            tokens = np.minimum((cdf <= u[:, None]).sum(axis=1), n_terminals)  # zero-probability ids are never drawn
            still = []
            for i, token in zip(active, tokens.tolist(), strict=True):
                steps[i] += 1
                if token == n_terminals:
                    ended[i] = True
                elif len(strings[i]) < max_len:
                    strings[i].append(token)
                    still.append(i)
            active = still
    return Samples(strings, ended, [len(p) for p in prefixes])


def _max_len(model: Model, grammar: Grammar | None, max_len: int | None) -> int:
    """Default: the grammar's longest string; a transformer needs ``[BOS, string]`` within its ``max_len``."""
    limit = getattr(getattr(model, "cfg", None), "max_len", None) if isinstance(model, nn.Module) else None
    cap = None if limit is None else limit - 1
    if max_len is None:
        if grammar is None:
            raise invalid("max_len", max_len, "an int >= 1 (no grammar gives a default)")
        max_len = grammar.length_range[1] if cap is None else min(grammar.length_range[1], cap)
    return check_int("max_len", max_len, 1, cap, None if cap is None else "the model's max_len - 1")


def sample_strings(model: Model, grammar_or_dataset: Grammar | CFGDataset, n: int, seed: int = 0,
                   prefix: Sequence[int] | Strings | None = None, max_len: int | None = None,
                   temperature: float = 1.0, batch_size: int = 256) -> Samples:
    """``n`` strings sampled from ``model`` (ancestral sampling over the terminals and EOS), from BOS or completing
    ``prefix``: one terminal string for all ``n``, or a list of ``n`` of them.

    Generation stops at EOS or when a string holds ``max_len`` tokens (default: the grammar's longest string,
    capped so that a transformer's input fits its ``max_len``); a string cut there has ``ended`` False
    (:class:`Samples`). Deterministic for ``seed``; a string does not depend on ``batch_size``."""
    grammar = _grammar_of(grammar_or_dataset, "grammar_or_dataset")
    n_terminals = len(grammar.terminals)
    _check_model(model, n_terminals)
    n = check_int("n", n, 0)
    seed = check_int("seed", seed, 0)
    temperature = check_positive("temperature", temperature)
    check_int("batch_size", batch_size, 1)
    max_len = _max_len(model, grammar, max_len)
    if prefix is None or (isinstance(prefix, Sequence) and not len(prefix)):
        prefixes: list[list[int]] = [[] for _ in range(n)]
    elif all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in prefix):
        prefixes = [list(p) for p in _strings([prefix], n_terminals, "prefix") * n]
    else:
        prefixes = _strings(prefix, n_terminals, "prefix")
        if len(prefixes) != n:
            raise invalid("prefix", f"{len(prefixes)} prefixes", f"one terminal string, or a list of n={n} of them")
    if any(len(p) > max_len for p in prefixes):
        raise invalid("prefix", max(prefixes, key=len), f"prefixes of at most max_len={max_len} tokens")
    return _generate(model, n_terminals, prefixes, seed, max_len, temperature, batch_size)


def generation_accuracy(model: Model, grammar: Grammar | CFGDataset, n: int = 200, seed: int = 0,
                        prefix_fraction: float = 0.0, max_len: int | None = None,
                        temperature: float = 1.0) -> dict[str, float]:
    """Part 1's generation accuracy: the fraction of ``n`` sampled strings that end (EOS) and that the grammar
    accepts (exact membership, :meth:`Grammar.accepts`).

    ``prefix_fraction`` > 0 completes prefixes instead: the first ``floor(prefix_fraction * len)`` tokens of
    each of ``n`` fresh grammar samples (seeded by ``seed``), the paper's completions of valid prefixes; the
    whole string, prefix and completion, must be accepted. Returns ``accuracy``, ``n``, ``mean_length`` (of the
    whole strings), ``ended`` (fraction that emitted EOS) and ``diversity`` (:func:`diversity`)."""
    grammar = _grammar_of(grammar)
    n = check_int("n", n, 1)
    seed = check_int("seed", seed, 0)
    prefix_fraction = check_fraction("prefix_fraction", prefix_fraction)
    prefixes = None
    if prefix_fraction > 0:
        sources = grammar.sample(n, seed=int(rng_for(seed, _STREAM_PREFIXES).integers(2**31)))
        prefixes = [s[: math.floor(prefix_fraction * len(s))] for s in sources]
    samples = sample_strings(model, grammar, n, seed=seed, prefix=prefixes, max_len=max_len, temperature=temperature)
    accepted = [ended and grammar.accepts(s) for s, ended in zip(samples.strings, samples.ended, strict=True)]
    return {"accuracy": sum(accepted) / n, "n": n, "mean_length": sum(map(len, samples)) / n,
            "ended": sum(samples.ended) / n, "diversity": diversity(samples)}


def diversity(strings: Strings) -> float:
    """Distinct strings / strings: 1.0 when no string repeats. Compare with :func:`grammar_diversity` at the same
    ``n``: a small language repeats itself too, so only a model below its grammar is collapsing."""
    strings = list(strings)
    if not strings:
        raise invalid("strings", strings, "at least one string")
    return len({tuple(s) for s in strings}) / len(strings)


def grammar_diversity(grammar: Grammar | CFGDataset, n: int = 200, seed: int = 0) -> float:
    """:func:`diversity` of ``n`` samples of the grammar itself: what a model that learned the distribution gets."""
    return diversity(_grammar_of(grammar).sample(check_int("n", n, 1), seed=seed))


# --------------------------------------------------------------------------------------------------
# Distance to the grammar
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KLResult:
    """KL(p_grammar(. | prefix) || p_model(. | prefix)) in bits along strings of the grammar.

    bits:         the mean over every position of every string (each string has len + 1: the last predicts EOS).
    per_position: (longest + 1,) the mean at position k (after k tokens) over the strings that have it.
    per_string:   per string, its (len + 1,) KL values.
    n_positions:  the number of positions averaged in ``bits``.
    """

    bits: float
    per_position: np.ndarray
    per_string: list[np.ndarray]
    n_positions: int

    def to_dict(self) -> dict[str, Any]:
        return {"bits": self.bits, "n_positions": self.n_positions, "per_position": self.per_position.tolist()}


def _kl_bits(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise sum_a p log2(p / q), with 0 log 0 = 0 (inf where q = 0 < p)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log2(p) - np.log2(q)), 0.0)
    return terms.sum(axis=-1)


def kl_to_grammar(model: Model, grammar: Grammar | CFGDataset, strings: Strings | None = None, n: int = 100,
                  seed: int = 0, batch_size: int = 256) -> KLResult:
    """How far the model's next-token distribution is from the grammar's, in bits per position (Part 1's
    KL-divergence test): along each of ``strings`` (default: ``n`` fresh grammar samples, seeded by ``seed``),
    at every prefix including the whole string (where the grammar says EOS), ``KL(p_grammar || p_model)``.

    The grammar's side is exact (:meth:`Grammar.next_token_table`, one inside chart per string); the model's is
    :func:`next_token_tables`, a transformer's softmax restricted to terminals and EOS. ``strings`` must be
    strings (or prefixes) of the grammar: elsewhere the grammar's distribution is undefined. 0 for a model that
    has the grammar's distribution; infinite where the model gives probability 0 to a possible token."""
    grammar = _grammar_of(grammar)
    n_terminals = len(grammar.terminals)
    if strings is None:
        strings = grammar.sample(check_int("n", n, 1), seed=check_int("seed", seed, 0))
    strings = _strings(strings, n_terminals)
    if not strings:
        raise invalid("strings", strings, "at least one string of the grammar")
    truth = []
    for s in strings:
        try:
            truth.append(grammar.next_token_table(s))
        except ValueError:
            raise invalid("strings", s, "strings of the grammar (e.g. grammar.sample(n, seed))") from None
    model_tables = next_token_tables(model, strings, n_terminals, batch_size)
    per_string = [_kl_bits(p, q) for p, q in zip(truth, model_tables, strict=True)]
    longest = max(len(s) for s in strings)
    sums, counts = np.zeros(longest + 1), np.zeros(longest + 1)
    for kl in per_string:
        sums[: len(kl)] += kl
        counts[: len(kl)] += 1
    flat = np.concatenate(per_string)
    return KLResult(float(flat.mean()), sums / counts, per_string, int(flat.size))


# --------------------------------------------------------------------------------------------------
# The n-gram baseline
# --------------------------------------------------------------------------------------------------


class NGramModel:
    """An add-k smoothed n-gram model of terminal strings with EOS (:func:`fit_ngram`).

    The context of a prediction is the last ``n - 1`` tokens of the prefix, padded in front with a start
    symbol; ``P(a | context) = (count(context, a) + alpha) / (count(context) + alpha * vocab)`` over the
    ``vocab = T + 1`` ids (terminals and EOS). A context never seen gets the uniform distribution when
    ``alpha = 0``. ``counts``: the (vocab + 1,) * (n - 1) + (vocab,) array of counts, index ``vocab`` of a
    context axis being the start symbol.
    """

    def __init__(self, counts: np.ndarray, n: int, vocab: int, alpha: float, max_length: int) -> None:
        self.counts, self.n, self.vocab, self.alpha, self.max_length = counts, n, vocab, alpha, max_length
        self.eos = vocab - 1
        totals = counts.sum(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            table = (counts + alpha) / (totals + alpha * vocab)
        self._table = np.where(totals + alpha * vocab > 0, table, 1.0 / vocab)

    def __repr__(self) -> str:
        return f"NGramModel(n={self.n}, vocab={self.vocab}, alpha={self.alpha}, predictions={int(self.counts.sum())})"

    def _context(self, prefix: Sequence[int]) -> tuple[int, ...]:
        k = self.n - 1
        tail = [int(t) for t in prefix[max(0, len(prefix) - k) :]] if k else []
        return (self.vocab,) * (k - len(tail)) + tuple(tail)

    def next_token_probs(self, prefix: Sequence[int]) -> np.ndarray:
        """(vocab,) float64: the distribution of the next id (EOS last) after the terminal ``prefix``."""
        prefix = _strings([prefix], self.eos, "prefix")[0]
        return self._table[self._context(prefix)].copy()

    def next_token_table(self, tokens: Sequence[int]) -> np.ndarray:
        """(len(tokens) + 1, vocab): row k is :meth:`next_token_probs` of ``tokens[:k]``."""
        tokens = _strings([tokens], self.eos, "tokens")[0]
        return np.stack([self._table[self._context(tokens[:k])] for k in range(len(tokens) + 1)])

    def sample(self, n: int, seed: int = 0, max_len: int | None = None, temperature: float = 1.0) -> Samples:
        """``n`` strings of the model (:class:`Samples`), up to ``max_len`` tokens (default: the longest string it
        was fitted on)."""
        n = check_int("n", n, 0)
        max_len = check_int("max_len", self.max_length if max_len is None else max_len, 1)
        return _generate(self, self.eos, [[] for _ in range(n)], check_int("seed", seed, 0), max_len,
                         check_positive("temperature", temperature), 256)


def fit_ngram(strings: Strings, n: int = 3, vocab: int | None = None, alpha: float = 0.1) -> NGramModel:
    """An :class:`NGramModel` of order ``n`` (2: bigram, 3: trigram, up to 6) counted on terminal ``strings``,
    each followed by EOS. ``vocab`` = T + 1 (terminals and EOS; default: the largest token + 2), ``alpha`` the
    add-k smoothing constant (0: maximum likelihood)."""
    n = check_int("n", n, 1, 6)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 0 or not math.isfinite(alpha):
        raise invalid("alpha", alpha, "a number >= 0")
    if isinstance(strings, str | bytes) or not isinstance(strings, Sequence) or not len(strings):
        raise invalid("strings", strings, "a non-empty list of token lists")
    largest = max((int(max(s)) for s in strings if len(s)), default=0)
    vocab = check_int("vocab", largest + 2 if vocab is None else vocab, largest + 2)
    strings = _strings(strings, vocab - 1)
    eos, start, k = vocab - 1, vocab, n - 1
    contexts, targets = [], []
    for s in strings:
        seq = [start] * k + s + [eos]
        for j in range(len(s) + 1):
            contexts.append(seq[j : j + k])
            targets.append(seq[j + k])
    shape = (vocab + 1,) * k + (vocab,)
    counts = np.zeros(shape, dtype=np.float64)
    index = tuple(np.array(contexts, dtype=np.int64).reshape(len(targets), k).T) + (np.array(targets),)
    np.add.at(counts, index, 1.0)
    return NGramModel(counts, n, vocab, float(alpha), max(len(s) for s in strings))


# --------------------------------------------------------------------------------------------------
# Probing for the parse tree
# --------------------------------------------------------------------------------------------------


def _parses(parses: Sequence[Parse], level: int) -> tuple[list[Parse], int]:
    parses = list(parses) if isinstance(parses, Sequence) else []
    if not parses or not all(isinstance(p, Parse) for p in parses):
        raise invalid("parses", parses, "a non-empty list of Parse (Grammar.sample_trees, CFGDataset.trees)")
    levels = len(parses[0].ancestors[0]) if parses[0].ancestors else len(parses[0].boundaries)
    return parses, check_int("level", level, 0, levels - 1)


def _aligned(parses: list[Parse], width: int | None, value: Callable[[Parse, int], list[int]]) -> torch.Tensor:
    longest = max(len(p.tokens) for p in parses)
    width = check_int("width", longest + 2 if width is None else width, longest + 1)
    out = torch.full((len(parses), width), -1, dtype=torch.int64)
    for i, p in enumerate(parses):
        row = value(p, i)
        out[i, 1 : 1 + len(row)] = torch.tensor(row, dtype=torch.int64)
    return out


def ancestor_labels(parses: Sequence[Parse], level: int, width: int | None = None) -> torch.Tensor:
    """(len(parses), width) int64 aligned to record positions (CFGDataset's layout): entry ``[i, t + 1]`` is the
    level-``level`` ancestor of token t of string i, as its index among the sorted names of the level's symbols
    that occur in ``parses``; -1 at BOS, EOS and PAD. ``width`` defaults to the longest record."""
    parses, level = _parses(parses, level)
    symbols = sorted({a[level] for p in parses for a in p.ancestors})
    index = {s: i for i, s in enumerate(symbols)}
    return _aligned(parses, width, lambda p, i: [index[a[level]] for a in p.ancestors])


def boundary_labels(parses: Sequence[Parse], level: int, width: int | None = None) -> torch.Tensor:
    """(len(parses), width) int64 aligned to record positions: ``[i, t + 1]`` is 1 where token t of string i ends a
    level-``level`` subtree, else 0; -1 at BOS, EOS and PAD."""
    parses, level = _parses(parses, level)
    return _aligned(parses, width, lambda p, i: list(p.boundaries[level]))


def _hook_of(model: nn.Module, layer: int | str) -> str:
    n_layer = model.cfg.n_layer
    if layer == "embedding":
        return "hook_embed"
    if isinstance(layer, numbers.Integral) and not isinstance(layer, bool) and 0 <= layer < n_layer:
        return f"blocks.{int(layer)}.hook_resid_post"
    raise invalid("layers", layer, f"'embedding' or a block index 0 .. {n_layer - 1}")


def probe_structure(model: nn.Module, data: Grammar | CFGDataset | Sequence[Parse],
                    levels: Sequence[int] | None = None, layers: Sequence[int | str] | None = None, seed: int = 0,
                    n_strings: int = 256, max_rows: int = 20_000, test_fraction: float = 0.25, C: float = 1.0,
                    max_iter: int = 100, control_type: str = "token", batch_size: int = 128) -> pd.DataFrame:
    """Part 1's linear probes for the parse tree: one row per (layer, level, target) with the held-out accuracy of
    a probe (labkit.probe.fit_probe) from the model's activation at each token to

    * ``"ancestor"``: the token's level-``level`` nonterminal ancestor (:func:`ancestor_labels`);
    * ``"boundary"``: whether the token ends a level-``level`` subtree (:func:`boundary_labels`).

    ``data``: a grammar or dataset (``n_strings`` fresh parsed samples, seeded by ``seed``) or parses.
    ``layers``: ``"embedding"`` (``hook_embed``: the token alone) and block indices (``blocks.{L}.hook_resid_post``);
    default all. ``levels``: default ``1 .. levels - 1`` (level 0 is the root, the same ancestor everywhere).
    Every token of every string is a row; at most ``max_rows`` of them, drawn by ``seed``, enter each fit, and
    the train/test split is by row (labkit.probe).

    Columns: ``layer``, ``hook``, ``level``, ``target``, ``accuracy``, ``control_accuracy`` (the control task,
    labkit.probe.control_labels, with the type of a row given by ``control_type``: ``"token"``, the token itself
    as in hewitt2019control, ``"position"`` or ``"token_position"``), ``selectivity`` (accuracy - control),
    ``chance`` (majority-class rate), ``token_baseline`` (a probe on the one-hot token alone: what needs no
    context at all), ``n_classes`` and ``n_rows``. With the presets' three terminals the token control is almost
    free for a probe (three types to memorise), so its selectivity is near ``accuracy - 1``; read accuracy
    against ``token_baseline`` and the ``"embedding"`` row to see what the context adds."""
    import pandas as pd

    if not isinstance(model, nn.Module) or not hasattr(model, "run_with_cache"):
        raise invalid("model", model, "a labkit Transformer (run_with_cache)")
    seed = check_int("seed", seed, 0)
    check_choice("control_type", control_type, ("token", "position", "token_position"))
    max_rows = check_int("max_rows", max_rows, 2)
    check_int("batch_size", batch_size, 1)
    if isinstance(data, Grammar | CFGDataset):
        grammar = _grammar_of(data, "data")
        parses = grammar.sample_trees(check_int("n_strings", n_strings, 2), seed=seed)
        n_terminals = len(grammar.terminals)
    else:
        parses = data
        n_terminals = model.cfg.vocab_size - 3
    parses, _ = _parses(parses, 0)
    n_levels = len(parses[0].ancestors[0])
    _check_model(model, n_terminals)
    levels = list(range(1, n_levels)) if levels is None else list(levels)
    layers = ["embedding", *range(model.cfg.n_layer)] if layers is None else list(layers)
    hooks = {layer: _hook_of(model, layer) for layer in layers}
    labels = {(target, level): fn(parses, level) for level in levels
              for target, fn in (("ancestor", ancestor_labels), ("boundary", boundary_labels))}
    tokens = _records(_strings([list(p.tokens) for p in parses], n_terminals, "data"), n_terminals, torch.device("cpu"))
    width = tokens.shape[1]
    if width > model.cfg.max_len:
        raise invalid("data", f"strings of up to {width - 1} tokens", f"strings that fit max_len={model.cfg.max_len}")
    lengths = torch.tensor([len(p.tokens) for p in parses])
    rows_i, rows_t = torch.nonzero(torch.arange(width)[None, :].le(lengths[:, None]) & (torch.arange(width) >= 1),
                                   as_tuple=True)
    if len(rows_i) > max_rows:
        keep = torch.randperm(len(rows_i), generator=torch.Generator().manual_seed(seed))[:max_rows].sort().values
        rows_i, rows_t = rows_i[keep], rows_t[keep]
    feats: dict[str, list[torch.Tensor]] = {hook: [] for hook in hooks.values()}
    device = _device(model)
    with _evaluating(model):
        for lo in range(0, len(parses), batch_size):
            sel = (rows_i >= lo) & (rows_i < lo + batch_size)
            if not bool(sel.any()):
                continue
            _, cache = model.run_with_cache(tokens[lo : lo + batch_size].to(device), names_filter=list(feats))
            for hook, out in feats.items():
                act = cache[hook]
                out.append(act[(rows_i[sel] - lo).to(device), rows_t[sel].to(device)].float().cpu())
    acts = {hook: torch.cat(parts) for hook, parts in feats.items()}
    row_tokens = tokens[rows_i, rows_t]
    types = {"token": row_tokens, "position": rows_t, "token_position": row_tokens * width + rows_t}[control_type]
    one_hot = torch.nn.functional.one_hot(row_tokens, n_terminals).double()
    out = []
    for (target, level), table in labels.items():
        y = table[rows_i, rows_t]
        control = control_labels(y, types, seed)
        baseline = fit_probe(one_hot, y, seed, test_fraction, C, max_iter).test_accuracy
        for layer, hook in hooks.items():
            real = fit_probe(acts[hook], y, seed, test_fraction, C, max_iter)
            ctrl = fit_probe(acts[hook], control, seed, test_fraction, C, max_iter)
            out.append({"layer": layer, "hook": hook, "level": level, "target": target,
                        "accuracy": real.test_accuracy, "control_accuracy": ctrl.test_accuracy,
                        "selectivity": real.test_accuracy - ctrl.test_accuracy, "chance": real.chance,
                        "token_baseline": baseline, "n_classes": real.n_classes, "n_rows": len(y)})
    columns = ["layer", "hook", "level", "target", "accuracy", "control_accuracy", "selectivity", "chance",
               "token_baseline", "n_classes", "n_rows"]
    return pd.DataFrame(out, columns=columns)
