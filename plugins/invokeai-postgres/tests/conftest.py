"""Fixtures: a real PostgreSQL server on 127.0.0.1 (one cluster per test session, see pg_server.py),
a fresh database per test, and the kernel's fixtures configured with every store on it.

The tests run as if only the kernel, this plugin and the kernel's test node pack were installed
(`INVOKEAI_LOAD_PLUGINS=postgres,testpack`).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pg_server import PgServer

if TYPE_CHECKING:
    from invokeai_core import InvokeAIConfig

STORES = ("sessions", "image_records", "queue", "workflows")


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKEAI_LOAD_PLUGINS", "postgres,testpack")  # testpack: the test nodes
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


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A fresh, empty database for this test."""
    return pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


def pg_settings(dsn: str, **extra: Any) -> Any:
    from invokeai_postgres.settings import PostgresSettings

    return PostgresSettings.model_validate({"dsn": dsn, **extra})


def write_config(root: Path, dsn: str, *, services: dict[str, str] | None = None, **extra: Any) -> Path:
    services = services if services is not None else dict.fromkeys(STORES, "postgres")
    lines = ["[services]", *(f"{k} = {json.dumps(v)}" for k, v in services.items())]
    lines += [
        "",
        "[plugins.postgres]",
        f"dsn = {json.dumps(dsn)}",
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
    ]
    path = root / "invokeai.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def invokeai_config(invokeai_root: Path, pg_dsn: str) -> InvokeAIConfig:
    """The kernel's fixture, with every store on the test's database, read from `<root>/invokeai.toml`."""
    from invokeai_core import load_config

    write_config(invokeai_root, pg_dsn)
    return load_config(root=invokeai_root, environ={})
