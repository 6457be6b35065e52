#!/usr/bin/env bash
# Install this plugin's heavy, pinned dependencies with the given Python (called by scripts/setup.sh):
# requirements.txt pins torch==2.13.0 in the same command as everything that depends on it, so pip
# never resolves another (multi-GB CUDA) torch; requirements-nodeps.txt (spandrel) goes in with --no-deps.
set -euo pipefail
PY="${1:-python3}"
cd "$(dirname "$0")"
"$PY" -m pip --disable-pip-version-check -q install -r requirements.txt
# spandrel (upscalers) without its declared torchvision: see requirements-nodeps.txt
"$PY" -m pip --disable-pip-version-check -q install --no-deps -r requirements-nodeps.txt
