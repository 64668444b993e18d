"""Problem sources: where a round's questions come from, and the question-level train/eval split.

A source is a typed config (`ProblemSource`); `load_problems` turns it into `Problem` records through the parser
registered for its `format` (problems/registry.py; the formats are in problems/formats.py). Bad rows raise `BadInput` naming the file, the line and the field.

Real files are messy; what is unambiguous is repaired and reported rather than rejected (`load_problems_reporting`
returns the repairs): option letters written without a period (`A text`, `A:`), and an id that a file repeats for
different questions (the later ones become `1402#2`, `1402#3`, with a warning naming the lines).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from problems import formats  # noqa: F401  (registers the row formats)
from problems.registry import PARSERS, row_repairs
from reflectevo.config import ProblemSource
from reflectevo.errors import ConfigError, DataError
from reflectevo.schema import Problem

log = logging.getLogger(__name__)


class BadInput(DataError):
    """A row that cannot be read, with where it is and what is wrong."""

    def __init__(self, file: str, line: int | None, field: str | None, message: str):
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}" + (f", line {line}" if line is not None else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class Repair(NamedTuple):
    """One thing a source got wrong that loading fixed: `kind` is 'option_markers' or 'duplicate_id'."""

    kind: str
    file: str
    line: int
    detail: str


def unique_ids(located: list[tuple[str, int, Problem]]) -> tuple[list[Problem], list[Repair]]:
    """Problems in order, a repeated id made unique: the first keeps it, the k-th becomes `<id>#k`."""
    lines: dict[str, list[int]] = defaultdict(list)
    for _, line, p in located:
        lines[p.id].append(line)
    taken = set(lines)
    seen: dict[str, int] = defaultdict(int)
    out, repairs = [], []
    for name, line, p in located:
        seen[p.id] += 1
        if seen[p.id] == 1:
            out.append(p)
            continue
        k = seen[p.id]
        while f"{p.id}#{k}" in taken:
            k += 1
        new = f"{p.id}#{k}"
        taken.add(new)
        detail = f"id {p.id!r} is on lines {', '.join(map(str, lines[p.id]))}; line {line} is now {new!r}"
        log.warning("%s: %s", name, detail)
        repairs.append(Repair("duplicate_id", name, line, detail))
        out.append(p.model_copy(update={"id": new}))
    return out, repairs


def read_rows(path: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs from a JSONL, JSON list or parquet file; bad JSON names its line."""
    p = Path(path)
    if not p.exists():
        raise BadInput(path, None, None, "file not found")
    if p.is_dir():
        raise BadInput(path, None, None, "is a folder, not a file")
    if p.suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(p)
        except Exception as e:  # pyarrow raises several types for a file that is not parquet
            raise BadInput(path, None, None, f"not a readable parquet file ({type(e).__name__}: {e})") from None
        return [(i + 1, row) for i, row in enumerate(frame.to_dict(orient="records"))]
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise BadInput(path, line, None, "not UTF-8 text (a binary file?); expected JSON lines") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise BadInput(path, line, None, "holds NUL bytes (a binary file?); expected JSON lines")
    if not text.strip():
        raise BadInput(path, None, None, "file is empty")
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BadInput(path, e.lineno, None, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise BadInput(path, None, None, "a .json file must hold a list of JSON objects")
        return [(i + 1, row) for i, row in enumerate(data)]
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInput(path, n, None, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise BadInput(path, n, None, f"expected a JSON object, got {type(row).__name__}")
        rows.append((n, row))
    return rows


def load_problems(source: ProblemSource) -> list[Problem]:
    """All problems of one source, in source order (repairs are logged; see `load_problems_reporting`)."""
    return load_problems_reporting(source)[0]


def load_problems_reporting(source: ProblemSource) -> tuple[list[Problem], list[Repair]]:
    """All problems of one source, in source order, and each repair made to read the source whole."""
    if source.format == "builtin" and not source.path:
        ref = resources.files("problems") / "data" / f"{source.task}.jsonl"
        with resources.as_file(ref) as p:
            located = [(str(p), n, row) for n, row in read_rows(str(p))]
    elif source.path:
        located = [(source.path, n, row) for n, row in read_rows(source.path)]
    elif source.hub_id:
        from datasets import load_dataset

        ds = load_dataset(source.hub_id, split=source.split)
        located = [(source.hub_id, i + 1, row) for i, row in enumerate(ds)]
    else:
        raise ConfigError(f"problem source {source.task!r} needs `path` or `hub_id` for format {source.format!r}")
    parse = PARSERS[source.format]
    parsed, repairs = [], []
    for name, line, row in located:
        try:
            with row_repairs() as notes:
                problem = parse(row, source, f"{Path(name).stem}-{line}")
            repairs += [Repair(kind, name, line, kind.replace("_", " ")) for kind in notes]
        except ValidationError as e:
            err = e.errors()[0]
            raise BadInput(name, line, ".".join(map(str, err["loc"])), err["msg"]) from None
        except KeyError as e:
            raise BadInput(name, line, str(e.args[0]), "missing") from None
        except ValueError as e:  # the source's settings, not this row (e.g. 'mapped' without `kind`)
            raise ConfigError(f"problem source {source.task!r} ({name}): {e}") from None
        if source.kind:
            problem = problem.model_copy(update={"kind": source.kind})
        parsed.append((name, line, problem))
    problems, renamed = unique_ids(parsed)
    return problems, repairs + renamed


def summarize_repairs(repairs: list[Repair]) -> list[str]:
    """One line per kind of repair: how many, and on which lines of which file."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in repairs:
        groups[(r.kind, r.file)].append(r.line)
    what = {"option_markers": "option letters without a period ('A text', 'A:') read as options",
            "duplicate_id": "repeated ids made unique ('<id>#2')"}
    out = []
    for (kind, file), lines in groups.items():
        shown = ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")
        out.append(f"{file}: {len(lines)} {what.get(kind, kind)} (lines {shown})")
    return out


def question_key(p: Problem) -> tuple:
    """What a model is asked: two problems with the same key are one question, whatever their ids."""
    return p.task, p.kind, p.question.strip(), tuple(c.strip() for c in p.choices), tuple(p.tests), p.test_setup_code


def dedupe(problems: list[Problem]) -> list[Problem]:
    """The problems without repeats of an earlier one's content (the first of each stays)."""
    first: dict[tuple, Problem] = {}
    for p in problems:
        first.setdefault(question_key(p), p)
    return list(first.values())


def split_pool_eval(problems: list[Problem], eval_fraction: float, seed: int) -> tuple[list[Problem], list[Problem]]:
    """Question-level split: the `eval_fraction` of problems with the lowest hash of (seed, task, id) is held out.

    Repeats of a question are dropped first, so no held-out problem is a copy of a pool problem. Ranking by hash
    keeps the split exact for small sets and independent of file order; a problem is in the pool or held out,
    never both.
    """
    problems = dedupe(problems)

    def rank(p: Problem) -> bytes:
        return hashlib.sha256(f"{seed}:{p.task}:{p.id}".encode()).digest()

    held = {id(p) for p in sorted(problems, key=rank)[: round(len(problems) * eval_fraction)]}
    return [p for p in problems if id(p) not in held], [p for p in problems if id(p) in held]
