"""A tiny Llama-style model with a locally trained tokenizer: the offline stand-in for a real model.

Built from a config in a few minutes on one CPU core and saved like any HF checkpoint, so every code path that
loads a model (engines, LoRA and full training, adapters) runs on it unchanged. It is pretrained on the format
of each prompt role and on reading an option's letter, never on a task's rule: the learnable world
(problems/world.py) asks it to learn one through the loop. Llama, not Qwen2: transformers swaps the
tokenizer class of Qwen2 checkpoints, which changes the token ids of a locally trained tokenizer.
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


WORDS = ("the step check error plan trial question value number first then so we which option holds largest "
         "smallest closest to is of a an and or not more less than most least even odd sum order how many what "
         "who where when why does did has have are was were be can must will would following true false statement "
         "word means opposite same before after each every all some none one two three four five ten hundred "
         "metres kilometres dollars cost costs shop sells pens cats dogs shelter time day week year city river "
         "red blue green big small tall short old new fast slow left right up down in on at by for from with "
         "squared times plus minus half double total per cent").split()


def _option_texts(rng: random.Random, count: int) -> list[str]:
    """Any option texts: numbers of any size (the world's options are numbers) or short phrases."""
    if rng.random() < 0.6:
        return [str(v) for v in rng.sample(range(1000 if rng.random() < 0.3 else 100), count)]
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 3))) for _ in range(count)]


def _chats(seed: int, count: int) -> list[tuple[str, str]]:
    """(prompt, reply) conversations in the pipeline's own prompt formats: the format of each role, no skill.

    Questions and options are arbitrary text and every letter is drawn uniformly, so nothing here correlates
    with any rule a task may have: on a world's held-out problems the first answers are at chance. A reasoning
    prompt is answered `Finish[<letter>]`; a reflection names the failed option and another one ("... option
    (B) failed, try option C."), as a reflection that gives up a wrong answer would; a correction answers the option its
    reflection named. Whether the named option is right is what a round must teach, through the verifier alone.
    """
    from models.prompts import FEEDBACK_WRONG, INSTRUCTIONS, correction_messages, reasoning_messages, reflection_messages
    from reflectevo.schema import Problem

    rng = random.Random(seed)
    chats = []
    for i in range(count):
        words = lambda k: " ".join(rng.choices(WORDS, k=k))  # noqa: E731
        letters = "ABCDE"[: rng.randint(2, 5)]
        choices = _option_texts(rng, len(letters))
        # Half the questions ask where a given text stands ("Which option holds 47?"): reading an option and
        # naming its letter is what any pretrained model can do, and what learning any rule over the options
        # builds on. The other half are arbitrary text, answered at random. Neither names a rule.
        lookup = rng.random() < 0.5 and len(set(choices)) == len(choices)
        target = rng.choice(letters) if lookup else None
        question = f"Which option holds {choices[letters.index(target)]}?" if lookup else f"{words(rng.randint(3, 20))}?"
        problem = Problem(id=str(i), task="choice", kind="choice", question=question, answer="A", choices=choices)
        failed_letter = rng.choice([c for c in letters if c != target])
        failed = f"Finish[{failed_letter}]"
        hint = target or rng.choice([c for c in letters if c != failed_letter])
        # The reflection names the failed option before the next one: a letter just written is one a small model
        # can see to avoid, so from the start it gives up the failed answer (and a round has only the rule to learn).
        reflection = f"{words(rng.randint(1, 3))} option ({failed_letter}) failed, try option ({hint})."
        role = (0, 1, 1, 2, 2)[i % 5]  # the reflection and the correction are the roles that take learning
        if role == 0:
            messages, reply = reasoning_messages(problem), f"Finish[{target or rng.choice(letters)}]"
        elif role == 1:
            messages = reflection_messages(problem, failed, rng.choice(sorted(INSTRUCTIONS)), FEEDBACK_WRONG)
            reply = reflection
        else:
            messages, reply = correction_messages(problem, failed, reflection), f"Finish[{hint}]"
        prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        chats.append((prompt + "<|im_start|>assistant\n", f"{reply}<|im_end|>\n"))
    return chats


def _corpus(seed: int) -> list[str]:
    docs = [pydoc.render_doc(m, renderer=pydoc.plaintext) for m in ("json", "fractions")]
    return docs + ["".join(chat) for chat in _chats(seed, 600)]


def _pretrain(model, tok, seed: int, steps: int, lr: float) -> None:
    """Steps on fresh role conversations (none repeats, so only the format can be learnt, not a sample)."""
    import torch

    batch = 16
    chats = _chats(seed + 1, steps * batch)
    prompts = tok([p for p, _ in chats], add_special_tokens=False)["input_ids"]
    replies = tok([r for _, r in chats], add_special_tokens=False)["input_ids"]
    ids = list(zip(prompts, replies))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    # Warmup, constant, then a linear decay to zero over the last fifth: the constant phase learns the copying a
    # correction needs; the decay calibrates the letters. Ending at a constant rate leaves the letter distribution
    # following the last batches, and a model biased towards some letters teaches rounds that bias, not a rule.
    warmup, decay = steps // 20, steps // 5
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 1.0, (steps - s) / decay) if warmup and decay else 1.0)
    model.train()
    for step in range(steps):
        rows = ids[step * batch : (step + 1) * batch]
        width = max(len(p) + len(r) for p, r in rows)
        x = torch.full((batch, width), tok.pad_token_id)
        labels = torch.full((batch, width), -100)
        for i, (p, r) in enumerate(rows):  # loss on the replies only: the prompts are the pipeline's, not the model's
            x[i, : len(p) + len(r)] = torch.tensor(p + r)
            labels[i, len(p) : len(p) + len(r)] = torch.tensor(r)
        # Next-token logits only where a reply token is predicted: the vocabulary projection of every prompt
        # position would be most of a step's work, for no loss.
        hidden = model.model(input_ids=x, attention_mask=(x != tok.pad_token_id).long()).last_hidden_state
        where = labels[:, 1:] != -100
        logits = model.lm_head(hidden[:, :-1][where])
        loss = torch.nn.functional.cross_entropy(logits, labels[:, 1:][where])
        loss.backward()
        opt.step()
        schedule.step()
        opt.zero_grad()
    model.eval()


# Built-in model names -> build_tiny arguments. `tiny` (two layers of four 32-wide heads) serves every engine;
# vLLM's CPU attention has no kernel for heads narrower than 32. `tiny-world` is the learnable world's model: three
# layers of eight 16-wide heads. The two-layer model lost its plasticity to the format (it learnt the world's rule
# from 1000 perfect D+ records in one data order of three); with eight heads some stay free for a new circuit, and
# the third layer made learning steady rather than a lottery (docs/training.md, "What made the loop learn").
VARIANTS: dict[str, dict[str, int]] = {"tiny": {}, "tiny-world": {"layers": 3, "head_dim": 16}}


def build_tiny(out_dir: str | Path, seed: int = 0, pretrain_steps: int = 1500, lr: float = 3e-3, hidden: int = 128,
               layers: int = 2, head_dim: int = 32) -> Path:
    """Write a ~0.6M-parameter Llama checkpoint (0.75M for `tiny-world`), tokenizer and chat template to `out_dir`;
    minutes on a CPU."""
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
    # One token each: the format is learnt in seconds, not minutes. Every number up to 999 after a space (an
    # option's text) is one token too, as BPE would make them from a large corpus; their embeddings start random,
    # so which is larger is for a round to learn.
    tk.add_tokens(["Finish[", " try option"] + [f" {n}" for n in range(1000)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|pad|>", bos_token=None, unk_token=None,
        additional_special_tokens=["<|endoftext|>", "<|im_start|>"], padding_side="left",
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim, num_key_value_heads=hidden // head_dim, head_dim=head_dim, max_position_embeddings=2048, bos_token_id=None,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    _pretrain(model, tok, seed, pretrain_steps, lr)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
