"""Chapter 10's exercises (labkit.exercises.ch10): the solutions pass and agree with ``labkit.data.cfg``, and
plausible wrong answers fail on a named case: greedy parsers (longest or shortest first), a membership
that ignores the root, takes the first key for it, accepts prefixes or drops a ternary rule's last symbol;
counting derivations instead of strings; rankings with a duplicate, a missing or an unknown name."""

from __future__ import annotations

import itertools
import math

import pytest
from exercise_checks import rejected

from labkit import exercises
from labkit.data.cfg import Grammar
from labkit.exercises import ch10


def test_the_chapter_is_registered_with_three_exercises():
    assert 10 in exercises.CHAPTERS and exercises.CHAPTERS == tuple(sorted(exercises.CHAPTERS))
    assert [ex.id for ex in exercises.exercises(10)] == ["cyk-membership", "count-strings", "predict-positions"]
    assert all(ex.label.startswith("ch10-") for ex in exercises.exercises(10))


def test_solutions_pass(capsys):
    assert ch10.check_accepts(ch10.accepts)
    assert ch10.check_count_strings(ch10.count_strings)
    assert ch10.check_predicted_ranking(ch10.predicted_ranking)
    assert capsys.readouterr().out.count("✓ all") == 3


# --------------------------------------------------------------------------------------------------
# Membership
# --------------------------------------------------------------------------------------------------


def test_the_statements_hand_filled_chart_is_the_labs():
    grammar = Grammar(ch10.TOY)
    assert grammar.root == "S"
    assert grammar.chart([0, 1, 1]) == {"A": [(0, 1), (0, 2)], "B": [(1, 2), (1, 3), (2, 3)], "S": [(0, 2), (0, 3)]}
    assert ch10.accepts(ch10.TOY, "S", [0, 1, 1]) and not ch10.accepts(ch10.TOY, "S", [1, 1])
    assert "0 1 1" in ch10.CYK_MEMBERSHIP.statement and r"S \to A\,B \mid B\,A" in ch10.CYK_MEMBERSHIP.statement


def test_the_membership_cases_mix_accepted_and_rejected_strings():
    cases = ch10.CYK_MEMBERSHIP.hidden_cases()
    verdicts = [ch10._accepts(**case) for case in cases]
    assert verdicts == [ch10.accepts(**case) for case in cases]
    presets = [v for case, v in zip(cases, verdicts, strict=True) if "N0_0" in case["rules"]]
    assert len(presets) == 12 and 3 <= sum(presets) <= 9, "sampled strings are in, most corruptions out"
    assert any(len(case["tokens"]) == 1 for case in cases) and any(not case["tokens"] for case in cases)
    assert any(len(body) == 4 for case in cases for bodies in case["rules"].values() for body in bodies)


def _greedy(rules, root, tokens, reverse=False):
    """A parse that commits: each nonterminal takes the first rule (in order, or reversed) that fits from
    where it stands, and each symbol of a rule as many tokens as that gives, never backtracking."""

    def end(symbol, i):
        if symbol not in rules:
            return i + 1 if i < len(tokens) and tokens[i] == symbol else None
        for body in (reversed(rules[symbol]) if reverse else rules[symbol]):
            at = i
            for s in body:
                at = end(s, at)
                if at is None:
                    break
            if at is not None:
                return at
        return None

    return end(root, 0) == len(tokens)


def _any_symbol_accepts(rules, root, tokens):  # the chart is right, but any nonterminal will do
    return any(ch10.accepts(rules, head, tokens) for head in rules)


def _prefix_accepts(rules, root, tokens):  # some prefix of the string is in the language
    return any(ch10.accepts(rules, root, tokens[:k]) for k in range(1, len(tokens) + 1))


def _binary_only(rules, root, tokens):  # a rule's third and fourth symbols are forgotten
    return ch10.accepts({head: [tuple(body[:2]) for body in bodies] for head, bodies in rules.items()}, root, tokens)


def test_membership_wrong_answers(capsys):
    message = rejected(ch10.check_accepts, _greedy)  # A takes 0 1 and leaves B nothing
    assert "case 2 of" in message and "tokens=[0, 1]) returned False, expected True" in message
    message = rejected(ch10.check_accepts, lambda rules, root, tokens: _greedy(rules, root, tokens, reverse=True))
    assert "case 4 of" in message and "tokens=[0, 1, 1, 1]) returned False, expected True" in message
    message = rejected(ch10.check_accepts, _any_symbol_accepts)  # B derives 1 1
    assert "case 3 of" in message and "tokens=[1, 1]) returned True, expected False" in message
    message = rejected(ch10.check_accepts,  # the first key of the dict is not the root
                        lambda rules, root, tokens: ch10.accepts(rules, next(iter(rules)), tokens))
    assert "case 1 of" in message
    message = rejected(ch10.check_accepts, _prefix_accepts)
    assert "case 5 of" in message and "returned True, expected False" in message
    message = rejected(ch10.check_accepts, _binary_only)
    assert "case 10 of" in message and "tokens=[0, 1, 1, 0, ... (5 items)]) returned False, expected True" in message
    message = rejected(ch10.check_accepts, lambda rules, root, tokens: 1 if ch10.accepts(rules, root, tokens) else 0)
    assert "case 1 of" in message and "returned 1, expected True" in message  # a bool, not an int


# --------------------------------------------------------------------------------------------------
# Counting strings
# --------------------------------------------------------------------------------------------------


def _derivations(rules, root):
    """The number of derivations: rule choices multiplied (what the exercise warns against)."""

    def count(symbol):
        if symbol not in rules:
            return 1
        return sum(math.prod(count(s) for s in body) for body in rules[symbol])

    return count(root)


def test_the_count_cases_are_ambiguous_and_enumeration_agrees():
    cases = ch10.COUNT_STRINGS.hidden_cases()
    counts = [ch10._count_by_enumeration(**case) for case in cases]
    assert counts == [ch10.count_strings(**case) for case in cases]
    assert counts[:5] == [7, 1, 1, 2, 21] and _derivations(**cases[0]) == 8  # the statement's toy
    ambiguous = [_derivations(**case) > n for case, n in zip(cases, counts, strict=True)]
    assert sum(ambiguous) >= 6 and not ambiguous[3]
    assert ch10.count_strings(Grammar(ch10.TOY).rules, "S") == len(set(map(tuple, Grammar(ch10.TOY).sample(500))))


def _distinct_per_rule(rules, root):
    """Sets of strings, but each rule's strings counted apart: a string two rules yield counts twice."""

    def strings(symbol):
        if symbol not in rules:
            return [(symbol,)]
        out = []
        for body in rules[symbol]:
            parts = {()}
            for s in body:
                parts = {p + q for p in parts for q in strings(s)}
            out.extend(parts)
        return out

    return len(strings(root))


def _product_of_distinct_counts(rules, root):
    """Distinct strings per nonterminal, then multiplied along each rule: two splits of one string count twice."""

    return sum(math.prod(ch10.count_strings(rules, s) if s in rules else 1 for s in body) for body in rules[root])


def test_count_wrong_answers(capsys):
    message = rejected(ch10.check_count_strings, _derivations)
    assert "case 1 of" in message and "returned 8, expected 7 (exactly)" in message
    message = rejected(ch10.check_count_strings, _distinct_per_rule)
    assert "case 2 of" in message and "returned 2, expected 1 (exactly)" in message
    message = rejected(ch10.check_count_strings, _product_of_distinct_counts)
    assert "case 1 of" in message and "returned 8, expected 7" in message
    message = rejected(ch10.check_count_strings, lambda rules, root: float(_derivations(rules, root)))
    assert "case 1 of" in message
    assert ch10.check_count_strings(lambda rules, root: float(ch10.count_strings(rules, root)))  # 7.0 is 7


# --------------------------------------------------------------------------------------------------
# The prediction
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ranking", [list(ch10.VARIANTS), ch10.VARIANTS, list(reversed(ch10.VARIANTS)),
                                     ["relative", "rotary", "uniform", "position-only", "absolute"]])
def test_any_ranking_of_the_five_is_valid(ranking, capsys):
    assert ch10.check_predicted_ranking(lambda: ranking)
    assert set(ch10.predicted_ranking()) == set(ch10.VARIANTS) and len(ch10.predicted_ranking()) == 5


@pytest.mark.parametrize(("ranking", "why"), [
    (["relative", "rotary", "rotary", "uniform", "absolute"], "\"'rotary' twice\""),
    (["relative", "rotary", "uniform", "absolute"], "\"no 'position-only'\""),
    (["relative", "rotary"], "\"no 'absolute' (and 2 more)\""),
    ([], "\"no 'absolute' (and 4 more)\""),
    (["relative", "rope", "uniform", "position-only", "absolute"], "\"the unknown name 'rope'\""),
    (["relative", "rotary", "uniform", "position only", "absolute"], "\"the unknown name 'position only'\""),
    ([1, 2, 3, 4, 5], "'the unknown name 1'"),
    (set(ch10.VARIANTS), "'a set, not a list (a set has no order)'"),
    ("relative > rotary > uniform > position-only > absolute", "'a str, not a list of names'"),
    ({name: i for i, name in enumerate(ch10.VARIANTS)}, "'a dict, not a list of names'"),
    (3, "'an int, not a list of names'"),
])
def test_rankings_that_are_not_the_five_once_fail(ranking, why, capsys):
    message = rejected(ch10.check_predicted_ranking, lambda: ranking)
    assert message.startswith("✗ case 1 of 6: predicted_ranking() returned ")
    assert message.endswith(f"returned {why}, expected 'a ranking of all 5 variants, each once'")


def test_a_ranking_that_changes_from_call_to_call_fails(capsys):
    orders = itertools.cycle([list(ch10.VARIANTS), list(reversed(ch10.VARIANTS))])
    message = rejected(ch10.check_predicted_ranking, lambda: next(orders))
    assert "case 1 of 6" in message and "on a second call" in message


def test_the_measured_ranking_is_compared_pair_by_pair(capsys):
    measured = ["rotary", "relative", "uniform", "position-only", "absolute"]
    assert ch10.pairs_in_order(measured, measured) == 10 and ch10.pairs_in_order(measured[::-1], measured) == 0
    assert ch10.pairs_in_order(["relative", "rotary", "uniform", "position-only", "absolute"], measured) == 9
    assert ch10.check_predicted_ranking(lambda: list(ch10.VARIANTS), measured=measured)
    out = capsys.readouterr().out
    assert out.startswith("✓ all 6 cases agree\n")
    # absolute, rotary, relative, position-only, uniform against the measured order: 5 of 10 pairs agree
    assert ("you ranked absolute > rotary > relative > position-only > uniform; the chapter measured rotary > "
            "relative > uniform > position-only > absolute: 5 of 10 pairs in the same order (Kendall tau +0.0)") in out
    assert ch10.check_predicted_ranking(lambda: measured, measured=tuple(measured))
    assert "10 of 10 pairs in the same order (Kendall tau +1.0)" in capsys.readouterr().out
    assert not ch10.check_predicted_ranking(lambda: ["rotary"] * 5, measured=measured)
    assert "measured" not in capsys.readouterr().out  # a failing prediction is not compared
    for bad in (measured[:4], [*measured[:4], "rotary"], "rotary", set(measured), 3):
        with pytest.raises(ValueError, match=r"measured=.* is not valid; allowed: None or the chapter's ranking"):
            ch10.check_predicted_ranking(lambda: measured, measured=bad)
    assert ch10.check_predicted_ranking.__name__ == "check_predicted_ranking"
    assert ch10.check_predicted_ranking.__module__ == "labkit.exercises.ch10"
