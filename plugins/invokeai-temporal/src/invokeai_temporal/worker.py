"""`invokeai worker`: one process per device, running queue items handed out by Temporal.

A worker polls three task queues: the workflows' (any worker runs the light workflow code), the
shared items queue and its own (`<prefix>-worker-<id>`, for items sent to it for the models it
holds). It runs one item at a time per device (concurrency 1: a second item handed to it while it
is busy is answered `WorkerBusy` and goes to another worker at once).

Running an item (`run_item`, the activity):

* answers `QueuePaused` when the item's queue is paused (the workflow waits for the resume), then
  marks it in progress under this worker (`TemporalSessionQueue.take`) and emits its status change
  (while a live worker still runs it, after a Temporal outage, it waits for that one instead);
* builds its session, or finds it: an attempt after a dead worker resumes the persisted session
  after its last completed node, after deleting the images the interrupted node had written (so a
  retried item leaves exactly one set of images);
* runs it with the kernel's invoker, heartbeating to Temporal after every node and denoising step
  (and every second between them) with the progress as heartbeat details;
* records the outcome (completed, failed with the node's error, canceled) as the item's status and
  returns: node errors, and a session that cannot be built (a model this worker does not have, a
  bad graph), are the item's failure, never a retry; only a shared store that is away (PostgreSQL)
  fails the attempt, so that Temporal tries again.

Cancel reaches the running item two ways, whichever is first: PostgreSQL notifies every worker of a
canceled item (the session is canceled within milliseconds), and Temporal's activity cancellation
arrives with the next heartbeat. The worker process keeps serving.

The models a worker holds are the ones its sessions loaded (`model_load_complete`) and the cache
has not evicted (`model_unloaded`); it advertises them, with whether it is busy, in the registry
every third of `worker_ttl` and at every change.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from invokeai_core import (
    FINISHED,
    SessionNotFoundError,
    StorageUnavailableError,
    prepared_id,
)
from invokeai_temporal.workflow import QUEUE_PAUSED, RUN_ITEM, WORKER_BUSY, FailJob
from invokeai_temporal.workflow_worker import workflow_worker

if TYPE_CHECKING:
    from invokeai_core import EventBase, Invoker, QueueItem, Session
    from invokeai_temporal.queue import TemporalSessionQueue

logger = logging.getLogger("invokeai.temporal")
#: How long a stopping worker lets its running item finish.
_GRACE = timedelta(seconds=60)


class DeviceWorker:
    """The activities and the Temporal workers of one `invokeai worker` process."""

    def __init__(self, invoker: Invoker, queue: TemporalSessionQueue, device: str) -> None:
        self.invoker = invoker
        self.queue = queue
        self.settings = queue.temporal
        self.device = device
        self.worker_id: int | None = None
        self.own_queue = ""
        self._device = threading.Lock()
        self._state = threading.Lock()
        self._current: QueueItem | None = None
        self._held: dict[str, set[str]] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.loads = 0

    # -- the registry -----------------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        with self._state:
            return sorted(m for m, parts in self._held.items() if parts)

    def advertise(self) -> None:
        if self.worker_id is None:
            return
        try:
            self.queue.workers.advertise(
                self.worker_id,
                task_queue=self.own_queue,
                host=socket.gethostname(),
                pid=os.getpid(),
                device=self.device,
                models=self.models,
                busy=self._device.locked(),
            )
        except Exception as e:
            logger.warning("worker %s: advertising failed: %s", self.worker_id, e)

    def _advertise_loop(self) -> None:
        while not self._stopping.wait(self.settings.worker_ttl / 3):
            self.advertise()

    def _on_event(self, event: EventBase) -> None:
        current = self._current
        if current is None or getattr(event, "session_id", None) != current.session_id:
            return  # another process's event (the bus may be shared)
        name = event.event_name
        if name in ("model_load_complete", "model_unloaded"):
            model, part = getattr(event, "model_name", ""), getattr(event, "submodel", None) or ""
            with self._state:
                parts = self._held.setdefault(model, set())
                if name == "model_load_complete":
                    parts.add(part)
                    self.loads += 1
                else:
                    parts.discard(part)
            self.advertise()
            return
        if name == "invocation_complete":
            self._heartbeat({"node": getattr(event, "node_id", None)})
        elif name == "invocation_progress":
            self._heartbeat({"node": getattr(event, "node_id", None), "step": getattr(event, "step", None)})

    def _heartbeat(self, details: dict[str, Any]) -> None:
        try:
            activity.heartbeat(details)
        except RuntimeError:
            pass  # not in the activity's thread (an event from elsewhere)

    def _on_notify(self) -> None:
        """PostgreSQL said work or a cancel happened: cancel the running item if it was canceled."""
        self._wake.set()
        current = self._current
        if current is None:
            return
        try:
            status = self.queue.get_status(current.item_id)
        except Exception:
            return
        if status == "canceled":
            self._cancel_session(current.session_id)

    def _cancel_session(self, session_id: str) -> None:
        try:
            self.invoker.cancel(session_id)
        except SessionNotFoundError:
            pass

    # -- activities -------------------------------------------------------------------------------
    def run_item(self, item_id: int) -> str:
        """The `invokeai-run-item` activity; see the module docstring. Returns the item's status."""
        own = activity.info().task_queue == self.own_queue
        deadline = time.monotonic() + (self.settings.affinity_wait if own else 0.0)
        while not self._device.acquire(timeout=0.05):
            if time.monotonic() >= deadline or self._stopping.is_set():
                raise ApplicationError(f"worker {self.worker_id} is busy with another item", type=WORKER_BUSY)
            activity.heartbeat({"waiting": "device"})
        try:
            with activity.shield_thread_cancel_exception():
                return self._run_item(item_id)
        finally:
            with self._state:
                self._current = None
            self._device.release()
            self.advertise()

    def fail_item(self, job: FailJob) -> None:
        """The `invokeai-fail-item` local activity: the workflow gave up on an item."""
        self.queue.fail_unfinished(job.item_id, job.error_type, job.message)

    def _run_item(self, item_id: int) -> str:
        queue = self.queue
        found = queue.status_for_worker(item_id)
        if found is None:
            return "deleted"
        status, queue_id, paused = found
        if status in FINISHED:
            return status
        if status == "pending" and paused:
            raise ApplicationError(f"queue '{queue_id}' is paused", type=QUEUE_PAUSED, non_retryable=True)
        while True:
            taken = queue.take(item_id)
            if not isinstance(taken, str):
                break
            if taken != "running elsewhere":
                return taken
            # a live worker still runs it (its attempt outlived a Temporal outage): wait for it
            activity.heartbeat({"waiting": "another worker"})
            if activity.is_cancelled():
                return queue.get_status(item_id)
            self._wake.clear()
            self._wake.wait(0.5)
        with self._state:
            self._current = taken
        self.advertise()
        try:
            session = self._session_for(taken)
        except StorageUnavailableError:
            raise  # the shared store is away: another attempt, later
        except Exception as e:  # the item's own fault (an unknown model, a bad graph): no retry
            return self._fail(taken, type(e).__name__, f"the item's session cannot be built: {e}")
        if queue.get_status(item_id) != "in_progress":  # canceled meanwhile
            return queue.get_status(item_id)
        beat = self._start_liveness(taken)
        try:
            session = self.invoker.run_session(session.id, queue_id=taken.queue_id, item_id=taken.item_id)
        except StorageUnavailableError:
            raise
        except Exception as e:
            logger.exception("queue item %s failed in the worker", item_id)
            return self._fail(taken, type(e).__name__, str(e))
        finally:
            beat()
            self.invoker.forget(taken.session_id)
        return self._record_outcome(taken, session)

    def _fail(self, item: QueueItem, error_type: str, message: str) -> str:
        """Fail the item for its own fault, as the kernel's queue processor does (never retried)."""
        self.queue.set_status(
            item.item_id, "failed", error_type=error_type, error_message=message, expected="in_progress"
        )
        return self.queue.get_status(item.item_id)

    def _session_for(self, item: QueueItem) -> Session:
        """The item's session: resumed after its last completed node when an earlier attempt ran
        it (its interrupted node's images deleted first), else built from the item's graph."""
        try:
            session = self.invoker.get_session(item.session_id)
        except SessionNotFoundError:
            return self.invoker.create_session(item.graph, session_id=item.session_id)
        done = {prepared_id(k) for k in session.history}
        images = self.invoker.services.image_service
        stale = [
            r.image_name
            for r in images.records.list(session_id=item.session_id, limit=10_000).items
            if r.node_id not in done
        ]
        for name in stale:
            images.delete(name)
        logger.info(
            "item %s: resuming its session after %d completed node(s) (%d image(s) of the interrupted node deleted)",
            item.item_id,
            len(done),
            len(stale),
        )
        return session

    def _start_liveness(self, item: QueueItem) -> Callable[[], None]:
        """Heartbeat every second while the session runs (a long node between events) and cancel
        the session when Temporal cancels the activity; returns the stop function."""
        context = contextvars.copy_context()
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(min(1.0, self.settings.heartbeat_timeout / 3)):
                try:
                    context.run(activity.heartbeat, {"alive": True})
                    details = context.run(activity.cancellation_details)
                    # only a requested cancel stops the session: after a Temporal outage the server may
                    # call this attempt timed out while it runs fine (it records its outcome itself)
                    if details is not None and details.cancel_requested:
                        self._cancel_session(item.session_id)
                except Exception:
                    logger.debug("heartbeat failed", exc_info=True)

        thread = threading.Thread(target=loop, name="invokeai-temporal-heartbeat", daemon=True)
        thread.start()

        def done() -> None:
            stop.set()
            thread.join(5)

        return done

    def _record_outcome(self, item: QueueItem, session: Session) -> str:
        queue = self.queue
        status = session.status
        if status == "completed":
            queue.set_status(item.item_id, "completed", expected="in_progress")
        elif status == "failed":
            error = next(iter(session.errors.values()))
            queue.set_status(
                item.item_id,
                "failed",
                error_type=error.type,
                error_message=error.message,
                error_traceback=error.traceback,
                expected="in_progress",
            )
        elif status == "canceled":
            if queue.get_status(item.item_id) == "in_progress":  # canceled through Temporal itself
                queue.set_status(item.item_id, "canceled", expected="in_progress")
        else:
            queue.set_status(
                item.item_id,
                "failed",
                error_type="SessionIncomplete",
                error_message=f"the session stopped in status '{status}' with nodes left to run",
                expected="in_progress",
            )
        return queue.get_status(item.item_id)

    # -- running ----------------------------------------------------------------------------------
    def serve(self, stop: threading.Event, on_ready: Callable[[str], None] | None = None) -> None:
        """Register, run the Temporal workers until `stop` is set, then shut down gracefully (the
        running item finishes) and unregister."""
        import asyncio

        release = self.queue.register_worker()
        self.worker_id = self.queue.worker_id
        assert self.worker_id is not None
        self.own_queue = self.settings.worker_queue(self.worker_id)
        unsubscribe = self.invoker.services.events.subscribe(
            self._on_event,
            names=["model_load_complete", "model_unloaded", "invocation_complete", "invocation_progress"],
        )
        unlisten = self.queue.listen(self._on_notify)
        self.advertise()
        advertiser = threading.Thread(target=self._advertise_loop, name="invokeai-temporal-advertise", daemon=True)
        advertiser.start()
        client = self.queue.connection.client
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="invokeai-activity")

        @activity.defn(name=RUN_ITEM)
        def run(item_id: int) -> str:
            return self.run_item(item_id)

        loop = self.queue.connection.loop
        workers: list[Worker] = []

        async def run_all() -> None:  # Workers are built on the loop they run on
            workers.extend(
                [
                    workflow_worker(client, self.settings.workflow_queue, self.fail_item, executor, _GRACE),
                    Worker(
                        client,
                        task_queue=self.settings.shared_queue,
                        activities=[run],
                        activity_executor=executor,
                        max_concurrent_activities=1,
                        graceful_shutdown_timeout=_GRACE,
                    ),
                    Worker(
                        client,
                        task_queue=self.own_queue,
                        activities=[run],
                        activity_executor=executor,
                        max_concurrent_activities=1,
                        graceful_shutdown_timeout=_GRACE,
                    ),
                ]
            )
            await asyncio.gather(*(w.run() for w in workers))

        future = asyncio.run_coroutine_threadsafe(run_all(), loop)
        if on_ready is not None:
            on_ready(self.own_queue)
        try:
            while not stop.wait(0.2):
                if future.done():
                    future.result()  # a worker failed: raise it
                    return
        finally:
            self._stopping.set()

            async def shutdown() -> None:
                await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(_GRACE.total_seconds() + 10)
            except Exception as e:
                logger.warning("worker %s: shutting down: %s", self.worker_id, e)
            executor.shutdown(wait=False, cancel_futures=True)
            if unlisten is not None:
                unlisten()
            unsubscribe()
            try:
                self.queue.workers.withdraw(self.worker_id)
            except Exception as e:
                logger.warning("worker %s: unregistering failed: %s", self.worker_id, e)
            release()
