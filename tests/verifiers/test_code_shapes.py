"""The test shapes of MBPP and MBPP-style sets, judged outside the program: correct programs pass every one.

The hostile side (programs that try to change what these shapes mean) is in test_code.py; here each shape is
checked the other way, against programs that are right, so the judge's isolation costs no correct answer.
"""

import json
import shutil
from pathlib import Path

import pytest

from reflectevo.schema import Problem
from verifiers import code as code_verifier, sandbox_harness
from verifiers.sandbox import Limits

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")
FAST = Limits(wall_s=3.0, cpu_s=2)
SAMPLES = Path(__file__).resolve().parents[2] / "problems" / "data" / "samples" / "mbpp.jsonl"


def verify(code: str, tests: list[str], setup: str = "", limits: Limits = FAST):
    problem = Problem(id="s1", task="mbpp", kind="code", question="q", answer="", tests=tests, test_setup_code=setup)
    return code_verifier.verify(problem, code, rich_feedback=True, limits=limits)


def test_the_reference_solutions_of_the_shipped_mbpp_samples_are_correct():
    rows = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
    verdicts = {row["task_id"]: verify(row["code"], row["test_list"], row["test_setup_code"]) for row in rows}
    assert {k: v.reason for k, v in verdicts.items() if not v.correct} == {}


PAIRS = "def pairs(n):\n    return [(i, chr(97 + i)) for i in range(n)][::-1]"
SHAPES = {
    "plain": ("def add(a, b):\n    return a + b", "assert add(2, 3) == 5"),
    "isclose": ("import math\ndef volume_cone(r, h):\n    return math.pi * r * r * h / 3",
                "assert math.isclose(volume_cone(5, 12), 314.15926535897927, rel_tol=0.001)"),
    "isclose_without_importing_math": ("def half(x):\n    return x / 2", "assert math.isclose(half(1), 0.5)"),
    "set": (PAIRS, "assert set(pairs(2)) == {(0, 'a'), (1, 'b')}"),
    "sorted_with_a_lambda_key": (PAIRS, "assert sorted(pairs(3), key=lambda t: t[0]) == [(0, 'a'), (1, 'b'), (2, 'c')]"),
    "for_loop": ("def square(x):\n    return x * x", "for i in range(5):\n    assert square(i) == i ** 2"),
    "all_of_a_generator": ("def square(x):\n    return x * x", "assert all(square(i) == i * i for i in range(5))"),
    "if_expression": ("def square(x):\n    return x * x", "assert (True if square(3) == 9 else False)"),
    "lambda_call": ("def square(x):\n    return x * x", "assert (lambda v: v == 9)(square(3))"),
    "function_passed_to_map": ("def square(x):\n    return x * x", "assert list(map(square, [1, 2])) == [1, 4]"),
    "statements_before_the_assert": ("def square(x):\n    return x * x", "res = square(4)\nassert res == 16"),
    "keyword_arguments": ("def scale(x, by=1):\n    return x * by", "assert scale(2, by=3) == 6"),
    "floats_and_infinity": ("def inv(x):\n    return float('inf') if x == 0 else 1 / x", "assert inv(0) == float('inf') and inv(4) == 0.25"),
    "bytes_complex_range_frozenset": ("def f():\n    return (b'\\x00a', 1 + 2j, range(3), frozenset({1}), None, {1: [2.5]})",
                                      "assert f() == (b'\\x00a', 1 + 2j, range(3), frozenset({1}), None, {1: [2.5]})"),
    "big_number": ("import math\ndef fact(n):\n    return math.factorial(n)", "assert fact(2000) % 10 ** 6 == 0 and len(str(fact(2000))) == 5736"),
    "a_generator_returned": ("def evens(n):\n    return (i for i in range(n) if i % 2 == 0)", "assert list(evens(5)) == [0, 2, 4] and 4 in evens(5)"),
    "a_generator_passed": ("def total(xs):\n    return sum(xs)", "assert total(x * x for x in range(3)) == 5"),
    "objects_of_the_program": ("class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
                               "def firsts(ps):\n    return [p.a for p in ps]",
                               "assert firsts([Pair(5, 24), Pair(15, 25)]) == [5, 15] and Pair(1, 2).b == 2"),
    "method_len_and_items_of_an_object": ("class Stack:\n    def __init__(self):\n        self.items = []\n"
                                          "    def push(self, x):\n        self.items.append(x)\n        return self\n"
                                          "    def __len__(self):\n        return len(self.items)\n"
                                          "    def __getitem__(self, i):\n        return self.items[i]",
                                          "s = Stack().push(1).push(2)\nassert len(s) == 2 and s[1] == 2 and list(s) == [1, 2]"),
    "an_expected_exception": ("def root(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x ** 0.5",
                              "try:\n    root(-1)\n    raised = False\nexcept ValueError:\n    raised = True\nassert raised"),
    "humaneval_check_function": ("def add(a, b):\n    return a + b",
                                 "def check(candidate):\n    assert candidate(2, 3) == 5\n"
                                 "    assert abs(candidate(0.1, 0.2) - 0.3) < 1e-9\ncheck(add)"),
    "one_of_several_answers": (PAIRS, "assert pairs(1) in ([(0, 'a')], [(0, 'b')])"),
    "subclasses_of_builtin_data": ("import collections\ndef count(xs):\n    return collections.Counter(xs)",
                                   "assert count('aab') == {'a': 2, 'b': 1}"),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_a_correct_program_passes_each_test_shape(name):
    code, test = SHAPES[name]
    verdict = verify(code, [test])
    assert verdict.correct, verdict.reason


def test_objects_the_setup_code_builds_reach_the_program_by_name():
    setup = "class Node:\n    def __init__(self, v, kids=()):\n        self.v, self.kids = v, list(kids)\nroot = Node(1, [Node(2, [Node(3)])])"
    code = "def height(node):\n    return 1 + max((height(k) for k in node.kids), default=0)"
    assert verify(code, ["assert height(root) == 3"], setup=setup).correct


def test_tests_that_never_reach_the_program_are_unverifiable():
    verdict = verify("def add(a, b):\n    return 0", ["if False:\n    assert add(2, 3) == 5"])
    assert verdict.status == "unverifiable" and "without reaching the program's code" in verdict.reason


def test_a_test_script_guarded_by_its_name_runs():
    test = "def check(candidate):\n    assert candidate(2, 3) == 5\nif __name__ == '__main__':\n    check(add)"
    assert verify("def add(a, b):\n    return a - b", [test]).status == "wrong"


def test_a_builtin_the_program_shadows_keeps_its_meaning_in_the_test():
    code = "def max(xs):\n    return 0\ndef biggest(xs):\n    return sorted(xs)[-1]"
    assert verify(code, ["assert biggest([3, 7]) == max([3, 7])"]).correct


def test_the_tmpfs_cap_is_configurable():
    code = "open('/tmp/f', 'wb').write(b'x' * (2 << 20))\ndef add(a, b):\n    return a + b"
    small = verify(code, ["assert add(1, 1) == 2"], limits=Limits(wall_s=3.0, cpu_s=2, disk_mb=1))
    assert small.status == "runtime_error" and "the 1 MB size cap" in small.reason
    assert verify(code, ["assert add(1, 1) == 2"], limits=Limits(wall_s=3.0, cpu_s=2, disk_mb=4)).correct


class TestCodec:
    """What crosses the pipes: exact built-in types only, so decoding a reply runs no code the program wrote."""

    def test_plain_data_round_trips_with_its_exact_types(self):
        value = [(1, 2.5, "s", b"b", 1j, None, True), {"k": {frozenset({1})}}, range(1, 5, 2)]
        data = sandbox_harness.loads(sandbox_harness.dumps(sandbox_harness.encode(value, None)))
        assert sandbox_harness.decode(data, None) == value
        assert type(sandbox_harness.decode(data, None)[0]) is tuple

    @pytest.mark.parametrize("forged", [{"a": 1}, ["s", ["l"]], ["x", 1], [], ["b", 5]])
    def test_a_forged_reply_is_refused(self, forged):
        def unknown(tag, items):
            raise ValueError(tag)

        with pytest.raises((ValueError, TypeError)):
            sandbox_harness.decode(forged, unknown)

    @pytest.mark.parametrize("data", [b'["l", 1', b'[1] [2]', b"\xff", b"[" * 100000])
    def test_bytes_that_are_not_one_json_value_are_refused(self, data):
        with pytest.raises((ValueError, RecursionError)):
            sandbox_harness.loads(data)
