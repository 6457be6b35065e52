"""The PostgreSQL database the plugin's stores share: a connection pool, migrations, notifications.

* **One pool per DSN and schema per process** (`PostgresDatabase.open`), shared by the sessions,
  image records and queue stores; `psycopg_pool.ConnectionPool` with `check_connection`, so a
  connection broken by a server restart is replaced before use: the plugin reconnects by itself
  when the server comes back.
* **Errors.** A server that cannot be reached (at start, or later) is `PostgresUnavailableError`, a
  `StorageUnavailableError` naming the host and port (never the password): one line and exit 2 on
  the CLI, 503 with `Retry-After` on the web API. Text PostgreSQL cannot hold (lone surrogates, NUL)
  is `InvalidTextError` with nothing stored.
* **Connections speak the kernel's SQL.** A transaction yields `SqlConnection`, which takes SQLite's
  `?` placeholders, so `SqlSessionStorage` (the kernel's incremental session logic) runs unchanged.
* **Migrations** per component in `schema_versions` (as in the SQLite database): the i-th moves the
  schema from version i to i+1, in one transaction with the version bump, under an advisory lock so
  that processes starting together migrate once. A schema written by a newer plugin is refused.
* **LISTEN/NOTIFY.** `listen(channel, callback)` runs one listening connection per process (a
  thread, reconnecting with backoff); stores notify in their transactions with `notify`.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from invokeai_core import InvalidTextError, StorageError, StorageUnavailableError

if TYPE_CHECKING:
    from invokeai_postgres.settings import PostgresSettings

logger = logging.getLogger("invokeai.postgres")
# psycopg_pool logs every failed connection attempt while a server is away; the stores say it once
# per operation, naming the server. An application that set the pool's level keeps it.
if logging.getLogger("psycopg.pool").level == logging.NOTSET:
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

#: A migration runs statements on the connection it is given (inside the migration's transaction).
Migration = Callable[["SqlConnection"], None]


class PostgresError(StorageError):
    """The database failed (not the caller's fault); the message names the server."""


class PostgresUnavailableError(PostgresError, StorageUnavailableError):
    """The server cannot be reached now (down, restarting, refusing connections, pool exhausted)."""


def safe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", dsn)


def _where(dsn: str) -> str:
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return safe_dsn(dsn)
    host, port, name = info.get("host", "localhost"), info.get("port", "5432"), info.get("dbname", "")
    return f"{host}:{port}" + (f"/{name}" if name else "")


def _qmarks(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class SqlConnection:
    """A psycopg connection that takes `?` placeholders (the kernel's SQL), with `executemany`."""

    __slots__ = ("conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """A cursor (`fetchone`, `fetchall`, `rowcount`); rows are tuples."""
        return self.conn.execute(_qmarks(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cur = self.conn.cursor()
        cur.executemany(_qmarks(sql), list(rows))
        return cur


class PostgresDatabase:
    """A pool of connections to one database and schema; see the module docstring."""

    _open: ClassVar[weakref.WeakValueDictionary[tuple[str, str], PostgresDatabase]] = weakref.WeakValueDictionary()
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def open(cls, settings: PostgresSettings) -> PostgresDatabase:
        """The live database for these settings in this process, opened (and connected) if needed."""
        key = (settings.dsn, settings.db_schema)
        with cls._open_lock:
            db = cls._open.get(key)
            if db is None or db.closed:
                db = cls(settings)
                cls._open[key] = db
            return db

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.dsn = settings.dsn
        self.schema = settings.db_schema
        #: Where the database is, for messages (host:port/name, no password).
        self.where = _where(settings.dsn)
        self.closed = False
        self._before_close: list[weakref.WeakMethod[Callable[[], None]]] = []
        self._listeners: dict[str, list[Callable[[str], None]]] = {}
        self._listen_lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._listen_stop = threading.Event()
        try:
            psycopg.conninfo.conninfo_to_dict(settings.dsn)
        except psycopg.ProgrammingError as e:
            raise PostgresError(f"plugins.postgres.dsn: not a valid connection string ({e})") from None
        self.pool = ConnectionPool(
            settings.dsn,
            min_size=1,
            max_size=settings.pool_size,
            open=False,
            timeout=settings.connect_timeout,
            check=ConnectionPool.check_connection,
            reconnect_timeout=0,  # never give up on the server: it may come back
            kwargs={"connect_timeout": max(1, round(settings.connect_timeout)), "autocommit": False},
            configure=self._configure,
            name="invokeai-postgres",
        )
        try:
            self.pool.open(wait=True, timeout=settings.connect_timeout)
        except PoolTimeout:
            self.pool.close(timeout=0)
            self.closed = True
            raise PostgresUnavailableError(
                f"cannot connect to PostgreSQL at {self.where} (waited {settings.connect_timeout:g} s): is the "
                "server running, and plugins.postgres.dsn right?"
            ) from None
        with self.transaction() as conn:
            # IF NOT EXISTS is not safe against a concurrent creator: processes starting together queue up
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"invokeai-schema:{self.schema}",))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.schema}.schema_versions "
                "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"SET search_path TO {self.schema}")  # the schema is checked by the settings pattern
        conn.commit()

    # -- errors -----------------------------------------------------------------------------------
    def error(self, e: BaseException) -> BaseException:
        """The plugin's error for a psycopg or pool error (others pass through unchanged)."""
        if isinstance(e, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return PostgresUnavailableError(f"PostgreSQL at {self.where} is unreachable: {detail}")
        if (isinstance(e, psycopg.DataError) and "0x00" in str(e)) or (isinstance(e, ValueError) and "NUL" in str(e)):
            return InvalidTextError((), "text with a NUL character cannot be stored in PostgreSQL; nothing was stored")
        if isinstance(e, UnicodeEncodeError):
            bad = e.object[e.start : e.start + 1]
            return InvalidTextError((), f"{bad!r} (a lone surrogate) cannot be encoded as UTF-8; nothing was stored")
        if type(e).__name__ == "PydanticSerializationError" and "surrogates not allowed" in str(e):
            return InvalidTextError((), f"{e}; nothing was stored")
        if isinstance(e, psycopg.errors.InternalError | psycopg.errors.SystemError):
            return PostgresError(f"PostgreSQL at {self.where} failed: {e}")
        return e

    # -- use --------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[SqlConnection]:
        """A transaction on a pooled connection, committed on success and rolled back on error."""
        self._check_open()
        try:
            with self.pool.connection() as conn, conn.transaction():
                yield SqlConnection(conn)
        except (PostgresError, InvalidTextError):
            raise
        except BaseException as e:
            mapped = self.error(e)
            if mapped is e:
                raise
            raise mapped from None

    read = transaction  # reads see one snapshot per statement; the same pooled path

    def _check_open(self) -> None:
        if self.closed:
            raise PostgresError(f"the PostgreSQL pool for {self.where} is closed")

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Bring `component`'s tables to the latest version; returns it."""
        target = len(migrations)
        with self.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('invokeai-migrate:' || current_schema()))")
            row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
            current = int(row[0]) if row else 0
            if current > target:
                raise PostgresError(
                    f"the database at {self.where} holds {component} schema version {current}, but this version of "
                    f"invokeai-postgres knows only up to {target}: upgrade invokeai-postgres or use another schema"
                )
            for version in range(current, target):
                migrations[version](conn)
            if target != current:
                conn.execute(
                    "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    (component, target),
                )
        return target

    def schema_version(self, component: str) -> int:
        with self.read() as conn:
            row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
        return int(row[0]) if row else 0

    # -- notifications ----------------------------------------------------------------------------
    def listen(self, channel: str, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(payload)` for every NOTIFY on `channel` (from the listener thread); returns
        the function that stops it."""
        with self._listen_lock:
            self._listeners.setdefault(channel, []).append(callback)
            if self._listener is None:
                self._listen_stop.clear()
                self._listener = threading.Thread(
                    target=self._listen_loop, name="invokeai-postgres-listen", daemon=True
                )
                self._listener.start()

        def stop() -> None:
            with self._listen_lock:
                callbacks = self._listeners.get(channel, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not any(self._listeners.values()):
                    self._listen_stop.set()

        return stop

    def _listen_loop(self) -> None:
        """One autocommit connection LISTENing on every channel; reconnects with backoff, and wakes
        every listener after a reconnect (notifications sent meanwhile were lost)."""
        delay = 0.1
        first = True
        while not self._listen_stop.is_set() and not self.closed:
            try:
                with psycopg.Connection.connect(
                    self.dsn, autocommit=True, connect_timeout=max(1, round(self.settings.connect_timeout))
                ) as conn:
                    with self._listen_lock:
                        channels = list(self._listeners)
                    for channel in channels:
                        conn.execute(f"LISTEN {channel}")
                    if not first:
                        self._dispatch_all("")
                    first, delay = False, 0.1
                    while not self._listen_stop.is_set() and not self.closed:
                        for note in conn.notifies(timeout=1.0):
                            self._dispatch(note.channel, note.payload)
                        with self._listen_lock:
                            added = [c for c in self._listeners if c not in channels]
                        for channel in added:
                            conn.execute(f"LISTEN {channel}")
                            channels.append(channel)
            except (psycopg.Error, OSError):
                if self._listen_stop.wait(delay):
                    break
                delay = min(delay * 2, 2.0)
        with self._listen_lock:
            self._listener = None

    def _dispatch(self, channel: str, payload: str) -> None:
        with self._listen_lock:
            callbacks = list(self._listeners.get(channel, []))
        for callback in callbacks:
            try:
                callback(payload)
            except Exception:
                logger.exception("a PostgreSQL notification handler failed")

    def _dispatch_all(self, payload: str) -> None:
        with self._listen_lock:
            channels = list(self._listeners)
        for channel in channels:
            self._dispatch(channel, payload)

    # -- closing ----------------------------------------------------------------------------------
    def before_close(self, commit: Callable[[], None]) -> None:
        """Call `commit` (a bound method, held weakly) before the pool closes."""
        self._before_close.append(weakref.WeakMethod(commit))

    def close(self) -> None:
        if self.closed:
            return
        for ref in self._before_close:
            commit = ref()
            if commit is not None:
                try:
                    commit()
                except StorageError:
                    logger.warning("committing buffered writes at close failed (the server is unreachable)")
        self.closed = True
        self._listen_stop.set()
        self.pool.close(timeout=2)

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.where!r}, schema={self.schema!r})"
