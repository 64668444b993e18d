"""verify_many: order kept, callable from worker threads, and a hung or dying verifier costs one item, not the run."""

import textwrap
import threading
import time

import pytest

import verifiers
from reflectevo.schema import Problem


def math(answer: str, id: str = "m") -> Problem:
    return Problem(id=id, task="math", kind="math", question="q", answer=answer)


def choice(answer: str) -> Problem:
    return Problem(id="c", task="choice", kind="choice", question="q", answer=answer, choices=["x", "y"])


@pytest.fixture
def misbehaving_math(tmp_path, monkeypatch):
    """Route kind 'math' to a verifier that hangs on "hang", dies on "die" and raises on "raise"."""
    (tmp_path / "misbehaving_verifier.py").write_text(textwrap.dedent("""
        import os, time
        from verifiers.math import verify as real

        def verify(problem, output):
            if output == "hang":
                time.sleep(1000)
            if output == "die":
                os._exit(3)
            if output == "raise":
                raise ValueError("boom")
            return real(problem, output)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))  # the worker processes inherit the caller's sys.path
    monkeypatch.setitem(verifiers.REGISTRY, "math", "misbehaving_verifier:verify")


def in_thread(fn):
    """Run fn in a fresh non-main thread, as Prefect's ThreadPoolTaskRunner does, and return its result."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_verdicts_come_back_in_order_for_mixed_kinds():
    items = [(math("\\frac12"), "0.5"), (choice("B"), "b"), (math("3"), "4"), (choice("A"), "B"), (math("1"), "")]
    statuses = [v.status for v in in_thread(lambda: verifiers.verify_many(items))]
    assert statuses == ["correct", "correct", "wrong", "wrong", "unparseable"]


def test_empty_batch():
    assert verifiers.verify_many([]) == []


def test_a_hanging_item_times_out_and_the_rest_still_verify(misbehaving_math):
    items = [(math("1"), "1"), (math("2"), "hang"), (math("3"), "3"), (math("4"), "5")]
    start = time.monotonic()
    verdicts = in_thread(lambda: verifiers.verify_many(items, timeout_s=1.5))
    assert time.monotonic() - start < 10
    assert [v.status for v in verdicts] == ["correct", "timeout", "correct", "wrong"]
    assert "1.5s" in verdicts[1].reason
    # the killed worker was replaced: the pool keeps working
    assert [v.status for v in verifiers.verify_many([(math("7"), "7")] * 3, timeout_s=1.5)] == ["correct"] * 3


def test_a_dying_verifier_is_a_runtime_error_for_that_item_only(misbehaving_math):
    verdicts = verifiers.verify_many([(math("1"), "die"), (math("2"), "2")])
    assert [v.status for v in verdicts] == ["runtime_error", "correct"]
    assert "exit code 3" in verdicts[0].reason


def test_a_raising_verifier_is_a_bug_and_raises_with_the_traceback(misbehaving_math):
    with pytest.raises(RuntimeError, match="(?s)problem 'bad'.*ValueError: boom"):
        verifiers.verify_many([(math("1", id="bad"), "raise"), (math("2"), "2")])
    assert verifiers.verify_many([(math("2"), "2")])[0].correct
