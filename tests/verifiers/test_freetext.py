"""Free-text answers: SQuAD normalisation, exact match and token F1 against a threshold."""

import pytest

from reflectevo.schema import Problem
from verifiers.freetext import f1, normalize, verify


def problem(answer: str) -> Problem:
    return Problem(id="f1", task="freetext", kind="freetext", question="Where?", answer=answer)


def test_normalize_drops_case_punctuation_articles_and_extra_space():
    assert normalize("  The  Eiffel-Tower, in PARIS! ") == "eiffeltower in paris"
    assert normalize("An apple a day") == "apple day"


class TestVerdicts:
    @pytest.mark.parametrize("output", ["Eiffel Tower", "the eiffel tower.", "  EIFFEL   TOWER!"])
    def test_exact_match_after_normalisation_is_correct(self, output):
        verdict = verify(problem("The Eiffel Tower"), output)
        assert verdict.status == "correct"
        assert verdict.parsed_answer == "eiffel tower"
        assert "EM=1 F1=1.000" in verdict.reason

    def test_partial_overlap_below_threshold_is_wrong_and_reports_scores(self):
        verdict = verify(problem("Eiffel Tower"), "a tower in Paris")  # 1 common token: P=1/3 R=1/2
        assert verdict.status == "wrong"
        assert "EM=0 F1=0.400" in verdict.reason

    def test_threshold_is_a_parameter(self):
        assert verify(problem("Eiffel Tower"), "Tower", threshold=0.6).correct  # F1 = 2/3
        assert not verify(problem("Eiffel Tower"), "Tower").correct  # default 0.8

    def test_close_paraphrase_above_threshold_is_correct(self):
        # 4 of 4 gold tokens in a 5-token answer: F1 = 8/9
        assert verify(problem("Marie Curie discovered polonium"), "Marie Curie discovered polonium first").correct

    @pytest.mark.parametrize("output", ["", "  ", "...", "the a an"])
    def test_nothing_left_after_normalisation_is_unparseable(self, output):
        assert verify(problem("Paris"), output).status == "unparseable"


def test_f1_edge_cases():
    assert f1("", "") == 1.0
    assert f1("paris", "") == 0.0
    assert f1("a b c", "x y") == 0.0
    assert f1("paris paris", "paris") == pytest.approx(2 / 3)
