"""The `[plugins.postgres]` settings (pydantic only; never imports psycopg).

[plugins.postgres]
dsn = "postgresql://invokeai@127.0.0.1:5432/invokeai"   # INVOKEAI_PLUGINS__POSTGRES__DSN
schema = "invokeai"        # the tables live in this schema (created when missing)
pool_size = 8              # connections per process, at most
connect_timeout = 5        # seconds, for a connection and for waiting on a free one
worker_lease = 10          # seconds without a heartbeat after which a queue worker counts as dead
outage_wait = 60           # seconds a worker retries recording an item's outcome while the server is away
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PostgresSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dsn: str = Field(
        default="postgresql://127.0.0.1:5432/invokeai",
        pattern=r"^postgres(ql)?://",
        description="libpq connection URI; a password goes in it or in PGPASSWORD/.pgpass",
    )
    db_schema: str = Field(
        default="invokeai",
        alias="schema",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="The schema holding the tables",
    )
    pool_size: int = Field(default=8, ge=1, le=200)
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    worker_lease: float = Field(default=10.0, ge=1, le=3600)
    outage_wait: float = Field(default=60.0, ge=0, le=3600)


def load_settings(config: Any) -> PostgresSettings:
    """Settings from the configuration, with errors naming the key."""
    return config.plugin_settings_as("postgres", PostgresSettings) if config is not None else PostgresSettings()
