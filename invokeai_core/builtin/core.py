"""Built-in plugin `core`: the flow nodes and the default service implementations.

It goes through the same hooks as third-party plugins (and cannot be blocked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from invokeai_core.hookspecs import ServiceRegistrar, hookimpl


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
        "memory",
        f"{s}.memory:MemoryImageRecordStorage",
        description="Image records in memory (lost on exit)",
        default=True,
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
        "memory",
        f"{s}.memory:MemorySessionStorage",
        description="Sessions in memory (lost on exit)",
        default=True,
    )
    register(
        "queue",
        "memory",
        f"{s}.memory:MemorySessionQueue",
        description="The session queue in memory (lost on exit)",
        default=True,
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
