"""Prefect tasks of the lineage: recording a finished round, and scheduling the next one on a deployment."""

from __future__ import annotations

from prefect import task
from prefect.deployments import run_deployment
from prefect.runtime import deployment, flow_run

from reflectevo.config import RoundConfig
from reflectevo.schema import RoundManifest
from stages.lineage import Lineage, lineage_id, record_round
from tasks import retry_transient


@task(name="record-round", task_run_name="record-r{manifest.round}")
def record_round_task(cfg: RoundConfig, manifest: RoundManifest) -> Lineage:
    """Add the round to <run>/lineage.json, with the round's flow run."""
    return record_round(cfg, manifest, flow_run.get_id())


def current_deployment() -> str | None:
    """'flow/deployment' of the running flow run, or None when it was not started from a deployment."""
    return f"{flow_run.get_flow_name()}/{deployment.get_name()}" if deployment.get_id() else None


def next_round_key(cfg: RoundConfig, round_: int) -> str:
    """One flow run per lineage and round: a retried parent, or a second scheduler, gets the same run back."""
    return f"{lineage_id(cfg)}-round-{round_}"


@task(name="schedule-next-round", task_run_name="schedule-r{round_}", retries=2, retry_delay_seconds=10,
      retry_condition_fn=retry_transient)
def schedule_next_round(cfg: RoundConfig, name: str, round_: int, parameters: dict) -> str:
    """Create the next round's flow run on deployment `name` and return its id without waiting for it.

    Not a child of this run (`as_subflow=False`): each round is its own top-level run, which the deployment's
    concurrency limit queues behind this one.
    """
    run = run_deployment(name, parameters=parameters, timeout=0, as_subflow=False,
                         idempotency_key=next_round_key(cfg, round_), flow_run_name=f"evolve-{cfg.name}-r{round_}")
    return str(run.id)
