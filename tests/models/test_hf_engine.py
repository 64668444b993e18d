"""The transformers engine's own decode loop: the tokens `model.generate` picks, one prefill for n samples, stops."""

from __future__ import annotations

import pytest
import torch

from models.engines.hf import TransformersEngine
from reflectevo.config import EngineConfig, SamplingConfig

PROMPTS = ["Question: what is two plus two?", "Hi", "Solve step by step: a train leaves at noon and travels far."]
# A long shared opening, as a task's instruction and worked examples give a round's prompts
LEAD = "Solve the following problem. Think step by step, check every step, then answer at the end. " * 2


@pytest.fixture(scope="module")
def engine(tiny_model_path):
    return TransformersEngine(tiny_model_path, None, EngineConfig(name="transformers", batch_size=2))


@pytest.mark.parametrize("prompts", [PROMPTS, [LEAD + PROMPTS[0], PROMPTS[1], LEAD + PROMPTS[2]]],
                         ids=["nothing-shared", "two-share-a-lead"])
def test_greedy_picks_the_tokens_of_model_generate(tiny_model_path, prompts):
    engine = TransformersEngine(tiny_model_path, None, EngineConfig(name="transformers", batch_size=4))
    tok = engine.tokenizer
    rendered = [engine.render([{"role": "user", "content": p}]) for p in prompts]
    enc = tok(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = engine.model.generate(**enc, max_new_tokens=24, do_sample=False, temperature=None, top_p=None,
                                    top_k=None, pad_token_id=tok.pad_token_id)
    expected = []
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        end = next((j for j, t in enumerate(row) if t in engine.eos_ids), len(row))
        expected.append((tok.decode(row[:end], skip_special_tokens=True), end))
    got = engine.generate(rendered, SamplingConfig(max_tokens=24))
    assert [(c[0].text, c[0].tokens) for c in got] == expected


def test_n_samples_and_a_shared_prefix_are_prefilled_once_and_seeded(engine, monkeypatch):
    sampling = SamplingConfig(n=3, temperature=4.0, max_tokens=16, seed=5)  # hot: seeds must show
    rendered = [engine.render([{"role": "user", "content": LEAD + p}]) for p in PROMPTS]
    prefills = []
    forward = engine.model.forward

    def counting(*args, **kwargs):
        if kwargs["input_ids"].shape[1] > 1:
            prefills.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.model, "forward", counting)
    first = engine.generate(rendered, sampling)
    # batch_size 2: the opening both prompts share (one row), then the rest of each prompt (one row each, never
    # one per sample); the last batch holds one prompt, prefilled whole
    assert prefills == [1, 2, 1]
    assert [len(c) for c in first] == [3, 3, 3] and all(x.tokens <= 16 for c in first for x in c)
    assert engine.generate(rendered, sampling) == first
    other = engine.generate(rendered, sampling.model_copy(update={"seed": 6}))
    assert [x.text for c in other for x in c] != [x.text for c in first for x in c]


def test_a_stop_string_ends_its_sequence(engine):
    rendered = [engine.render([{"role": "user", "content": p}]) for p in PROMPTS]
    prompt, free = max(zip(rendered, engine.generate(rendered, SamplingConfig(max_tokens=24))),
                       key=lambda pc: len(pc[1][0].text))
    free = free[0]
    assert len(free.text) > 4
    stop = free.text[2:4]
    cut = engine.generate([prompt], SamplingConfig(max_tokens=24, stop=[stop]))[0][0]
    assert cut.text == free.text[: free.text.find(stop)] and cut.tokens < free.tokens
