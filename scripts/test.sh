#!/usr/bin/env bash
# Set everything up (scripts/setup.sh --tests: with the test tools), then run the whole test suite: lint (ruff), types (mypy),
# the kernel's tests, and each plugin's own tests on their own. Extra arguments go to every pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --tests
export HF_HUB_OFFLINE=1
unset INVOKEAI_ROOT INVOKEAI_LOAD_PLUGINS INVOKEAI_STRICT_PLUGINS INVOKEAI_CONFIG
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy invokeai_core plugins/*/src
if [ -d plugins/invokeai-web/frontend/node_modules ]; then
  echo "== web UI unit tests (vitest)"
  (cd plugins/invokeai-web/frontend && npx --no-install vitest run)
fi
echo "== kernel tests"
.venv/bin/python -m pytest tests "$@"
for plugin in plugins/*/; do
  [ -d "$plugin/tests" ] || continue
  echo "== $(basename "$plugin") tests"
  (cd "$plugin" && ../../.venv/bin/python -m pytest tests "$@")
done
