"""Verifiers: pure functions `(problem, output) -> Verdict`, one per answer kind.

`output` is the model's final answer text (what stood inside `Finish[...]`, or the whole output when the model
did not use that format). A verifier never raises on model output: unparseable, timed-out and crashing answers
are statuses of the returned `Verdict`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from reflectevo.schema import Problem, Verdict

Verifier = Callable[[Problem, str], Verdict]

# Lazy "module:function" targets, so importing this package imports no verifier's dependencies.
REGISTRY: dict[str, str] = {
    "choice": "verifiers.choice:verify",
    "math": "verifiers.math:verify",
    "code": "verifiers.code:verify",
    "freetext": "verifiers.freetext:verify",
}


def get_verifier(kind: str) -> Verifier:
    """The verifier for an answer kind: `get_verifier("math")(problem, "\\frac12")`."""
    if kind not in REGISTRY:
        raise ValueError(f"no verifier for kind {kind!r}; known: {sorted(REGISTRY)}")
    module, fn = REGISTRY[kind].split(":")
    return getattr(import_module(module), fn)


def verify(problem: Problem, output: str) -> Verdict:
    return get_verifier(problem.kind)(problem, output)


def verify_many(items: list[tuple[Problem, str]]) -> list[Verdict]:
    """Verdicts for many (problem, output) pairs, in order. Stages call this, never a verifier in a loop."""
    return [verify(problem, output) for problem, output in items]
