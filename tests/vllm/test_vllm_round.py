"""One evolution round of the tiny model with `engine: vllm`, under Prefect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflectevo.schema import RoundManifest, Trajectory
from reflectevo.shards import read_records

pytestmark = pytest.mark.prefect


def test_one_round_with_the_vllm_engine_generates_trains_and_evaluates(prefect_harness, tmp_path):
    from flows.evolve import evolve
    from models.engines import release_engines

    # A fresh engine, as a real round gets: the session's shared one holds other tests' prompts in its prefix
    # cache, and KV blocks computed in other batches differ in the last bits, which changes sampled text. From a
    # fresh engine the round is the same on every run (measured: D+ had 4 rows in each of 4 runs).
    release_engines()

    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "shard_size": 4,
        "generate": {"fewshot": 0, "reflections": 4, "trial_max_tokens": 24, "reflection_max_tokens": 16},
        "evaluate": {"trial_max_tokens": 24, "reflection_max_tokens": 16},
        "train": {"max_steps": 1, "batch_size": 2},
    }))
    evolve(rounds=1, model="tiny", engine="vllm", tasks=["choice", "math"], limit=16, run_dir=str(tmp_path),
           name="v", config=str(config))

    manifest = RoundManifest.model_validate_json((tmp_path / "v" / "round-1" / "manifest.json").read_text())
    assert manifest.config["engine"]["name"] == "vllm"
    trajectories = [t for s in manifest.trajectories for t in read_records(s.path, Trajectory)]
    assert trajectories and len(trajectories) == sum(s.rows for s in manifest.trajectories)
    assert all(t.first.output_tokens > 0 for t in trajectories)
    assert manifest.datasets["dplus"].rows > 0
    assert manifest.adapter.path is not None and Path(manifest.adapter.path, "adapter_config.json").exists()
    # Evaluated by vLLM with the adapter this round trained.
    results = json.loads(Path(manifest.metrics_path).read_text())
    assert results["config"]["engine"]["name"] == "vllm"
    assert results["config"]["model_args"]["adapter"] == manifest.adapter.path
