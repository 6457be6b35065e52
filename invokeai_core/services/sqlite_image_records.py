"""Image records in the SQLite database (`image_records = "sqlite"`, the default).

The generating graph of a final image is stored once per distinct graph (`image_graphs`, keyed by a
digest of its JSON) and referenced from each record, so the final images of one long session do not
each store a copy of its graph (which grew the table as images x graph size).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invokeai_core.services.base import ImageRecord, ImageRecordStorageBase, Page
from invokeai_core.services.sqlite_db import SqliteDatabase, dumps

if TYPE_CHECKING:
    from invokeai_core.config import InvokeAIConfig


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE image_records (
            image_name TEXT PRIMARY KEY,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            mode TEXT NOT NULL,
            session_id TEXT,
            node_id TEXT,
            created_at TEXT NOT NULL,
            is_intermediate INTEGER NOT NULL,
            starred INTEGER NOT NULL DEFAULT 0,
            metadata TEXT,
            graph TEXT
        )
        """
    )
    # Listing is newest first: created_at, then insertion order (the rowid) for equal times.
    conn.execute("CREATE INDEX ix_image_records_created ON image_records (created_at)")
    conn.execute("CREATE INDEX ix_image_records_session ON image_records (session_id, created_at)")


def _digest(graph_text: str) -> str:
    return hashlib.blake2b(graph_text.encode(), digest_size=20).hexdigest()


def _v2(conn: sqlite3.Connection) -> None:
    """Graphs move to `image_graphs`, one row per distinct graph, referenced by digest."""
    conn.execute("CREATE TABLE image_graphs (digest TEXT PRIMARY KEY, graph TEXT NOT NULL)")
    conn.execute("ALTER TABLE image_records ADD COLUMN graph_digest TEXT")
    rows = conn.execute("SELECT image_name, graph FROM image_records WHERE graph IS NOT NULL").fetchall()
    for name, text in rows:
        digest = _digest(text)
        conn.execute("INSERT OR IGNORE INTO image_graphs (digest, graph) VALUES (?, ?)", (digest, text))
        conn.execute("UPDATE image_records SET graph_digest = ? WHERE image_name = ?", (digest, name))
    conn.execute("ALTER TABLE image_records DROP COLUMN graph")
    conn.execute("CREATE INDEX ix_image_records_graph ON image_records (graph_digest)")


MIGRATIONS = [_v1, _v2]
_FIELDS = "image_name, width, height, mode, session_id, node_id, created_at, is_intermediate, starred, metadata"
_COLUMNS = _FIELDS + ", graph_digest"
#: A record's columns with its graph joined in.
_SELECT = (
    "SELECT "
    + ", ".join(f"r.{c.strip()}" for c in _FIELDS.split(","))
    + ", g.graph FROM image_records r LEFT JOIN image_graphs g ON g.digest = r.graph_digest"
)


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


def _drop_unused_graph(conn: sqlite3.Connection, digest: str) -> None:
    conn.execute(
        "DELETE FROM image_graphs WHERE digest = ? AND NOT EXISTS (SELECT 1 FROM image_records WHERE graph_digest = ?)",
        (digest, digest),
    )


class SqliteImageRecordStorage(ImageRecordStorageBase):
    """Records in the `image_records` table of `<root>/invokeai.db`."""

    def __init__(
        self, config: InvokeAIConfig | None = None, *, path: str | Path | None = None, db: SqliteDatabase | None = None
    ) -> None:
        if db is None:
            db = SqliteDatabase.open(path) if path is not None else SqliteDatabase.for_config(config)
        #: The database (shared by the stores of this process; `db=` gives one of its own).
        self.db = db
        self.db.migrate("image_records", MIGRATIONS)

    def save(self, record: ImageRecord) -> None:
        graph_text = dumps(record.graph) if record.graph is not None else None
        digest = _digest(graph_text) if graph_text is not None else None
        with self.db.transaction() as conn:
            if digest is not None:
                conn.execute("INSERT OR IGNORE INTO image_graphs (digest, graph) VALUES (?, ?)", (digest, graph_text))
            previous = conn.execute(
                "SELECT graph_digest FROM image_records WHERE image_name = ?", (record.image_name,)
            ).fetchone()
            # REPLACE deletes and re-inserts: a re-saved record counts as the newest insertion.
            conn.execute(
                f"INSERT OR REPLACE INTO image_records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.image_name,
                    record.width,
                    record.height,
                    record.mode,
                    record.session_id,
                    record.node_id,
                    record.created_at,
                    int(record.is_intermediate),
                    int(record.starred),
                    dumps(record.metadata) if record.metadata is not None else None,
                    digest,
                ),
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
                conn.execute("UPDATE image_records SET starred = ? WHERE image_name = ?", (int(starred), image_name))
            if is_intermediate is not None:
                conn.execute(
                    "UPDATE image_records SET is_intermediate = ? WHERE image_name = ?",
                    (int(is_intermediate), image_name),
                )
            row = conn.execute(f"{_SELECT} WHERE r.image_name = ?", (image_name,)).fetchone()
        if row is None:
            raise KeyError(f"image '{image_name}' does not exist")
        return _record(row)

    def delete(self, image_name: str) -> None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT graph_digest FROM image_records WHERE image_name = ?", (image_name,)).fetchone()
            conn.execute("DELETE FROM image_records WHERE image_name = ?", (image_name,))
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
        if session_id is not None:
            where.append("session_id = ?")
            args.append(session_id)
        if is_intermediate is not None:
            where.append("is_intermediate = ?")
            args.append(int(is_intermediate))
        if starred is not None:
            where.append("starred = ?")
            args.append(int(starred))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        joined = f" WHERE {' AND '.join('r.' + w for w in where)}" if where else ""
        with self.db.read() as conn:
            total = conn.execute(f"SELECT count(*) FROM image_records{clause}", args).fetchone()[0]
            rows = conn.execute(
                f"{_SELECT}{joined} ORDER BY r.created_at DESC, r.rowid DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return Page[ImageRecord](items=[_record(r) for r in rows], offset=offset, limit=limit, total=total)

    def names(self) -> set[str]:
        """Every recorded image name (for collecting orphaned files)."""
        with self.db.read() as conn:
            return {r[0] for r in conn.execute("SELECT image_name FROM image_records")}
