"""Where generation shards run: one at a time in the flow's own process (`local`), or as Ray tasks (`ray`).

`local` is one thread and one engine per process, and the stage holds the machine's engine slot
(tasks/concurrency.py) so no other run loads a model beside it. `ray` hands each shard to Ray through
prefect-ray's `RayTaskRunner`: the cluster named by `RAY_ADDRESS` (Ray's own convention), or a Ray started for
the flow run when it is unset. There Ray places the shards: each asks for `engine.num_cpus` CPUs and
`engine.num_gpus` GPUs (by default one GPU when the cluster has any, else none), so the engine slot is not
taken: a per-host limit of one would serialize a whole cluster behind one machine's name.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from reflectevo.config import EngineConfig
from tasks.concurrency import engine_slot

Runner = Literal["local", "ray"]


def generation_runner(runner: Runner) -> TaskRunner:
    """The task runner of the generate flow for `runner`."""
    if runner == "ray":
        from prefect_ray import RayTaskRunner

        # address=None lets ray.init() read RAY_ADDRESS itself, and start a local Ray when it is unset.
        return RayTaskRunner(address=os.environ.get("RAY_ADDRESS") or None)
    # One worker: shards share one engine in this process.
    return ThreadPoolTaskRunner(max_workers=1)


def shard_resources(engine: EngineConfig) -> dict[str, float]:
    """Ray resources of one shard task: the configured amounts; without `num_gpus`, one GPU if the cluster has any."""
    import ray

    gpus = engine.num_gpus
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    return {"num_cpus": engine.num_cpus, "num_gpus": gpus}


@contextmanager
def shard_placement(runner: Runner, engine: EngineConfig) -> Iterator[None]:
    """Around submitting the shards: this machine's engine slot (local), or each shard's Ray resources (ray)."""
    if runner == "ray":
        from prefect_ray.context import remote_options

        with remote_options(**shard_resources(engine)):
            yield
    else:
        with engine_slot("generate"):
            yield


def current_worker() -> dict[str, str | int | None]:
    """Where this code runs: host, process id, and the Ray node id inside a Ray worker (None elsewhere)."""
    ray = sys.modules.get("ray")  # not imported: certainly not a Ray worker, and no 2 s import to find out
    in_ray = ray is not None and ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id() if in_ray else None}
