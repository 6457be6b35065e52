"""Typed events and the in-process event bus.

Every event is a pydantic model with a class-level `event_name` (the names in DESIGN.md). Emitters
check `bus.has_subscribers(name)` first so an event nobody listens to costs nothing to build; the
engine's per-node overhead depends on that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

logger = logging.getLogger("invokeai.events")


class EventBase(BaseModel):
    """Fields every event carries."""

    event_name: ClassVar[str]

    timestamp: float = Field(default_factory=time.time, description="Unix time the event was emitted")
    session_id: str | None = Field(default=None, description="The session this event is about")
    queue_id: str | None = Field(default=None, description="The queue, for queue-driven sessions")
    item_id: int | None = Field(default=None, description="The queue item, for queue-driven sessions")

    def payload(self) -> dict[str, Any]:
        """The JSON-ready body, with the event name."""
        return {"event": self.event_name, **self.model_dump(mode="json")}


class _NodeEvent(EventBase):
    node_id: str = Field(description="The prepared (executed) node id")
    source_node_id: str = Field(description="The node id in the graph the session was built from")
    invocation_type: str = Field(description="The node's type id")


class InvocationStartedEvent(_NodeEvent):
    event_name: ClassVar[str] = "invocation_started"


class ProgressImage(BaseModel):
    """A small preview image, as a data URL."""

    width: int
    height: int
    dataURL: str


class InvocationProgressEvent(_NodeEvent):
    event_name: ClassVar[str] = "invocation_progress"
    step: int = Field(description="The current step (1-based)")
    total: int = Field(description="The number of steps")
    message: str | None = None
    image: ProgressImage | None = None


class InvocationCompleteEvent(_NodeEvent):
    event_name: ClassVar[str] = "invocation_complete"
    result: dict[str, Any] = Field(description="The node's output, as JSON")
    cached: bool = Field(default=False, description="Whether the output came from the output cache")


class InvocationErrorEvent(_NodeEvent):
    event_name: ClassVar[str] = "invocation_error"
    error_type: str
    error_message: str
    error_traceback: str


class SessionStartedEvent(EventBase):
    event_name: ClassVar[str] = "session_started"


class SessionCompleteEvent(EventBase):
    event_name: ClassVar[str] = "session_complete"
    status: Literal["completed", "failed", "canceled"] = "completed"


class SessionCanceledEvent(EventBase):
    event_name: ClassVar[str] = "session_canceled"


class QueueItemStatusChangedEvent(EventBase):
    """A queue item changed status. Queue events always name their queue and item."""

    event_name: ClassVar[str] = "queue_item_status_changed"
    session_id: str = Field(description="The session the queue item runs")
    queue_id: str = Field(description="The queue")
    item_id: int = Field(description="The queue item")
    batch_id: str
    status: str
    error_type: str | None = None
    error_message: str | None = None


class BatchEnqueuedEvent(EventBase):
    event_name: ClassVar[str] = "batch_enqueued"
    queue_id: str = Field(description="The queue")
    batch_id: str
    enqueued: int
    requested: int
    priority: int = 0


class ModelLoadStartedEvent(EventBase):
    event_name: ClassVar[str] = "model_load_started"
    model_name: str
    submodel: str | None = None


class ModelLoadCompleteEvent(EventBase):
    event_name: ClassVar[str] = "model_load_complete"
    model_name: str
    submodel: str | None = None
    seconds: float = 0.0


class ModelUnloadedEvent(EventBase):
    """A loaded model component left the cache (evicted for room, or dropped): a worker advertising
    the models it holds (invokeai-temporal's model affinity) stops advertising it."""

    event_name: ClassVar[str] = "model_unloaded"
    model_name: str
    submodel: str | None = None


ALL_EVENTS: tuple[type[EventBase], ...] = (
    InvocationStartedEvent,
    InvocationProgressEvent,
    InvocationCompleteEvent,
    InvocationErrorEvent,
    SessionStartedEvent,
    SessionCompleteEvent,
    SessionCanceledEvent,
    QueueItemStatusChangedEvent,
    BatchEnqueuedEvent,
    ModelLoadStartedEvent,
    ModelLoadCompleteEvent,
    ModelUnloadedEvent,
)

Handler = Callable[[EventBase], None]


class _Subscription:
    __slots__ = ("handler", "names", "queue_id", "session_id")

    def __init__(
        self, handler: Handler, names: frozenset[str] | None, session_id: str | None, queue_id: str | None
    ) -> None:
        self.handler = handler
        self.names = names
        self.session_id = session_id
        self.queue_id = queue_id

    def wants(self, event: EventBase) -> bool:
        if self.names is not None and event.event_name not in self.names:
            return False
        if self.session_id is not None and event.session_id != self.session_id:
            return False
        return not (self.queue_id is not None and event.queue_id != self.queue_id)


class EventServiceBase:
    """The `events` service: publish events, subscribe handlers. Implementations may fan out."""

    def emit(self, event: EventBase) -> None:
        raise NotImplementedError

    def subscribe(
        self,
        handler: Handler,
        *,
        names: list[str] | None = None,
        session_id: str | None = None,
        queue_id: str | None = None,
    ) -> Callable[[], None]:
        """Call `handler` for matching events; returns a function that unsubscribes."""
        raise NotImplementedError

    def has_subscribers(self, name: str) -> bool:
        raise NotImplementedError


class InProcessEventBus(EventServiceBase):
    """Synchronous in-process dispatch. A failing handler is logged and never breaks the emitter."""

    def __init__(self, config: Any = None) -> None:
        self._subs: list[_Subscription] = []
        self._lock = threading.Lock()
        self._names: dict[str, int] = {}
        self._wildcards = 0

    def emit(self, event: EventBase) -> None:
        for sub in self._subs:  # the list is replaced, never mutated in place
            if sub.wants(event):
                try:
                    sub.handler(event)
                except Exception:
                    logger.exception("event handler %r failed on %s", sub.handler, event.event_name)

    def subscribe(
        self,
        handler: Handler,
        *,
        names: list[str] | None = None,
        session_id: str | None = None,
        queue_id: str | None = None,
    ) -> Callable[[], None]:
        sub = _Subscription(handler, frozenset(names) if names else None, session_id, queue_id)
        with self._lock:
            self._subs = [*self._subs, sub]
            self._recount()

        def unsubscribe() -> None:
            with self._lock:
                self._subs = [s for s in self._subs if s is not sub]
                self._recount()

        return unsubscribe

    def _recount(self) -> None:
        names: dict[str, int] = {}
        wild = 0
        for s in self._subs:
            if s.names is None:
                wild += 1
            else:
                for n in s.names:
                    names[n] = names.get(n, 0) + 1
        self._names, self._wildcards = names, wild

    def has_subscribers(self, name: str) -> bool:
        return self._wildcards > 0 or name in self._names
