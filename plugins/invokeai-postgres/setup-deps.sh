#!/usr/bin/env bash
# invokeai-postgres' dependencies: the pinned psycopg 3 and psycopg_pool (requirements.txt) into the
# given Python, and Debian's PostgreSQL server (`postgresql`, for initdb/postgres) when it is missing
# and this runs as root: the plugin's tests start their own cluster with it. A deployment uses its own
# server and needs only the Python packages. Called by scripts/setup.sh with the venv's python.
set -euo pipefail
PY="${1:-python3}"
"$PY" -m pip --disable-pip-version-check -q install -r "$(dirname "$0")/requirements.txt"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) ||
      echo "invokeai-postgres: could not install postgresql; its tests cannot run" >&2
  else
    echo "invokeai-postgres: PostgreSQL is not installed and this is not root: its tests cannot run" \
      "(apt-get install -y postgresql)" >&2
  fi
fi
