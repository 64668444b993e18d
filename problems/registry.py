"""The problem-format registry: one row parser per `ProblemSource.format`.

A parser turns one source row into a `Problem`; `problems/formats.py` registers the public formats (and our own,
`builtin`) at import. This module imports nothing of the package, so formats.py and the loader in
`problems/__init__.py` both depend on it and not on each other.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

from reflectevo.config import ProblemSource
from reflectevo.schema import Problem

RowParser = Callable[[dict[str, Any], ProblemSource, str], Problem]
PARSERS: dict[str, RowParser] = {}

_row_repairs: ContextVar[list[str] | None] = ContextVar("row_repairs", default=None)


def note_repair(kind: str) -> None:
    """Called by a parser that had to read a row leniently; counted against that row's line."""
    notes = _row_repairs.get()
    if notes is not None:
        notes.append(kind)


@contextmanager
def row_repairs() -> Iterator[list[str]]:
    """Collect the `note_repair` kinds of the rows parsed inside."""
    notes: list[str] = []
    token = _row_repairs.set(notes)
    try:
        yield notes
    finally:
        _row_repairs.reset(token)


def register_parser(name: str) -> Callable[[RowParser], RowParser]:
    def deco(fn: RowParser) -> RowParser:
        PARSERS[name] = fn
        return fn

    return deco
