#!/usr/bin/env bash
# Fetch, on a machine with pip access, the wheels that bench/gpu_check.sh needs on a CUDA machine that has
# PyTorch but no package index (the lent device image: /work/.library/device/KINDS.md lists what it holds).
# It lacks pydantic, TRL, datasets and math-verify, and its transformers/PEFT versions are not ours, so those
# come as wheels, at the versions installed in this project's environment (the ones the tests pass with).
# gpu_check.sh installs whatever lies in .whl/ into a temporary folder first; it runs without them where the
# packages are already installed.
# Usage: bench/gpu_wheels.sh [PYTHON_VERSION]   (default 3.12, the device image's; writes .whl/, git-ignored)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pyver="${1:-3.12}"
env_python="${PYTHON:-$root/.venv/bin/python}"
# Not in the image, or needed at our version. Dependencies the image already has (numpy, pandas, pyarrow, sympy,
# safetensors, ...) are not fetched: --no-deps keeps one version of each package.
packages=(pydantic pydantic_core annotated-types typing-inspection trl datasets dill multiprocess
          math-verify latex2sympy2_extended antlr4-python3-runtime gguf transformers tokenizers huggingface_hub
          httpx2 httpcore2 h2 hpack hyperframe truststore sniffio peft accelerate)
mapfile -t pinned < <("$env_python" - "${packages[@]}" <<'PY'
import importlib.metadata as md
import sys

for name in sys.argv[1:]:
    print(f"{name}=={md.version(name)}")
PY
)
rm -rf "$root/.whl"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
"$env_python" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    "${platforms[@]}" -d "$root/.whl" "${pinned[@]}"
echo "gpu_wheels: $(ls "$root/.whl" | wc -l) wheels, $(du -sh "$root/.whl" | cut -f1) in .whl/ for Python $pyver"
