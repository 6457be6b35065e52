"""The workflow library on PostgreSQL (`services.workflows = "postgres"`), so every API server of a
deployment sees the same saved workflows.

One row per version in `workflow_versions` (primary key `(workflow_id, version)`), the graph and the
exposed inputs as JSON text, and `saved` from a sequence, which orders the listing (most recently
saved first). A save takes the next version under an advisory lock on the workflow id, so two
processes saving the same id at once get consecutive versions.
"""

from __future__ import annotations

import builtins
import json
from typing import TYPE_CHECKING, Any

from invokeai_core import (
    Page,
    Workflow,
    WorkflowIn,
    WorkflowNotFoundError,
    WorkflowStorageBase,
    WorkflowSummary,
    WorkflowVersion,
    check_workflow_id,
    utcnow,
)
from invokeai_postgres.db import PostgresDatabase, SqlConnection
from invokeai_postgres.settings import load_settings

if TYPE_CHECKING:
    from invokeai_core import InvokeAIConfig, NodeRegistry, ServiceRuntime
    from invokeai_postgres.settings import PostgresSettings


def _v1(conn: SqlConnection) -> None:
    conn.execute("CREATE SEQUENCE workflow_saves AS BIGINT")
    conn.execute(
        """
        CREATE TABLE workflow_versions (
            workflow_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            graph TEXT NOT NULL,
            inputs TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            saved BIGINT NOT NULL DEFAULT nextval('workflow_saves'),
            PRIMARY KEY (workflow_id, version)
        )
        """
    )
    conn.execute("CREATE INDEX ix_workflow_saved ON workflow_versions (saved)")


MIGRATIONS = [_v1]
_COLUMNS = "workflow_id, version, name, description, graph, inputs, created_at"


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _workflow(row: tuple[Any, ...]) -> Workflow:
    wid, version, name, description, graph, inputs, created = row
    return Workflow(
        id=wid,
        version=version,
        name=name,
        description=description,
        graph=json.loads(graph),
        inputs=json.loads(inputs),
        created_at=created,
    )


class PostgresWorkflowStorage(WorkflowStorageBase):
    """The library in the `[plugins.postgres]` database; see the module docstring."""

    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        settings: PostgresSettings | None = None,
        db: PostgresDatabase | None = None,
        registry: NodeRegistry | None = None,
        runtime: ServiceRuntime | None = None,
    ) -> None:
        self.db = db if db is not None else PostgresDatabase.open(settings or load_settings(config))
        self.db.migrate("workflows", MIGRATIONS)
        self.registry = runtime.registry if runtime is not None else registry

    def insert_version(self, workflow_id: str, workflow: WorkflowIn) -> Workflow:
        now = utcnow()
        inputs = [i.model_dump() for i in workflow.inputs]
        with self.db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('invokeai-workflow:' || ?))", (workflow_id,))
            version = 1 + int(
                conn.execute(
                    "SELECT coalesce(max(version), 0) FROM workflow_versions WHERE workflow_id = ?", (workflow_id,)
                ).fetchone()[0]
            )
            conn.execute(
                f"INSERT INTO workflow_versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    workflow_id,
                    version,
                    workflow.name,
                    workflow.description,
                    _dumps(workflow.graph),
                    _dumps(inputs),
                    now,
                ),
            )
        return Workflow(id=workflow_id, version=version, created_at=now, **workflow.model_dump())

    def get(self, workflow_id: str, version: int | None = None) -> Workflow:
        check_workflow_id(workflow_id)
        with self.db.read() as conn:
            if version is None:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM workflow_versions WHERE workflow_id = ? ORDER BY version DESC LIMIT 1",
                    (workflow_id,),
                ).fetchone()
            else:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM workflow_versions WHERE workflow_id = ? AND version = ?",
                    (workflow_id, version),
                ).fetchone()
        if row is None:
            raise WorkflowNotFoundError(workflow_id, version)
        return _workflow(row)

    def list(self, *, offset: int = 0, limit: int = 50, query: str | None = None) -> Page[WorkflowSummary]:
        offset, limit = max(0, offset), max(0, limit)
        where = ""
        args: builtins.list[Any] = []
        if query:
            where = " WHERE strpos(lower(v.workflow_id), lower(?)) > 0 OR strpos(lower(v.name), lower(?)) > 0"
            args = [query, query]
        latest = (
            "SELECT workflow_id, max(version) AS version, count(*) AS n, min(created_at) AS first "
            "FROM workflow_versions GROUP BY workflow_id"
        )
        base = (
            f"FROM workflow_versions v JOIN ({latest}) l ON l.workflow_id = v.workflow_id AND l.version = v.version"
            + where
        )
        with self.db.read() as conn:
            total = conn.execute(f"SELECT count(*) {base}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT v.workflow_id, v.version, v.name, v.description, v.inputs, v.created_at, l.n, l.first {base} "
                "ORDER BY v.saved DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        items = [
            WorkflowSummary(
                id=wid,
                name=name,
                description=description,
                version=version,
                versions=n,
                inputs=json.loads(inputs),
                created_at=first,
                updated_at=created,
            )
            for wid, version, name, description, inputs, created, n, first in rows
        ]
        return Page[WorkflowSummary](items=items, offset=offset, limit=limit, total=int(total))

    def versions(self, workflow_id: str) -> builtins.list[WorkflowVersion]:
        check_workflow_id(workflow_id)
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT version, name, created_at FROM workflow_versions WHERE workflow_id = ? ORDER BY version",
                (workflow_id,),
            ).fetchall()
        if not rows:
            raise WorkflowNotFoundError(workflow_id)
        return [WorkflowVersion(version=v, name=n, created_at=c) for v, n, c in rows]

    def delete(self, workflow_id: str) -> int:
        check_workflow_id(workflow_id)
        with self.db.transaction() as conn:
            n = conn.execute("DELETE FROM workflow_versions WHERE workflow_id = ?", (workflow_id,)).rowcount
        if not n:
            raise WorkflowNotFoundError(workflow_id)
        return int(n)
