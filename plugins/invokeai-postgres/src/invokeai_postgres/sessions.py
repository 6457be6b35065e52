"""Sessions on PostgreSQL (`services.sessions = "postgres"`), persisted node by node.

The logic is the kernel's `SqlSessionStorage`, the same as the default SQLite store's: rows are
appended (one result row per node, graph appends for nodes added later), a session is never
rewritten, and results are group-committed within `session_commit_ms`. This module holds the tables
(the SQLite store's, in PostgreSQL's types; `rowid` gives insertion order and `instr` is defined for
the text query) and the constructor that opens the pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invokeai_core import SqlSessionStorage
from invokeai_postgres.db import PostgresDatabase, SqlConnection
from invokeai_postgres.settings import load_settings

if TYPE_CHECKING:
    from invokeai_core import InvokeAIConfig, NodeRegistry, ServiceRuntime
    from invokeai_postgres.settings import PostgresSettings


def _v1(conn: SqlConnection) -> None:
    conn.execute(
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            rowid BIGINT GENERATED ALWAYS AS IDENTITY,
            status TEXT NOT NULL,
            node_count INTEGER NOT NULL,
            node_types TEXT NOT NULL,
            canceled INTEGER NOT NULL DEFAULT 0,
            history_len INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            graph_nodes INTEGER NOT NULL DEFAULT -1,
            graph_edges INTEGER NOT NULL DEFAULT -1,
            graph_appends INTEGER NOT NULL DEFAULT -1
        )
        """
    )
    conn.execute("CREATE INDEX ix_sessions_created ON sessions (created_at DESC, rowid DESC)")
    conn.execute(
        """
        CREATE TABLE session_graphs (
            session_id TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
            graph TEXT NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE session_graph_appends (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('node', 'edge')),
            body TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE session_results (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            node_id TEXT NOT NULL,
            output TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE session_errors (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            node_id TEXT NOT NULL,
            error TEXT NOT NULL,
            PRIMARY KEY (session_id, node_id)
        )
        """
    )
    # SQLite's instr(), which the shared session SQL uses for the text query
    conn.execute(
        "CREATE OR REPLACE FUNCTION instr(haystack TEXT, needle TEXT) RETURNS INTEGER "
        "LANGUAGE SQL IMMUTABLE STRICT AS 'SELECT strpos(haystack, needle)'"
    )


MIGRATIONS = [_v1]


class PostgresSessionStorage(SqlSessionStorage):
    """Sessions in the `[plugins.postgres]` database; see the module docstring."""

    db: PostgresDatabase

    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        settings: PostgresSettings | None = None,
        db: PostgresDatabase | None = None,
        registry: NodeRegistry | None = None,
        runtime: ServiceRuntime | None = None,
        commit_ms: float | None = None,
    ) -> None:
        if db is None:
            db = PostgresDatabase.open(settings or load_settings(config))
        db.migrate("sessions", MIGRATIONS)
        if commit_ms is None:
            commit_ms = config.session_commit_ms if config is not None else 50.0
        super().__init__(
            db, registry=runtime.registry if runtime is not None else registry, commit_interval=commit_ms / 1000
        )
