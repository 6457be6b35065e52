"""Image records on PostgreSQL (`services.image_records = "postgres"`).

As in the SQLite store, a final image's generating graph is stored once per distinct graph
(`image_graphs`, by digest) and referenced from each record. Listing is newest first: by creation
time, then by insertion (`rowid`, renewed when a record is saved again).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from invokeai_core import ImageRecord, ImageRecordStorageBase, Page
from invokeai_postgres.db import PostgresDatabase, SqlConnection
from invokeai_postgres.settings import load_settings

if TYPE_CHECKING:
    from invokeai_core import InvokeAIConfig
    from invokeai_postgres.settings import PostgresSettings


def _v1(conn: SqlConnection) -> None:
    conn.execute("CREATE TABLE image_graphs (digest TEXT PRIMARY KEY, graph TEXT NOT NULL)")
    conn.execute("CREATE SEQUENCE image_records_rowid")
    conn.execute(
        """
        CREATE TABLE image_records (
            image_name TEXT PRIMARY KEY,
            rowid BIGINT NOT NULL DEFAULT nextval('image_records_rowid'),
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            mode TEXT NOT NULL,
            session_id TEXT,
            node_id TEXT,
            created_at TEXT NOT NULL,
            is_intermediate BOOLEAN NOT NULL,
            starred BOOLEAN NOT NULL DEFAULT FALSE,
            metadata TEXT,
            graph_digest TEXT
        )
        """
    )
    conn.execute("CREATE INDEX ix_image_records_created ON image_records (created_at DESC, rowid DESC)")
    conn.execute("CREATE INDEX ix_image_records_session ON image_records (session_id, created_at)")
    conn.execute("CREATE INDEX ix_image_records_graph ON image_records (graph_digest)")


MIGRATIONS = [_v1]
_FIELDS: tuple[str, ...] = ("image_name", "width", "height", "mode", "session_id", "node_id", "created_at")
_FIELDS += ("is_intermediate", "starred", "metadata")
_SELECT = (
    "SELECT "
    + ", ".join(f"r.{c}" for c in _FIELDS)
    + ", g.graph FROM image_records r LEFT JOIN image_graphs g ON g.digest = r.graph_digest"
)


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _digest(graph_text: str) -> str:
    return hashlib.blake2b(graph_text.encode(), digest_size=20).hexdigest()


def _record(row: tuple[Any, ...]) -> ImageRecord:
    name, width, height, mode, session_id, node_id, created_at, intermediate, starred, metadata, graph = row
    return ImageRecord(
        image_name=name,
        width=width,
        height=height,
        mode=mode,
        session_id=session_id,
        node_id=node_id,
        created_at=created_at,
        is_intermediate=bool(intermediate),
        starred=bool(starred),
        metadata=json.loads(metadata) if metadata is not None else None,
        graph=json.loads(graph) if graph is not None else None,
    )


def _drop_unused_graph(conn: SqlConnection, digest: str) -> None:
    conn.execute(
        "DELETE FROM image_graphs WHERE digest = ? AND NOT EXISTS (SELECT 1 FROM image_records WHERE graph_digest = ?)",
        (digest, digest),
    )


class PostgresImageRecordStorage(ImageRecordStorageBase):
    """Records in the `image_records` table of the `[plugins.postgres]` database."""

    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        settings: PostgresSettings | None = None,
        db: PostgresDatabase | None = None,
    ) -> None:
        self.db = db if db is not None else PostgresDatabase.open(settings or load_settings(config))
        self.db.migrate("image_records", MIGRATIONS)

    def save(self, record: ImageRecord) -> None:
        graph_text = dumps(record.graph) if record.graph is not None else None
        digest = _digest(graph_text) if graph_text is not None else None
        values = (
            record.image_name,
            record.width,
            record.height,
            record.mode,
            record.session_id,
            record.node_id,
            record.created_at,
            record.is_intermediate,
            record.starred,
            dumps(record.metadata) if record.metadata is not None else None,
            digest,
        )
        with self.db.transaction() as conn:
            if digest is not None:
                conn.execute(
                    "INSERT INTO image_graphs (digest, graph) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING",
                    (digest, graph_text),
                )
            previous = conn.execute(
                "SELECT graph_digest FROM image_records WHERE image_name = ? FOR UPDATE", (record.image_name,)
            ).fetchone()
            # a re-saved record replaces the old one and counts as the newest insertion (a new rowid)
            conn.execute(
                f"INSERT INTO image_records ({', '.join(_FIELDS)}, graph_digest) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_name) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in (*_FIELDS[1:], "graph_digest"))
                + ", rowid = nextval('image_records_rowid')",
                values,
            )
            if previous is not None and previous[0] not in (None, digest):
                _drop_unused_graph(conn, previous[0])

    def get(self, image_name: str) -> ImageRecord:
        with self.db.read() as conn:
            row = conn.execute(f"{_SELECT} WHERE r.image_name = ?", (image_name,)).fetchone()
        if row is None:
            raise KeyError(f"image '{image_name}' does not exist")
        return _record(row)

    def update(
        self, image_name: str, *, starred: bool | None = None, is_intermediate: bool | None = None
    ) -> ImageRecord:
        with self.db.transaction() as conn:
            if starred is not None:
                conn.execute("UPDATE image_records SET starred = ? WHERE image_name = ?", (starred, image_name))
            if is_intermediate is not None:
                conn.execute(
                    "UPDATE image_records SET is_intermediate = ? WHERE image_name = ?", (is_intermediate, image_name)
                )
            row = conn.execute(f"{_SELECT} WHERE r.image_name = ?", (image_name,)).fetchone()
        if row is None:
            raise KeyError(f"image '{image_name}' does not exist")
        return _record(row)

    def delete(self, image_name: str) -> None:
        with self.db.transaction() as conn:
            row = conn.execute(
                "DELETE FROM image_records WHERE image_name = ? RETURNING graph_digest", (image_name,)
            ).fetchone()
            if row is not None and row[0] is not None:
                _drop_unused_graph(conn, row[0])

    def list(
        self,
        *,
        offset: int = 0,
        limit: int = 50,
        session_id: str | None = None,
        is_intermediate: bool | None = None,
        starred: bool | None = None,
    ) -> Page[ImageRecord]:
        offset, limit = max(0, offset), max(0, limit)
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("session_id", session_id), ("is_intermediate", is_intermediate), ("starred", starred)):
            if value is not None:
                where.append(f"r.{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self.db.read() as conn:
            total = conn.execute(f"SELECT count(*) FROM image_records r{clause}", args).fetchone()[0]
            rows = conn.execute(
                f"{_SELECT}{clause} ORDER BY r.created_at DESC, r.rowid DESC LIMIT ? OFFSET ?", [*args, limit, offset]
            ).fetchall()
        return Page[ImageRecord](items=[_record(r) for r in rows], offset=offset, limit=limit, total=total)

    def names(self) -> set[str]:
        """Every recorded image name (for collecting orphaned files)."""
        with self.db.read() as conn:
            return {r[0] for r in conn.execute("SELECT image_name FROM image_records")}
