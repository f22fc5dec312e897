"""Synthetic layered context-free grammars: the cfg3 family of Part 1 (allenzhu2023part1).

Why: Allen-Zhu & Li, "Physics of Language Models: Part 1, Learning Hierarchical Language Structures"
(allenzhu2023part1) ask whether a transformer trained on strings of a deep, ambiguous grammar learns the
grammar itself: does it generate strings the grammar accepts, does it match the true next-token
distribution, and do its hidden states encode the parse (each token's nonterminal ancestors and where
subtrees end)? This module supplies all three ground truths exactly: membership by dynamic programming,
the generative process's next-token distribution, and the parse of every sampled string.

Grammar shape (:class:`GrammarSpec`). ``levels`` nonterminal levels; level 0 is the single root, level l
has ``symbols_per_level[l]`` symbols; each symbol of level l has ``rules_per_symbol`` rules whose right-
hand sides are ``rule_lengths`` symbols of level l + 1; the last level's rules produce terminals. The
grammar is not recursive, so its language is finite, but ambiguous: one string can have several parse
trees, and only a dynamic program over spans can tell whether a string belongs. ``cfg3b`` (root + five
levels of 3 symbols, 3 terminals, 2 rules of length 2 or 3) gives strings of a few hundred tokens.

Encoding. Terminals are the ints ``0 .. T-1`` and are the only tokens :meth:`Grammar.sample` emits; the
end-of-string marker is the int ``eos = T``, so a model over ids ``0 .. T`` has ``vocab_size = T + 1``.
Nonterminals are strings: generated grammars name the i-th symbol of level l ``"N<l>_<i>"`` (root
``"N0_0"``); hand-built grammars may use any strings (``"S"``, ``"A"``). A dataset that adds the lab's
special tokens shifts these ids; this module knows nothing of them.

Generative process. A string is derived from the root by replacing every nonterminal with one of its
rules, chosen uniformly at random among that symbol's rules, independently at each node, until only
terminals remain. The probability of a string is the sum over its parse trees of the product of
``1 / len(rules[X])`` over the tree's nodes.

Dynamic programs (all exact, float64; ``n`` the string length, ``R`` the number of rules, ``k <= 3``):

* Inside chart: for every nonterminal X the (n+1) x (n+1) matrix ``I_X[i, j] = P(X derives w[i:j])``
  (for membership its 0/1 version ``X =>* w[i:j]``). A rule ``X -> Y Z W`` contributes the matrix product
  ``I_Y @ I_Z @ I_W``, so ternary rules need no binarization; children come before parents, and since
  nothing is recursive one pass suffices. Cost O(R k n^3) multiply-adds in torch matrix products; on one
  CPU thread, for a 200-token cfg3b string, about 15 ms as 0/1 (:meth:`Grammar.accepts`) and 30 ms in
  float64 (:meth:`Grammar.string_probability`, :meth:`Grammar.next_token_probs` of the whole string);
  about 1 ms for a ``"small"`` or ``"medium"`` string.
* Prefix probabilities: ``Q_X[i, a] = P(X's yield starts with w[i:n] + a)`` for every next token a at
  once. The child of a rule that holds the last prefix token is unique, so ``X -> Y1 .. Yk`` contributes
  ``sum_m I_Y1 .. I_Y(m-1) Q_Ym`` (children after it are free: probability 1), evaluated Horner-style
  with matrix-vector products. Then ``P(next = a | w) = Q_root[0, a] / P(w)`` and
  ``P(eos | w) = I_root[0, n] / P(w)``, with ``P(w) = sum_a Q_root[0, a] + I_root[0, n]``. The inside
  chart of a string contains that of each of its prefixes, so :meth:`Grammar.next_token_table` gives the
  distribution after every prefix of a string for one chart plus O(R k n^2 T) per prefix (about 0.35 s
  for all 200 prefixes of a 200-token cfg3b string, against 200 separate calls of 5-30 ms each).

Floats suffice: a derivation's probability is at least ``(1 / max rules) ** nodes``, 2**-364 for the 364
nodes of the longest possible cfg3b tree (729 tokens), far above float64's 1e-308 (a grammar with thousands
of binary choices per string would need log space). A prefix no string starts with makes
:meth:`Grammar.next_token_probs` raise ``ValueError``; :meth:`Grammar.prefix_probability` and
:meth:`Grammar.string_probability` return 0 for it.

Training data (:class:`CFGDataset`). Part 1 trains on fresh samples: every exposure draws ``n_items`` new
strings, rendered ``[BOS, t_1 .. t_n, EOS]`` with the grammar's own ids (terminals ``0 .. T-1``, ``EOS = T``)
and ``BOS = T + 1``, ``PAD = T + 2`` appended, so a model's logits over ids ``0 .. T`` compare with
:meth:`Grammar.next_token_probs` column for column. :func:`string_entropy` gives the Shannon information of
one string (exact by enumeration for small languages, else a Monte-Carlo estimate), the data's information
content per exposure.

A toy grammar to check by hand (ambiguous: ``0 1 1`` is ``A(0 1) B(1)`` and ``A(0) B(1 1)``)::

    >>> g = Grammar({"S": [("A", "B"), ("B", "A")], "A": [(0, 1), (0,)], "B": [(1,), (1, 1)]})
    >>> g.accepts([0, 1, 1]), g.accepts([1, 1])
    (True, False)
    >>> g.chart([0, 1, 1])  # the DP table: spans [i, j) each nonterminal derives
    {'A': [(0, 1), (0, 2)], 'B': [(1, 2), (1, 3), (2, 3)], 'S': [(0, 2), (0, 3)]}
    >>> g.string_probability([0, 1, 1])  # two trees, each 1/2 * 1/2 * 1/2
    0.25
    >>> g.next_token_probs([0, 1])  # after "0 1": S = A(0 1) B(...) or A(0) B(1 ...), or stop at A(0) B(1)
    {0: 0.0, 1: 0.75, 2: 0.25}

Here ``S -> A B`` reaches the top-right cell (0, 3) through the split A(0, 1) B(1, 3) and the split
A(0, 2) B(2, 3); token 2 is ``eos``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from labkit.checks import check_choice, check_int, invalid
from labkit.data import rng_for
from labkit.data.base import TokenBatch

if TYPE_CHECKING:
    from labkit.info import BitsLearned

__all__ = ["PRESETS", "CFGDataset", "Grammar", "GrammarSpec", "Parse", "StringEntropy", "generate", "preset",
           "string_entropy"]

Symbol = int | str  # a terminal token (int) or a nonterminal (str)
_STREAM_GRAMMAR, _STREAM_SAMPLES = 41, 42
_STREAM_EXPOSURE, _STREAM_ENTROPY = 43, 44  # CFGDataset's exposures, string_entropy's Monte-Carlo samples
_MAX_ATTEMPTS = 10_000  # redraws of one level's rules before a spec is declared too tight to satisfy


def _int_range(name: str, value: object, low: int) -> tuple[int, int]:
    """``value`` as an inclusive ``(min, max)`` pair: an int ``k`` means ``(k, k)``."""
    allowed = f"an int >= {low} or a (min, max) pair of ints with {low} <= min <= max"

    def integer(v: object) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if integer(value):
        if int(value) < low:
            raise invalid(name, value, allowed)
        return int(value), int(value)
    if (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
            and all(integer(v) for v in value) and low <= value[0] <= value[1]):
        return int(value[0]), int(value[1])
    raise invalid(name, value, allowed)


@dataclass(frozen=True)
class GrammarSpec:
    """The sizes of a layered grammar (module docstring); values are checked and normalized on creation.

    levels:            nonterminal levels including the root's, 1 to 16 (cfg3b: 6 = root + 5).
    symbols_per_level: symbols of each level; an int k means ``(1, k, ..., k)``, a tuple has ``levels``
                       entries and starts with 1 (the root).
    terminals:         terminal tokens T (ids 0 .. T-1).
    rules_per_symbol:  rules per nonterminal, an int or an inclusive (min, max) range drawn per symbol.
    rule_lengths:      right-hand-side length, an int or an inclusive (min, max) range drawn per rule.

    After creation ``symbols_per_level`` is a tuple and both ranges are (min, max) pairs.
    """

    levels: int
    symbols_per_level: int | tuple[int, ...] = 3
    terminals: int = 3
    rules_per_symbol: int | tuple[int, int] = (2, 2)
    rule_lengths: int | tuple[int, int] = (2, 3)

    def __post_init__(self) -> None:
        levels = check_int("levels", self.levels, 1, 16)
        per_level = self.symbols_per_level
        allowed = f"an int >= 1 or a tuple of {levels} ints >= 1 whose first entry is 1 (the root)"
        if isinstance(per_level, numbers.Integral) and not isinstance(per_level, bool):
            if per_level < 1:
                raise invalid("symbols_per_level", per_level, allowed)
            per_level = (1,) + (int(per_level),) * (levels - 1)
        elif (isinstance(per_level, Sequence) and not isinstance(per_level, str) and len(per_level) == levels
              and all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1 for k in per_level)
              and per_level[0] == 1):
            per_level = tuple(int(k) for k in per_level)
        else:
            raise invalid("symbols_per_level", self.symbols_per_level, allowed)
        terminals = check_int("terminals", self.terminals, 1)
        rules = _int_range("rules_per_symbol", self.rules_per_symbol, 1)
        lengths = _int_range("rule_lengths", self.rule_lengths, 1)
        below = (*per_level[1:], terminals)
        for level, (parents, children) in enumerate(zip(per_level, below, strict=True)):
            distinct = sum(children**k for k in range(lengths[0], lengths[1] + 1))
            if rules[1] > distinct:  # a symbol's rules must differ
                raise invalid("rules_per_symbol", self.rules_per_symbol,
                              f"at most {distinct} rules: the distinct right-hand sides of lengths {lengths} "
                              f"over the {children} symbols below level {level}")
            if parents * rules[1] * lengths[1] < children:  # every symbol below must be reachable
                name = "terminals" if level == levels - 1 else "symbols_per_level"
                raise invalid(name, self.terminals if name == "terminals" else self.symbols_per_level,
                              f"at most {parents * rules[1] * lengths[1]} symbols below level {level}, "
                              f"the slots its {parents} symbol(s) x {rules[1]} rules x {lengths[1]} offer")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "symbols_per_level", per_level)
        object.__setattr__(self, "terminals", terminals)
        object.__setattr__(self, "rules_per_symbol", rules)
        object.__setattr__(self, "rule_lengths", lengths)


# Lengths of 1000 strings of each preset's seed-0 grammar (length_stats()): mean, min - max.
PRESETS: dict[str, GrammarSpec] = {
    # Part 1's cfg3b: root, five levels of 3 symbols, 3 terminals, 2 rules of length 2-3: 64-729 tokens
    # possible; seed 0: mean 203, 147 - 263.
    "cfg3b": GrammarSpec(levels=6, symbols_per_level=3, terminals=3, rules_per_symbol=2, rule_lengths=(2, 3)),
    # cfg3b two levels shallower: 16-81 tokens, so every string fits a context of 128; seed 0: mean 31, 23 - 39.
    "medium": GrammarSpec(levels=4, symbols_per_level=3, terminals=3, rules_per_symbol=2, rule_lengths=(2, 3)),
    # Root + 2 levels with rules of 2-4 symbols: 8-64 tokens, mostly <= 48 (a context a CPU model trains
    # on in minutes); seed 0: mean 21, 11 - 35.
    "small": GrammarSpec(levels=3, symbols_per_level=3, terminals=3, rules_per_symbol=2, rule_lengths=(2, 4)),
    # Root + 1 level over 2 terminals: about ten strings, few enough to enumerate by hand or brute force;
    # seed 0: 8 strings, mean 5.0, 4 - 6.
    "tiny": GrammarSpec(levels=2, symbols_per_level=2, terminals=2, rules_per_symbol=2, rule_lengths=(2, 3)),
}


@dataclass(frozen=True)
class Parse:
    """One sampled string with its parse tree: the targets of Part 1's linear probes.

    tokens:     the terminal tokens.
    ancestors:  per token, its nonterminal ancestors from the root down: ``ancestors[t][l]`` is the level-l
                symbol above token t (a tuple of length ``levels``).
    boundaries: per level l, a 0/1 per token: 1 where the token is the last of a level-l subtree
                (level 0: only the last token; the last level: the end of each terminal group, so every
                token when the last level's rules are single terminals).
    tree:       the derivation as nested ``(symbol, children)`` tuples; leaves are tokens.
    """

    tokens: tuple[int, ...]
    ancestors: tuple[tuple[str, ...], ...]
    boundaries: tuple[tuple[int, ...], ...]
    tree: tuple


class Grammar:
    """A finite (non-recursive) context-free grammar with uniformly random rule choice (module docstring).

    ``rules`` maps each nonterminal (a str) to its right-hand sides (sequences of nonterminals and terminal
    ints); any symbol without rules is a terminal. ``root`` defaults to the one nonterminal that appears on
    no right-hand side; ``terminals`` (T, the token vocabulary) defaults to the largest terminal + 1.
    A symbol's rules must differ, every nonterminal must be reachable from the root, and no nonterminal may
    derive itself: the language is then finite and every probability below exact.

    ``spec`` and ``seed`` record where a generated grammar came from (``None`` for hand-built ones).
    """

    def __init__(self, rules: Mapping[str, Sequence[Sequence[Symbol]]], root: str | None = None,
                 terminals: int | None = None, *, spec: GrammarSpec | None = None, seed: int | None = None) -> None:
        if not isinstance(rules, Mapping) or not rules:
            raise invalid("rules", rules, "a non-empty mapping nonterminal (str) -> list of right-hand sides")
        self.rules: dict[str, list[tuple[Symbol, ...]]] = {}
        for head, bodies in rules.items():
            if not isinstance(head, str):
                raise invalid("rules", head, "nonterminals that are strings (terminals are ints)")
            if isinstance(bodies, str) or not isinstance(bodies, Sequence) or not bodies:
                raise invalid("rules", f"{head} -> {bodies!r}", "a non-empty list of right-hand sides per nonterminal")
            self.rules[head] = []
            for body in bodies:
                if isinstance(body, str) or not isinstance(body, Sequence) or not body:
                    raise invalid("rules", f"{head} -> {body!r}", "non-empty sequences of symbols as right-hand sides")
                for s in body:
                    terminal = isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0
                    if not (terminal or (isinstance(s, str) and s in rules)):
                        raise invalid("rules", f"{head} -> {body!r}",
                                      f"symbols that are terminal ints >= 0 or nonterminals with rules, not {s!r}")
                rhs = tuple(s if isinstance(s, str) else int(s) for s in body)
                if rhs in self.rules[head]:
                    raise invalid("rules", f"{head} -> {body!r}", "distinct right-hand sides for each nonterminal")
                self.rules[head].append(rhs)
        used = {s for bodies in self.rules.values() for body in bodies for s in body}
        order = self._children_first()
        if root is None:
            tops = [head for head in self.rules if head not in used]
            if len(tops) != 1:
                raise invalid("root", root,
                              f"one of {list(self.rules)} (no single nonterminal is on no right-hand side)")
            root = tops[0]
        if root not in self.rules:
            raise invalid("root", root, f"a nonterminal with rules: {', '.join(map(repr, self.rules))}")
        self.root: str = root
        largest = max((s for s in used if isinstance(s, int)), default=-1)
        if largest < 0:
            raise invalid("rules", rules, "at least one terminal token")
        n_terminals = largest + 1 if terminals is None else check_int("terminals", terminals, largest + 1)
        self.terminals: list[int] = list(range(n_terminals))
        self.eos: int = n_terminals
        self.spec, self.seed = spec, seed
        reachable, frontier = {root}, [root]
        while frontier:
            frontier = [s for head in frontier for body in self.rules[head] for s in body
                        if isinstance(s, str) and s not in reachable]
            reachable.update(frontier)
        unreachable = [head for head in self.rules if head not in reachable]
        if unreachable:
            raise invalid("rules", unreachable, f"every nonterminal reachable from the root {root!r}")
        self._order = order
        self.levels, self.layered, self.level_symbols = self._layers()
        self.length_range: tuple[int, int] = self._lengths()
        self._terminal_rules = {head: [all(isinstance(s, int) for s in body) for body in bodies]
                                for head, bodies in self.rules.items()}

    # ---------------------------------------------------------------------------------------------
    # Structure
    # ---------------------------------------------------------------------------------------------

    def _children_first(self) -> list[str]:
        """Every nonterminal, each after all it can derive; rejects recursion (the language must be finite)."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(head: str, path: tuple[str, ...]) -> None:
            state[head] = 1
            for body in self.rules[head]:
                for s in body:
                    if isinstance(s, str):
                        if state.get(s) == 1:
                            chain = (*path, head)
                            cycle = " -> ".join((*chain[chain.index(s):], s))
                            raise invalid("rules", cycle, "a non-recursive grammar (no nonterminal derives itself)")
                        if s not in state:
                            visit(s, (*path, head))
            state[head] = 2
            order.append(head)

        for head in self.rules:
            if head not in state:
                visit(head, ())
        return order

    def _layers(self) -> tuple[int, bool, tuple[tuple[str, ...], ...]]:
        """(levels, layered, symbols of each level). Layered: each nonterminal sits at one depth, expands
        into nonterminals of the next depth only or into terminals only, and terminals hang below the
        deepest level alone. ``levels`` is then the number of depths (else the longest nonterminal chain)."""
        depth: dict[str, int] = {self.root: 0}
        layered, frontier = True, [self.root]
        while frontier:
            nxt: list[str] = []
            for head in frontier:
                for body in self.rules[head]:
                    kinds = {isinstance(s, str) for s in body}
                    layered &= len(kinds) == 1
                    for s in body:
                        if isinstance(s, str):
                            if s not in depth:
                                depth[s] = depth[head] + 1
                                nxt.append(s)
                            layered &= depth[s] == depth[head] + 1
            frontier = nxt
        chain: dict[str, int] = {}
        for head in self._order:
            below = [chain[s] for body in self.rules[head] for s in body if isinstance(s, str)]
            chain[head] = 1 + max(below, default=0)
        levels = chain[self.root]
        deepest = max(depth.values())
        for head, bodies in self.rules.items():
            makes_terminals = any(isinstance(s, int) for body in bodies for s in body)
            layered &= makes_terminals == (depth[head] == deepest)
        by_level = tuple(tuple(h for h in self.rules if depth[h] == d) for d in range(deepest + 1))
        return levels, layered and levels == deepest + 1, by_level

    def _lengths(self) -> tuple[int, int]:
        shortest: dict[Symbol, int] = {}
        longest: dict[Symbol, int] = {}
        for head in self._order:
            shortest[head] = min(sum(shortest.get(s, 1) for s in body) for body in self.rules[head])
            longest[head] = max(sum(longest.get(s, 1) for s in body) for body in self.rules[head])
        return shortest[self.root], longest[self.root]

    @property
    def vocab_size(self) -> int:
        """Terminals plus ``eos``: a model predicts ids ``0 .. T`` (T = ``eos``)."""
        return len(self.terminals) + 1

    def __repr__(self) -> str:
        where = f", spec={self.spec}, seed={self.seed}" if self.spec is not None else ""
        return (f"Grammar(root={self.root!r}, nonterminals={len(self.rules)}, terminals={len(self.terminals)}, "
                f"levels={self.levels}{where})")

    def __str__(self) -> str:
        """The rules, one nonterminal a line: ``N0_0 -> N1_0 N1_2 | N1_1 N1_1``."""
        return "\n".join(f"{head} -> " + " | ".join(" ".join(map(str, body)) for body in bodies)
                         for head, bodies in self.rules.items())

    # ---------------------------------------------------------------------------------------------
    # Sampling
    # ---------------------------------------------------------------------------------------------

    def _derive(self, rng: np.random.Generator) -> list[int]:
        """One string: expand every nonterminal of the current sequence at once, left to right, until none
        is left; rule choices are uniform (one uniform draw per nonterminal, in that order)."""
        seq: list[Symbol] = [self.root]
        rules = self.rules
        while True:
            pending = sum(1 for s in seq if isinstance(s, str))
            if not pending:
                return seq  # type: ignore[return-value]
            draws = iter(rng.random(pending).tolist())
            nxt: list[Symbol] = []
            for s in seq:
                if isinstance(s, str):
                    bodies = rules[s]
                    nxt.extend(bodies[int(next(draws) * len(bodies))])
                else:
                    nxt.append(s)
            seq = nxt

    def _derive_tree(self, rng: np.random.Generator) -> tuple:
        """The derivation of :meth:`_derive` (same draws in the same order) kept as a tree."""
        root: list = [self.root, None]
        frontier = [root]
        while frontier:
            draws = rng.random(len(frontier)).tolist()
            nxt = []
            for node, u in zip(frontier, draws, strict=True):
                bodies = self.rules[node[0]]
                node[1] = [[s, None] if isinstance(s, str) else s for s in bodies[int(u * len(bodies))]]
                nxt.extend(c for c in node[1] if isinstance(c, list))
            frontier = nxt

        def freeze(node: list) -> tuple:
            return node[0], tuple(freeze(c) if isinstance(c, list) else c for c in node[1])

        return freeze(root)

    def sample(self, n: int, seed: int = 0) -> list[list[int]]:
        """``n`` strings of the generative process (token lists). Same seed, same strings; the first k
        strings of ``sample(n, seed)`` are ``sample(k, seed)``, and they are the tokens of ``sample_trees``."""
        n = check_int("n", n, 0)
        rng = rng_for(seed, _STREAM_SAMPLES)
        return [self._derive(rng) for _ in range(n)]

    def sample_trees(self, n: int, seed: int = 0) -> list[Parse]:
        """``n`` strings with their parses (:class:`Parse`); the same strings as ``sample(n, seed)``.
        Needs a layered grammar, so that every token has one ancestor per level."""
        n = check_int("n", n, 0)
        if not self.layered:
            raise invalid("rules", self.root, "a layered grammar for parses (every level expands into the next)")
        rng = rng_for(seed, _STREAM_SAMPLES)
        return [self._parse(self._derive_tree(rng)) for _ in range(n)]

    def _parse(self, tree: tuple) -> Parse:
        tokens: list[int] = []
        ancestors: list[tuple[str, ...]] = []
        ends: list[list[int]] = [[] for _ in range(self.levels)]

        def visit(node: tuple, path: tuple[str, ...]) -> None:
            path = (*path, node[0])
            for child in node[1]:
                if isinstance(child, tuple):
                    visit(child, path)
                else:
                    tokens.append(child)
                    ancestors.append(path)
            ends[len(path) - 1].append(len(tokens) - 1)

        visit(tree, ())
        boundaries = []
        for marks in ends:
            row = [0] * len(tokens)
            for t in marks:
                row[t] = 1
            boundaries.append(tuple(row))
        return Parse(tuple(tokens), tuple(ancestors), tuple(boundaries), tree)

    def length_stats(self, n: int = 1000, seed: int = 0) -> dict[str, float]:
        """Mean, min and max length of ``n`` sampled strings (context lengths for a model)."""
        lengths = [len(s) for s in self.sample(check_int("n", n, 1), seed)]
        return {"mean": sum(lengths) / len(lengths), "min": min(lengths), "max": max(lengths)}

    # ---------------------------------------------------------------------------------------------
    # Dynamic programs
    # ---------------------------------------------------------------------------------------------

    def _tokens(self, tokens: Sequence[int], name: str) -> list[int] | None:
        """``tokens`` as a list of ints; ``None`` when one is an int outside the terminals (e.g. eos)."""
        if hasattr(tokens, "tolist"):
            tokens = tokens.tolist()  # numpy arrays, torch tensors
        if isinstance(tokens, str) or not isinstance(tokens, Sequence):
            raise invalid(name, tokens, "a sequence of terminal ints")
        out = []
        for t in tokens:
            if not isinstance(t, numbers.Integral) or isinstance(t, bool):
                raise invalid(name, tokens, "a sequence of terminal ints")
            if not 0 <= t < len(self.terminals):
                return None
            out.append(int(t))
        return out

    def _inside(self, tokens: list[int], boolean: bool) -> dict[Symbol, torch.Tensor]:
        """The inside chart: ``I[X][i, j]`` = P(X derives tokens[i:j]) (``boolean``: 1 if it can, float32).

        Terminal a's matrix has ones at (i, i + 1) where tokens[i] == a; a rule's matrix is the product of
        its children's, and all-terminal rules are matched directly on the token array. The products run in
        torch, so they use ``torch.get_num_threads()`` threads like the rest of the lab (one under
        ``labkit.setup``: on a busy 2-core machine a second BLAS thread makes these products 10x slower)."""
        n = len(tokens)
        dtype = torch.float32 if boolean else torch.float64
        tok = torch.tensor(tokens, dtype=torch.int64)
        chart: dict[Symbol, torch.Tensor] = {}
        for a in self.terminals:
            m = torch.zeros((n + 1, n + 1), dtype=dtype)
            at = torch.nonzero(tok == a).flatten()
            m[at, at + 1] = 1
            chart[a] = m
        for head in self._order:
            bodies = self.rules[head]
            weight = 1.0 if boolean else 1.0 / len(bodies)
            acc = torch.zeros((n + 1, n + 1), dtype=dtype)
            for body, terminal_only in zip(bodies, self._terminal_rules[head], strict=True):
                k = len(body)
                if terminal_only:
                    if k <= n:
                        match = torch.ones(n - k + 1, dtype=torch.bool)
                        for q, a in enumerate(body):
                            match &= tok[q : n - k + 1 + q] == a
                        at = torch.nonzero(match).flatten()
                        acc[at, at + k] += weight
                    continue
                product = chart[body[0]]
                for s in body[1:]:
                    product = product @ chart[s]
                    if boolean:
                        product.clamp_(max=1)
                acc += weight * product
            if boolean:
                acc.clamp_(max=1)
            chart[head] = acc
        return chart

    def accepts(self, tokens: Sequence[int]) -> bool:
        """Whether the grammar derives exactly ``tokens`` (0/1 inside chart; False for tokens that are not
        terminals, e.g. ``eos``, and for the empty string)."""
        toks = self._tokens(tokens, "tokens")
        if not toks or not self.length_range[0] <= len(toks) <= self.length_range[1]:
            return False
        return bool(self._inside(toks, boolean=True)[self.root][0, len(toks)] > 0)

    def chart(self, tokens: Sequence[int]) -> dict[str, list[tuple[int, int]]]:
        """The DP table of :meth:`accepts`: for each nonterminal the spans ``(i, j)`` with ``X =>* tokens[i:j]``
        (the string is accepted iff ``(0, len(tokens))`` is among the root's)."""
        toks = self._tokens(tokens, "tokens")
        if toks is None:
            raise invalid("tokens", tokens, f"terminal ints 0 .. {len(self.terminals) - 1}")
        table = self._inside(toks, boolean=True)
        return {head: [(int(i), int(j)) for i, j in torch.nonzero(table[head]).tolist()] for head in sorted(self.rules)}

    def string_probability(self, tokens: Sequence[int]) -> float:
        """P(a sampled string equals ``tokens``): the inside probability of the root over the whole string,
        summed over all parse trees."""
        toks = self._tokens(tokens, "tokens")
        if not toks or not self.length_range[0] <= len(toks) <= self.length_range[1]:
            return 0.0
        return float(self._inside(toks, boolean=False)[self.root][0, len(toks)])

    def _extensions(self, chart: dict[Symbol, torch.Tensor], k: int) -> torch.Tensor:
        """``Q[root][0, a]`` = P(a sampled string starts with w[:k] + a) for every terminal a, where ``chart``
        is the inside chart of a string w whose first k tokens are the prefix (module docstring)."""
        n_terminals = len(self.terminals)
        sub = {s: m[: k + 1, : k + 1] for s, m in chart.items()}
        q: dict[Symbol, torch.Tensor] = {}
        for a in self.terminals:
            base = torch.zeros((k + 1, n_terminals), dtype=torch.float64)
            base[k, a] = 1.0  # a terminal starts "w[j:k] + a" only as the final a, at j = k
            q[a] = base
        for head in self._order:
            bodies = self.rules[head]
            acc = torch.zeros((k + 1, n_terminals), dtype=torch.float64)
            for body in bodies:
                tail = q[body[-1]]
                for s in reversed(body[:-1]):  # sum_m I_1 .. I_(m-1) Q_m, Horner-style
                    tail = q[s] + sub[s] @ tail
                acc += tail
            q[head] = acc / len(bodies)
        return q[self.root][0]

    def prefix_probability(self, prefix: Sequence[int]) -> float:
        """P(a sampled string starts with ``prefix``); 1 for the empty prefix, 0 if no string does."""
        toks = self._tokens(prefix, "prefix")
        if toks is None or len(toks) > self.length_range[1]:
            return 0.0
        if not toks:
            return 1.0
        chart = self._inside(toks, boolean=False)
        return float(self._extensions(chart, len(toks) - 1)[toks[-1]])

    def _distribution(self, chart: dict[Symbol, torch.Tensor], k: int) -> np.ndarray | None:
        """(T + 1,) next-token probabilities after the first k tokens of ``chart``'s string; None if P = 0."""
        ext = self._extensions(chart, k).numpy()
        stop = float(chart[self.root][0, k]) if k > 0 else 0.0
        total = ext.sum() + stop
        if not total > 0:
            return None
        return np.append(ext, stop) / total

    def next_token_probs(self, prefix: Sequence[int]) -> dict[int, float]:
        """The true next-token distribution after ``prefix``: ``{token: p, ..., eos: p}`` over every terminal
        and ``eos`` (zeros included; the values sum to 1). ``P(a | w) = P(w + a ...) / P(w ...)``, exactly.
        Raises ``ValueError`` for a prefix no string starts with."""
        toks = self._tokens(prefix, "prefix")
        if toks is None:
            raise invalid("prefix", prefix, f"terminal ints 0 .. {len(self.terminals) - 1}")
        probs = None
        if len(toks) <= self.length_range[1]:
            probs = self._distribution(self._inside(toks, boolean=False), len(toks))
        if probs is None:
            raise invalid("prefix", prefix, "a prefix of some string of the grammar (this one has probability 0)")
        return {a: float(p) for a, p in zip([*self.terminals, self.eos], probs, strict=True)}

    def next_token_table(self, tokens: Sequence[int]) -> np.ndarray:
        """(len(tokens) + 1, vocab_size) array: row k is :meth:`next_token_probs` of ``tokens[:k]`` (column
        ``eos`` last), from one inside chart of ``tokens``: the ground truth to score a model's predictions
        along a whole string. Raises ``ValueError`` if ``tokens`` is not a prefix of some string."""
        toks = self._tokens(tokens, "tokens")
        if toks is None or len(toks) > self.length_range[1]:
            raise invalid("tokens", tokens, "a prefix of some string of the grammar")
        chart = self._inside(toks, boolean=False)
        rows = []
        for k in range(len(toks) + 1):
            row = self._distribution(chart, k)
            if row is None:
                raise invalid("tokens", tokens, f"a prefix of some string of the grammar (tokens[:{k}] is not)")
            rows.append(row)
        return np.stack(rows)


# -------------------------------------------------------------------------------------------------
# Random grammars
# -------------------------------------------------------------------------------------------------


def _draw_level(rng: np.random.Generator, parents: list[str], below: list[Symbol], spec: GrammarSpec,
                level: int) -> dict[str, list[tuple[Symbol, ...]]]:
    """Rules of one level, drawn uniformly and redrawn until a symbol's rules differ, no two symbols of the
    level have the same rule set, and every symbol (or terminal) below is used."""
    (r_lo, r_hi), (l_lo, l_hi) = spec.rules_per_symbol, spec.rule_lengths
    for _ in range(_MAX_ATTEMPTS):
        drawn: dict[str, list[tuple[Symbol, ...]]] = {}
        for head in parents:
            count = int(rng.integers(r_lo, r_hi + 1))
            lengths = rng.integers(l_lo, l_hi + 1, size=count)
            drawn[head] = [tuple(below[int(i)] for i in rng.integers(0, len(below), size=int(k))) for k in lengths]
        distinct = all(len(set(bodies)) == len(bodies) for bodies in drawn.values())
        sets = {frozenset(bodies) for bodies in drawn.values()}
        used = {s for bodies in drawn.values() for body in bodies for s in body}
        if distinct and len(sets) == len(parents) and len(used) == len(below):
            return drawn
    raise invalid("symbols_per_level", spec.symbols_per_level,
                  f"sizes whose level-{level} rules can use every symbol below with distinct rules "
                  f"(no draw in {_MAX_ATTEMPTS} did); use fewer symbols or more or longer rules")


def generate(spec: GrammarSpec, seed: int = 0) -> Grammar:
    """A random layered grammar of shape ``spec`` (module docstring); the same spec and seed give the same
    grammar. Symbols are named ``"N<level>_<index>"``, terminals are ``0 .. spec.terminals - 1``."""
    if not isinstance(spec, GrammarSpec):
        raise invalid("spec", spec, f"a GrammarSpec, e.g. PRESETS[name] for name in {sorted(PRESETS)}")
    seed = check_int("seed", seed, 0)
    rng = rng_for(seed, _STREAM_GRAMMAR)
    names = [[f"N{level}_{i}" for i in range(k)] for level, k in enumerate(spec.symbols_per_level)]
    rules: dict[str, list[tuple[Symbol, ...]]] = {}
    for level in range(spec.levels):
        below: list[Symbol] = list(names[level + 1]) if level + 1 < spec.levels else list(range(spec.terminals))
        rules.update(_draw_level(rng, names[level], below, spec, level))
    return Grammar(rules, root="N0_0", terminals=spec.terminals, spec=spec, seed=seed)


def preset(name: str, seed: int = 0) -> Grammar:
    """``generate(PRESETS[name], seed)``: ``"cfg3b"`` (Part 1), ``"medium"``, ``"small"`` or ``"tiny"``."""
    check_choice("name", name, sorted(PRESETS))
    return generate(PRESETS[name], seed)


# -------------------------------------------------------------------------------------------------
# The information in one string
# -------------------------------------------------------------------------------------------------

#: Languages with at most this many derivations are enumerated for their exact entropy (``"tiny"``: 8,
#: ``"small"``: 5,040 at seed 0, a tenth of a second); larger ones (``"medium"``: 630,784, ``"cfg3b"``:
#: 4.6e43) get the Monte-Carlo estimate.
EXACT_DERIVATIONS = 100_000
_ENTROPY_CACHE: dict[tuple, StringEntropy] = {}


@dataclass(frozen=True)
class StringEntropy:
    """The Shannon entropy of one string of a grammar's generative process (:func:`string_entropy`).

    bits:            H(S) = -sum_s p(s) log2 p(s) over the strings s: exact or estimated, see ``exact``.
    stderr:          the estimate's standard error in bits (0.0 when exact).
    exact:           True when the language was enumerated.
    samples:         Monte-Carlo samples behind the estimate (0 when exact).
    derivation_bits: H(D), the entropy of the parse tree, always exact: an upper bound on H(S), reached when no
                     string has two parse trees.
    """

    bits: float
    stderr: float
    exact: bool
    samples: int
    derivation_bits: float


def _derivation_stats(grammar: Grammar) -> tuple[int, float]:
    """(number of derivations of the root, H(D) in bits), children first. A derivation chooses one rule per
    node independently, so H(X) = log2 |rules(X)| + the mean over X's rules of the sum of the children's H."""
    count: dict[Symbol, int] = {}
    entropy: dict[Symbol, float] = {}
    for head in grammar._order:
        bodies = grammar.rules[head]
        count[head] = sum(math.prod(count.get(s, 1) for s in body) for body in bodies)
        entropy[head] = math.log2(len(bodies)) + sum(sum(entropy.get(s, 0.0) for s in body)
                                                     for body in bodies) / len(bodies)
    return count[grammar.root], entropy[grammar.root]


def _language(grammar: Grammar) -> dict[tuple[int, ...], float]:
    """Every string of the grammar with its probability, children first; the trees of an ambiguous string add up."""
    dist: dict[Symbol, dict[tuple[int, ...], float]] = {a: {(a,): 1.0} for a in grammar.terminals}
    for head in grammar._order:
        weight = 1.0 / len(grammar.rules[head])
        out: dict[tuple[int, ...], float] = {}
        for body in grammar.rules[head]:
            acc: dict[tuple[int, ...], float] = {(): weight}
            for s in body:
                nxt: dict[tuple[int, ...], float] = {}
                for x, p in acc.items():
                    for y, q in dist[s].items():
                        nxt[x + y] = nxt.get(x + y, 0.0) + p * q
                acc = nxt
            for key, p in acc.items():
                out[key] = out.get(key, 0.0) + p
        dist[head] = out
    return dist[grammar.root]


def _tree_tokens(grammar: Grammar, tree: tuple) -> tuple[list[int], float]:
    """The tokens of a derivation tree and log2 of its probability (one uniform rule choice per node)."""
    tokens: list[int] = []
    log2_p = 0.0
    stack: list = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            log2_p -= math.log2(len(grammar.rules[node[0]]))
            stack.extend(reversed(node[1]))
        else:
            tokens.append(node)
    return tokens, log2_p


def string_entropy(grammar: Grammar, samples: int = 400, seed: int = 0,
                   max_derivations: int = EXACT_DERIVATIONS) -> StringEntropy:
    """H(S), the entropy in bits of one string drawn from ``grammar``: the information one training string holds.

    Exact when the grammar has at most ``max_derivations`` derivations: the language is enumerated with the
    probabilities of each string's parse trees added up. Otherwise a Monte-Carlo estimate over ``samples``
    derivations d (seeded by ``seed``) with their strings s. Why not plain ``-mean log2 p(s)``: the exact
    ``H(D)`` is cheap (:func:`_derivation_stats`) and ``H(S) = H(D) - H(D | S)`` with
    ``H(D | S) = E[log2 p(s) - log2 p(d)]``, a gap that is 0 for a string with one parse and small otherwise,
    so its sample mean has a far smaller variance than that of ``-log2 p(s)``, which varies with the length by
    tens of bits (seed-0 presets, 400 samples: ``"medium"`` 17.94 +- 0.02 bits against H(D) = 18.5, ``"cfg3b"``
    121.04 +- 0.03 against 121.625). Each sample costs one exact :meth:`Grammar.string_probability` (float64
    inside chart): under 1 ms for ``"medium"``, 20-40 ms for ``"cfg3b"`` on one CPU thread (8-15 s for 400
    samples), so results are cached per grammar and arguments for the life of the process.
    """
    if not isinstance(grammar, Grammar):
        raise invalid("grammar", grammar, "a Grammar (labkit.data.cfg.preset or generate)")
    samples = check_int("samples", samples, 2)
    seed = check_int("seed", seed, 0)
    max_derivations = check_int("max_derivations", max_derivations, 0)
    key = (str(grammar), grammar.root, len(grammar.terminals), samples, seed, max_derivations)
    if key in _ENTROPY_CACHE:
        return _ENTROPY_CACHE[key]
    n_derivations, derivation_bits = _derivation_stats(grammar)
    if n_derivations <= max_derivations:
        probs = _language(grammar).values()
        bits = -math.fsum(p * math.log2(p) for p in probs if p > 0)
        result = StringEntropy(bits, 0.0, True, 0, derivation_bits)
    else:
        rng = rng_for(seed, _STREAM_ENTROPY)
        gaps = np.empty(samples)
        for i in range(samples):
            tokens, log2_pd = _tree_tokens(grammar, grammar._derive_tree(rng))
            gaps[i] = max(0.0, math.log2(grammar.string_probability(tokens)) - log2_pd)  # >= 0 up to rounding
        result = StringEntropy(derivation_bits - float(gaps.mean()), float(gaps.std(ddof=1) / math.sqrt(samples)),
                               False, samples, derivation_bits)
    _ENTROPY_CACHE[key] = result
    return result


# -------------------------------------------------------------------------------------------------
# Training data
# -------------------------------------------------------------------------------------------------


class CFGDataset:
    """Strings of a grammar to train a decoder on, fresh at every exposure, as Part 1 trains (allenzhu2023part1).

    Exposure ``e`` is ``n_items`` new strings drawn from the random stream ``(seed, e)``: deterministic for
    (seed, e), independent across exposures, and never dependent on which exposures were rendered before.
    ``grammar`` is a :class:`Grammar` or a preset name (then built with ``grammar_seed``).

    Record: ``[BOS, t_1 .. t_n, EOS]``, padded at the end with PAD to the exposure's longest record. Ids: the
    grammar's own, terminals ``0 .. T-1`` and ``EOS = T`` (``grammar.eos``), then ``BOS = T + 1`` and
    ``PAD = T + 2``; ``vocab_size = T + 3``. Why not the lab's ``PAD = 0, BOS = 1, EOS = 2`` in front
    (labkit.tokenizer): with the grammar's ids, column a of a model's logits is terminal a, so its predictions
    line up with :meth:`Grammar.next_token_probs` and :meth:`Grammar.next_token_table` with no offset (what
    labkit.structure compares). The loss mask is therefore built from the string lengths, never from
    ``tokens != PAD_ID`` (id 0 is a terminal here); the trainer only reads the mask, and pads it adds beyond a
    record's end are ignored targets.

    Loss mask: every terminal and the EOS (positions 1 .. n + 1): a model must learn where strings end too.
    Spans: ``"string"`` = [1, n + 1), the terminals; ``"eos"`` = [n + 1, n + 2). The summed losses of both are the
    code length ``-ln p(string)`` of the whole string under the model.

    ``context`` (= ``max_length + 2``, with ``max_length`` the grammar's longest string) is the ``max_len`` a
    model needs for every record of every exposure.
    """

    kind = "cfg"

    def __init__(self, grammar: Grammar | str, n_items: int, seed: int = 0, grammar_seed: int = 0) -> None:
        if isinstance(grammar, str):
            if grammar not in PRESETS:
                raise invalid("grammar", grammar, f"a Grammar or a preset name: {', '.join(map(repr, PRESETS))}")
            grammar = preset(grammar, grammar_seed)
        if not isinstance(grammar, Grammar):
            raise invalid("grammar", grammar, f"a Grammar or a preset name: {', '.join(map(repr, PRESETS))}")
        self.grammar = grammar
        self.n_items = self.N = check_int("n_items", n_items, 1)
        self.seed = check_int("seed", seed, 0)
        n_terminals = len(grammar.terminals)
        self.eos, self.bos, self.pad = n_terminals, n_terminals + 1, n_terminals + 2
        self.vocab_size = n_terminals + 3
        self.max_length = grammar.length_range[1]
        self.context = self.max_length + 2
        self._last: tuple[int, TokenBatch] | None = None  # the trainer asks for the same exposure repeatedly

    def __repr__(self) -> str:
        return f"CFGDataset({self.grammar!r}, n_items={self.n_items}, seed={self.seed})"

    def _rng(self, index: int) -> np.random.Generator:
        if not isinstance(index, numbers.Integral) or isinstance(index, bool) or index < 0:
            raise invalid("index", index, "an integer >= 0")
        return rng_for(self.seed, _STREAM_EXPOSURE, int(index))

    def strings(self, index: int) -> list[list[int]]:
        """The terminal strings of exposure ``index``, in record order."""
        rng = self._rng(index)
        return [self.grammar._derive(rng) for _ in range(self.n_items)]

    def trees(self, index: int) -> list[Parse]:
        """The parses of exposure ``index``'s strings (the probes' targets), in record order: ``trees(e)[i]
        .tokens[t]`` is the token at position ``t + 1`` of record i. Same draws as :meth:`strings`, hence the same
        strings. Needs a layered grammar (as :meth:`Grammar.sample_trees`)."""
        if not self.grammar.layered:
            raise invalid("grammar", self.grammar, "a layered grammar for parses (every level expands into the next)")
        rng = self._rng(index)
        return [self.grammar._parse(self.grammar._derive_tree(rng)) for _ in range(self.n_items)]

    def render(self, strings: Sequence[Sequence[int]]) -> TokenBatch:
        """Records of any terminal strings in this dataset's layout (evaluation on chosen strings)."""
        lengths = np.array([len(s) for s in strings], dtype=np.int64)
        flat = np.fromiter((t for s in strings for t in s), dtype=np.int64, count=int(lengths.sum()))
        if flat.size and not (flat.min() >= 0 and flat.max() < self.eos):
            raise invalid("strings", f"tokens in [{flat.min()}, {flat.max()}]", f"terminal ids 0 .. {self.eos - 1}")
        n = len(lengths)
        width = int(lengths.max(initial=0)) + 2
        pos = np.arange(width)
        tokens = np.full((n, width), self.pad, dtype=np.int64)
        tokens[:, 0] = self.bos
        tokens[(pos >= 1) & (pos <= lengths[:, None])] = flat  # row-major order = the strings concatenated
        tokens[np.arange(n), lengths + 1] = self.eos
        mask = (pos >= 1) & (pos <= lengths[:, None] + 1)
        ends = torch.from_numpy(lengths + 1)
        spans = {"string": torch.stack([torch.ones_like(ends), ends], dim=1),
                 "eos": torch.stack([ends, ends + 1], dim=1)}
        return TokenBatch(torch.from_numpy(tokens), torch.from_numpy(mask), spans)

    def exposure(self, index: int) -> TokenBatch:
        """Exposure ``index``: ``n_items`` fresh strings (class docstring)."""
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        batch = self.render(self.strings(index))
        self._last = (index, batch)
        return batch

    def used_tokens(self) -> torch.Tensor:
        """Terminals, EOS and BOS: ``0 .. T + 1``. PAD only fills records after their end, so it is left out, as
        bioS leaves it out (no embedding row of it is ever read for a target)."""
        return torch.arange(self.eos + 2, dtype=torch.int64)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Readable record, e.g. ``"2 0 1 1 <eos>"`` (BOS and PAD left out)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return " ".join("<eos>" if i == self.eos else str(i) for i in ids if i not in (self.bos, self.pad))

    def information_bits(self) -> float:
        """``n_items`` times the entropy of one string (:func:`string_entropy`: exact for ``"tiny"`` and
        ``"small"``, a Monte-Carlo estimate for ``"medium"`` and ``"cfg3b"``, whose first call takes about half a
        second and 8-15 s). Every exposure is fresh, so this is the information of one exposure, not a
        fixed amount a model could memorise."""
        return self.n_items * string_entropy(self.grammar).bits

    def bits_learned(self, entity_loss: Mapping[str, torch.Tensor]) -> BitsLearned:
        """Not defined for grammar data: the lab's bit meter counts memorised items (Part 3.3), but every
        exposure here is fresh, so there is nothing to memorise; what a model learned of the grammar is its
        distance to the grammar's distribution (labkit.structure.kl_to_grammar)."""
        raise NotImplementedError("CFGDataset has no bits learned: its strings are fresh samples, nothing to "
                                  "memorise; measure the grammar learned with labkit.structure.kl_to_grammar "
                                  "and generation_accuracy instead")
