"""The four training settings on the tiny model: a few CPU steps each, LoRA only, and the adapter generates."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.app import app
from models.prompts import FEEDBACK_WRONG, correction_messages, reasoning_messages, reflection_messages
from models.training import (
    base_model_of,
    build_trainer,
    correction_target,
    dpo_rows,
    plain_text_tokenizer,
    sample_records,
    sft_rows,
    split_by_problem,
    train_adapter,
)
from reflectevo.config import TrainConfig
from reflectevo.schema import DatasetManifest, PairRecord, Problem, SFTRecord
from reflectevo.shards import file_sha256, write_shard

INSTRUCTION = "1-1-1"


def problem(i: int) -> Problem:
    return Problem(id=f"q{i}", task="choice", kind="choice", question=f"Which colour {i}?", answer="B",
                   choices=["red", "green", "blue", "white"])


@pytest.fixture(scope="module")
def tok(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def render(tok, messages) -> str:
    """What the transformers engine's `render` returns."""
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@pytest.fixture(scope="module")
def records(tok):
    """Six problems, each a failed first trial, two fixing reflections and one that did not fix it."""
    failed = "Step by step.\nFinish[A]"
    dplus, dpm, dpref = [], [], []
    for i in range(6):
        p = problem(i)
        prompt = render(tok, reflection_messages(p, failed, INSTRUCTION, FEEDBACK_WRONG))
        common = dict(problem_id=p.id, task=p.task, question=p.question, answer=p.answer, instruction_id=INSTRUCTION,
                      first_trial_reasoning=failed, first_trial_answer="A")
        good, better, bad = "Green fits; try option B.", "Option B matches the question.", "Check each step."
        for s, text in enumerate((good, better)):
            dplus.append(SFTRecord(
                id=f"choice/{p.id}/{INSTRUCTION}/{s}", first_trial_prompt=render(tok, reasoning_messages(p)),
                reflection_prompt=prompt, reflection=text,
                second_trial_prompt=render(tok, correction_messages(p, failed, text)),
                second_trial_reasoning="Finish[B]", second_trial_answer="B", **common))
        pair = dict(prompt=prompt, second_trial_reasoning_chosen="Finish[B]", second_trial_answer_chosen="B", **common)
        dpm.append(PairRecord(id=f"choice/{p.id}/pm", kind="pm", chosen=good, rejected=bad,
                              second_trial_reasoning_rejected=failed, second_trial_answer_rejected="A", **pair))
        dpref.append(PairRecord(id=f"choice/{p.id}/pref", kind="pref", chosen=better, rejected=good,
                                second_trial_reasoning_rejected="Finish[B]", second_trial_answer_rejected="B",
                                judge="test", **pair))
    return {"dplus": dplus, "dpm": dpm, "dpref": dpref}


@pytest.fixture(scope="module")
def datasets(records, tmp_path_factory) -> dict[str, DatasetManifest]:
    folder = tmp_path_factory.mktemp("datasets")
    out = {}
    for name, rows in records.items():
        path = folder / name / "train-00000-of-00001.parquet"
        info = write_shard(path, rows, SFTRecord if name == "dplus" else PairRecord, "test")
        out[name] = DatasetManifest(name=name, path=str(path), rows=info.rows, sha256=info.sha256)
    return out


def lora_tensors(adapter_dir) -> dict:
    from safetensors.torch import load_file

    return load_file(f"{adapter_dir}/adapter_model.safetensors")


TINY = dict(max_steps=2, batch_size=2, eval_fraction=0.34, eval_steps=1, learning_rate=1e-3)


@pytest.mark.parametrize("setting", ["sft_one_stage", "sft_two_stage", "dpo_pm", "dpo_pref"])
def test_setting_trains_lora_only_and_next_round_generates_with_it(setting, datasets, tiny_model_path, tmp_path):
    from models.engines import load_engine
    from reflectevo.config import EngineConfig, GenerateConfig
    from stages.generate import run_round_steps

    base_sha = file_sha256(f"{tiny_model_path}/model.safetensors")
    manifest = train_adapter(TrainConfig(setting=setting, **TINY), tiny_model_path, None, datasets,
                             str(tmp_path / "adapter"))

    assert manifest.path and not manifest.skipped_reason
    tensors = lora_tensors(manifest.path)
    assert tensors and all("lora_" in k for k in tensors)  # only LoRA weights are saved
    assert any(float(t.abs().sum()) > 0 for k, t in tensors.items() if "lora_B" in k)  # B starts at zero: it moved
    assert file_sha256(f"{tiny_model_path}/model.safetensors") == base_sha  # the base checkpoint is untouched
    meta = json.loads((tmp_path / "adapter" / "reflectevo_training.json").read_text())
    dataset = {"sft_one_stage": "dplus", "sft_two_stage": "dplus", "dpo_pm": "dpm", "dpo_pref": "dpref"}[setting]
    assert meta["setting"] == setting and meta["dataset"] == dataset == manifest.dataset
    assert meta["data_sha256"] == datasets[dataset].sha256 and meta["problems"]["train"] == 4
    assert len(meta["problems"]["eval"]) == 2 and any(k.endswith("eval_loss") for k in meta["metrics"])
    if setting == "sft_two_stage":
        assert {"reflection/steps", "correction/steps"} <= set(meta["metrics"])
        assert not list((tmp_path / "adapter").glob("stage-*"))

    engine = load_engine(EngineConfig(name="transformers"), tiny_model_path, manifest.path)
    trajectories, _ = run_round_steps(engine, [problem(10), problem(11)],
                                      GenerateConfig(reflections=1, trial_max_tokens=8, reflection_max_tokens=8), 2, 0)
    assert len(trajectories) == 2 and type(engine.model).__name__.startswith("Peft")


def test_continued_adapter_keeps_learning(datasets, tiny_model_path, tmp_path):
    """Round r+1 continues round r's adapter; DPO's frozen reference copy is not saved with it."""
    first = train_adapter(TrainConfig(setting="sft_one_stage", max_steps=1, batch_size=2, eval_fraction=0),
                          tiny_model_path, None, datasets, str(tmp_path / "r1"))
    dpo = TrainConfig(setting="dpo_pm", max_steps=1, batch_size=2, eval_fraction=0, learning_rate=1e-3)
    second = train_adapter(dpo, tiny_model_path, first.path, datasets, str(tmp_path / "r2"))
    before, after = lora_tensors(first.path), lora_tensors(second.path)
    assert set(before) == set(after) and any(not before[k].equal(after[k]) for k in before)
    assert not (tmp_path / "r2" / "ref").exists()


def test_empty_dataset_skips_with_reason(datasets, tiny_model_path, tmp_path):
    path = tmp_path / "empty.parquet"
    info = write_shard(path, [], PairRecord, "empty")
    empty = {**datasets, "dpref": DatasetManifest(name="dpref", path=str(path), rows=0, sha256=info.sha256)}
    manifest = train_adapter(TrainConfig(setting="dpo_pref"), tiny_model_path, None, empty, str(tmp_path / "a"))
    assert manifest.path is None and manifest.skipped_reason.startswith("Dpref is empty")
    assert not (tmp_path / "a").exists()


def test_missing_dataset_names_setting_and_dataset(datasets, tiny_model_path, tmp_path):
    with pytest.raises(ValueError, match="train.setting 'dpo_pm' trains on the 'dpm' dataset"):
        train_adapter(TrainConfig(setting="dpo_pm"), tiny_model_path, None, {"dplus": datasets["dplus"]},
                      str(tmp_path / "a"))


class TestRows:
    def test_split_keeps_each_problem_on_one_side_and_is_seeded(self, records):
        train, held = split_by_problem(records["dplus"], 0.34, seed=3)
        assert not {r.problem_id for r in train} & {r.problem_id for r in held}
        assert len({r.problem_id for r in held}) == 2 and len(train) + len(held) == len(records["dplus"])
        assert split_by_problem(records["dplus"], 0.34, seed=3) == (train, held)
        assert split_by_problem(records["dplus"][:2], 0.9, seed=3)[0]  # one problem: it stays in training

    def test_max_records_is_a_seeded_sample_in_file_order(self, records):
        dplus = records["dplus"]
        assert sample_records(dplus, None, 0) == dplus == sample_records(dplus, len(dplus), 0)
        some = sample_records(dplus, 2, seed=1)
        assert len(some) == 2 and some == sample_records(dplus, 2, seed=1)
        assert [dplus.index(r) for r in some] == sorted(dplus.index(r) for r in some)
        assert {r.id for s in range(8) for r in sample_records(dplus, 2, seed=s)} > {r.id for r in some}

    def test_one_stage_rows_are_both_inference_roles(self, records):
        r = records["dplus"][0]
        assert sft_rows([r], ("reflection", "correction")) == [
            {"prompt": r.reflection_prompt, "rendered": True, "completion": r.reflection},
            {"prompt": r.second_trial_prompt, "rendered": True, "completion": r.second_trial_reasoning},
        ]

    def test_sft_sequences_are_engine_prompt_tokens_then_completion_and_eos(self, records, tok, tiny_model_path,
                                                                          tmp_path):
        trainer = build_trainer(TrainConfig(), False, tiny_model_path, None,
                                sft_rows(records["dplus"][:1], ("reflection",)), [], tmp_path)
        row = trainer.train_dataset[0]
        prompt = tok(records["dplus"][0].reflection_prompt, add_special_tokens=False)["input_ids"]
        completion = tok(records["dplus"][0].reflection, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert row["input_ids"] == prompt + completion
        assert row["labels"] == [-100] * len(prompt) + completion

    def test_dpo_prompt_is_not_retemplated_and_both_completions_end_in_eos(self, records, tok, tiny_model_path,
                                                                          tmp_path):
        r = records["dpm"][0]
        trainer = build_trainer(TrainConfig(setting="dpo_pm"), True, tiny_model_path, None, dpo_rows([r]), [], tmp_path)
        row = trainer.train_dataset[0]
        assert row["prompt_ids"] == tok(r.prompt, add_special_tokens=False)["input_ids"]
        assert row["chosen_ids"] == tok(r.chosen, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert row["rejected_ids"] == tok(r.rejected, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]

    def test_imported_user_message_is_rendered_through_the_chat_template(self, records, tok, tiny_model_path, tmp_path):
        r = records["dplus"][0].model_copy(update={"reflection_prompt": "Reflect on it.", "prompts_rendered": False})
        rows = sft_rows([r], ("reflection",))
        trainer = build_trainer(TrainConfig(), False, tiny_model_path, None, rows, [], tmp_path)
        user = render(tok, [{"role": "user", "content": "Reflect on it."}])
        expected = tok(user, add_special_tokens=False)["input_ids"]
        assert trainer.train_dataset[0]["input_ids"][: len(expected)] == expected


def test_dpo_tokenizer_adding_bos_to_plain_text_is_switched_off(tiny_model_path):
    """Llama-3-style tokenizers prepend BOS to plain text; the engines never send it, so DPO must not train on it."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path, bos_token="<|endoftext|>", add_bos_token=True)
    assert tok("a")["input_ids"] != tok("a", add_special_tokens=False)["input_ids"]
    assert plain_text_tokenizer(tok)("a")["input_ids"] == tok("a", add_special_tokens=False)["input_ids"]


def test_imported_second_trial_loses_the_environment_observation(records):
    official = records["dplus"][0].model_copy(update={
        "official": "{}", "second_trial_reasoning": "Thought: t\nAction: Finish[B]\nObservation: Answer is CORRECT"})
    assert correction_target(official) == "Thought: t\nAction: Finish[B]"
    assert correction_target(records["dplus"][0]) == records["dplus"][0].second_trial_reasoning


def test_merged_model_matches_adapter_outputs(datasets, tiny_model_path, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = train_adapter(TrainConfig(max_steps=1, batch_size=2, eval_fraction=0, learning_rate=1e-2),
                            tiny_model_path, None, datasets, str(tmp_path / "adapter")).path
    result = CliRunner().invoke(app, ["export-model", adapter, "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output  # the base model is read from reflectevo_training.json
    merged = str(tmp_path / "merged")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        base_model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        peft = PeftModel.from_pretrained(base_model, adapter).eval()(ids).logits
        alone = AutoModelForCausalLM.from_pretrained(merged).eval()(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()(ids).logits
    assert torch.allclose(peft, alone, atol=1e-5) and not torch.allclose(base, alone, atol=1e-5)
    assert (tmp_path / "merged" / "tokenizer.json").exists()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()


def test_base_model_falls_back_to_adapter_config_and_else_asks_for_it(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "some/base"}))
    assert base_model_of(str(tmp_path)) == "some/base"
    with pytest.raises(ValueError, match="pass the base model with --base"):
        base_model_of(str(tmp_path / "nothing"))


def test_full_fine_tuning_saves_a_whole_checkpoint_that_the_next_round_loads(datasets, tiny_model_path, tmp_path):
    """`lora: false` fine-tunes every weight; the next round's engine and training start from that checkpoint."""
    from models.engines import load_engine, release_engines
    from models.loading import is_full_checkpoint, weights_for
    from reflectevo.config import EngineConfig, SamplingConfig

    cfg = TrainConfig(lora=False, max_steps=2, batch_size=2, eval_fraction=0.0)
    first = train_adapter(cfg, tiny_model_path, None, datasets, str(tmp_path / "r1"))
    assert is_full_checkpoint(first.path) and not (tmp_path / "r1" / "adapter_config.json").exists()
    assert weights_for(tiny_model_path, first.path) == (first.path, None)

    engine = load_engine(EngineConfig(name="transformers"), tiny_model_path, first.path)
    assert engine.model.__class__.__name__ == "LlamaForCausalLM"  # the checkpoint itself, no PEFT wrapper
    assert engine.generate([engine.render(reasoning_messages(problem(0)))], SamplingConfig(max_tokens=4))[0][0].text
    release_engines()

    second = train_adapter(cfg, tiny_model_path, first.path, datasets, str(tmp_path / "r2"))
    assert is_full_checkpoint(second.path) and second.sha256 != first.sha256
    with pytest.raises(ValueError, match="keep train.lora false"):
        train_adapter(TrainConfig(max_steps=1), tiny_model_path, second.path, datasets, str(tmp_path / "r3"))


def test_lora_on_any_modules_mlp_included(datasets, tiny_model_path, tmp_path):
    cfg = TrainConfig(target_modules="all-linear", max_steps=1, batch_size=2, eval_fraction=0.0)
    manifest = train_adapter(cfg, tiny_model_path, None, datasets, str(tmp_path / "a"))
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    targets = {name.split(".")[-1] for name in config["target_modules"]}  # PEFT writes the layers it wrapped
    assert {"q_proj", "up_proj", "down_proj", "gate_proj", "o_proj"} <= targets and manifest.path


def test_a_float32_checkpoint_trains_in_fp32_unless_told(tiny_model_path, tmp_path):
    from models.training import _trainer_args

    assert not _trainer_args(TrainConfig(), tmp_path, False, "float32")["bf16"]
    assert _trainer_args(TrainConfig(dtype="bfloat16"), tmp_path, False, "float32")["bf16"]
