"""The vLLM engine served from another environment: the application's interpreter has no vLLM, the worker's has.

This is how the default round gets vLLM's CPU build, whose pins the application cannot share: the test runs in
the main environment and points `engine.vllm_python` at `.venv-vllm` (scripts/setup-vllm-cpu.sh; skipped where
that environment was not built).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.engines import load_engine, release_engines, vllm_installed
from models.engines.vllm import VLLMEngine
from reflectevo.config import EngineConfig, SamplingConfig

VLLM_PYTHON = Path(os.environ.get("REFLECTEVO_TEST_VLLM_PYTHON",
                                  Path(__file__).parents[2] / ".venv-vllm" / "bin" / "python"))

pytestmark = pytest.mark.skipif(not VLLM_PYTHON.exists() or vllm_installed(),
                                reason="needs .venv-vllm (scripts/setup-vllm-cpu.sh), run from an environment without vLLM")


def test_auto_generates_with_vllm_in_the_other_environment(tiny_model_path):
    release_engines()
    engine = load_engine(EngineConfig(vllm_python=str(VLLM_PYTHON)), tiny_model_path, None)
    try:
        assert isinstance(engine, VLLMEngine)
        prompts = [engine.render([{"role": "user", "content": f"Question {i}: which option?"}]) for i in range(3)]
        outs = engine.generate(prompts, SamplingConfig(max_tokens=8))
        assert [len(o) for o in outs] == [1, 1, 1] and all(0 < o[0].tokens <= 8 for o in outs)
        cmdline = Path(f"/proc/{engine._worker._process.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0] == str(VLLM_PYTHON).encode()
    finally:
        release_engines()
