"""Arithmetic word problems: seeded, distinct, and every gold answer is what the math verifier accepts."""

from __future__ import annotations

import re

from models.prompts import final_answer_text
from problems.wordproblems import word_problems
from verifiers import verify


def verdict(problem, output: str) -> str:
    return verify(problem, final_answer_text(output)[1]).status  # as a trial is judged: the Finish[...] answer


def test_seeded_distinct_and_the_gold_answers_verify():
    problems = word_problems(600, seed=2)
    assert problems == word_problems(600, seed=2) and problems != word_problems(600, seed=3)
    assert len({p.question for p in problems}) == 600 and {p.kind for p in problems} == {"math"}
    for p in problems:
        assert verdict(p, f"Each gets that many.\nFinish[{p.answer}]") == "correct"
        assert verdict(p, f"Finish[{int(p.answer) + 1}]") == "wrong"


def test_the_answers_follow_the_question():
    for p in word_problems(300, seed=0):
        numbers = [int(n) for n in re.findall(r"\d+", p.question)]
        if "gets" in p.question:
            assert int(p.answer) == numbers[0] + numbers[1]
        elif "gives away" in p.question:
            assert int(p.answer) == numbers[0] - numbers[1]
        elif "shares" in p.question:
            assert int(p.answer) * numbers[1] == numbers[0]
        elif "lost" in p.question:
            assert int(p.answer) == numbers[0] + numbers[1] - numbers[2]
        else:
            assert int(p.answer) == numbers[0] * numbers[1]
