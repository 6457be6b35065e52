"""Writes `sessions_v2.db` and `sessions_v2.json` with invokeai-core 0.1 (commit c2de26c), whose
SQLite schema is sessions v2, queue v1, image_records v1: the database the migration test opens.

    git worktree add /tmp/base c2de26c
    PYTHONPATH=/tmp/base .venv/bin/python tests/data/make_v2_database.py tests/data

The JSON holds every session's `to_dict()` and every queue item and image record as that version
wrote them, so the test can check that the migrated database reads back the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from invokeai_core.graph import Graph
from invokeai_core.services.base import ImageRecord
from invokeai_core.services.sqlite_image_records import SqliteImageRecordStorage
from invokeai_core.services.sqlite_queue import SqliteSessionQueue
from invokeai_core.services.sqlite_sessions import SqliteSessionStorage
from invokeai_core.session import NodeError, Session
from invokeai_core.testing.contracts import contract_node_registry, run_in_store


def edge(s: str, sf: str, d: str, df: str) -> dict[str, object]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


def main(out: Path) -> None:
    db = out / "sessions_v2.db"
    db.unlink(missing_ok=True)
    registry = contract_node_registry()
    sessions = SqliteSessionStorage(path=db, registry=registry)
    chain = {f"n{i}": {"id": f"n{i}", "type": "contract_add", "b": 1} for i in range(6)}
    chain_edges = [edge(f"n{i}", "value", f"n{i + 1}", "a") for i in range(5)]
    done = Session(Graph.from_dict({"nodes": chain, "edges": chain_edges}, registry), id="chain-done")
    sessions.save(done)
    run_in_store(sessions, done)
    half = Session(Graph.from_dict({"nodes": chain, "edges": chain_edges}, registry), id="chain-half")
    sessions.save(half)
    run_in_store(sessions, half, limit=3)
    loop = Session(
        Graph.from_dict(
            {
                "nodes": {
                    "range": {"id": "range", "type": "contract_range", "size": 3},
                    "each": {"id": "each", "type": "iterate"},
                    "times": {"id": "times", "type": "contract_mul", "b": 10},
                    "gather": {"id": "gather", "type": "collect"},
                },
                "edges": [
                    edge("range", "collection", "each", "collection"),
                    edge("each", "item", "times", "a"),
                    edge("times", "value", "gather", "item"),
                ],
            },
            registry,
        ),
        id="iterate-part",
    )
    sessions.save(loop)
    run_in_store(sessions, loop, limit=4)
    grown = Session(registry=registry, id="built-node-by-node")
    sessions.save(grown)
    for i in range(4):  # appended after the first save: rows of session_graph_appends
        grown.add_node({"id": f"g{i}", "type": "contract_add", "b": i}, link_previous=i > 0)
        sessions.save(grown)
    run_in_store(sessions, grown, limit=2)
    failed = Session(Graph.from_dict({"nodes": chain, "edges": chain_edges}, registry), id="failed")
    sessions.save(failed)
    run_in_store(sessions, failed, limit=1)
    prepared = failed.next()
    assert prepared is not None
    failed.set_error(prepared.key, NodeError.from_exception(prepared.id, RuntimeError("broken on purpose")))
    sessions.save(failed)
    canceled = Session(Graph.from_dict({"nodes": chain, "edges": chain_edges}, registry), id="canceled")
    sessions.save(canceled)
    canceled.canceled = True
    sessions.save(canceled)

    queue = SqliteSessionQueue(db=sessions.db, registry=registry)
    queue.enqueue_batch(
        "default",
        {
            "graph": {"nodes": chain, "edges": chain_edges},
            "data": [[{"node_path": "n0", "field_name": "a", "items": [1, 2, 3]}]],
        },
    )
    item = queue.dequeue()
    assert item is not None
    queue.set_status(item.item_id, "completed", expected="in_progress")
    queue.pause("paused-queue")

    records = SqliteImageRecordStorage(db=sessions.db)
    records.save(
        ImageRecord(
            image_name="final.png",
            width=8,
            height=4,
            session_id="chain-done",
            node_id="n5",
            is_intermediate=False,
            metadata={"seed": 1},
            graph=done.graph.to_dict(),
        )
    )
    records.save(ImageRecord(image_name="step.png", width=8, height=4, session_id="chain-done", node_id="n2"))

    expected = {
        "sessions": {s.id: sessions.get(s.id).to_dict() for s in (done, half, loop, grown, failed, canceled)},
        "statuses": {s.id: sessions.get(s.id).status for s in (done, half, loop, grown, failed, canceled)},
        "queue": [i.model_dump() for i in queue.list_items("default", limit=100)],
        "paused": queue.queue_ids(),
        "images": [r.model_dump() for r in records.list(limit=100).items],
    }
    sessions.db.close()
    (out / "sessions_v2.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
