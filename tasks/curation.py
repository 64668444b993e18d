"""Prefect task of the curation stage."""

from __future__ import annotations

from prefect import task

from reflectevo.config import RoundConfig
from reflectevo.schema import DatasetManifest, ModelRef, ShardManifest
from stages.curate import curate, curation_key, make_judge
from tasks import retry_transient


@task(name="curate-round", task_run_name="curate-r{round_}", retries=1, retry_condition_fn=retry_transient)
def curate_task(cfg: RoundConfig, round_: int, shards: list[ShardManifest], model: ModelRef,
                model_path: str) -> dict[str, DatasetManifest]:
    """Build D+, D± and Dpref from the round's trajectory shards; the Dpref judge is the one `curate.judge` names."""
    judge = make_judge(cfg.curate, cfg.engine, model, model_path)
    key = curation_key([s.sha256 for s in shards], cfg.curate, model.model_dump(), round_)
    return curate([s.path for s in shards], str(cfg.layout(round_).datasets), key, cfg.curate, judge,
                  round_, cfg.model_dump_json(indent=1))
