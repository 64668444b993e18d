"""`reflectevo verify`: judge a file of answers against a file of problems in one of the public task formats.

    reflectevo verify --task mbpp --problems mbpp.jsonl --answers answers.jsonl --out verdicts.jsonl

Answers are JSON lines `{"answer": "...", "id": "..."}`; an answer with an id goes to the problem with that id,
one without to the problem on the same position (n-th non-blank line of each file). A problems file that repeats
an id (official BIG-bench repeats 1402) is read whole: the later problems become `1402#2`, ..., and an answer
with the repeated id goes to the problem on its own line when that problem has the id. Each repair is counted
in the output. The output has one line
`{"id", "status", "parsed_answer", "reason"}` per answer, in answer order.

Bad input (unreadable JSON, a missing or mistyped field, a line over 1 MiB, an answer for no problem) stops the
command with exit code 2 and names the file, line and field, before anything is verified. With `--skip-bad`
those rows go to `<out>.rejected.jsonl` with the reason and the rest is verified. An empty or missing file is
always an error: there is nothing to verify.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, get_args

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from problems import PARSERS, BadInput, row_repairs, unique_ids
from reflectevo.config import ProblemSource
from reflectevo.errors import DataError, RefusedError
from reflectevo.schema import Problem, VerdictStatus

MAX_LINE_BYTES = 1 << 20


class Task(str, Enum):
    logiqa = "logiqa"
    math = "math"
    mbpp = "mbpp"
    bigbench = "bigbench"
    bigbench_free = "bigbench_free"


FORMAT_OF = {"math": "hendrycks_math"}  # task name -> problem format, where they differ


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadInput]]:
    """(line number, JSON object or the BadInput that describes it) for each non-blank line; a line longer than
    MAX_LINE_BYTES is skipped unread rather than loaded."""
    name = str(path)
    if not path.exists() or path.is_dir():
        raise BadInput(name, None, None, "is a directory" if path.is_dir() else "file not found")
    seen_any = False
    with open(path, "rb") as f:
        for number, line in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(line) > MAX_LINE_BYTES:
                while line and not line.endswith(b"\n"):  # drop the rest of the over-long line
                    line = f.readline(MAX_LINE_BYTES)
                yield number, BadInput(name, number, None, f"line longer than {MAX_LINE_BYTES} bytes")
                seen_any = True
                continue
            if not line.strip():
                continue
            seen_any = True
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                yield number, BadInput(name, number, None, f"not valid JSON ({e})")
                continue
            if not isinstance(row, dict):
                yield number, BadInput(name, number, None, f"expected a JSON object, got {type(row).__name__}")
                continue
            yield number, row
    if not seen_any:
        raise BadInput(name, None, None, "file is empty")


def _problem(row: dict[str, Any], source: ProblemSource, path: Path, line: int,
             repairs: Counter) -> Problem | BadInput:
    try:
        with row_repairs() as notes:
            problem = PARSERS[source.format](row, source, f"{path.stem}-{line}")
        repairs.update(notes)
        return problem
    except ValidationError as e:
        err = e.errors()[0]
        return BadInput(str(path), line, ".".join(map(str, err["loc"])), err["msg"])
    except KeyError as e:
        return BadInput(str(path), line, str(e.args[0]), "missing")


def _answer(row: dict[str, Any], path: Path, line: int) -> tuple[str | None, str] | BadInput:
    if "answer" not in row:
        return BadInput(str(path), line, "answer", "missing")
    if not isinstance(row["answer"], str):
        return BadInput(str(path), line, "answer", f"expected a string, got {type(row['answer']).__name__}")
    answer_id = row.get("id")
    if answer_id is not None and (isinstance(answer_id, bool) or not isinstance(answer_id, (str, int))):
        return BadInput(str(path), line, "id", f"expected a string or integer, got {type(answer_id).__name__}")
    return (None if answer_id is None else str(answer_id)), row["answer"]


def _pairs(task: Task, problems_path: Path, answers_path: Path
           ) -> tuple[list[tuple[Problem, str]], list[BadInput], Counter]:
    """(problem, answer) pairs in answer order, every bad row of either file, and the repairs made."""
    source = ProblemSource(task=task.value, format=FORMAT_OF.get(task.value, task.value), path=str(problems_path))
    bad: list[BadInput] = []
    repairs: Counter = Counter()
    located: list[tuple[str, int, Problem]] = []
    slots: list[tuple[int, int | None]] = []  # (line, index into `located`) per problem row; None: that row was bad
    for line, row in _rows(problems_path):
        problem = row if isinstance(row, BadInput) else _problem(row, source, problems_path, line, repairs)
        if isinstance(problem, BadInput):
            bad.append(problem)
            slots.append((line, None))
        else:
            located.append((str(problems_path), line, problem))
            slots.append((line, len(located) - 1))
    unique, renamed = unique_ids(located)
    repairs["duplicate_id"] += len(renamed)
    lines_of: dict[str, list[int]] = defaultdict(list)
    for _, line, p in located:
        lines_of[p.id].append(line)
    by_id = {p.id: p for p in unique}
    pairs = []
    for position, (line, row) in enumerate(_rows(answers_path)):
        answer = row if isinstance(row, BadInput) else _answer(row, answers_path, line)
        if isinstance(answer, BadInput):
            bad.append(answer)
            continue
        answer_id, text = answer
        here = slots[position] if position < len(slots) else (None, None)
        if answer_id is not None and len(lines_of.get(answer_id, [])) > 1:  # a repeated id: go by line
            if here[1] is None or located[here[1]][2].id != answer_id:
                choices = [answer_id] + [p.id for (_, _, q), p in zip(located, unique) if q.id == answer_id][1:]
                bad.append(BadInput(str(answers_path), line, "id", f"id {answer_id!r} names several problems "
                                    f"({problems_path}, lines {', '.join(map(str, lines_of[answer_id]))}) and the "
                                    f"problem on this answer's line is not one of them; write one of {choices}"))
                continue
            problem = unique[here[1]]
            repairs["matched_by_line"] += 1
        elif answer_id is not None:
            problem = by_id.get(answer_id)
            if problem is None:
                bad.append(BadInput(str(answers_path), line, "id", f"no problem with id {answer_id!r}"))
                continue
        elif position < len(slots):
            problem_line, index = here
            if index is None:
                bad.append(BadInput(str(answers_path), line, None, f"its problem ({problems_path}, line {problem_line}) was rejected"))
                continue
            problem = unique[index]
        else:
            bad.append(BadInput(str(answers_path), line, None, f"no id, and there are only {len(slots)} problems"))
            continue
        pairs.append((problem, text))
    return pairs, bad, repairs


REPAIR_ROWS = {"option_markers": "repaired: option letters without a period",
               "duplicate_id": "repaired: repeated ids made unique",
               "matched_by_line": "repaired: answers to a repeated id matched by line"}


def verify_command(
    task: Annotated[Task, typer.Option(help="Task family; selects the problem format.")],
    problems: Annotated[Path, typer.Option(help="Problems file (JSONL) in the task's format.")],
    answers: Annotated[Path, typer.Option(help='Answers file (JSONL): {"answer": "...", "id": "..." (optional)}.')],
    out: Annotated[Path, typer.Option(help="Verdicts file to write (JSONL).")],
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Write bad rows to <out>.rejected.jsonl and verify the rest.")
    ] = False,
) -> None:
    """Verify answers against problems and write one verdict per answer."""
    from verifiers import verify_many

    console = Console()
    rejected = out.with_name(out.name + ".rejected.jsonl")
    for target in (out, rejected):
        for flag, given in (("--problems", problems), ("--answers", answers)):
            if target.resolve() == given.resolve():
                raise RefusedError(f"--out {out}: would overwrite {flag} {given}; fix: choose another --out")
    pairs, bad, repairs = _pairs(task, problems, answers)
    if bad and not skip_bad:
        more = f" ({len(bad) - 1} more bad rows; --skip-bad sets them aside and verifies the rest)" if len(bad) > 1 else ""
        raise DataError(f"{bad[0]}{more}")
    verdicts = verify_many(pairs)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for (problem, _), verdict in zip(pairs, verdicts):
            f.write(json.dumps({"id": problem.id, **verdict.model_dump()}, ensure_ascii=False) + "\n")
    if skip_bad:
        with open(rejected, "w", encoding="utf-8") as f:
            for b in bad:
                f.write(json.dumps({"file": b.file, "line": b.line, "field": b.field, "reason": b.message}) + "\n")
    counts = Counter(v.status for v in verdicts)
    table = Table(title=f"{task.value}: {len(verdicts)} answers verified")
    table.add_column("status")
    table.add_column("count", justify="right")
    for status in get_args(VerdictStatus):
        table.add_row(status, str(counts.get(status, 0)))
    for kind, label in REPAIR_ROWS.items():
        if repairs.get(kind):
            table.add_row(label, str(repairs[kind]))
    if skip_bad:
        table.add_row("rejected rows", str(len(bad)))
    console.print(table)
    console.print(f"verdicts: {out}" + (f"\nrejected: {rejected}" if skip_bad else ""), highlight=False)
