"""Chapter 8's exercises reject the plausible wrong answers: an exact match that forgets the full stop or
checks the whole record, bits that count the company city (or gender), celebrity rows left unpadded."""

from __future__ import annotations

import math

from exercise_checks import rejected

from labkit.exercises import ch08


def test_answers_correct_wrong_answers(capsys):
    def forgets_the_full_stop(predicted, tokens, answers):
        rows = zip(predicted, tokens, answers, strict=True)
        return [all(p[t - 1] == x[t] for t in range(s, e)) for p, x, (s, e) in rows]

    rejected(ch08.check_answers_correct, forgets_the_full_stop)

    def whole_record(predicted, tokens, answers):  # a wrong token before or after the answer does not matter
        return [all(p[t - 1] == x[t] for t in range(1, len(x)) if x[t]) for p, x in zip(predicted, tokens, strict=True)]

    rejected(ch08.check_answers_correct, whole_record)

    def off_by_one(predicted, tokens, answers):  # compares predicted[t] with tokens[t]
        rows = zip(predicted, tokens, answers, strict=True)
        return [all(p[t] == x[t] for t in range(s, e + 1)) for p, x, (s, e) in rows]

    rejected(ch08.check_answers_correct, off_by_one)


def test_qa_test_bits_wrong_answers(capsys):
    def counts_company_city(n_test, attribute_sizes):
        return n_test * sum(math.log2(v) for v in attribute_sizes.values())

    rejected(ch08.check_qa_test_bits, counts_company_city)
    def counts_gender(n_test, attribute_sizes):
        return ch08.qa_test_bits(n_test, attribute_sizes) + n_test

    rejected(ch08.check_qa_test_bits, counts_gender)


def test_celebrity_rows_wrong_answers(capsys):
    def unpadded(augmented, plain, celebrity, pad=0):
        return [a if c else p for a, p, c in zip(augmented, plain, celebrity, strict=True)]

    rejected(ch08.check_celebrity_rows, unpadded)

    def swapped(augmented, plain, celebrity, pad=0):
        return ch08.celebrity_rows(plain, augmented, celebrity, pad)

    rejected(ch08.check_celebrity_rows, swapped)
