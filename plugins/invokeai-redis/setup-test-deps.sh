#!/usr/bin/env bash
# What the plugin's tests need besides Python packages: a real Redis server on 127.0.0.1, Debian's
# redis-server, installed when missing and running as root (otherwise a message; the tests then skip,
# saying why). redis-py itself is pinned in requirements/dev.txt. Called by `scripts/setup.sh --tests`.
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "invokeai-redis: installing Debian's redis-server for the tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) ||
      echo "invokeai-redis: could not install redis-server; its tests will be skipped"
  else
    echo "invokeai-redis: redis-server is not installed and this is not root: its tests will be skipped" \
      "(apt-get install -y redis-server)"
  fi
fi
