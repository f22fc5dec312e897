"""Chapter 7's exercises reject the plausible wrong answers: junk counted in records instead of
tokens, a floor instead of the last smaller minibatch, spans left where they were."""

from __future__ import annotations

import math

from exercise_checks import rejected

from labkit.exercises import ch07


def test_mixture_steps_wrong_answers(capsys):
    def records_not_tokens(N, K, E, ratio, batch, domain_token):  # ratio x N junk records
        return E * math.ceil((N + round(ratio * N)) / batch)

    assert "case 2 of" in rejected(ch07.check_mixture_steps, records_not_tokens)

    def drops_the_last_batch(N, K, E, ratio, batch, domain_token):
        return ch07.mixture_steps(N, K, E, ratio, 1, domain_token) // batch

    rejected(ch07.check_mixture_steps, drops_the_last_batch)


def test_share_and_domain_token_wrong_answers(capsys):
    rejected(ch07.check_useful_share, lambda K, ratio, domain_token: 1 / ratio)

    def spans_unmoved(tokens, spans, domain_id):
        return [[row[0], domain_id, *row[1:]] for row in tokens], spans

    rejected(ch07.check_with_domain_token, spans_unmoved)
