"""A tiny round with runner=local against the same round with runner=ray on a two-node Ray cluster on this machine.

The cluster is the one tests/ray uses: a head and a worker node (separate raylets, loopback only), one CPU each,
so two shards run at once. Both rounds run under one temporary Prefect server, in separate run folders, from
the same config, alternating local and ray --repeats times (fresh run folders, so nothing is reused); each
figure is the fastest of its repeats. Prints one line,
  ray_round round_ratio=<ray/local> local_round_s=<a> ray_round_s=<b> local_generate_s=<c> ray_generate_s=<d>
      shards=<n> slots=<cpus> per_shard_ratio=<r> local_per_shard_s=<e> ray_per_shard_slot_s=<f>
          task_ratio=<ray/local> local_task_s=<g> ray_task_s=<h> local_first_task_wait_s=<i> ray_first_task_wait_s=<j>
where *_generate_s is the generate flow's wall time. What Ray adds per shard, two ways: per_shard_ratio, the
generate wall time times the slots Ray had, per shard (slot-seconds a shard occupied, with the job's worker
start, an engine load in each worker, task shipping and the workers' API calls), over the local seconds per
shard; and task_ratio, a shard task's mean run time on a Ray worker over the same locally (both include their
engine loads). *_first_task_wait_s is the wait from the generate flow's start to its first shard task's start:
on Ray, mostly starting the job's worker processes (torch, transformers and Prefect imports).

    python bench/ray_round.py --limit 12 --shard-size 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

# Python puts bench/ first on sys.path, where bench/verifiers.py would shadow the `verifiers` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])
# Before ray is imported: take 127.0.0.1 as this node's address, so nothing listens on an external one.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
for name, value in {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}.items():
    os.environ.setdefault(name, value)


def generate_timings(run_dir: Path) -> dict[str, float]:
    """Of the generate flow run whose round config names `run_dir`: its wall time, the wait from its start to its
    first shard task's start (on Ray: starting the job's workers), and its shard tasks' mean run time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["generate-r1"])))
        (run,) = [r for r in runs if r.parameters["cfg"]["run_dir"] == str(run_dir)]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    tasks = [t for t in tasks if t.name.startswith("generate-r1-shard-")]
    return {"generate": (run.end_time - run.start_time).total_seconds(),
            "first_task_wait": min((t.start_time - run.start_time).total_seconds() for t in tasks),
            "task": sum((t.end_time - t.start_time).total_seconds() for t in tasks) / len(tasks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=12, help="problems per task (choice, math)")
    parser.add_argument("--shard-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of each runner, alternating; fastest kept")
    args = parser.parse_args()

    from models.loading import resolve_model

    os.environ.setdefault("REFLECTEVO_CACHE_DIR", tempfile.mkdtemp())
    # A private engine slot: other runs on this machine must not make the local rounds wait.
    os.environ["REFLECTEVO_LOCK_DIR"] = tempfile.mkdtemp()
    resolve_model("tiny")  # built before the cluster starts, whose workers inherit this environment

    from prefect.testing.utilities import prefect_test_harness
    from ray.cluster_utils import Cluster

    from flows.evolve import evolve
    from reflectevo.schema import RoundManifest

    config = {"model": "tiny", "tasks": ["choice", "math"], "limit": args.limit, "eval_fraction": 0.25,
              "shard_size": args.shard_size, "engine": {"name": "transformers"},
              "generate": {"reflections": 2, "trial_max_tokens": 16, "reflection_max_tokens": 12},
              "evaluate": {"trial_max_tokens": 16, "reflection_max_tokens": 12},
              "train": {"max_steps": 1, "batch_size": 2}}
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 1024 * 1024}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=180):
            path = Path(tmp) / "config.json"
            path.write_text(json.dumps(config))
            times: dict[str, list[float]] = {}
            shards = {}
            for i in range(args.repeats):
                for runner in ("local", "ray"):
                    run_dir = Path(tmp) / f"{runner}-{i}"
                    with mock.patch.dict(os.environ, {"RAY_ADDRESS": cluster.address}):
                        start = time.perf_counter()
                        evolve(rounds=1, run_dir=str(run_dir), name="bench", config=str(path), runner=runner)
                    times.setdefault(runner, []).append(time.perf_counter() - start)
                    for k, v in generate_timings(run_dir).items():
                        times.setdefault(f"{runner}_{k}", []).append(v)
                    manifest = RoundManifest.model_validate_json(
                        (run_dir / "bench/round-1/manifest.json").read_text())
                    shards[runner] = len(manifest.trajectories)
    finally:
        cluster.shutdown()
    seconds = {k: min(v) for k, v in times.items()}  # other processes only ever add time
    n, slots = shards["ray"], 2
    local_per_shard = seconds["local_generate"] / n
    ray_per_slot = seconds["ray_generate"] * slots / n
    print(f"ray_round round_ratio={seconds['ray'] / seconds['local']:.2f} local_round_s={seconds['local']:.1f} "
          f"ray_round_s={seconds['ray']:.1f} local_generate_s={seconds['local_generate']:.1f} "
          f"ray_generate_s={seconds['ray_generate']:.1f} shards={n} slots={slots} "
          f"per_shard_ratio={ray_per_slot / local_per_shard:.2f} local_per_shard_s={local_per_shard:.2f} "
          f"ray_per_shard_slot_s={ray_per_slot:.2f} task_ratio={seconds['ray_task'] / seconds['local_task']:.2f} "
          f"local_task_s={seconds['local_task']:.2f} ray_task_s={seconds['ray_task']:.2f} "
          f"local_first_task_wait_s={seconds['local_first_task_wait']:.2f} "
          f"ray_first_task_wait_s={seconds['ray_first_task_wait']:.2f}")

if __name__ == "__main__":
    main()
