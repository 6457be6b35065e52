"""The session queue in the SQLite database (`queue = "sqlite"`, the default).

Items live in `queue_items` (the session to run, its status, priority, errors and times) with each
item's graph JSON apart in `queue_graphs` (a status change never rewrites the graph); paused queues in
`queue_state`. Taking the next item is one `UPDATE ... RETURNING` on the
`(status, priority DESC, item_id)` index, so it is atomic across threads and processes: no item is
handed out twice. Item ids come from `AUTOINCREMENT` and are never reused, so cursors stay valid
after items are pruned. Every change is one transaction: a batch is enqueued whole or not at all,
and a refused operation (unknown id, full queue) leaves the queue as it was.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invokeai_core.crashpoints import crash_point
from invokeai_core.services.base import (
    FINISHED,
    QUEUE_STATUSES,
    BatchNotFoundError,
    ExpandedItem,
    MoveTo,
    QueueError,
    QueueItem,
    QueueItemNotFoundError,
    QueueItemNotPendingError,
    QueueStatus,
    QueueStatusCounts,
    SessionQueueBase,
    check_item_ids,
    check_move,
    check_queue_id,
    prepend_priority,
    status_update_sql,
    utcnow,
)
from invokeai_core.services.sqlite_db import SqliteDatabase, dumps

if TYPE_CHECKING:
    from invokeai_core.batch import Batch
    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.runtime import ServiceRuntime


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE queue_items (
            item_id INTEGER PRIMARY KEY AUTOINCREMENT,
            queue_id TEXT NOT NULL,
            batch_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'in_progress', 'completed', 'failed', 'canceled')),
            priority INTEGER NOT NULL DEFAULT 0,
            field_values TEXT NOT NULL DEFAULT '[]',
            graph TEXT NOT NULL,
            error_type TEXT,
            error_message TEXT,
            error_traceback TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            completed_at TEXT
        )
        """
    )
    conn.execute("CREATE INDEX ix_queue_next ON queue_items (status, priority DESC, item_id)")
    conn.execute("CREATE INDEX ix_queue_order ON queue_items (queue_id, priority DESC, item_id)")
    conn.execute("CREATE INDEX ix_queue_status ON queue_items (queue_id, status)")
    conn.execute("CREATE INDEX ix_queue_batch ON queue_items (queue_id, batch_id)")
    conn.execute(
        "CREATE TABLE queue_state (queue_id TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
    )


def _v2(conn: sqlite3.Connection) -> None:
    """Each item's graph moves out of its row into `queue_graphs`: SQLite rewrites a whole row on
    update, so every status change (taken, finished, canceled) rewrote the graph with it, and a queue
    of large graphs paid their size for every change. The row keeps what changes."""
    conn.execute(
        """
        CREATE TABLE queue_graphs (
            item_id INTEGER PRIMARY KEY REFERENCES queue_items (item_id) ON DELETE CASCADE,
            graph TEXT NOT NULL
        )
        """
    )
    conn.execute("INSERT INTO queue_graphs (item_id, graph) SELECT item_id, graph FROM queue_items")
    conn.execute("ALTER TABLE queue_items DROP COLUMN graph")


def _v3(conn: sqlite3.Connection) -> None:
    """A `position` within a priority, so pending items can be reordered (`move_item`): the queue
    order becomes `priority DESC, position, item_id`. Existing items keep their order (position =
    item id); new items get their item id, which is past every other position (`move_item` keeps the
    item sequence ahead of every position)."""
    conn.execute("ALTER TABLE queue_items ADD COLUMN position INTEGER NOT NULL DEFAULT 0")
    conn.execute("UPDATE queue_items SET position = item_id")
    conn.execute("DROP INDEX ix_queue_next")
    conn.execute("DROP INDEX ix_queue_order")
    conn.execute("CREATE INDEX ix_queue_next ON queue_items (status, priority DESC, position, item_id)")
    conn.execute("CREATE INDEX ix_queue_order ON queue_items (queue_id, priority DESC, position, item_id)")


MIGRATIONS = [_v1, _v2, _v3]

_FIELDS = (
    "item_id",
    "queue_id",
    "batch_id",
    "session_id",
    "status",
    "priority",
    "field_values",
    "graph",
    "error_type",
    "error_message",
    "error_traceback",
    "created_at",
    "started_at",
    "completed_at",
)
#: An item's columns, its graph joined from `queue_graphs`.
_SELECT = (
    "SELECT "
    + ", ".join("g.graph" if f == "graph" else f"q.{f}" for f in _FIELDS)
    + " FROM queue_items q JOIN queue_graphs g ON g.item_id = q.item_id"
)
_CHUNK = 500  # ids per `IN (...)`, well under SQLite's variable limit


def _item(row: Sequence[Any]) -> QueueItem:
    data = dict(zip(_FIELDS, row, strict=True))
    data["field_values"] = json.loads(data["field_values"])
    data["graph"] = json.loads(data["graph"])
    return QueueItem.model_validate(data)


def _load(conn: sqlite3.Connection, ids: Iterable[int]) -> list[QueueItem]:
    """The items with these ids (those that exist), by id."""
    items: list[QueueItem] = []
    for chunk in _chunks(list(ids)):
        rows = conn.execute(f"{_SELECT} WHERE q.item_id IN ({_marks(len(chunk))})", chunk).fetchall()
        items += [_item(r) for r in rows]
    return sorted(items, key=lambda i: i.item_id)


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class SqliteSessionQueue(SessionQueueBase):
    """The queue in `<root>/invokeai.db`; see the module docstring."""

    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        path: str | Path | None = None,
        db: SqliteDatabase | None = None,
        max_size: int | None = None,
        registry: NodeRegistry | None = None,
        runtime: ServiceRuntime | None = None,
    ) -> None:
        if db is None:
            db = SqliteDatabase.open(path) if path is not None else SqliteDatabase.for_config(config)
        #: The database (shared by the stores of this process; `db=` gives one of its own).
        self.db = db
        self.db.migrate("queue", MIGRATIONS)
        self.max_size = max_size if max_size is not None else (config.max_queue_size if config is not None else 10000)
        #: The node registry batches are parsed against, and the bus status changes go to.
        self.registry = runtime.registry if runtime is not None else registry
        self.events = runtime.events if runtime is not None else None

    # -- enqueue ----------------------------------------------------------------------------------
    def insert_batch(
        self, queue_id: str, batch: Batch, items: list[ExpandedItem], *, prepend: bool
    ) -> tuple[int, list[int]]:
        now = utcnow()
        rows = [(queue_id, batch.batch_id, i.session_id, dumps(i.field_values), now) for i in items]
        graphs = [dumps(i.graph) for i in items]
        with self.db.transaction() as conn:
            pending = conn.execute(
                "SELECT count(*) FROM queue_items WHERE queue_id = ? AND status = 'pending'", (queue_id,)
            ).fetchone()[0]
            self.check_room(queue_id, int(pending), len(rows))
            priority = batch.priority
            if prepend:
                top = conn.execute(
                    "SELECT max(priority) FROM queue_items WHERE queue_id = ? AND status = 'pending'", (queue_id,)
                ).fetchone()[0]
                priority = prepend_priority(top, priority)
            last = conn.execute("SELECT coalesce(max(item_id), 0) FROM queue_items").fetchone()[0]
            seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'queue_items'").fetchone()
            first = max(int(last), int(seq[0]) if seq else 0) + 1
            ids = list(range(first, first + len(rows)))
            conn.executemany(
                "INSERT INTO queue_items (item_id, queue_id, batch_id, session_id, priority, field_values, "
                "created_at, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(i, q, b, s, priority, fv, c, i) for i, (q, b, s, fv, c) in zip(ids, rows, strict=True)],
            )
            conn.executemany(
                "INSERT INTO queue_graphs (item_id, graph) VALUES (?, ?)", list(zip(ids, graphs, strict=True))
            )
            crash_point("queue.enqueue")
        return priority, ids

    # -- taking and finishing items ---------------------------------------------------------------
    def dequeue(self) -> QueueItem | None:
        with self.db.transaction() as conn:
            rows = conn.execute(
                """
                UPDATE queue_items SET status = 'in_progress', started_at = ?
                WHERE item_id = (
                    SELECT item_id FROM queue_items
                    WHERE status = 'pending'
                      AND queue_id NOT IN (SELECT queue_id FROM queue_state WHERE paused = 1)
                    ORDER BY priority DESC, position ASC, item_id ASC LIMIT 1)
                RETURNING item_id
                """,
                (utcnow(),),
            ).fetchall()
            if not rows:
                return None
            item = _load(conn, [rows[0][0]])[0]
        self._emit_status([item])
        return item

    def get_item(self, item_id: int) -> QueueItem:
        with self.db.read() as conn:
            row = conn.execute(f"{_SELECT} WHERE q.item_id = ?", (item_id,)).fetchone()
        if row is None:
            raise QueueItemNotFoundError([item_id])
        return _item(row)

    def get_status(self, item_id: int) -> QueueStatus:
        with self.db.read() as conn:
            row = conn.execute("SELECT status FROM queue_items WHERE item_id = ?", (item_id,)).fetchone()
        if row is None:
            raise QueueItemNotFoundError([item_id])
        return row[0]

    def set_status(
        self,
        item_id: int,
        status: QueueStatus,
        *,
        error_type: str | None = None,
        error_message: str | None = None,
        error_traceback: str | None = None,
        expected: QueueStatus | None = None,
    ) -> QueueItem:
        sql, args = status_update_sql(
            item_id,
            status,
            error_type=error_type,
            error_message=error_message,
            error_traceback=error_traceback,
            expected=expected,
        )
        with self.db.transaction() as conn:
            changed = conn.execute(sql, args).rowcount
            found = _load(conn, [item_id])
            if not found:
                raise QueueItemNotFoundError([item_id])
            item = found[0]
            if not changed:
                return item
        self._emit_status([item])
        return item

    def _statuses(self, conn: sqlite3.Connection, ids: list[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            for item_id, status in conn.execute(
                f"SELECT item_id, status FROM queue_items WHERE item_id IN ({_marks(len(chunk))})", chunk
            ):
                found[item_id] = status
        missing = [i for i in ids if i not in found]
        if missing:
            raise QueueItemNotFoundError(missing)
        return found

    def _update_returning(
        self, conn: sqlite3.Connection, sql: str, ids: list[int], args: Sequence[Any] = ()
    ) -> list[QueueItem]:
        """Run `sql` (with `{ids}` for an id list) over `ids` in chunks; the changed items by id order."""
        changed: list[int] = []
        for chunk in _chunks(ids):
            rows = conn.execute(sql.format(ids=_marks(len(chunk))) + " RETURNING item_id", [*args, *chunk])
            changed += [r[0] for r in rows.fetchall()]
        return _load(conn, changed)

    # -- cancel, retry ----------------------------------------------------------------------------
    def cancel_items(self, item_ids: list[int]) -> list[int]:
        ids = check_item_ids(item_ids)
        with self.db.transaction() as conn:
            statuses = self._statuses(conn, ids)
            targets = [i for i in dict.fromkeys(ids) if statuses[i] not in FINISHED]
            changed = self._update_returning(
                conn,
                "UPDATE queue_items SET status = 'canceled', completed_at = ? "
                "WHERE item_id IN ({ids}) AND status IN ('pending', 'in_progress')",
                targets,
                [utcnow()],
            )
        self._emit_status(changed)
        done = {i.item_id for i in changed}
        return [i for i in targets if i in done]

    def cancel_batch(self, queue_id: str, batch_ids: list[str]) -> list[int]:
        check_queue_id(queue_id)
        if isinstance(batch_ids, str) or not all(isinstance(b, str) for b in batch_ids):
            raise QueueError("batch ids must be a list of strings")
        wanted = list(dict.fromkeys(batch_ids))
        with self.db.transaction() as conn:
            known: set[str] = set()
            for chunk in _chunks(wanted):
                known.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT DISTINCT batch_id FROM queue_items WHERE queue_id = ? AND batch_id IN "
                        f"({_marks(len(chunk))})",
                        [queue_id, *chunk],
                    )
                )
            unknown = [b for b in wanted if b not in known]
            if unknown:
                raise BatchNotFoundError(queue_id, unknown)
            ids: list[int] = []
            now = utcnow()
            for chunk in _chunks(wanted):
                rows = conn.execute(
                    f"UPDATE queue_items SET status = 'canceled', completed_at = ? WHERE queue_id = ? AND batch_id IN "
                    f"({_marks(len(chunk))}) AND status IN ('pending', 'in_progress') RETURNING item_id",
                    [now, queue_id, *chunk],
                ).fetchall()
                ids += [r[0] for r in rows]
            changed = _load(conn, ids)
        self._emit_status(changed)
        return [i.item_id for i in changed]

    def cancel_all_except_current(self, queue_id: str) -> list[int]:
        check_queue_id(queue_id)
        with self.db.transaction() as conn:
            rows = conn.execute(
                "UPDATE queue_items SET status = 'canceled', completed_at = ? "
                "WHERE queue_id = ? AND status = 'pending' RETURNING item_id",
                (utcnow(), queue_id),
            ).fetchall()
            changed = _load(conn, [r[0] for r in rows])
        self._emit_status(changed)
        return [i.item_id for i in changed]

    def retry_items(self, item_ids: list[int]) -> list[int]:
        ids = check_item_ids(item_ids)
        now = utcnow()
        new_items: list[QueueItem] = []
        with self.db.transaction() as conn:
            statuses = self._statuses(conn, ids)
            for item_id in dict.fromkeys(ids):
                if statuses[item_id] not in ("failed", "canceled"):
                    continue
                cur = conn.execute(
                    "INSERT INTO queue_items (queue_id, batch_id, session_id, priority, field_values, created_at) "
                    "SELECT queue_id, batch_id, ?, priority, field_values, ? FROM queue_items WHERE item_id = ?",
                    (uuid.uuid4().hex, now, item_id),
                )
                conn.execute("UPDATE queue_items SET position = item_id WHERE item_id = ?", (cur.lastrowid,))
                conn.execute(
                    "INSERT INTO queue_graphs (item_id, graph) SELECT ?, graph FROM queue_graphs WHERE item_id = ?",
                    (cur.lastrowid, item_id),
                )
                new_items += _load(conn, [int(cur.lastrowid or 0)])
        self._emit_status(new_items)
        return [i.item_id for i in new_items]

    # -- reorder --------------------------------------------------------------------------------
    def move_item(self, item_id: int, *, to: MoveTo | None = None, before: int | None = None) -> QueueItem:
        """See `SessionQueueBase.move_item`. Positions are integers: the front takes one less than the
        first, the back a fresh id from the item sequence (so items enqueued later still go after it),
        `before` takes the other item's position and shifts it and everything after it (in that
        queue and priority) by one. One transaction."""
        check_move(item_id, to, before)
        with self.db.transaction() as conn:
            wanted = [item_id] if before is None else [item_id, before]
            rows = {
                r[0]: r[1:]
                for r in conn.execute(
                    f"SELECT item_id, queue_id, status, priority, position FROM queue_items "
                    f"WHERE item_id IN ({_marks(len(wanted))})",
                    wanted,
                )
            }
            missing = [i for i in wanted if i not in rows]
            if missing:
                raise QueueItemNotFoundError(missing)
            queue_id, status, _, _ = rows[item_id]
            if status != "pending":
                raise QueueItemNotPendingError(item_id, status)
            if before is not None:
                other_queue, other_status, priority, position = rows[before]
                if other_queue != queue_id:
                    raise QueueError(
                        f"queue item {before} is in the queue '{other_queue}', not '{queue_id}' (the queue of "
                        f"item {item_id})"
                    )
                if other_status != "pending":
                    raise QueueItemNotPendingError(before, other_status, role="item (before)")
                conn.execute(
                    "UPDATE queue_items SET position = position + 1 "
                    "WHERE queue_id = ? AND priority = ? AND position >= ? AND item_id != ?",
                    (queue_id, priority, position, item_id),
                )
                # shifted positions may pass the sequence: keep later items after them
                conn.execute(
                    "UPDATE sqlite_sequence SET seq = max(seq, (SELECT max(position) FROM queue_items)) "
                    "WHERE name = 'queue_items'"
                )
            else:
                top, bottom = conn.execute(
                    "SELECT max(priority), min(priority) FROM queue_items "
                    "WHERE queue_id = ? AND status = 'pending' AND item_id != ?",
                    (queue_id, item_id),
                ).fetchone()
                own = rows[item_id][2]
                if to == "front":
                    priority = own if top is None else top
                    first = conn.execute(
                        "SELECT min(position) FROM queue_items WHERE queue_id = ? AND status = 'pending' "
                        "AND priority = ? AND item_id != ?",
                        (queue_id, priority, item_id),
                    ).fetchone()[0]
                    position = rows[item_id][3] if first is None else int(first) - 1
                else:
                    priority = own if bottom is None else bottom
                    last = conn.execute("SELECT coalesce(max(item_id), 0) FROM queue_items").fetchone()[0]
                    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'queue_items'").fetchone()
                    high = conn.execute("SELECT coalesce(max(position), 0) FROM queue_items").fetchone()[0]
                    position = max(int(last), int(seq[0]) if seq else 0, int(high)) + 1
                    conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'queue_items'", (position,))
            conn.execute(
                "UPDATE queue_items SET priority = ?, position = ? WHERE item_id = ?", (priority, position, item_id)
            )
            return _load(conn, [item_id])[0]

    # -- clear, prune -----------------------------------------------------------------------------
    def clear(self, queue_id: str) -> int:
        check_queue_id(queue_id)
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM queue_items WHERE queue_id = ? AND status != 'in_progress'", (queue_id,))
            return int(cur.rowcount)

    def prune(self, queue_id: str) -> int:
        check_queue_id(queue_id)
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM queue_items WHERE queue_id = ? AND status IN ('completed', 'failed', 'canceled')",
                (queue_id,),
            )
            return int(cur.rowcount)

    # -- reading ----------------------------------------------------------------------------------
    def list_items(
        self, queue_id: str, *, cursor: int | None = None, limit: int = 50, status: QueueStatus | None = None
    ) -> list[QueueItem]:
        check_queue_id(queue_id)
        where: list[str] = ["q.queue_id = ?"]
        args: list[Any] = [queue_id]
        if status is not None:
            if status not in QUEUE_STATUSES:
                raise QueueError(f"unknown queue item status {status!r} (one of {', '.join(QUEUE_STATUSES)})")
            where.append("q.status = ?")
            args.append(status)
        with self.db.read() as conn:
            if cursor is not None:
                anchor = conn.execute(
                    "SELECT priority, position FROM queue_items WHERE item_id = ?", (cursor,)
                ).fetchone()
                if anchor is not None:
                    # strictly after the cursor in queue order (priority DESC, position, item_id)
                    p, pos = anchor
                    where.append(
                        "(q.priority < ? OR (q.priority = ? AND "
                        "(q.position > ? OR (q.position = ? AND q.item_id > ?))))"
                    )
                    args += [p, p, pos, pos, cursor]
                else:  # the cursor item is gone (pruned): order by id alone
                    where.append("q.item_id > ?")
                    args.append(cursor)
            rows = conn.execute(
                f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY q.priority DESC, q.position ASC, q.item_id ASC "
                "LIMIT ?",
                [*args, max(0, limit)],
            ).fetchall()
        return [_item(r) for r in rows]

    def status(self, queue_id: str) -> QueueStatusCounts:
        check_queue_id(queue_id)
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT status, count(*) FROM queue_items WHERE queue_id = ? GROUP BY status", (queue_id,)
            ).fetchall()
            paused = conn.execute("SELECT paused FROM queue_state WHERE queue_id = ?", (queue_id,)).fetchone()
        counts = QueueStatusCounts(queue_id=queue_id, paused=bool(paused and paused[0]))
        for status, n in rows:
            setattr(counts, status, n)
            counts.total += n
        return counts

    def queue_ids(self) -> list[str]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT queue_id FROM queue_items UNION SELECT queue_id FROM queue_state"
            ).fetchall()
        return sorted(r[0] for r in rows)

    # -- pause ------------------------------------------------------------------------------------
    def pause(self, queue_id: str) -> None:
        check_queue_id(queue_id)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO queue_state (queue_id, paused) VALUES (?, 1) "
                "ON CONFLICT (queue_id) DO UPDATE SET paused = 1",
                (queue_id,),
            )

    def resume(self, queue_id: str) -> None:
        check_queue_id(queue_id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM queue_state WHERE queue_id = ?", (queue_id,))

    def is_paused(self, queue_id: str) -> bool:
        check_queue_id(queue_id)
        with self.db.read() as conn:
            row = conn.execute("SELECT paused FROM queue_state WHERE queue_id = ?", (queue_id,)).fetchone()
        return bool(row and row[0])

    # -- crash recovery ---------------------------------------------------------------------------
    def recover_interrupted(
        self,
        *,
        requeue: bool,
        item_ids: list[int] | None = None,
        new_sessions: bool = False,
        error_type: str = "ProcessTerminated",
        error_message: str = "the process was terminated while this item was running",
    ) -> list[QueueItem]:
        with self.db.transaction() as conn:
            if item_ids is None:
                ids = [r[0] for r in conn.execute("SELECT item_id FROM queue_items WHERE status = 'in_progress'")]
            else:
                ids = list(dict.fromkeys(check_item_ids(item_ids)))
            if requeue:
                requeued: list[int] = []
                for item_id in ids:
                    rows = conn.execute(
                        "UPDATE queue_items SET status = 'pending', started_at = NULL, completed_at = NULL, "
                        "session_id = CASE WHEN ? THEN ? ELSE session_id END "
                        "WHERE item_id = ? AND status = 'in_progress' RETURNING item_id",
                        (int(new_sessions), uuid.uuid4().hex, item_id),
                    ).fetchall()
                    requeued += [r[0] for r in rows]
                changed = _load(conn, requeued)
            else:
                changed = self._update_returning(
                    conn,
                    "UPDATE queue_items SET status = 'failed', completed_at = ?, error_type = ?, error_message = ?, "
                    "error_traceback = NULL WHERE item_id IN ({ids}) AND status = 'in_progress'",
                    ids,
                    [utcnow(), error_type, error_message],
                )
        self._emit_status(changed)
        return changed

    def claim_processor(self) -> Callable[[], None]:
        """One processor per database file, across processes: an exclusive `flock` on
        `<db>.processor.lock`, released by the kernel when the holder dies (even by `kill -9`), so
        crash recovery never touches the items of a live processor."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: guard this process only
            return super().claim_processor()
        path = self.db.path.with_name(self.db.path.name + ".processor.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise QueueError(
                f"another queue processor is running on the database {self.db.path}{who}; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)

        def release() -> None:
            try:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

        return release
