"""Fixtures: one Temporal dev server and one PostgreSQL cluster per test session (real processes on
127.0.0.1, see servers.py), a fresh database and fresh Temporal task queues per test, and a root
whose invokeai.toml selects `services.queue = "temporal"` with every store on PostgreSQL.

The tests run as if only the kernel, invokeai-postgres, this plugin and the kernel's test node pack
were installed (`INVOKEAI_LOAD_PLUGINS`), plus the web, Redis and S3 plugins where a test needs them.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from deploy_helpers import PgServer, TemporalServer, write_config

PLUGINS = "postgres,temporal,testpack"


@pytest.fixture(autouse=True)
def _only_these_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKEAI_LOAD_PLUGINS", PLUGINS)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("INVOKEAI_STRICT_PLUGINS", raising=False)
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    server = TemporalServer(tmp_path_factory.mktemp("temporal"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A fresh, empty database for this test."""
    return pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def root(tmp_path: Path, pg_dsn: str, temporal: TemporalServer) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    write_config(folder, pg_dsn, temporal.address)
    return folder
