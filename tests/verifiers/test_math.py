"""The math verifier: math-verify equivalence first, Hendrycks-style normalised strings when it finds nothing."""

import threading

import pytest

from reflectevo.schema import Problem
from verifiers.math import last_boxed, strip_string, verify


def problem(answer: str) -> Problem:
    return Problem(id="m1", task="math", kind="math", question="Compute it.", answer=answer)


class TestEquivalent:
    @pytest.mark.parametrize(
        "gold, output",
        [
            ("\\dfrac{1}{2}", "0.5"),  # fraction vs decimal
            ("0.5", "\\frac{1}{2}"),
            ("\\frac{1}{2}", "1/2"),
            ("\\frac12", "\\dfrac{1}{2}"),  # \dfrac vs \frac, brace-less fraction
            ("\\tfrac{3}{4}", "0.75"),
            ("42", "42.0"),  # plain numbers
            ("42", "42."),
            ("1{,}000", "1000"),
            ("10\\text{ cm}", "10"),  # units in \text{}
            ("10", "10 \\text{ cm}"),
            ("[1,3)", "[1, 3)"),  # intervals, spacing
            ("(-\\infty, 2]", "(-\\infty,2]"),
            ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),  # \left/\right
            ("5", "\\boxed{5}"),  # bare \boxed
            ("\\boxed{5}", "5"),
            ("3", "The final answer is $\\boxed{3}$."),
            ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"),
            ("x^2+2x+1", "(x+1)^2"),
            ("50\\%", "50"),
            ("\\$10.50", "10.5"),
            ("\\text{(A)}", "(A)"),  # nothing symbolic: normalised strings decide
        ],
    )
    def test_equivalent_forms_are_correct(self, gold, output):
        verdict = verify(problem(gold), output)
        assert verdict.status == "correct", verdict


class TestNotEquivalent:
    @pytest.mark.parametrize(
        "gold, output", [("3", "4"), ("\\frac{1}{2}", "0.25"), ("(1,3)", "[1,3)"), ("1,2", "12"), ("x+1", "x-1")]
    )
    def test_different_values_are_wrong(self, gold, output):
        verdict = verify(problem(gold), output)
        assert verdict.status == "wrong"
        assert verdict.parsed_answer

    @pytest.mark.parametrize("output", ["", "   \n"])
    def test_empty_answer_is_unparseable(self, output):
        assert verify(problem("3"), output).status == "unparseable"

    def test_words_are_never_correct(self):
        assert not verify(problem("5"), "I could not solve it").correct


class TestHelpers:
    def test_last_boxed_handles_nested_braces_and_takes_the_last(self):
        assert last_boxed("first \\boxed{1} then \\boxed{\\frac{a}{\\sqrt{b}}} done") == "\\frac{a}{\\sqrt{b}}"
        assert last_boxed("\\fbox{7}") == "7"
        assert last_boxed("no box") is None
        assert last_boxed("\\boxed{unclosed") is None

    @pytest.mark.parametrize(
        "a, b",
        [("\\dfrac{1}{2}", "0.5"), ("\\left(1,2\\right)", "(1, 2)"), ("x = 5", "5"), ("5\\text{ inches}", "5"),
         ("90^\\circ", "90"), (".5", "\\frac12"), ("\\boxed{7}", "7")],
    )
    def test_strip_string_normal_forms(self, a, b):
        assert strip_string(a) == strip_string(b)


def test_runs_in_a_non_main_thread():
    # math-verify's default timeouts use signal.alarm, which raises outside the main thread; ours are off.
    verdicts = []
    t = threading.Thread(target=lambda: verdicts.append(verify(problem("\\frac{1}{2}"), "0.5")))
    t.start()
    t.join()
    assert verdicts[0].correct
