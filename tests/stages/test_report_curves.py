"""Learning-curve arithmetic: paired gains, the retry breakdown and curve points, on hand-made results files."""

from __future__ import annotations

import json

import pytest

from stages.report import curve_point, paired_gain, retry_breakdown


def write_eval(folder, stamp, rows, acc1=0.5, acc2=0.5):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"samples_t_{stamp}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = {"results": {"all": {"acc@t1,none": acc1, "acc@t1_stderr,none": 0.1, "acc@t2,none": acc2,
                               "acc@t2_stderr,none": "N/A"}},
           "group_subtasks": {"all": ["t"]}, "n-samples": {"t": {"original": len(rows), "effective": len(rows)}}}
    path = folder / f"results_{stamp}.json"
    path.write_text(json.dumps(doc))
    return path


def row(doc, acc2, statuses, answers):
    return {"doc_hash": doc, "acc@t2": acc2, "statuses": statuses, "filtered_resps": answers}


def test_paired_gain_is_the_mean_change_with_the_stderr_of_the_differences(tmp_path):
    before = write_eval(tmp_path / "r0", "a", [row(str(i), 0.0, ["wrong"], ["A"]) for i in range(4)])
    after = write_eval(tmp_path / "r1", "b", [row(str(i), float(i < 2), ["wrong"], ["A"]) for i in range(4)])
    gain, stderr = paired_gain(before, after)
    assert gain == 0.5 and stderr == pytest.approx((1 / 3) ** 0.5 / 2)  # differences 1,1,0,0: sd sqrt(1/3)


def test_paired_gain_refuses_different_problems(tmp_path):
    before = write_eval(tmp_path / "r0", "a", [row("x", 0.0, ["wrong"], ["A"])])
    after = write_eval(tmp_path / "r1", "b", [row("y", 1.0, ["wrong"], ["A"])])
    with pytest.raises(ValueError, match="same problems"):
        paired_gain(before, after)


def test_retry_breakdown_separates_changing_the_answer_from_getting_it_right(tmp_path):
    rows = [row("1", 1.0, ["correct"], ["B"]),                       # right at trial 1: not counted
            row("2", 0.0, ["wrong", "wrong"], ["A", "r", "A"]),       # repeated the rejected answer
            row("3", 1.0, ["wrong", "correct"], ["A", "r", "C"]),     # changed, right
            row("4", 0.0, ["wrong", "wrong"], ["A", "r", "D"])]       # changed, wrong
    assert retry_breakdown(write_eval(tmp_path, "s", rows)) == {"changed": 2 / 3, "right_when_changed": 0.5}


def test_curve_point_reads_metrics_and_na_stderr(tmp_path):
    point = curve_point(write_eval(tmp_path, "s", [row("1", 1.0, ["correct"], ["B"])], 0.25, 0.75))
    assert point["acc@t1"] == 0.25 and point["acc@t1_stderr"] == 0.1 and point["n"] == 1.0
    assert point["acc@t2"] == 0.75 and point["acc@t2_stderr"] != point["acc@t2_stderr"]  # 'N/A' -> NaN
