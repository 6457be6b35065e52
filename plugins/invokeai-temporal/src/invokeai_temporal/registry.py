"""What each worker holds, in PostgreSQL: the model-affinity registry and the dispatch outbox.

* `temporal_workers`: a row per live `invokeai worker` (its id is its `queue_workers` id), with its
  own task queue, device, the models it holds loaded, whether it is running an item, and an expiry
  (`worker_ttl` after its last refresh; a killed worker's row simply expires).
* `temporal_dispatched`: the items handed to Temporal (a workflow started). An item accepted but not
  in it (Temporal was away, or the server died between the two) is handed over by the next sweep.

`routes` picks, for each item's models, an idle live worker holding them (the most of them; ties
spread over the workers), or None for the shared queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invokeai_postgres.db import PostgresDatabase, SqlConnection


def _v1(conn: SqlConnection) -> None:
    conn.execute(
        """
        CREATE TABLE temporal_workers (
            worker_id BIGINT PRIMARY KEY,
            task_queue TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            device TEXT NOT NULL,
            models TEXT[] NOT NULL DEFAULT '{}',
            busy BOOLEAN NOT NULL DEFAULT FALSE,
            expires_at TIMESTAMPTZ NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE temporal_dispatched (
            item_id BIGINT PRIMARY KEY REFERENCES queue_items (item_id) ON DELETE CASCADE,
            task_queue TEXT,
            dispatched_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )


MIGRATIONS = [_v1]


def graph_models(graph: Any) -> list[str]:
    """The model names an item's graph needs: every node's `model` field given as a name (or as
    `{"name": ...}` / `{"key": ...}`), in node order, without repeats."""
    nodes = graph.get("nodes", {}) if isinstance(graph, dict) else {}
    found: dict[str, None] = {}
    for node in nodes.values() if isinstance(nodes, dict) else nodes:
        value = node.get("model") if isinstance(node, dict) else None
        if isinstance(value, dict):
            value = value.get("name") or value.get("key")
        if isinstance(value, str) and value:
            found[value] = None
    return list(found)


class WorkerRegistry:
    """The two tables above on the plugin's PostgreSQL database."""

    def __init__(self, db: PostgresDatabase, ttl: float) -> None:
        self.db = db
        self.ttl = ttl
        db.migrate("temporal", MIGRATIONS)

    # -- workers ----------------------------------------------------------------------------------
    def advertise(
        self, worker_id: int, *, task_queue: str, host: str, pid: int, device: str, models: Sequence[str], busy: bool
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO temporal_workers (worker_id, task_queue, host, pid, device, models, busy, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, now() + make_interval(secs => ?)) ON CONFLICT (worker_id) DO UPDATE "
                "SET models = EXCLUDED.models, busy = EXCLUDED.busy, expires_at = EXCLUDED.expires_at",
                (worker_id, task_queue, host, pid, device, list(models), busy, self.ttl),
            )

    def withdraw(self, worker_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM temporal_workers WHERE worker_id = ?", (worker_id,))

    def live(self) -> list[tuple[int, str, bool, list[str]]]:
        """(worker id, task queue, busy, models) of every worker whose row has not expired."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT worker_id, task_queue, busy, models FROM temporal_workers WHERE expires_at > now() "
                "ORDER BY worker_id"
            ).fetchall()
        return [(int(w), q, bool(b), list(m)) for w, q, b, m in rows]

    def routes(self, needs: Sequence[Sequence[str]]) -> list[str | None]:
        """For each item's models, the task queue of an idle worker holding the most of them, else
        None (the shared queue). Items needing no model always go to the shared queue."""
        if not any(needs):
            return [None] * len(needs)
        idle = [(q, set(models)) for _, q, busy, models in self.live() if not busy and models]
        given: dict[str, int] = {}
        out: list[str | None] = []
        for models in needs:
            wanted = set(models)
            best: tuple[int, int, str] | None = None
            for queue, held in idle:
                overlap = len(wanted & held)
                if overlap == 0:
                    continue
                key = (-overlap, given.get(queue, 0), queue)
                if best is None or key < best:
                    best = key
            if best is None:
                out.append(None)
            else:
                given[best[2]] = given.get(best[2], 0) + 1
                out.append(best[2])
        return out

    # -- the outbox -------------------------------------------------------------------------------
    def mark_dispatched(self, items: Sequence[tuple[int, str | None]]) -> None:
        if not items:
            return
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO temporal_dispatched (item_id, task_queue) "
                "SELECT i, q FROM unnest(?::bigint[], ?::text[]) AS t(i, q) "
                "WHERE EXISTS (SELECT 1 FROM queue_items WHERE item_id = i) ON CONFLICT (item_id) DO NOTHING",
                ([i for i, _ in items], [q for _, q in items]),
            )

    def undispatched(self, limit: int = 500) -> list[tuple[int, str, int, Any]]:
        """Pending items never handed to Temporal: (item id, queue id, priority, graph), queue order."""
        import json

        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT q.item_id, q.queue_id, q.priority, g.graph FROM queue_items q "
                "JOIN queue_graphs g ON g.item_id = q.item_id "
                "WHERE q.status = 'pending' AND NOT EXISTS "
                "(SELECT 1 FROM temporal_dispatched d WHERE d.item_id = q.item_id) "
                "ORDER BY q.priority DESC, q.position, q.item_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [(int(i), qid, int(p), json.loads(g)) for i, qid, p, g in rows]
