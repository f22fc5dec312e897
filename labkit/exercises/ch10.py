"""Exercises of chapter 10 (synthetic context-free grammars, Part 1): membership by dynamic programming
over spans, the size of a finite language, and a prediction of how the chapter's position variants rank.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against the lab's own code (``labkit.data.cfg.Grammar``) or a brute-force enumeration here, on
hidden cases. A prediction cannot be checked against an answer the checker does not have (the chapter
measures it), so its checker only checks that it is a ranking of the five variants, and
``check_predicted_ranking(fn, measured=...)`` prints how many pairs it orders as the chapter's table does.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from labkit.checks import invalid
from labkit.exercises.check import CheckResult, Exercise

#: The chapter's position variants (the names a ranking uses): absolute position embeddings, rotary
#: embeddings, relative attention, attention from positions only, and uniform attention (fixed windows).
VARIANTS = ("absolute", "rotary", "relative", "position-only", "uniform")


def accepts(rules: dict, root: str, tokens: list) -> bool:
    """Whether the grammar derives exactly `tokens` from `root`, by DP over spans.

    rules: nonterminal (str) -> list of right-hand sides (tuples of symbols); a symbol
    that is not a key of `rules` is a terminal (an int token). The grammar is not
    recursive. Fill the chart can[A][i][j] = "A derives tokens[i:j]" and return
    can[root][0][len(tokens)] as a bool (False for the empty string).
    """
    n = len(tokens)
    can = {}  # (A, i, j) -> does A derive tokens[i:j]? each span decided once

    def derives(symbol, i, j):
        if symbol not in rules:  # a terminal derives one token: itself
            return j == i + 1 and tokens[i] == symbol
        if (symbol, i, j) not in can:
            can[symbol, i, j] = any(fits(body, i, j) for body in rules[symbol])
        return can[symbol, i, j]

    def fits(body, i, j):  # do the symbols of `body`, in order, derive tokens[i:j]?
        if len(body) == 1:
            return derives(body[0], i, j)
        # body[0] takes tokens[i:k]; every later symbol needs at least one token
        return any(derives(body[0], i, k) and fits(body[1:], k, j)
                   for k in range(i + 1, j - len(body) + 2))

    return n > 0 and derives(root, 0, n)


def count_strings(rules: dict, root: str) -> int:
    """The number of distinct strings a non-recursive grammar derives from `root`.

    rules: nonterminal (str) -> list of right-hand sides (tuples of symbols); a symbol
    that is not a key of `rules` is a terminal (an int token). Two derivations that
    yield the same token sequence count once.
    """
    language = {}  # nonterminal -> the set of token tuples it derives

    def strings(symbol):
        if symbol not in rules:  # a terminal: the one string of itself
            return {(symbol,)}
        if symbol not in language:
            found = set()
            for body in rules[symbol]:
                parts = {()}  # the strings of the body's symbols so far, concatenated
                for s in body:
                    parts = {p + q for p in parts for q in strings(s)}
                found |= parts  # a set: the same string from two rules counts once
            language[symbol] = found
        return language[symbol]

    return len(strings(root))


def predicted_ranking() -> list:
    """Your prediction: the chapter's five variants by generation accuracy, best first.

    A list of the names "absolute", "rotary", "relative", "position-only" and
    "uniform", each once. Commit to an order before you compare it with the table.
    """
    # relative attention and rotary embeddings see how far back a token is, which
    # is what finding where a subtree starts needs; uniform windows and position-only
    # attention hard-wire that too; absolute positions must learn it from scratch.
    return ["relative", "rotary", "uniform", "position-only", "absolute"]


# --------------------------------------------------------------------------------------------------
# References (the lab's code and brute force), what the checkers compare, and hidden cases
# --------------------------------------------------------------------------------------------------

#: The toy grammar of ``labkit.data.cfg``'s docstring (the root last, so that "the first key" is no root):
#: ambiguous, ``0 1 1`` is A(0 1) B(1) and A(0) B(1 1).
TOY = {"A": [(0, 1), (0,)], "B": [(1,), (1, 1)], "S": [("A", "B"), ("B", "A")]}
#: A ternary rule: ``0 1 1 0 0`` (5 tokens) is A(0 1) B(1 0) A(0) and too long for ``S -> A A``.
TERNARY = {"A": [(0,), (0, 1)], "B": [(1,), (1, 0)], "S": [("A", "B", "A"), ("A", "A")]}
#: A unary root rule: one-token strings are in the language, two-token ones are not.
UNARY = {"A": [(0,), (1,)], "S": [("A",), ("A", "A", "A")]}


def _accepts(rules: Mapping, root: str, tokens: Sequence[int]) -> bool:
    from labkit.data.cfg import Grammar

    return Grammar(rules, root).accepts(tokens)


def _rules_of(grammar: Any) -> dict:
    return {head: list(bodies) for head, bodies in grammar.rules.items()}


def _accepts_cases(rng: random.Random) -> list[dict]:
    from labkit.data.cfg import preset

    cases = [dict(rules=TOY, root="S", tokens=[0, 1, 1]),  # the statement's hand-filled chart
             dict(rules=TOY, root="S", tokens=[0, 1]),  # A(0) B(1): a greedy A(0 1) leaves B nothing
             dict(rules=TOY, root="S", tokens=[1, 1]),  # B derives it, the root does not
             dict(rules=TOY, root="S", tokens=[0, 1, 1, 1]),  # the longest: A(0 1) B(1 1), not A(0) B(1 1 1)
             dict(rules=TOY, root="S", tokens=[0, 1, 1, 1, 1]),  # one token too long
             dict(rules=TOY, root="S", tokens=[0]),  # one token, one too short (A derives it)
             dict(rules=TOY, root="S", tokens=[]),  # the empty string is in no language here
             dict(rules=TOY, root="S", tokens=[1, 0]),  # S -> B A
             dict(rules=TOY, root="S", tokens=[0, 2]),  # 2 is no terminal (the toy's eos)
             dict(rules=TERNARY, root="S", tokens=[0, 1, 1, 0, 0]),  # only the ternary rule reaches 5 tokens
             dict(rules=TERNARY, root="S", tokens=[0, 1, 1, 0, 0, 1]),  # the longest, 2 + 2 + 2
             dict(rules=TERNARY, root="S", tokens=[0, 1, 1, 1, 0]),  # every split fails
             dict(rules=UNARY, root="S", tokens=[1]),
             dict(rules=UNARY, root="S", tokens=[1, 0])]
    for name, seed in (("tiny", 0), ("tiny", 1), ("small", 0), ("small", 1)):
        grammar = preset(name, seed)
        rules, root, terminals = _rules_of(grammar), grammar.root, grammar.terminals
        sampled = grammar.sample(2, seed=rng.randrange(1000))
        cases.append(dict(rules=rules, root=root, tokens=sampled[0]))
        tokens = list(sampled[1])
        at = rng.randrange(len(tokens))  # one token changed
        tokens[at] = rng.choice([t for t in terminals if t != tokens[at]])
        cases.append(dict(rules=rules, root=root, tokens=tokens))
        shorter_or_longer = sampled[0][:-1] if rng.random() < 0.5 else [*sampled[0], rng.choice(terminals)]
        cases.append(dict(rules=rules, root=root, tokens=shorter_or_longer))
    return cases


def _count_by_enumeration(rules: Mapping, root: str) -> int:
    """Brute force: every leftmost derivation from the root, the distinct terminal strings counted."""
    found, forms = set(), [(root,)]
    while forms:
        form = forms.pop()
        at = next((k for k, s in enumerate(form) if s in rules), None)
        if at is None:
            found.add(form)
            continue
        forms.extend(form[:at] + tuple(body) + form[at + 1:] for body in rules[form[at]])
    return len(found)


def _count_cases(rng: random.Random) -> list[dict]:
    from labkit.data.cfg import GrammarSpec, generate, preset

    cases = [dict(rules=TOY, root="S"),  # 7 strings, 8 derivations: 0 1 1 twice
             dict(rules={"A": [(0,)], "B": [(0,)], "S": [("A",), ("B",)]}, root="S"),  # two rules, one string
             dict(rules={"A": [(0,)], "T": [(0, 0)], "S": [("A", "T"), ("T", "A")]}, root="S"),  # 0 0 0 twice
             dict(rules={"S": [(0,), (1,)]}, root="S"),  # no ambiguity: 2 of each
             dict(rules={"X": [(0,), (0, 0), (1,)], "S": [("X", "X", "X")]}, root="S"),  # 27 derivations
             dict(rules={"A": [(0,), (1,)], "S": [(0, "A"), ("A", 0)]}, root="S"),  # terminals next to symbols
             dict(rules=TERNARY, root="S"),
             dict(rules=UNARY, root="S")]
    for seed in (0, 1, 2):
        grammar = preset("tiny", seed)
        cases.append(dict(rules=_rules_of(grammar), root=grammar.root))
    spec = GrammarSpec(levels=3, symbols_per_level=2, terminals=2, rules_per_symbol=2, rule_lengths=(1, 2))
    for _ in range(2):
        grammar = generate(spec, seed=rng.randrange(1000))
        cases.append(dict(rules=_rules_of(grammar), root=grammar.root))
    return cases


#: what the prediction checker expects of every call
VALID_RANKING = f"a ranking of all {len(VARIANTS)} variants, each once"


def _ranking_problem(value: object) -> str | None:
    """None for a list (or tuple) of every name of :data:`VARIANTS` once; else what is wrong, briefly."""
    kind = type(value).__name__
    article = "an" if kind[0] in "aeiou" else "a"
    if isinstance(value, set | frozenset):
        return f"{article} {kind}, not a list (a set has no order)"
    if not isinstance(value, list | tuple):
        return f"{article} {kind}, not a list of names"
    twice = [v for i, v in enumerate(value) if v in value[:i]]
    if twice:
        return f"{twice[0]!r} twice"
    unknown = [v for v in value if v not in VARIANTS]
    if unknown:
        return f"the unknown name {unknown[0]!r}"
    missing = [v for v in VARIANTS if v not in value]
    if missing:
        return f"no {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    return None


def _a_valid_ranking() -> list:
    return list(VARIANTS)


def _ranking_verdict(fn: Callable[..., Any], case: Mapping[str, Any]) -> str:
    """:data:`VALID_RANKING` for a ranking of every variant once, the same on a second call; else what is wrong."""
    value, again = fn(**case), fn(**case)
    problem = _ranking_problem(value)
    if problem:
        return problem
    if _ranking_problem(again) or list(again) != list(value):
        return "a different ranking on a second call"
    return VALID_RANKING


def _ranking_cases(rng: random.Random) -> list[dict]:
    return [{} for _ in range(6)]  # a prediction takes no arguments: six calls, the same ranking each time


CYK_MEMBERSHIP = Exercise(
    chapter=10, id="cyk-membership", title="Is this string in the language? CYK by hand", difficulty=3,
    importance=5,
    statement=r"""
Part 1 {cite:p}`allenzhu2023part1` scores a model by whether the strings it generates are in the
grammar's language, and only a dynamic program can tell: the grammar is ambiguous, so a parse that
commits to the first way a symbol fits can be wrong. Take the toy grammar of `labkit.data.cfg`
(terminals are the ints 0 and 1; the root is `S`):

$$S \to A\,B \mid B\,A, \qquad A \to 0\,1 \mid 0, \qquad B \to 1 \mid 1\,1 .$$

As the `rules` the functions below take (and `labkit.data.cfg.Grammar` too):

```python
rules = {"S": [("A", "B"), ("B", "A")], "A": [(0, 1), (0,)], "B": [(1,), (1, 1)]}
```

**First by hand.** For the string `0 1 1` fill the chart $\mathrm{can}[X][i][j]$ = "$X$ derives
tokens $i$ to $j - 1$": for each of $A$, $B$, $S$ list the spans $[i, j)$, $0 \le i < j \le 3$, shortest
first. A span of a rule $X \to Y\,Z$ is a split $i < k < j$ with $Y$ over $[i, k)$ and $Z$ over $[k, j)$;
a ternary rule $X \to Y\,Z\,W$ needs two split points. Is $(0, 3)$ among $S$'s spans, and through which
splits? Then compare with `Grammar(rules).chart([0, 1, 1])`, the lab's chart of the same string. Why
does a greedy parse that lets $A$ take `0 1` reject `0 1`, which is in the language?

**Then in code.** Write `accepts(rules, root, tokens)` for any non-recursive grammar given as a dict
nonterminal → list of right-hand sides (tuples of 1 to 4 symbols; a symbol that is not a key of `rules`
is a terminal token), by dynamic programming over spans: bottom up, shortest spans first, or top down
with every span of every nonterminal decided once. Return a bool, False for the empty string. The
checker compares it with `labkit.data.cfg.Grammar(rules, root).accepts` on hidden cases: hand-written
grammars (greedy traps, one-token strings, strings one token too long or too short, a ternary rule, a
token that is no terminal) and strings of the `tiny` and `small` presets (sampled, with one token changed,
one dropped or one added). How does the work grow with the string's length $n$ and the rule length?
""",
    solution=accepts, reference=_accepts, cases=_accepts_cases)

COUNT_STRINGS = Exercise(
    chapter=10, id="count-strings", title="How many strings does a grammar have?", difficulty=2, importance=3,
    statement=r"""
A non-recursive grammar has a finite language, and Part 1's are astronomically large: that is why a
model that generates correct *and* diverse strings cannot have memorized its training set. Counting
derivations is easy: multiply the choices, rule by rule ($D(X) = \sum_{X \to Y_1 \dots Y_k} \prod_m
D(Y_m)$, a terminal counts 1). Counting **strings** is not, because the grammar is ambiguous: two
derivations can yield the same tokens. By hand first: the toy grammar $S \to A\,B \mid B\,A$, $A \to
0\,1 \mid 0$, $B \to 1 \mid 1\,1$ has 8 derivations; list its strings (which one appears twice?). Then
write `count_strings(rules, root)`: the number of distinct strings the grammar derives from `root`
(`rules` as in the previous exercise). The checker compares it with a brute-force enumeration of every
derivation on small hidden grammars: hand-built ones where two rules, or two ways of splitting, yield
the same string, the `tiny` preset and a few generated grammars. Why would your method not scale to the
chapter's `cfg3b`, and what would you estimate instead?
""",
    solution=count_strings, reference=_count_by_enumeration, cases=_count_cases)

PREDICT_POSITIONS = Exercise(
    chapter=10, id="predict-positions", title="Predict: which positions learn the grammar best?", difficulty=1,
    importance=4,
    statement=r"""
Before you read the table above (or rerun the chapter), predict how the chapter's five variants rank
by generation accuracy (the fraction of generated strings the grammar accepts): `"absolute"` position
embeddings, `"rotary"` embeddings, `"relative"` attention, `"position-only"` attention (the attention
pattern depends on positions alone) and `"uniform"` attention (each head averages a fixed window of
the previous tokens). Write `predicted_ranking()` returning a list of these five names, best first, each
once. Part 1 {cite:p}`allenzhu2023part1` finds relative ≈ rotary > absolute, and that uniform
attention is surprisingly effective: what does a model need to see to find where a subtree ends? This
is a prediction, not a computation: the checker cannot know the answer without training the models,
so it only checks that you return the same valid ranking on each of its calls; the answer is the
chapter's table. `check_predicted_ranking(predicted_ranking, measured=...)` prints how many of the 10
pairs of variants you ordered as the table does. Where were you wrong, and was it a large gap?
""",
    solution=predicted_ranking, reference=_a_valid_ranking, cases=_ranking_cases, evaluate=_ranking_verdict)

EXERCISES = [CYK_MEMBERSHIP, COUNT_STRINGS, PREDICT_POSITIONS]

check_accepts = CYK_MEMBERSHIP.checker()
check_count_strings = COUNT_STRINGS.checker()
_check_ranking = PREDICT_POSITIONS.checker()


def pairs_in_order(predicted: Sequence[str], measured: Sequence[str]) -> int:
    """How many of the 10 pairs of variants ``predicted`` orders as ``measured`` does (10: the same ranking;
    Kendall's tau is ``(2 * pairs - 10) / 10``)."""
    where = {name: i for i, name in enumerate(measured)}
    return sum(where[a] < where[b] for a, b in itertools.combinations(predicted, 2))


def check_predicted_ranking(fn: Callable[..., Any], measured: Sequence[str] | None = None) -> CheckResult:
    """Check that your ``predicted_ranking()`` returns the five variants, each once (the same on every call);
    print what happened and return a result that is truthy on a pass. With ``measured`` (the chapter's
    ranking, best first), a passing prediction is compared pair by pair with it."""
    if measured is not None and _ranking_problem(measured):
        raise invalid("measured", measured,
                      f"None or the chapter's ranking, best first: the names {', '.join(VARIANTS)}, each once")
    result = _check_ranking(fn)
    if result and measured is not None:
        predicted, measured = list(fn()), list(measured)
        same = pairs_in_order(predicted, measured)
        total = len(VARIANTS) * (len(VARIANTS) - 1) // 2
        print(f"  you ranked {' > '.join(predicted)}; the chapter measured {' > '.join(measured)}: "
              f"{same} of {total} pairs in the same order (Kendall tau {(2 * same - total) / total:+.1f})")
    return result
