"""Training speed by precision: fp32 against bf16 mixed precision, side by side in one run, on the real trainer.

    python bench/training.py                      # SmolLM2-135M-Instruct, LoRA one-stage SFT steps
    python bench/training.py --model tiny --steps 20

Each precision trains the same rows (the default round's prompt shape: a worked-example correction prompt and a
short completion) through `models.training.build_trainer`, the trainer a round uses, for `--steps` optimiser steps
after one warm-up step; the line per dtype gives tokens/s (prompt and completion tokens of the rows trained) and the
final loss, and the last line their ratio with the CPU it ran on. `train.dtype: auto` picks bf16 where this ratio
is above 1 on the CPUs that have bf16 kernels (reflectevo/config.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for key, value in {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(key, value)


def rows(count: int) -> list[dict]:
    """Correction-prompt rows of the world's problems, rendered as the pipeline renders them."""
    from models.prompts import correction_messages
    from problems.world import world_problems

    out = []
    for p in world_problems("paired", count, seed=0):
        messages = correction_messages(p, "Finish[A]", "check option (A) failed, try option (B).", fewshot=3)
        out.append({"prompt": messages[0]["content"], "rendered": False,
                    "completion": "The reflection says B.\nFinish[B]"})
    return out


def measure(model: str, dtype: str, steps: int, batch: int, train_rows: list[dict]) -> dict:
    import torch

    from models.loading import resolve_model
    from models.training import build_trainer, tokenize_sft
    from reflectevo.config import TrainConfig

    cfg = TrainConfig(dtype=dtype, max_steps=steps + 1, batch_size=batch, eval_fraction=0.0)
    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(cfg, False, resolve_model(model), None, train_rows, [], Path(out))
        tokenized = tokenize_sft(trainer.processing_class, train_rows[: batch * (steps + 1)])
        per_step = sum(len(r["input_ids"]) for r in tokenized) / (steps + 1)
        times: list[float] = []

        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def on_step_begin(self, *a, **k):
                times.append(time.perf_counter())

            def on_step_end(self, *a, **k):
                times[-1] = time.perf_counter() - times[-1]

        trainer.add_callback(Clock())
        result = trainer.train()
    timed = times[1:]  # the first step pays one-time costs (kernel selection, allocations)
    return {"dtype": dtype, "tok_s": per_step * len(timed) / sum(timed),
            "step_s": sum(timed) / len(timed), "loss": float(result.training_loss), "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from learning import machine_line

    print(machine_line(), flush=True)
    train_rows = rows(args.batch * (args.steps + 1))
    figures = {}
    for dtype in ("float32", "bfloat16"):
        figures[dtype] = m = measure(args.model, dtype, args.steps, args.batch, train_rows)
        print(f"dtype={dtype} train_tok_s={m['tok_s']:.1f} step_s={m['step_s']:.2f} loss={m['loss']:.4f} "
              f"model={args.model} steps={args.steps} batch={args.batch}", flush=True)
    from models.loading import resolve_model, stored_dtype
    from reflectevo.config import TrainConfig

    auto = "bfloat16" if TrainConfig().bf16(stored_dtype(resolve_model(args.model))) else "float32"
    print(f"bf16_speedup={figures['bfloat16']['tok_s'] / figures['float32']['tok_s']:.2f} auto_picks={auto}")


if __name__ == "__main__":
    main()
