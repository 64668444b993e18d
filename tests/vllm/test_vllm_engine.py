"""The vLLM engine against the `Engine` contract, and against the transformers engine on the tiny model (fp32)."""

from __future__ import annotations

import pytest

from models.prompts import reasoning_messages
from problems import load_problems
from reflectevo.config import EngineConfig, ProblemSource, SamplingConfig


@pytest.fixture(scope="module")
def prompts(vllm_engine) -> list[str]:
    problems = load_problems(ProblemSource(task="choice"))[:3] + load_problems(ProblemSource(task="math"))[:3]
    return [vllm_engine.render(reasoning_messages(p)) for p in problems]


@pytest.fixture(scope="module")
def lora_engine(tiny_model_path, adapter_path):
    from models.engines.vllm import VLLMEngine

    engine = VLLMEngine(tiny_model_path, adapter=adapter_path, config=EngineConfig(name="vllm"))
    yield engine
    engine.close()


def texts(completions) -> list[list[str]]:
    return [[c.text for c in cs] for cs in completions]


GREEDY = SamplingConfig(max_tokens=24)
SAMPLED = SamplingConfig(n=2, temperature=1.0, max_tokens=16, seed=0)


class TestVLLMEngine:
    def test_renders_the_same_prompt_text_as_the_transformers_engine(self, vllm_engine, hf_engine):
        messages = [{"role": "user", "content": "What is 2 + 3?"}]
        assert vllm_engine.render(messages) == hf_engine.render(messages)

    def test_batch_returns_n_completions_per_prompt_in_prompt_order(self, vllm_engine, prompts):
        batch = vllm_engine.generate(prompts, SamplingConfig(n=3, temperature=1.0, max_tokens=8, seed=1))
        assert [len(cs) for cs in batch] == [3] * len(prompts)
        assert all(0 < c.tokens <= 8 for cs in batch for c in cs)
        greedy = vllm_engine.generate(prompts, GREEDY)
        assert texts(greedy) == [texts(vllm_engine.generate([p], GREEDY))[0] for p in prompts]

    def test_empty_prompt_list_starts_nothing(self, vllm_engine):
        assert vllm_engine.generate([], GREEDY) == []

    def test_stop_string_is_cut_from_the_text_and_its_tokens_not_counted(self, vllm_engine, prompts):
        full = vllm_engine.generate(prompts, GREEDY)
        stop = "Finish["
        assert any(stop in cs[0].text for cs in full), "the tiny model should answer in the Finish[...] format"
        cut = vllm_engine.generate(prompts, GREEDY.model_copy(update={"stop": [stop]}))
        for whole, part in zip(full, cut):
            expected = whole[0].text.split(stop)[0]
            assert part[0].text == expected
            if expected != whole[0].text:
                assert part[0].tokens < whole[0].tokens

    def test_same_seed_gives_the_same_samples_and_the_n_samples_differ(self, vllm_engine, prompts):
        first = texts(vllm_engine.generate(prompts, SAMPLED))
        assert texts(vllm_engine.generate(prompts, SAMPLED)) == first
        assert any(a != b for a, b in first)
        assert texts(vllm_engine.generate(prompts, SAMPLED.model_copy(update={"seed": 7}))) != first

    def test_a_prompts_samples_do_not_depend_on_its_batch(self, vllm_engine, prompts):
        """Each prompt is seeded with seed + its index, so a prompt at index i gets the same samples alone."""
        batch = texts(vllm_engine.generate(prompts, SAMPLED))
        last = len(prompts) - 1
        alone = texts(vllm_engine.generate([prompts[last]], SAMPLED.model_copy(update={"seed": last})))
        assert alone[0] == batch[last]

    def test_greedy_outputs_match_the_transformers_engine(self, vllm_engine, hf_engine, prompts):
        vllm_out, hf_out = vllm_engine.generate(prompts, GREEDY), hf_engine.generate(prompts, GREEDY)
        assert texts(vllm_out) == texts(hf_out)
        assert [c[0].tokens for c in vllm_out] == [c[0].tokens for c in hf_out]


class TestLoRA:
    def test_rank_is_read_from_the_adapter_and_rounded_up_to_a_vllm_rank(self, adapter_path, tmp_path):
        from models.engines.vllm import lora_rank

        assert lora_rank(adapter_path) == 8
        (tmp_path / "adapter_config.json").write_text('{"r": 12}')
        assert lora_rank(str(tmp_path)) == 16

    def test_missing_adapter_config_names_the_file(self, tmp_path):
        from models.engines.vllm import lora_rank

        with pytest.raises(ValueError, match="adapter_config.json"):
            lora_rank(str(tmp_path))

    def test_adapter_changes_the_outputs(self, vllm_engine, lora_engine, prompts):
        assert texts(lora_engine.generate(prompts, GREEDY)) != texts(vllm_engine.generate(prompts, GREEDY))

    def test_adapter_outputs_match_peft_for_the_first_tokens(self, lora_engine, tiny_model_path, adapter_path,
                                                            prompts):
        from models.engines.hf import TransformersEngine

        peft = TransformersEngine(tiny_model_path, adapter=adapter_path, config=EngineConfig(name="transformers"))
        first = SamplingConfig(max_tokens=4)
        assert texts(lora_engine.generate(prompts, first)) == texts(peft.generate(prompts, first))
