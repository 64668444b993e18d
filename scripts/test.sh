#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the test suite offline on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PREFECT_HOME="${PREFECT_HOME:-$(mktemp -d)}" PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
