"""The abstract services every implementation (kernel default or plugin) provides.

One ABC per kind in DESIGN.md's table. Implementations are constructed as `Impl(config,
runtime=...)` (or `Impl(config)`, see `invokeai_core.runtime`) and may define `start()` / `stop()`;
they are chosen by name in configuration and imported only when selected (see
`invokeai_core.services.container`).
"""

from __future__ import annotations

import builtins
import datetime as _dt
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from invokeai_core.errors import BatchError, InvokeAIError

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core.batch import Batch
    from invokeai_core.events import EventServiceBase
    from invokeai_core.invocations.baseinvocation import BaseInvocationOutput
    from invokeai_core.invoker import Invoker
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.session import Session
    from invokeai_core.workflows import Workflow, WorkflowIn, WorkflowSummary, WorkflowVersion

T = TypeVar("T")


def utcnow() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


class Page(BaseModel, Generic[T]):
    """One page of a paginated listing."""

    items: list[T]
    offset: int = 0
    limit: int = 0
    total: int = 0


# -- images ---------------------------------------------------------------------------------------
class ImageFileStorageBase(ABC):
    """Stores image files (full size and thumbnail). Kind `images`."""

    @abstractmethod
    def save(
        self,
        image_name: str,
        image: Image,
        *,
        metadata: dict[str, str] | None = None,
        thumbnail_size: int = 256,
    ) -> None:
        """Store the PNG (with `metadata` embedded as text chunks) and its thumbnail."""

    @abstractmethod
    def get(self, image_name: str) -> Image:
        """Load the full image. Raises `KeyError` if it does not exist."""

    @abstractmethod
    def get_bytes(self, image_name: str, *, thumbnail: bool = False) -> bytes:
        """The encoded file (PNG, or WebP for thumbnails). Raises `KeyError` if missing."""

    @abstractmethod
    def exists(self, image_name: str) -> bool: ...

    @abstractmethod
    def delete(self, image_name: str) -> None:
        """Delete the image and its thumbnail (no error if already gone)."""

    def get_path(self, image_name: str, *, thumbnail: bool = False) -> str | None:
        """A local file path if the store has one (None for remote stores)."""
        return None

    def get_url(self, image_name: str, *, thumbnail: bool = False) -> str | None:
        """A direct URL if the store serves one (e.g. presigned); None means 'serve through the API'."""
        return None

    def list_names(self) -> list[str] | None:
        """Every stored image name, or None if the store cannot list them cheaply (remote stores).

        Used to collect files a crash left without a record."""
        return None

    def age_seconds(self, image_name: str) -> float | None:
        """How long ago the image was written, if the store knows (None otherwise)."""
        return None


class ImageRecord(BaseModel):
    """What the kernel knows about a stored image."""

    image_name: str
    width: int
    height: int
    mode: str = "RGB"
    session_id: str | None = None
    node_id: str | None = None
    created_at: str = Field(default_factory=utcnow)
    is_intermediate: bool = True
    starred: bool = False
    metadata: dict[str, Any] | None = None
    graph: dict[str, Any] | None = Field(default=None, description="The graph that generated a final image")

    @property
    def field(self) -> Any:
        """This image as an `ImageField` reference for node outputs."""
        from invokeai_core.invocations.fields import ImageField

        return ImageField(image_name=self.image_name)


class ImageRecordStorageBase(ABC):
    """Image records. Kind `image_records`."""

    @abstractmethod
    def save(self, record: ImageRecord) -> None: ...

    @abstractmethod
    def get(self, image_name: str) -> ImageRecord:
        """Raises `KeyError` if unknown."""

    @abstractmethod
    def update(
        self, image_name: str, *, starred: bool | None = None, is_intermediate: bool | None = None
    ) -> ImageRecord: ...

    @abstractmethod
    def delete(self, image_name: str) -> None: ...

    @abstractmethod
    def list(
        self,
        *,
        offset: int = 0,
        limit: int = 50,
        session_id: str | None = None,
        is_intermediate: bool | None = None,
        starred: bool | None = None,
    ) -> Page[ImageRecord]:
        """Newest first."""


# -- objects --------------------------------------------------------------------------------------
class ObjectStorageBase(ABC):
    """Large values by name (latents, conditioning, ...). Kind `objects`."""

    @abstractmethod
    def save(self, obj: Any, name: str | None = None) -> str:
        """Store `obj` and return its name."""

    @abstractmethod
    def load(self, name: str) -> Any:
        """Raises `KeyError` if unknown."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...


# -- sessions -------------------------------------------------------------------------------------
class SessionSummary(BaseModel):
    id: str
    status: str
    nodes: int
    created_at: str
    updated_at: str


class SessionStorageBase(ABC):
    """Sessions (graph plus execution state). Kind `sessions`."""

    @abstractmethod
    def save(self, session: Session) -> None:
        """Store the whole session (insert or replace)."""

    def node_completed(self, session: Session, prepared_id: str) -> None:
        """Persist one node's completion. Stores override this to write incrementally (O(1) per node,
        never the whole session); they may group-commit nodes, then `flush` commits them."""
        self.save(session)

    def flush(self, session_id: str | None = None) -> None:  # noqa: B027 - optional, nothing buffered here
        """Commit what the store buffers of one session (or of all), so other processes see it."""

    @abstractmethod
    def get(self, session_id: str) -> Session:
        """Raises `SessionNotFoundError` if unknown."""

    @abstractmethod
    def delete(self, session_id: str) -> None: ...

    @abstractmethod
    def list(self, *, offset: int = 0, limit: int = 50, query: str | None = None) -> Page[SessionSummary]:
        """Newest first; `query` matches session ids and node types."""


# -- queue ----------------------------------------------------------------------------------------
QueueStatus = Literal["pending", "in_progress", "completed", "failed", "canceled"]
QUEUE_STATUSES: tuple[str, ...] = ("pending", "in_progress", "completed", "failed", "canceled")
FINISHED: frozenset[str] = frozenset({"completed", "failed", "canceled"})
#: Queue ids: 1-128 letters, digits, `_`, `-`, `.`, `:`, starting with a letter or digit.
QUEUE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
DEFAULT_QUEUE_ID = "default"


class QueueError(InvokeAIError):
    """A queue operation was refused; the queue is unchanged."""


class InvalidQueueIdError(QueueError, ValueError):
    """A queue id that is not well formed."""


class QueueItemNotFoundError(QueueError, KeyError):
    """One or more queue item ids do not exist. Also a `KeyError`, like every store's lookups."""

    def __init__(self, item_ids: Iterable[int]) -> None:
        self.item_ids = sorted(set(item_ids))
        shown = ", ".join(str(i) for i in self.item_ids[:10]) + (", ..." if len(self.item_ids) > 10 else "")
        noun = "item" if len(self.item_ids) == 1 else "items"
        super().__init__(f"queue {noun} {shown} {'does' if len(self.item_ids) == 1 else 'do'} not exist")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BatchNotFoundError(QueueError):
    """Batch ids with no item in the queue: `batch_ids` lists them all, the message the first few."""

    def __init__(self, queue_id: str, batch_ids: list[str]) -> None:
        self.queue_id = queue_id
        self.batch_ids = list(batch_ids)
        shown = ", ".join(self.batch_ids[:5]) + (
            f" and {len(self.batch_ids) - 5} more" if len(self.batch_ids) > 5 else ""
        )
        super().__init__(f"no items of batch {shown} in the queue '{queue_id}'")


class QueueItemNotPendingError(QueueError):
    """A move named an item that is not pending (running or finished items keep their place)."""

    def __init__(self, item_id: int, status: str, *, role: str = "item") -> None:
        self.item_id = item_id
        self.status = status
        self.role = role
        super().__init__(f"queue {role} {item_id} is {status}; only pending items can be moved")


class QueueFullError(BatchError, QueueError):
    """Enqueueing would take the queue past `max_queue_size` pending items."""


def check_queue_id(queue_id: Any) -> str:
    """The queue id if it is well formed; `InvalidQueueIdError` otherwise."""
    if not isinstance(queue_id, str) or not QUEUE_ID_RE.match(queue_id):
        raise InvalidQueueIdError(
            f"invalid queue id {queue_id!r}: use 1-128 letters, digits, '_', '-', '.' or ':', "
            "starting with a letter or digit"
        )
    return queue_id


def check_item_ids(item_ids: Any) -> list[int]:
    """A list of integer item ids (bools and other types are refused)."""
    if isinstance(item_ids, int | str) or not isinstance(item_ids, Iterable):
        raise QueueError(f"item ids must be a list of integers, not {type(item_ids).__name__}")
    ids = list(item_ids)
    for i in ids:
        if not isinstance(i, int) or isinstance(i, bool):
            raise QueueError(f"item ids must be integers, not {i!r}")
    return ids


#: Queue priorities are stored as SQLite's 64-bit signed integers.
PRIORITY_STORE_MAX = 2**63 - 1


def prepend_priority(top: int | None, priority: int) -> int:
    """The priority of a prepended batch: above `top` (the highest pending priority of its queue,
    None if none) and at least its own. At the store's maximum it stays there (equal priorities run
    in enqueue order) instead of overflowing."""
    if top is None or top < priority:
        return priority
    return min(top + 1, PRIORITY_STORE_MAX)


MoveTo = Literal["front", "back"]


def check_move(item_id: Any, to: Any, before: Any) -> None:
    """Exactly one of `to` ("front"/"back") and `before` (another item id), integer ids, not itself."""
    check_item_ids([item_id])
    if (to is None) == (before is None):
        raise QueueError("give exactly one of to='front'|'back' or before=ITEM_ID")
    if to is not None and to not in ("front", "back"):
        raise QueueError(f"to must be 'front' or 'back', not {to!r}")
    if before is not None:
        check_item_ids([before])
        if before == item_id:
            raise QueueError(f"cannot move queue item {item_id} before itself")


def status_update_sql(
    item_id: int,
    status: QueueStatus,
    *,
    error_type: str | None = None,
    error_message: str | None = None,
    error_traceback: str | None = None,
    expected: QueueStatus | None = None,
) -> tuple[str, list[Any]]:
    """The `UPDATE queue_items ...` of `SessionQueueBase.set_status` (`?` placeholders) and its
    arguments: the status, its start or finish time, the error if given, only if `expected`. Shared by
    the SQL queues; an unknown status is a `QueueError`."""
    if status not in QUEUE_STATUSES:
        raise QueueError(f"unknown queue item status {status!r} (one of {', '.join(QUEUE_STATUSES)})")
    now = utcnow()
    sets: list[str] = ["status = ?"]
    args: list[Any] = [status]
    if status == "in_progress":
        sets.append("started_at = ?")
        args.append(now)
    if status in FINISHED:
        sets.append("completed_at = ?")
        args.append(now)
    if error_type is not None:
        sets.append("error_type = ?, error_message = ?, error_traceback = ?")
        args += [error_type, error_message, error_traceback]
    where = "item_id = ?" + (" AND status = ?" if expected is not None else "")
    args += [item_id] if expected is None else [item_id, expected]
    return f"UPDATE queue_items SET {', '.join(sets)} WHERE {where}", args


class QueueItem(BaseModel):
    item_id: int
    queue_id: str
    batch_id: str
    session_id: str
    status: QueueStatus = "pending"
    priority: int = 0
    field_values: list[dict[str, Any]] = Field(default_factory=list)
    graph: dict[str, Any] = Field(description="The graph JSON of the session to run")
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    created_at: str = Field(default_factory=utcnow)
    started_at: str | None = None
    completed_at: str | None = None


@dataclass(frozen=True)
class ExpandedItem:
    """One session of an expanded batch, ready to be stored as a queue item."""

    session_id: str
    graph: dict[str, Any]
    field_values: list[dict[str, Any]]


class EnqueueResult(BaseModel):
    queue_id: str
    batch_id: str
    enqueued: int
    requested: int
    priority: int
    item_ids: list[int]


class QueueStatusCounts(BaseModel):
    queue_id: str
    paused: bool = False
    pending: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    canceled: int = 0
    total: int = 0


def coerce_batch(batch: Any) -> Batch:
    """A `Batch` from a `Batch` or its JSON object; anything malformed is a `BatchError`."""
    from pydantic import ValidationError

    from invokeai_core.batch import Batch

    if isinstance(batch, Batch):
        return batch
    if not isinstance(batch, dict):
        raise BatchError(f"a batch must be a JSON object with a 'graph', not {type(batch).__name__}")
    try:
        return Batch.model_validate(batch)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "batch"
        raise BatchError(f"'{where}': {err.get('msg', 'invalid value')}") from None


class SessionQueueBase(ABC):
    """The session queue with batches and priorities. Kind `queue`.

    Items are kept per `queue_id` and taken in the order `priority DESC, item_id ASC`. Every status
    change is emitted as `queue_item_status_changed` and every enqueued batch as `batch_enqueued`
    once the queue is started by an Invoker (`start(invoker)`). Bad input (a malformed batch, an
    unknown item id, a full queue) raises a `QueueError` or `BatchError` and changes nothing.
    """

    #: The event bus status changes are emitted on (the runtime's; None emits nothing).
    events: EventServiceBase | None = None
    #: The node registry batches are parsed against (the runtime's).
    registry: NodeRegistry | None = None
    #: The most pending items one queue may hold (`max_queue_size`).
    max_size: int = 10000
    #: Seconds between re-runs of crash recovery by a live processor (None: only when it starts).
    #: A queue shared by many processors (invokeai-postgres) sets it, so the items of a worker that
    #: died are recovered while the others go on; its `recover_interrupted` then touches only the items
    #: of dead workers.
    recovery_interval: float | None = None

    def start(self, invoker: Invoker | None = None) -> None:
        """Called when the Invoker starts. `invoker` is the first release's argument, passed (with a
        `DeprecationWarning`) only to a subclass whose `start` still requires it: such a queue, built
        without a runtime, takes its event bus from it."""
        if invoker is not None and self.events is None:
            self.events = invoker.services.events

    def stop(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Called when the Invoker stops."""

    # -- events ---------------------------------------------------------------------------------
    def _emit_status(self, items: Iterable[QueueItem]) -> None:
        events = self.events
        if events is None or not events.has_subscribers("queue_item_status_changed"):
            return
        from invokeai_core.events import QueueItemStatusChangedEvent

        for item in items:
            events.emit(
                QueueItemStatusChangedEvent(
                    session_id=item.session_id,
                    queue_id=item.queue_id,
                    item_id=item.item_id,
                    batch_id=item.batch_id,
                    status=item.status,
                    error_type=item.error_type,
                    error_message=item.error_message,
                )
            )

    def _emit_enqueued(self, result: EnqueueResult) -> None:
        events = self.events
        if events is None or not events.has_subscribers("batch_enqueued"):
            return
        from invokeai_core.events import BatchEnqueuedEvent

        events.emit(
            BatchEnqueuedEvent(
                queue_id=result.queue_id,
                batch_id=result.batch_id,
                enqueued=result.enqueued,
                requested=result.requested,
                priority=result.priority,
            )
        )

    # -- enqueueing: the steps every store shares ------------------------------------------------
    def enqueue_batch(self, queue_id: str, batch: Batch | dict[str, Any], *, prepend: bool = False) -> EnqueueResult:
        """Expand `batch` (see `Batch.expand` for the order) into pending items of `queue_id`, all or
        nothing. `prepend` gives them a priority above every pending item of the queue. Raises
        `BatchError` for a malformed batch and `QueueFullError` past `max_queue_size` pending items.

        A store implements `insert_batch`; this checks the queue id and the room left (before
        expanding a batch that cannot fit), expands the batch and emits `batch_enqueued`."""
        from pydantic_core import to_jsonable_python

        check_queue_id(queue_id)
        batch = coerce_batch(batch)
        requested = batch.count()
        self.check_room(queue_id, self.status(queue_id).pending, requested)
        if self.registry is None:
            raise QueueError(f"{type(self).__name__} was built without a node registry; it cannot parse batches")
        items = [
            ExpandedItem(session_id, graph.to_dict(), to_jsonable_python(values))
            for session_id, graph, values in batch.expand(self.registry)
        ]
        priority, ids = self.insert_batch(queue_id, batch, items, prepend=prepend)
        result = EnqueueResult(
            queue_id=queue_id,
            batch_id=batch.batch_id,
            enqueued=len(ids),
            requested=requested,
            priority=priority,
            item_ids=ids,
        )
        self._emit_enqueued(result)
        return result

    def insert_batch(
        self, queue_id: str, batch: Batch, items: list[ExpandedItem], *, prepend: bool
    ) -> tuple[int, list[int]]:
        """Insert a batch's expanded items as pending items of `queue_id` in one atomic step: check the
        room again (`check_room`), choose the priority (`prepend_priority` when prepending, else
        `batch.priority`), insert in order. Returns the priority and the new item ids."""
        raise NotImplementedError(f"{type(self).__name__} implements neither enqueue_batch nor insert_batch")

    def check_room(self, queue_id: str, pending: int, requested: int) -> None:
        """Raise `QueueFullError` if `requested` more items would take the queue past `max_size`."""
        if pending + requested > self.max_size:
            raise QueueFullError(
                f"the queue '{queue_id}' holds {pending} pending items; {requested} more would exceed "
                f"the maximum of {self.max_size} (config max_queue_size)"
            )

    # -- the contract -----------------------------------------------------------------------------

    @abstractmethod
    def dequeue(self) -> QueueItem | None:
        """Take the next pending item of any queue that is not paused (priority DESC, item_id ASC)
        and mark it in progress, atomically: no item is ever handed out twice."""

    @abstractmethod
    def get_item(self, item_id: int) -> QueueItem:
        """Raises `QueueItemNotFoundError` (a `KeyError`) if unknown."""

    def get_status(self, item_id: int) -> QueueStatus:
        """An item's status alone (the processor polls it for cancels from other processes): stores
        override it to skip loading the item's graph."""
        return self.get_item(item_id).status

    @abstractmethod
    def set_status(
        self,
        item_id: int,
        status: QueueStatus,
        *,
        error_type: str | None = None,
        error_message: str | None = None,
        error_traceback: str | None = None,
        expected: QueueStatus | None = None,
    ) -> QueueItem:
        """Change an item's status (only if it is `expected`, when given); returns the item as it is
        afterwards."""

    @abstractmethod
    def cancel_items(self, item_ids: list[int]) -> list[int]:
        """Cancel pending or in-progress items; returns the ids that changed. Unknown ids raise
        `QueueItemNotFoundError` and cancel nothing."""

    @abstractmethod
    def cancel_batch(self, queue_id: str, batch_ids: list[str]) -> list[int]:
        """Cancel the unfinished items of these batches. A batch id with no item in the queue raises
        `BatchNotFoundError` and cancels nothing."""

    @abstractmethod
    def cancel_all_except_current(self, queue_id: str) -> list[int]:
        """Cancel every pending item of the queue; in-progress items are left alone."""

    @abstractmethod
    def retry_items(self, item_ids: list[int]) -> list[int]:
        """Re-queue failed or canceled items as new pending items; returns the new ids (others are
        skipped). Unknown ids raise `QueueItemNotFoundError` and re-queue nothing."""

    def move_item(self, item_id: int, *, to: MoveTo | None = None, before: int | None = None) -> QueueItem:
        """Move a pending item to the `to="front"` or `"back"` of its queue's pending items, or just
        `before` another pending item of the same queue; returns the moved item.

        Order stays `priority DESC`, then a store-kept position, then item id; a move changes the
        item's priority to the one of where it lands (front: the highest pending priority of the
        queue, back: the lowest, before: the other item's) and its position within that priority,
        so it is taken exactly where it was put and later enqueues still sort by priority. Unknown ids
        raise `QueueItemNotFoundError`; a running or finished item (or `before` one) raises
        `QueueItemNotPendingError`, another queue's `before` item or bad arguments a `QueueError`;
        nothing changes then. A store that cannot reorder keeps this default, which refuses."""
        check_move(item_id, to, before)
        raise QueueError(f"{type(self).__name__} cannot reorder queue items")

    @abstractmethod
    def clear(self, queue_id: str) -> int:
        """Delete every item of the queue that is not in progress; returns how many."""

    @abstractmethod
    def prune(self, queue_id: str) -> int:
        """Delete finished items; returns how many."""

    @abstractmethod
    def list_items(
        self, queue_id: str, *, cursor: int | None = None, limit: int = 50, status: QueueStatus | None = None
    ) -> list[QueueItem]:
        """Items in queue order after `cursor` (an item id)."""

    @abstractmethod
    def status(self, queue_id: str) -> QueueStatusCounts: ...

    @abstractmethod
    def queue_ids(self) -> list[str]:
        """Every queue that holds items or was paused, sorted."""

    @abstractmethod
    def pause(self, queue_id: str) -> None:
        """Stop handing out the queue's items (the running one finishes). Persistent stores keep the
        state across restarts."""

    @abstractmethod
    def resume(self, queue_id: str) -> None: ...

    @abstractmethod
    def is_paused(self, queue_id: str) -> bool: ...

    @abstractmethod
    def recover_interrupted(
        self,
        *,
        requeue: bool,
        item_ids: list[int] | None = None,
        new_sessions: bool = False,
        error_type: str = "ProcessTerminated",
        error_message: str = "the process was terminated while this item was running",
    ) -> list[QueueItem]:
        """Items left in progress by a process that died (or only `item_ids`): fail them with the
        error, or with `requeue` put them back to pending (they keep their item id, and so their place in
        the order; with `new_sessions` they get a fresh session id). Returns the changed items."""

    def listen(self, wake: Callable[[], None]) -> Callable[[], None] | None:
        """Call `wake` (from any thread) whenever another process may have changed the queue: work
        enqueued, resumed or re-queued, items canceled. Returns the function that stops listening, or
        None when the store cannot notify (the processor then polls every `poll_interval`)."""
        return None

    def claim_processor(self) -> Callable[[], None]:
        """Claim the right to process this queue (one processor per store); returns the release
        function. Raises `QueueError` if another processor holds it."""
        with _claims_lock:
            if getattr(self, "_claimed", False):
                raise QueueError("another queue processor is already running on this queue")
            self._claimed = True

        def release() -> None:
            self._claimed = False

        return release


_claims_lock = threading.Lock()


# -- workflows ------------------------------------------------------------------------------------
class WorkflowStorageBase(ABC):
    """The workflow library: workflows (a graph plus exposed inputs, see `invokeai_core.workflows`)
    by id, every save of an id a new version. Kind `workflows`.

    `save` is shared: it checks the workflow against the node registry (`validate_workflow`) and
    calls the store's `insert_version`, so a store never holds a workflow whose inputs name no real
    node or field. Unknown ids raise `WorkflowNotFoundError` (a `KeyError`)."""

    #: The node registry saved workflows are checked against (the runtime's).
    registry: NodeRegistry | None = None

    def save(self, workflow_id: str, workflow: WorkflowIn | dict[str, Any]) -> Workflow:
        """Store `workflow` as the next version of `workflow_id` (1 for a new id); returns it.
        Raises `WorkflowError` for a bad id, `WorkflowInputError` / `BatchError` for a bad workflow."""
        from pydantic import ValidationError

        from invokeai_core.workflows import WorkflowError, WorkflowIn, check_workflow_id, validate_workflow

        check_workflow_id(workflow_id)
        if not isinstance(workflow, WorkflowIn):
            from invokeai_core.errors import check_text

            check_text(workflow)  # text that cannot be stored is `InvalidTextError`, naming where
            try:
                workflow = WorkflowIn.model_validate(workflow)
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(x) for x in err.get("loc", ())) or "workflow"
                raise WorkflowError(f"'{where}': {err.get('msg', 'invalid value')}") from None
        if self.registry is None:
            raise WorkflowError(f"{type(self).__name__} was built without a node registry; it cannot check workflows")
        validate_workflow(workflow, self.registry)
        return self.insert_version(workflow_id, workflow)

    @abstractmethod
    def insert_version(self, workflow_id: str, workflow: WorkflowIn) -> Workflow:
        """Store a checked workflow as version `latest + 1` of `workflow_id`, atomically (two saves
        at once never get the same version)."""

    @abstractmethod
    def get(self, workflow_id: str, version: int | None = None) -> Workflow:
        """The latest version, or `version`. Raises `WorkflowNotFoundError`."""

    @abstractmethod
    def list(self, *, offset: int = 0, limit: int = 50, query: str | None = None) -> Page[WorkflowSummary]:
        """The latest version of each workflow, most recently saved first; `query` matches ids and
        names (case-insensitive substring)."""

    @abstractmethod
    def versions(self, workflow_id: str) -> builtins.list[WorkflowVersion]:
        """Every stored version, oldest first. Raises `WorkflowNotFoundError`."""

    @abstractmethod
    def delete(self, workflow_id: str) -> int:
        """Delete every version; returns how many. Raises `WorkflowNotFoundError`."""

    def resolve(self, ref: str) -> Workflow:
        """A workflow by id, or else by its exact name when one workflow has it (the CLI's
        `--workflow NAME`). Raises `WorkflowNotFoundError`, or `WorkflowError` for an ambiguous name."""
        from invokeai_core.workflows import WORKFLOW_ID_RE, WorkflowError, WorkflowNotFoundError

        if WORKFLOW_ID_RE.match(ref):
            try:
                return self.get(ref)
            except WorkflowNotFoundError:
                pass
        matches = [w for w in self.list(limit=10_000, query=ref).items if w.name == ref]
        if len(matches) > 1:
            ids = ", ".join(w.id for w in matches)
            raise WorkflowError(f"several workflows are named '{ref}' ({ids}); give the id")
        if not matches:
            raise WorkflowNotFoundError(ref)
        return self.get(matches[0].id)


# -- output cache ---------------------------------------------------------------------------------
class OutputCacheBase(ABC):
    """The invocation output cache. Kind `cache`."""

    @abstractmethod
    def get(self, key: str) -> BaseInvocationOutput | None: ...

    @abstractmethod
    def save(self, key: str, output: BaseInvocationOutput) -> None: ...

    @abstractmethod
    def clear(self) -> None: ...

    @property
    @abstractmethod
    def enabled(self) -> bool: ...
