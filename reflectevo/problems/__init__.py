"""Problem sources: where a round's questions come from, and the question-level train/eval split.

A source is a typed config (`ProblemSource`); `load_problems` turns it into `Problem` records through the parser
registered for its `format`. Bad rows raise `BadInput` naming the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reflectevo.schema import Kind, Problem

BUILTIN_TASKS = {"choice": "choice.jsonl", "math": "math.jsonl"}

RowParser = Callable[[dict[str, Any], "ProblemSource", str], Problem]
PARSERS: dict[str, RowParser] = {}


class BadInput(ValueError):
    """A row that cannot be read, with where it is and what is wrong."""

    def __init__(self, file: str, line: int | None, field: str | None, message: str):
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}" + (f", line {line}" if line is not None else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class ProblemSource(BaseModel):
    """One task family to load. The built-in families need only `task`."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="Task family name; a built-in name ('choice', 'math') needs nothing else.")
    format: str = Field(default="builtin", description="Row format: 'builtin' or a registered parser name.")
    path: str | None = Field(default=None, description="Local .jsonl/.json/.parquet file; or use `hub_id`.")
    hub_id: str | None = Field(default=None, description="Dataset id for `datasets.load_dataset` (needs the hub).")
    split: str = Field(default="test", description="Split to read when loading from the hub.")
    kind: Kind | None = Field(default=None, description="Override the answer kind the format implies.")
    columns: dict[str, str] = Field(default_factory=dict, description="'mapped' format: our field -> source column.")


def register_parser(name: str) -> Callable[[RowParser], RowParser]:
    def deco(fn: RowParser) -> RowParser:
        PARSERS[name] = fn
        return fn

    return deco


@register_parser("builtin")
def _parse_builtin(row: dict[str, Any], source: ProblemSource, fallback_id: str) -> Problem:
    return Problem(**row)


def read_rows(path: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs from a JSONL, JSON list or parquet file; bad JSON names its line."""
    p = Path(path)
    if not p.exists():
        raise BadInput(path, None, None, "file not found")
    if p.suffix == ".parquet":
        import pandas as pd

        return [(i + 1, row) for i, row in enumerate(pd.read_parquet(p).to_dict(orient="records"))]
    text = p.read_text(encoding="utf-8")
    if not text.strip():
        raise BadInput(path, None, None, "file is empty")
    if p.suffix == ".json":
        data = json.loads(text)
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
    """All problems of one source, in source order."""
    if source.format not in PARSERS:
        raise ValueError(f"unknown problem format {source.format!r}; known: {sorted(PARSERS)}")
    if source.format == "builtin":
        if source.task not in BUILTIN_TASKS:
            raise ValueError(f"unknown built-in task {source.task!r}; known: {sorted(BUILTIN_TASKS)}")
        ref = resources.files("reflectevo.problems") / "data" / BUILTIN_TASKS[source.task]
        with resources.as_file(ref) as p:
            located = [(str(p), n, row) for n, row in read_rows(str(p))]
    elif source.path:
        located = [(source.path, n, row) for n, row in read_rows(source.path)]
    elif source.hub_id:
        from datasets import load_dataset

        ds = load_dataset(source.hub_id, split=source.split)
        located = [(source.hub_id, i + 1, row) for i, row in enumerate(ds)]
    else:
        raise ValueError(f"problem source {source.task!r} needs `path` or `hub_id` for format {source.format!r}")
    parse = PARSERS[source.format]
    problems = []
    for name, line, row in located:
        try:
            problem = parse(row, source, f"{Path(name).stem}-{line}")
        except ValidationError as e:
            err = e.errors()[0]
            raise BadInput(name, line, ".".join(map(str, err["loc"])), err["msg"]) from None
        except KeyError as e:
            raise BadInput(name, line, str(e.args[0]), "missing") from None
        if source.kind:
            problem = problem.model_copy(update={"kind": source.kind})
        problems.append(problem)
    return problems


def split_pool_eval(problems: list[Problem], eval_fraction: float, seed: int) -> tuple[list[Problem], list[Problem]]:
    """Question-level split: the `eval_fraction` of problems with the lowest hash of (seed, task, id) is held out.

    Ranking by hash keeps the split exact for small sets and independent of file order; a problem is in the
    pool or held out, never both.
    """
    def rank(p: Problem) -> bytes:
        return hashlib.sha256(f"{seed}:{p.task}:{p.id}".encode()).digest()

    held = {id(p) for p in sorted(problems, key=rank)[: round(len(problems) * eval_fraction)]}
    return [p for p in problems if id(p) not in held], [p for p in problems if id(p) in held]


from reflectevo.problems import formats  # noqa: E402,F401  (registers the public task formats)
