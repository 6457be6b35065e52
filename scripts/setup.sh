#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with pinned tools, the kernel
# and every plugin of this repository installed in editable mode, and the test plugins under tests/.
# Idempotent: re-running only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -r requirements/dev.txt
# The kernel, then each plugin distribution of this repository (each its own pyproject.toml).
"${PIP[@]}" install --no-deps -e .
for plugin in plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] || continue
  if [ -x "$plugin/setup-deps.sh" ]; then "$plugin/setup-deps.sh" "$PWD/.venv/bin/python"; fi
  "${PIP[@]}" install -e "$plugin"
done
# Tiny plugin distributions the kernel tests install for real (entry points and all).
for plugin in tests/plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] || continue
  "${PIP[@]}" install --no-deps -e "$plugin"
done
# The web UI (npm ci + vite build into invokeai_web/static) and its browser-test tools (chromium, playwright).
if [ -x plugins/invokeai-web/frontend/setup-ui.sh ]; then plugins/invokeai-web/frontend/setup-ui.sh "$PWD/.venv/bin/python"; fi
echo "setup: ok (.venv ready)"
