"""In-memory implementations of the stores (the defaults for tests and single-shot CLI runs).

They honour the same contracts as the persistent stores; the contract tests in
`invokeai_core.testing.contracts` run against each.
"""

from __future__ import annotations

import builtins
import copy
import itertools
import sys
import threading
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from invokeai_core.errors import SessionNotFoundError
from invokeai_core.services.base import (
    FINISHED,
    QUEUE_STATUSES,
    BatchNotFoundError,
    ExpandedItem,
    ImageRecord,
    ImageRecordStorageBase,
    MoveTo,
    OutputCacheBase,
    Page,
    QueueError,
    QueueItem,
    QueueItemNotFoundError,
    QueueItemNotPendingError,
    QueueStatus,
    QueueStatusCounts,
    SessionQueueBase,
    SessionStorageBase,
    SessionSummary,
    WorkflowStorageBase,
    check_item_ids,
    check_move,
    check_queue_id,
    prepend_priority,
    utcnow,
)

if TYPE_CHECKING:
    from invokeai_core.batch import Batch
    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.invocations.baseinvocation import BaseInvocationOutput
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.runtime import ServiceRuntime
    from invokeai_core.session import Session
    from invokeai_core.workflows import Workflow, WorkflowIn, WorkflowSummary, WorkflowVersion


class MemoryImageRecordStorage(ImageRecordStorageBase):
    def __init__(self, config: InvokeAIConfig | None = None) -> None:
        self._records: dict[str, ImageRecord] = {}
        self._seq: dict[str, int] = {}
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def save(self, record: ImageRecord) -> None:
        with self._lock:
            self._records[record.image_name] = record
            self._seq[record.image_name] = next(self._counter)

    def get(self, image_name: str) -> ImageRecord:
        try:
            return self._records[image_name]
        except KeyError:
            raise KeyError(f"image '{image_name}' does not exist") from None

    def update(
        self, image_name: str, *, starred: bool | None = None, is_intermediate: bool | None = None
    ) -> ImageRecord:
        with self._lock:
            record = self.get(image_name)
            changes: dict[str, Any] = {}
            if starred is not None:
                changes["starred"] = starred
            if is_intermediate is not None:
                changes["is_intermediate"] = is_intermediate
            record = record.model_copy(update=changes)
            self._records[image_name] = record
            return record

    def delete(self, image_name: str) -> None:
        with self._lock:
            self._records.pop(image_name, None)
            self._seq.pop(image_name, None)

    def list(
        self,
        *,
        offset: int = 0,
        limit: int = 50,
        session_id: str | None = None,
        is_intermediate: bool | None = None,
        starred: bool | None = None,
    ) -> Page[ImageRecord]:
        offset, limit = max(0, offset), max(0, limit)
        with self._lock:
            snapshot = list(self._records.values())
            seq = dict(self._seq)
        records = [
            r
            for r in snapshot
            if (session_id is None or r.session_id == session_id)
            and (is_intermediate is None or r.is_intermediate == is_intermediate)
            and (starred is None or r.starred == starred)
        ]
        records.sort(key=lambda r: (r.created_at, seq.get(r.image_name, 0)), reverse=True)
        return Page[ImageRecord](items=records[offset : offset + limit], offset=offset, limit=limit, total=len(records))


class MemorySessionStorage(SessionStorageBase):
    """Keeps live session objects (no copies): what the processor runs is what readers see."""

    def __init__(self, config: InvokeAIConfig | None = None) -> None:
        self._sessions: dict[str, Session] = {}
        self._seq: dict[str, int] = {}
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def save(self, session: Session) -> None:
        with self._lock:
            if session.id not in self._seq:
                self._seq[session.id] = next(self._counter)
            self._sessions[session.id] = session

    def node_completed(self, session: Session, prepared_id: str) -> None:
        if session.id not in self._sessions:
            self.save(session)

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFoundError(f"session '{session_id}' does not exist") from None

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
            self._seq.pop(session_id, None)

    def list(self, *, offset: int = 0, limit: int = 50, query: str | None = None) -> Page[SessionSummary]:
        offset, limit = max(0, offset), max(0, limit)
        with self._lock:
            sessions = list(self._sessions.values())
            seq = dict(self._seq)
        sessions.sort(key=lambda s: (s.created_at, seq.get(s.id, 0)), reverse=True)  # newest first
        found = []
        for s in sessions:
            if query and query not in s.id and not any(query in n.invocation_type for n in s.graph.nodes.values()):
                continue
            found.append(
                SessionSummary(
                    id=s.id,
                    status=s.status,
                    nodes=len(s.graph.nodes),
                    created_at=s.created_at,
                    updated_at=s.updated_at,
                )
            )
        return Page[SessionSummary](items=found[offset : offset + limit], offset=offset, limit=limit, total=len(found))


class MemoryOutputCache(OutputCacheBase):
    """An LRU of node outputs, bounded by `cache_size` entries and by `cache_max_mb` of memory (the
    estimated resident size of each output); 0 for either disables it. An output larger than a
    quarter of the byte budget is never cached, so one huge result cannot flush everything else."""

    def __init__(
        self, config: InvokeAIConfig | None = None, *, size: int | None = None, max_bytes: int | None = None
    ) -> None:
        self.size = size if size is not None else (config.cache_size if config is not None else 512)
        if max_bytes is None:
            max_bytes = int((config.cache_max_mb if config is not None else 256) * 1024 * 1024)
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[BaseInvocationOutput, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.max_bytes > 0

    def get(self, key: str) -> BaseInvocationOutput | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[0]

    def save(self, key: str, output: BaseInvocationOutput) -> None:
        if not self.enabled:
            return
        nbytes = resident_size(output)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if nbytes * 4 > self.max_bytes:
                return
            self._data[key] = (output, nbytes)
            self.bytes += nbytes
            while len(self._data) > self.size or self.bytes > self.max_bytes:
                _, (_, evicted) = self._data.popitem(last=False)
                self.bytes -= evicted

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._data)


def resident_size(value: Any) -> int:
    """About how many bytes of memory `value` holds (objects, strings and numbers counted once each,
    with containers and pydantic models followed), the measure of the output cache's byte budget."""
    seen: set[int] = set()
    total = 0
    stack = [value]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif isinstance(obj, BaseModel):
            stack.append(obj.__dict__)
    return total


class MemorySessionQueue(SessionQueueBase):
    """The session queue in memory (lost on exit, pause state included; the SQLite queue persists)."""

    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        max_size: int | None = None,
        registry: NodeRegistry | None = None,
        runtime: ServiceRuntime | None = None,
    ) -> None:
        self.max_size = max_size if max_size is not None else (config.max_queue_size if config is not None else 10000)
        #: The node registry batches are parsed against, and the bus status changes go to.
        self.registry = runtime.registry if runtime is not None else registry
        self.events = runtime.events if runtime is not None else None
        self._items: dict[int, QueueItem] = {}
        self._ids = itertools.count(1)
        self._paused: set[str] = set()
        self._lock = threading.RLock()
        #: Each item's position within its priority (its id unless moved), see `move_item`.
        self._positions: dict[int, int] = {}

    def _order(self, item: QueueItem) -> tuple[int, int, int]:
        return (-item.priority, self._positions.get(item.item_id, item.item_id), item.item_id)

    def move_item(self, item_id: int, *, to: MoveTo | None = None, before: int | None = None) -> QueueItem:
        check_move(item_id, to, before)
        with self._lock:
            wanted = [item_id] if before is None else [item_id, before]
            self._check_known(wanted)
            item = self._items[item_id]
            if item.status != "pending":
                raise QueueItemNotPendingError(item_id, item.status)
            others = [
                i
                for i in self._items.values()
                if i.queue_id == item.queue_id and i.status == "pending" and i is not item
            ]
            pos = self._positions
            if before is not None:
                other = self._items[before]
                if other.queue_id != item.queue_id:
                    raise QueueError(
                        f"queue item {before} is in the queue '{other.queue_id}', not '{item.queue_id}' (the queue "
                        f"of item {item_id})"
                    )
                if other.status != "pending":
                    raise QueueItemNotPendingError(before, other.status, role="item (before)")
                priority, position = other.priority, pos.get(before, before)
                for i in self._items.values():
                    if i.queue_id == item.queue_id and i.priority == priority and i is not item:
                        p = pos.get(i.item_id, i.item_id)
                        if p >= position:
                            pos[i.item_id] = p + 1
                self._ids = itertools.count(max([next(self._ids), *pos.values()]) + 1)
            elif to == "front":
                priority = max((i.priority for i in others), default=item.priority)
                same = [pos.get(i.item_id, i.item_id) for i in others if i.priority == priority]
                position = min(same) - 1 if same else pos.get(item_id, item_id)
            else:
                priority = min((i.priority for i in others), default=item.priority)
                position = max([next(self._ids), *pos.values()])
                self._ids = itertools.count(position + 1)
            pos[item_id] = position
            return self._change(item_id, {"priority": priority})

    def _pending(self, queue_id: str) -> int:
        return sum(1 for i in self._items.values() if i.queue_id == queue_id and i.status == "pending")

    def insert_batch(
        self, queue_id: str, batch: Batch, items: list[ExpandedItem], *, prepend: bool
    ) -> tuple[int, list[int]]:
        now = utcnow()
        with self._lock:
            self.check_room(queue_id, self._pending(queue_id), len(items))
            priority = batch.priority
            if prepend:
                current = [i.priority for i in self._items.values() if i.queue_id == queue_id and i.status == "pending"]
                priority = prepend_priority(max(current, default=None), priority)
            ids = []
            for expanded in items:
                item = QueueItem(
                    item_id=next(self._ids),
                    queue_id=queue_id,
                    batch_id=batch.batch_id,
                    session_id=expanded.session_id,
                    priority=priority,
                    field_values=expanded.field_values,
                    graph=expanded.graph,
                    created_at=now,
                )
                self._items[item.item_id] = item
                ids.append(item.item_id)
        return priority, ids

    def dequeue(self) -> QueueItem | None:
        with self._lock:
            pending = [i for i in self._items.values() if i.status == "pending" and i.queue_id not in self._paused]
            if not pending:
                return None
            item = min(pending, key=self._order)
            item = self._change(item.item_id, {"status": "in_progress", "started_at": utcnow()})
        self._emit_status([item])
        return item

    def get_item(self, item_id: int) -> QueueItem:
        try:
            return self._items[item_id]
        except (KeyError, TypeError):
            raise QueueItemNotFoundError([item_id]) from None

    def _change(self, item_id: int, changes: dict[str, Any]) -> QueueItem:
        item = self._items[item_id].model_copy(update=changes)
        self._items[item_id] = item
        return item

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
        if status not in QUEUE_STATUSES:
            raise QueueError(f"unknown queue item status {status!r} (one of {', '.join(QUEUE_STATUSES)})")
        with self._lock:
            item = self.get_item(item_id)
            if expected is not None and item.status != expected:
                return item
            changes: dict[str, Any] = {"status": status}
            if status == "in_progress":
                changes["started_at"] = utcnow()
            if status in FINISHED:
                changes["completed_at"] = utcnow()
            if error_type is not None:
                changes.update(error_type=error_type, error_message=error_message, error_traceback=error_traceback)
            item = self._change(item_id, changes)
        self._emit_status([item])
        return item

    def _check_known(self, ids: list[int]) -> None:
        missing = [i for i in ids if i not in self._items]
        if missing:
            raise QueueItemNotFoundError(missing)

    def cancel_items(self, item_ids: list[int]) -> list[int]:
        ids = check_item_ids(item_ids)
        changed = []
        with self._lock:
            self._check_known(ids)
            now = utcnow()
            for item_id in dict.fromkeys(ids):
                if self._items[item_id].status not in FINISHED:
                    changed.append(self._change(item_id, {"status": "canceled", "completed_at": now}))
        self._emit_status(changed)
        return [i.item_id for i in changed]

    def cancel_batch(self, queue_id: str, batch_ids: list[str]) -> list[int]:
        check_queue_id(queue_id)
        if isinstance(batch_ids, str) or not all(isinstance(b, str) for b in batch_ids):
            raise QueueError("batch ids must be a list of strings")
        with self._lock:
            known = {i.batch_id for i in self._items.values() if i.queue_id == queue_id}
            unknown = [b for b in dict.fromkeys(batch_ids) if b not in known]
            if unknown:
                raise BatchNotFoundError(queue_id, unknown)
            ids = sorted(
                i.item_id
                for i in self._items.values()
                if i.queue_id == queue_id and i.batch_id in batch_ids and i.status not in FINISHED
            )
            return self.cancel_items(ids)

    def cancel_all_except_current(self, queue_id: str) -> list[int]:
        check_queue_id(queue_id)
        with self._lock:
            ids = sorted(i.item_id for i in self._items.values() if i.queue_id == queue_id and i.status == "pending")
            return self.cancel_items(ids)

    def retry_items(self, item_ids: list[int]) -> list[int]:
        ids = check_item_ids(item_ids)
        new_items = []
        with self._lock:
            self._check_known(ids)
            now = utcnow()
            for item_id in dict.fromkeys(ids):
                item = self._items[item_id]
                if item.status not in ("failed", "canceled"):
                    continue
                clone = item.model_copy(
                    update={
                        "item_id": next(self._ids),
                        "status": "pending",
                        "session_id": uuid.uuid4().hex,
                        "graph": copy.deepcopy(item.graph),
                        "field_values": copy.deepcopy(item.field_values),
                        "error_type": None,
                        "error_message": None,
                        "error_traceback": None,
                        "created_at": now,
                        "started_at": None,
                        "completed_at": None,
                    }
                )
                self._items[clone.item_id] = clone
                new_items.append(clone)
        self._emit_status(new_items)
        return [i.item_id for i in new_items]

    def clear(self, queue_id: str) -> int:
        check_queue_id(queue_id)
        with self._lock:
            doomed = [k for k, v in self._items.items() if v.queue_id == queue_id and v.status != "in_progress"]
            for k in doomed:
                del self._items[k]
            return len(doomed)

    def prune(self, queue_id: str) -> int:
        check_queue_id(queue_id)
        with self._lock:
            doomed = [k for k, v in self._items.items() if v.queue_id == queue_id and v.status in FINISHED]
            for k in doomed:
                del self._items[k]
            return len(doomed)

    def list_items(
        self, queue_id: str, *, cursor: int | None = None, limit: int = 50, status: QueueStatus | None = None
    ) -> list[QueueItem]:
        check_queue_id(queue_id)
        if status is not None and status not in QUEUE_STATUSES:
            raise QueueError(f"unknown queue item status {status!r} (one of {', '.join(QUEUE_STATUSES)})")
        with self._lock:
            candidates = [
                i for i in self._items.values() if i.queue_id == queue_id and (status is None or i.status == status)
            ]
            after: tuple[int, int, int] | None = None
            if cursor is not None:
                anchor = self._items.get(cursor)
                # Items strictly after the cursor in queue order. The cursor item itself may have
                # another status than the filter, or be gone (pruned): then order by id alone.
                after = self._order(anchor) if anchor is not None else None
        if cursor is not None:
            if after is not None:
                candidates = [i for i in candidates if self._order(i) > after]
            else:
                candidates = [i for i in candidates if i.item_id > cursor]
        return sorted(candidates, key=self._order)[: max(0, limit)]

    def status(self, queue_id: str) -> QueueStatusCounts:
        check_queue_id(queue_id)
        counts = QueueStatusCounts(queue_id=queue_id, paused=queue_id in self._paused)
        with self._lock:
            items = list(self._items.values())
        for i in items:
            if i.queue_id == queue_id:
                setattr(counts, i.status, getattr(counts, i.status) + 1)
                counts.total += 1
        return counts

    def queue_ids(self) -> list[str]:
        with self._lock:
            return sorted({i.queue_id for i in self._items.values()} | self._paused)

    def pause(self, queue_id: str) -> None:
        check_queue_id(queue_id)
        with self._lock:
            self._paused.add(queue_id)

    def resume(self, queue_id: str) -> None:
        check_queue_id(queue_id)
        with self._lock:
            self._paused.discard(queue_id)

    def is_paused(self, queue_id: str) -> bool:
        check_queue_id(queue_id)
        return queue_id in self._paused

    def recover_interrupted(
        self,
        *,
        requeue: bool,
        item_ids: list[int] | None = None,
        new_sessions: bool = False,
        error_type: str = "ProcessTerminated",
        error_message: str = "the process was terminated while this item was running",
    ) -> list[QueueItem]:
        changed = []
        with self._lock:
            ids = (
                [k for k, v in self._items.items() if v.status == "in_progress"]
                if item_ids is None
                else check_item_ids(item_ids)
            )
            for item_id in dict.fromkeys(ids):
                item = self._items.get(item_id)
                if item is None or item.status != "in_progress":
                    continue
                if requeue:
                    changes: dict[str, Any] = {"status": "pending", "started_at": None, "completed_at": None}
                    if new_sessions:
                        changes["session_id"] = uuid.uuid4().hex
                else:
                    changes = {
                        "status": "failed",
                        "completed_at": utcnow(),
                        "error_type": error_type,
                        "error_message": error_message,
                        "error_traceback": None,
                    }
                changed.append(self._change(item_id, changes))
        self._emit_status(changed)
        return changed


class MemoryWorkflowStorage(WorkflowStorageBase):
    """The workflow library in memory (lost on exit)."""

    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        registry: NodeRegistry | None = None,
        runtime: ServiceRuntime | None = None,
    ) -> None:
        self.registry = runtime.registry if runtime is not None else registry
        self._versions: dict[str, list[Workflow]] = {}
        self._order: list[str] = []  # ids, least recently saved first
        self._lock = threading.Lock()

    def insert_version(self, workflow_id: str, workflow: WorkflowIn) -> Workflow:
        from invokeai_core.workflows import Workflow

        with self._lock:
            versions = self._versions.setdefault(workflow_id, [])
            saved = Workflow(
                id=workflow_id,
                version=(versions[-1].version if versions else 0) + 1,
                created_at=utcnow(),
                **copy.deepcopy(workflow.model_dump()),
            )
            versions.append(saved)
            if workflow_id in self._order:
                self._order.remove(workflow_id)
            self._order.append(workflow_id)
        return saved.model_copy(deep=True)

    def _versions_of(self, workflow_id: str) -> list[Workflow]:
        from invokeai_core.workflows import WorkflowNotFoundError, check_workflow_id

        check_workflow_id(workflow_id)
        versions = self._versions.get(workflow_id)
        if not versions:
            raise WorkflowNotFoundError(workflow_id)
        return versions

    def get(self, workflow_id: str, version: int | None = None) -> Workflow:
        from invokeai_core.workflows import WorkflowNotFoundError

        with self._lock:
            versions = self._versions_of(workflow_id)
            found = versions[-1] if version is None else next((v for v in versions if v.version == version), None)
            if found is None:
                raise WorkflowNotFoundError(workflow_id, version)
            return found.model_copy(deep=True)

    def list(self, *, offset: int = 0, limit: int = 50, query: str | None = None) -> Page[WorkflowSummary]:
        from invokeai_core.workflows import WorkflowSummary

        offset, limit = max(0, offset), max(0, limit)
        with self._lock:
            summaries = []
            for wid in reversed(self._order):
                versions = self._versions[wid]
                last = versions[-1]
                if query and query.lower() not in wid.lower() and query.lower() not in last.name.lower():
                    continue
                summaries.append(
                    WorkflowSummary(
                        id=wid,
                        name=last.name,
                        description=last.description,
                        version=last.version,
                        versions=len(versions),
                        inputs=copy.deepcopy(last.inputs),
                        created_at=versions[0].created_at,
                        updated_at=last.created_at,
                    )
                )
        page = summaries[offset : offset + limit]
        return Page[WorkflowSummary](items=page, offset=offset, limit=limit, total=len(summaries))

    def versions(self, workflow_id: str) -> builtins.list[WorkflowVersion]:
        from invokeai_core.workflows import WorkflowVersion

        with self._lock:
            return [
                WorkflowVersion(version=v.version, name=v.name, created_at=v.created_at)
                for v in self._versions_of(workflow_id)
            ]

    def delete(self, workflow_id: str) -> int:
        with self._lock:
            n = len(self._versions_of(workflow_id))
            del self._versions[workflow_id]
            self._order.remove(workflow_id)
        return n
