#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), then run the demo graphs with the embedded defaults (a root
# folder under .demo-root): plain nodes, then text-to-image on a demo model built offline.
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
echo "== invokeai models create-demo   (a random-weight model built offline: its images are noise)"
.venv/bin/invokeai models create-demo
echo "== invokeai run -f examples/txt2img.json   (model -> prompt -> noise -> denoise -> decode)"
.venv/bin/invokeai run -f examples/txt2img.json
