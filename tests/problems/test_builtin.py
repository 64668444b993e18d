"""The committed built-in sets load, are well formed, and are exactly what the generator writes."""

import inspect
from importlib import resources

import pytest
from math_verify import parse

from problems import build_builtin, load_problems
from reflectevo.config import BUILTIN_TASKS, ProblemSource

# parse() arms signal.alarm unless its timeout is disabled; that fails outside the main thread.
PARSE_KW = {"parsing_timeout": None} if "parsing_timeout" in inspect.signature(parse).parameters else {}


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_loads_with_unique_ids(task):
    problems = load_problems(ProblemSource(task=task))
    assert len(problems) >= 40
    assert len({p.id for p in problems}) == len(problems)
    assert all(p.task == task and p.kind == task and p.source == f"builtin:{task}" for p in problems)
    assert all(p.question.strip() and p.answer and not p.tests and not p.test_setup_code for p in problems)


def test_choice_golds_and_options():
    problems = load_problems(ProblemSource(task="choice"))
    for p in problems:
        assert len(p.choices) == 4 and len(set(p.choices)) == 4, p.id
        assert p.answer in "ABCD"[: len(p.choices)] and len(p.answer) == 1, p.id
    golds = [p.answer for p in problems]
    assert {golds.count(letter) for letter in "ABCD"} == {len(problems) // 4}


def test_math_golds_parse():
    for p in load_problems(ProblemSource(task="math")):
        parsed = parse(f"${p.answer}$", **PARSE_KW)
        assert parsed, p.id
        assert parsed[-1] == p.answer, (p.id, parsed)  # the whole gold was read, not a prefix of it


def test_generator_reproduces_committed_files(tmp_path):
    build_builtin.main(["--out-dir", str(tmp_path)])
    for name in (f"{task}.jsonl" for task in BUILTIN_TASKS):
        committed = (resources.files("problems") / "data" / name).read_bytes()
        assert (tmp_path / name).read_bytes() == committed, name
