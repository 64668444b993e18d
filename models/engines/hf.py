"""The transformers engine: batched generation on CPU or GPU, with an optional PEFT adapter (not merged).

Our own decode loop over the model's forward, not `model.generate`, for two savings that `generate` cannot make
and that dominate a round on a CPU:
- a batch's prompts are prefilled once, and for `n` samples per prompt the KV cache is then repeated `n` times
  (`generate` expands the prompts first and prefills each copy: the reflection step prefilled twice); the
  tokens all prompts of a batch start with are prefilled once for the batch;
- a sequence that ends (EOS, stop string) leaves the batch at once, with its rows of the KV cache, instead of
  being decoded, padded, until the batch's longest sequence ends.
Greedy decoding picks the same tokens as `generate`; sampling applies temperature then top-p as `generate` does,
from a generator seeded per batch, so the same seed and prompts give the same outputs.
"""

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
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        completions = []
        for row in self._decode(ids, sampling, offset):
            text, stopped = cut_at_stop(self.tokenizer.decode(row, skip_special_tokens=True), sampling.stop)
            tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if stopped else len(row)
            completions.append(Completion(text=text, tokens=tokens))
        n = sampling.n
        return [completions[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _prefill(self, ids: list[list[int]], cache) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-position logits and the attention mask after prefilling `ids` into `cache`.

        The tokens every prompt starts with (the chat template's system turn, the task instruction) are computed
        once and their cache repeated per prompt; the rest is left-padded after them, masked, with positions that
        continue the shared part.
        """
        shared = 0
        shortest = min(map(len, ids))
        while len(ids) > 1 and shared < shortest - 1 and all(r[shared] == ids[0][shared] for r in ids):
            shared += 1
        if shared:
            prefix = torch.tensor([ids[0][:shared]], device=self.device)
            self.model(input_ids=prefix, position_ids=torch.arange(shared, device=self.device)[None], cache=cache,
                       use_cache=True, logits_to_keep=1)
            cache.batch_repeat_interleave(len(ids))
        width = max(len(r) for r in ids) - shared
        pad = self.tokenizer.pad_token_id
        rest = torch.tensor([[pad] * (width - len(r) + shared) + r[shared:] for r in ids], device=self.device)
        rest_mask = torch.tensor([[0] * (width - len(r) + shared) + [1] * (len(r) - shared) for r in ids],
                                 device=self.device)
        positions = shared + (rest_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([rest_mask.new_ones(len(ids), shared), rest_mask], dim=-1)
        logits = self.model(input_ids=rest, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                            logits_to_keep=1).logits[:, -1, :]
        return logits, mask

    def _decode(self, ids: list[list[int]], sampling: SamplingConfig, offset: int) -> list[list[int]]:
        """Generated token ids (EOS excluded) of each prompt's `n` samples, sample-major within a prompt."""
        from transformers import DynamicCache

        generator = None
        if sampling.temperature > 0:
            generator = torch.Generator(self.device)
            if sampling.seed is None:
                generator.seed()
            else:
                generator.manual_seed(sampling.seed + offset)
        cache = DynamicCache(config=self.model.config)
        logits, mask = self._prefill(ids, cache)
        if sampling.n > 1:
            cache.batch_repeat_interleave(sampling.n)
            logits, mask = logits.repeat_interleave(sampling.n, 0), mask.repeat_interleave(sampling.n, 0)
        eos = torch.tensor(sorted(self.eos_ids), device=self.device)
        out: list[list[int]] = [[] for _ in range(logits.shape[0])]
        active = list(range(logits.shape[0]))  # the output row of each batch row still decoding
        for step in range(sampling.max_tokens):
            tokens = self._pick(logits, sampling, generator)
            ended = torch.isin(tokens, eos).tolist()
            for i, (row, token) in enumerate(zip(active, tokens.tolist())):
                if not ended[i]:
                    out[row].append(token)
                    ended[i] = bool(sampling.stop) and self._stopped(out[row], sampling.stop)
            if step == sampling.max_tokens - 1 or all(ended):
                break
            if any(ended):
                keep = [i for i, e in enumerate(ended) if not e]
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, tokens, active = mask[index], tokens[index], [active[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
            logits = self.model(input_ids=tokens[:, None], attention_mask=mask,
                                position_ids=(mask.sum(-1, keepdim=True) - 1), cache=cache,
                                use_cache=True).logits[:, -1, :]
        return out

    @staticmethod
    def _pick(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
        """Greedy, or a sample after temperature and top-p (the order and cut of transformers' warpers)."""
        if generator is None:
            return logits.argmax(-1)
        scores = logits.float() / sampling.temperature
        if sampling.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=False)
            drop = ordered.softmax(-1).cumsum(-1) <= (1 - sampling.top_p)
            drop[..., -1:] = False
            scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)

    def _stopped(self, row: list[int], stop: list[str]) -> bool:
        """Whether the text so far holds a stop string (only its tail can hold a new one)."""
        tail = self.tokenizer.decode(row[-16:], skip_special_tokens=True)
        return any(s in tail for s in stop)
