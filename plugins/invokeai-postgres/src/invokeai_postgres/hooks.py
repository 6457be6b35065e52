"""Entry point of the plugin (group `invokeai.plugins`, name `postgres`).

Registering costs four strings: the store modules (and with them psycopg) are imported by the
kernel only when the configuration selects `services.<kind> = "postgres"`.
"""

from __future__ import annotations

from invokeai_core import ServiceRegistrar, hookimpl

_HINT = "pip install invokeai-postgres (it brings psycopg 3 and psycopg_pool)"


@hookimpl
def register_services(register: ServiceRegistrar) -> None:
    register(
        "sessions",
        "postgres",
        "invokeai_postgres.sessions:PostgresSessionStorage",
        description="Sessions on PostgreSQL, persisted node by node; settings in [plugins.postgres]",
        install_hint=_HINT,
    )
    register(
        "image_records",
        "postgres",
        "invokeai_postgres.image_records:PostgresImageRecordStorage",
        description="Image records on PostgreSQL; settings in [plugins.postgres]",
        install_hint=_HINT,
    )
    register(
        "workflows",
        "postgres",
        "invokeai_postgres.workflows:PostgresWorkflowStorage",
        description="The workflow library on PostgreSQL (shared by every server); settings in [plugins.postgres]",
        install_hint=_HINT,
    )
    register(
        "queue",
        "postgres",
        "invokeai_postgres.queue:PostgresSessionQueue",
        description="The session queue on PostgreSQL: many processors on one database (SKIP LOCKED), "
        "woken by LISTEN/NOTIFY; settings in [plugins.postgres]",
        install_hint=_HINT,
    )
