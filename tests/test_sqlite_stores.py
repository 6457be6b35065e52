"""The SQLite stores: the service contracts on real database files, the database manager (WAL,
migrations, corrupt and locked files), incremental session persistence, and the stores in use."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invokeai_core.config import load_config
from invokeai_core.errors import InvalidTextError, InvokeAIError, StorageUnavailableError
from invokeai_core.graph import Graph
from invokeai_core.registry import NodeRegistry
from invokeai_core.services.base import (
    ImageRecordStorageBase,
    SessionQueueBase,
    SessionStorageBase,
    WorkflowStorageBase,
)
from invokeai_core.services.container import Services
from invokeai_core.services.image_service import ImageService
from invokeai_core.services.images_local import LocalImageFileStorage
from invokeai_core.services.sqlite_db import DatabaseError, SqliteDatabase
from invokeai_core.services.sqlite_image_records import SqliteImageRecordStorage
from invokeai_core.services.sqlite_queue import SqliteSessionQueue
from invokeai_core.services.sqlite_sessions import SqliteSessionStorage
from invokeai_core.services.sqlite_workflows import SqliteWorkflowStorage
from invokeai_core.session import Session
from invokeai_core.testing.contracts import (
    UNENCODABLE_TEXT,
    ImageRecordStoreContract,
    SessionQueueContract,
    SessionStoreContract,
    WorkflowStoreContract,
    checker_image,
    contract_batch,
    contract_node_registry,
    run_in_store,
)

_files = itertools.count()


def _fresh_db(tmp_path: Path) -> Path:
    return tmp_path / f"db{next(_files)}" / "invokeai.db"


def _close(db: SqliteDatabase) -> None:
    """Close the shared connection, as a process exit would: the next store opens the file anew."""
    db.close()


def _own_connection(db: SqliteDatabase) -> SqliteDatabase:
    """A second, independent connection to the same file (what a restarted process would open)."""
    return SqliteDatabase(db.path)


# == the contracts on real files ======================================================================
class TestSqliteImageRecordStorage(ImageRecordStoreContract):
    persistent = True

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ImageRecordStorageBase]:
        store = SqliteImageRecordStorage(path=_fresh_db(tmp_path))
        yield store
        store.db.close()

    def reopen(self, store: ImageRecordStorageBase) -> ImageRecordStorageBase:
        assert isinstance(store, SqliteImageRecordStorage)
        return SqliteImageRecordStorage(db=_own_connection(store.db))


class TestSqliteSessionStorage(SessionStoreContract):
    persistent = True

    @pytest.fixture
    def store(self, tmp_path: Path, contract_registry: NodeRegistry) -> Iterator[SessionStorageBase]:
        store = SqliteSessionStorage(path=_fresh_db(tmp_path), registry=contract_registry)
        yield store
        store.db.close()

    def reopen(self, store: SessionStorageBase) -> SessionStorageBase:
        assert isinstance(store, SqliteSessionStorage)
        return SqliteSessionStorage(db=_own_connection(store.db), registry=store.registry)

    def test_readers_share_the_live_session(self, store: SessionStorageBase, contract_registry: NodeRegistry):
        session = Session(Graph(contract_registry))
        store.save(session)
        assert store.get(session.id) is session  # while someone holds it, as the memory store does


#: Any text, lone surrogates included (hypothesis leaves them out of `st.text()`).
ANY_TEXT = st.lists(st.characters() | st.integers(0xD800, 0xDFFF).map(chr), max_size=12).map("".join)
_HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize("text", UNENCODABLE_TEXT)
def test_the_sqlite_stores_refuse_what_they_could_not_give_back(tmp_path: Path, text: str) -> None:
    """SQLite holds UTF-8 only: such text is refused (not stored as escapes nothing could serve)."""
    path = _fresh_db(tmp_path)
    registry = contract_node_registry()
    sessions = SqliteSessionStorage(path=path, registry=registry)
    session = Session(Graph(registry), id=f"s{text}")  # graphs refuse such node ids before any store sees them
    session.graph.add_node(registry.entry("contract_add").cls(id="n"))
    with pytest.raises(InvalidTextError, match="lone surrogate"):
        sessions.save(session)
    records = SqliteImageRecordStorage(path=path)
    with pytest.raises(InvalidTextError):
        records.save(ImageRecordStoreContract.record("a.png", metadata={"prompt": text}))
    queue = SqliteSessionQueue(path=path, registry=registry)
    with pytest.raises(InvalidTextError):
        queue.enqueue_batch("default", contract_batch([1], batch_id=text))
    with sqlite3.connect(path) as conn:  # nothing of it reached the file
        tables = ("sessions", "image_records", "queue_items")
        counts = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables]
    assert counts == [0, 0, 0]


@_HYPOTHESIS
@given(text=ANY_TEXT)
def test_any_text_is_stored_exactly_or_refused(tmp_path: Path, text: str) -> None:
    path = _fresh_db(tmp_path)
    registry = contract_node_registry()
    sessions = SqliteSessionStorage(path=path, registry=registry)
    session = Session(Graph(registry), id=f"s{text}")  # graphs refuse unprintable node ids themselves
    session.graph.add_node(registry.entry("contract_add").cls(id="n"))
    records = SqliteImageRecordStorage(path=path)
    record = ImageRecordStoreContract.record("a.png", session_id=text, metadata={text: text})
    if _encodable(text):
        sessions.save(session)
        records.save(record)
        reread = SqliteSessionStorage(db=_own_connection(sessions.db), registry=registry)
        assert reread.get(session.id).to_dict() == session.to_dict()
        assert SqliteImageRecordStorage(db=_own_connection(records.db)).get("a.png") == record
    else:
        with pytest.raises(InvalidTextError):
            sessions.save(session)
        with pytest.raises(InvalidTextError):
            records.save(record)


class TestSqliteSessionQueue(SessionQueueContract):
    persistent = True

    @pytest.fixture
    def make_queue(self, tmp_path: Path, contract_registry: NodeRegistry) -> Callable[[int], SessionQueueBase]:
        return lambda max_size: SqliteSessionQueue(
            path=_fresh_db(tmp_path), max_size=max_size, registry=contract_registry
        )

    def reopen(self, queue: SessionQueueBase) -> SessionQueueBase:
        assert isinstance(queue, SqliteSessionQueue)
        return SqliteSessionQueue(db=_own_connection(queue.db), max_size=queue.max_size, registry=queue.registry)

    def test_separate_connections_never_hand_out_an_item_twice(self, tmp_path: Path, contract_registry: NodeRegistry):
        """Threads with a connection each (as separate processes would have) enqueue and take items
        at the same time; SQLite's locking alone keeps every item handed out exactly once."""
        path = _fresh_db(tmp_path)
        SqliteSessionQueue(path=path, registry=contract_registry)
        n_producers, n_consumers, batches = 2, 4, 15
        enqueued: list[int] = []
        taken: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        producing = threading.Barrier(n_producers + n_consumers)
        done = threading.Event()

        def queue_of_its_own() -> SqliteSessionQueue:
            return SqliteSessionQueue(db=SqliteDatabase(path), registry=contract_registry)

        def produce() -> None:
            q = queue_of_its_own()
            try:
                producing.wait()
                for _ in range(batches):
                    ids = q.enqueue_batch("default", contract_batch([1, 2, 3])).item_ids
                    with lock:
                        enqueued.extend(ids)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
            finally:
                q.db.close()

        def consume() -> None:
            q = queue_of_its_own()
            try:
                producing.wait()
                while True:
                    finished = done.is_set()  # read before taking: an empty queue after it means done
                    item = q.dequeue()
                    if item is not None:
                        with lock:
                            taken.append(item.item_id)
                    elif finished:
                        return
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
            finally:
                q.db.close()

        producers = [threading.Thread(target=produce) for _ in range(n_producers)]
        consumers = [threading.Thread(target=consume) for _ in range(n_consumers)]
        for t in producers + consumers:
            t.start()
        for t in producers:
            t.join(60)
        done.set()
        for t in consumers:
            t.join(60)
        assert not errors, errors
        assert len(enqueued) == n_producers * batches * 3
        assert sorted(taken) == sorted(enqueued)
        assert len(set(taken)) == len(taken)


# == the database manager =============================================================================
def test_one_database_file_in_the_root_folder_in_wal_mode(tmp_path: Path):
    config = load_config(root=tmp_path, environ={})
    host = _host()
    services = Services(config, host.service_registry, host.registry)
    assert isinstance(services.sessions, SqliteSessionStorage)
    assert isinstance(services.image_records, SqliteImageRecordStorage)
    assert isinstance(services.queue, SqliteSessionQueue)
    assert services.sessions.db is services.queue.db is services.image_records.db  # one connection
    assert (tmp_path / "invokeai.db").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".db"] == ["invokeai.db"]
    db = services.queue.db
    assert db.journal_mode == "wal"
    with db.read() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert {c: db.schema_version(c) for c in ("sessions", "image_records", "queue")} == {
        "sessions": 3,
        "image_records": 2,
        "queue": 3,
    }


def test_the_database_path_is_configurable(tmp_path: Path):
    config = load_config(root=tmp_path / "root", overrides={"db_path": "data/my.db"}, environ={})
    assert config.db_file == tmp_path / "root" / "data" / "my.db"
    store = SqliteSessionQueue(config)
    assert store.db.path == (tmp_path / "root" / "data" / "my.db").resolve()
    absolute = load_config(root=tmp_path, overrides={"db_path": str(tmp_path / "elsewhere.db")}, environ={})
    assert absolute.db_file == tmp_path / "elsewhere.db"


def _host() -> Any:
    from invokeai_core.plugins.host import PluginHost

    return PluginHost(load_config(environ={}), discover=False).load()


def test_migrations_run_once_and_in_order(tmp_path: Path):
    path = tmp_path / "m.db"
    calls: list[int] = []

    def step(n: int) -> Callable[[sqlite3.Connection], None]:
        def migrate(conn: sqlite3.Connection) -> None:
            calls.append(n)
            conn.execute(f"CREATE TABLE t{n} (x)")

        return migrate

    db = SqliteDatabase(path)
    assert db.migrate("plugin_x", [step(0)]) == 1
    assert db.migrate("plugin_x", [step(0)]) == 1
    assert db.migrate("plugin_x", [step(0), step(1), step(2)]) == 3
    assert calls == [0, 1, 2]
    assert db.schema_version("plugin_x") == 3
    db.close()


def test_a_failing_migration_changes_nothing(tmp_path: Path):
    db = SqliteDatabase(tmp_path / "m.db")

    def good(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE good (x)")

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError, match="migration bug"):
        db.migrate("c", [good, bad])
    assert db.schema_version("c") == 0
    with db.read() as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "good" not in tables and "half" not in tables
    db.close()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path):
    path = tmp_path / "new.db"
    store = SqliteSessionQueue(path=path)
    with store.db.transaction() as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE component = 'queue'")
    _close(store.db)
    with pytest.raises(DatabaseError) as info:
        SqliteSessionQueue(path=path)
    message = str(info.value)
    assert str(path) in message and "version 99" in message and "upgrade" in message


@pytest.mark.parametrize(
    "content",
    [b"this is not a database, just text" * 100, b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["text", "garbled-header"],
)
def test_a_corrupt_database_is_a_clear_error_naming_the_file(tmp_path: Path, content: bytes):
    path = tmp_path / "invokeai.db"
    path.write_bytes(content)
    config = load_config(root=tmp_path, environ={})
    with pytest.raises(DatabaseError) as info:
        SqliteSessionStorage(config)
    message = str(info.value)
    assert str(path) in message
    assert "corrupt" in message and "move it aside" in message
    assert "\n" not in message
    assert isinstance(info.value, InvokeAIError) and info.value.path == str(path)
    assert path.read_bytes() == content  # left for the user to inspect


def test_a_corrupted_page_is_reported_naming_the_file(tmp_path: Path):
    path = tmp_path / "invokeai.db"
    store = SqliteSessionQueue(path=path, registry=contract_node_registry())
    store.enqueue_batch("default", contract_batch(list(range(200))))
    with store.db.read() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _close(store.db)
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\x07" * 4096  # overwrite the second page (schema or data)
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseError) as info:
        reopened = SqliteSessionQueue(path=path)
        reopened.list_items("default", limit=1000)
    assert str(path) in str(info.value)


def _hold_lock(path: str, ready: Any, release: Any) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    ready.set()
    release.wait(30)
    conn.execute("ROLLBACK")
    conn.close()


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[Path]:
    """A database file whose write lock another process holds."""
    path = tmp_path / "invokeai.db"
    SqliteSessionQueue(path=path).db.close()
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(path), ready, release))
    proc.start()
    try:
        assert ready.wait(30), "the lock holder did not start"
        yield path
    finally:
        release.set()
        proc.join(30)


def test_a_locked_database_is_a_clear_startup_error_not_a_hang(locked_db: Path):
    config = load_config(root=locked_db.parent, overrides={"db_busy_timeout": 0.2}, environ={})
    with pytest.raises(DatabaseError) as info:
        SqliteSessionQueue(config)
    message = str(info.value)
    assert str(locked_db) in message and "locked" in message and "db_busy_timeout" in message


def test_a_lock_held_while_running_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "invokeai.db"
    queue = SqliteSessionQueue(path=path, registry=contract_node_registry())
    queue.db.busy_timeout = 0.2
    with queue.db.read() as conn:
        conn.execute("PRAGMA busy_timeout = 200")
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseError, match="locked") as info:
            queue.enqueue_batch("default", contract_batch([1]))
        # a busy store, not a broken one: the web API answers 503 and the caller may retry
        assert isinstance(info.value, StorageUnavailableError)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert queue.status("default").total == 0
    queue.enqueue_batch("default", contract_batch([1]))
    assert queue.status("default").total == 1


def test_an_unwritable_location_names_the_file(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatabaseError) as info:
        SqliteDatabase(blocker / "sub" / "invokeai.db")
    assert str(blocker / "sub" / "invokeai.db") in str(info.value)


# == incremental persistence ==========================================================================
def _chain(registry: NodeRegistry, n: int) -> Session:
    nodes = {f"n{i}": {"id": f"n{i}", "type": "contract_add", "b": 1} for i in range(n)}
    edges = [
        {"source": {"node_id": f"n{i}", "field": "value"}, "destination": {"node_id": f"n{i + 1}", "field": "a"}}
        for i in range(n - 1)
    ]
    return Session(Graph.from_dict({"nodes": nodes, "edges": edges}, registry))


def test_each_completed_node_is_one_small_write_not_the_whole_session(tmp_path: Path):
    registry = contract_node_registry()
    store = SqliteSessionStorage(path=tmp_path / "s.db", registry=registry, commit_ms=0)  # each node on its own
    session = _chain(registry, 60)
    store.save(session)
    statements: list[str] = []
    store.db._conn.set_trace_callback(statements.append)
    run_in_store(store, session)
    store.db._conn.set_trace_callback(None)
    writes = [s for s in statements if s.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert len(writes) == 2 * 60  # one result row and one summary update per node
    assert not [s for s in statements if "graph" in s]  # the graph is never rewritten while running
    assert max(len(s) for s in writes) < 400  # bounded: nothing grows with the session
    with store.db.read() as conn:
        assert conn.execute("SELECT count(*) FROM session_results").fetchone()[0] == 60
        assert conn.execute("SELECT history_len, status FROM sessions").fetchone() == (60, "completed")


def test_saving_an_unchanged_graph_does_not_rewrite_it(tmp_path: Path):
    registry = contract_node_registry()
    store = SqliteSessionStorage(path=tmp_path / "s.db", registry=registry)
    session = _chain(registry, 5)
    store.save(session)
    statements: list[str] = []
    store.db._conn.set_trace_callback(statements.append)
    store.save(session)
    session.add_node({"id": "extra", "type": "contract_add"})
    store.save(session)
    store.db._conn.set_trace_callback(None)
    assert not [s for s in statements if "INSERT INTO sessions" in s]  # the graph is never rewritten
    appends = [s for s in statements if "INSERT INTO session_graph_appends" in s]
    assert len(appends) == 1 and "extra" in appends[0]  # only the node that was added


def test_a_session_built_node_by_node_is_appended_not_rewritten(tmp_path: Path):
    """Each save of a growing session writes only what is new: building stays linear."""
    registry = contract_node_registry()
    path = tmp_path / "s.db"
    store = SqliteSessionStorage(path=path, registry=registry)
    session = Session(Graph(registry))
    store.save(session)
    statements: list[str] = []
    store.db._conn.set_trace_callback(statements.append)
    for i in range(300):
        session.add_node({"id": f"n{i}", "type": "contract_add", **({"a": 1} if i == 0 else {}), "b": 1})
        store.save(session)
        if i:
            session.add_edge(
                {
                    "source": {"node_id": f"n{i - 1}", "field": "value"},
                    "destination": {"node_id": f"n{i}", "field": "a"},
                }
            )
            store.save(session)
    store.db._conn.set_trace_callback(None)
    writes = [s for s in statements if s.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert max(len(s) for s in writes) < 600  # no statement grows with the graph
    assert not [s for s in statements if "INSERT INTO sessions" in s]

    # another process (its own connection) reads the same graph back, and runs it
    other = SqliteSessionStorage(db=SqliteDatabase(path), registry=registry, commit_ms=0)  # commits each node
    loaded = other.get(session.id)
    assert loaded.graph.to_dict() == session.graph.to_dict()
    assert other.list().items[0].nodes == 300
    run_in_store(other, loaded)
    assert loaded.status == "completed"
    assert SqliteSessionStorage(db=SqliteDatabase(path), registry=registry).get(session.id).status == "completed"


def test_a_graph_rewritten_elsewhere_is_rewritten_here_not_appended_to(tmp_path: Path):
    """Appends follow this process's last write; if the row changed under it, the whole graph is saved."""
    registry = contract_node_registry()
    path = tmp_path / "s.db"
    mine = SqliteSessionStorage(path=path, registry=registry)
    session = _chain(registry, 3)
    mine.save(session)
    theirs = SqliteSessionStorage(db=SqliteDatabase(path), registry=registry)
    copy = theirs.get(session.id)
    copy.add_node({"id": "theirs", "type": "contract_add"})
    theirs.save(copy)
    session.add_node({"id": "mine", "type": "contract_add"})
    mine.save(session)  # last writer wins, whole: never their appends plus mine
    fresh = SqliteSessionStorage(db=SqliteDatabase(path), registry=registry).get(session.id)
    assert list(fresh.graph.nodes) == ["n0", "n1", "n2", "mine"]


def test_a_version_1_database_is_migrated_and_its_sessions_keep_growing(tmp_path: Path):
    from invokeai_core.services import sqlite_sessions

    registry = contract_node_registry()
    path = tmp_path / "s.db"
    old = SqliteDatabase(path)
    old.migrate("sessions", [sqlite_sessions._v1])  # the schema as version 1 left it
    session = _chain(registry, 2)
    with old.transaction() as conn:
        conn.execute(
            "INSERT INTO sessions (id, graph, status, node_count, node_types, created_at, updated_at) "
            "VALUES (?, ?, 'pending', 2, '', ?, ?)",
            (session.id, session.graph.to_json(), session.created_at, session.updated_at),
        )
    old.close()
    store = SqliteSessionStorage(db=SqliteDatabase(path), registry=registry)
    assert store.db.schema_version("sessions") == len(sqlite_sessions.MIGRATIONS)
    loaded = store.get(session.id)
    assert list(loaded.graph.nodes) == ["n0", "n1"]
    loaded.add_node({"id": "later", "type": "contract_add"})
    store.save(loaded)
    again = SqliteSessionStorage(db=SqliteDatabase(path), registry=registry).get(session.id)
    assert list(again.graph.nodes) == ["n0", "n1", "later"]


# == the stores in use ================================================================================
@pytest.mark.parametrize("invokeai_storage", ["sqlite"])
def test_a_run_is_persisted_and_survives_a_restart(invokeai_invoker: Any, invokeai_config: Any):
    invoker = invokeai_invoker
    assert isinstance(invoker.services.sessions, SqliteSessionStorage)
    graph = {
        "nodes": {
            "a": {"id": "a", "type": "tp_const", "value": 2},
            "b": {"id": "b", "type": "tp_scale", "factor": 3},
            "img": {"id": "img", "type": "tp_gradient", "width": 16, "height": 8},
        },
        "edges": [{"source": {"node_id": "a", "field": "value"}, "destination": {"node_id": "b", "field": "value"}}],
    }
    session = invoker.run_graph(graph, timeout=30)
    assert session.status == "completed"
    image_name = session.results_by_source()["img"].image.image_name
    expected = session.to_dict()
    invoker.stop()
    _close(invoker.services.sessions.db)

    services = Services(invokeai_config, invoker.host.service_registry, invoker.host.registry)
    again = services.sessions.get(session.id)
    assert again.to_dict() == expected
    record = services.image_records.get(image_name)
    assert (record.session_id, record.node_id, record.width, record.is_intermediate) == (session.id, "img", 16, False)
    assert record.graph is not None and record.graph["nodes"]["img"]["type"] == "tp_gradient"
    assert services.sessions.list(query="tp_gradient").items[0].id == session.id


def test_deleting_an_image_deletes_record_file_and_thumbnail(tmp_path: Path):
    files = LocalImageFileStorage(folder=tmp_path / "outputs")
    records = SqliteImageRecordStorage(path=tmp_path / "invokeai.db")
    service = ImageService(files, records)
    record = service.create(checker_image(), session_id="s", node_id="n", metadata={"seed": 1})
    path, thumb = files._paths(record.image_name)
    assert path.is_file() and thumb.is_file()
    service.delete(record.image_name)
    assert not path.exists() and not thumb.exists()
    with pytest.raises(KeyError):
        records.get(record.image_name)


def test_files_without_records_are_collected_and_never_listed(tmp_path: Path):
    files = LocalImageFileStorage(folder=tmp_path / "outputs")
    records = SqliteImageRecordStorage(path=tmp_path / "invokeai.db")
    service = ImageService(files, records)
    kept = service.create(checker_image())
    files.save("orphan.png", checker_image())  # a crash between the file and its record
    assert [r.image_name for r in service.list().items] == [kept.image_name]
    with pytest.raises(KeyError):
        service.get_pil("orphan.png")
    assert service.collect_orphans(min_age=3600) == []  # too young: may be a save in progress
    assert service.collect_orphans(min_age=0) == ["orphan.png"]
    assert not files.exists("orphan.png") and files.exists(kept.image_name)


class TestSqliteWorkflowStorage(WorkflowStoreContract):
    persistent = True

    @pytest.fixture
    def store(self, tmp_path: Path, contract_registry: NodeRegistry) -> WorkflowStorageBase:
        return SqliteWorkflowStorage(path=_fresh_db(tmp_path), registry=contract_registry)

    def reopen(self, store: WorkflowStorageBase) -> WorkflowStorageBase:
        assert isinstance(store, SqliteWorkflowStorage)
        return SqliteWorkflowStorage(db=_own_connection(store.db), registry=store.registry)
