"""Prefect task of the evaluation stage."""

from __future__ import annotations

from prefect import task

from reflectevo.config import RoundConfig
from reflectevo.schema import ModelRef
from stages.evaluate import evaluate_model
from tasks import retry_transient


@task(name="evaluate-round", task_run_name="evaluate-r{round_}", retries=1, retry_condition_fn=retry_transient)
def evaluate_task(cfg: RoundConfig, round_: int, eval_path: str, model: ModelRef, model_path: str) -> tuple[str, dict]:
    """Acc@t1, Acc@t2 (.. Acc@t{T+1}) and their difference per task on the held-out problems; returns (results
    path, metrics). Under the paper protocol trial 1 is the base model's, made once per run."""
    return evaluate_model(cfg.evaluate, eval_path, str(cfg.layout(round_).eval),
                          str(cfg.run_path() / "eval-first-trials"), model, model_path, cfg.engine,
                          {"round": round_}, cfg.generate.fewshot)
