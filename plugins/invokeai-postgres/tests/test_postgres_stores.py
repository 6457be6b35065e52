"""The plugin beyond the contracts: selection by configuration, errors, migrations, per-node
persistence that never rewrites a session, notifications, and worker heartbeats."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import pg_settings, write_config
from invokeai_postgres.db import PostgresDatabase, PostgresError, PostgresUnavailableError, safe_dsn
from invokeai_postgres.image_records import PostgresImageRecordStorage
from invokeai_postgres.queue import LOST, MIGRATIONS, PostgresSessionQueue
from invokeai_postgres.sessions import PostgresSessionStorage
from invokeai_postgres.workflows import PostgresWorkflowStorage
from pg_server import free_port

from invokeai_core import Invoker, NodeRegistry
from invokeai_core.testing.contracts import contract_batch

INVOKEAI = str(Path(sys.executable).parent / "invokeai")


def _env(root: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(INVOKEAI_ROOT=str(root), INVOKEAI_LOAD_PLUGINS="postgres,testpack", HF_HUB_OFFLINE="1", **extra)
    return env


def _cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INVOKEAI, *args], env=_env(root, **env), capture_output=True, text=True, timeout=120)


def _rows(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO invokeai")
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


# -- selection and configuration -------------------------------------------------------------------
def test_the_configuration_selects_every_store(invokeai_invoker: Invoker) -> None:
    services = invokeai_invoker.services
    assert isinstance(services.sessions, PostgresSessionStorage)
    assert isinstance(services.image_records, PostgresImageRecordStorage)
    assert isinstance(services.queue, PostgresSessionQueue)
    workflows = services.get("workflows")
    assert isinstance(workflows, PostgresWorkflowStorage)
    # one pool per process, shared by the stores
    assert services.sessions.db is services.image_records.db is services.queue.db is workflows.db


def test_a_run_lands_in_postgres(invokeai_run_graph: Any, invokeai_invoker: Invoker, pg_dsn: str) -> None:
    """A 200-node chain persists node by node: one result row each, the graph written once (its
    row's transaction id, `xmin`, never changes: the session is appended to, never rewritten)."""
    nodes = {"n0": {"id": "n0", "type": "tp_const", "value": 1}}
    edges = []
    for i in range(1, 200):
        nodes[f"n{i}"] = {"id": f"n{i}", "type": "tp_scale", "factor": 1}
        edges.append(
            {
                "source": {"node_id": f"n{i - 1}", "field": "value"},
                "destination": {"node_id": f"n{i}", "field": "value"},
            }
        )
    first: list[Any] = []

    def watch(event: Any) -> None:
        if not first and event.event_name == "invocation_complete":
            invokeai_invoker.services.sessions.flush()
            first.extend(_rows(pg_dsn, "SELECT xmin::text FROM session_graphs"))

    invokeai_invoker.services.events.subscribe(watch)
    run = invokeai_run_graph({"nodes": nodes, "edges": edges})
    assert run.status == "completed"
    invokeai_invoker.services.sessions.flush()
    assert _rows(pg_dsn, "SELECT count(*) FROM session_results") == [(200,)]
    assert _rows(pg_dsn, "SELECT status, history_len FROM sessions") == [("completed", 200)]
    assert first and _rows(pg_dsn, "SELECT xmin::text FROM session_graphs") == first  # never rewritten


def test_the_dsn_from_the_environment(tmp_path: Path, pg_dsn: str) -> None:
    write_config(tmp_path, "postgresql://nobody@127.0.0.1:1/none")
    res = _cli(tmp_path, "queue", "status", INVOKEAI_PLUGINS__POSTGRES__DSN=pg_dsn)
    assert res.returncode == 0, res.stderr
    assert _rows(pg_dsn, "SELECT component FROM schema_versions ORDER BY 1") == [
        ("image_records",),
        ("queue",),
        ("sessions",),
        ("workflows",),
    ]


def test_an_unreachable_server_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    write_config(tmp_path, f"postgresql://invokeai:s3cret@127.0.0.1:{port}/db", connect_timeout=1)
    res = _cli(tmp_path, "queue", "status")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "PostgreSQL" in lines[0]
    assert "s3cret" not in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("key", "value", "where"),
    [("dsn", "mysql://x", "plugins.postgres.dsn"), ("pool_size", 0, "plugins.postgres.pool_size")],
)
def test_bad_settings_name_the_key(tmp_path: Path, key: str, value: Any, where: str) -> None:
    if key == "dsn":
        write_config(tmp_path, value)
    else:
        write_config(tmp_path, "postgresql://127.0.0.1:1/x", **{key: value})
    res = _cli(tmp_path, "queue", "status")
    assert res.returncode == 2 and where in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_psycopg_is_imported_only_when_selected(tmp_path: Path) -> None:
    code = (
        "import sys; from invokeai_core import load_config, Invoker, PluginHost;"
        "c = load_config(root=sys.argv[1], environ={}); Invoker.from_config(c, PluginHost(c).load());"
        "print('psycopg' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr


def test_the_password_never_appears_in_messages() -> None:
    assert safe_dsn("postgresql://u:pw@h:1/d") == "postgresql://u:***@h:1/d"


# -- migrations ------------------------------------------------------------------------------------
def test_migrations_on_an_empty_database_then_a_newer_schema_is_refused(pg_dsn: str) -> None:
    db = PostgresDatabase(pg_settings(pg_dsn))
    try:
        assert db.migrate("queue", MIGRATIONS) == len(MIGRATIONS)  # version 0 -> latest on an empty database
        assert db.migrate("queue", MIGRATIONS) == len(MIGRATIONS)  # nothing to do
        with db.transaction() as conn:
            conn.execute("UPDATE schema_versions SET version = 9 WHERE component = 'queue'")
        with pytest.raises(PostgresError, match=rf"schema version 9.*knows only up to {len(MIGRATIONS)}"):
            PostgresSessionQueue(db=db)
    finally:
        db.close()


def test_queue_v2_migrates_a_version_1_database_with_items(pg_dsn: str) -> None:
    """Version 2 (positions, for reordering) on a queue written at version 1: every item keeps its
    place in the order and can then be moved."""
    db = PostgresDatabase(pg_settings(pg_dsn))
    try:
        assert db.migrate("queue", MIGRATIONS[:1]) == 1
        with db.transaction() as conn:  # what version 1 wrote: three items, two priorities
            for item_id, priority in ((1, 0), (2, 5), (3, 0)):
                conn.execute(
                    "INSERT INTO queue_items (item_id, queue_id, batch_id, session_id, priority, created_at) "
                    "VALUES (?, 'q', 'b', ?, ?, '2026-01-01T00:00:00.000+00:00')",
                    (item_id, f"s{item_id}", priority),
                )
                conn.execute("INSERT INTO queue_graphs (item_id, graph) VALUES (?, '{}')", (item_id,))
            conn.execute("SELECT setval('queue_item_ids', 3)")
        queue = PostgresSessionQueue(db=db, registry=_contract_registry())
        assert db.schema_version("queue") == 2
        assert [i.item_id for i in queue.list_items("q")] == [2, 1, 3]
        queue.move_item(3, to="front")
        assert [i.item_id for i in queue.list_items("q")] == [3, 2, 1]
        (new,) = queue.enqueue_batch("q", contract_batch([1])).item_ids
        assert new == 4 and [i.item_id for i in queue.list_items("q")] == [3, 2, 1, 4]
    finally:
        db.close()


def test_a_failing_migration_changes_nothing(pg_dsn: str) -> None:
    """A migration runs in one transaction with its version bump: one that fails leaves the database
    at the previous version, unchanged."""
    db = PostgresDatabase(pg_settings(pg_dsn))
    try:
        queue = PostgresSessionQueue(db=db, registry=_contract_registry())
        ids = queue.enqueue_batch("q", contract_batch([1, 2])).item_ids

        def broken(conn: Any) -> None:
            conn.execute("ALTER TABLE queue_items ADD COLUMN other TEXT")
            raise RuntimeError("a migration bug")

        with pytest.raises(RuntimeError):
            db.migrate("queue", [*MIGRATIONS, broken])
        assert db.schema_version("queue") == len(MIGRATIONS)
        assert "other" not in {r[0] for r in _rows(pg_dsn, _COLUMNS)}
        assert [i.item_id for i in queue.list_items("q")] == ids
    finally:
        db.close()


_COLUMNS = "SELECT column_name FROM information_schema.columns WHERE table_name = 'queue_items'"


def test_processes_starting_together_migrate_once(pg_dsn: str, tmp_path: Path) -> None:
    write_config(tmp_path, pg_dsn)
    procs = [
        subprocess.Popen([INVOKEAI, "queue", "status"], env=_env(tmp_path), stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read() if p.stderr else ""
    assert _rows(pg_dsn, "SELECT component, version FROM schema_versions ORDER BY 1") == [
        ("image_records", 1),
        ("queue", len(MIGRATIONS)),
        ("sessions", 1),
        ("workflows", 1),
    ]


# -- notifications and workers ---------------------------------------------------------------------
def _contract_registry() -> NodeRegistry:
    from invokeai_core.testing.contracts import contract_node_registry

    return contract_node_registry()


def test_listen_wakes_on_work_and_cancels_from_another_process(pg_dsn: str) -> None:
    mine, theirs = PostgresDatabase(pg_settings(pg_dsn)), PostgresDatabase(pg_settings(pg_dsn))
    try:
        registry = _contract_registry()
        listener = PostgresSessionQueue(db=mine, registry=registry)
        other = PostgresSessionQueue(db=theirs, registry=registry)
        woke = threading.Event()
        stop = listener.listen(woke.set)
        assert stop is not None
        try:
            # the listening connection is up once a notification of our own arrives
            for _ in range(50):
                other.resume("warmup")
                if woke.wait(0.2):
                    break
            woke.clear()
            ids = other.enqueue_batch("q", contract_batch([1])).item_ids
            assert woke.wait(10), "no wake-up for work enqueued by another process"
            woke.clear()
            other.cancel_items(ids)
            assert woke.wait(10), "no wake-up for a cancel by another process"
        finally:
            stop()
    finally:
        mine.close()
        theirs.close()


def test_a_live_workers_items_are_never_recovered_and_a_dead_ones_are(pg_dsn: str) -> None:
    registry = _contract_registry()
    a, b = PostgresDatabase(pg_settings(pg_dsn, worker_lease=1)), PostgresDatabase(pg_settings(pg_dsn, worker_lease=1))
    try:
        alive = PostgresSessionQueue(db=a, registry=registry)
        dead = PostgresSessionQueue(db=b, registry=registry)
        alive.enqueue_batch("q", contract_batch([1, 2]))
        release_alive = alive.claim_processor()
        release_dead = dead.claim_processor()
        taken_alive, taken_dead = alive.dequeue(), dead.dequeue()
        assert taken_alive is not None and taken_dead is not None
        dead._heartbeat_stop.set()  # it stops beating, as a killed process does
        with b.transaction() as conn:
            conn.execute(
                "UPDATE queue_workers SET last_seen = now() - interval '1 hour' WHERE worker_id = ?", (dead.worker_id,)
            )
        recovered = alive.recover_interrupted(requeue=True)
        assert [i.item_id for i in recovered] == [taken_dead.item_id]
        assert alive.get_status(taken_alive.item_id) == "in_progress"
        release_alive()
        release_dead()
    finally:
        a.close()
        b.close()


def test_an_item_whose_outcome_could_not_be_written_is_failed_by_the_heartbeat(pg_dsn: str) -> None:
    db = PostgresDatabase(pg_settings(pg_dsn))
    try:
        queue = PostgresSessionQueue(db=db, registry=_contract_registry())
        queue.enqueue_batch("q", contract_batch([1, 2]))
        release = queue.claim_processor()
        lost, kept = queue.dequeue(), queue.dequeue()
        assert lost is not None and kept is not None
        queue._done_with([lost.item_id])  # as when the outage outlasted `outage_wait`
        failed = queue.heartbeat()
        assert [i.item_id for i in failed] == [lost.item_id]
        item = queue.get_item(lost.item_id)
        assert (item.status, item.error_type, item.error_message) == ("failed", "StorageUnavailable", LOST)
        assert queue.get_status(kept.item_id) == "in_progress"
        release()
    finally:
        db.close()


def test_an_unreachable_server_is_unavailable_not_a_crash(pg_dsn: str) -> None:
    with pytest.raises(PostgresUnavailableError, match=r"127\.0\.0\.1"):
        PostgresDatabase(pg_settings(f"postgresql://invokeai@127.0.0.1:{free_port()}/x", connect_timeout=1))
