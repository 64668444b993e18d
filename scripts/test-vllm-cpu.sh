#!/usr/bin/env bash
# The vLLM tests on a CPU-only machine: build .venv-vllm once (scripts/setup-vllm-cpu.sh skips a complete one),
# then run tests/vllm in it. Extra arguments go to pytest.
#
# OMP_NUM_THREADS=1: two OpenMP threads on a busy 2-core machine run far slower than one.
# VLLM_CPU_KVCACHE_SPACE=1: a 1 GiB KV cache instead of 4 GiB per engine; the tests hold two engines at once.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$SECONDS
"$root/scripts/setup-vllm-cpu.sh"
cd "$root"
status=0
OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 \
    "$root/.venv-vllm/bin/python" -m pytest tests/vllm "$@" || status=$?
echo "test-vllm-cpu: $((SECONDS - start)) s in all"
exit $status
