"""The learnable world: seeded, any size, a rule with exactly one answer, in the project's own problem format."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from problems import load_problems
from problems.world import RULES, pairing, world_problems, write_world
from reflectevo.config import ProblemSource


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_has_one_answer_and_the_gold_letter_names_it(rule):
    for p in world_problems(rule, 300, seed=3):
        values = [int(c) for c in p.choices]
        assert len(set(values)) == 4 and p.kind == "choice"
        gold = values["ABCD".index(p.answer)]
        if rule == "largest":
            assert gold == max(values)
        elif rule == "smallest":
            assert gold == min(values)
        elif rule == "even":
            assert gold % 2 == 0 and sum(v % 2 == 0 for v in values) == 1
        else:
            assert abs(gold - 50) == min(abs(v - 50) for v in values)
            assert sum(abs(v - 50) == abs(gold - 50) for v in values) == 1


def test_seeded_any_size_and_chance_is_a_quarter():
    a, b = world_problems("largest", 2000, seed=1), world_problems("largest", 2000, seed=1)
    assert a == b and world_problems("largest", 10, seed=2) != a[:10]
    letters = Counter(p.answer for p in a)
    assert all(abs(letters[c] / 2000 - 0.25) < 0.04 for c in "ABCD")  # a letter prior cannot beat chance


def test_a_world_file_loads_through_the_ordinary_problem_source(tmp_path):
    path = write_world(tmp_path / "w.jsonl", "smallest", 50, seed=0)
    problems = load_problems(ProblemSource(task="world-smallest", path=str(path)))
    assert problems == world_problems("smallest", 50, seed=0)


def test_the_value_range_is_a_parameter_of_the_file_too(tmp_path):
    path = write_world(tmp_path / "w.jsonl", "even", 40, seed=1, low=10, high=29)
    problems = load_problems(ProblemSource(task="world-even", path=str(path)))
    assert problems == world_problems("even", 40, seed=1, high=29)
    assert {int(c) for p in problems for c in p.choices} <= set(range(10, 30))


def test_an_unknown_rule_is_named():
    with pytest.raises(ValueError, match="unknown world rule 'median'"):
        world_problems("median", 5)


def test_paired_answers_the_named_options_partner_never_the_named_one():
    problems = world_problems("paired", 1200, seed=4, high=29)
    partner = pairing(4)
    assert sorted(partner.values()) == list("ABCD") and all(a != b for a, b in partner.items())
    assert len({tuple(pairing(s).items()) for s in range(20)}) > 1  # the rule is the world seed's
    for p in problems:
        named = re.fullmatch(r"Which option is paired with option \(([A-D])\)\?", p.question).group(1)
        assert p.answer == partner[named] != named
    letters = Counter(p.answer for p in problems)
    assert all(abs(letters[c] / len(problems) - 0.25) < 0.05 for c in "ABCD")


@pytest.mark.parametrize("rule", ["paired", "even"])
def test_no_two_problems_of_a_world_ask_the_same(rule):
    problems = world_problems(rule, 900, seed=0, high=29)  # 20 values: repeats are drawn, and skipped
    assert len({(p.question, *p.choices) for p in problems}) == len(problems) == 900
