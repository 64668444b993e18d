"""Every prompt the pipeline sends, as chat messages; engines render them through the tokenizer's template.

Three roles, as in ReflectEvo: the reasoning prompt (first trial), the reflection prompt (one instruction from a
pool of 32 = 2 check styles x 8 review aspects x 2 plan levels) and the correction prompt (second trial: the
question, the failed attempt and the reflection). Training reuses these same functions, so a training prompt is
byte-identical to the inference prompt of the same role.
"""

from __future__ import annotations

import itertools
import random
import re

from reflectevo.schema import Problem

LETTERS = "ABCDEFGHIJ"

CHECK_STYLES = {
    "1": "Trace the failed solution step by step, verifying each step before moving on.",
    "2": "Skim the failed solution quickly, without verifying every step.",
}
REVIEW_ASPECTS = {
    "1": "Check that every arithmetic and calculation operation is accurate.",
    "2": "Check the logic of the method and that its steps come in the right order.",
    "3": "Check that the reasoning is coherent from premises to conclusion.",
    "4": "Check the statements and the conclusion for internal consistency.",
    "5": "Re-read the question and check that the answer meets what it asks.",
    "6": "Check that the answer is relevant and covers every part of the question.",
    "7": "Check that the answer follows the required format.",
    "8": "Check that every fact used is accurate.",
}
PLAN_LEVELS = {
    "1": "Then outline a high-level plan that would prevent similar failures.",
    "2": "Then give specific, concrete corrections for the problems you found.",
}
INSTRUCTIONS: dict[str, str] = {
    f"{a}-{b}-{c}": f"{CHECK_STYLES[a]}\n{REVIEW_ASPECTS[b]}\n{PLAN_LEVELS[c]}"
    for a, b, c in itertools.product(CHECK_STYLES, REVIEW_ASPECTS, PLAN_LEVELS)
}

ANSWER_FORMATS = {
    "choice": "Finish with a last line `Finish[X]`, where X is the letter of your chosen option, e.g. Finish[B].",
    "math": "Finish with a last line `Finish[answer]` holding only the final answer (a number or a LaTeX "
    "expression), e.g. Finish[\\frac{3}{4}].",
    "code": "Finish with a last line `Finish[...]` holding only the complete Python code of your solution.",
    "freetext": "Finish with a last line `Finish[answer]` holding only your short final answer.",
}

FEEDBACK_WRONG = "Your answer was judged incorrect."


def question_block(problem: Problem) -> str:
    text = problem.question
    if problem.choices:
        text += "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(problem.choices))
    if problem.kind == "code" and problem.tests:
        text += "\nYour code must pass these tests:\n" + "\n".join(problem.tests)
    return text


def reasoning_messages(problem: Problem) -> list[dict[str, str]]:
    """First trial: think step by step, then answer in the task's `Finish[...]` format."""
    return [
        {
            "role": "user",
            "content": f"Solve the following problem. Think step by step. {ANSWER_FORMATS[problem.kind]}\n\n"
            f"Question: {question_block(problem)}",
        }
    ]


def reflection_messages(problem: Problem, failed_output: str, instruction_id: str, feedback: str) -> list[dict[str, str]]:
    """Reflection: review the failed attempt under one pool instruction; the gold answer is never shown."""
    return [
        {
            "role": "user",
            "content": f"You tried to solve a problem and failed. {feedback}\n\n"
            f"Question: {question_block(problem)}\n\nYour previous attempt:\n{failed_output}\n\n"
            f"Reflect on the attempt:\n{INSTRUCTIONS[instruction_id]}\n"
            "Do not state the final answer. Use fewer than 100 words.",
        }
    ]


def correction_messages(problem: Problem, failed_output: str, reflection: str) -> list[dict[str, str]]:
    """Second trial: the question again, with the failed attempt and the reflection on it."""
    return [
        {
            "role": "user",
            "content": f"Solve the following problem. Think step by step. {ANSWER_FORMATS[problem.kind]}\n\n"
            f"Question: {question_block(problem)}\n\nA previous attempt failed:\n{failed_output}\n\n"
            f"Your reflection on that attempt:\n{reflection}\n\nNow solve the problem again.",
        }
    ]


def judge_messages(problem: Problem, first: str, second: str) -> list[dict[str, str]]:
    """Dpref judge: which of two reflections (both led to a correct answer) is more useful."""
    return [
        {
            "role": "user",
            "content": f"Question: {question_block(problem)}\n\nTwo reflections on a failed attempt follow.\n\n"
            f"Reflection A:\n{first}\n\nReflection B:\n{second}\n\n"
            "Which reflection better finds the error and plans a fix? Finish with Finish[A] or Finish[B].",
        }
    ]


def draw_instructions(seed: int, round_: int, problem_id: str, count: int) -> list[str]:
    """`count` distinct pool keys for one failed problem, the same in every run with the same seed."""
    rng = random.Random(f"{seed}:{round_}:{problem_id}")
    return rng.sample(sorted(INSTRUCTIONS), count)


_FINISH = re.compile(r"Finish\[")
OPTION_LINE = re.compile(r"^\s*\(?[A-Z][.):](?:\s|$)")


def final_answer_text(output: str) -> tuple[str | None, str]:
    """(the `Finish[...]` answer or None, the text to verify).

    Without `Finish[...]` the verifier gets the last non-empty line: small models end with "The answer is: D.
    Gus", while their first lines often restate the options ("A. ..."), which a verifier would misread as an
    answer. An output that ends in a run of option lines ("A. 5\nB. 4\nC. 2\nD. 3") is a listing, not an answer:
    the verifier gets all of it and judges it unparseable, never its last line as a choice.
    """
    answer = extract_answer(output)
    if answer is not None:
        return answer, answer
    lines = [line for line in output.splitlines() if line.strip()]
    if lines and OPTION_LINE.match(lines[-1]) and sum(bool(OPTION_LINE.match(line)) for line in lines) > 1:
        return None, output  # ends restating options: the last one is no answer; the verifier sees the listing
    return None, lines[-1] if lines else ""


def extract_answer(output: str) -> str | None:
    """Text inside the last `Finish[...]`, brackets balanced (answers like `[0, 1)` contain brackets)."""
    starts = [m.end() for m in _FINISH.finditer(output)]
    if not starts:
        return None
    rest = output[starts[-1] :]
    depth = 1
    for i, ch in enumerate(rest):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth == 0:
            return rest[:i].strip()
    line = rest.split("\n", 1)[0].strip()  # unbalanced, e.g. a half-open interval: the line minus its last ]
    return line[:-1].strip() if line.endswith("]") else line
