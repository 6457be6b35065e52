"""The kernel's service contracts, run against the PostgreSQL stores on a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import pg_settings
from invokeai_postgres.db import PostgresDatabase
from invokeai_postgres.image_records import PostgresImageRecordStorage
from invokeai_postgres.queue import PostgresSessionQueue
from invokeai_postgres.sessions import PostgresSessionStorage
from invokeai_postgres.workflows import PostgresWorkflowStorage

from invokeai_core import NodeRegistry, SessionQueueBase
from invokeai_core.testing.contracts import (
    ImageRecordStoreContract,
    SessionQueueContract,
    SessionStoreContract,
    WorkflowStoreContract,
)


def _own_pool(db: PostgresDatabase) -> PostgresDatabase:
    """Another pool on the same database, as a restarted process has."""
    return PostgresDatabase(db.settings)


@pytest.fixture
def closing() -> Iterator[list[PostgresDatabase]]:
    pools: list[PostgresDatabase] = []
    yield pools
    for db in pools:
        db.close()


class TestPostgresImageRecords(ImageRecordStoreContract):
    persistent = True

    @pytest.fixture
    def store(self, pg_dsn: str, closing: list[PostgresDatabase]) -> PostgresImageRecordStorage:
        db = PostgresDatabase(pg_settings(pg_dsn))
        closing.append(db)
        self._closing = closing
        return PostgresImageRecordStorage(db=db)

    def reopen(self, store: PostgresImageRecordStorage) -> PostgresImageRecordStorage:  # type: ignore[override]
        db = _own_pool(store.db)
        self._closing.append(db)
        return PostgresImageRecordStorage(db=db)


class TestPostgresSessions(SessionStoreContract):
    persistent = True

    @pytest.fixture
    def store(
        self, pg_dsn: str, contract_registry: NodeRegistry, closing: list[PostgresDatabase]
    ) -> PostgresSessionStorage:
        db = PostgresDatabase(pg_settings(pg_dsn))
        closing.append(db)
        self._closing = closing
        return PostgresSessionStorage(db=db, registry=contract_registry)

    def reopen(self, store: PostgresSessionStorage) -> PostgresSessionStorage:  # type: ignore[override]
        db = _own_pool(store.db)
        self._closing.append(db)
        return PostgresSessionStorage(db=db, registry=store.registry)


class TestPostgresQueue(SessionQueueContract):
    persistent = True

    @pytest.fixture
    def make_queue(
        self, pg_dsn: str, contract_registry: NodeRegistry, closing: list[PostgresDatabase]
    ) -> Callable[[int], SessionQueueBase]:
        self._closing = closing

        def make(max_size: int) -> SessionQueueBase:
            db = PostgresDatabase(pg_settings(pg_dsn))
            closing.append(db)
            return PostgresSessionQueue(db=db, max_size=max_size, registry=contract_registry)

        return make

    def reopen(self, queue: PostgresSessionQueue) -> PostgresSessionQueue:  # type: ignore[override]
        db = _own_pool(queue.db)
        self._closing.append(db)
        return PostgresSessionQueue(db=db, max_size=queue.max_size, registry=queue.registry)


class TestPostgresWorkflows(WorkflowStoreContract):
    persistent = True

    @pytest.fixture
    def store(
        self, pg_dsn: str, contract_registry: NodeRegistry, closing: list[PostgresDatabase]
    ) -> PostgresWorkflowStorage:
        db = PostgresDatabase(pg_settings(pg_dsn))
        closing.append(db)
        self._closing = closing
        return PostgresWorkflowStorage(db=db, registry=contract_registry)

    def reopen(self, store: PostgresWorkflowStorage) -> PostgresWorkflowStorage:  # type: ignore[override]
        db = _own_pool(store.db)
        self._closing.append(db)
        return PostgresWorkflowStorage(db=db, registry=store.registry)
