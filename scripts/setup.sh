#!/usr/bin/env bash
# Set up this repository in .venv: what the demo and a user need, and with --tests what the tests need.
# README.md ("What set-up installs") lists every step and why. One line per step, with its time.
#
#   scripts/setup.sh           the pinned tools (requirements/dev.txt), the kernel and every plugin under
#                              plugins/ (editable; invokeai-diffusers brings torch, CPU build), the web UI build
#   scripts/setup.sh --tests   also the test node packs under tests/plugins/, the browser-test driver
#                              (playwright) and, as root, Debian's chromium and redis-server
#
# A step is skipped when the files it installs from are unchanged since it last succeeded (stamps in
# .venv/.setup/), so a re-run with nothing to do takes seconds. SETUP_FORCE=1 redoes every step.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WITH_TESTS=0
for arg in "$@"; do
  case "$arg" in
    --tests) WITH_TESTS=1 ;;
    *) echo "usage: scripts/setup.sh [--tests]" >&2; exit 2 ;;
  esac
done
STAMPS=.venv/.setup
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
START=$EPOCHREALTIME

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }

# step NAME DESCRIPTION [INPUT_FILE...] -- COMMAND...: run COMMAND unless it already succeeded with
# these input files and this command line (a stamp per step); one line either way.
step() {
  local name=$1 what=$2 t0=$EPOCHREALTIME
  shift 2
  local inputs=()
  while [ "$1" != "--" ]; do
    [ -f "$1" ] && inputs+=("$1")
    shift
  done
  shift
  local key
  key=$({ printf '%s\n' "$*"; cat "${inputs[@]}" /dev/null; } | sha256sum | cut -d' ' -f1)
  if [ -z "${SETUP_FORCE:-}" ] && [ "$(cat "$STAMPS/$name" 2>/dev/null)" = "$key" ]; then
    echo "setup: $what: up to date"
    return
  fi
  printf 'setup: %s ... ' "$what" # completed on the same line when the step is done
  "$@"
  mkdir -p "$STAMPS"
  echo "$key" >"$STAMPS/$name"
  echo "done ($(elapsed "$t0"))"
}

if [ ! -x .venv/bin/python ]; then
  t0=$EPOCHREALTIME
  "$PY" -m venv .venv
  echo "setup: virtual environment .venv: created ($(elapsed "$t0"))"
fi
step tools "pinned tools and kernel dependencies (requirements/dev.txt)" requirements/dev.txt -- \
  "${PIP[@]}" install -r requirements/dev.txt
step kernel "the kernel invokeai-core (editable)" pyproject.toml -- "${PIP[@]}" install --no-deps -e .
for plugin in plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] || continue
  name=$(basename "$plugin")
  if [ -x "$plugin/setup-deps.sh" ]; then
    step "$name-deps" "$name's pinned dependencies ($plugin""setup-deps.sh)" \
      "$plugin/setup-deps.sh" "$plugin/requirements.txt" "$plugin/requirements-nodeps.txt" -- \
      "$plugin/setup-deps.sh" "$PWD/.venv/bin/python"
  fi
  step "$name" "plugin $name (editable)" "$plugin/pyproject.toml" -- "${PIP[@]}" install -e "$plugin"
done
# The web UI: npm ci when package-lock.json changed, a build when a source is newer than it.
if [ -x plugins/invokeai-web/frontend/setup-ui.sh ]; then
  t0=$EPOCHREALTIME
  plugins/invokeai-web/frontend/setup-ui.sh
  echo "setup: web UI (plugins/invokeai-web/frontend): checked ($(elapsed "$t0"))"
fi
if [ "$WITH_TESTS" = 1 ]; then
  # Tiny plugin distributions the kernel tests install for real (entry points and all); never for users.
  for plugin in tests/plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] || continue
    name=$(basename "$plugin")
    step "test-$name" "test pack $name (editable)" "$plugin/pyproject.toml" -- \
      "${PIP[@]}" install --no-deps -e "$plugin"
  done
  for plugin in plugins/*/; do
    name=$(basename "$plugin")
    if [ -f "$plugin/requirements-test.txt" ]; then
      step "$name-test-reqs" "$name's test packages ($plugin""requirements-test.txt)" "$plugin/requirements-test.txt" -- \
        "${PIP[@]}" install -r "$plugin/requirements-test.txt"
    fi
    if [ -x "$plugin/setup-test-deps.sh" ]; then
      t0=$EPOCHREALTIME
      "$plugin/setup-test-deps.sh"
      echo "setup: $name's test tools ($plugin""setup-test-deps.sh): checked ($(elapsed "$t0"))"
    fi
  done
fi
echo "setup: ok (.venv ready$([ "$WITH_TESTS" = 1 ] && echo ", with the test tools"); $(elapsed "$START"))"
