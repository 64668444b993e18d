"""vLLM tests: skipped where vLLM is not installed; on a CPU machine run them with scripts/test-vllm-cpu.sh.

The engine starts a worker process that imports vLLM (10-17 s) and builds an `LLM` (about 30 s on a CPU), so
one base-model engine is shared by the whole session, through `load_engine`'s cache so that a flow asking for
the same model reuses it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from models.engines import load_engine, vllm_installed
from reflectevo.config import EngineConfig

HERE = Path(__file__).parent
NO_VLLM = ("vLLM is not installed in this environment: run scripts/test-vllm-cpu.sh (CPU), "
           "or pip install -e '.[vllm]' on a GPU machine")


def pytest_collection_modifyitems(config, items):
    if not vllm_installed():
        for item in items:
            if HERE in item.path.parents:
                item.add_marker(pytest.mark.skip(reason=NO_VLLM))


@pytest.fixture(scope="session")
def vllm_engine(tiny_model_path):
    engine = load_engine(EngineConfig(name="vllm"), tiny_model_path, None)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def hf_engine(tiny_model_path):
    from models.engines.hf import TransformersEngine

    return TransformersEngine(tiny_model_path, config=EngineConfig(name="transformers"))


@pytest.fixture(scope="session")
def adapter_path(tiny_model_path, tmp_path_factory) -> str:
    """A real LoRA adapter in the pipeline's format; random B (init_lora_weights=False) so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj"], task_type="CAUSAL_LM",
                        init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(base, config).save_pretrained(out)
    return str(out)
