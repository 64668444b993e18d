"""LoRA training on a round's curated data: one entry point, the setting is a config field.

Training rows are built from the prompts stored in the datasets, which are the exact rendered inference prompts,
so training and inference see byte-identical prompt text. TRL's configs are built from ours.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reflectevo.schema import AdapterManifest, SFTRecord
from reflectevo.shards import read_records

Setting = Literal["sft_one_stage"]


class TrainConfig(BaseModel):
    """LoRA and optimiser settings. Defaults follow the paper's LoRA preset (r 8, alpha 32, dropout 0.1, q/k/v)."""

    model_config = ConfigDict(extra="forbid")

    setting: Setting = Field(default="sft_one_stage", description="Reflection-learning setting.")
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj"])
    learning_rate: float = Field(default=2e-4, gt=0.0, description="LoRA rate: about 10x a full fine-tune's.")
    epochs: float = Field(default=1.0, gt=0.0)
    max_steps: int = Field(default=-1, description="Stop after this many optimiser steps; -1: run all epochs.")
    batch_size: int = Field(default=4, ge=1)
    max_length: int = Field(default=1024, ge=16, description="Tokens per training sequence at most.")
    seed: int = 0


def sft_rows(records: list[SFTRecord]) -> list[dict[str, str]]:
    """One-stage SFT: both roles of each D+ record, reflection and correction, in one run.

    (reflection prompt -> reflection) teaches the reflection that fixed the answer; (correction prompt -> second
    trial) teaches using it. Completions end where generation ended; TRL appends the EOS token.
    """
    rows = []
    for r in records:
        rows.append({"prompt": r.reflection_prompt, "completion": r.reflection})
        rows.append({"prompt": r.second_trial_prompt, "completion": r.second_trial_reasoning})
    return rows


def train_adapter(cfg: TrainConfig, model_path: str, init_adapter: str | None, dplus_path: str, out_dir: str,
                  data_sha256: str) -> AdapterManifest:
    """Train a LoRA adapter (continuing `init_adapter` when given) and save it to `out_dir` atomically."""
    records = read_records(dplus_path, SFTRecord)
    if not records:
        return AdapterManifest(path=None, setting=cfg.setting,
                               skipped_reason="D+ is empty: no reflection fixed a wrong answer this round")
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    peft_config = None
    if init_adapter:
        model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    else:
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=cfg.target_modules, task_type="CAUSAL_LM")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    args = SFTConfig(
        output_dir=str(tmp / "trainer"), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, max_length=cfg.max_length,
        completion_only_loss=True, logging_steps=1, report_to="none", save_strategy="no", seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(), bf16=False, activation_checkpointing=False, dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(sft_rows(records)),
                         processing_class=tok, peft_config=peft_config)
    t = time.perf_counter()
    result = trainer.train()
    metrics = {"train_loss": float(result.training_loss), "train_s": time.perf_counter() - t,
               "steps": float(result.global_step)}
    trainer.save_model(str(tmp))
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    (tmp / "reflectevo_training.json").write_text(json.dumps(
        {"config": cfg.model_dump(), "base_model": model_path, "init_adapter": init_adapter,
         "data_sha256": data_sha256, "rows": len(records), "metrics": metrics}, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    from models.loading import weights_sha256

    return AdapterManifest(path=str(out), sha256=weights_sha256(str(out)), setting=cfg.setting, rows=len(records),
                           metrics=metrics)
