"""Inference engines behind one small interface, in a registry of lazy "module:Class" targets.

An engine renders chat messages through its tokenizer's chat template and generates for a whole list of
prompts in one call. `import models.engines` imports neither torch nor vLLM.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Protocol

from pydantic import BaseModel, Field

from reflectevo.config import EngineConfig, SamplingConfig

REGISTRY = {
    "transformers": "models.engines.hf:TransformersEngine",
    "vllm": "models.engines.vllm:VLLMEngine",
}


class Completion(BaseModel):
    text: str
    tokens: int = Field(description="Generated tokens, stop string and EOS excluded.")


class Engine(Protocol):
    def render(self, messages: list[dict[str, str]]) -> str:
        """The exact prompt text for a conversation, with the generation prompt appended."""

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        """`sampling.n` completions for each prompt, in prompt order."""


def vllm_installed() -> bool:
    """Whether vLLM is importable, found without importing it (10-17 s).

    A bare folder named `vllm` on sys.path (tests/vllm, which pytest puts there) is a namespace package with no
    origin, not vLLM.
    """
    spec = importlib.util.find_spec("vllm")
    return spec is not None and spec.origin is not None


def resolve_engine_name(config: EngineConfig) -> str:
    """'auto' is vLLM where it can run: importable here, or in the environment of `config.vllm_python`."""
    if config.name == "auto":
        return "vllm" if config.vllm_python or vllm_installed() else "transformers"
    return config.name


_loaded: dict[tuple[str, str, str | None], Engine] = {}


def load_engine(config: EngineConfig, model_path: str, adapter: str | None) -> Engine:
    """One engine per process, reused by consecutive stages that ask for the same model and adapter.

    Asking for another model, adapter or engine config releases the previous engine.
    `adapter` may also be a whole fine-tuned checkpoint, which is then loaded instead of `model_path`.
    """
    from models.loading import weights_for

    model_path, adapter = weights_for(model_path, adapter)
    key = (config, model_path, adapter)
    if key not in _loaded:
        release_engines()
        module, cls = REGISTRY[resolve_engine_name(config)].split(":")
        _loaded[key] = getattr(importlib.import_module(module), cls)(model_path, adapter=adapter, config=config)
    return _loaded[key]


def release_engines() -> None:
    """Drop the cached engine and close it if it can be closed: the vLLM engine then ends its worker process,
    which gives its GPU memory back before training."""
    while _loaded:
        _, engine = _loaded.popitem()
        close = getattr(engine, "close", None)
        if close is not None:
            close()


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)
