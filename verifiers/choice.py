"""Multiple choice: find the option letter in a free-form final answer and compare it with the gold letter.

Small models answer the same letter in many shapes (`B`, `(b)`, `B. option text`, `Answer: B`, the option
text alone), so extraction tries the shapes from most to least explicit and gives up with "unparseable" rather
than guess: a wrong guess would turn a formatting failure into a fake wrong answer.
"""

from __future__ import annotations

import re
import string

from reflectevo.schema import OPTION_LETTERS, Problem, Verdict

# "answer is B", "Answer: (b)", "option C", "the correct choice is D." — the last such phrase wins, because
# models often restate a rejected option before the final one.
# A lower-case letter counts only in parentheses or before punctuation/the end: "the answer is a bit unclear".
_PHRASE = re.compile(
    r"\b(?i:answer|option|choice)\b(?:\s+(?i:is|would be|should be))?\s*[:\-]?\s*"
    r"(?:\(([A-Za-z])\)|([A-Z])\b|([a-z])(?=[.,;:!)]|\s*$))"
)
# The answer starts with the letter and punctuation: "B", "b", "(B)", "B.", "B)", "B: text", "B. option text".
_LEADING = re.compile(r"^\s*[\[(]?([A-Za-z])(?:[.):\]]|\s*$)")
_PAREN = re.compile(r"\(([A-Z])\)")
# An option marker that opens a line or follows a separator: "A. 5", "(B) text", "C) x", "D: y", "A. True / B. False".
OPTION_MARK = re.compile(r"(?:^|[\n/|;])[ \t]*\(?([A-Z])[.):](?:[ \t]|$)", re.MULTILINE)
# Two different letters given as one answer: "B or C", "A and D", "B/C", "A, C", "(A) or (B)".
_TWO_LETTERS = re.compile(r"(?<![A-Za-z])\(?([A-Z])\)?\s*(?:,|/|&|\bor\b|\band\b)\s*\(?([A-Z])\)?(?![A-Za-z])")


def names_several_options(output: str, valid: str) -> bool:
    """Whether the answer lists options (two or more option markers) or names two letters as the answer.

    Such an answer restates the question instead of choosing: crediting it would count whichever option the
    extraction happened to read, and put that noise into D+.
    """
    marked = {m for m in OPTION_MARK.findall(output) if m in valid}
    paired = any(a != b and a in valid and b in valid for a, b in _TWO_LETTERS.findall(output))
    return len(marked) > 1 or paired


def _norm(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: the form option texts are compared in."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


def extract_letter(output: str, choices: list[str]) -> str | None:
    """The uppercase option letter the output names, or None; letters beyond the options do not count."""
    valid = OPTION_LETTERS[: len(choices)] if choices else OPTION_LETTERS
    if names_several_options(output, valid):
        return None
    m = _LEADING.match(output)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    phrased = [letter.upper() for groups in _PHRASE.findall(output) if (letter := "".join(groups)).upper() in valid]
    if phrased:
        return phrased[-1]
    text = _norm(re.sub(r"^\s*(?:the\s+)?(?:correct\s+)?answer\s*(?:is|:)\s*", "", output, flags=re.I))
    for letter, choice in zip(valid, choices):
        if text and text == _norm(choice):
            return letter
    parens = [g for g in _PAREN.findall(output) if g in valid]
    return parens[-1] if parens else None


def verify(problem: Problem, output: str) -> Verdict:
    """`verify(p, "the answer is (b)")` -> Verdict(status="correct", parsed_answer="B") when the gold is "B"."""
    gold = problem.answer.strip().strip("()").upper()
    letter = extract_letter(output, problem.choices)
    if letter is None:
        valid = OPTION_LETTERS[: len(problem.choices)] if problem.choices else OPTION_LETTERS
        if names_several_options(output, valid):
            return Verdict(status="unparseable", reason="the answer lists several options or names two letters; "
                                                        "choose one")
        span = f"A-{OPTION_LETTERS[len(problem.choices) - 1]}" if problem.choices else "A-Z"
        return Verdict(status="unparseable", reason=f"no option letter ({span}) or option text found in the answer")
    if letter == gold:
        return Verdict(status="correct", parsed_answer=letter, reason=f"chose {letter}, the gold option")
    return Verdict(status="wrong", parsed_answer=letter, reason=f"chose {letter}, gold is {gold}")
