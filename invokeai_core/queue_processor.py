"""The queue processor: worker threads that take items from the session queue and run them.

The Invoker owns it (`Invoker.start(process_queue=True)`, or `queue_processor = true` in the
configuration; `invokeai queue process` runs one in the foreground). Each worker takes the next item
(`queue.dequeue()`, atomic), builds the item's session from its graph (or finds it, when a crashed
item was re-queued and its session resumes), runs it with `Invoker.run_session(queue_id=,
item_id=)`, and records the outcome as the item's status. The queue emits
`queue_item_status_changed` for every status change and `batch_enqueued` for every batch.

* **Waking.** Workers wake at once for work enqueued in this process (they listen to the queue's
  events) and poll every `poll_interval` seconds for work enqueued, resumed or canceled by another
  process sharing the database; a queue that notifies (`SessionQueueBase.listen`, e.g. PostgreSQL's
  LISTEN/NOTIFY) wakes them at once, and they poll only every `NOTIFIED_POLL_INTERVAL` seconds as a
  safety net.
* **Cancelling.** Cancelling an in-progress item cancels its session (the running node sees
  `context.is_canceled()`); cancelling pending items never touches the running one.
* **Pause/resume** are per queue and stored by the queue (the SQLite queue persists them): a paused
  queue's items stay pending, the running item finishes.
* **One processor per database.** `start` claims the queue (`claim_processor`, an exclusive file
  lock for SQLite), so crash recovery never touches the items of a live processor. A queue built for
  many processors (invokeai-postgres) lets each claim it, tracks which took what, and sets
  `recovery_interval`: every processor then re-runs crash recovery that often, for dead ones' items.
* **Crash recovery.** At start, items left `in_progress` by a process that died are failed with a
  `ProcessTerminated` error (their sessions get the same error on the node that was running), or,
  with `queue_requeue_on_crash`, put back to pending under the same item and session ids: the
  session resumes after its last persisted node.
* **Stopping** cancels what is running; those items are treated like a crash (failed with
  `ProcessorStopped`, or re-queued with a fresh session when `queue_requeue_on_crash` is set).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from invokeai_core.errors import SessionNotFoundError, StorageUnavailableError
from invokeai_core.services.base import DEFAULT_QUEUE_ID, QueueItem, QueueItemNotFoundError

if TYPE_CHECKING:
    from invokeai_core.events import EventBase
    from invokeai_core.invoker import Invoker
    from invokeai_core.services.base import SessionQueueBase
    from invokeai_core.session import Session

logger = logging.getLogger("invokeai.queue")

TERMINATED = "the process was terminated while this item was running"
STOPPED = "the queue processor stopped while this item was running"
#: Seconds between polls of a queue that notifies its processors (`SessionQueueBase.listen`).
NOTIFIED_POLL_INTERVAL = 5.0


class QueueProcessor:
    """Runs queue items on worker threads; see the module docstring."""

    def __init__(
        self,
        invoker: Invoker,
        *,
        workers: int | None = None,
        poll_interval: float = 0.5,
        requeue_on_crash: bool | None = None,
    ) -> None:
        config = invoker.config
        self.invoker = invoker
        self.workers = workers if workers is not None else config.queue_workers
        self.poll_interval = poll_interval
        self.requeue_on_crash = config.queue_requeue_on_crash if requeue_on_crash is None else requeue_on_crash
        self._running: dict[int, QueueItem] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._check = threading.Event()  # look for remote cancels now
        self._unlisten: Any = None
        self._poll = poll_interval
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._release: Any = None
        self._unsubscribe: Any = None
        self._started = False
        #: Items recovered at the last start (failed or re-queued).
        self.recovered: list[QueueItem] = []

    @property
    def queue(self) -> SessionQueueBase:
        return self.invoker.services.queue

    @property
    def is_started(self) -> bool:
        return self._started

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> QueueProcessor:
        if self._started:
            return self
        queue = self.queue
        self._release = queue.claim_processor()
        try:
            self.recovered = self.recover()
        except BaseException:
            self._release()
            self._release = None
            raise
        self._stopping.clear()
        self._unlisten = queue.listen(self._on_remote_change)
        self._poll = self.poll_interval if self._unlisten is None else max(self.poll_interval, NOTIFIED_POLL_INTERVAL)
        self._unsubscribe = self.invoker.services.events.subscribe(
            self._on_event, names=["batch_enqueued", "queue_item_status_changed"]
        )
        self._started = True
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, name=f"invokeai-queue-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        monitor = threading.Thread(target=self._monitor, name="invokeai-queue-monitor", daemon=True)
        monitor.start()
        self._threads.append(monitor)
        self._wake.set()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop taking items, cancel the running ones (see the module docstring) and join."""
        if not self._started:
            return
        self._stopping.set()
        self._wake.set()
        self._check.set()
        with self._lock:
            running = list(self._running.values())
        for item in running:
            try:
                self.invoker.cancel(item.session_id)
            except SessionNotFoundError:
                pass
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._release is not None:
            self._release()
            self._release = None
        self._started = False

    def recover(self, *, collect_orphans: bool = True) -> list[QueueItem]:
        """Crash recovery: fail (or re-queue) the items a dead process left in progress, and (at
        start) collect image files a crash left without a record."""
        items = self.queue.recover_interrupted(requeue=self.requeue_on_crash, error_message=TERMINATED)
        if items:
            logger.warning(
                "%s %d item(s) left running by a process that died: %s",
                "re-queued" if self.requeue_on_crash else "failed",
                len(items),
                ", ".join(str(i.item_id) for i in items),
            )
        if not self.requeue_on_crash:
            for item in items:
                self._fail_session(item.session_id, "ProcessTerminated", TERMINATED)
        if collect_orphans:
            try:
                self.invoker.services.image_service.collect_orphans()
            except Exception:
                logger.exception("collecting image files without records failed")
        return items

    # -- control ----------------------------------------------------------------------------------
    def pause(self, queue_id: str = DEFAULT_QUEUE_ID) -> None:
        self.queue.pause(queue_id)

    def resume(self, queue_id: str = DEFAULT_QUEUE_ID) -> None:
        self.queue.resume(queue_id)
        self._wake.set()

    def wake(self) -> None:
        """Look for work now (instead of at the next poll)."""
        self._wake.set()

    @property
    def running(self) -> list[QueueItem]:
        """The items being run by this processor now."""
        with self._lock:
            return list(self._running.values())

    # -- workers ----------------------------------------------------------------------------------
    def _worker(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                item = self.queue.dequeue()
            except StorageUnavailableError as e:  # the store is away for now: one line per poll
                logger.warning("taking the next queue item failed: %s", e)
                self._stopping.wait(self.poll_interval)
                continue
            except Exception:
                logger.exception("taking the next queue item failed")
                self._stopping.wait(self.poll_interval)
                continue
            if item is None:
                self._wake.wait(self._poll)
                continue
            self._wake.set()  # there may be more: let an idle worker look too
            self._run(item)

    def _on_remote_change(self) -> None:
        self._wake.set()
        self._check.set()

    def _monitor(self) -> None:
        """Cancel running items canceled by another process (their status changed in the store) and,
        for a queue with a `recovery_interval`, recover the items of processors that died."""
        import time

        interval = self.queue.recovery_interval
        next_recovery = time.monotonic() + interval if interval else None
        while True:
            self._check.wait(self._poll)
            self._check.clear()
            if self._stopping.is_set():
                return
            if next_recovery is not None and interval and time.monotonic() >= next_recovery:
                next_recovery = time.monotonic() + interval
                try:
                    self.recovered += self.recover(collect_orphans=False)
                except StorageUnavailableError as e:
                    logger.warning("recovering the items of dead processors failed: %s", e)
                except Exception:
                    logger.exception("recovering the items of dead processors failed")
            for item in self.running:
                try:
                    status = self.queue.get_status(item.item_id)
                except QueueItemNotFoundError:
                    continue
                except StorageUnavailableError as e:
                    logger.warning("checking queue item %s failed: %s", item.item_id, e)
                    continue
                except Exception:
                    logger.exception("checking queue item %s failed", item.item_id)
                    continue
                if status == "canceled" and not self.invoker.is_canceled(item.session_id):
                    self._cancel_session(item.session_id)

    def _on_event(self, event: EventBase) -> None:
        if event.event_name == "batch_enqueued":
            self._wake.set()
            return
        status = getattr(event, "status", None)
        if status == "pending":
            self._wake.set()
        elif status == "canceled":
            with self._lock:
                item = self._running.get(event.item_id) if event.item_id is not None else None
            if item is not None:
                self._cancel_session(item.session_id)

    def _cancel_session(self, session_id: str) -> None:
        try:
            self.invoker.cancel(session_id)
        except SessionNotFoundError:
            pass

    def _session_for(self, item: QueueItem) -> Session:
        try:
            return self.invoker.get_session(item.session_id)  # re-queued after a crash: resume it
        except SessionNotFoundError:
            return self.invoker.create_session(item.graph, session_id=item.session_id)

    def _run(self, item: QueueItem) -> None:
        queue = self.queue
        invoker = self.invoker
        with self._lock:
            self._running[item.item_id] = item
        try:
            if self._stopping.is_set():  # taken while stopping: nothing ran, give it back
                queue.recover_interrupted(requeue=True, item_ids=[item.item_id])
                return
            try:
                session = self._session_for(item)
            except Exception as e:
                self._fail(item, type(e).__name__, f"the item's session cannot be built: {e}")
                return
            if queue.get_status(item.item_id) != "in_progress":
                return  # canceled between being taken and starting
            session = invoker.run_session(session.id, queue_id=item.queue_id, item_id=item.item_id)
            self._record_outcome(item, session)
        except Exception as e:
            logger.exception("queue item %s failed in the processor", item.item_id)
            self._fail(item, type(e).__name__, str(e))
        finally:
            with self._lock:
                self._running.pop(item.item_id, None)
            invoker.forget(item.session_id)

    def _record_outcome(self, item: QueueItem, session: Session) -> None:
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
            if queue.get_status(item.item_id) != "in_progress":
                return  # canceled by a user: already recorded
            if self._stopping.is_set():
                queue.recover_interrupted(
                    requeue=self.requeue_on_crash,
                    item_ids=[item.item_id],
                    new_sessions=True,  # the old session is marked canceled
                    error_type="ProcessorStopped",
                    error_message=STOPPED,
                )
            else:
                queue.set_status(item.item_id, "canceled", expected="in_progress")
        else:
            self._fail(item, "SessionIncomplete", f"the session stopped in status '{status}' with nodes left to run")

    def _fail(self, item: QueueItem, error_type: str, message: str) -> None:
        try:
            self.queue.set_status(
                item.item_id, "failed", error_type=error_type, error_message=message, expected="in_progress"
            )
        except Exception:
            logger.exception("recording the failure of queue item %s failed", item.item_id)

    def _fail_session(self, session_id: str, error_type: str, message: str) -> None:
        """Record a crash as the error of the node that was running (`Session.mark_crashed`)."""
        sessions = self.invoker.services.sessions
        try:
            session = sessions.get(session_id)
        except SessionNotFoundError:
            return  # it never started
        except Exception:
            logger.exception("loading session %s for crash recovery failed", session_id)
            return
        if session.mark_crashed(error_type, message):
            sessions.save(session)
