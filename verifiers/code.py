"""Code answers (MBPP style): run the model's Python against the problem's asserts in the sandbox.

Feedback is binary by default, as in ReflectEvo: the reason says only which way it failed, and which sandbox
limit the program hit, if any. With `rich_feedback=True` it also carries the judge's detail (the failing assert
and the values it saw, or the traceback) and the tail of the program's output, for experiments on richer
feedback. An 'unverifiable' verdict (a test the judge cannot check without trusting the program's own objects)
always carries the judge's reason: it is about the test, not the answer.
"""

from __future__ import annotations

import re

from reflectevo.schema import Problem, Verdict
from verifiers.sandbox import Limits, run_python

DEFAULT_LIMITS = Limits()
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)
_BINARY_REASON = {
    "correct": "all tests passed",
    "wrong": "a test failed",
    "runtime_error": "the code raised an error or exited before the tests finished",
    "timeout": "the code ran out of time",
}


def extract_code(output: str) -> str:
    """The program in a final answer: the fenced block that defines something (else the first), or the text."""
    fenced = _FENCE.findall(output)
    if not fenced:
        return output.strip("\n")
    blocks = [b for b in fenced if b.strip()] or [""]
    return next((b for b in blocks if re.search(r"^\s*(?:def|class)\s", b, re.M)), blocks[0]).strip("\n")


def verify(problem: Problem, output: str, rich_feedback: bool = False, limits: Limits = DEFAULT_LIMITS) -> Verdict:
    """`verify(p, "def add(a, b):\\n    return a + b")` is correct when every assert in `p.tests` passes."""
    code = extract_code(output)
    if not code.strip():
        return Verdict(status="unparseable", reason="no code in the answer")
    result = run_python(code, problem.tests, problem.test_setup_code, limits)
    reason = result.detail if result.status == "unverifiable" else _BINARY_REASON[result.status]
    if result.limit:
        reason += f" (hit {result.limit})"
    if rich_feedback:
        reason = "\n".join(part for part in (result.detail, result.output and f"output:\n{result.output}") if part)
    return Verdict(status=result.status, parsed_answer=code, reason=reason)
