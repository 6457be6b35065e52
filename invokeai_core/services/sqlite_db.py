"""The SQLite database the kernel's persistent stores share: one file in the root folder.

* **One connection per file per process**, shared by every store (`SqliteDatabase.open` hands out
  the same live instance for the same path) and serialised by a lock: stores in one process never
  contend for SQLite's file lock, and a writer never waits on a sibling connection.
* **WAL journal** (`journal_mode=WAL`, `synchronous=NORMAL`): readers never block the writer and a
  commit costs no fsync (the WAL is synced at checkpoints). A committed transaction survives the
  process being killed; only a power failure can lose the last few commits.
* **`busy_timeout`** bounds every wait for another process's lock (`db_busy_timeout`, 5 s by
  default); past it, and for a corrupt file, the error is a `DatabaseError` naming the file and
  what to do, never a hang.
* **Migrations** per component (`sessions`, `image_records`, `queue`, or a plugin's own) in the
  `schema_versions` table: a list of functions, the i-th moving the schema from version i to i+1,
  each run in the same transaction as the version bump. A database written by a newer version is
  refused rather than guessed at.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from invokeai_core.errors import InvalidTextError, StorageError, StorageUnavailableError

if TYPE_CHECKING:
    from invokeai_core.config import InvokeAIConfig

Migration = Callable[[sqlite3.Connection], None]


class DatabaseError(StorageError):
    """The database file cannot be used (corrupt, locked, unreadable, too new). Names the file."""

    def __init__(self, message: str, path: Path | str) -> None:
        self.path = str(path)
        super().__init__(message)


class DatabaseBusyError(DatabaseError, StorageUnavailableError):
    """Another process held the database's lock for longer than `db_busy_timeout`."""


def dumps(value: object) -> str:
    """JSON for a TEXT column, non-ASCII text as is: a lone surrogate then reaches SQLite's UTF-8
    binding, which refuses it, and the transaction raises `InvalidTextError` with nothing stored
    (`\\ud800` escapes would be stored and read back as text nothing can encode)."""
    return json.dumps(value, ensure_ascii=False)


def database_path(config: InvokeAIConfig | None) -> Path:
    if config is None:
        return Path("invokeai.db").resolve()
    return config.db_file


def _is_surrogate_serialization(e: BaseException) -> bool:
    from pydantic_core import PydanticSerializationError

    return isinstance(e, PydanticSerializationError) and "surrogates not allowed" in str(e)


class SqliteDatabase:
    """A connection to one database file, with transactions and migrations. See the module doc."""

    _open: ClassVar[weakref.WeakValueDictionary[str, SqliteDatabase]] = weakref.WeakValueDictionary()
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, *, busy_timeout: float = 5.0) -> SqliteDatabase:
        """The live database for `path` in this process, opened if needed."""
        resolved = Path(path).expanduser().resolve()
        key = str(resolved)
        with cls._open_lock:
            db = cls._open.get(key)
            if db is None or db.closed:
                db = cls(resolved, busy_timeout=busy_timeout)
                cls._open[key] = db
            return db

    @classmethod
    def for_config(cls, config: InvokeAIConfig | None) -> SqliteDatabase:
        timeout = config.db_busy_timeout if config is not None else 5.0
        return cls.open(database_path(config), busy_timeout=timeout)

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._depth = 0
        self.closed = False
        self._before_close: list[weakref.WeakMethod[Callable[[], None]]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseError(f"cannot create the folder of the database {self.path}: {e.strerror}", path) from None
        try:
            conn = sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise self.error(e) from None
        self._conn = conn
        try:
            # Any read of a file that is not a database (or is damaged in its header or schema)
            # fails here, before anything else is attempted.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            self.journal_mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            with self.transaction():
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_versions ("
                    " component TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID"
                )
        except sqlite3.Error as e:
            conn.close()
            self.closed = True
            raise self.error(e) from None
        except BaseException:
            conn.close()
            self.closed = True
            raise

    # -- errors -----------------------------------------------------------------------------------
    def error(self, e: sqlite3.Error) -> DatabaseError:
        """A `DatabaseError` naming the file, with what to do about `e`."""
        text = str(e)
        low = text.lower()
        if "locked" in low or "busy" in low:
            return DatabaseBusyError(
                f"the database {self.path} is locked by another process (waited {self.busy_timeout:g} s): "
                "stop the process holding it, or raise db_busy_timeout",
                self.path,
            )
        if "not a database" in low or "malformed" in low or "corrupt" in low:
            message = (
                f"the database {self.path} is corrupt or not a SQLite database ({text}); move it aside "
                f"(e.g. to {self.path.name}.corrupt) to start with an empty one"
            )
        elif "unable to open" in low or "readonly" in low or "read-only" in low:
            message = f"cannot open the database {self.path}: {text} (check the path and its permissions)"
        else:
            message = f"the database {self.path} failed: {text}"
        return DatabaseError(message, self.path)

    @staticmethod
    def _is_database_failure(e: BaseException) -> bool:
        # Integrity and programming errors are bugs or caller errors: they pass through unchanged.
        return isinstance(e, sqlite3.OperationalError) or type(e) is sqlite3.DatabaseError

    # -- use ----------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (`BEGIN IMMEDIATE`), committed on success and rolled back on error.
        Re-entrant: a nested use joins the outer transaction."""
        with self._lock:
            self._check_open()
            conn = self._conn
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise self.error(e) from None
            self._depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if self._is_database_failure(e):
                    raise self.error(e) from None  # type: ignore[arg-type]
                if isinstance(e, UnicodeEncodeError):
                    raise self.text_error(e) from None
                if _is_surrogate_serialization(e):  # a model's JSON (pydantic) with such text
                    raise InvalidTextError((), f"{e}; nothing was stored") from None
                raise
            finally:
                self._depth = 0

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads (each statement sees a consistent snapshot)."""
        with self._lock:
            self._check_open()
            try:
                yield self._conn
            except sqlite3.Error as e:
                if self._is_database_failure(e):
                    raise self.error(e) from None
                raise
            except UnicodeEncodeError as e:
                raise self.text_error(e) from None

    def text_error(self, e: UnicodeEncodeError) -> InvalidTextError:
        """SQLite stores UTF-8 only: a lone surrogate in a value is refused (the transaction rolled back)."""
        bad = e.object[e.start : e.start + 1]
        return InvalidTextError((), f"{bad!r} (a lone surrogate) cannot be encoded as UTF-8; nothing was stored")

    def _check_open(self) -> None:
        if self.closed:
            raise DatabaseError(f"the database {self.path} is closed", self.path)

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Bring `component`'s tables to the latest version; returns it."""
        target = len(migrations)
        with self.transaction() as conn:
            row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
            current = int(row[0]) if row else 0
            if current > target:
                raise DatabaseError(
                    f"the database {self.path} holds {component} schema version {current}, but this version of "
                    f"invokeai-core knows only up to {target}: upgrade invokeai-core or use another root folder",
                    self.path,
                )
            for version in range(current, target):
                migrations[version](conn)
            if target != current:
                conn.execute(
                    "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, target),
                )
        return target

    def schema_version(self, component: str) -> int:
        with self.read() as conn:
            row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
        return int(row[0]) if row else 0

    def before_close(self, commit: Callable[[], None]) -> None:
        """Call `commit` (a bound method, held weakly) when the database is closed, before it is:
        a store that buffers writes (group commit) loses nothing on an orderly close."""
        self._before_close.append(weakref.WeakMethod(commit))

    def close(self) -> None:
        if not self.closed:  # outside the lock: a store commits with its own lock, then this one
            for ref in self._before_close:
                commit = ref()
                if commit is not None:
                    commit()
        with self._lock:
            if not self.closed:
                self.closed = True
                self._conn.close()

    def __repr__(self) -> str:
        return f"SqliteDatabase({str(self.path)!r})"
