"""Verifiers: pure functions `(problem, output) -> Verdict`, one per answer kind.

`output` is the model's final answer text (what stood inside `Finish[...]`, or the whole output when the model
did not use that format). A verifier never raises on model output: unparseable, timed-out and crashing answers
are statuses of the returned `Verdict`.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
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

# Kinds whose verifier cannot hang the caller: string comparison, or the code sandbox, which enforces its own
# wall-clock limit on a subprocess. Everything else (math: sympy can run for minutes) goes to worker processes.
IN_PROCESS = frozenset({"choice", "freetext", "code"})
# Kinds whose verifier can say more than its verdict when asked (`rich_feedback=True`): the code verifier then
# names the failing assert, the values and the program's output, for `generate.rich_feedback`.
RICH = frozenset({"code"})
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_PROCESSES = max(1, min(4, os.cpu_count() or 1))

_POOL = None  # the shared verifiers.pool.WorkerPool, started on first use: workers outlive a call, not the process
_POOL_LOCK = threading.Lock()


def _target(kind: str) -> str:
    if kind not in REGISTRY:
        raise ValueError(f"no verifier for kind {kind!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[kind]


def get_verifier(kind: str) -> Verifier:
    """The verifier for an answer kind: `get_verifier("math")(problem, "\\frac12")`."""
    module, fn = _target(kind).split(":")
    return getattr(import_module(module), fn)


def verify(problem: Problem, output: str, rich_feedback: bool = False) -> Verdict:
    verifier = get_verifier(problem.kind)
    if rich_feedback and problem.kind in RICH:
        return verifier(problem, output, rich_feedback=True)
    return verifier(problem, output)


def _pool(processes: int):
    global _POOL
    from verifiers.pool import WorkerPool

    with _POOL_LOCK:
        if _POOL is None or _POOL.processes != processes:
            if _POOL is not None:
                _POOL.close()
            _POOL = WorkerPool(processes, preload=[REGISTRY[k] for k in sorted(REGISTRY) if k not in IN_PROCESS])
        return _POOL


def verify_many(
    items: list[tuple[Problem, str]], *, timeout_s: float = DEFAULT_TIMEOUT_S, processes: int = DEFAULT_PROCESSES,
    rich_feedback: bool = False,
) -> list[Verdict]:
    """Verdicts for many (problem, output) pairs, in order. Stages call this, never a verifier in a loop.

    Kinds in `IN_PROCESS` run here (string work, or a verifier that bounds its own subprocesses); every other
    kind runs in a pool of `processes` worker processes, and an item that takes longer than `timeout_s` seconds
    gets `Verdict(status="timeout")` while its worker is killed and replaced. `rich_feedback` asks the `RICH` kinds'
    verifiers for their detailed reason. Safe to call from any thread.
    """
    verdicts: list[Verdict | None] = [None] * len(items)
    pooled = [i for i, (problem, _) in enumerate(items) if problem.kind not in IN_PROCESS]
    local = [i for i, (problem, _) in enumerate(items) if problem.kind in IN_PROCESS]
    with ThreadPoolExecutor(max_workers=processes) as threads:  # code runs in subprocesses: overlap them
        for i, verdict in zip(local, threads.map(lambda i: verify(*items[i], rich_feedback), local)):
            verdicts[i] = verdict
    if pooled:
        jobs = [(_target(items[i][0].kind), *items[i]) for i in pooled]
        for i, verdict in zip(pooled, _pool(processes).run(jobs, timeout_s)):
            verdicts[i] = verdict
    return verdicts
