"""The shuffled-verifier control: same share judged correct, its link to the answers cut; evaluation untouched."""

from __future__ import annotations

from reflectevo.config import GenerateConfig
from reflectevo.schema import Problem
from stages.generate import run_round_steps


def problems(n: int) -> list[Problem]:
    return [Problem(id=f"q{i}", task="t", kind="choice", question=f"Q{i}?", answer="ABCD"[i % 4],
                    choices=["w", "x", "y", "z"]) for i in range(n)]


def reply(prompt: str, sample: int) -> str:
    """Always answers A; a reflection names B; a retry follows its reflection."""
    if "Reflect on the attempt" in prompt:
        return "try option (B)."
    if "Your reflection on that attempt" in prompt:
        return "Finish[B]"
    return "Finish[A]"


def test_shuffled_verdicts_keep_the_count_and_break_the_link(scripted_engine):
    ps = problems(40)
    truth, _ = run_round_steps(scripted_engine(reply), ps, GenerateConfig(fewshot=0, reflections=1), 1, 0)
    shuffled, _ = run_round_steps(scripted_engine(reply), ps, GenerateConfig(fewshot=0, reflections=1,
                                                                             verdicts="shuffled"), 1, 0)
    judged = [t.first.status == "correct" for t in truth]
    moved = [t.first.status == "correct" for t in shuffled]
    assert sum(judged) == sum(moved) == 10  # the 10 problems whose gold is A
    assert judged != moved
    assert [t.first.output for t in truth] == [t.first.output for t in shuffled]  # outputs are the model's own
    # the problems judged wrong are reflected on, whatever their true verdict
    assert [bool(t.reflections) for t in shuffled] == [not m for m in moved]


def test_the_verifier_is_the_default():
    assert GenerateConfig().verdicts == "verifier"
