"""Prefect task of the training stage."""

from __future__ import annotations

from prefect import get_run_logger, task

from models.engines import release_engines
from models.training import train_adapter
from reflectevo.config import RoundConfig
from reflectevo.schema import AdapterManifest, DatasetManifest, ModelRef
from tasks import retry_transient


@task(name="train-adapter", task_run_name="train-r{round_}", retries=1, retry_condition_fn=retry_transient)
def train_task(cfg: RoundConfig, round_: int, datasets: dict[str, DatasetManifest], model: ModelRef,
               model_path: str) -> AdapterManifest:
    """Train the round's LoRA adapter from the lineage's latest one on the dataset its setting needs; an empty
    dataset skips training, with the reason."""
    release_engines()  # a vLLM engine's worker process holds GPU memory that training needs
    manifest = train_adapter(cfg.train, model_path, model.adapter, datasets, str(cfg.layout(round_).adapter))
    if manifest.skipped_reason:
        get_run_logger().warning("round %d trains no adapter: %s", round_, manifest.skipped_reason)
    return manifest
