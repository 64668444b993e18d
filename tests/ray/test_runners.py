"""Runner choice without a cluster: what decides a shard's key, and where a runner connects."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from reflectevo.config import EngineConfig, GenerateConfig, RoundConfig
from reflectevo.errors import ConfigError
from reflectevo.schema import ModelRef
from stages.generate import generation_key
from stages.prepare import preflight
from tasks.runners import current_worker, generation_runner


def test_ray_resources_do_not_change_shard_keys():
    """A round started locally resumes on Ray (and on other resources): placement is not content."""
    model = ModelRef(base="tiny", base_sha256="b")
    key = lambda engine: generation_key("sha", model, engine, GenerateConfig(), 1, 0)  # noqa: E731
    assert key(EngineConfig(num_gpus=1, num_cpus=4)) == key(EngineConfig())
    assert key(EngineConfig(vllm_python=sys.executable)) == key(EngineConfig())  # another machine's environment
    assert key(EngineConfig(batch_size=8)) != key(EngineConfig())


def test_a_config_read_back_from_its_json_keys_the_same_shards():
    """A rerun reads the round's config back from JSON (a deployment's parameters, config.json): any default that
    changes on the way (an int default of a float field comes back as 4.0) would key every shard anew."""
    model = ModelRef(base="tiny", base_sha256="b")
    cfg = RoundConfig()
    back = RoundConfig.model_validate_json(cfg.model_dump_json())
    assert (generation_key("sha", model, back.engine, back.generate, 1, 0)
            == generation_key("sha", model, cfg.engine, cfg.generate, 1, 0))


def test_ray_runner_joins_the_cluster_named_by_ray_address(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert generation_runner("ray").address == "10.0.0.1:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert generation_runner("ray").address is None  # ray.init() then starts a local Ray


def test_outside_ray_a_worker_has_no_node_id():
    assert current_worker()["node_id"] is None and current_worker()["pid"] == os.getpid()


def test_runner_ray_without_ray_installed_is_refused_before_anything_starts(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "prefect_ray" else real(name, *a))
    with pytest.raises(ConfigError, match=r"--runner ray needs Ray and prefect-ray; fix: pip install -e '\.\[ray\]'"):
        preflight(RoundConfig(model="tiny", runner="ray", limit=2))
    preflight(RoundConfig(model="tiny", runner="local", limit=2))
