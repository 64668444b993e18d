"""The transformers engine's own decode loop: the tokens `model.generate` picks (prompt lookup included), each
distinct prompt token prefilled once, a cache a decode step writes in place, the sampler's distribution, stops."""

from __future__ import annotations

import pytest
import torch

from models.engines.hf import MAX_DRAFT, Lookup, TransformersEngine, length_chunks, prefix_tree
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


@pytest.fixture(scope="module")
def untrained_engine(tiny_model_path, tmp_path_factory):
    """The tiny model's shape with random weights: its attention spreads over all its context, so a cache position
    left unmasked changes what it picks (the trained one attends to little but the last tokens)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("untrained")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model_path)).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(path)
    return TransformersEngine(str(path), None, EngineConfig(name="transformers"))


def test_prompt_lookup_keeps_the_draft_tokens_greedy_picks_and_only_those(untrained_engine, monkeypatch):
    """Drafts of greedy's own next tokens are all kept (a forward then yields MAX_DRAFT + 1 tokens); drafts of other
    tokens are all rejected, their cache positions masked (a token a forward). Either way: greedy's tokens."""
    engine = untrained_engine
    ids = [engine.tokenizer(engine.render([{"role": "user", "content": PROMPTS[0]}]), add_special_tokens=False)
           ["input_ids"]]
    sampling = SamplingConfig(max_tokens=24)
    steps = []
    forward = engine.model.forward

    def counting(*args, **kwargs):
        steps.append(kwargs["input_ids"].shape[1])
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.model, "forward", counting)  # the decode steps (the prefill runs the decoder alone)
    monkeypatch.setattr(Lookup, "draft", lambda self, size: [])
    plain = engine._decode(ids, sampling, 0)[0]
    plain_steps = len(steps)  # one per token after the prefill's, and one more that picked EOS if it ended there
    assert plain_steps in (len(plain) - 1, len(plain))

    def oracle(lookup, size):  # what greedy picks next
        done = len(lookup.tokens) - len(ids[0])
        return plain[done : done + size]

    for draft, forwards in ((oracle, -(-plain_steps // (MAX_DRAFT + 1))), (
            lambda lookup, size: [(t + 1) % len(engine.tokenizer) for t in oracle(lookup, size)], plain_steps)):
        steps.clear()
        monkeypatch.setattr(Lookup, "draft", draft)
        assert engine._decode(ids, sampling, 0)[0] == plain and len(steps) == forwards


def test_lookup_drafts_what_followed_the_latest_longest_match():
    lookup = Lookup([1, 2, 3, 9, 1, 2, 3, 7, 8, 4, 3])
    assert lookup.draft(2) == [7, 8]  # 3 alone: the latest earlier 3 is followed by 7, 8
    lookup.extend([9, 1, 2])
    assert lookup.draft(3) == [3, 7, 8]  # 9 1 2 is a longer match than 1 2 alone
    assert Lookup([5, 6]).draft(4) == []


def test_n_samples_and_shared_openings_are_prefilled_once_and_seeded(engine, monkeypatch):
    sampling = SamplingConfig(n=3, temperature=4.0, max_tokens=16, seed=5)  # hot: seeds must show
    rendered = [engine.render([{"role": "user", "content": LEAD + p}]) for p in PROMPTS]
    ids = [engine.tokenizer(r, add_special_tokens=False)["input_ids"] for r in rendered]
    prefills = []  # per prefill forward: rows, width, and the tokens it computes (its fed positions not masked)
    decoder = engine.model.get_decoder()
    forward = decoder.forward

    def counting(*args, **kwargs):
        rows, width = kwargs["input_ids"].shape
        if width > 1:  # sampling feeds no drafts: these are prefills
            prefills.append((rows, width, int(kwargs["attention_mask"][:, -width:].sum())))
        return forward(*args, **kwargs)

    monkeypatch.setattr(decoder, "forward", counting)
    first = engine.generate(rendered, sampling)
    # batch_size 2, longest first: the two longer prompts' shared opening once, then the rest of each, one row each
    # in one forward (never one per sample); the last batch holds the shortest prompt, prefilled whole
    a, b = sorted(range(3), key=lambda i: -len(rendered[i]))[:2]
    shared = next(j for j, (x, y) in enumerate(zip(ids[a], ids[b])) if x != y)
    rests = [len(ids[a]) - shared, len(ids[b]) - shared]
    short = len(ids[3 - a - b])
    assert prefills == [(1, shared, shared), (2, max(rests), sum(rests)), (1, short, short)]
    assert [len(c) for c in first] == [3, 3, 3] and all(x.tokens <= 16 for c in first for x in c)
    assert engine.generate(rendered, sampling) == first
    other = engine.generate(rendered, sampling.model_copy(update={"seed": 6}))
    assert [x.text for c in other for x in c] != [x.text for c in first for x in c]


def test_prefix_tree_levels_share_every_opening_once():
    ids = [[1] * 20 + [2] * 20 + [3], [1] * 20 + [2] * 20 + [4, 4], [1] * 20 + [5] * 3, [1] * 20, [6] * 5]
    levels = prefix_tree(ids)
    runs = [[(n.start, n.end, n.ended) for n in level] for level in levels]
    # [6]*5 shares nothing; the four others share [1]*20 (which prompt 3 ends with); two of them share [2]*20 more
    assert runs == [[(0, 20, [3]), (0, 5, [4])], [(20, 40, []), (20, 23, [2])], [(40, 41, [0]), (40, 42, [1])]]
    assert [[n.parent for n in level] for level in levels] == [[0, 0], [0, 0], [0, 0]]
    # a shared run shorter than MIN_SHARED with no prompt ending there is computed by each continuation itself
    assert [[(n.start, n.end) for n in level] for level in prefix_tree([[7, 7, 1], [7, 7, 2, 2]])] == [[(0, 3), (0, 4)]]


def test_length_chunks_split_a_level_where_padding_costs_more_than_a_forward():
    assert length_chunks([10, 9, 8]) == [[0, 1, 2]]
    assert length_chunks([20, 400, 390, 10]) == [[1, 2], [0, 3]]  # one forward would pad 780 more positions
    assert length_chunks([5]) == [[0]]


def test_a_level_split_in_chunks_prefills_what_each_prompt_alone_gives(untrained_engine, monkeypatch):
    engine = untrained_engine
    lead, shared = list(range(5, 35)), list(range(40, 190))
    ids = [lead + list(range(200, 400)),  # ends a level-1 run of 200, longer than the shared run below
           lead + shared + [7, 8, 9], lead + shared + list(range(60, 100)), lead + [11, 12, 13, 14, 15]]
    forwards = []
    decoder = engine.model.get_decoder()
    forward = decoder.forward
    monkeypatch.setattr(decoder, "forward", lambda *a, **k: forwards.append(k["input_ids"].shape) or forward(*a, **k))
    logits, mask, cache = engine._prefill(ids, reserve=4)
    # the lead; level 1 as two forwards (the 200 and 150 runs, then the 5); the shared run's two continuations
    assert [rows for rows, _ in forwards] == [1, 2, 1, 2]
    monkeypatch.undo()
    with torch.inference_mode():
        for i, prompt in enumerate(ids):
            alone = engine.model(input_ids=torch.tensor([prompt]), use_cache=True)
            assert torch.allclose(logits[i], alone.logits[0, -1], atol=1e-4)
            real = mask[i].nonzero().squeeze(-1)
            for layer, own in zip(cache.layers, alone.past_key_values.layers):
                assert torch.allclose(layer.keys[i][:, real], own.keys[0], atol=1e-4)
                assert torch.allclose(layer.values[i][:, real], own.values[0], atol=1e-4)


def test_a_decode_step_writes_the_cache_in_place(engine):
    ids = [engine.tokenizer(engine.render([{"role": "user", "content": p}]), add_special_tokens=False)["input_ids"]
           for p in PROMPTS]
    logits, mask, cache = engine._prefill(ids, reserve=8)
    layer = cache.layers[0]
    where, length = layer.keys.data_ptr(), layer.keys.shape[2]
    with torch.inference_mode():
        for _ in range(8):
            mask = torch.cat([mask, mask.new_ones(len(ids), 1)], dim=-1)
            engine.model(input_ids=logits.argmax(-1)[:, None], attention_mask=mask,
                         position_ids=mask.sum(-1, keepdim=True) - 1, past_key_values=cache, use_cache=True)
    assert layer.keys.shape[2] == length + 8 and layer.keys.data_ptr() == where


def test_the_sampler_draws_from_the_tempered_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0]]).repeat(20000, 1)
    generator = torch.Generator().manual_seed(0)
    drawn = TransformersEngine._pick(logits, SamplingConfig(temperature=0.5), generator)
    share = torch.bincount(drawn, minlength=5).float() / len(drawn)
    expected = (logits[0] / 0.5).softmax(-1)
    assert (share - expected).abs().max() < 0.01 and share[4] == 0
    top = TransformersEngine._pick(logits, SamplingConfig(temperature=0.5, top_p=0.95), generator)
    assert set(top.tolist()) == {0, 1}  # 0.867 + 0.117 of the mass: the rest is cut
    edges = torch.tensor([[float("-inf"), 0.0, float("-inf")]]).repeat(1000, 1)  # no mass on either end
    assert TransformersEngine._pick(edges, SamplingConfig(temperature=1.0), generator).eq(1).all()


def test_a_stop_string_ends_its_sequence(engine):
    rendered = [engine.render([{"role": "user", "content": p}]) for p in PROMPTS]
    prompt, free = max(zip(rendered, engine.generate(rendered, SamplingConfig(max_tokens=24))),
                       key=lambda pc: len(pc[1][0].text))
    free = free[0]
    assert len(free.text) > 4
    stop = free.text[2:4]
    cut = engine.generate([prompt], SamplingConfig(max_tokens=24, stop=[stop]))[0][0]
    assert cut.text == free.text[: free.text.find(stop)] and cut.tokens < free.tokens
