"""generate.rich_feedback: the code verifier's detailed reason reaches the reflection prompt; off, only 'wrong'."""

from __future__ import annotations

import shutil

import pytest

from reflectevo.config import GenerateConfig
from reflectevo.schema import Problem
from stages.generate import run_round_steps

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")

PROBLEM = Problem(id="add", task="code", kind="code", question="Write add(a, b).", answer="",
                  tests=["assert add(2, 3) == 5"])


def reply(prompt: str, sample: int) -> str:
    """A wrong program first; a reflection that says what to change."""
    if "Reflect on the attempt" in prompt:
        return "Use + instead of *."
    return "Finish[def add(a, b):\n    return a * b]"


@pytest.mark.parametrize("rich", [True, False])
def test_the_reflection_prompt_names_the_failing_assert_only_when_asked(scripted_engine, rich):
    cfg = GenerateConfig(fewshot=0, reflections=1, rich_feedback=rich)
    (trajectory,), _ = run_round_steps(scripted_engine(reply), [PROBLEM], cfg, 1, 0)
    assert trajectory.first.status == "wrong"
    prompt = trajectory.reflections[0].prompt
    assert ("add(2, 3) = 6" in prompt) is rich
    assert ("assert add(2, 3) == 5" in trajectory.first.reason) is rich
