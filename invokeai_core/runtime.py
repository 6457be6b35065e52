"""What a service is handed when it is built, and how to build a service from its class.

The composition root (`Invoker.from_config`) builds, in this order: the plugin host, its node
registry, the event bus, then every other service. Each service after the event bus is constructed
as `Impl(config, runtime=ServiceRuntime(...))` when its `__init__` accepts a `runtime` keyword, so a
store gets the registry it parses graphs against and the bus it emits on without reaching back up
to the Invoker. A class that takes only `Impl(config)` (the first release's contract) still works.

Services may define `start()` and `stop()`, called when the Invoker starts and stops. The first
release's `start(invoker)` / `stop(invoker)` still work for one minor version, with a
`DeprecationWarning` (see docs/plugins.md).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.events import EventServiceBase
    from invokeai_core.registry import NodeRegistry


@dataclass(frozen=True)
class ServiceRuntime:
    """The narrow view of the process a service is built with: no Invoker, no other services."""

    config: InvokeAIConfig
    #: The node registry graphs and sessions are parsed against.
    registry: NodeRegistry
    #: The event bus to emit on (queue status changes, batches).
    events: EventServiceBase


def accepts_runtime(cls: type) -> bool:
    """Whether `cls(config, runtime=...)` is how `cls` wants to be built."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return "runtime" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def construct(cls: type, config: InvokeAIConfig, runtime: ServiceRuntime | None) -> Any:
    """Build a service: `cls(config, runtime=runtime)` if it takes a runtime, else `cls(config)`."""
    if runtime is not None and accepts_runtime(cls):
        return cls(config, runtime=runtime)
    return cls(config)


def _needs_argument(method: Any) -> bool:
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return False
    return any(
        p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for p in params
    )


def call_lifecycle(service: Any, name: str, invoker: Any) -> None:
    """Call a service's `start()` / `stop()`; a legacy `start(invoker)` gets the Invoker and a
    `DeprecationWarning` naming the class."""
    method = getattr(service, name, None)
    if not callable(method):
        return
    if _needs_argument(method):
        cls = type(service)
        warnings.warn(
            f"{cls.__module__}.{cls.__qualname__}.{name}(invoker) is deprecated: take what the service needs "
            f"from `runtime` in __init__ and define {name}() without arguments (removed in invokeai-core 0.3)",
            DeprecationWarning,
            stacklevel=2,
        )
        method(invoker)
    else:
        method()
