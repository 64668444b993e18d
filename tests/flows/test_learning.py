"""The loop learns: on the learnable world, held-out Acc@t2 after round 2 beats round 0 by more than 3 stderr,
and the shuffled-verifier control, the same loop with verdicts cut from the answers, does not.

A smaller run of bench/learning.py (its `measure`, the same flows and stages): the bench's world (600 pool and
300 held-out problems), two rounds of each lineage where the bench runs three, the two lineages side by side. A fault that breaks learning (training on the reflections that did not fix,
a round that does not load the previous round's weights) leaves round 2 where round 0 was, and fails it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.prefect

ROOT = Path(__file__).resolve().parents[2]


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_learning", ROOT / "bench" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_world_is_learnt_by_round_2_and_the_shuffled_control_is_not(prefect_harness, tmp_path, monkeypatch):
    monkeypatch.setenv("REFLECTEVO_ENGINE_SLOTS", "2")  # the two lineages side by side, as the bench runs them
    bench = bench_module()
    args = bench.parser().parse_args(["--rounds", "2", "--out", str(tmp_path), "--png", str(tmp_path / "curve.png")])
    result = bench.measure(args)

    learning, control = result["points"]["learning"], result["points"]["control"]
    assert sorted(learning) == sorted(control) == [0, 1, 2] and learning[0]["n"] == 300
    gain, gain_err = result["gains"]["learning"]
    assert gain > 3 * gain_err and gain > 0.05, (gain, gain_err, {r: p["acc@t2"] for r, p in learning.items()})
    control_gain, control_err = result["gains"]["control"]
    assert not control_gain > 3 * control_err, (control_gain, control_err)
    assert (tmp_path / "curve.png").stat().st_size > 0
