"""Sessions persisted as they run, in any SQL database: the logic of the kernel's SQLite store
(`sessions = "sqlite"`), shared with stores on other databases (invokeai-postgres).

Persisting is incremental, so a long session stays linear, whether it runs or is built node by
node: a session row holds a summary (status, node count, node types for the text query, how many
results are stored) and `session_graphs` the graph as first saved (apart, so that updating the summary
after every node never rewrites the graph); nodes and edges added later are rows of
`session_graph_appends` (graphs are append-only), each executed node copy is one row of
`session_results`, in history order, and errors are rows of `session_errors`. `save` appends only
the nodes, edges and results not stored yet (it rewrites the whole graph only for another object of
the same id, or when the database holds something else than this process wrote); `node_completed`
appends one result row and updates the summary in one small transaction. A session is rebuilt from
these rows with `Session.from_dict`, which replays the history.

Readers in this process see the live object while anyone holds it (a weak cache), as with the
memory store: the node the processor is running, nodes appended through the API, and the results
written so far are the same object, so an append is never lost to a stale copy.

**The database.** `SqlSessionStorage(db, registry=, commit_interval=)` takes any object with
`transaction()` and `read()` context managers yielding a connection with DB-API `execute(sql,
params)` (returning a cursor with `fetchone`, `fetchall`, `rowcount`) and `executemany(sql, rows)`,
SQL in SQLite's dialect with `?` placeholders, plus `before_close(callback)`. The tables are the
ones `invokeai_core.services.sqlite_sessions` creates; a store on another database creates the same
tables (with a `rowid` column giving insertion order, and an `instr(text, text)` function) in its
own migrations.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from invokeai_core.crashpoints import crash_point
from invokeai_core.errors import SessionNotFoundError, StorageError, StorageUnavailableError
from invokeai_core.services.base import Page, SessionStorageBase, SessionSummary

if TYPE_CHECKING:
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.session import Session

#: Separates node types in the `node_types` column (type ids are `[a-z0-9_]`).
_SEP = "\x1f"


def dumps(value: object) -> str:
    """JSON for a TEXT column, non-ASCII text as is (see `invokeai_core.services.sqlite_db.dumps`)."""
    return json.dumps(value, ensure_ascii=False)


class SqlConnection(Protocol):
    """What the store uses of a connection (DB-API, `?` placeholders)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


class SqlDatabase(Protocol):
    """What the store uses of a database: write transactions, reads, and a close callback."""

    def transaction(self) -> AbstractContextManager[Any]: ...

    def read(self) -> AbstractContextManager[Any]: ...

    def before_close(self, commit: Callable[[], None]) -> None: ...


class _Mark:
    """What of a live session object is known to be in the database."""

    __slots__ = ("appends", "edges", "graph", "history_len", "nodes", "types", "version")

    def __init__(self, graph: Any, history_len: int, *, appends: int) -> None:
        self.graph = weakref.ref(graph)
        self.version = graph.version
        self.history_len = history_len
        self.nodes = len(graph.nodes)
        self.edges = len(graph.edges)
        self.appends = appends
        self.types: set[str] = {n.invocation_type for n in graph.nodes.values()}

    def graph_is(self, session: Session) -> bool:
        return self.graph() is session.graph and self.version == session.graph.version


#: Pending results of one session committed together at most (see `node_completed`).
COMMIT_BATCH = 256

#: Every store of this process, so pending results are committed when the interpreter exits normally.
_STORES: weakref.WeakSet[SqlSessionStorage] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for store in list(_STORES):
        try:
            store.flush()
        except Exception:  # pragma: no cover - a closed database at exit: nothing more can be done
            pass


class _Pending:
    """Results of one session completed but not committed yet, with its summary as of the last."""

    __slots__ = ("rows", "session", "status", "updated_at")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.rows: list[tuple[str, int, str, str]] = []
        self.status = ""
        self.updated_at = ""

    def add(self, row: tuple[str, int, str, str], status: str, updated_at: str) -> None:
        self.rows.append(row)
        self.status, self.updated_at = status, updated_at


def _node_types(types: set[str]) -> str:
    return _SEP + _SEP.join(sorted(types)) + _SEP


class SqlSessionStorage(SessionStorageBase):
    """Sessions in a SQL database `db`; see the module docstring."""

    def __init__(self, db: SqlDatabase, *, registry: NodeRegistry | None, commit_interval: float = 0.05) -> None:
        #: The database (a store of this process may share it with others).
        self.db = db
        #: The node registry sessions are parsed against.
        self.registry = registry
        #: Seconds a completed node's result may wait to be committed with others (0: at once).
        self.commit_interval = commit_interval
        self._pending: dict[str, _Pending] = {}
        self._flusher: threading.Thread | None = None
        _STORES.add(self)  # committed at a normal exit too (see `_flush_all_at_exit`)
        self.db.before_close(self.flush)
        self._live: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()
        self._marks: weakref.WeakKeyDictionary[Session, _Mark] = weakref.WeakKeyDictionary()
        self._lock = threading.RLock()

    # -- writing ----------------------------------------------------------------------------------
    def save(self, session: Session) -> None:
        with self._lock, self.db.transaction() as conn:
            self._pending.pop(session.id, None)  # the write below stores every result it held
            self._write(conn, session)
            self._live[session.id] = session

    def _write(self, conn: Any, session: Session) -> None:
        from invokeai_core.session import prepared_id

        sid = session.id
        mark = self._marks.get(session)
        row = conn.execute(
            "SELECT history_len, graph_nodes, graph_edges, graph_appends FROM sessions WHERE id = ?", (sid,)
        ).fetchone()
        history = session.history
        status = session.status
        graph = session.graph
        if (
            row is not None
            and mark is not None
            and mark.graph() is graph
            and (row[1], row[2], row[3]) == (mark.nodes, mark.edges, mark.appends)
            and len(graph.nodes) >= mark.nodes
            and len(graph.edges) >= mark.edges
        ):
            self._append_graph(conn, sid, graph, mark)
        else:
            self._write_graph(conn, session)
            mark = None
        conn.execute(
            "UPDATE sessions SET status = ?, canceled = ?, history_len = ?, updated_at = ? WHERE id = ?",
            (status, int(session.canceled), len(history), session.updated_at, sid),
        )
        # Results: append what is not stored yet; rewrite them all only if the stored history is not
        # a prefix of this one (another object with the same id was saved).
        start = 0
        if row is not None:
            stored = int(row[0])
            if stored <= len(history):
                last = (
                    conn.execute(
                        "SELECT node_id FROM session_results WHERE session_id = ? AND seq = ?", (sid, stored - 1)
                    ).fetchone()
                    if stored
                    else None
                )
                if stored == 0 or (last is not None and last[0] == prepared_id(history[stored - 1])):
                    start = stored
            if start == 0 and stored:
                conn.execute("DELETE FROM session_results WHERE session_id = ?", (sid,))
        results = session.results
        if start < len(history):
            conn.executemany(
                "INSERT INTO session_results (session_id, seq, node_id, output) VALUES (?, ?, ?, ?)",
                [(sid, i, prepared_id(k), results[k].model_dump_json()) for i, k in enumerate(history[start:], start)],
            )
        conn.execute("DELETE FROM session_errors WHERE session_id = ?", (sid,))
        if session.errors:
            conn.executemany(
                "INSERT INTO session_errors (session_id, node_id, error) VALUES (?, ?, ?)",
                [(sid, prepared_id(k), e.model_dump_json()) for k, e in session.errors.items()],
            )
        if mark is None:
            self._marks[session] = _Mark(graph, len(history), appends=0)
        else:
            mark.version = graph.version
            mark.history_len = len(history)

    def _write_graph(self, conn: Any, session: Session) -> None:
        """The whole graph into the session's row (inserted or replaced), no appends after it."""
        graph = session.graph
        conn.execute(
            """
            INSERT INTO sessions (id, status, node_count, node_types, canceled, history_len,
                                  created_at, updated_at, graph_nodes, graph_edges, graph_appends)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
            ON CONFLICT (id) DO UPDATE SET node_count = excluded.node_count,
                node_types = excluded.node_types, graph_nodes = excluded.graph_nodes,
                graph_edges = excluded.graph_edges, graph_appends = 0
            """,
            (
                session.id,
                session.status,
                len(graph.nodes),
                _node_types({n.invocation_type for n in graph.nodes.values()}),
                int(session.canceled),
                0,
                session.created_at,
                session.updated_at,
                len(graph.nodes),
                len(graph.edges),
            ),
        )
        conn.execute(
            "INSERT INTO session_graphs (session_id, graph) VALUES (?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET graph = excluded.graph",
            (session.id, graph.to_json()),
        )
        conn.execute("DELETE FROM session_graph_appends WHERE session_id = ?", (session.id,))

    def _append_graph(self, conn: Any, sid: str, graph: Any, mark: _Mark) -> None:
        """Append the nodes and edges added since `mark` (graphs are append-only) and move the mark."""
        from itertools import islice

        from invokeai_core.graph import node_json

        if len(graph.nodes) == mark.nodes and len(graph.edges) == mark.edges:
            return
        # the newest nodes, from the end: O(new), not O(graph)
        new_nodes = list(islice(reversed(graph.nodes.values()), len(graph.nodes) - mark.nodes))[::-1]
        rows = [("node", dumps(node_json(n))) for n in new_nodes]
        rows += [("edge", dumps(e.model_dump(mode="json"))) for e in graph.edges[mark.edges :]]
        seq = mark.appends
        conn.executemany(
            "INSERT INTO session_graph_appends (session_id, seq, kind, body) VALUES (?, ?, ?, ?)",
            [(sid, seq + i, kind, body) for i, (kind, body) in enumerate(rows)],
        )
        new_types = {n.invocation_type for n in new_nodes} - mark.types
        mark.types |= new_types
        mark.nodes, mark.edges, mark.appends = len(graph.nodes), len(graph.edges), seq + len(rows)
        conn.execute(
            "UPDATE sessions SET node_count = ?, graph_nodes = ?, graph_edges = ?, graph_appends = ?"
            + (", node_types = ?" if new_types else "")
            + " WHERE id = ?",
            (
                mark.nodes,
                mark.nodes,
                mark.edges,
                mark.appends,
                *((_node_types(mark.types),) if new_types else ()),
                sid,
            ),
        )

    def node_completed(self, session: Session, prepared_id: str) -> None:
        """Persist one node's result: O(1), never the session. Results are group-committed: the ones
        completed within `session_commit_ms` (or `COMMIT_BATCH` of them) go to the database in one
        transaction, so a crash can only lose (and re-run) nodes that completed in that window; what
        committed never runs again. `save`, `delete`, `flush` and `stop` commit what is pending."""
        n = len(session.history)
        with self._lock:
            mark = self._marks.get(session)
            pending = self._pending.get(session.id)
            waiting = len(pending.rows) if pending is not None else 0
            if mark is None or mark.history_len + waiting != n - 1 or not mark.graph_is(session) or n == 0:
                self.save(session)
                return
            key = session.history[-1]
            row = (session.id, n - 1, prepared_id, session.results[key].model_dump_json())
            if pending is None:
                pending = self._pending[session.id] = _Pending(session)
            pending.add(row, session.status, session.updated_at)
            if self.commit_interval <= 0 or len(pending.rows) >= COMMIT_BATCH:
                self._flush(session.id)
            elif self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_later, name="invokeai-session-commits", daemon=True)
                self._flusher.start()

    def flush(self, session_id: str | None = None) -> None:
        """Commit the pending results of one session (or of all)."""
        with self._lock:
            for sid in [session_id] if session_id is not None else list(self._pending):
                self._flush(sid)

    def stop(self) -> None:
        """The Invoker stopped: commit what is pending."""
        self.flush()

    def _flush_later(self) -> None:
        """The group-commit thread: commits pending results at most `commit_interval` after they
        arrived, and exits when nothing is pending (the next result starts it again)."""
        while True:
            time.sleep(self.commit_interval)
            with self._lock:
                try:
                    self.flush()
                except StorageUnavailableError:  # unreachable for now: the results stay pending, the next round retries
                    pass
                except StorageError:  # closed under us (the Invoker stopped): nothing left to commit to
                    self._pending.clear()
                if not self._pending:
                    self._flusher = None
                    return

    def _flush(self, session_id: str) -> None:
        pending = self._pending.pop(session_id, None)
        if pending is None or not pending.rows:
            return
        session = pending.session
        mark = self._marks.get(session)
        first = pending.rows[0][1]
        try:
            with self.db.transaction() as conn:
                cur = conn.execute(
                    "UPDATE sessions SET status = ?, history_len = ?, updated_at = ? WHERE id = ? AND history_len = ?",
                    (pending.status, first + len(pending.rows), pending.updated_at, session_id, first),
                )
                if cur.rowcount != 1 or mark is None:  # the database disagrees (written elsewhere): write it all
                    self._write(conn, session)
                    return
                conn.executemany(
                    "INSERT INTO session_results (session_id, seq, node_id, output) VALUES (?, ?, ?, ?)", pending.rows
                )
                crash_point("sessions.commit")
        except StorageUnavailableError:
            # the database is unreachable: the results stay pending (the next flush retries them)
            self._pending[session_id] = pending
            raise
        mark.history_len = first + len(pending.rows)

    # -- reading ----------------------------------------------------------------------------------
    def get(self, session_id: str) -> Session:
        from invokeai_core.session import Session

        with self._lock:
            live = self._live.get(session_id)
            if live is not None:
                return live
            if self.registry is None:
                raise TypeError(f"this {type(self).__name__} was built without a node registry (pass registry=)")
            data, appends = self._read(session_id)
            session = Session.from_dict(data, self.registry)
            self._live[session_id] = session
            self._marks[session] = _Mark(session.graph, len(session.history), appends=appends)
            return session

    def _read(self, session_id: str) -> tuple[dict[str, Any], int]:
        """The stored session's JSON and how many graph appends its row counts."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT g.graph, s.canceled, s.created_at, s.updated_at, s.graph_appends "
                "FROM sessions s JOIN session_graphs g ON g.session_id = s.id WHERE s.id = ?",
                (session_id,),
            ).fetchone()
            if row is None:
                raise SessionNotFoundError(f"session '{session_id}' does not exist")
            appends = conn.execute(
                "SELECT kind, body FROM session_graph_appends WHERE session_id = ? ORDER BY seq", (session_id,)
            ).fetchall()
            results = conn.execute(
                "SELECT node_id, output FROM session_results WHERE session_id = ? ORDER BY seq", (session_id,)
            ).fetchall()
            errors = conn.execute(
                "SELECT node_id, error FROM session_errors WHERE session_id = ?", (session_id,)
            ).fetchall()
        graph_text, canceled, created_at, updated_at, n_appends = row
        graph = json.loads(graph_text)
        for kind, body in appends:
            item = json.loads(body)
            if kind == "node":
                graph["nodes"][item["id"]] = item
            else:
                graph["edges"].append(item)
        data = {
            "id": session_id,
            "graph": graph,
            "results": {pid: json.loads(out) for pid, out in results},
            "errors": {pid: json.loads(err) for pid, err in errors},
            "history": [pid for pid, _ in results],
            "canceled": bool(canceled),
            "created_at": created_at,
            "updated_at": updated_at,
        }
        return data, max(0, int(n_appends))

    def delete(self, session_id: str) -> None:
        with self._lock, self.db.transaction() as conn:
            self._pending.pop(session_id, None)
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            self._live.pop(session_id, None)

    def list(self, *, offset: int = 0, limit: int = 50, query: str | None = None) -> Page[SessionSummary]:
        offset, limit = max(0, offset), max(0, limit)
        clause = ""
        args: list[Any] = []
        if query:
            clause = " WHERE instr(id, ?) > 0"
            args = [query]
            if _SEP not in query:  # a node type's substring (the separator keeps types apart)
                clause += " OR instr(node_types, ?) > 0"
                args.append(query)
        with self.db.read() as conn:
            total = conn.execute(f"SELECT count(*) FROM sessions{clause}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT id, status, node_count, created_at, updated_at FROM sessions{clause} "
                "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        items = [
            SessionSummary(id=sid, status=status, nodes=count, created_at=created, updated_at=updated)
            for sid, status, count, created, updated in rows
        ]
        return Page[SessionSummary](items=items, offset=offset, limit=limit, total=total)
