"""A tiny Llama-style model with a locally trained tokenizer: the offline stand-in for a real model in tests.

Built from a config in seconds and saved like any HF checkpoint, so every code path that loads a model
(engines, LoRA training, adapters) runs on it unchanged. Llama, not Qwen2: transformers swaps the tokenizer
class of Qwen2 checkpoints, which changes the token ids of a locally trained tokenizer.
"""

from __future__ import annotations

import pydoc
import random
from pathlib import Path

# ChatML, the format of SmolLM2's own template, so the tiny model exercises the same rendering path.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


WORDS = "the step check error plan trial question value number first then so we".split()


def _chats(seed: int, count: int) -> list[str]:
    """Conversations in the pipeline's own prompt formats, so the tiny model plays every role plausibly.

    Reasoning prompts get `Finish[<letter>]`, mostly A; reflection prompts a short reflection that names an
    option ("try option B", never the answer format), mostly B; correction prompts the option the reflection
    named. So second trials tend to differ from first ones, and a round on the built-in problems reliably has
    reflections that fix a wrong answer, which is what the pipeline's tests need.
    """
    from models.prompts import INSTRUCTIONS, correction_messages, reasoning_messages, reflection_messages
    from reflectevo.schema import Problem

    rng = random.Random(seed)
    chats = []
    for i in range(count):
        words = lambda k: " ".join(rng.choices(WORDS, k=k))  # noqa: E731
        problem = Problem(id=str(i), task="choice", kind="choice", question=f"{words(6)}?", answer="A",
                          choices=[words(2) for _ in range(4)])
        failed = f"Finish[{rng.choice('AAAAAAABCD')}]"
        hint = rng.choice("BBBBBBBACD")
        reflection = f"{words(2)} try option {hint}."
        role = min(i % 4, 2)  # half the examples are corrections: following the reflection is the hard part
        if role == 0:
            messages, reply = reasoning_messages(problem), failed
        elif role == 1:
            messages = reflection_messages(problem, failed, rng.choice(sorted(INSTRUCTIONS)), "Judged incorrect.")
            reply = reflection
        else:
            messages, reply = correction_messages(problem, failed, reflection), f"Finish[{hint}]"
        prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        chats.append((prompt + "<|im_start|>assistant\n", f"{reply}<|im_end|>\n"))
    return chats


def _corpus(seed: int) -> list[str]:
    docs = [pydoc.render_doc(m, renderer=pydoc.plaintext) for m in ("json", "fractions")]
    return docs + ["".join(chat) for chat in _chats(seed, 600)]


def _pretrain(model, tok, seed: int, steps: int) -> None:
    """A few hundred steps on the role conversations: enough to play each role's format, in seconds."""
    import torch

    chats = _chats(seed + 1, 900)
    prompts = tok([p for p, _ in chats], add_special_tokens=False)["input_ids"]
    replies = tok([r for _, r in chats], add_special_tokens=False)["input_ids"]
    ids = [(p, r) for p, r in zip(prompts, replies)]
    batch = 16
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        rows = rng.sample(ids, batch)
        width = max(len(p) + len(r) for p, r in rows)
        x = torch.full((batch, width), tok.pad_token_id)
        labels = torch.full((batch, width), -100)
        for i, (p, r) in enumerate(rows):  # loss on the replies only: the prompts are the pipeline's, not the model's
            x[i, : len(p) + len(r)] = torch.tensor(p + r)
            labels[i, len(p) : len(p) + len(r)] = torch.tensor(r)
        loss = model(input_ids=x, attention_mask=(x != tok.pad_token_id).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def build_tiny(out_dir: str | Path, seed: int = 0, pretrain_steps: int = 400) -> Path:
    """Write a ~150k-parameter Llama checkpoint, tokenizer and chat template to `out_dir`; seconds on a CPU."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(_corpus(seed), trainer)
    tk.add_tokens(["Finish[", " try option"])  # one token each: the format is learnt in seconds, not minutes
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|pad|>", bos_token=None, unk_token=None,
        additional_special_tokens=["<|endoftext|>", "<|im_start|>"], padding_side="left",
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=2048, bos_token_id=None,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    _pretrain(model, tok, seed, pretrain_steps)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
