"""The session queue on PostgreSQL (`services.queue = "postgres"`): many processors, one database.

Items live in `queue_items` (status, priority, errors, times, the worker that took it) with each
item's graph apart in `queue_graphs`; paused queues in `queue_state`; processors in `queue_workers`.

* **Exactly-once claim.** `dequeue` is one `UPDATE ... WHERE item_id = (SELECT ... ORDER BY priority
  DESC, item_id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING`: concurrent workers in any number of
  processes never take the same item and never wait on each other's row locks.
* **Enqueue** of a batch is one transaction under a per-queue advisory lock (the room check and the
  insert are atomic); item ids come from one sequence, taken in a block so a batch's ids ascend.
* **Many processors.** `claim_processor` registers a worker row and heartbeats it every quarter of
  `worker_lease`; items a processor takes carry its worker id. A worker whose heartbeat is older than
  the lease (by the server's clock) is dead: `recover_interrupted` touches only the in-progress items
  of dead workers (or of none: taken without a claim), and every processor re-runs it every
  `recovery_interval` seconds, so a killed worker's item is re-queued or failed (per
  `queue_requeue_on_crash`) while the others run.
* **LISTEN/NOTIFY.** Enqueue, resume, retry and re-queue notify `invokeai_queue_work`; cancels notify
  `invokeai_queue_cancel`. `listen` wakes idle processors at once (they poll only as a safety net).
* **Outages.** An unreachable server is `PostgresUnavailableError` (503 with Retry-After on the API).
  A worker retries recording an item's outcome for up to `outage_wait` seconds, so an item running
  while the server restarts ends completed or failed with its reason, never lost; an item a live
  worker no longer runs (its outcome could not be written) is failed by that worker's next heartbeat.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from invokeai_core import (
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
from invokeai_postgres.db import PostgresDatabase, PostgresUnavailableError, SqlConnection
from invokeai_postgres.settings import load_settings

if TYPE_CHECKING:
    from invokeai_core import Batch, InvokeAIConfig, NodeRegistry, ServiceRuntime
    from invokeai_postgres.settings import PostgresSettings

logger = logging.getLogger("invokeai.postgres")
T = TypeVar("T")

WORK_CHANNEL = "invokeai_queue_work"
CANCEL_CHANNEL = "invokeai_queue_cancel"
LOST = "the worker running this item could not record its outcome (the database was unreachable)"


def _v1(conn: SqlConnection) -> None:
    conn.execute(
        """
        CREATE TABLE queue_workers (
            worker_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE queue_items (
            item_id BIGINT PRIMARY KEY,
            queue_id TEXT NOT NULL,
            batch_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'in_progress', 'completed', 'failed', 'canceled')),
            priority BIGINT NOT NULL DEFAULT 0,
            field_values TEXT NOT NULL DEFAULT '[]',
            error_type TEXT,
            error_message TEXT,
            error_traceback TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            completed_at TEXT,
            worker_id BIGINT
        )
        """
    )
    conn.execute("CREATE SEQUENCE queue_item_ids AS BIGINT OWNED BY queue_items.item_id")
    conn.execute("CREATE INDEX ix_queue_next ON queue_items (priority DESC, item_id) WHERE status = 'pending'")
    conn.execute("CREATE INDEX ix_queue_order ON queue_items (queue_id, priority DESC, item_id)")
    conn.execute("CREATE INDEX ix_queue_status ON queue_items (queue_id, status)")
    conn.execute("CREATE INDEX ix_queue_batch ON queue_items (queue_id, batch_id)")
    conn.execute("CREATE INDEX ix_queue_running ON queue_items (worker_id) WHERE status = 'in_progress'")
    conn.execute(
        """
        CREATE TABLE queue_graphs (
            item_id BIGINT PRIMARY KEY REFERENCES queue_items (item_id) ON DELETE CASCADE,
            graph TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE TABLE queue_state (queue_id TEXT PRIMARY KEY, paused BOOLEAN NOT NULL DEFAULT FALSE)")


def _v2(conn: SqlConnection) -> None:
    """A `position` within a priority, so pending items can be reordered (`move_item`): the queue
    order becomes `priority DESC, position, item_id`. Existing items keep their order (position =
    item id); new items get their item id, which stays past every position (`move_item` advances the
    id sequence past any position it hands out)."""
    conn.execute("ALTER TABLE queue_items ADD COLUMN position BIGINT")
    conn.execute("UPDATE queue_items SET position = item_id")
    conn.execute("ALTER TABLE queue_items ALTER COLUMN position SET NOT NULL")
    conn.execute("DROP INDEX ix_queue_next")
    conn.execute("DROP INDEX ix_queue_order")
    conn.execute(
        "CREATE INDEX ix_queue_next ON queue_items (priority DESC, position, item_id) WHERE status = 'pending'"
    )
    conn.execute("CREATE INDEX ix_queue_order ON queue_items (queue_id, priority DESC, position, item_id)")


MIGRATIONS = [_v1, _v2]

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
_SELECT = (
    "SELECT "
    + ", ".join("g.graph" if f == "graph" else f"q.{f}" for f in _FIELDS)
    + " FROM queue_items q JOIN queue_graphs g ON g.item_id = q.item_id"
)
#: Workers whose heartbeat is within the lease (`?`: the lease in seconds).
_LIVE = "SELECT worker_id FROM queue_workers WHERE last_seen > now() - make_interval(secs => ?)"


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _item(row: Sequence[Any]) -> QueueItem:
    data = dict(zip(_FIELDS, row, strict=True))
    data["field_values"] = json.loads(data["field_values"])
    data["graph"] = json.loads(data["graph"])
    return QueueItem.model_validate(data)


def _load(conn: SqlConnection, ids: Iterable[int]) -> list[QueueItem]:
    wanted = list(ids)
    if not wanted:
        return []
    rows = conn.execute(f"{_SELECT} WHERE q.item_id = ANY(?) ORDER BY q.item_id", (wanted,)).fetchall()
    return [_item(r) for r in rows]


def _notify(conn: SqlConnection, channel: str, payload: str) -> None:
    conn.execute("SELECT pg_notify(?, ?)", (channel, payload))


class PostgresSessionQueue(SessionQueueBase):
    """The queue in the `[plugins.postgres]` database; see the module docstring."""

    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        settings: PostgresSettings | None = None,
        db: PostgresDatabase | None = None,
        max_size: int | None = None,
        registry: NodeRegistry | None = None,
        runtime: ServiceRuntime | None = None,
    ) -> None:
        self.settings = settings or (db.settings if db is not None else load_settings(config))
        self.db = db if db is not None else PostgresDatabase.open(self.settings)
        self.db.migrate("queue", MIGRATIONS)
        self.max_size = max_size if max_size is not None else (config.max_queue_size if config is not None else 10000)
        self.registry = runtime.registry if runtime is not None else registry
        self.events = runtime.events if runtime is not None else None
        #: Seconds without a heartbeat after which a worker is dead (`worker_lease`).
        self.lease = self.settings.worker_lease
        self.recovery_interval = max(1.0, self.lease / 2)
        #: This instance's worker id while it holds a processor claim (None otherwise).
        self.worker_id: int | None = None
        self._mine: set[int] = set()  # items this worker took and has not finished
        self._mine_lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()

    # -- outages ----------------------------------------------------------------------------------
    def _outlasting(self, op: Callable[[], T]) -> T:
        """Run `op`, retrying while the server is unreachable, for up to `outage_wait` seconds (for a
        worker's writes of an item's outcome, which must not be lost to a restart)."""
        deadline = time.monotonic() + self.settings.outage_wait
        delay = 0.2
        while True:
            try:
                return op()
            except PostgresUnavailableError:
                if self.worker_id is None or time.monotonic() + delay > deadline:
                    raise
                logger.warning("PostgreSQL is unreachable; retrying in %.1f s", delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- enqueue ----------------------------------------------------------------------------------
    def insert_batch(
        self, queue_id: str, batch: Batch, items: list[ExpandedItem], *, prepend: bool
    ) -> tuple[int, list[int]]:
        now = utcnow()
        with self.db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('invokeai-queue:' || ?))", (queue_id,))
            pending, top = conn.execute(
                "SELECT count(*), max(priority) FROM queue_items WHERE queue_id = ? AND status = 'pending'",
                (queue_id,),
            ).fetchone()
            self.check_room(queue_id, int(pending), len(items))
            priority = prepend_priority(top, batch.priority) if prepend else batch.priority
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT nextval('queue_item_ids') FROM generate_series(1, ?) ORDER BY 1", (len(items),)
                ).fetchall()
            ]
            # the items, their graphs and the notification in one statement (one round trip)
            conn.execute(
                "WITH items AS (INSERT INTO queue_items (item_id, queue_id, batch_id, session_id, priority, "
                "field_values, created_at, position) SELECT i, ?, ?, s, ?, f, ?, i "
                "FROM unnest(?::bigint[], ?::text[], ?::text[]) AS t(i, s, f)), "
                "graphs AS (INSERT INTO queue_graphs (item_id, graph) SELECT * FROM unnest(?::bigint[], ?::text[])) "
                "SELECT pg_notify(?, ?)",
                (
                    queue_id,
                    batch.batch_id,
                    priority,
                    now,
                    ids,
                    [i.session_id for i in items],
                    [_dumps(i.field_values) for i in items],
                    ids,
                    [_dumps(i.graph) for i in items],
                    WORK_CHANNEL,
                    queue_id,
                ),
            )
        return priority, ids

    # -- taking and finishing items ---------------------------------------------------------------
    def dequeue(self) -> QueueItem | None:
        # A worker's items are added to `_mine` under its lock before the claim commits, so a heartbeat
        # (which holds the lock through its transaction) never sees one of them as lost.
        with self._mine_lock, self.db.transaction() as conn:
            row = conn.execute(
                """
                UPDATE queue_items SET status = 'in_progress', started_at = ?, worker_id = ?
                WHERE item_id = (
                    SELECT item_id FROM queue_items
                    WHERE status = 'pending'
                      AND queue_id NOT IN (SELECT queue_id FROM queue_state WHERE paused)
                    ORDER BY priority DESC, position ASC, item_id ASC LIMIT 1
                    FOR UPDATE SKIP LOCKED)
                RETURNING item_id
                """,
                (utcnow(), self.worker_id),
            ).fetchone()
            if row is None:
                return None
            item = _load(conn, [row[0]])[0]
            if self.worker_id is not None:
                self._mine.add(item.item_id)
        self._emit_status([item])
        return item

    def get_item(self, item_id: int) -> QueueItem:
        with self.db.read() as conn:
            found = _load(conn, [item_id])
        if not found:
            raise QueueItemNotFoundError([item_id])
        return found[0]

    def get_status(self, item_id: int) -> QueueStatus:
        with self.db.read() as conn:
            row = conn.execute("SELECT status FROM queue_items WHERE item_id = ?", (item_id,)).fetchone()
        if row is None:
            raise QueueItemNotFoundError([item_id])
        return row[0]

    def _done_with(self, ids: Iterable[int]) -> None:
        with self._mine_lock:
            self._mine.difference_update(ids)

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

        def write() -> tuple[int, list[QueueItem]]:
            # `_mine` changes before the commit (see `dequeue`)
            with self._mine_lock, self.db.transaction() as conn:
                changed = conn.execute(sql, args).rowcount
                if changed and status == "canceled":
                    _notify(conn, CANCEL_CHANNEL, str(item_id))
                if status != "in_progress":
                    self._mine.discard(item_id)
                return changed, _load(conn, [item_id])

        try:
            changed, found = self._outlasting(write)
        except PostgresUnavailableError:
            if status != "in_progress":
                self._done_with([item_id])  # given up on: this worker's next heartbeat fails it
            raise
        if not found:
            raise QueueItemNotFoundError([item_id])
        item = found[0]
        if changed:
            self._emit_status([item])
        return item

    def _statuses(self, conn: SqlConnection, ids: list[int]) -> dict[int, str]:
        found = {
            int(i): s
            for i, s in conn.execute(
                "SELECT item_id, status FROM queue_items WHERE item_id = ANY(?)", (list(dict.fromkeys(ids)),)
            ).fetchall()
        }
        missing = [i for i in ids if i not in found]
        if missing:
            raise QueueItemNotFoundError(missing)
        return found

    # -- cancel, retry ----------------------------------------------------------------------------
    def _cancel_where(self, conn: SqlConnection, where: str, args: Sequence[Any]) -> list[QueueItem]:
        rows = conn.execute(
            f"UPDATE queue_items SET status = 'canceled', completed_at = ? WHERE {where} RETURNING item_id",
            (utcnow(), *args),
        ).fetchall()
        ids = sorted(int(r[0]) for r in rows)
        if ids:
            _notify(conn, CANCEL_CHANNEL, ",".join(map(str, ids)))
        return _load(conn, ids)

    def cancel_items(self, item_ids: list[int]) -> list[int]:
        ids = check_item_ids(item_ids)
        with self.db.transaction() as conn:
            statuses = self._statuses(conn, ids)
            targets = [i for i in dict.fromkeys(ids) if statuses[i] not in FINISHED]
            changed = self._cancel_where(conn, "item_id = ANY(?) AND status IN ('pending', 'in_progress')", (targets,))
        self._emit_status(changed)
        done = {i.item_id for i in changed}
        return [i for i in targets if i in done]

    def cancel_batch(self, queue_id: str, batch_ids: list[str]) -> list[int]:
        check_queue_id(queue_id)
        if isinstance(batch_ids, str) or not all(isinstance(b, str) for b in batch_ids):
            raise QueueError("batch ids must be a list of strings")
        wanted = list(dict.fromkeys(batch_ids))
        with self.db.transaction() as conn:
            known = {
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT batch_id FROM queue_items WHERE queue_id = ? AND batch_id = ANY(?)",
                    (queue_id, wanted),
                ).fetchall()
            }
            unknown = [b for b in wanted if b not in known]
            if unknown:
                raise BatchNotFoundError(queue_id, unknown)
            changed = self._cancel_where(
                conn,
                "queue_id = ? AND batch_id = ANY(?) AND status IN ('pending', 'in_progress')",
                (queue_id, wanted),
            )
        self._emit_status(changed)
        return [i.item_id for i in changed]

    def cancel_all_except_current(self, queue_id: str) -> list[int]:
        check_queue_id(queue_id)
        with self.db.transaction() as conn:
            changed = self._cancel_where(conn, "queue_id = ? AND status = 'pending'", (queue_id,))
        self._emit_status(changed)
        return [i.item_id for i in changed]

    def retry_items(self, item_ids: list[int]) -> list[int]:
        ids = check_item_ids(item_ids)
        now = utcnow()
        with self.db.transaction() as conn:
            statuses = self._statuses(conn, ids)
            olds = [i for i in dict.fromkeys(ids) if statuses[i] in ("failed", "canceled")]
            new_ids: list[int] = []
            for old in olds:
                new = int(conn.execute("SELECT nextval('queue_item_ids')").fetchone()[0])
                conn.execute(
                    "INSERT INTO queue_items (item_id, queue_id, batch_id, session_id, priority, field_values, "
                    "created_at, position) SELECT ?, queue_id, batch_id, ?, priority, field_values, ?, ? "
                    "FROM queue_items WHERE item_id = ?",
                    (new, uuid.uuid4().hex, now, new, old),
                )
                conn.execute(
                    "INSERT INTO queue_graphs (item_id, graph) SELECT ?, graph FROM queue_graphs WHERE item_id = ?",
                    (new, old),
                )
                new_ids.append(new)
            new_items = _load(conn, new_ids)
            if new_items:
                _notify(conn, WORK_CHANNEL, new_items[0].queue_id)
        self._emit_status(new_items)
        return [i.item_id for i in new_items]

    # -- reorder --------------------------------------------------------------------------------
    def move_item(self, item_id: int, *, to: MoveTo | None = None, before: int | None = None) -> QueueItem:
        """See `SessionQueueBase.move_item`. One transaction under the queue's advisory lock (as
        enqueues): the front takes one less than the first position of its priority, the back a fresh
        value of the item id sequence (so items enqueued later still go after it), `before` the other
        item's position, shifting it and what follows (in that queue and priority) by one."""
        check_move(item_id, to, before)
        wanted = [item_id] if before is None else [item_id, before]
        with self.db.transaction() as conn:
            rows = {
                int(r[0]): r[1:]
                for r in conn.execute(
                    "SELECT item_id, queue_id, status, priority, position FROM queue_items WHERE item_id = ANY(?)",
                    (wanted,),
                ).fetchall()
            }
            missing = [i for i in wanted if i not in rows]
            if missing:
                raise QueueItemNotFoundError(missing)
            queue_id, status, own, own_position = rows[item_id]
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('invokeai-queue:' || ?))", (queue_id,))
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
                # shifted positions may pass the id sequence: keep later items after them
                conn.execute(
                    "SELECT setval('queue_item_ids', greatest((SELECT last_value FROM queue_item_ids), "
                    "(SELECT max(position) FROM queue_items)))"
                )
            else:
                top, bottom = conn.execute(
                    "SELECT max(priority), min(priority) FROM queue_items "
                    "WHERE queue_id = ? AND status = 'pending' AND item_id != ?",
                    (queue_id, item_id),
                ).fetchone()
                if to == "front":
                    priority = own if top is None else top
                    first = conn.execute(
                        "SELECT min(position) FROM queue_items WHERE queue_id = ? AND status = 'pending' "
                        "AND priority = ? AND item_id != ?",
                        (queue_id, priority, item_id),
                    ).fetchone()[0]
                    position = own_position if first is None else int(first) - 1
                else:
                    priority = own if bottom is None else bottom
                    position = int(conn.execute("SELECT nextval('queue_item_ids')").fetchone()[0])
            conn.execute(
                "UPDATE queue_items SET priority = ?, position = ? WHERE item_id = ?", (priority, position, item_id)
            )
            return _load(conn, [item_id])[0]

    # -- clear, prune -----------------------------------------------------------------------------
    def clear(self, queue_id: str) -> int:
        check_queue_id(queue_id)
        with self.db.transaction() as conn:
            return int(
                conn.execute(
                    "DELETE FROM queue_items WHERE queue_id = ? AND status != 'in_progress'", (queue_id,)
                ).rowcount
            )

    def prune(self, queue_id: str) -> int:
        check_queue_id(queue_id)
        with self.db.transaction() as conn:
            return int(
                conn.execute(
                    "DELETE FROM queue_items WHERE queue_id = ? AND status IN ('completed', 'failed', 'canceled')",
                    (queue_id,),
                ).rowcount
            )

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
                if anchor is not None:  # strictly after the cursor in queue order
                    where.append("(q.priority, -q.position, -q.item_id) < (?, ?, ?)")
                    args += [anchor[0], -anchor[1], -cursor]
                else:
                    where.append("q.item_id > ?")
                    args.append(cursor)
            rows = conn.execute(
                f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY q.priority DESC, q.position, q.item_id LIMIT ?",
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
            setattr(counts, status, int(n))
            counts.total += int(n)
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
                "INSERT INTO queue_state (queue_id, paused) VALUES (?, TRUE) "
                "ON CONFLICT (queue_id) DO UPDATE SET paused = TRUE",
                (queue_id,),
            )

    def resume(self, queue_id: str) -> None:
        check_queue_id(queue_id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM queue_state WHERE queue_id = ?", (queue_id,))
            _notify(conn, WORK_CHANNEL, queue_id)

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
        if item_ids is None:
            # in progress under no worker, or under one whose heartbeat is past the lease
            where = f"status = 'in_progress' AND (worker_id IS NULL OR worker_id NOT IN ({_LIVE}))"
            args: tuple[Any, ...] = (self.lease,)
        else:
            where = "status = 'in_progress' AND item_id = ANY(?)"
            args = (list(dict.fromkeys(check_item_ids(item_ids))),)
        # `_mine` changes before the commit: a requeued item may be taken again at once (see `dequeue`)
        with self._mine_lock, self.db.transaction() as conn:
            if requeue:
                rows = conn.execute(
                    "UPDATE queue_items SET status = 'pending', started_at = NULL, completed_at = NULL, "
                    "worker_id = NULL, session_id = CASE WHEN ? THEN md5(random()::text || item_id::text) "
                    f"ELSE session_id END WHERE {where} RETURNING item_id",
                    (new_sessions, *args),
                ).fetchall()
            else:
                rows = conn.execute(
                    "UPDATE queue_items SET status = 'failed', completed_at = ?, error_type = ?, error_message = ?, "
                    f"error_traceback = NULL WHERE {where} RETURNING item_id",
                    (utcnow(), error_type, error_message, *args),
                ).fetchall()
            changed = _load(conn, sorted(int(r[0]) for r in rows))
            if changed and requeue:
                _notify(conn, WORK_CHANNEL, changed[0].queue_id)
            self._mine.difference_update(i.item_id for i in changed)
        self._emit_status(changed)
        return changed

    # -- processors -------------------------------------------------------------------------------
    def listen(self, wake: Callable[[], None]) -> Callable[[], None] | None:
        stops = [self.db.listen(WORK_CHANNEL, lambda _: wake()), self.db.listen(CANCEL_CHANNEL, lambda _: wake())]

        def stop() -> None:
            for s in stops:
                s()

        return stop

    def claim_processor(self) -> Callable[[], None]:
        """Register this process as a worker (any number may run on one database) and heartbeat it
        until released; see the module docstring."""
        if self.worker_id is not None:
            raise QueueError("this queue instance already runs a processor")
        with self.db.transaction() as conn:
            row = conn.execute(
                "INSERT INTO queue_workers (host, pid) VALUES (?, ?) RETURNING worker_id",
                (socket.gethostname(), os.getpid()),
            ).fetchone()
        self.worker_id = int(row[0])
        self._heartbeat_stop.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="invokeai-postgres-heartbeat", daemon=True)
        self._heartbeat.start()

        def release() -> None:
            worker_id = self.worker_id
            self._heartbeat_stop.set()
            if self._heartbeat is not None:
                self._heartbeat.join(5)
            self.worker_id = None
            try:
                with self.db.transaction() as conn:
                    conn.execute("DELETE FROM queue_workers WHERE worker_id = ?", (worker_id,))
            except PostgresUnavailableError:
                logger.warning("could not unregister queue worker %s: PostgreSQL is unreachable", worker_id)

        return release

    def _beat(self) -> None:
        """Every quarter lease: mark this worker alive (again, after an outage) and fail the items the
        database says it runs but it does not (their outcome could not be written)."""
        while not self._heartbeat_stop.wait(self.lease / 4):
            try:
                self.heartbeat()
            except PostgresUnavailableError:
                logger.warning("queue worker %s: PostgreSQL is unreachable; heartbeat retried", self.worker_id)
            except Exception:
                logger.exception("queue worker %s: heartbeat failed", self.worker_id)

    def heartbeat(self) -> list[QueueItem]:
        """One heartbeat (see `_beat`); returns the items it failed."""
        worker_id = self.worker_id
        if worker_id is None:
            return []
        with self._mine_lock, self.db.transaction() as conn:
            mine = sorted(self._mine)
            seen = conn.execute("UPDATE queue_workers SET last_seen = now() WHERE worker_id = ?", (worker_id,))
            if seen.rowcount == 0:  # removed meanwhile (never by this plugin): register again, same id
                conn.execute(
                    "INSERT INTO queue_workers (worker_id, host, pid) OVERRIDING SYSTEM VALUE VALUES (?, ?, ?)",
                    (worker_id, socket.gethostname(), os.getpid()),
                )
            rows = conn.execute(
                "UPDATE queue_items SET status = 'failed', completed_at = ?, error_type = 'StorageUnavailable', "
                "error_message = ? WHERE worker_id = ? AND status = 'in_progress' AND NOT (item_id = ANY(?)) "
                "RETURNING item_id",
                (utcnow(), LOST, worker_id, mine),
            ).fetchall()
            failed = _load(conn, sorted(int(r[0]) for r in rows))
        self._emit_status(failed)
        return failed
