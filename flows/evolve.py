"""ReflectEvo flows: one evolution round is generate -> curate -> train -> evaluate; `evolve` chains rounds.

Flows only compose tasks. Each stage is its own flow so the UI shows it, and so it can be run alone. Stages that
load a model or train hold this machine's engine slot (tasks/concurrency.py), so two runs never overlap there;
generation on Ray (`runner: ray`) leaves placement to Ray's resources instead (tasks/runners.py).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from reflectevo.config import RoundConfig
from reflectevo.schema import AdapterManifest, DatasetManifest, ModelRef, RoundManifest, ShardManifest
from stages.lineage import (
    StopPolicy,
    check_rounds,
    evolve_overrides,
    lineage_config,
    lineage_lock,
    mark_stopped,
    next_round,
    over_limit,
    read_lineage,
    reconcile,
    result_storage_for,
    stop_reason,
)
from stages.prepare import PreparedProblems, model_for_round, tidy_run, write_manifest, write_round_config
from tasks.artifacts import publish_round_task, report_progress, start_progress
from tasks.concurrency import engine_slot
from tasks.curation import curate_task
from tasks.evaluation import evaluate_task
from tasks.generation import plan_shards, prepare_problems_task, submit_shards
from tasks.lineage import current_deployment, record_round_task, schedule_next_round
from tasks.runners import generation_runner, shard_placement
from tasks.training import train_task


# The task runner is the local default; evolution_round swaps in the one `cfg.runner` names (tasks/runners.py).
@flow(name="generate", flow_run_name="generate-r{round_}", task_runner=generation_runner("local"))
def generate_flow(cfg: RoundConfig, round_: int, prepared: PreparedProblems, model: ModelRef,
                  model_path: str, result_storage: str | None = None) -> list[ShardManifest]:
    jobs = plan_shards(cfg, round_, prepared, model, model_path)
    progress = start_progress(cfg, round_, len(jobs))
    manifests = []
    with shard_placement(cfg.runner, cfg.engine):
        for future in submit_shards(jobs, result_storage_for(cfg, result_storage)):
            manifests.append(future.result())
            report_progress(progress, len(manifests), len(jobs))
    return manifests


@flow(name="curate", flow_run_name="curate-r{round_}")
def curate_flow(cfg: RoundConfig, round_: int, shards: list[ShardManifest], model: ModelRef,
                model_path: str) -> dict[str, DatasetManifest]:
    with engine_slot("curate"):
        return curate_task(cfg, round_, shards, model, model_path)


@flow(name="train", flow_run_name="train-r{round_}")
def train_flow(cfg: RoundConfig, round_: int, datasets: dict[str, DatasetManifest], model: ModelRef,
               model_path: str) -> AdapterManifest:
    with engine_slot("train"):
        return train_task(cfg, round_, datasets, model, model_path)


@flow(name="evaluate", flow_run_name="evaluate-r{round_}")
def evaluate_flow(cfg: RoundConfig, round_: int, eval_path: str, model: ModelRef, model_path: str) -> tuple[str, dict]:
    with engine_slot("evaluate"):
        return evaluate_task(cfg, round_, eval_path, model, model_path)


@flow(name="evolution-round", flow_run_name="round-{round_}")
def evolution_round(cfg: RoundConfig, round_: int, result_storage: str | None = None) -> RoundManifest:
    """Round r: generate with the lineage's latest adapter, curate, train the next adapter, evaluate it.

    Ends by recording the round in the lineage record and publishing its artifacts.
    """
    model, model_path = model_for_round(cfg, round_)
    write_round_config(cfg, round_)
    prepared = prepare_problems_task(cfg, round_)
    generate = generate_flow.with_options(task_runner=generation_runner(cfg.runner))
    shards = generate(cfg, round_, prepared, model, model_path, result_storage)
    datasets = curate_flow(cfg, round_, shards, model, model_path)
    adapter = train_flow(cfg, round_, datasets, model, model_path)
    trained = model.model_copy(update={"adapter": adapter.path, "adapter_sha256": adapter.sha256}) if adapter.path else model
    metrics_path, metrics = evaluate_flow(cfg, round_, prepared.eval_path, trained, model_path)
    manifest = RoundManifest(round=round_, run_dir=str(cfg.layout(round_).folder), model=model, config=cfg.model_dump(),
                             trajectories=shards, datasets=datasets, adapter=adapter, metrics_path=metrics_path,
                             metrics=metrics)
    write_manifest(cfg, manifest)
    lineage = record_round_task(cfg, manifest)
    publish_round_task(cfg, manifest, lineage)
    return manifest


def evolve_run_name() -> str:
    params = flow_run.get_parameters()
    start = params.get("round")
    return f"evolve-{params.get('name') or 'default'}" + (f"-r{start}" if start else "")


@flow(name="evolve", flow_run_name=evolve_run_name)
def evolve(rounds: int = 1, model: str | None = None, engine: str | None = None, tasks: list[str] | None = None,
           limit: int | None = None, run_dir: str | None = None, name: str | None = None,
           config: str | None = None, round: int | None = None, max_rounds: int | None = None,
           patience: int | None = None, result_storage: str | None = None,
           runner: str | None = None) -> dict[int, dict]:
    """Run `rounds` evolution rounds of the lineage in <run_dir>/<name>, each from the adapter the one before trained.

    `round` is the first round to run (a rerun resumes it: finished shards are reused); by default the round
    after the lineage's latest. Without `config`, the lineage's own last round config is used. Rounds stop early
    past `max_rounds`, after a round without D+ data, or after `patience` rounds without held-out gain.
    Started from a deployment, this run does one round and schedules the next on the same deployment;
    otherwise all rounds run here, one after the other. `result_storage` is where shard results are cached
    for resuming: a directory or a storage block slug (default <run_dir>/<name>/prefect-results).
    `runner` is where generation shards run: "local" (this process) or "ray" (RAY_ADDRESS, else a local Ray).
    """
    log = get_run_logger()
    check_rounds(rounds, round)
    cfg = lineage_config(config, evolve_overrides(model, engine, tasks, limit, run_dir, name, runner),
                         round)
    policy = StopPolicy(max_rounds=max_rounds, patience=patience)
    with lineage_lock(cfg):  # one run per lineage; a crash's unrecorded round is recorded first
        reconcile(cfg)
        tidy_run(cfg)
        start = round or next_round(cfg)
        deployment = current_deployment()
        summary: dict[int, dict] = {}
        reason = None
        for r in range(start, start + (1 if deployment else rounds)):
            if reason := over_limit(policy, r):
                break
            manifest = evolution_round(cfg, r, result_storage)
            summary[r] = manifest.metrics
            log.info("round %d metrics: %s", r, manifest.metrics.get("all"))
            if reason := stop_reason(read_lineage(cfg), policy, r):
                break
        if reason:
            log.info("lineage %s stops: %s", cfg.name, reason)
            mark_stopped(cfg, reason)
        elif deployment and rounds > 1:
            r = max(summary)
            parameters = {"rounds": rounds - 1, "model": model, "engine": engine, "tasks": tasks, "limit": limit,
                          "run_dir": run_dir, "name": name, "config": config, "round": r + 1,
                          "max_rounds": max_rounds, "patience": patience, "result_storage": result_storage,
                          "runner": runner}
            # Unset parameters stay unset, so the deployment's defaults apply to the next run as they did to this one.
            parameters = {k: v for k, v in parameters.items() if v is not None}
            run_id = schedule_next_round(cfg, deployment, r + 1, parameters)
            log.info("round %d scheduled on %s: flow run %s", r + 1, deployment, run_id)
    return summary
