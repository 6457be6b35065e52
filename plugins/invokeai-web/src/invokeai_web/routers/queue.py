"""The session queue: enqueue batches, read status and items, cancel, retry, clear, prune, pause/resume.

Queue ids are 1-128 letters, digits, `_ - . :` (422 otherwise). A queue exists once something was
enqueued to it or it was paused; `default` always exists; other queues are 404 except for
`enqueue_batch` and `pause`, which create them. An item id that belongs to another queue is 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

from invokeai_core import (
    DEFAULT_QUEUE_ID,
    QUEUE_ID_RE,
    Batch,
    BatchNotFoundError,
    EnqueueResult,
    Invoker,
    QueueItem,
    QueueItemNotFoundError,
    QueueStatus,
    QueueStatusCounts,
)
from invokeai_web.dependencies import InvokerDep, SettingsDep, rendered
from invokeai_web.errors import CONFLICT, error_responses
from invokeai_web.openapi import GRAPH_REF, schema_ref
from invokeai_web.webhooks import WebhookDelivery, WebhooksDep, WebhookUrl, check_webhook

router = APIRouter(prefix="/queue/{queue_id}", tags=["queue"], responses=error_responses({409: CONFLICT}))

MAX_ID = 2**53 - 1  # the largest id every JSON client (JavaScript included) holds exactly
QueueId = Annotated[str, Path(pattern=QUEUE_ID_RE.pattern, description="The queue id ('default' always exists)")]
ItemId = Annotated[int, Path(ge=0, le=MAX_ID, description="The queue item id")]
ItemIds = Annotated[list[Annotated[int, Field(ge=0, le=MAX_ID)]], Field(max_length=10_000)]


class BatchIn(Batch):
    """A batch: the graph and the values to substitute (see DESIGN.md, Batches)."""

    graph: Annotated[dict[str, Any], schema_ref(GRAPH_REF)] = Field(description="The graph JSON to expand")


class EnqueueBatchBody(BaseModel):
    batch: BatchIn
    prepend: bool = Field(default=False, description="Run these before every pending item of the queue")
    webhook: WebhookUrl | None = Field(
        default=None, description="POST a signed notice here when each item finishes (see docs/webhooks.md)"
    )


class QueueItemSummary(BaseModel):
    """A queue item without its graph and traceback (`GET .../i/{item_id}` has them)."""

    item_id: int
    queue_id: str
    batch_id: str
    session_id: str
    status: QueueStatus
    priority: int
    field_values: list[dict[str, Any]]
    error_type: str | None = None
    error_message: str | None = None
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None


class QueueItemOut(QueueItemSummary):
    graph: Annotated[dict[str, Any], schema_ref(GRAPH_REF)]
    error_traceback: str | None = None


class QueueItemPage(BaseModel):
    items: list[QueueItemSummary]
    has_more: bool
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page")


class ProcessorStatus(BaseModel):
    started: bool = Field(description="Whether this server runs a queue processor")
    running_item_ids: list[int] = Field(description="Items of this queue the processor is running now")


class QueueAndProcessorStatus(BaseModel):
    queue: QueueStatusCounts
    processor: ProcessorStatus


class BatchIdsBody(BaseModel):
    batch_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128)]], Field(min_length=1, max_length=1000)
    ]


class ItemIdsBody(BaseModel):
    item_ids: ItemIds


class ItemIdsResult(BaseModel):
    item_ids: list[int]


class MoveBody(BaseModel):
    """Where to move a pending item: exactly one of `to` and `before`."""

    to: Literal["front", "back"] | None = Field(default=None, description="The front or back of the pending items")
    before: int | None = Field(default=None, ge=0, le=MAX_ID, description="Just before this pending item")

    @model_validator(mode="after")
    def _one(self) -> MoveBody:
        if (self.to is None) == (self.before is None):
            raise ValueError("give exactly one of 'to' ('front' or 'back') and 'before' (an item id)")
        return self


class CountResult(BaseModel):
    deleted: int


def _known(invoker: Invoker, queue_id: str) -> None:
    if queue_id != DEFAULT_QUEUE_ID and queue_id not in invoker.queue.queue_ids():
        raise HTTPException(404, f"queue '{queue_id}' does not exist (nothing was ever enqueued to it)")


def _item_of(invoker: Invoker, queue_id: str, item_id: int) -> QueueItem:
    item = invoker.queue.get_item(item_id)
    if item.queue_id != queue_id:
        raise QueueItemNotFoundError([item_id])
    return item


def _status(invoker: Invoker, queue_id: str) -> dict[str, Any]:
    processor = invoker.queue_processor
    running = [i.item_id for i in processor.running if i.queue_id == queue_id] if processor is not None else []
    return {
        "queue": invoker.queue.status(queue_id),
        "processor": {"started": processor is not None and processor.is_started, "running_item_ids": running},
    }


@router.post("/enqueue_batch", status_code=201, response_model=EnqueueResult, summary="Enqueue a batch")
def enqueue_batch(
    invoker: InvokerDep, settings: SettingsDep, webhooks: WebhooksDep, queue_id: QueueId, body: EnqueueBatchBody
) -> EnqueueResult:
    """Expand the batch into pending items, all or nothing. 422 names the node and field of a bad
    graph or datum; 409 when the queue would hold more than `max_queue_size` pending items. With
    `webhook`, each item's completion, failure or cancel is POSTed there, signed (422 when the URL
    may not be a target)."""
    url = check_webhook(settings, body.webhook) if body.webhook is not None else None
    batch = Batch.model_validate(body.batch.model_dump())
    if url is not None:
        webhooks.register(queue_id, batch.batch_id, url)
    try:
        return invoker.enqueue_batch(queue_id, batch, prepend=body.prepend)
    except BaseException:
        if url is not None:
            webhooks.unregister(batch.batch_id)
        raise


@router.get("/status", response_model=QueueAndProcessorStatus, summary="Queue and processor status")
def queue_status(invoker: InvokerDep, queue_id: QueueId) -> dict[str, Any]:
    _known(invoker, queue_id)
    return _status(invoker, queue_id)


@router.get("/list", response_model=QueueItemPage, summary="List queue items")
def list_items(
    invoker: InvokerDep,
    queue_id: QueueId,
    cursor: Annotated[int | None, Query(ge=0, le=MAX_ID, description="Items after this item id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    status: QueueStatus | None = None,
) -> dict[str, Any]:
    """Items in queue order (priority, then item id), `limit` at a time."""
    _known(invoker, queue_id)
    items = invoker.queue.list_items(queue_id, cursor=cursor, limit=limit + 1, status=status)
    page = items[:limit]
    return {
        "items": [i.model_dump(exclude={"graph", "error_traceback"}) for i in page],
        "has_more": len(items) > limit,
        "next_cursor": page[-1].item_id if page else None,
    }


@router.get("/i/{item_id}", response_model=QueueItemOut, summary="Get a queue item")
def get_item(invoker: InvokerDep, queue_id: QueueId, item_id: ItemId) -> Response:
    return _item_json(_item_of(invoker, queue_id, item_id))


def _item_json(item: QueueItem) -> Response:
    return rendered(item.model_dump(mode="json", include=set(QueueItemOut.model_fields)))


@router.get("/i/{item_id}/webhooks", response_model=list[WebhookDelivery], summary="Webhook deliveries of an item")
def item_webhooks(invoker: InvokerDep, webhooks: WebhooksDep, queue_id: QueueId, item_id: ItemId) -> Any:
    """Every attempt to deliver the item's webhook notice, oldest first (empty without a webhook)."""
    _item_of(invoker, queue_id, item_id)
    return webhooks.deliveries(item_id)


@router.put("/i/{item_id}/cancel", response_model=QueueItemOut, summary="Cancel a queue item")
def cancel_item(invoker: InvokerDep, queue_id: QueueId, item_id: ItemId) -> Response:
    """Cancel a pending or running item (a running session stops at its next step)."""
    _item_of(invoker, queue_id, item_id)
    invoker.queue.cancel_items([item_id])
    return _item_json(invoker.queue.get_item(item_id))


@router.put("/cancel_by_batch_ids", response_model=ItemIdsResult, summary="Cancel batches")
def cancel_by_batch_ids(invoker: InvokerDep, queue_id: QueueId, body: BatchIdsBody) -> Any:
    """Cancel the unfinished items of these batches; returns the items that changed.

    All or nothing: when some batch ids have no item in this queue, nothing is canceled and the
    answer is 422 with one problem per unknown id (`loc`: `["body", "batch_ids", index]`)."""
    _known(invoker, queue_id)
    try:
        return {"item_ids": invoker.queue.cancel_batch(queue_id, body.batch_ids)}
    except BatchNotFoundError as e:
        unknown = set(e.batch_ids)
        detail = [
            {
                "type": "BatchNotFoundError",
                "loc": ["body", "batch_ids", i],
                "msg": f"batch '{b}' has no item in the queue '{queue_id}'",
                "field": "batch_ids",
            }
            for i, b in enumerate(body.batch_ids)
            if b in unknown
        ]
        return JSONResponse({"detail": detail}, status_code=422)


@router.put("/cancel_all_except_current", response_model=ItemIdsResult, summary="Cancel all pending items")
def cancel_all_except_current(invoker: InvokerDep, queue_id: QueueId) -> dict[str, Any]:
    """Cancel every pending item; the running one goes on."""
    _known(invoker, queue_id)
    return {"item_ids": invoker.queue.cancel_all_except_current(queue_id)}


@router.put("/retry_items_by_id", response_model=ItemIdsResult, summary="Retry items")
def retry_items(invoker: InvokerDep, queue_id: QueueId, body: ItemIdsBody) -> dict[str, Any]:
    """Enqueue failed or canceled items again as new items; returns the new item ids."""
    for item_id in dict.fromkeys(body.item_ids):
        _item_of(invoker, queue_id, item_id)
    return {"item_ids": invoker.queue.retry_items(body.item_ids)}


@router.put(
    "/i/{item_id}/move",
    response_model=QueueItemOut,
    summary="Move a pending item",
    responses=error_responses({404: "The item (or the `before` item) does not exist in this queue"}),
)
def move_item(invoker: InvokerDep, queue_id: QueueId, item_id: ItemId, body: MoveBody) -> Response:
    """Move a pending item to the front or back of the queue's pending items, or just before another
    pending item. The item takes the priority of where it lands (front: the highest pending priority,
    back: the lowest, before: the other item's). 409 when either item is not pending (or `before` is
    the item itself); 404 for an unknown item or one of another queue."""
    _item_of(invoker, queue_id, item_id)
    if body.before is not None:
        _item_of(invoker, queue_id, body.before)
    return _item_json(invoker.queue.move_item(item_id, to=body.to, before=body.before))


@router.put("/clear", response_model=CountResult, summary="Clear the queue")
def clear(invoker: InvokerDep, queue_id: QueueId) -> dict[str, Any]:
    """Delete every item but the running one."""
    _known(invoker, queue_id)
    return {"deleted": invoker.queue.clear(queue_id)}


@router.put("/prune", response_model=CountResult, summary="Prune finished items")
def prune(invoker: InvokerDep, queue_id: QueueId) -> dict[str, Any]:
    """Delete completed, failed and canceled items."""
    _known(invoker, queue_id)
    return {"deleted": invoker.queue.prune(queue_id)}


@router.put("/processor/pause", response_model=QueueAndProcessorStatus, summary="Pause the queue")
def pause(invoker: InvokerDep, queue_id: QueueId) -> dict[str, Any]:
    """Stop handing out this queue's items (the running one finishes). Stored: survives restarts."""
    processor = invoker.queue_processor
    if processor is not None:
        processor.pause(queue_id)
    else:
        invoker.queue.pause(queue_id)
    return _status(invoker, queue_id)


@router.put("/processor/resume", response_model=QueueAndProcessorStatus, summary="Resume the queue")
def resume(invoker: InvokerDep, queue_id: QueueId) -> dict[str, Any]:
    _known(invoker, queue_id)
    processor = invoker.queue_processor
    if processor is not None:
        processor.resume(queue_id)
    else:
        invoker.queue.resume(queue_id)
    return _status(invoker, queue_id)
