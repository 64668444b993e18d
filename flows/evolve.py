"""ReflectEvo flows: one evolution round is generate -> curate -> train -> evaluate; `evolve` chains rounds.

Flows only compose tasks. Each stage is its own flow so the UI shows it, and so it can be run alone.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from reflectevo.config import RoundConfig, load_config
from reflectevo.rounds import (
    PreparedProblems,
    finished_rounds,
    model_for_round,
    write_manifest,
    write_round_config,
)
from reflectevo.schema import AdapterManifest, DatasetManifest, ModelRef, RoundManifest, ShardManifest
from tasks.curation import curate_task
from tasks.evaluation import evaluate_task
from tasks.generation import plan_shards, prepare_problems_task, submit_shards
from tasks.training import train_task


# One worker: shards share one engine in this process; a distributed task runner fans them out instead.
@flow(name="generate", flow_run_name="generate-r{round_}", task_runner=ThreadPoolTaskRunner(max_workers=1))
def generate_flow(cfg: RoundConfig, round_: int, prepared: PreparedProblems, model: ModelRef,
                  model_path: str) -> list[ShardManifest]:
    futures = submit_shards(plan_shards(cfg, round_, prepared, model, model_path))
    return [f.result() for f in futures]


@flow(name="curate", flow_run_name="curate-r{round_}")
def curate_flow(cfg: RoundConfig, round_: int, shards: list[ShardManifest], model: ModelRef,
                model_path: str) -> dict[str, DatasetManifest]:
    return curate_task(cfg, round_, shards, model, model_path)


@flow(name="train", flow_run_name="train-r{round_}")
def train_flow(cfg: RoundConfig, round_: int, datasets: dict[str, DatasetManifest], model: ModelRef,
               model_path: str) -> AdapterManifest:
    return train_task(cfg, round_, datasets, model, model_path)


@flow(name="evaluate", flow_run_name="evaluate-r{round_}")
def evaluate_flow(cfg: RoundConfig, round_: int, eval_path: str, model: ModelRef, model_path: str) -> tuple[str, dict]:
    return evaluate_task(cfg, round_, eval_path, model, model_path)


@flow(name="evolution-round", flow_run_name="round-{round_}")
def evolution_round(cfg: RoundConfig, round_: int) -> RoundManifest:
    """Round r: generate with the lineage's latest adapter, curate, train the next adapter, evaluate it."""
    model, model_path = model_for_round(cfg, round_)
    write_round_config(cfg, round_)
    prepared = prepare_problems_task(cfg, round_)
    shards = generate_flow(cfg, round_, prepared, model, model_path)
    datasets = curate_flow(cfg, round_, shards, model, model_path)
    adapter = train_flow(cfg, round_, datasets, model, model_path)
    trained = model.model_copy(update={"adapter": adapter.path, "adapter_sha256": adapter.sha256}) if adapter.path else model
    metrics_path, metrics = evaluate_flow(cfg, round_, prepared.eval_path, trained, model_path)
    manifest = RoundManifest(round=round_, run_dir=str(cfg.round_path(round_)), model=model, config=cfg.model_dump(),
                             trajectories=shards, datasets=datasets, adapter=adapter, metrics_path=metrics_path,
                             metrics=metrics)
    write_manifest(cfg, manifest)
    return manifest


@flow(name="evolve")
def evolve(rounds: int = 1, model: str | None = None, engine: str | None = None, tasks: list[str] | None = None,
           limit: int | None = None, run_dir: str | None = None, name: str | None = None,
           config: str | None = None) -> dict[int, dict]:
    """Run `rounds` evolution rounds, each from the adapter the one before it trained.

    A run continues its lineage: with rounds 1..r finished in <run_dir>/<name>, the next round is r+1.
    """
    overrides = {"model": model, "tasks": tasks, "limit": limit, "run_dir": run_dir, "name": name}
    cfg = load_config(config, overrides)
    if engine:
        cfg.engine.name = engine
    start = (finished_rounds(cfg) or [0])[-1] + 1
    summary = {}
    for r in range(start, start + rounds):
        manifest = evolution_round(cfg, r)
        summary[r] = manifest.metrics
        get_run_logger().info("round %d metrics: %s", r, manifest.metrics.get("all"))
    return summary
