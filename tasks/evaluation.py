"""Prefect task of the evaluation stage."""

from __future__ import annotations

from prefect import task

from models.engines import load_engine
from reflectevo.config import RoundConfig
from reflectevo.evaluate import run_eval, write_eval
from reflectevo.schema import ModelRef, Problem
from reflectevo.shards import read_jsonl
from tasks import retry_transient


@task(name="evaluate-round", task_run_name="evaluate-r{round_}", retries=1, retry_condition_fn=retry_transient)
def evaluate_task(cfg: RoundConfig, round_: int, eval_path: str, model: ModelRef, model_path: str) -> tuple[str, dict]:
    """Acc@t1, Acc@t2 and their difference per task on the held-out problems; returns (metrics path, metrics)."""
    engine = load_engine(cfg.engine.model_dump_json(), model_path, model.adapter)
    metrics, samples = run_eval(engine, read_jsonl(eval_path, Problem), cfg.evaluate)
    path = write_eval(str(cfg.round_path(round_) / "eval"), metrics, samples,
                      {"round": round_, "model": model.model_dump(), "config": cfg.evaluate.model_dump()})
    return path, metrics
