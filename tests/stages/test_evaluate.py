"""Evaluation: per-turn accuracy, the two trial-1 protocols, and lm-evaluation-harness shaped output files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflectevo.config import EngineConfig, EvalConfig
from reflectevo.schema import ModelRef, Problem
from reflectevo.shards import write_jsonl
from stages.evaluate import evaluate_model, run_eval
from stages.trial import first_trials


def choice(i: int, gold: str, task: str = "choice") -> Problem:
    return Problem(id=f"q{i}", task=task, kind="choice", question=f"Question {i}?", answer=gold,
                   choices=["red", "green", "blue", "white"])


def reply(prompt: str, sample: int) -> str:
    """Trial 1 answers A. A reflection on an A suggests C, one on a C suggests D; a retry follows its reflection."""
    if "Reflect on the attempt" in prompt:
        return "Consider option D." if "Finish[C]" in prompt else "Consider option C."
    if "Your reflection on that attempt" in prompt:
        return "Finish[D]" if "option D" in prompt else "Finish[C]"
    return "Finish[A]"


@pytest.fixture
def problems():
    return [choice(0, "A"), choice(1, "C"), choice(2, "D"), choice(3, "B"), choice(4, "C", task="other")]


class TestRunEval:
    def test_accuracy_after_each_turn_never_falls(self, scripted_engine, problems):
        metrics, samples = run_eval(scripted_engine(reply), problems, EvalConfig(turns=2))
        picked = {k: metrics["choice"][k] for k in ("acc@t1", "acc@t2", "acc@t3", "delta", "n")}
        assert picked == {"acc@t1": 0.25, "acc@t2": 0.5, "acc@t3": 0.75, "delta": 0.25, "n": 4.0}
        assert metrics["other"]["acc@t2"] == 1.0 and metrics["all"]["n"] == 5.0
        q2 = samples[2]
        assert [q2[f"acc@t{k}"] for k in (1, 2, 3)] == [0.0, 0.0, 1.0]
        assert q2["statuses"] == ["wrong", "wrong", "correct"]
        assert q2["filtered_resps"] == ["A", "Consider option C.", "C", "Consider option D.", "D"]
        assert len(samples[0]["resps"]) == 1  # solved at trial 1: no reflection

    def test_one_batched_call_per_step_over_the_still_wrong(self, scripted_engine, problems):
        engine = scripted_engine(reply)
        run_eval(engine, problems, EvalConfig(turns=2))
        # trial 1; reflect + retry the 4 wrong, then the 2 still wrong; the baseline retries 4, then 4, unreflected
        assert [len(prompts) for prompts, _ in engine.calls] == [5, 4, 4, 2, 2, 4, 4]

    def test_paper_protocol_reuses_the_given_first_trials(self, scripted_engine, problems):
        base = scripted_engine(lambda p, s: "Finish[C]")  # the base model answers C everywhere
        first = first_trials(base, problems, EvalConfig().trial_sampling(), fewshot=0)
        round_model = scripted_engine(reply)
        metrics, samples = run_eval(round_model, problems, EvalConfig(), first)
        assert metrics["all"]["acc@t1"] == 0.4 and samples[1]["resps"][0] == ["Finish[C]"]
        assert all("Reflect on the attempt" in p for p in round_model.calls[0][0])  # no trial 1 from this model


    def test_the_no_reflection_baseline_retries_without_the_reflection(self, scripted_engine, problems):
        """Told 'failed' and asked again, this model repeats A: the baseline gains nothing, reflection gains all."""
        engine = scripted_engine(reply)
        metrics, samples = run_eval(engine, problems, EvalConfig())
        m = metrics["choice"]
        assert (m["acc@t2_noreflect"], m["acc@t2"], m["reflection_gain"]) == (0.25, 0.5, 0.25)
        baseline_prompts = engine.calls[-1][0]
        assert all("The previous attempt failed" in p and "Your reflection" not in p for p in baseline_prompts)
        assert samples[1]["noreflect_resps"] == [["Finish[A]"]] and samples[1]["acc@t2_noreflect"] == 0.0

    def test_intrinsic_feedback_retries_every_answer_without_a_verdict(self, scripted_engine, problems):
        """Every answer is reflected on; a right A turns into C (c2i), a wrong A into the right C (i2c)."""
        engine = scripted_engine(reply)
        metrics, _ = run_eval(engine, problems, EvalConfig(feedback="intrinsic"))
        assert [len(prompts) for prompts, _ in engine.calls] == [5, 5, 5, 5]
        assert not any("failed" in p or "incorrect" in p for prompts, _ in engine.calls[1:] for p in prompts)
        m = metrics["choice"]
        assert (m["acc@t1"], m["acc@t2"], m["delta_i2c"], m["delta_c2i"]) == (0.25, 0.25, 0.25, 0.25)
        assert m["delta"] == m["delta_i2c"] - m["delta_c2i"] == 0.0

    def test_every_metric_has_a_stderr(self, scripted_engine, problems):
        metrics, _ = run_eval(scripted_engine(reply), problems, EvalConfig())
        m = metrics["choice"]
        assert m["acc@t1_stderr"] == pytest.approx((0.25 * 0.75 / 3) ** 0.5)  # lm-eval's sqrt(p(1-p)/(n-1))
        assert m["delta_stderr"] == pytest.approx(0.25)  # per-problem differences 0, 1, 0, 0: sd 0.5 / sqrt(4)
        assert all(f"{name}_stderr" in m for name in EvalConfig().metric_names())


@pytest.mark.parametrize("feedback", ["oracle", "intrinsic"])
def test_results_json_keys_under_both_feedback_modes(scripted_engine, problems, feedback):
    from stages.evaluate import results_document

    cfg = EvalConfig(feedback=feedback)
    metrics, _ = run_eval(scripted_engine(reply), problems, cfg)
    row = results_document(metrics, cfg, {}, 1.0)["results"]["all"]
    for name in ("acc@t1", "acc@t2", "delta", "acc@t2_noreflect", "reflection_gain", "delta_i2c", "delta_c2i"):
        assert isinstance(row[f"{name},none"], float) and isinstance(row[f"{name}_stderr,none"], float), name


def test_results_and_samples_files_in_lm_eval_shape(tiny_model_path, tmp_path):
    path = tmp_path / "eval.jsonl"
    write_jsonl(path, [choice(0, "A"), choice(1, "B"), choice(2, "C"),
                       Problem(id="m0", task="math", kind="math", question="1+1?", answer="2")])
    model = ModelRef(base="tiny", base_sha256="abc")
    engine = EngineConfig(name="transformers")
    cfg = EvalConfig(protocol="paper", turns=2, trial_max_tokens=12, reflection_max_tokens=8)
    results_path, metrics = evaluate_model(cfg, str(path), str(tmp_path / "eval"), str(tmp_path / "cache"), model,
                                           tiny_model_path, engine, {"round": 1})

    doc = json.loads(Path(results_path).read_text())
    assert Path(results_path).name.startswith("results_")
    assert {"results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
            "config", "date", "total_evaluation_time_seconds"} <= set(doc)
    assert set(doc["results"]) == {"choice", "math", "all"} and doc["group_subtasks"] == {"all": ["choice", "math"]}
    for task, row in doc["results"].items():
        assert row["alias"] == task
        assert {"acc@t1,none", "acc@t2,none", "acc@t3,none", "delta,none", "acc@t1_stderr,none"} <= set(row)
        assert row["acc@t1,none"] <= row["acc@t2,none"] <= row["acc@t3,none"]
    assert doc["n-samples"]["choice"] == {"original": 3, "effective": 3}
    assert doc["config"]["model_args"]["adapter"] is None and doc["config"]["protocol"] == "paper"
    assert metrics["choice"]["acc@t1"] == doc["results"]["choice"]["acc@t1,none"]
    assert {"acc@t1", "acc@t2", "delta", "n"} <= set(metrics["all"])  # what the round manifest and CLI read

    stamp = Path(results_path).stem.removeprefix("results_")
    rows = [json.loads(line) for line in (tmp_path / "eval" / f"samples_choice_{stamp}.jsonl").read_text().splitlines()]
    assert [r["doc_id"] for r in rows] == [0, 1, 2]
    assert {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "doc_hash", "prompt_hash", "acc@t1",
            "acc@t2", "acc@t3"} <= set(rows[0])
    assert rows[0]["arguments"]["gen_args_0"]["arg_0"].startswith("<|im_start|>user")
    assert (tmp_path / "eval" / f"samples_math_{stamp}.jsonl").exists()

    # trial 1 is held fixed: the next round reads the base model's trials back instead of generating them
    cache = list((tmp_path / "cache").glob("first-trials-*.jsonl"))
    assert len(cache) == 1
    cached = cache[0].read_text()
    cache[0].write_text(cached.replace('"output":"', '"output":"(cached) ', 1))
    again, _ = evaluate_model(cfg, str(path), str(tmp_path / "eval2"), str(tmp_path / "cache"), model,
                              tiny_model_path, engine)
    assert again != results_path
    assert "(cached) " in "".join(f.read_text() for f in (tmp_path / "eval2").glob("samples_*.jsonl"))
