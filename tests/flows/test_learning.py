"""The loop learns: on the learnable world, held-out Acc@t2 after round 2 beats round 0 by more than 3 stderr, and
the same loop with shuffled verifier verdicts does not. A fault that breaks learning (a training target unlike
the inference prompt, a round that does not load the previous adapter, a curation filter that keeps the wrong
reflections) fails here, where every plumbing test would still pass.

It runs bench/learning.py's own measurement, smaller: the bench's figures and this test cannot drift apart.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.prefect
ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_learning", ROOT / "bench" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def curve(prefect_harness, tiny_model_path, tmp_path_factory):
    bench = load_bench()
    out = tmp_path_factory.mktemp("learning")
    args = bench.parser().parse_args(["--rounds", "2", "--pool", "400", "--eval", "200", "--out", str(out),
                                      "--png", str(out / "curve.png")])
    return bench.measure(args), out


def test_held_out_acc_t2_rises_by_more_than_3_stderr(curve):
    result, _ = curve
    gain, stderr = result["gains"]["learning"]
    points = result["points"]["learning"]
    assert sorted(points) == [0, 1, 2] and points[0]["n"] == 200
    assert gain > 3 * stderr, (gain, stderr, points)


def test_the_shuffled_verifier_control_does_not_learn(curve):
    result, _ = curve
    gain, stderr = result["gains"]["control"]
    assert gain <= 3 * stderr or gain <= 0.05, (gain, stderr, result["points"]["control"])
    assert result["gains"]["learning"][0] - gain > 0.1


def test_the_curve_is_drawn(curve):
    _, out = curve
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
