"""Linear persistence on SQLite: what a node's completion writes does not grow with the session,
and a database written by invokeai-core 0.1 (sessions v2, queue v1, image records v1) migrates with
nothing lost (tests/data/sessions_v2.db, written by tests/data/make_v2_database.py at c2de26c)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from conftest import REPO

from invokeai_core import Graph, ImageRecord, Session
from invokeai_core.services import sqlite_image_records, sqlite_queue, sqlite_sessions
from invokeai_core.services.sqlite_db import SqliteDatabase
from invokeai_core.services.sqlite_image_records import SqliteImageRecordStorage
from invokeai_core.services.sqlite_queue import SqliteSessionQueue
from invokeai_core.services.sqlite_sessions import COMMIT_BATCH, SqliteSessionStorage
from invokeai_core.testing.contracts import contract_node_registry, run_in_store

DATA = REPO / "tests" / "data"


def _chain(n: int) -> Session:
    nodes = {f"n{i}": {"id": f"n{i}", "type": "contract_add", "b": 1} for i in range(n)}
    edges = [
        {"source": {"node_id": f"n{i}", "field": "value"}, "destination": {"node_id": f"n{i + 1}", "field": "a"}}
        for i in range(n - 1)
    ]
    return Session(Graph.from_dict({"nodes": nodes, "edges": edges}, contract_node_registry()))


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _row_bytes(path: Path, table: str, where: str, args: tuple[Any, ...]) -> int:
    """The bytes of one row's columns (what SQLite rewrites when the row is updated)."""
    with sqlite3.connect(path) as conn:
        cols = _columns(conn, table)
        expr = " + ".join(f"coalesce(length(CAST({c} AS BLOB)), 0)" for c in cols)
        return int(conn.execute(f"SELECT {expr} FROM {table} WHERE {where}", args).fetchone()[0])


def test_the_row_a_node_completion_updates_does_not_grow_with_the_graph(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteSessionStorage(path=path, registry=contract_node_registry())
    sizes = {}
    for n in (3, 3000):
        session = _chain(n)
        store.save(session)
        assert run_in_store(store, session, limit=2) == 2
        sizes[n] = _row_bytes(path, "sessions", "id = ?", (session.id,))
    assert "graph" not in _columns(store.db._conn, "sessions")  # type: ignore[attr-defined]
    assert sizes[3000] - sizes[3] < 16  # the node count's digits, not the graph
    queue = SqliteSessionQueue(db=store.db, registry=contract_node_registry())
    small = queue.enqueue_batch("default", {"graph": _chain(3).graph.to_dict()}).item_ids[0]
    large = queue.enqueue_batch("default", {"graph": _chain(3000).graph.to_dict()}).item_ids[0]
    row = {i: _row_bytes(path, "queue_items", "item_id = ?", (i,)) for i in (small, large)}
    assert abs(row[large] - row[small]) < 16  # a status change rewrites the small row only
    assert len(queue.get_item(large).graph["nodes"]) == 3000 and queue.get_status(large) == "pending"


def test_the_final_images_of_a_session_share_one_stored_graph(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    records = SqliteImageRecordStorage(path=path)
    graph = _chain(500).graph.to_dict()
    for i in range(5):
        records.save(
            ImageRecord(image_name=f"{i}.png", width=1, height=1, session_id="s", is_intermediate=False, graph=graph)
        )
    records.save(ImageRecord(image_name="other.png", width=1, height=1, graph={"nodes": {}, "edges": []}))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM image_graphs").fetchone()[0] == 2
    assert all(records.get(f"{i}.png").graph == graph for i in range(5))
    assert [r.graph == graph for r in records.list(limit=10).items].count(True) == 5
    for i in range(5):
        records.delete(f"{i}.png")
    records.delete("other.png")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM image_graphs").fetchone()[0] == 0  # none left behind


def test_a_database_written_by_version_0_1_migrates_with_nothing_lost(tmp_path: Path) -> None:
    path = tmp_path / "invokeai.db"
    shutil.copy(DATA / "sessions_v2.db", path)
    expected = json.loads((DATA / "sessions_v2.json").read_text())
    with sqlite3.connect(path) as conn:
        versions = dict(conn.execute("SELECT component, version FROM schema_versions").fetchall())
    assert versions == {"sessions": 2, "queue": 1, "image_records": 1}  # as 0.1 left it
    registry = contract_node_registry()
    db = SqliteDatabase(path)
    sessions = SqliteSessionStorage(db=db, registry=registry)
    queue = SqliteSessionQueue(db=db, registry=registry)
    records = SqliteImageRecordStorage(db=db)
    assert {c: db.schema_version(c) for c in ("sessions", "queue", "image_records")} == {
        "sessions": len(sqlite_sessions.MIGRATIONS),
        "queue": len(sqlite_queue.MIGRATIONS),
        "image_records": len(sqlite_image_records.MIGRATIONS),
    }
    for sid, data in expected["sessions"].items():
        got = sessions.get(sid)
        assert got.to_dict() == data, sid
        assert got.status == expected["statuses"][sid]
    assert [i.model_dump() for i in queue.list_items("default", limit=100)] == expected["queue"]
    assert queue.queue_ids() == expected["paused"] and queue.is_paused("paused-queue")
    assert [r.model_dump() for r in records.list(limit=100).items] == expected["images"]
    # the migrated sessions keep running where they stopped, and keep growing
    half = sessions.get("chain-half")
    assert run_in_store(sessions, half) == 3
    grown = sessions.get("built-node-by-node")
    grown.add_node({"id": "g4", "type": "contract_add", "b": 4}, link_previous=True)
    sessions.save(grown)
    run_in_store(sessions, grown)
    db.close()
    fresh = SqliteSessionStorage(db=SqliteDatabase(path), registry=registry)
    assert fresh.get("chain-half").status == "completed"
    assert fresh.get("chain-half").results_by_source()["n5"].value == expected_value(expected, "chain-done", "n5")
    assert list(fresh.get("built-node-by-node").graph.nodes) == ["g0", "g1", "g2", "g3", "g4"]
    assert fresh.get("built-node-by-node").status == "completed"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert "graph" not in _columns(conn, "sessions") and "graph" not in _columns(conn, "queue_items")


def expected_value(expected: dict[str, Any], sid: str, node: str) -> int:
    return int(expected["sessions"][sid]["results"][node]["value"])


def test_group_commit_writes_a_window_of_nodes_in_one_transaction_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteSessionStorage(path=path, registry=contract_node_registry(), commit_ms=60_000)  # no timer here
    session = _chain(600)
    store.save(session)
    statements: list[str] = []
    store.db._conn.set_trace_callback(statements.append)  # type: ignore[attr-defined]
    assert run_in_store(store, session, limit=300) == 300
    store.db._conn.set_trace_callback(None)  # type: ignore[attr-defined]
    commits = [s for s in statements if s.strip().upper().startswith("COMMIT")]
    assert len(commits) == 300 // COMMIT_BATCH  # one transaction per batch, not per node

    def committed() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT history_len FROM sessions WHERE id = ?", (session.id,)).fetchone()[0])

    assert committed() == COMMIT_BATCH  # the rest waits for the window
    store.flush(session.id)
    assert committed() == 300
    run_in_store(store, session, limit=10)
    store.db.close()  # an orderly close commits what is pending
    assert committed() == 310
    other = SqliteSessionStorage(db=SqliteDatabase(path), registry=contract_node_registry())
    assert [k[0] for k in other.get(session.id).history] == [f"n{i}" for i in range(310)]


def test_group_commit_commits_within_its_window_without_being_asked(tmp_path: Path) -> None:
    import time

    path = tmp_path / "s.db"
    store = SqliteSessionStorage(path=path, registry=contract_node_registry(), commit_ms=20)
    session = _chain(5)
    store.save(session)
    run_in_store(store, session, limit=3)
    deadline = time.monotonic() + 30
    while True:  # the commit thread commits them ~20 ms later (no bound asserted: a shared machine)
        with sqlite3.connect(path) as conn:
            if conn.execute("SELECT history_len FROM sessions").fetchone()[0] == 3:
                break
        assert time.monotonic() < deadline, "the pending results were never committed"
        time.sleep(0.01)
    run_in_store(store, session)
    store.save(session)  # a save (the Invoker saves a finished session) writes what is pending at once
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT history_len, status FROM sessions").fetchone() == (5, "completed")
