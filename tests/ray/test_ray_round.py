"""A tiny round with runner=ray on a two-node Ray cluster, against the same round run locally."""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import pytest

from reflectevo.schema import Problem, RoundManifest
from reflectevo.shards import read_jsonl

pytestmark = pytest.mark.prefect

# 12 choice + 12 math problems, 3 of each held out: 18 pool problems in shards of 4 -> 5 shards.
CONFIG = {
    "model": "tiny", "tasks": ["choice", "math"], "limit": 12, "eval_fraction": 0.25, "shard_size": 4,
    "engine": {"name": "transformers"},
    "generate": {"fewshot": 0, "reflections": 2, "trial_max_tokens": 16, "reflection_max_tokens": 12},
    "evaluate": {"trial_max_tokens": 16, "reflection_max_tokens": 12},
    "train": {"max_steps": 1, "batch_size": 2},
}


def run_round(run_dir, name: str, runner: str, **more) -> RoundManifest:
    from flows.evolve import evolve

    config = run_dir / f"{name}.json"
    config.write_text(json.dumps(CONFIG))
    evolve(rounds=1, run_dir=str(run_dir), name=name, config=str(config), runner=runner, **more)
    return RoundManifest.model_validate_json((run_dir / name / "round-1" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def rounds(prefect_harness, ray_cluster, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs")
    local = run_round(run_dir, "local", "local")
    with mock.patch.dict(os.environ, {"RAY_ADDRESS": ray_cluster.address}):
        on_ray = run_round(run_dir, "ray", "ray")
    return run_dir, local, on_ray


@pytest.fixture(scope="module")
def rerun(rounds, ray_cluster):
    """Round 1 of the Ray lineage run again on Ray: (shard files' mtimes and markers before, after, manifest)."""
    run_dir, _, _ = rounds
    folder = run_dir / "ray" / "round-1" / "trajectories"
    state = lambda: {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}  # noqa: E731
    before = state()
    with mock.patch.dict(os.environ, {"RAY_ADDRESS": ray_cluster.address}):
        again = run_round(run_dir, "ray", "ray", round=1)
    return before, state(), again


def rows(path: str) -> list[dict]:
    """The rows of a shard file, or of every parquet file of a dataset folder, in file order."""
    import pyarrow.parquet as pq

    files = sorted(Path(path).glob("*.parquet")) if Path(path).is_dir() else [Path(path)]
    assert files, f"no parquet file at {path}"
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_shards_ran_on_both_ray_nodes(rounds, ray_cluster):
    _, local, on_ray = rounds
    nodes = {s.worker["node_id"] for s in on_ray.trajectories}
    assert len(on_ray.trajectories) >= 4
    assert nodes == {n.node_id for n in ray_cluster.list_all_nodes()}
    assert all(s.worker["node_id"] is None and s.worker["pid"] == os.getpid() for s in local.trajectories)


def test_each_pool_problem_is_in_exactly_one_ray_shard(rounds):
    run_dir, _, on_ray = rounds
    pool = [(p.task, p.id) for f in sorted((run_dir / "ray" / "round-1" / "problems").glob("pool-*.jsonl"))
            for p in read_jsonl(f, Problem)]
    seen = [(r["problem"]["task"], r["problem"]["id"]) for s in on_ray.trajectories for r in rows(s.path)]
    assert pool and sorted(seen) == sorted(pool) and len(set(seen)) == len(seen)


def test_ray_round_writes_the_same_data_as_a_local_round(rounds):
    """Same shard keys, same trajectories and the same curated datasets, row for row."""
    _, local, on_ray = rounds
    assert [s.key for s in on_ray.trajectories] == [s.key for s in local.trajectories]
    for a, b in zip(local.trajectories, on_ray.trajectories):
        assert rows(a.path) == rows(b.path) and a.sha256 == b.sha256
    assert local.datasets.keys() == on_ray.datasets.keys()
    for name in local.datasets:
        assert rows(on_ray.datasets[name].path) == rows(local.datasets[name].path), name


def test_a_rerun_on_ray_reuses_every_finished_shard(rounds, rerun):
    _, _, on_ray = rounds
    before, after, again = rerun
    assert len(before) == 2 * len(on_ray.trajectories)  # each shard and its marker, nothing else
    assert after == before
    assert [(s.key, s.sha256) for s in again.trajectories] == [(s.key, s.sha256) for s in on_ray.trajectories]
