"""Shared fixtures: offline settings, the tiny model (built once per session), one Prefect harness."""

from __future__ import annotations

import os

# Before torch is imported anywhere: two OpenMP threads on a busy 2-core machine run ~10x slower than one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A developer's own vLLM environment would turn every `engine: auto` test into a vLLM one; the tests that want it
# name it themselves (tests/models/test_vllm_elsewhere.py).
os.environ.pop("REFLECTEVO_VLLM_PYTHON", None)

import pytest  # noqa: E402

from models.engines import Completion  # noqa: E402
from reflectevo.config import SamplingConfig  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Models are built into REFLECTEVO_CACHE_DIR when CI sets one, else into this session's temp folder."""
    if "REFLECTEVO_CACHE_DIR" not in os.environ:
        os.environ["REFLECTEVO_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def tiny_model_path(_cache_dir) -> str:
    from models.loading import resolve_model

    return resolve_model("tiny")


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect API for the whole session (its start takes ~20 s on this machine)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


class ScriptedEngine:
    """An engine whose outputs are a function of the prompt: for testing stages without a model."""

    def __init__(self, reply):
        self.reply = reply
        self.calls: list[tuple[list[str], SamplingConfig]] = []

    def render(self, messages):
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"

    def generate(self, prompts, sampling):
        self.calls.append((list(prompts), sampling))
        return [[Completion(text=self.reply(p, s), tokens=3) for s in range(sampling.n)] for p in prompts]


@pytest.fixture
def scripted_engine():
    return ScriptedEngine
