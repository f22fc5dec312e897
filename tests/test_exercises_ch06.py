"""Chapter 6's exercises (labkit.exercises.ch06): the solutions pass and agree with ``labkit.quant``, and
plausible wrong answers fail on a named case: int8 scales of max/128 or max/255, per-column scales,
truncation, nan or a made-up scale on an all-zero row, storage that forgets the scales or counts them per
column, and predictions that are not a fraction in [0, 1]."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from exercise_checks import rejected

from labkit import exercises, quant
from labkit.exercises import ch06


def test_the_chapter_is_registered_with_three_exercises():
    assert 6 in exercises.CHAPTERS and exercises.CHAPTERS == tuple(sorted(exercises.CHAPTERS))
    assert [ex.id for ex in exercises.exercises(6)] == ["int8-rtn", "storage-bits", "predict-int3"]
    assert all(ex.label.startswith("ch06-") for ex in exercises.exercises(6))


def test_solutions_pass(capsys):
    assert ch06.check_quantize_int8(ch06.quantize_int8)
    assert ch06.check_storage_bits_per_param(ch06.storage_bits_per_param)
    assert ch06.check_predicted_kept_int3(ch06.predicted_kept_int3)
    assert capsys.readouterr().out.count("✓ all") == 3


# --------------------------------------------------------------------------------------------------
# int8 round to nearest
# --------------------------------------------------------------------------------------------------


def test_the_int8_solution_agrees_with_the_lab_quantizer_on_every_hidden_case():
    cases = ch06.INT8_RTN.hidden_cases()
    for case in cases:
        w = case["w"]
        q, s = ch06.quantize_int8(w)
        assert q.dtype == torch.int8 and s.dtype == torch.float32 and s.shape == w.shape[:1]
        dequantized, scales, zeros = quant.quantize_tensor(w, 8, None, True, scale_bits=32)
        assert zeros is None and torch.equal(scales[:, 0], s)
        assert torch.allclose(q.float() * s[:, None], dequantized, rtol=0, atol=1e-6)
        assert ch06._int8_outcome(ch06.quantize_int8, case)["|q·s − w| <= s/2 everywhere"] is True
    shapes = [tuple(c["w"].shape) for c in cases]
    assert any(r == 1 for r, _ in shapes) and any(c == 1 for _, c in shapes)
    assert any((c["w"] == 0).all(dim=1).any() for c in cases), "a case has an all-zero row"
    halves = cases[2]["w"]
    ratio = halves / (halves.abs().amax(1, keepdim=True) / 127)
    assert ((ratio - ratio.floor()) == 0.5).sum() >= 8, "exact halves, where the rounding rule decides"


def test_the_zero_row_and_exact_halves_come_out_as_stated():
    q, s = ch06.quantize_int8(ch06.INT8_RTN.hidden_cases()[1]["w"])
    assert s[1] == 0 and (q[1] == 0).all() and not s.isnan().any()
    q, s = ch06.quantize_int8(torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -2.5, 126.5]]))
    assert s.tolist() == [1.0] and q.tolist() == [[127, 0, 2, 2, 0, -2, 126]]  # half to even


def _int8(w, *, divisor=127, per_column=False, rounding=torch.round, zero_scale=None, cast=True, scale_bits=None):
    """The solution with one thing changed (keywords), to make wrong variants."""
    if scale_bits is not None:  # the lab's default: the scale rounded up to a float16
        dequantized, scales, _ = quant.quantize_tensor(w, 8, None, True, scale_bits=scale_bits)
        s = scales[:, 0]
        return torch.round(dequantized / torch.where(s > 0, s, 1)[:, None]).to(torch.int8), s
    s = w.abs().amax(dim=0 if per_column else 1) / divisor
    if zero_scale is not None:
        s = torch.where(s > 0, s, torch.full_like(s, zero_scale))
    q = rounding(w / (s[None, :] if per_column else s[:, None])).clamp(-127, 127)
    return (q.to(torch.int8) if cast else q), s


def test_int8_wrong_answers(capsys):
    message = rejected(ch06.check_quantize_int8, lambda w: _int8(w, divisor=128))
    assert "case 1 of" in message and "['q']" in message
    message = rejected(ch06.check_quantize_int8, lambda w: _int8(w, divisor=255))  # the unsigned range
    assert "case 1 of" in message and "['q']" in message
    message = rejected(ch06.check_quantize_int8, lambda w: _int8(w, per_column=True))
    assert "case 1 of" in message
    message = rejected(ch06.check_quantize_int8, lambda w: _int8(w, rounding=torch.trunc))
    assert "case 1 of" in message and "['q']" in message

    def scale_slightly_off(w):  # the right integers, a scale 0.1% too small
        q, s = _int8(w)
        return q, s * (1 - 1e-3)

    assert "['s']" in rejected(ch06.check_quantize_int8, scale_slightly_off)
    # nan on an all-zero row (0 / 0, left as floats), or a made-up scale there to avoid it
    message = rejected(ch06.check_quantize_int8, lambda w: _int8(w, cast=False))
    assert "case 1 of" in message and "['q dtype'] got 'float32', expected 'int8'" in message
    found = ch06._int8_outcome(lambda w: _int8(w, cast=False), ch06.INT8_RTN.hidden_cases()[1])
    assert found["q"][1].isnan().all() and found["|q·s − w| <= s/2 everywhere"] is False
    for made_up in (1.0, 1e-8):
        message = rejected(ch06.check_quantize_int8, lambda w, made_up=made_up: _int8(w, zero_scale=made_up))
        assert "case 2 of" in message and "['s'][1]" in message
    message = rejected(ch06.check_quantize_int8, lambda w: _int8(w, rounding=lambda x: torch.floor(x + 0.5)))
    assert "case 3 of" in message and "['q']" in message  # halves rounded up, not to even
    message = rejected(ch06.check_quantize_int8,  # max(w), not max|w|: a negative largest entry is clipped
                        lambda w: (torch.round(w / (w.amax(1, keepdim=True) / 127)).clamp(-127, 127).to(torch.int8),
                                   w.amax(1) / 127))
    assert "case 1 of" in message and "['q']" in message
    message = rejected(ch06.check_quantize_int8, lambda w: _int8(w, scale_bits=16))  # float16 scales
    assert "case 1 of" in message and "['s']" in message
    message = rejected(ch06.check_quantize_int8, lambda w: _int8(w)[0])  # forgot to return the scales
    assert "['a pair (q, s)'] got False, expected True" in message

    def per_tensor(w):
        s = w.abs().max() / 127
        return torch.round(w / s).clamp(-127, 127).to(torch.int8), s.expand(w.shape[0]).clone()

    rejected(ch06.check_quantize_int8, per_tensor)


def test_an_int8_that_changes_its_input_is_still_bounded_against_the_original(capsys):
    def destructive(w):
        out = ch06.quantize_int8(w)
        w.zero_()
        return out

    assert ch06.check_quantize_int8(destructive)


# --------------------------------------------------------------------------------------------------
# Storage bits
# --------------------------------------------------------------------------------------------------


def test_storage_matches_the_lab_and_the_statement():
    for case in ch06.STORAGE_BITS.hidden_cases():
        rows, columns = case["rows"], case["columns"]
        expected = quant.storage_bits((rows, columns), case["bits"], case["group_size"],
                                      not case.get("zero_point", False), case.get("scale_bits", 16))
        assert ch06.storage_bits_per_param(**case) * rows * columns == pytest.approx(expected, rel=1e-12)
    answer = ch06.storage_bits_per_param
    assert answer(16, 64, 4, 32) == 4.5 and answer(16, 64, 4, None) == 4.25 and answer(16, 64, 4, 8) == 6.0
    assert answer(16, 16, 4, 4) == 8.0 < answer(16, 64, 8, None) == 8.25  # int4 g4 costs as much as int8
    assert answer(4096, 4096, 4, 128) == 4.125


def test_storage_wrong_answers(capsys):
    message = rejected(ch06.check_storage_bits_per_param,  # the integers only
                        lambda rows, columns, bits, group_size, scale_bits=16, zero_point=False: float(bits))
    assert "case 1 of" in message and "returned 4, expected 4.25" in message

    def per_column(rows, columns, bits, group_size, scale_bits=16, zero_point=False):
        scales = columns * (1 if group_size is None else rows / group_size)  # one scale per column (group)
        return bits + scales * (scale_bits + (bits if zero_point else 0)) / (rows * columns)

    message = rejected(ch06.check_storage_bits_per_param, per_column)
    assert "case 1 of" in message and "expected 4.25" in message

    def one_scale_per_matrix(rows, columns, bits, group_size, scale_bits=16, zero_point=False):
        return bits + (scale_bits + (bits if zero_point else 0)) / (rows * columns)

    assert "case 1 of" in rejected(ch06.check_storage_bits_per_param, one_scale_per_matrix)

    def no_zero_point(rows, columns, bits, group_size, scale_bits=16, zero_point=False):
        return ch06.storage_bits_per_param(rows, columns, bits, group_size, scale_bits)

    assert "case 7 of" in rejected(ch06.check_storage_bits_per_param, no_zero_point)

    def always_fp16_scales(rows, columns, bits, group_size, scale_bits=16, zero_point=False):
        return ch06.storage_bits_per_param(rows, columns, bits, group_size, 16, zero_point)

    assert "case 9 of" in rejected(ch06.check_storage_bits_per_param, always_fp16_scales)

    def zero_point_as_wide_as_a_scale(rows, columns, bits, group_size, scale_bits=16, zero_point=False):
        return ch06.storage_bits_per_param(rows, columns, bits, group_size, scale_bits * (1 + zero_point))

    assert "case 7 of" in rejected(ch06.check_storage_bits_per_param, zero_point_as_wide_as_a_scale)


# --------------------------------------------------------------------------------------------------
# The prediction
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", [0, 0.0, 1, 1.0, 0.37, 1e-9])
def test_any_fraction_is_a_valid_prediction(prediction, capsys):
    assert ch06.check_predicted_kept_int3(lambda: prediction)


@pytest.mark.parametrize(("prediction", "why"), [
    (1.5, "'1.5 is outside [0, 1]'"),
    (25, "'25 is above 1 (a percentage? return 0.25)'"),
    (-0.1, "'-0.1 is outside [0, 1]'"),
    (250.0, "'250 is outside [0, 1]'"),
    (math.nan, "'nan, not a float'"),
    (math.inf, "'inf is outside [0, 1]'"),
    ("0.3", "'a str, not a float'"),
    (True, "'a bool, not a float'"),
    (torch.tensor(0.3), "'a Tensor, not a float'"),
])
def test_predictions_that_are_not_a_fraction_fail(prediction, why, capsys):
    message = rejected(ch06.check_predicted_kept_int3, lambda: prediction)
    assert message.startswith("✗ case 1 of 6: predicted_kept_int3() returned ")
    assert message.endswith(f"returned {why}, expected 'a float in [0, 1]'")


def test_a_prediction_that_changes_from_call_to_call_fails(capsys):
    draws = itertools.count()
    message = rejected(ch06.check_predicted_kept_int3, lambda: 0.1 * (next(draws) % 2))
    assert "case 1 of 6" in message and "on a second call" in message


def test_the_measured_fraction_is_printed_next_to_a_passing_prediction(capsys):
    assert ch06.check_predicted_kept_int3(lambda: 0.25, measured=0.05)
    out = capsys.readouterr().out
    assert out.startswith("✓ all 6 cases agree\n")
    assert "you predicted 25.0% of the bits kept at int3; the chapter measured 5.0% (+20.0 percentage points)" in out
    assert not ch06.check_predicted_kept_int3(lambda: 25, measured=0.05)
    assert "measured" not in capsys.readouterr().out  # a failing prediction is not compared
    for bad in (math.nan, "5%", True):
        with pytest.raises(ValueError, match=r"measured=.* is not valid; allowed: None or the chapter's fraction"):
            ch06.check_predicted_kept_int3(lambda: 0.25, measured=bad)
    assert ch06.check_predicted_kept_int3.__name__ == "check_predicted_kept_int3"
    assert ch06.check_predicted_kept_int3.__module__ == "labkit.exercises.ch06"
