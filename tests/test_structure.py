"""What a model learned of a grammar (labkit.structure): sampling, generation accuracy, KL to the grammar,
the n-gram baseline, diversity and the parse-tree probes.

Why hand-made models: an oracle that answers with the grammar's own next-token distribution must be at KL 0
and generate only strings of the language; a uniform model must be far from both; a 6-gram of the "tiny"
grammar (strings of at most 6 tokens) sees every whole prefix and so is an oracle up to its counting. Those
fix the scale of every number before a transformer is measured, and an untrained transformer runs through
every function for the shapes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import raises_invalid

from labkit.data.cfg import CFGDataset, Grammar, preset
from labkit.model import Transformer, tiny
from labkit.structure import (
    KLResult,
    NextTokenModel,
    NGramModel,
    Samples,
    ancestor_labels,
    boundary_labels,
    diversity,
    fit_ngram,
    generation_accuracy,
    grammar_diversity,
    kl_to_grammar,
    next_token_distribution,
    next_token_tables,
    probe_structure,
    sample_strings,
)


class Oracle:
    """The common interface answered by the grammar itself: ``next_token_probs`` as a mapping {id: p}."""

    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar

    def next_token_probs(self, prefix):
        return self.grammar.next_token_probs(prefix)


class Uniform:
    """Every terminal and EOS equally likely, whatever the prefix (a sequence of T + 1 numbers)."""

    def __init__(self, n_terminals: int) -> None:
        self.n = n_terminals + 1

    def next_token_probs(self, prefix):
        return [1.0 / self.n] * self.n


class Fixed:
    """The same distribution after every prefix (EOS always, or never)."""

    def __init__(self, probs) -> None:
        self.probs = np.asarray(probs, dtype=float)

    def next_token_probs(self, prefix):
        return self.probs


def untrained(grammar: Grammar, seed: int = 0) -> Transformer:
    dataset = CFGDataset(grammar, 4)
    return Transformer(tiny(dataset.vocab_size, max_len=dataset.context), seed=seed)


def test_sampling_is_deterministic_stops_at_eos_and_completes_prefixes():
    g = preset("tiny")
    model = fit_ngram(g.sample(500, seed=1), n=3, vocab=g.vocab_size)
    assert isinstance(model, NextTokenModel) and isinstance(Oracle(g), NextTokenModel)
    a, b = sample_strings(model, g, 40, seed=3), sample_strings(model, g, 40, seed=3)
    assert isinstance(a, Samples) and a.strings == b.strings and a.ended == b.ended and len(a) == 40
    assert sample_strings(model, g, 40, seed=4).strings != a.strings
    assert all(len(s) <= g.length_range[1] for s in a) and all(0 <= t < 2 for s in a for t in s)
    assert list(a) == a.strings and a[0] == a.strings[0] and a.prefix_lengths == [0] * 40

    stop = sample_strings(Fixed([0, 0, 1]), g, 5, seed=0)  # EOS at once: empty strings that ended
    assert stop.strings == [[]] * 5 and all(stop.ended)
    never = sample_strings(Fixed([0.5, 0.5, 0]), g, 5, seed=0, max_len=7)  # no EOS: cut at max_len, failures
    assert all(len(s) == 7 for s in never) and not any(never.ended)

    done = sample_strings(Oracle(g), g, 6, seed=2, prefix=[0, 1])  # one prefix for all: completions of it
    assert all(s[:2] == [0, 1] and g.accepts(s) for s in done) and all(done.ended) and done.prefix_lengths == [2] * 6
    each = sample_strings(Oracle(g), g, 2, seed=2, prefix=[[1, 0], [0, 0, 1]])
    assert each.strings[0][:2] == [1, 0] and each.strings[1][:3] == [0, 0, 1] and all(map(g.accepts, each))
    assert sample_strings(model, g, 3, prefix=[]).prefix_lengths == [0, 0, 0]

    # a transformer's strings depend on the seed and the row only, not on the batch they were sampled in
    net = untrained(preset("small"))
    one = sample_strings(net, preset("small"), 12, seed=5, batch_size=1)
    many = sample_strings(net, preset("small"), 12, seed=5, batch_size=256)
    assert one.strings == many.strings and one.ended == many.ended


def test_generation_accuracy_separates_an_oracle_from_a_uniform_model():
    tiny_g, small = preset("tiny"), preset("small")
    exact = fit_ngram(tiny_g.sample(2000, seed=11), n=6, vocab=tiny_g.vocab_size)  # context = the whole prefix
    got = generation_accuracy(exact, tiny_g, n=200, seed=0)
    uniform = generation_accuracy(Uniform(2), tiny_g, n=200, seed=0)
    oracle = generation_accuracy(Oracle(small), small, n=25, seed=0)
    completed = generation_accuracy(Oracle(small), small, n=15, seed=0, prefix_fraction=0.5)
    trigram = generation_accuracy(fit_ngram(small.sample(2000, seed=11), n=3, vocab=small.vocab_size), small, n=100)
    print(f"tiny 6-gram {got}, tiny uniform {uniform}, small trigram {trigram}")
    assert got["accuracy"] >= 0.95 and got["ended"] >= 0.95 and got["n"] == 200
    assert uniform["accuracy"] <= 0.15
    assert oracle["accuracy"] == 1.0 and oracle["ended"] == 1.0 and completed["accuracy"] == 1.0
    assert small.length_range[0] <= oracle["mean_length"] <= small.length_range[1]
    assert trigram["accuracy"] < 0.1  # local statistics do not make strings of a deep grammar
    assert set(got) == {"accuracy", "n", "mean_length", "ended", "diversity"}


def test_kl_is_zero_for_the_oracle_and_positive_for_a_uniform_model():
    g = preset("small")
    strings = g.sample(12, seed=4)
    oracle = kl_to_grammar(Oracle(g), g, strings)  # next_token_probs of every prefix
    table = kl_to_grammar(g, g, strings)  # the grammar's own next_token_table
    uniform = kl_to_grammar(Uniform(3), g, strings)
    assert isinstance(oracle, KLResult)
    assert oracle.bits == pytest.approx(0.0, abs=1e-9) and table.bits == pytest.approx(0.0, abs=1e-9)
    assert oracle.n_positions == sum(len(s) + 1 for s in strings)  # the EOS prediction counted
    assert [len(k) for k in uniform.per_string] == [len(s) + 1 for s in strings]
    assert uniform.per_position.shape == (max(map(len, strings)) + 1,)
    assert uniform.bits > 0.5
    # by hand at position 0: KL(p || uniform over 4 ids) = 2 - H(p)
    p = np.array(list(g.next_token_probs([]).values()))
    h = -sum(q * math.log2(q) for q in p if q > 0)
    assert uniform.per_position[0] == pytest.approx(2 - h)
    assert uniform.bits == pytest.approx(np.concatenate(uniform.per_string).mean())
    assert kl_to_grammar(Fixed([0.5, 0.5, 0, 0]), g, strings).bits == math.inf  # no EOS where the grammar ends
    bigram = kl_to_grammar(fit_ngram(g.sample(2000, seed=11), n=2, vocab=4), g, strings).bits
    trigram = kl_to_grammar(fit_ngram(g.sample(2000, seed=11), n=3, vocab=4), g, strings).bits
    print(f"small: KL uniform {uniform.bits:.3f}, bigram {bigram:.3f}, trigram {trigram:.3f} bits/position")
    assert 0 < trigram < bigram < uniform.bits
    assert kl_to_grammar(Oracle(g), g, n=3, seed=1).n_positions == sum(len(s) + 1 for s in g.sample(3, seed=1))
    assert set(oracle.to_dict()) == {"bits", "n_positions", "per_position"}


def test_ngram_counts_by_hand():
    m = fit_ngram([[0, 1], [0, 0]], n=2, vocab=3, alpha=0.0)
    assert isinstance(m, NGramModel) and m.n == 2 and m.vocab == 3 and m.max_length == 2
    assert m.next_token_probs([]) == pytest.approx([1, 0, 0])  # every string starts with 0
    assert m.next_token_probs([0]) == pytest.approx([1 / 3, 1 / 3, 1 / 3])  # 0 -> 1, 0 -> 0, 0 -> EOS
    assert m.next_token_probs([1, 1]) == pytest.approx([0, 0, 1])  # only the last token counts
    smooth = fit_ngram([[0, 1], [0, 0]], n=2, vocab=3, alpha=1.0)
    assert smooth.next_token_probs([1]) == pytest.approx([0.25, 0.25, 0.5])
    tri = fit_ngram([[0, 1, 1], [1, 1, 0]], n=3, vocab=3, alpha=0.0)
    assert tri.next_token_probs([1]) == pytest.approx([0, 1, 0])  # (start, 1) -> 1
    assert tri.next_token_probs([0, 1]) == pytest.approx([0, 1, 0]) and tri.next_token_probs([1, 1]) == \
        pytest.approx([0.5, 0, 0.5])
    assert tri.next_token_probs([0, 0]) == pytest.approx([1 / 3] * 3)  # an unseen context: uniform
    table = tri.next_token_table([0, 1, 1])
    assert table.shape == (4, 3) and all(np.allclose(table[k], tri.next_token_probs([0, 1, 1][:k])) for k in range(4))
    assert fit_ngram([[0, 2]]).vocab == 4  # T = 3 from the largest token
    s = tri.sample(20, seed=1)
    assert s.strings == tri.sample(20, seed=1).strings and all(len(x) <= 3 for x in s)
    assert next_token_distribution(smooth, [[1]], 2, temperature=0.5)[0] == pytest.approx([1 / 6, 1 / 6, 2 / 3])
    assert "NGramModel(n=2" in repr(m)


def test_diversity():
    assert diversity([[0], [0], [1]]) == pytest.approx(2 / 3)
    assert diversity(Samples([[0, 1], [0, 1]], [True, True])) == 0.5
    g = preset("tiny")
    assert grammar_diversity(g, 200, seed=0) <= 8 / 200  # eight strings in all
    assert grammar_diversity(preset("small"), 50, seed=0) > 0.8


def test_labels_are_aligned_with_the_records():
    data = CFGDataset("small", 6, seed=2)
    batch, parses = data.exposure(1), data.trees(1)
    anc, bnd = ancestor_labels(parses, 2), boundary_labels(parses, 0)
    assert anc.shape == bnd.shape == batch.tokens.shape
    symbols = sorted({a[2] for p in parses for a in p.ancestors})
    for i, p in enumerate(parses):
        n = len(p.tokens)
        assert batch.tokens[i, 1 : n + 1].tolist() == list(p.tokens)
        assert anc[i, 0] == -1 and (anc[i, n + 1 :] == -1).all() and (bnd[i, n + 1 :] == -1).all()
        assert [symbols[k] for k in anc[i, 1 : n + 1].tolist()] == [a[2] for a in p.ancestors]
        assert bnd[i, 1 : n + 1].tolist() == [0] * (n - 1) + [1]  # level 0: only the last token ends the root
    assert ancestor_labels(parses, 1, width=50).shape == (6, 50)


def test_an_untrained_transformer_runs_through_every_function():
    g = preset("small")
    net = untrained(g)
    strings = g.sample(5, seed=0)
    dist = next_token_distribution(net, strings, 3)
    assert dist.shape == (5, 4) and np.allclose(dist.sum(1), 1.0)
    tables = next_token_tables(net, strings, 3)
    assert [t.shape for t in tables] == [(len(s) + 1, 4) for s in strings]
    assert np.allclose([t[-1] for t in tables], dist)  # the table's last row is the distribution after the string
    samples = sample_strings(net, g, 8, seed=1)
    assert len(samples) == 8 and len(samples.ended) == 8
    acc = generation_accuracy(net, g, n=20, seed=0)
    print(f"untrained transformer on small: {acc}")
    assert 0 <= acc["accuracy"] <= 0.2
    kl = kl_to_grammar(net, g, strings)
    assert 0 < kl.bits < math.inf and kl.n_positions == sum(len(s) + 1 for s in strings)
    assert net.training  # its mode is restored


def test_probe_structure_rows_and_selectivity():
    g = preset("small")
    net = untrained(g)
    table = probe_structure(net, g, n_strings=48, seed=0, max_rows=600, max_iter=30)
    assert list(table.columns) == ["layer", "hook", "level", "target", "accuracy", "control_accuracy", "selectivity",
                                   "chance", "token_baseline", "n_classes", "n_rows"]
    assert len(table) == 3 * 2 * 2  # (embedding, block 0, block 1) x levels (1, 2) x (ancestor, boundary)
    assert set(table.layer) == {"embedding", 0, 1} and set(table.level) == {1, 2}
    assert set(table.hook) == {"hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"}
    assert np.allclose(table.selectivity, table.accuracy - table.control_accuracy)
    assert ((0 <= table.accuracy) & (table.accuracy <= 1) & (table.chance >= 1 / table.n_classes - 1e-12)).all()
    assert (table.n_rows == 600).all() and set(table[table.target == "boundary"].n_classes) == {2}
    parses = g.sample_trees(20, seed=3)
    few = probe_structure(net, parses, levels=[0], layers=[1], control_type="token_position", max_iter=20)
    assert len(few) == 2 and set(few.layer) == {1} and few.n_rows.iloc[0] == sum(len(p.tokens) for p in parses)
    assert few[few.target == "ancestor"].accuracy.iloc[0] == 1.0  # level 0: the root everywhere, one class


def test_bad_arguments_raise_one_line_errors():
    g = preset("small")
    net = untrained(g)
    with raises_invalid("model="):
        sample_strings(untrained(preset("tiny")), g, 2)  # vocab_size of the tiny grammar's layout
    with raises_invalid("model="):
        kl_to_grammar(object(), g, n=2)
    with raises_invalid("temperature=0"):
        sample_strings(net, g, 2, temperature=0)
    with raises_invalid("prefix="):
        sample_strings(net, g, 3, prefix=[[0], [1]])
    with raises_invalid("prefix="):
        sample_strings(net, g, 1, prefix=[5])
    with raises_invalid("max_len="):
        sample_strings(net, g, 1, max_len=1000)
    with raises_invalid("grammar_or_dataset="):
        sample_strings(net, "small", 1)
    with raises_invalid("strings="):
        kl_to_grammar(net, g, [[0, 0, 0]])
    with raises_invalid("prefix_fraction=1.5"):
        generation_accuracy(net, g, n=2, prefix_fraction=1.5)
    with raises_invalid("layers=5"):
        probe_structure(net, g, layers=[5], n_strings=4)
    with raises_invalid("parses="):
        probe_structure(net, 5)
    with raises_invalid("control_type='word'"):
        probe_structure(net, g, control_type="word", n_strings=4)
    with raises_invalid("level=7"):
        ancestor_labels(g.sample_trees(2), 7)
    with raises_invalid("n=9"):
        fit_ngram([[0, 1]], n=9)
    with raises_invalid("alpha=-1"):
        fit_ngram([[0, 1]], alpha=-1)
    with raises_invalid("vocab=2"):
        fit_ngram([[0, 1]], vocab=2)
    with raises_invalid("strings="):
        diversity([])
    with raises_invalid("next_token_probs="):
        next_token_distribution(Fixed([0.5, 0.5]), [[0]], 3)
    assert torch.get_num_threads() == 1  # the suite's one thread (conftest)
