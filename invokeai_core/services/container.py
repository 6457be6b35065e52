"""Builds the configured service implementations, lazily, and hands them out by kind or ABC.

The event bus is built first, from the configuration alone; every other service is built with a
`ServiceRuntime` (configuration, node registry, event bus; see `invokeai_core.runtime`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from invokeai_core.errors import InvokeAIError, ServiceUnavailableError
from invokeai_core.events import EventServiceBase
from invokeai_core.runtime import ServiceRuntime, call_lifecycle, construct
from invokeai_core.services.base import (
    ImageFileStorageBase,
    ImageRecordStorageBase,
    ObjectStorageBase,
    OutputCacheBase,
    SessionQueueBase,
    SessionStorageBase,
    WorkflowStorageBase,
)
from invokeai_core.services.image_service import ImageService

if TYPE_CHECKING:
    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.invoker import Invoker
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.services.registry import ServiceRegistry

S = TypeVar("S")

#: The kinds the kernel itself needs, with the ABC each implementation must subclass.
KERNEL_KINDS: dict[str, type] = {
    "images": ImageFileStorageBase,
    "image_records": ImageRecordStorageBase,
    "objects": ObjectStorageBase,
    "sessions": SessionStorageBase,
    "queue": SessionQueueBase,
    "events": EventServiceBase,
    "cache": OutputCacheBase,
    "workflows": WorkflowStorageBase,
}


class Services:
    """The service container: `registry` names the implementations, `nodes` is the node registry
    handed to them. `instances` pre-sets implementations (tests)."""

    def __init__(
        self,
        config: InvokeAIConfig,
        registry: ServiceRegistry,
        nodes: NodeRegistry,
        instances: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.nodes = nodes
        self._instances: dict[str, Any] = dict(instances or {})
        self._lock = threading.RLock()
        self._image_service: ImageService | None = None
        self._runtime: ServiceRuntime | None = None

    @property
    def runtime(self) -> ServiceRuntime:
        """What every service but the event bus is built with."""
        if self._runtime is None:
            self._runtime = ServiceRuntime(config=self.config, registry=self.nodes, events=self.events)
        return self._runtime

    def selected_name(self, kind: str) -> str:
        chosen = self.config.services.selected().get(kind)
        if chosen:
            return chosen
        default = self.registry.default_name(kind)
        if default is None:
            known = ", ".join(self.registry.names(kind)) or "none"
            raise ServiceUnavailableError(
                f"no {kind} implementation is selected (set services.{kind} in invokeai.toml; available: {known})"
            )
        return default

    def _build(self, kind: str) -> Any:
        name = self.selected_name(kind)
        cls = self.registry.load_class(kind, name)
        expected = KERNEL_KINDS.get(kind)
        if expected is not None and not issubclass(cls, expected):
            raise ServiceUnavailableError(
                f"{kind} implementation '{name}' ({cls.__module__}.{cls.__name__}) is not a {expected.__name__}"
            )
        runtime = None if kind == "events" else self.runtime
        try:
            return construct(cls, self.config, runtime)
        except InvokeAIError:
            raise  # already one clear line (a locked database, an unreachable server, a bad setting)
        except Exception as e:
            plugin = self.registry.get(kind, name).plugin
            raise ServiceUnavailableError(
                f"{kind} implementation '{name}' from plugin '{plugin}' failed to start: {type(e).__name__}: {e}"
            ) from e

    # `Callable[..., S]` rather than `type[S]`: type checkers refuse an abstract class for `type[S]`.
    @overload
    def get(self, kind: str) -> Any: ...
    @overload
    def get(self, kind: Callable[..., S]) -> S: ...

    def get(self, kind: Any) -> Any:
        """An implementation by kind name, or the one implementing an ABC."""
        if not isinstance(kind, str | type):
            raise TypeError(f"services.get() takes a kind name or a class, not {kind!r}")
        if isinstance(kind, str):
            inst = self._instances.get(kind)
            if inst is not None:
                return inst
            with self._lock:
                if kind not in self._instances:
                    self._instances[kind] = self._build(kind)
                return self._instances[kind]
        for inst in list(self._instances.values()):
            if isinstance(inst, kind):
                return inst
        for k in self.registry.kinds():
            if k in self._instances:
                continue
            try:
                cls = self.registry.load_class(k, self.selected_name(k))
            except ServiceUnavailableError:
                continue
            if issubclass(cls, kind):
                return self.get(k)
        raise ServiceUnavailableError(f"no service implements {kind.__name__} (is the plugin providing it installed?)")

    def build_all(self) -> None:
        """Build every kernel kind now (the event bus first), so a configuration error surfaces
        before anything runs."""
        self.get("events")
        for kind in KERNEL_KINDS:
            self.get(kind)

    @property
    def images(self) -> ImageFileStorageBase:
        return cast(ImageFileStorageBase, self.get("images"))

    @property
    def image_records(self) -> ImageRecordStorageBase:
        return cast(ImageRecordStorageBase, self.get("image_records"))

    @property
    def objects(self) -> ObjectStorageBase:
        return cast(ObjectStorageBase, self.get("objects"))

    @property
    def sessions(self) -> SessionStorageBase:
        return cast(SessionStorageBase, self.get("sessions"))

    @property
    def queue(self) -> SessionQueueBase:
        return cast(SessionQueueBase, self.get("queue"))

    @property
    def events(self) -> EventServiceBase:
        return cast(EventServiceBase, self.get("events"))

    @property
    def cache(self) -> OutputCacheBase:
        return cast(OutputCacheBase, self.get("cache"))

    @property
    def workflows(self) -> WorkflowStorageBase:
        return cast(WorkflowStorageBase, self.get("workflows"))

    @property
    def image_service(self) -> ImageService:
        if self._image_service is None:
            self._image_service = ImageService(self.images, self.image_records)
        return self._image_service

    def built(self) -> dict[str, Any]:
        return dict(self._instances)

    def start(self, invoker: Invoker | None = None) -> None:
        """Call every built service's `start()` (a legacy `start(invoker)` gets `invoker`)."""
        for inst in list(self._instances.values()):
            call_lifecycle(inst, "start", invoker)

    def stop(self, invoker: Invoker | None = None) -> None:
        """Call every built service's `stop()`, in reverse order of building."""
        for inst in reversed(list(self._instances.values())):
            call_lifecycle(inst, "stop", invoker)
