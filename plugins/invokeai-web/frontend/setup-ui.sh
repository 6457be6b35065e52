#!/usr/bin/env bash
# Build the web UI into the invokeai_web package, and install what its browser tests need.
# Called by scripts/setup.sh with the venv's python. Idempotent and quick when nothing changed:
#   * Python `playwright` (the driver only: it never downloads a browser here; tests use /usr/bin/chromium)
#   * Debian's chromium, when missing and running as root (skipped with a message otherwise)
#   * `npm ci` when package-lock.json changed, `npm run build` when a source is newer than the build
set -euo pipefail
cd "$(dirname "$0")"
PY="${1:-../../../.venv/bin/python}"
"$PY" -m pip --disable-pip-version-check -q install -r requirements-browser.txt

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup-ui: installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ||
      echo "setup-ui: could not install chromium; the browser tests will be skipped"
  else
    echo "setup-ui: chromium is not installed and this is not root: the browser tests will be skipped" \
      "(install it with 'apt-get install -y chromium')"
  fi
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "setup-ui: npm not found: the web UI is not built (invokeai serve will serve the API only)"
  exit 0
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
OUT=../src/invokeai_web/static/index.html
if [ ! -f "$OUT" ] || [ -n "$(find src index.html package.json package-lock.json vite.config.ts tsconfig.json -newer "$OUT" -print -quit)" ]; then
  npm run --silent build >/dev/null
  echo "setup-ui: web UI built into src/invokeai_web/static"
fi
