"""Sessions in the SQLite database (`sessions = "sqlite"`, the default), persisted as they run.

The store's logic is `invokeai_core.services.sql_sessions` (shared with stores on other databases);
this module holds the SQLite tables, created and migrated in `MIGRATIONS`, and the constructor that
opens the database file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from invokeai_core.services.sql_sessions import COMMIT_BATCH, SqlSessionStorage
from invokeai_core.services.sqlite_db import SqliteDatabase

if TYPE_CHECKING:
    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.runtime import ServiceRuntime

__all__ = ["COMMIT_BATCH", "MIGRATIONS", "SqliteSessionStorage"]


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            graph TEXT NOT NULL,
            status TEXT NOT NULL,
            node_count INTEGER NOT NULL,
            node_types TEXT NOT NULL,
            canceled INTEGER NOT NULL DEFAULT 0,
            history_len INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX ix_sessions_created ON sessions (created_at)")
    conn.execute(
        """
        CREATE TABLE session_results (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            node_id TEXT NOT NULL,
            output TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        ) WITHOUT ROWID
        """
    )
    conn.execute(
        """
        CREATE TABLE session_errors (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            node_id TEXT NOT NULL,
            error TEXT NOT NULL,
            PRIMARY KEY (session_id, node_id)
        ) WITHOUT ROWID
        """
    )


def _v2(conn: sqlite3.Connection) -> None:
    """Nodes and edges added after a session was first saved are appended, not the graph rewritten."""
    conn.execute(
        """
        CREATE TABLE session_graph_appends (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('node', 'edge')),
            body TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        ) WITHOUT ROWID
        """
    )
    # How many nodes and edges (graph column plus appends) and appends the row holds; -1 for rows of
    # version 1, whose next save rewrites the graph and starts counting.
    for column in ("graph_nodes", "graph_edges", "graph_appends"):
        conn.execute(f"ALTER TABLE sessions ADD COLUMN {column} INTEGER NOT NULL DEFAULT -1")


def _v3(conn: sqlite3.Connection) -> None:
    """The graph moves out of the session's row into `session_graphs`: every node's completion updates
    the row (status, how many results), and SQLite rewrites a whole row on update, so a graph kept in
    it made each node cost as much as the graph (quadratic sessions). The row is now a small summary."""
    conn.execute(
        """
        CREATE TABLE session_graphs (
            session_id TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
            graph TEXT NOT NULL
        )
        """
    )
    conn.execute("INSERT INTO session_graphs (session_id, graph) SELECT id, graph FROM sessions")
    conn.execute("ALTER TABLE sessions DROP COLUMN graph")


MIGRATIONS = [_v1, _v2, _v3]


class SqliteSessionStorage(SqlSessionStorage):
    """Sessions in `<root>/invokeai.db`; see `invokeai_core.services.sql_sessions`."""

    db: SqliteDatabase

    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        path: str | Path | None = None,
        db: SqliteDatabase | None = None,
        registry: NodeRegistry | None = None,
        runtime: ServiceRuntime | None = None,
        commit_ms: float | None = None,
    ) -> None:
        if db is None:
            db = SqliteDatabase.open(path) if path is not None else SqliteDatabase.for_config(config)
        db.migrate("sessions", MIGRATIONS)
        if commit_ms is None:
            commit_ms = config.session_commit_ms if config is not None else 50.0
        super().__init__(
            db, registry=runtime.registry if runtime is not None else registry, commit_interval=commit_ms / 1000
        )
