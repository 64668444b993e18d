"""Two evolution rounds of the tiny model under Prefect: the round contract end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.engines import load_engine
from models.prompts import FEEDBACK_WRONG, correction_messages, reasoning_messages, reflection_messages
from reflectevo.config import EngineConfig
from reflectevo.schema import PairRecord, Problem, RoundManifest, SFTRecord, Trajectory
from reflectevo.shards import read_jsonl, read_records
from stages.curate import filter_reason

pytestmark = pytest.mark.prefect


@pytest.fixture(scope="module")
def two_rounds(prefect_harness, tiny_model_path, tmp_path_factory):
    from flows.evolve import evolve

    run_dir = tmp_path_factory.mktemp("runs")
    config = run_dir / "config.json"
    config.write_text(json.dumps({
        "shard_size": 5, "eval_fraction": 0.25,
        "generate": {"fewshot": 0, "reflections": 3, "trial_max_tokens": 24, "reflection_max_tokens": 16},
        "evaluate": {"trial_max_tokens": 24, "reflection_max_tokens": 16},
        "train": {"max_steps": 2, "batch_size": 2},
    }))
    evolve(rounds=2, model="tiny", engine="transformers", tasks=["choice", "math"], limit=12, run_dir=str(run_dir),
           name="it", config=str(config))
    rounds = [RoundManifest.model_validate_json((run_dir / "it" / f"round-{r}" / "manifest.json").read_text())
              for r in (1, 2)]
    return run_dir / "it", rounds


def trajectories(manifest: RoundManifest) -> list[Trajectory]:
    return [t for s in manifest.trajectories for t in read_records(s.path, Trajectory)]


def test_round_two_generates_with_round_one_adapter(two_rounds):
    _, (r1, r2) = two_rounds
    assert r1.model.adapter is None
    assert r1.adapter.path is not None, r1.adapter.skipped_reason
    assert r2.model.adapter == r1.adapter.path and r2.model.adapter_sha256 == r1.adapter.sha256
    assert all(s.model.adapter == r1.adapter.path for s in r2.trajectories)


def test_each_pool_problem_is_in_exactly_one_shard(two_rounds):
    run, (r1, _) = two_rounds
    pool = [p.id for f in sorted((run / "round-1" / "problems").glob("pool-*.jsonl")) for p in read_jsonl(f, Problem)]
    seen = [t.problem.id for t in trajectories(r1)]
    assert len(r1.trajectories) > 1 and sorted(seen) == sorted(pool) and len(set(seen)) == len(seen)


def test_stored_prompts_are_rendered_before_generation(two_rounds, tiny_model_path):
    """Each stored prompt equals a render of what existed before its generation, so none holds its own output.

    (Searching a prompt for its output proves nothing here: the tiny model often repeats its failed attempt,
    which the correction prompt quotes.)
    """
    _, (r1, _) = two_rounds
    engine = load_engine(EngineConfig(name="transformers"), tiny_model_path, None)
    for t in trajectories(r1):
        shots = r1.config["generate"]["fewshot"]
        assert t.first.prompt == engine.render(reasoning_messages(t.problem, shots))
        for r in t.reflections:
            assert r.prompt == engine.render(reflection_messages(t.problem, t.first.output, r.instruction_id, FEEDBACK_WRONG))
            assert r.second.prompt == engine.render(correction_messages(t.problem, t.first.output, r.text, shots))


def test_dplus_is_exactly_the_verified_fixes(two_rounds):
    _, rounds = two_rounds
    for m in rounds:
        expected = set()
        for t in trajectories(m):
            seen: dict[str, set[str]] = {}
            for r in t.reflections:
                group = seen.setdefault(r.instruction_id, set())
                if filter_reason(t.problem, r, group) is None and r.second.status == "correct":
                    expected.add(f"{t.problem.task}/{t.problem.id}/{r.instruction_id}/{r.sample}")
                group.add(r.text)
        dplus = read_records(m.datasets["dplus"].path, SFTRecord)
        assert {d.id for d in dplus} == expected and len(dplus) == m.datasets["dplus"].rows


def test_held_out_problems_never_reach_training(two_rounds):
    run, rounds = two_rounds
    held = {(p.task, p.id) for p in read_jsonl(run / "round-1" / "problems" / "eval.jsonl", Problem)}
    assert held
    for m in rounds:
        assert not held & {(t.problem.task, t.problem.id) for t in trajectories(m)}
        trained = {(d.task, d.problem_id) for d in read_records(m.datasets["dplus"].path, SFTRecord)}
        for name in ("dpm", "dpref"):
            trained |= {(d.task, d.problem_id) for d in read_records(m.datasets[name].path, PairRecord)}
        assert not held & trained


def test_outputs_load_as_hf_datasets_and_metrics(two_rounds):
    from datasets import load_dataset

    run, (r1, _) = two_rounds
    assert r1.datasets["dplus"].rows > 0
    for name, ds in r1.datasets.items():
        if ds.rows:  # datasets refuses a parquet file without rows ("corresponds to no data")
            assert len(load_dataset("parquet", data_files=f"{ds.path}/*.parquet", split="train")) == ds.rows
        assert len(read_records(ds.path, SFTRecord if name == "dplus" else PairRecord)) == ds.rows
    assert (run / "round-1" / "datasets" / "README.md").read_text().startswith("---")
    metrics = json.loads(Path(r1.metrics_path).read_text())["results"]
    assert {"choice", "math", "all"} <= set(metrics)
    assert all(m["acc@t2,none"] >= m["acc@t1,none"] for m in metrics.values())
