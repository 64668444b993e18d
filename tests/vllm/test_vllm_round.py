"""One evolution round of the tiny model with `engine: vllm`, under Prefect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflectevo.schema import RoundManifest, Trajectory
from reflectevo.shards import read_records

pytestmark = pytest.mark.prefect


def test_one_round_with_the_vllm_engine_generates_trains_and_evaluates(prefect_harness, vllm_engine, tmp_path):
    from flows.evolve import evolve

    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "shard_size": 4,
        "generate": {"reflections": 4, "trial_max_tokens": 24, "reflection_max_tokens": 16},
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
    # vLLM's CPU sampling is not bit-stable across runs, so a round of the tiny model can (rarely) fix nothing;
    # then training must be skipped with the reason, never fail. Otherwise it ran after the engine left.
    if manifest.datasets["dplus"].rows:
        assert manifest.adapter.path is not None and Path(manifest.adapter.path, "adapter_config.json").exists()
    else:
        assert manifest.adapter.path is None and manifest.adapter.skipped_reason.startswith("D+ is empty")
    assert manifest.metrics_path and Path(manifest.metrics_path).exists()  # evaluated with the adapter, by vLLM
