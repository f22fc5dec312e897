"""The appendix's exercises (labkit.exercises.ch12): the solutions pass, plausible wrong answers fail on a named
case, and the references are the lab's own tools (torch.func, labkit.ntk, the chapter's power-law fit)."""

from __future__ import annotations

import math

import torch
from exercise_checks import rejected

from labkit import exercises
from labkit.exercises import ch12


def test_the_appendix_is_registered_with_three_exercises():
    assert 12 in exercises.CHAPTERS
    assert [ex.id for ex in exercises.exercises(12)] == ["polar-jacobian", "one-unit-ntk", "predict-lazy-width"]
    assert all(ex.label.startswith("ch12-") for ex in exercises.exercises(12))


def test_solutions_pass(capsys):
    assert ch12.check_polar_jacobian(ch12.polar_jacobian)
    assert ch12.check_one_unit_ntk(ch12.one_unit_ntk)
    assert ch12.check_predict_lazy_width(ch12.predict_lazy_width)
    assert capsys.readouterr().out.count("✓ all") == 3


def test_polar_jacobian_wrong_answers(capsys):
    def transposed(r, theta):
        return ch12.polar_jacobian(r, theta).T

    def forgot_r(r, theta):
        return torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
                            dtype=torch.float64)

    assert "polar_jacobian(r=" in rejected(ch12.check_polar_jacobian, transposed)
    rejected(ch12.check_polar_jacobian, forgot_r)  # right only where r = 1
    rejected(ch12.check_polar_jacobian, lambda r, theta: torch.zeros(2, 2, dtype=torch.float64))
    rejected(ch12.check_polar_jacobian, lambda r, theta: ch12.polar_jacobian(r, theta)[0])  # one row: wrong shape


def test_one_unit_ntk_wrong_answers(capsys):
    def no_bias_term(x, x2, w, b, a):
        t, t2 = torch.tanh(w * x + b), torch.tanh(w * x2 + b)
        s, s2 = 1 - t**2, 1 - t2**2
        return a**2 * torch.outer(s * x, s2 * x2) + torch.outer(t, t2)

    def a_not_squared(x, x2, w, b, a):
        t, t2 = torch.tanh(w * x + b), torch.tanh(w * x2 + b)
        s, s2 = 1 - t**2, 1 - t2**2
        return a * torch.outer(s * x, s2 * x2) + a * torch.outer(s, s2) + torch.outer(t, t2)

    def only_the_output_weight(x, x2, w, b, a):  # the kernel of a model that trains only a: no features learned
        return torch.outer(torch.tanh(w * x + b), torch.tanh(w * x2 + b))

    for wrong in (no_bias_term, a_not_squared, only_the_output_weight):
        rejected(ch12.check_one_unit_ntk, wrong)


def test_one_unit_ntk_reference_is_the_lab_empirical_ntk():
    x, x2 = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.1, 0.3])
    expected = ch12._one_unit_reference(x, x2, 0.7, -0.2, 1.5)
    assert expected.shape == (3, 2)
    assert torch.allclose(ch12.one_unit_ntk(x, x2, 0.7, -0.2, 1.5), expected, rtol=1e-12)


def test_predict_lazy_width_wrong_answers(capsys):
    def linear_fit(widths, changes, target=0.1):  # a line through (width, change), not through the logs
        slope, intercept = torch.linalg.lstsq(
            torch.stack([torch.tensor(widths, dtype=torch.float64), torch.ones(len(widths), dtype=torch.float64)], 1),
            torch.tensor(changes, dtype=torch.float64)[:, None]).solution[:, 0]
        return float((target - intercept) / slope)

    def last_two_points(widths, changes, target=0.1):  # ignores the other measurements
        alpha = math.log(changes[-1] / changes[-2]) / math.log(widths[-1] / widths[-2])
        return widths[-1] * (target / changes[-1]) ** (1 / alpha)

    def sqrt_law(widths, changes, target=0.1):  # assumes Lee et al.'s exponent -1/2 instead of fitting it
        return widths[0] * (changes[0] / target) ** 2

    for wrong in (linear_fit, last_two_points, sqrt_law):
        rejected(ch12.check_predict_lazy_width, wrong)
    assert ch12.predict_lazy_width([16, 64, 256, 1024], [0.4, 0.1, 0.025, 0.00625]) == 64.0 or math.isclose(
        ch12.predict_lazy_width([16, 64, 256, 1024], [0.4, 0.1, 0.025, 0.00625]), 64.0, rel_tol=1e-9)
