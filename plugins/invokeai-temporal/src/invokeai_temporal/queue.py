"""The session queue dispatched through Temporal (`services.queue = "temporal"`).

Records stay in PostgreSQL exactly as with `services.queue = "postgres"` (this class is the
PostgreSQL queue): listing, counts, status events, pause/resume, retry, reorder and the API routes
behave as they do there, so the web UI and the CLI work unchanged. What changes is who runs items:

* **Enqueue** first checks that Temporal answers (else `TemporalUnavailableError`: 503 with
  Retry-After, nothing accepted), writes the items, then starts one workflow per item
  (`invokeai_temporal.workflow`) with the item's priority mapped onto a Temporal priority key and,
  when `affinity` is on, the task queue of an idle worker holding the item's models. An item written
  but not handed over (Temporal went away in between, the server died) is handed over by the sweep
  every `dispatch_interval` seconds of any process using this queue: accepted means never lost.
* **Running** is done by `invokeai worker` processes (`invokeai_temporal.worker`), never by a
  queue processor: `dequeue` here returns nothing, so an `invokeai serve` with its queue processor
  on stays an API server, and crash recovery is Temporal's (heartbeats, retries), not the
  processors' lease sweep.
* **Cancel** writes the status (PostgreSQL notifies every worker: a running item's session is
  canceled at once) and cancels the items' workflows (a pending item never starts).

Priority keys: Temporal's default five levels, 1 first. Queue priority 0 (the default) is key 3;
1 is 2, 2 and above 1; -1 is 4, -2 and below 5. Within one key Temporal does not promise strict FIFO;
`move_item` reorders the listing and what is not yet handed to Temporal, not dispatched work.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from invokeai_postgres.queue import PostgresSessionQueue

from invokeai_core import QueueItem, QueueItemNotFoundError, QueueStatus
from invokeai_temporal.client import TemporalConnection, TemporalUnavailableError
from invokeai_temporal.registry import WorkerRegistry, graph_models
from invokeai_temporal.settings import load_settings

if TYPE_CHECKING:
    from temporalio.client import Client

    from invokeai_core import Batch, ExpandedItem, InvokeAIConfig, NodeRegistry, ServiceRuntime
    from invokeai_temporal.workflow_worker import WorkflowHost

logger = logging.getLogger("invokeai.temporal")


def priority_key(priority: int) -> int:
    """The Temporal priority key (1 first, 5 last) of a queue priority (higher first); see above."""
    return 3 - max(-2, min(2, int(priority)))


class TemporalSessionQueue(PostgresSessionQueue):
    """See the module docstring."""

    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        registry: NodeRegistry | None = None,
        runtime: ServiceRuntime | None = None,
    ) -> None:
        super().__init__(config, registry=registry, runtime=runtime)
        self.temporal = load_settings(config)
        self.workers = WorkerRegistry(self.db, self.temporal.worker_ttl)
        self.recovery_interval = None  # Temporal retries a dead worker's item; no lease sweep
        self.connection = TemporalConnection(self.temporal)
        try:
            self.connection.check()
        except BaseException:
            self.connection.close()
            raise
        self._workflows: WorkflowHost | None = None
        self._sweep_stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="invokeai-temporal-dispatch", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        """Stop the sweep and the Temporal connection (the services' lifecycle calls it)."""
        self._sweep_stop.set()
        if self._workflows is not None:
            self._workflows.stop()
        self.connection.close()

    # -- enqueue ----------------------------------------------------------------------------------
    def insert_batch(
        self, queue_id: str, batch: Batch, items: list[ExpandedItem], *, prepend: bool
    ) -> tuple[int, list[int]]:
        self.connection.check()  # Temporal away: 503 before anything is accepted
        priority, ids = super().insert_batch(queue_id, batch, items, prepend=prepend)
        self.dispatch([(i, queue_id, priority, item.graph) for i, item in zip(ids, items, strict=True)])
        return priority, ids

    def retry_items(self, item_ids: list[int]) -> list[int]:
        new_ids = super().retry_items(item_ids)
        if new_ids:
            found = [self.get_item(i) for i in new_ids]
            self.dispatch([(i.item_id, i.queue_id, i.priority, i.graph) for i in found])
        return new_ids

    def dispatch(self, items: Sequence[tuple[int, str, int, Any]]) -> int:
        """Start the workflows of (item id, queue id, priority, graph); returns how many were handed
        over. A failure is logged, not raised: the sweep hands the rest over later."""
        if not items:
            return 0
        from temporalio.common import Priority, WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError

        from invokeai_temporal.workflow import WORKFLOW, ItemJob, workflow_id

        settings = self.temporal
        needs = [graph_models(graph) for _, _, _, graph in items]
        try:
            routes = self.workers.routes(needs) if settings.affinity else [None] * len(items)
        except Exception:
            logger.exception("reading the worker registry failed; items go to the shared queue")
            routes = [None] * len(items)

        eager = self._workflows is not None and self._workflows.running

        async def start_all(client: Client) -> list[int]:
            async def start(item: tuple[int, str, int, Any], route: str | None) -> int | None:
                item_id, queue_id, priority, _ = item
                key = priority_key(priority)
                job = ItemJob(
                    item_id=item_id,
                    queue_id=queue_id,
                    priority_key=key,
                    shared_queue=settings.shared_queue,
                    route=route,
                    affinity_wait=settings.affinity_wait,
                    heartbeat_timeout=settings.heartbeat_timeout,
                    max_attempts=settings.max_attempts,
                )
                try:
                    await client.start_workflow(
                        WORKFLOW,
                        job,
                        id=workflow_id(settings.task_queue_prefix, item_id),
                        task_queue=settings.workflow_queue,
                        priority=Priority(priority_key=key),
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        request_eager_start=eager,
                    )
                except WorkflowAlreadyStartedError:
                    pass  # handed over already (by a sweep of another process)
                return item_id

            results = await asyncio.gather(
                *(start(item, route) for item, route in zip(items, routes, strict=True)), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                logger.warning("starting %d of %d workflow(s) failed: %s", len(errors), len(items), errors[0])
            return [r for r in results if isinstance(r, int)]

        try:
            started = self.connection.call(start_all, timeout=max(settings.connect_timeout, 30.0))
        except TemporalUnavailableError as e:
            logger.warning("%s; %d accepted item(s) are handed over when it is back", e, len(items))
            return 0
        route_of = {item[0]: route for item, route in zip(items, routes, strict=True)}
        try:
            self.workers.mark_dispatched([(i, route_of[i]) for i in started])
        except Exception:
            logger.exception("recording handed-over items failed (the sweep finds them started)")
        return len(started)

    def _sweep_loop(self) -> None:
        while not self._sweep_stop.wait(self.temporal.dispatch_interval):
            try:
                self.sweep()
            except Exception as e:
                logger.warning("handing accepted items over to Temporal failed: %s", e)

    def sweep(self) -> int:
        """Hand over the accepted items no workflow was started for; returns how many."""
        return self.dispatch(self.workers.undispatched())

    # -- pause -------------------------------------------------------------------------------------
    def resume(self, queue_id: str) -> None:
        """Resume, and tell the workflows of the queue's pending items at once (they wait for this
        signal, or look again every few seconds, while the queue is paused)."""
        super().resume(queue_id)
        with self.db.read() as conn:
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT item_id FROM queue_items WHERE queue_id = ? AND status = 'pending'", (queue_id,)
                ).fetchall()
            ]
        if not ids:
            return
        from invokeai_temporal.workflow import RESUMED, workflow_id

        prefix = self.temporal.task_queue_prefix

        async def signal_all(client: Client) -> None:
            await asyncio.gather(
                *(client.get_workflow_handle(workflow_id(prefix, i)).signal(RESUMED) for i in ids),
                return_exceptions=True,
            )

        try:
            self.connection.call(signal_all, timeout=max(self.temporal.connect_timeout, 30.0))
        except TemporalUnavailableError as e:
            logger.warning("%s; paused items look again within seconds", e)

    # -- cancel -----------------------------------------------------------------------------------
    def cancel_items(self, item_ids: list[int]) -> list[int]:
        ids = super().cancel_items(item_ids)
        self._cancel_workflows(ids)
        return ids

    def cancel_batch(self, queue_id: str, batch_ids: list[str]) -> list[int]:
        ids = super().cancel_batch(queue_id, batch_ids)
        self._cancel_workflows(ids)
        return ids

    def cancel_all_except_current(self, queue_id: str) -> list[int]:
        ids = super().cancel_all_except_current(queue_id)
        self._cancel_workflows(ids)
        return ids

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
        item = super().set_status(
            item_id,
            status,
            error_type=error_type,
            error_message=error_message,
            error_traceback=error_traceback,
            expected=expected,
        )
        if status == "canceled" and item.status == "canceled":
            self._cancel_workflows([item_id])
        return item

    def _cancel_workflows(self, item_ids: Sequence[int]) -> None:
        """Cancel the items' workflows, best effort: a workflow that never starts its activity is
        gone; one that is not reachable now finds its item canceled when it runs."""
        if not item_ids:
            return
        from invokeai_temporal.workflow import workflow_id

        prefix = self.temporal.task_queue_prefix

        async def cancel_all(client: Client) -> None:
            async def cancel(item_id: int) -> None:
                await client.get_workflow_handle(workflow_id(prefix, item_id)).cancel()

            results = await asyncio.gather(*(cancel(i) for i in item_ids), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException) and "not found" not in str(r).lower():
                    logger.debug("cancelling a workflow: %s", r)

        try:
            self.connection.call(cancel_all)
        except TemporalUnavailableError as e:
            logger.warning("%s; the canceled items' workflows end when they run", e)

    # -- no queue processor takes items: workers do ------------------------------------------------
    def dequeue(self) -> QueueItem | None:
        return None

    def claim_processor(self) -> Callable[[], None]:
        """The queue processor of a long-lived process (`invokeai serve`) runs no items; with
        `eager_start` it hosts a workflow worker instead, so this process's enqueues start their
        workflows eagerly (see workflow_worker.py). Released when the processor stops."""
        if not self.temporal.eager_start or self._workflows is not None:
            return lambda: None
        from invokeai_temporal.workflow_worker import WorkflowHost

        host = WorkflowHost(
            self.connection,
            self.temporal.workflow_queue,
            lambda job: self.fail_unfinished(job.item_id, job.error_type, job.message),
        )
        try:
            host.start()
        except TemporalUnavailableError as e:  # away since the start check: enqueues start workflows as usual
            logger.warning("%s; this process starts its workflows without eager start", e)
            return lambda: None
        self._workflows = host

        def release() -> None:
            if self._workflows is host:
                self._workflows = None
                host.stop()

        return release

    def recover_interrupted(
        self,
        *,
        requeue: bool,
        item_ids: list[int] | None = None,
        new_sessions: bool = False,
        error_type: str = "ProcessTerminated",
        error_message: str = "the process was terminated while this item was running",
    ) -> list[QueueItem]:
        if item_ids is None:
            return []  # Temporal re-runs a dead worker's item; nothing to sweep
        return super().recover_interrupted(
            requeue=requeue,
            item_ids=item_ids,
            new_sessions=new_sessions,
            error_type=error_type,
            error_message=error_message,
        )

    # -- for workers ------------------------------------------------------------------------------
    def register_worker(self) -> Callable[[], None]:
        """Register this process as a queue worker (a `queue_workers` row with its heartbeat, as the
        PostgreSQL queue's processors): `worker_id` is set until the returned release is called."""
        return super().claim_processor()

    def status_for_worker(self, item_id: int) -> tuple[str, str, bool] | None:
        """The item's status, queue id and whether that queue is paused, in one query (None when the
        item is gone): what a worker checks before `take`, on every item's dispatch path."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT q.status, q.queue_id, COALESCE(s.paused, FALSE) FROM queue_items q "
                "LEFT JOIN queue_state s ON s.queue_id = q.queue_id WHERE q.item_id = ?",
                (item_id,),
            ).fetchone()
        return None if row is None else (row[0], row[1], bool(row[2]))

    def take(self, item_id: int) -> QueueItem | str:
        """Mark the item in progress under this worker: a pending item, or one left in progress by a
        worker that is dead (no `queue_workers` heartbeat within `worker_lease`) or by this one.
        Returns the item (emitting its status change when it was pending), else why not: its status
        when it is finished or gone, "running elsewhere" while a live worker still runs it (after a
        Temporal outage both may hold an attempt: the new one must wait, never run it twice)."""
        from invokeai_core import utcnow

        with self._mine_lock, self.db.transaction() as conn:
            row = conn.execute(
                "UPDATE queue_items q SET status = 'in_progress', started_at = COALESCE(q.started_at, ?), "
                "worker_id = ? FROM (SELECT item_id, status, worker_id FROM queue_items WHERE item_id = ? FOR UPDATE) "
                "old WHERE q.item_id = old.item_id AND (old.status = 'pending' OR (old.status = 'in_progress' AND "
                "(old.worker_id IS NULL OR old.worker_id = ? OR old.worker_id NOT IN (SELECT worker_id FROM "
                "queue_workers WHERE last_seen > now() - make_interval(secs => ?))))) RETURNING old.status",
                (utcnow(), self.worker_id, item_id, self.worker_id, self.lease),
            ).fetchone()
            if row is not None and self.worker_id is not None:
                self._mine.add(item_id)
        if row is None:
            try:
                status = self.get_status(item_id)
            except QueueItemNotFoundError:
                return "deleted"
            return "running elsewhere" if status == "in_progress" else status
        item = self.get_item(item_id)
        if row[0] == "pending":
            self._emit_status([item])
        return item

    def fail_unfinished(self, item_id: int, error_type: str, message: str) -> None:
        """Fail an item unless it already finished (the workflow gave up on it)."""
        if self.get_status(item_id) in ("pending", "in_progress"):
            self.set_status(item_id, "failed", error_type=error_type, error_message=message)
