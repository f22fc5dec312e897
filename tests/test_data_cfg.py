"""Layered context-free grammars (labkit.data.cfg): the dynamic programs against brute force, sampling,
parses, presets, determinism and validation; the entropy of a string and the training dataset (CFGDataset).

Why brute force: every tiny grammar here has a language small enough to enumerate with its probabilities
by expanding all derivations, which checks membership, string, prefix and next-token probabilities
exactly, with no shared code path with the module's inside charts.
"""

from __future__ import annotations

import doctest
import itertools
import math
import time

import numpy as np
import pytest
import torch
from conftest import raises_invalid

from labkit.data import cfg
from labkit.data.base import TokenDataset
from labkit.data.cfg import PRESETS, CFGDataset, Grammar, GrammarSpec, Parse, generate, preset, string_entropy
from labkit.data.registry import context_length, data_keys, make_dataset, max_people
from labkit.model import Transformer, tiny
from labkit.train import train

# The module docstring's toy grammar: ambiguous, "0 1 1" has two parse trees.
TOY = {"S": [("A", "B"), ("B", "A")], "A": [(0, 1), (0,)], "B": [(1,), (1, 1)]}
# A layered grammar whose last level produces single terminals: every token ends a last-level subtree.
PRETERMINAL = {"S": [("X", "Y"), ("Y", "X")], "X": [("A", "B"), ("A",)], "Y": [("B",), ("B", "A")],
               "A": [(0,)], "B": [(1,)]}
# Not layered (S mixes a nonterminal and a terminal): the dynamic programs still apply.
MIXED = {"S": [("A", 1), (0,), ("A", "A")], "A": [(0, 0), (1,)]}


def derivation_language(g: Grammar, symbol: object = None) -> dict[tuple[int, ...], float]:
    """Every string ``symbol`` derives with its probability: all derivations expanded, the probabilities of
    the parse trees of an ambiguous string added up."""
    symbol = g.root if symbol is None else symbol
    if isinstance(symbol, int):
        return {(symbol,): 1.0}
    out: dict[tuple[int, ...], float] = {}
    for body in g.rules[symbol]:
        for parts in itertools.product(*(derivation_language(g, c).items() for c in body)):
            s = tuple(t for part, _ in parts for t in part)
            p = math.prod(q for _, q in parts) / len(g.rules[symbol])
            out[s] = out.get(s, 0.0) + p
    return out


GRAMMARS = {
    "toy": lambda: Grammar(TOY),
    "preterminal": lambda: Grammar(PRETERMINAL),
    "mixed": lambda: Grammar(MIXED),
    "tiny": lambda: preset("tiny"),
    "tiny-seed3": lambda: preset("tiny", seed=3),
}


def test_module_docstring_example_holds():
    assert doctest.testmod(cfg).failed == 0


def test_toy_grammar_by_hand():
    """An exercise can redo this: the DP table of "0 1 1" and its two parse trees."""
    g = Grammar(TOY)
    assert g.root == "S" and g.terminals == [0, 1] and g.eos == 2 and g.vocab_size == 3
    assert g.layered and g.levels == 2 and g.level_symbols == (("S",), ("A", "B"))
    table = g.chart([0, 1, 1])
    assert table["A"] == [(0, 1), (0, 2)]  # "0", "0 1"
    assert table["B"] == [(1, 2), (1, 3), (2, 3)]  # "1", "1 1", "1"
    assert (0, 3) in table["S"]  # S -> A(0, 1) B(1, 3) and S -> A(0, 2) B(2, 3)
    assert g.accepts([0, 1, 1]) and not g.accepts([1, 1]) and not g.accepts([]) and not g.accepts([0, 1, 2])
    assert g.string_probability([0, 1, 1]) == pytest.approx(0.25)  # two trees of probability 1/8
    assert derivation_language(g) == pytest.approx({(0, 1): 1 / 8, (0, 1, 1): 1 / 4, (0, 1, 1, 1): 1 / 8,
                                                    (1, 0, 1): 1 / 8, (1, 0): 1 / 8, (1, 1, 0, 1): 1 / 8,
                                                    (1, 1, 0): 1 / 8})
    assert g.next_token_probs([]) == pytest.approx({0: 0.5, 1: 0.5, 2: 0.0})
    assert g.next_token_probs([1, 1]) == pytest.approx({0: 1.0, 1: 0.0, 2: 0.0})
    assert "S -> A B | B A" in str(g) and "Grammar(root='S'" in repr(g)


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_dynamic_programs_match_brute_force(name):
    g = GRAMMARS[name]()
    lang = derivation_language(g)
    assert sum(lang.values()) == pytest.approx(1.0)
    longest = max(map(len, lang))
    assert g.length_range == (min(map(len, lang)), longest)

    # membership: exactly the language, among all strings of length <= longest + 1
    for length in range(longest + 2):
        for s in itertools.product(g.terminals, repeat=length):
            assert g.accepts(list(s)) == (s in lang), s
            assert g.string_probability(s) == pytest.approx(lang.get(s, 0.0), abs=1e-15)
    assert not g.accepts([g.eos]) and g.string_probability([g.eos]) == 0.0

    # prefix probabilities and next-token conditionals, for every prefix of every string
    prefixes: dict[tuple[int, ...], float] = {}
    for s, p in lang.items():
        for k in range(len(s) + 1):
            prefixes[s[:k]] = prefixes.get(s[:k], 0.0) + p
    for w, pw in prefixes.items():
        assert g.prefix_probability(w) == pytest.approx(pw, rel=1e-12)
        expected = {a: prefixes.get((*w, a), 0.0) / pw for a in g.terminals}
        expected[g.eos] = lang.get(w, 0.0) / pw
        got = g.next_token_probs(list(w))
        assert list(got) == [*g.terminals, g.eos]
        assert got == pytest.approx(expected, abs=1e-12) and sum(got.values()) == pytest.approx(1.0)
    for w in itertools.product(g.terminals, repeat=2):
        if w not in prefixes:
            assert g.prefix_probability(w) == 0.0
            with raises_invalid("prefix="):
                g.next_token_probs(w)

    # the table along a string: row k is the distribution after its first k tokens
    s = max(lang, key=len)
    table = g.next_token_table(s)
    assert table.shape == (len(s) + 1, g.vocab_size)
    for k in range(len(s) + 1):
        assert table[k] == pytest.approx(list(g.next_token_probs(s[:k]).values()))


def test_tiny_sampling_frequencies_match_string_probabilities():
    g = preset("tiny")
    lang = derivation_language(g)
    n = 20_000
    samples = g.sample(n, seed=5)
    counts: dict[tuple[int, ...], int] = {}
    for s in samples:
        counts[tuple(s)] = counts.get(tuple(s), 0) + 1
    assert set(counts) <= set(lang)
    chi2 = sum((counts.get(s, 0) - n * p) ** 2 / (n * p) for s, p in lang.items())
    df = len(lang) - 1
    assert chi2 < df + 6 * math.sqrt(2 * df), (chi2, df)  # far in the tail if sampling were off
    for s, p in lang.items():
        assert abs(counts.get(s, 0) / n - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-9, s


def test_samples_are_accepted_and_are_terminal_ints():
    for name, n in (("small", 200), ("medium", 60), ("cfg3b", 3)):
        g = preset(name)
        for s in g.sample(n, seed=1):
            assert all(type(t) is int and 0 <= t < len(g.terminals) for t in s)
            assert g.accepts(s), (name, s)


def test_cfg3b_dynamic_programs_are_fast_and_consistent():
    g = preset("cfg3b")
    s = g.sample(1, seed=2)[0]
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        assert g.accepts(s)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    probs = g.next_token_probs(s[: len(s) // 2])
    ntp_s = time.perf_counter() - start
    print(f"cfg3b: {len(s)} tokens, accepts {best:.3f} s, next_token_probs(half) {ntp_s:.3f} s")
    assert best < 1.0 and ntp_s < 2.0
    assert sum(probs.values()) == pytest.approx(1.0) and probs[s[len(s) // 2]] > 0 and probs[g.eos] == 0.0
    p = g.string_probability(s)
    assert 0.0 < p < 1e-20  # hundreds of binary choices, well inside float64
    assert g.prefix_probability(s) >= p


def test_chain_rule_along_sampled_strings():
    """P(string) = prod_k P(token_k | prefix) * P(eos | string), from one next-token table."""
    g = preset("small")
    for s in g.sample(5, seed=9):
        table = g.next_token_table(s)
        chain = math.prod(table[k, t] for k, t in enumerate(s)) * table[len(s), g.eos]
        assert chain == pytest.approx(g.string_probability(s), rel=1e-9)
        assert np.allclose(table.sum(1), 1.0)
        assert g.prefix_probability(s[:4]) == pytest.approx(math.prod(table[k, t] for k, t in enumerate(s[:4])))


@pytest.mark.parametrize("name, n, bound", [("small", 300, 0.95), ("medium", 200, 0.9)])
def test_single_token_corruptions_are_rejected(name, n, bound):
    g = preset(name)
    rng = np.random.default_rng(7)
    rejected = 0
    for s in g.sample(n, seed=3):
        bad = list(s)
        i = int(rng.integers(len(bad)))
        bad[i] = (bad[i] + int(rng.integers(1, len(g.terminals)))) % len(g.terminals)
        rejected += not g.accepts(bad)
    print(f"{name}: {rejected}/{n} = {rejected / n:.3f} of single-token substitutions rejected")
    assert rejected / n >= bound


def test_preset_lengths():
    stats = {name: preset(name).length_stats(1000, seed=0) for name in PRESETS}
    for name, st in stats.items():
        print(f"{name}: mean {st['mean']:.1f}, min {st['min']}, max {st['max']}")
        lo, hi = preset(name).length_range
        assert lo <= st["min"] <= st["mean"] <= st["max"] <= hi
    small = [len(s) for s in preset("small").sample(1000)]
    assert sum(length <= 48 for length in small) >= 900
    medium = [len(s) for s in preset("medium").sample(1000)]
    assert sum(length <= 128 for length in medium) >= 900
    assert 100 < stats["cfg3b"]["mean"] < 500 and stats["cfg3b"]["max"] > 128  # a few hundred tokens
    assert stats["small"]["mean"] < stats["medium"]["mean"] < stats["cfg3b"]["mean"]
    assert len(derivation_language(preset("tiny"))) <= 16  # a handful of strings


@pytest.mark.parametrize("name", list(PRESETS))
def test_generated_grammars_have_the_spec_shape(name):
    spec = PRESETS[name]
    for seed in range(3):
        g = generate(spec, seed)
        assert g.layered and g.levels == spec.levels and g.root == "N0_0" and g.spec == spec and g.seed == seed
        assert tuple(len(level) for level in g.level_symbols) == spec.symbols_per_level
        assert g.terminals == list(range(spec.terminals)) and g.eos == spec.terminals
        for level, symbols in enumerate(g.level_symbols):
            below = set(g.level_symbols[level + 1]) if level + 1 < spec.levels else set(g.terminals)
            assert {s for head in symbols for body in g.rules[head] for s in body} == below  # all reachable
            assert len({frozenset(g.rules[head]) for head in symbols}) == len(symbols)
            for head in symbols:
                assert head == f"N{level}_{symbols.index(head)}"
                bodies = g.rules[head]
                assert len(set(bodies)) == len(bodies)  # a symbol's rules differ
                assert spec.rules_per_symbol[0] <= len(bodies) <= spec.rules_per_symbol[1]
                assert all(spec.rule_lengths[0] <= len(b) <= spec.rule_lengths[1] for b in bodies)


def test_same_seed_same_grammar_and_samples():
    a, b, c = preset("small", seed=0), preset("small", seed=0), preset("small", seed=1)
    assert a.rules == b.rules and a.rules != c.rules
    assert a.sample(50, seed=4) == b.sample(50, seed=4)
    assert a.sample(50, seed=4) != a.sample(50, seed=5)
    assert a.sample(50, seed=4)[:10] == a.sample(10, seed=4)
    assert [list(p.tokens) for p in a.sample_trees(50, seed=4)] == a.sample(50, seed=4)
    assert str(generate(GrammarSpec(levels=3), seed=2)) == str(generate(GrammarSpec(levels=3), seed=2))


def spans(tree: tuple) -> list[tuple[int, str, int, int]]:
    """(depth, symbol, start, end) of every nonterminal node, from the tree alone."""
    out: list[tuple[int, str, int, int]] = []

    def visit(node: tuple, depth: int, start: int) -> int:
        end = start
        for child in node[1]:
            end = visit(child, depth + 1, end) if isinstance(child, tuple) else end + 1
        out.append((depth, node[0], start, end))
        return end

    visit(tree, 0, 0)
    return out


@pytest.mark.parametrize("name", ["toy", "preterminal", "tiny", "small", "medium"])
def test_parses_are_consistent_with_the_rules(name):
    g = GRAMMARS[name]() if name in GRAMMARS else preset(name)
    for parse in g.sample_trees(30, seed=1):
        assert isinstance(parse, Parse) and g.accepts(parse.tokens)
        n = len(parse.tokens)
        assert len(parse.ancestors) == n and len(parse.boundaries) == g.levels
        assert all(len(row) == n for row in parse.boundaries)
        for t, path in enumerate(parse.ancestors):
            assert len(path) == g.levels and path[0] == g.root
            for level in range(g.levels):
                assert path[level] in g.level_symbols[level]
                child = path[level + 1] if level + 1 < g.levels else parse.tokens[t]
                assert any(child in body for body in g.rules[path[level]])  # the expansion holds the child
        nodes = spans(parse.tree)
        for depth, symbol, start, end in nodes:
            for t in range(start, end):
                assert parse.ancestors[t][depth] == symbol
        for level in range(g.levels):
            ends = {end - 1 for depth, _, _, end in nodes if depth == level}
            assert [t for t in range(n) if parse.boundaries[level][t]] == sorted(ends)
        assert parse.boundaries[0] == (0,) * (n - 1) + (1,)
        for level in range(g.levels - 1):  # a subtree's end is an end of its last child too
            assert all(parse.boundaries[level + 1][t] for t in range(n) if parse.boundaries[level][t])
        stack = [parse.tree]  # the tree uses the grammar's rules
        while stack:
            symbol, children = stack.pop()
            assert tuple(c[0] if isinstance(c, tuple) else c for c in children) in g.rules[symbol]
            stack.extend(c for c in children if isinstance(c, tuple))
    if name == "preterminal":
        assert all(all(p.boundaries[-1]) for p in g.sample_trees(20))  # terminals hang one per last-level node


def test_bad_arguments_raise_one_line_errors():
    with raises_invalid("levels=0"):
        GrammarSpec(levels=0)
    with raises_invalid("symbols_per_level=(2, 3, 3)"):
        GrammarSpec(levels=3, symbols_per_level=(2, 3, 3))
    with raises_invalid("symbols_per_level=(1, 3)"):
        GrammarSpec(levels=3, symbols_per_level=(1, 3))
    with raises_invalid("symbols_per_level=0"):
        GrammarSpec(levels=3, symbols_per_level=0)
    with raises_invalid("terminals=0"):
        GrammarSpec(levels=3, terminals=0)
    with raises_invalid("rules_per_symbol=(3, 2)"):
        GrammarSpec(levels=3, rules_per_symbol=(3, 2))
    with raises_invalid("rules_per_symbol=0"):
        GrammarSpec(levels=3, rules_per_symbol=0)
    with raises_invalid("rule_lengths=(0, 2)"):
        GrammarSpec(levels=3, rule_lengths=(0, 2))
    with raises_invalid("rule_lengths='23'"):
        GrammarSpec(levels=3, rule_lengths="23")
    with raises_invalid("rules_per_symbol=5"):  # only 2 distinct right-hand sides of length 1 over 2 terminals
        GrammarSpec(levels=1, terminals=2, rules_per_symbol=5, rule_lengths=1)
    with raises_invalid("symbols_per_level=(1, 10)"):  # 2 rules x 2 symbols cannot reach 10 symbols
        GrammarSpec(levels=2, symbols_per_level=(1, 10), rules_per_symbol=2, rule_lengths=2)
    with raises_invalid("terminals=10"):
        GrammarSpec(levels=1, terminals=10, rules_per_symbol=1, rule_lengths=2)
    with raises_invalid("spec='cfg3b'"):
        generate("cfg3b")
    with raises_invalid("name='cfg3z'"):
        preset("cfg3z")
    with raises_invalid("seed=-1"):
        preset("tiny", seed=-1)
    g = Grammar(TOY)
    with raises_invalid("n=-1"):
        g.sample(-1)
    with raises_invalid("prefix=[5]"):
        g.next_token_probs([5])
    with raises_invalid("prefix="):
        g.next_token_probs([1, 1, 1])
    with raises_invalid("tokens=[1, 1, 1]"):
        g.next_token_table([1, 1, 1])
    with raises_invalid("tokens='01'"):
        g.accepts("01")
    with raises_invalid("rules="):
        Grammar(MIXED).sample_trees(1)
    # hand-built grammars
    with raises_invalid("rules='S -> S'"):
        Grammar({"S": [("S", 0), (0,)]})
    with raises_invalid("rules='A -> B -> A'"):
        Grammar({"S": [("A",)], "A": [("B", 0)], "B": [("A",), (1,)]})
    with raises_invalid("rules="):
        Grammar({"S": [("A",)]})  # A has no rules and is not a terminal int
    with raises_invalid("rules="):
        Grammar({"S": [(0,), (0,)]})  # the same rule twice
    with raises_invalid("rules="):
        Grammar({"S": [()]})
    with raises_invalid("rules="):
        Grammar({"S": [(0,)], "A": [(1,)]}, root="S")  # A unreachable
    with raises_invalid("root=None"):
        Grammar({"S": [(0,)], "A": [(1,)]})  # two candidate roots
    with raises_invalid("root='Z'"):
        Grammar(TOY, root="Z")
    with raises_invalid("terminals=1"):
        Grammar(TOY, terminals=1)
    assert Grammar(TOY, terminals=4).vocab_size == 5


# ---- the information in a string, and the training data ------------------------------------------------


def test_string_entropy_exact_against_brute_force_and_monte_carlo_within_its_error():
    for make in (GRAMMARS["toy"], GRAMMARS["tiny"], GRAMMARS["mixed"]):
        g = make()
        lang = derivation_language(g)
        exact = -sum(p * math.log2(p) for p in lang.values())
        got = string_entropy(g)
        assert got.exact and got.bits == pytest.approx(exact, abs=1e-12) and got.stderr == 0.0
        assert got.bits <= got.derivation_bits + 1e-12  # H(S) <= H(D): ambiguity merges trees
        mc = string_entropy(g, samples=2000, seed=1, max_derivations=0)
        assert not mc.exact and mc.samples == 2000
        assert abs(mc.bits - exact) <= 5 * mc.stderr + 1e-9, (mc, exact)
    toy = string_entropy(Grammar(TOY))
    assert toy.derivation_bits == pytest.approx(3.0) and toy.bits < 3.0  # "0 1 1" has two trees
    small = string_entropy(preset("small"))
    assert small.exact and small.bits == pytest.approx(10.5)  # seed 0: 5040 derivations, no two alike


def test_dataset_records_layout_and_loss_mask():
    data = CFGDataset("small", 8, seed=3)
    g = data.grammar
    T = len(g.terminals)
    assert isinstance(data, TokenDataset) and data.kind == "cfg" and data.n_items == 8
    assert (data.eos, data.bos, data.pad, data.vocab_size) == (T, T + 1, T + 2, T + 3) and data.eos == g.eos
    batch = data.exposure(0)
    strings = data.strings(0)
    n, width = batch.tokens.shape
    assert n == 8 and width == max(map(len, strings)) + 2 and batch.tokens.dtype == torch.int64
    for i, s in enumerate(strings):
        k = len(s)
        assert batch.tokens[i, 0] == data.bos and batch.tokens[i, 1 : k + 1].tolist() == s
        assert batch.tokens[i, k + 1] == data.eos and (batch.tokens[i, k + 2 :] == data.pad).all()
        assert batch.loss_mask[i].tolist() == [False] + [True] * (k + 1) + [False] * (width - k - 2)
        assert batch.spans["string"][i].tolist() == [1, k + 1] and batch.spans["eos"][i].tolist() == [k + 1, k + 2]
        assert g.accepts(batch.tokens[i, 1 : k + 1])
    assert data.decode(batch.tokens[0]).endswith("<eos>") and "<" not in data.decode(batch.tokens[0])[:-5]
    assert data.used_tokens().tolist() == list(range(T + 2))
    assert data.context == g.length_range[1] + 2
    assert [list(p.tokens) for p in data.trees(0)] == strings  # the parses of the same draws


def test_dataset_exposures_are_fresh_and_deterministic():
    a, b = CFGDataset("small", 32, seed=1), CFGDataset("small", 32, seed=1)
    assert torch.equal(b.exposure(3).tokens, a.exposure(3).tokens)  # b never rendered 0-2
    assert a.exposure(3) is a.exposure(3)  # the trainer's repeated asks cost nothing
    assert a.strings(0) != a.strings(1) and a.strings(0) != CFGDataset("small", 32, seed=2).strings(0)
    assert a.strings(2)[:8] != a.strings(3)[:8]
    for e in range(3):
        assert all(a.grammar.accepts(s) for s in a.strings(e))
    assert CFGDataset(preset("small", seed=1), 4).grammar.rules == preset("small", seed=1).rules
    assert CFGDataset("small", 4, grammar_seed=1).grammar.rules == preset("small", seed=1).rules


def test_dataset_information_and_no_bits_learned():
    data = CFGDataset("tiny", 10)
    assert data.information_bits() == pytest.approx(10 * 3.0)  # eight equally likely strings
    with pytest.raises(NotImplementedError, match="kl_to_grammar"):
        data.bits_learned({"string": torch.zeros(10)})


def test_registry_builds_cfg_datasets():
    spec = {"data": "cfg", "grammar": "small", "N": 16, "seed": 0}
    data = make_dataset(spec)
    assert isinstance(data, CFGDataset) and data.n_items == 16 and data.seed == 0
    assert data.grammar.rules == preset("small").rules
    assert torch.equal(data.exposure(0).tokens, CFGDataset("small", 16, seed=0).exposure(0).tokens)
    assert make_dataset({**spec, "data_seed": 5}).seed == 5 and make_dataset(spec, N=4).n_items == 4
    assert make_dataset({**spec, "grammar_seed": 2}).grammar.rules == preset("small", seed=2).rules
    assert context_length(spec, data) == preset("small").length_range[1] + 2
    assert data_keys({"kind": "cfg", "grammar": "tiny"}) == {"data": "cfg", "grammar": "tiny", "grammar_seed": 0}
    assert max_people(spec) >= 10**9
    with raises_invalid("grammar='huge'"):
        make_dataset({**spec, "grammar": "huge"})
    with raises_invalid("grammar=None"):
        make_dataset({"data": "cfg", "N": 4})


def test_a_tiny_transformer_trains_on_grammar_strings():
    data = CFGDataset("small", 64, seed=0)
    model = Transformer(tiny(data.vocab_size, max_len=data.context), seed=0)
    history = train(model, data, exposures=5, batch_size=16, lr=1e-2, progress=False, device="cpu", log_every=1)
    assert history.total_steps == 20 == len(history.losses)
    print(f"loss {history.losses[0]:.3f} -> {history.losses[-1]:.3f} nats per token")
    assert history.losses[0] > math.log(data.vocab_size) - 0.2  # about uniform at the start
    assert np.mean(history.losses[-4:]) < np.mean(history.losses[:4]) - 0.3


def test_dataset_bad_arguments():
    with raises_invalid("grammar='huge'"):
        CFGDataset("huge", 4)
    with raises_invalid("grammar=3"):
        CFGDataset(3, 4)
    with raises_invalid("n_items=0"):
        CFGDataset("tiny", 0)
    with raises_invalid("index=-1"):
        CFGDataset("tiny", 2).exposure(-1)
    with raises_invalid("strings="):
        CFGDataset("tiny", 2).render([[0, 2]])
    with raises_invalid("samples=1"):
        string_entropy(preset("tiny"), samples=1)
