"""Built-in plugin `core`: the flow nodes and the default service implementations.

It goes through the same hooks as third-party plugins (and cannot be blocked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from invokeai_core.hookspecs import ServiceRegistrar, hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def register_invocations(register: Callable[[Any], None]) -> None:
    from invokeai_core.invocations.flow import CollectInvocation, IterateInvocation

    register(IterateInvocation)
    register(CollectInvocation)


@hookimpl
def register_services(register: ServiceRegistrar) -> None:
    s = "invokeai_core.services"
    register(
        "images",
        "local",
        f"{s}.images_local:LocalImageFileStorage",
        description="PNG files and WebP thumbnails under <root>/outputs",
        default=True,
    )
    register(
        "image_records",
        "sqlite",
        f"{s}.sqlite_image_records:SqliteImageRecordStorage",
        description="Image records in the SQLite database <root>/invokeai.db",
        default=True,
    )
    register(
        "image_records",
        "memory",
        f"{s}.memory:MemoryImageRecordStorage",
        description="Image records in memory (lost on exit)",
    )
    register(
        "objects",
        "memory",
        f"{s}.objects_memory:MemoryObjectStorage",
        description="Objects in memory, least recently used spilled to <root>/objects",
        default=True,
    )
    register(
        "sessions",
        "sqlite",
        f"{s}.sqlite_sessions:SqliteSessionStorage",
        description="Sessions in the SQLite database <root>/invokeai.db, persisted node by node",
        default=True,
    )
    register(
        "sessions",
        "memory",
        f"{s}.memory:MemorySessionStorage",
        description="Sessions in memory (lost on exit)",
    )
    register(
        "queue",
        "sqlite",
        f"{s}.sqlite_queue:SqliteSessionQueue",
        description="The session queue in the SQLite database <root>/invokeai.db (survives restarts and crashes)",
        default=True,
    )
    register(
        "queue",
        "memory",
        f"{s}.memory:MemorySessionQueue",
        description="The session queue in memory (lost on exit)",
    )
    register(
        "workflows",
        "sqlite",
        f"{s}.sqlite_workflows:SqliteWorkflowStorage",
        description="The workflow library (every save a version) in the SQLite database <root>/invokeai.db",
        default=True,
    )
    register(
        "workflows",
        "memory",
        f"{s}.memory:MemoryWorkflowStorage",
        description="The workflow library in memory (lost on exit)",
    )
    register(
        "events",
        "memory",
        "invokeai_core.events:InProcessEventBus",
        description="In-process, synchronous event bus",
        default=True,
    )
    register(
        "cache",
        "memory",
        f"{s}.memory:MemoryOutputCache",
        description="In-memory LRU of node outputs (cache_size entries)",
        default=True,
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    from invokeai_core.cli.queue_commands import queue_group, sessions_group
    from invokeai_core.cli.workflow_commands import workflows_group

    cli.add_command(queue_group)
    cli.add_command(sessions_group)
    cli.add_command(workflows_group)
