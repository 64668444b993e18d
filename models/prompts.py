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

from reflectevo.schema import OPTION_LETTERS, Problem


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

# Worked examples per task kind, written for this project: (question, options, worked answer ending in Finish[...]).
# The reasoning and correction prompts show the first `fewshot` of them; small models write `Finish[...]` far
# more often with them (SmolLM2-135M: 1 of 32 zero-shot, 29 of 32 with three).
EXEMPLARS: dict[str, list[tuple[str, list[str], str]]] = {
    "choice": [
        ("A shop sells pens at 3 dollars each. How much do 4 pens cost?", ["7", "12", "10", "15"],
         "4 pens at 3 dollars each cost 4 x 3 = 12 dollars, which is option B.\nFinish[B]"),
        ("All cats in the shelter are vaccinated. Tom is a cat in the shelter. Which statement must be true?",
         ["Tom is not vaccinated.", "Some dogs are vaccinated.", "Tom is vaccinated.", "Tom is a dog."],
         "Every cat in the shelter is vaccinated and Tom is one of them, so Tom is vaccinated: option C.\nFinish[C]"),
        ("Which word means the opposite of 'ancient'?", ["modern", "old", "large", "quiet"],
         "'Ancient' means very old, so its opposite is 'modern', option A.\nFinish[A]"),
    ],
    "math": [
        ("What is 15% of 80?", [], "15% of 80 is 0.15 x 80 = 12.\nFinish[12]"),
        ("Solve for x: 2x + 6 = 14.", [], "Subtract 6 from both sides: 2x = 8. Divide by 2: x = 4.\nFinish[4]"),
        ("Simplify \\frac{6}{8}.", [], "Divide the numerator and the denominator by 2: \\frac{3}{4}.\nFinish[\\frac{3}{4}]"),
    ],
    "code": [
        ("Write a function square(n) that returns n squared.", [],
         "Multiply n by itself.\nFinish[def square(n):\n    return n * n]"),
        ("Write a function is_even(n) that returns True when n is even.", [],
         "n is even when n % 2 is 0.\nFinish[def is_even(n):\n    return n % 2 == 0]"),
        ("Write a function reverse_words(s) that returns the words of s in reverse order, joined by spaces.", [],
         "Split on whitespace, reverse the list and join it with spaces.\n"
         "Finish[def reverse_words(s):\n    return ' '.join(s.split()[::-1])]"),
    ],
    "freetext": [
        ("What is the capital city of France?", [], "The capital of France is Paris.\nFinish[Paris]"),
        ("Which planet is closest to the Sun?", [], "Mercury orbits closest to the Sun.\nFinish[Mercury]"),
        ("How many days are in a leap year?", [], "A leap year adds February 29 to the usual 365 days.\nFinish[366]"),
    ],
}


def option_letter(index: int) -> str:
    """A, B, ..., Z, then AA, AB, ...: any number of options gets a letter."""
    return OPTION_LETTERS[index] if index < len(OPTION_LETTERS) else option_letter(index // 26 - 1) + OPTION_LETTERS[index % 26]


def question_block(problem: Problem) -> str:
    text = problem.question
    if problem.choices:
        text += "\n" + "\n".join(f"{option_letter(i)}. {c}" for i, c in enumerate(problem.choices))
    if problem.kind == "code" and problem.tests:
        text += "\nYour code must pass these tests:\n" + "\n".join(problem.tests)
    return text


def solve_header(problem: Problem, fewshot: int) -> str:
    """The opening of the reasoning and correction prompts: the task, its answer format, `fewshot` worked examples."""
    header = f"Solve the following problem. Think step by step. {ANSWER_FORMATS[problem.kind]}\n\n"
    shots = EXEMPLARS[problem.kind][:fewshot]
    if shots:
        examples = [f"Question: {question_block(Problem(id='example', task=problem.task, kind=problem.kind, question=q, answer='', choices=c))}"
                    f"\nAnswer: {worked}" for q, c, worked in shots]
        header += "Solved examples:\n\n" + "\n\n".join(examples) + "\n\n(END OF EXAMPLES)\n\n"
    return header


def reasoning_messages(problem: Problem, fewshot: int = 0) -> list[dict[str, str]]:
    """First trial: think step by step, then answer in the task's `Finish[...]` format."""
    return [{"role": "user", "content": f"{solve_header(problem, fewshot)}Question: {question_block(problem)}"}]


def instruction_text(instruction_id: str, told_wrong: bool = True) -> str:
    """A pool instruction; when the model is not told its attempt failed, it reviews "the solution", so the
    instruction does not give the verdict away."""
    text = INSTRUCTIONS[instruction_id]
    return text if told_wrong else text.replace("the failed solution", "the solution")


def reflection_messages(problem: Problem, failed_output: str, instruction_id: str,
                        feedback: str | None) -> list[dict[str, str]]:
    """Reflection: review the previous attempt under one pool instruction; the gold answer is never shown.

    `feedback` is the verifier's word on the attempt (oracle feedback); None under intrinsic self-correction,
    where the model is not told whether the attempt was right.
    """
    opening = f"You tried to solve a problem and failed. {feedback}" if feedback is not None else \
        "You tried to solve a problem. Check your attempt; it may be right or wrong."
    return [
        {
            "role": "user",
            "content": f"{opening}\n\n"
            f"Question: {question_block(problem)}\n\nYour previous attempt:\n{failed_output}\n\n"
            f"Reflect on the attempt:\n{instruction_text(instruction_id, told_wrong=feedback is not None)}\n"
            "Do not state the final answer. Use fewer than 100 words.",
        }
    ]


def correction_messages(problem: Problem, failed_output: str, reflection: str | None, fewshot: int = 0,
                        told_wrong: bool = True) -> list[dict[str, str]]:
    """Second trial: the question again, with the previous attempt and the reflection on it.

    Without a reflection it is the no-reflection baseline: the same retry, minus the reflection. `told_wrong`
    False (intrinsic self-correction) shows the attempt without saying that it failed.
    """
    # "The", not "A": a prompt that always holds a lone "A" teaches a small model that option A is no answer.
    previous = "The previous attempt failed" if told_wrong else "Your previous attempt"
    text = f"{solve_header(problem, fewshot)}Question: {question_block(problem)}\n\n{previous}:\n{failed_output}\n\n"
    if reflection is not None:
        text += f"Your reflection on that attempt:\n{reflection}\n\n"
    return [{"role": "user", "content": text + "Now solve the problem again."}]


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
