"""Prefect tasks of the generation stage: preparing the problem shards, and one task per trajectory shard."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import get_run_logger, task
from prefect.futures import PrefectFuture

from reflectevo.config import RoundConfig
from reflectevo.layout import RoundLayout
from reflectevo.schema import ModelRef, ShardManifest
from reflectevo.shards import finished
from stages.generate import ShardJob, generate_shard, generation_key
from stages.prepare import PreparedProblems, prepare_problems
from tasks import retry_transient
from tasks.runners import current_worker


def by_key(context, parameters) -> str:
    """Cache key: the content key the stage computed, never the flow run id, so a new run resumes."""
    return parameters["job"].key


@task(name="prepare-problems", retries=1)
def prepare_problems_task(cfg: RoundConfig, round_: int) -> PreparedProblems:
    """Load and split the problems, write the pool shards and the held-out set."""
    return prepare_problems(cfg, round_)


def plan_shards(cfg: RoundConfig, round_: int, prepared: PreparedProblems, model: ModelRef,
                model_path: str) -> list[ShardJob]:
    """One job per pool shard. Paths are absolute: a shard may run in another process or on another machine that
    mounts the run folder at the same path (runner=ray)."""
    layout = RoundLayout(cfg.run_path().resolve(), round_)
    return [
        ShardJob(problems_path=str(Path(path).resolve()), out_path=str(layout.trajectory_shard(i)),
                 key=generation_key(sha, model, cfg.engine, cfg.generate, round_, i), model=model,
                 model_path=model_path, engine=cfg.engine, generate=cfg.generate, round=round_, shard=i)
        for i, (path, sha) in enumerate(zip(prepared.pool_shards, prepared.pool_sha256))
    ]


@task(name="generate-shard", task_run_name="generate-r{job.round}-shard-{job.shard}", cache_key_fn=by_key,
      persist_result=True, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def generate_shard_task(job: ShardJob) -> ShardManifest:
    """First trial, reflections and second trials for one shard; writes the shard and returns its manifest.

    Runs, verification included, wherever the task runner put it; the manifest says where (`worker`).
    """
    manifest = generate_shard(job)
    return manifest.model_copy(update={"worker": current_worker()})


def submit_shards(jobs: list[ShardJob], result_storage: str) -> list[PrefectFuture]:
    """Submit every shard; one whose files are missing or stale is recomputed even if Prefect cached it.

    `result_storage` is a directory (absolute path) or a storage block slug; every run of the round must see
    the same one for finished shards to come back as Cached.
    """
    storage = Path(result_storage) if os.path.isabs(result_storage) else result_storage
    done = [finished(j.out_path, j.key) is not None for j in jobs]
    get_run_logger().info("%d of %d shards are complete on disk and will be reused; %d to generate",
                          sum(done), len(jobs), len(jobs) - sum(done))
    return [generate_shard_task.with_options(refresh_cache=not ok, result_storage=storage).submit(j)
            for j, ok in zip(jobs, done)]
