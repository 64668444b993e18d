"""Row formats of the public task families ReflectEvo uses, registered as problem parsers.

    ProblemSource(task="logiqa", format="logiqa", path="logiqa_test.jsonl")

Each format is a pydantic model of the source row, so a missing field or a wrong type is reported by
`load_problems` as `BadInput` naming the source's own field (`test_list`, not our `tests`). Rows without an id
get the fallback id `load_problems` passes (file stem + line number).

| format        | row fields                                                        | kind                 |
|---------------|-------------------------------------------------------------------|----------------------|
| logiqa        | id?, question (options inline as `A.`..`D.` lines), answer letter | choice               |
|               | or context, query, options (list), correct_option (index)         |                      |
| hendrycks_math| problem, level?, type?, solution (gold = its last `\\boxed{}`)      | math                 |
| mbpp          | task_id, text, code?, test_setup_code?, test_list, challenge_test_list? | code           |
| bigbench      | id?, question (with an `Options:` block of lettered lines), answer letter | choice; freetext when the question has no Options block |
| bigbench_free | id?, question, answer                                             | freetext             |
| mapped        | any columns, through `ProblemSource.columns` (our field -> column)| `source.kind`, or code/choice when tests/choices are mapped |
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from problems.registry import note_repair, register_parser
from reflectevo.config import ProblemSource
from reflectevo.schema import OPTION_LETTERS, Problem
from verifiers.math import last_boxed

@register_parser("builtin")
def _parse_builtin(row: dict[str, Any], source: ProblemSource, fallback_id: str) -> Problem:
    return Problem(**row)


_OPTION = re.compile(r"^\s*\(?([A-Z])[.)]\s*(.*)$")
# Official LogiQA writes 30 of its 500 questions' options as "A All American ..." or "A: ...": read only when no
# block of strict markers is found, and counted as a repair.
_LOOSE_OPTION = re.compile(r"^\s*\(?([A-Z])(?:[.):]|\s)\s*(\S.*)$")


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _invalid(field: str, value: Any, message: str) -> ValidationError:
    """A ValidationError located at the source field, so `load_problems` names it in its BadInput."""
    error = PydanticCustomError("invalid_row", message)
    return ValidationError.from_exception_data("row", [InitErrorDetails(type=error, loc=(field,), input=value)])


def _row_id(value: int | str | None, fallback_id: str) -> str:
    return fallback_id if value is None or str(value).strip() == "" else str(value)


def split_options(text: str) -> tuple[str, list[str]]:
    """(text before the options, option texts) for a trailing block of `A.`, `B.`, ... lines, in letter order.

    A line that does not start the next letter continues the previous option. Without such a block, lines
    marked `A text`, `A:` are read the same way (a repair, noted). No block: `(text, [])`.
    """
    head, options = _split_options(text, _OPTION)
    if options:
        return head, options
    head, options = _split_options(text, _LOOSE_OPTION)
    if options:
        note_repair("option_markers")
    return head, options


def _split_options(text: str, marker: re.Pattern) -> tuple[str, list[str]]:
    lines = text.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        m = marker.match(lines[start])
        if not (m and m.group(1) == "A"):
            continue
        options: list[str] = []
        for line in lines[start:]:
            m = marker.match(line)
            if m and m.group(1) == OPTION_LETTERS[len(options)]:
                options.append(m.group(2).strip())
            elif options:
                options[-1] = f"{options[-1]} {line.strip()}".strip()
        if len(options) >= 2:
            return "\n".join(lines[:start]).strip(), options
    return text.strip(), []


def _letter(field: str, answer: str, choices: list[str]) -> str:
    if not choices:
        raise _invalid(field, answer, "a multiple-choice answer needs choices")
    letter = answer.strip().strip("()").rstrip(".").upper()
    if len(letter) != 1 or letter not in OPTION_LETTERS[: len(choices)]:
        raise _invalid(field, answer, f"expected an option letter A-{OPTION_LETTERS[len(choices) - 1]}, got {answer!r}")
    return letter


# --------------------------------------------------------------------------------------------------------------


class _LogiQAInline(_Row):
    id: int | str | None = None
    question: str
    answer: str


class _LogiQASplit(_Row):
    id: int | str | None = None
    context: str
    query: str
    options: list[str]
    correct_option: int


@register_parser("logiqa")
def parse_logiqa(row: dict[str, Any], source: ProblemSource, fallback_id: str) -> Problem:
    if "question" not in row and "context" in row:
        r = _LogiQASplit.model_validate(row)
        if not 0 <= r.correct_option < len(r.options):
            raise _invalid("correct_option", r.correct_option, f"index out of range for {len(r.options)} options")
        question, choices, answer = f"{r.context.strip()}\n{r.query.strip()}", r.options, OPTION_LETTERS[r.correct_option]
    else:
        r = _LogiQAInline.model_validate(row)
        question, choices = split_options(r.question)
        if not choices:
            raise _invalid("question", r.question, "no option lines 'A. ...', 'B. ...' found")
        answer = _letter("answer", r.answer, choices)
    return Problem(id=_row_id(r.id, fallback_id), task=source.task, kind="choice", question=question,
                   answer=answer, choices=choices, source=fallback_id)


class _HendrycksMath(_Row):
    id: int | str | None = None
    problem: str
    level: str | None = None
    type: str | None = None
    solution: str


@register_parser("hendrycks_math")
def parse_hendrycks_math(row: dict[str, Any], source: ProblemSource, fallback_id: str) -> Problem:
    r = _HendrycksMath.model_validate(row)
    gold = last_boxed(r.solution)
    if gold is None or not gold.strip():
        raise _invalid("solution", r.solution[-200:], "no \\boxed{...} answer in the solution")
    return Problem(id=_row_id(r.id, fallback_id), task=source.task, kind="math", question=r.problem.strip(),
                   answer=gold.strip(), source=fallback_id)


class _MBPP(_Row):
    task_id: int | str
    text: str
    code: str = ""  # the reference solution: not needed to verify, but checked to be text
    test_setup_code: str = ""
    test_list: list[str]
    challenge_test_list: list[str] = []  # ignored, as in ReflectEvo: only test_list decides correctness


@register_parser("mbpp")
def parse_mbpp(row: dict[str, Any], source: ProblemSource, fallback_id: str) -> Problem:
    r = _MBPP.model_validate(row)
    if not r.test_list:
        raise _invalid("test_list", r.test_list, "needs at least one assert")
    question = f"{r.text.strip()}\nYour code should pass these tests:\n" + "\n".join(r.test_list)
    return Problem(id=_row_id(r.task_id, fallback_id), task=source.task, kind="code", question=question, answer="",
                   tests=r.test_list, test_setup_code=r.test_setup_code, source=fallback_id)


class _QA(_Row):
    id: int | str | None = None
    question: str
    answer: str


@register_parser("bigbench")
def parse_bigbench(row: dict[str, Any], source: ProblemSource, fallback_id: str) -> Problem:
    r = _QA.model_validate(row)
    head, sep, block = r.question.rpartition("Options:")
    choices = split_options(block)[1] if sep else []
    if not choices:  # ReflectEvo's BIG-bench file mixes free-text questions in; grade them as free text
        return parse_bigbench_free(row, source, fallback_id)
    return Problem(id=_row_id(r.id, fallback_id), task=source.task, kind="choice", question=head.strip(),
                   answer=_letter("answer", r.answer, choices), choices=choices, source=fallback_id)


@register_parser("bigbench_free")
def parse_bigbench_free(row: dict[str, Any], source: ProblemSource, fallback_id: str) -> Problem:
    r = _QA.model_validate(row)
    if not r.answer.strip():
        raise _invalid("answer", r.answer, "empty gold answer")
    return Problem(id=_row_id(r.id, fallback_id), task=source.task, kind="freetext", question=r.question.strip(),
                   answer=r.answer.strip(), source=fallback_id)


class _Mapped(_Row):
    id: int | str | None = None
    question: str
    answer: str | int = ""
    choices: list[str] = []
    tests: list[str] = []


@register_parser("mapped")
def parse_mapped(row: dict[str, Any], source: ProblemSource, fallback_id: str) -> Problem:
    """Any dataset: `columns={"question": "prompt", "answer": "label", ...}` names the source column of each field.

    An integer answer with choices is an option index (HF datasets' `label`). Without `kind` in the source, a
    row with tests is code and one with choices is multiple choice; anything else needs `kind`.
    """
    unknown = set(source.columns) - set(_Mapped.model_fields)
    if unknown:
        raise ValueError(f"'mapped' columns {sorted(unknown)} are not fields; map some of {sorted(_Mapped.model_fields)}")
    missing = [column for column in source.columns.values() if column not in row]
    if missing:
        raise KeyError(missing[0])
    try:
        r = _Mapped.model_validate({field: row[column] for field, column in source.columns.items()})
    except ValidationError as e:  # name the source's column, not our field
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "question"
        raise _invalid(source.columns.get(field, field), err.get("input"), err["msg"]) from None
    kind = source.kind or ("code" if r.tests else "choice" if r.choices else None)
    if kind is None:
        raise ValueError("the 'mapped' format cannot tell the answer kind: set `kind` in the problem source")
    answer = str(r.answer)
    if kind == "choice":
        if isinstance(r.answer, int):
            if not 0 <= r.answer < len(r.choices):
                raise _invalid(source.columns["answer"], r.answer, f"index out of range for {len(r.choices)} choices")
            answer = OPTION_LETTERS[r.answer]
        else:
            answer = _letter(source.columns.get("answer", "answer"), answer, r.choices)
    return Problem(id=_row_id(r.id, fallback_id), task=source.task, kind=kind, question=r.question.strip(),
                   answer=answer, choices=r.choices, tests=r.tests, source=fallback_id)
