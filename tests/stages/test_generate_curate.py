"""Generation and curation on a scripted engine: exact outcomes, no model needed."""

from __future__ import annotations

import re

import pytest

from models.prompts import INSTRUCTIONS
from reflectevo.config import CurateConfig, GenerateConfig
from reflectevo.schema import Problem
from stages.curate import FILTERS, JudgeResult, _filter_reason, build_sets, states_gold
from stages.generate import run_round_steps


def choice(i: int, gold: str) -> Problem:
    return Problem(id=f"q{i}", task="choice", kind="choice", question=f"Question {i}?", answer=gold,
                   choices=["red", "green", "blue", "white"])


def reply(prompt: str, sample: int) -> str:
    """First trials answer A; reflection sample 0 suggests C, sample 1 suggests nothing new;
    a second trial answers C when its reflection suggested C, else A again."""
    if "Reflect on the attempt" in prompt:
        return "Consider option C instead." if sample == 0 else "Check each step again."
    if "Your reflection on that attempt" in prompt:
        return "Again: Finish[C]" if "Consider option C" in prompt else "Again: Finish[A]"
    return "Step by step.\nFinish[A]"


@pytest.fixture
def problems():
    return [choice(0, "A"), choice(1, "C"), choice(2, "B")]


class TestGeneration:
    def test_reflects_only_on_wrong_first_trials(self, scripted_engine, problems):
        trajectories, _ = run_round_steps(scripted_engine(reply), problems, GenerateConfig(reflections=2), 1, 0)
        assert [t.first.status for t in trajectories] == ["correct", "wrong", "wrong"]
        assert [len(t.reflections) for t in trajectories] == [0, 2, 2]
        assert [r.second.status for r in trajectories[1].reflections] == ["correct", "wrong"]

    def test_one_batched_engine_call_per_step(self, scripted_engine, problems):
        engine = scripted_engine(reply)
        run_round_steps(engine, problems, GenerateConfig(reflections=2, instructions=2), 1, 0)
        sizes = [(len(prompts), s.n, s.temperature) for prompts, s in engine.calls]
        assert sizes == [(3, 1, 0.0), (4, 2, 0.8), (8, 1, 0.0)]

    def test_first_trials_sample_at_their_own_temperature_and_second_trials_stay_greedy(self, scripted_engine,
                                                                                        problems):
        engine = scripted_engine(reply)
        run_round_steps(engine, problems, GenerateConfig(reflections=2, first_trial_temperature=1.0), 1, 0)
        assert [s.temperature for _, s in engine.calls] == [1.0, 0.8, 0.0]

    @pytest.mark.parametrize("first_trial_model, adapter, first_answer, loaded_adapters", [
        ("base", "round-1/adapter", "B", [None, "round-1/adapter"]),
        ("round", "round-1/adapter", "A", ["round-1/adapter"]),
        ("base", None, "B", [None])])  # round 1: the round's model is the base model, loaded once
    def test_first_trials_come_from_the_model_first_trial_model_names(self, scripted_engine, problems, tmp_path,
                                                                        monkeypatch, first_trial_model, adapter,
                                                                        first_answer, loaded_adapters):
        """Under `base` the first trials are the base model's in every round; reflections and second trials are
        always the round's model's."""
        import stages.generate as generate
        from reflectevo.config import EngineConfig
        from reflectevo.schema import ModelRef, Trajectory
        from reflectevo.shards import read_records, write_jsonl

        base = scripted_engine(lambda p, s: reply(p, s) if "Reflect" in p or "Your reflection" in p else "Finish[B]")
        engines, loaded = {None: base, "round-1/adapter": scripted_engine(reply)}, []
        monkeypatch.setattr(generate, "load_engine", lambda cfg, path, a: loaded.append(a) or engines[a])
        write_jsonl(tmp_path / "pool.jsonl", problems)
        job = generate.ShardJob(problems_path=str(tmp_path / "pool.jsonl"), out_path=str(tmp_path / "s.parquet"),
                                key="k", model=ModelRef(base="tiny", base_sha256="0" * 64, adapter=adapter),
                                model_path="unused", engine=EngineConfig(),
                                generate=GenerateConfig(reflections=2, first_trial_model=first_trial_model),
                                round=2, shard=0)
        generate.generate_shard(job)
        trajectories = read_records(job.out_path, Trajectory)
        assert [t.first.answer for t in trajectories] == [first_answer] * 3
        assert loaded == loaded_adapters
        assert [s.n for _, s in engines[adapter].calls[-2:]] == [2, 1]  # the round's reflections, second trials
        assert sum(len(e.calls) for e in engines.values()) == 3  # each step once: no first trials made twice

    def test_stored_prompts_are_the_prompts_sent(self, scripted_engine, problems):
        engine = scripted_engine(reply)
        trajectories, _ = run_round_steps(engine, problems, GenerateConfig(), 1, 0)
        sent = {p for prompts, _ in engine.calls for p in prompts}
        stored = {t.first.prompt for t in trajectories} | {
            p for t in trajectories for r in t.reflections for p in (r.prompt, r.second.prompt)}
        assert stored == sent
        for t in trajectories:
            assert t.first.output not in t.first.prompt
            for r in t.reflections:
                assert r.text not in r.prompt and r.second.output not in r.second.prompt

    def test_instructions_are_seeded_recorded_pool_keys(self, scripted_engine, problems):
        cfg = GenerateConfig(instructions=3, reflections=1, seed=7)
        first, _ = run_round_steps(scripted_engine(reply), problems, cfg, 1, 0)
        again, _ = run_round_steps(scripted_engine(reply), problems, cfg, 1, 0)
        ids = [[r.instruction_id for r in t.reflections] for t in first]
        assert ids == [[r.instruction_id for r in t.reflections] for t in again]
        assert all(i in INSTRUCTIONS for row in ids for i in row) and len(set(ids[1])) == 3
        for t in first:
            for r in t.reflections:
                assert INSTRUCTIONS[r.instruction_id] in r.prompt


class AlwaysFirst:
    name = "test-judge"

    def compare(self, items):
        return [JudgeResult(winner=0, prompts=["p0", "p1"], verdicts=["Finish[A]", "Finish[B]"]) for _ in items]


class Inconsistent(AlwaysFirst):
    def compare(self, items):
        return [JudgeResult(winner=None, prompts=["p0", "p1"], verdicts=["Finish[A]", "Finish[A]"]) for _ in items]


def reflection_in(prompt: str) -> str:
    """The reflection a second-trial prompt carries, lower-cased (the prompt's worked examples may name options)."""
    return prompt.partition("Your reflection on that attempt:")[2].lower()


def fixing_reply(prompt: str, sample: int) -> str:
    if "Reflect on the attempt" in prompt:
        return ["Consider option C instead.", "Option C fits better.", "Check each step again."][sample]
    if "Your reflection on that attempt" in prompt:
        return "Again: Finish[C]" if "option c" in reflection_in(prompt) else "Again: Finish[A]"
    return "Finish[A]"


class TestCuration:
    def trajectories(self, scripted_engine, engine_reply=fixing_reply):
        problems = [choice(1, "C"), choice(2, "B")]
        return run_round_steps(scripted_engine(engine_reply), problems, GenerateConfig(reflections=3), 1, 0)[0]

    def test_dplus_is_exactly_the_fixing_reflections(self, scripted_engine):
        sets, counts = build_sets(self.trajectories(scripted_engine), CurateConfig(), None)
        assert sorted(r.reflection for r in sets["dplus"]) == ["Consider option C instead.", "Option C fits better."]
        assert all(r.second_trial_answer == "C" and r.problem_id == "q1" for r in sets["dplus"])
        assert counts["dplus"] == 2 and counts["reflections"] == 6

    def test_dplus_cap_keeps_the_first_fixing_reflections_of_a_problem(self, scripted_engine):
        sets, counts = build_sets(self.trajectories(scripted_engine), CurateConfig(max_dplus_per_problem=1), None)
        full, _ = build_sets(self.trajectories(scripted_engine), CurateConfig(), None)
        assert [r.reflection for r in sets["dplus"]] == [full["dplus"][0].reflection] and counts["dplus"] == 1
        assert len(sets["dpm"]) == len(full["dpm"])  # the cap is D+'s alone

    def test_dpm_pairs_fixing_with_not_fixing_under_one_prompt(self, scripted_engine):
        sets, _ = build_sets(self.trajectories(scripted_engine), CurateConfig(max_pm_pairs_per_problem=1), None)
        assert len(sets["dpm"]) == 1
        pair = sets["dpm"][0]
        assert pair.chosen.startswith(("Consider", "Option")) and pair.rejected == "Check each step again."
        assert pair.second_trial_answer_chosen == "C" and pair.second_trial_answer_rejected == "A"

    def test_dpref_keeps_judge_verdicts_and_drops_disagreement(self, scripted_engine):
        trajectories = self.trajectories(scripted_engine)
        sets, _ = build_sets(trajectories, CurateConfig(), AlwaysFirst())
        assert len(sets["dpref"]) == 1
        assert sets["dpref"][0].judge == "test-judge" and sets["dpref"][0].judge_verdicts == ["Finish[A]", "Finish[B]"]
        sets, counts = build_sets(trajectories, CurateConfig(), Inconsistent())
        assert sets["dpref"] == [] and counts["dropped_judge_inconsistent"] == 1

    def test_reflection_stating_gold_answer_is_filtered(self, scripted_engine):
        def leaky(prompt, sample):
            if "Reflect on the attempt" in prompt:
                return ["The correct answer is C.", "Consider option C instead.", "Finish[C]"][sample]
            return fixing_reply(prompt, sample)

        sets, counts = build_sets(self.trajectories(scripted_engine, leaky), CurateConfig(), None)
        assert [r.reflection for r in sets["dplus"]] == ["Consider option C instead."]
        assert counts["dropped_states_gold_answer"] == 3  # two on q1 (gold C); `Finish[` on q2 too

    def test_duplicate_reflections_are_dropped(self, scripted_engine):
        def same(prompt, sample):
            return "Consider option C instead." if "Reflect on the attempt" in prompt else fixing_reply(prompt, sample)

        sets, counts = build_sets(self.trajectories(scripted_engine, same), CurateConfig(), None)
        assert len(sets["dplus"]) == 1 and counts["dropped_duplicate"] == 4  # two repeats on each problem


@pytest.mark.parametrize("text,leaks", [
    ("The answer is C.", True), ("the correct option: (c)", True), ("Finish[A]", True),
    ("Option C looks plausible, check it.", False), ("Re-check the sum.", False),
])
def test_states_gold(text, leaks):
    assert states_gold(choice(0, "C"), text) is leaks


def test_states_gold_for_math():
    p = Problem(id="m", task="math", kind="math", question="1/2+1/4?", answer=r"\frac{3}{4}")
    assert states_gold(p, r"so the answer is \frac{3}{4}")
    assert not re.search("3/4", "no leak") and not states_gold(p, "add the fractions with a common denominator")


def test_filters_apply_in_the_order_the_report_lists_them():
    """Each case would be dropped by its filter and by every later one: the first in FILTERS must win."""
    gold = ("A", "choice", ("x", "y"))
    cases = [("", "unparseable", {""}), ("Finish[A]", "unparseable", {"Finish[A]"}),
             ("Finish[A]", "wrong", {"Finish[A]"}), ("same", "wrong", {"same"})]
    assert [_filter_reason(gold, text, status, seen) for text, status, seen in cases] == list(FILTERS)
