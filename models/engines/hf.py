"""The transformers engine: batched `generate` on CPU or GPU, with an optional PEFT adapter (not merged)."""

from __future__ import annotations

import torch
from rich.console import Console
from rich.progress import track
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.engines import Completion, EngineConfig, SamplingConfig, cut_at_stop


class TransformersEngine:
    def __init__(self, model_path: str, adapter: str | None = None, config: EngineConfig | None = None):
        self.config = config or EngineConfig(name="transformers")
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, self.config.dtype))
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.to(self.device).eval()
        self.eos_ids = {i for i in [self.tokenizer.eos_token_id, self.tokenizer.pad_token_id] if i is not None}

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        # Longest first, so each batch pads little; results are put back in prompt order.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[list[Completion]] = [[] for _ in prompts]
        bs = self.config.batch_size
        console = Console(stderr=True)  # a progress bar on a terminal; nothing in logs and CI
        batches = track(range(0, len(order), bs), description=f"generate {len(prompts)}x{sampling.n}",
                        transient=True, console=console, disable=not console.is_terminal)
        for start in batches:
            idx = order[start : start + bs]
            for i, completions in zip(idx, self._generate_batch([prompts[i] for i in idx], sampling, start)):
                results[i] = completions
        return results

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[str], sampling: SamplingConfig, offset: int) -> list[list[Completion]]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        kwargs = dict(max_new_tokens=sampling.max_tokens, num_return_sequences=sampling.n,
                      pad_token_id=self.tokenizer.pad_token_id)
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed + offset)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            kwargs.update(stop_strings=sampling.stop, tokenizer=self.tokenizer)
        out = self.model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1] :].tolist()
        completions = []
        for row in out:
            end = next((j for j, t in enumerate(row) if t in self.eos_ids), len(row))
            text, stopped = cut_at_stop(self.tokenizer.decode(row[:end], skip_special_tokens=True), sampling.stop)
            tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if stopped else end
            completions.append(Completion(text=text, tokens=tokens))
        n = sampling.n
        return [completions[i * n : (i + 1) * n] for i in range(len(prompts))]
