#!/usr/bin/env bash
# Build the web UI into the invokeai_web package (called by scripts/setup.sh). Quick when nothing changed:
# `npm ci` only when package-lock.json changed, `npm run build` only when a source is newer than the build.
# Without npm the UI is not built and `invokeai serve` serves the API (and its docs) only.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "setup-ui: npm not found: the web UI is not built (invokeai serve will serve the API only)"
  exit 0
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup-ui: npm ci (the UI's pinned JavaScript packages, into frontend/node_modules)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
OUT=../src/invokeai_web/static/index.html
if [ ! -f "$OUT" ] || [ -n "$(find src index.html package.json package-lock.json vite.config.ts tsconfig.json -newer "$OUT" -print -quit)" ]; then
  echo "setup-ui: building the web UI (vite) into src/invokeai_web/static"
  npm run --silent build >/dev/null
fi
