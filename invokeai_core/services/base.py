"""The abstract services every implementation (kernel default or plugin) provides.

One ABC per kind in DESIGN.md's table. Implementations are constructed as `Impl(config)` and may
define `start(invoker)` / `stop(invoker)`; they are chosen by name in configuration and imported
only when selected (see `invokeai_core.services.container`).
"""

from __future__ import annotations

import datetime as _dt
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core.batch import Batch
    from invokeai_core.invocations.baseinvocation import BaseInvocationOutput
    from invokeai_core.session import Session

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
        """Persist one node's completion. Stores override this to write incrementally."""
        self.save(session)

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
FINISHED: frozenset[str] = frozenset({"completed", "failed", "canceled"})


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


class EnqueueResult(BaseModel):
    queue_id: str
    batch_id: str
    enqueued: int
    requested: int
    priority: int
    item_ids: list[int]


class QueueStatusCounts(BaseModel):
    queue_id: str
    pending: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    canceled: int = 0
    total: int = 0


class SessionQueueBase(ABC):
    """The session queue with batches and priorities. Kind `queue`."""

    @abstractmethod
    def enqueue_batch(self, queue_id: str, batch: Batch, *, prepend: bool = False) -> EnqueueResult: ...

    @abstractmethod
    def dequeue(self) -> QueueItem | None:
        """Take the next pending item (priority DESC, item_id ASC) and mark it in progress."""

    @abstractmethod
    def get_item(self, item_id: int) -> QueueItem: ...

    @abstractmethod
    def set_status(
        self,
        item_id: int,
        status: QueueStatus,
        *,
        error_type: str | None = None,
        error_message: str | None = None,
        error_traceback: str | None = None,
    ) -> QueueItem: ...

    @abstractmethod
    def cancel_items(self, item_ids: list[int]) -> list[int]:
        """Cancel pending or in-progress items; returns the ids that changed."""

    @abstractmethod
    def cancel_batch(self, queue_id: str, batch_ids: list[str]) -> list[int]: ...

    @abstractmethod
    def cancel_all_except_current(self, queue_id: str) -> list[int]: ...

    @abstractmethod
    def retry_items(self, item_ids: list[int]) -> list[int]:
        """Re-queue failed or canceled items as new pending items; returns the new ids."""

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

    def iter_pending(self, queue_id: str) -> Iterator[QueueItem]:
        yield from self.list_items(queue_id, status="pending", limit=1_000_000)


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
