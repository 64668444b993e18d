"""Prompts: the instruction pool, rendering through the tokenizer's template, and answer extraction."""

from __future__ import annotations

import pytest

from models.prompts import INSTRUCTIONS, draw_instructions, extract_answer, final_answer_text, reasoning_messages
from reflectevo.config import INSTRUCTION_ID, EvalConfig
from reflectevo.schema import Problem


def test_pool_has_32_distinct_instructions_keyed_a_b_c():
    assert len(INSTRUCTIONS) == 32 and len(set(INSTRUCTIONS.values())) == 32
    assert {k.split("-")[0] for k in INSTRUCTIONS} == {"1", "2"}
    assert {k.split("-")[1] for k in INSTRUCTIONS} == {str(i) for i in range(1, 9)}
    assert {k.split("-")[2] for k in INSTRUCTIONS} == {"1", "2"}


def test_config_accepts_exactly_the_pool_keys():
    # the contract checks `evaluate.instruction_id` by pattern, without importing the pool
    assert all(INSTRUCTION_ID.fullmatch(k) for k in INSTRUCTIONS)
    with pytest.raises(ValueError, match="not a pool key"):
        EvalConfig(instruction_id="3-1-1")


def test_instruction_draws_are_seeded_and_distinct():
    assert draw_instructions(0, 1, "q1", 4) == draw_instructions(0, 1, "q1", 4)
    assert len(set(draw_instructions(0, 1, "q1", 32))) == 32
    assert draw_instructions(0, 1, "q1", 4) != draw_instructions(0, 2, "q1", 4)


@pytest.mark.parametrize("output,answer", [
    ("so\nFinish[B]", "B"),
    ("Finish[A] then Finish[C]", "C"),
    ("Finish[\\frac{1}{2}]", "\\frac{1}{2}"),
    ("Finish[[0, 1]]", "[0, 1]"),
    ("Finish[[0, 1)]", "[0, 1)"),
    ("no format here", None),
])
def test_extract_answer(output, answer):
    assert extract_answer(output) == answer


def test_without_finish_the_last_line_is_verified():
    assert final_answer_text("A. red\nB. blue\nThe answer is B.\n\n") == (None, "The answer is B.")
    assert final_answer_text("x\nFinish[B]") == ("B", "B")


def test_prompt_is_rendered_by_the_model_template(tiny_model_path):
    from transformers import AutoTokenizer

    from models.engines.hf import TransformersEngine

    engine = TransformersEngine(tiny_model_path)
    problem = Problem(id="q", task="choice", kind="choice", question="Pick one?", answer="A", choices=["x", "y"])
    messages = reasoning_messages(problem)
    rendered = engine.render(messages)
    expected = AutoTokenizer.from_pretrained(tiny_model_path).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)
    assert rendered == expected and "A. x\nB. y" in rendered and "Finish[" in rendered


def test_a_restated_option_listing_is_not_reduced_to_its_last_line():
    listing = "A. 5\nB. 4\nC. 2\nD. 3"
    assert final_answer_text(listing) == (None, listing)
    assert final_answer_text("Let me see.\nD. 3") == (None, "D. 3")  # one option line after reasoning: an answer
