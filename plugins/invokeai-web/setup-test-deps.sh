#!/usr/bin/env bash
# What the browser tests (tests/test_ui_browser.py) need besides the Python `playwright` driver
# (requirements-test.txt; it never downloads a browser): Debian's chromium, installed when missing and
# running as root (otherwise a message; the browser tests then skip, saying why).
# Called by `scripts/setup.sh --tests`.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "invokeai-web: installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ||
      echo "invokeai-web: could not install chromium; the browser tests will be skipped"
  else
    echo "invokeai-web: chromium is not installed and this is not root: the browser tests will be skipped" \
      "(apt-get install -y chromium)"
  fi
fi
