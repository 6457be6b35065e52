#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), then run the demo graphs with the embedded defaults
# (a root folder under .demo-root, in-memory stores, local image files).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export INVOKEAI_ROOT="${INVOKEAI_ROOT:-$PWD/.demo-root}"
echo "== invokeai plugins"
.venv/bin/invokeai plugins
echo "== invokeai run -f examples/hello.json"
.venv/bin/invokeai run -f examples/hello.json
echo "== invokeai run -f examples/iterate.json --json"
.venv/bin/invokeai run -f examples/iterate.json --json
