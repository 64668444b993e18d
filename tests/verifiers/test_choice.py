"""The choice verifier reads the option letter from every shape small models write it in, and never guesses."""

import pytest

from reflectevo.schema import Problem
from models.prompts import final_answer_text
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


LISTING_PROBLEM = Problem(id="l", task="t", kind="choice", question="Which?", answer="D", choices=["5", "4", "2", "3"])


@pytest.mark.parametrize("answer", [
    "A. 5\nB. 4\nC. 2\nD. 3",  # the options restated, gold last
    "D. 3\nC. 2\nB. 4\nA. 5",  # any order
    "D. 3\nA. 5",
    "A) 5\nD) 3",
    "(A) 5\n(D) 3",
    "A: 5\nD: 3",
    "A. True / B. False / C. Neither / D. 3",  # one line, separated
    "B or D", "D or B", "D and A", "(A) or (D)", "A, D", "B/D", "D & C",
])
def test_listings_and_two_letter_answers_are_never_credited(answer):
    verdict = verify(LISTING_PROBLEM, final_answer_text(answer)[1])
    assert verdict.status == "unparseable" and "several options" in verdict.reason


@pytest.mark.parametrize("answer", ["D", "(d)", "D. 3", "The answer is D.", "answer: D", "3", "the answer is (D)",
                                    "Answer is D. Because B. is wrong"])
def test_single_explicit_answers_stay_credited(answer):
    assert verify(LISTING_PROBLEM, final_answer_text(answer)[1]).status == "correct"
