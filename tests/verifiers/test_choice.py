"""The choice verifier reads the option letter from every shape small models write it in, and never guesses."""

import pytest

from reflectevo.schema import Problem
from verifiers.choice import verify


def problem(answer: str = "B", choices: tuple[str, ...] = ("Red apple", "Blue sky", "Green grass", "Yellow sun")):
    return Problem(id="c1", task="choice", kind="choice", question="Which is blue?", answer=answer, choices=list(choices))


class TestSurfaceForms:
    @pytest.mark.parametrize(
        "output",
        ["B", "b", "(B)", "(b)", "B.", "B)", "[B]", " B ", "B. Blue sky", "B) Blue sky", "B: Blue sky",
         "the answer is B", "The answer is (b).", "Answer: B", "answer: b", "So the correct option is B.",
         "I considered A but the answer is B", "Blue sky", "blue sky.", "  BLUE   SKY ", "The answer is blue sky"],
    )
    def test_the_gold_letter_in_any_shape_is_correct(self, output):
        verdict = verify(problem(), output)
        assert (verdict.status, verdict.parsed_answer) == ("correct", "B")

    @pytest.mark.parametrize("output", ["A", "(c)", "D. Yellow sun", "Answer: A", "green grass"])
    def test_another_letter_is_wrong_and_named(self, output):
        verdict = verify(problem(), output)
        assert verdict.status == "wrong"
        assert verdict.parsed_answer in "ACD"
        assert "gold is B" in verdict.reason

    def test_gold_letter_in_lower_case_or_parentheses(self):
        assert verify(problem(answer="b"), "B").correct
        assert verify(problem(answer="(B)"), "b").correct


class TestMalformed:
    @pytest.mark.parametrize(
        "output", ["", "   ", "I am not sure", "the answer is a bit unclear", "E", "Answer: F", "purple", "42"]
    )
    def test_no_valid_letter_is_unparseable_not_a_guess(self, output):
        verdict = verify(problem(), output)
        assert verdict.status == "unparseable"
        assert verdict.parsed_answer is None
        assert "A-D" in verdict.reason

    def test_without_choices_any_letter_counts(self):
        assert verify(problem(answer="E", choices=()), "(E)").correct
