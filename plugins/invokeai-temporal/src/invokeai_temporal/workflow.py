"""The workflow: one per queue item (workflow id `<task_queue_prefix>-item-<item id>`).

It runs the item's session as one activity (`invokeai-run-item`) on a worker:

1. **Affinity.** When the enqueuing server found an idle worker holding the item's models, the
   activity goes first to that worker's own task queue, waiting at most `affinity_wait` seconds to
   be started there (a bounded deferral: an item is never starved by its preferred worker).
2. **Shared queue.** Otherwise, or when that wait ran out or that worker died, the activity goes to
   the shared task queue, which every worker polls. A worker that is busy with another item when it
   gets one answers `WorkerBusy` and the workflow hands the item on at once (not counted as an
   attempt); a worker that dies (no heartbeat for `heartbeat_timeout` seconds) costs an attempt,
   and the next attempt resumes the session after its last completed node.
   A worker that finds the item's queue paused answers `QueuePaused`: the workflow waits for the
   `resumed` signal (sent by `resume`) or `PAUSED_RECHECK` seconds, then hands the item out again,
   so a paused queue holds no worker and resumed items are handed out by priority.
3. **Giving up.** After `max_attempts` attempts the item is failed with the last error
   (`invokeai-fail-item`, a local activity), so it never stays pending forever.

Cancelling the workflow (a canceled queue item) cancels the activity; the worker's own database
listener usually cancels the session first (within milliseconds). Node errors are not activity
errors: the activity records them as the item's failure and returns, so nothing retries them.
Priorities: the workflow and its activities carry the item's Temporal priority key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

WORKFLOW = "invokeai-queue-item"
RUN_ITEM = "invokeai-run-item"
FAIL_ITEM = "invokeai-fail-item"
#: The `ApplicationError.type` a worker answers with when its device is busy.
WORKER_BUSY = "WorkerBusy"
#: The `ApplicationError.type` a worker answers with when the item's queue is paused.
QUEUE_PAUSED = "QueuePaused"
#: The signal `TemporalSessionQueue.resume` sends the workflows of a resumed queue's items.
RESUMED = "resumed"
#: Seconds a paused item's workflow waits for that signal before it looks again.
PAUSED_RECHECK = 5.0
RUN_LIMIT = timedelta(days=7)


def workflow_id(prefix: str, item_id: int) -> str:
    """The item's workflow id: under the deployment's task-queue prefix, since item ids are only
    unique within one database (two deployments may share a Temporal namespace)."""
    return f"{prefix}-item-{item_id}"


@dataclass
class ItemJob:
    """The workflow's input (JSON in Temporal's history)."""

    item_id: int
    queue_id: str
    priority_key: int
    shared_queue: str
    route: str | None = None
    affinity_wait: float = 5.0
    heartbeat_timeout: float = 5.0
    max_attempts: int = 5


@dataclass
class FailJob:
    item_id: int
    error_type: str
    message: str


@workflow.defn(name=WORKFLOW)
class QueueItemWorkflow:
    def __init__(self) -> None:
        self._resumed = False

    @workflow.signal(name=RESUMED)
    def resumed(self) -> None:
        self._resumed = True

    async def _wait_for_resume(self) -> None:
        self._resumed = False
        try:
            await workflow.wait_condition(lambda: self._resumed, timeout=timedelta(seconds=PAUSED_RECHECK))
        except TimeoutError:
            pass

    @workflow.run
    async def run(self, job: ItemJob) -> str:
        if job.route:
            try:
                return await self._run_on(job, job.route, timedelta(seconds=job.affinity_wait))
            except ActivityError as e:
                if is_cancelled_exception(e):
                    raise
                if isinstance(e.cause, ApplicationError) and e.cause.type == QUEUE_PAUSED:
                    await self._wait_for_resume()
                workflow.logger.info("item %s: not run by %s (%s); shared queue", job.item_id, job.route, e.cause)
        attempts = 0
        last = "no attempt"
        while attempts < job.max_attempts:
            try:
                return await self._run_on(job, job.shared_queue, None)
            except ActivityError as e:
                if is_cancelled_exception(e):
                    raise
                cause = e.cause
                if isinstance(cause, ApplicationError) and cause.type == WORKER_BUSY:
                    await workflow.sleep(0.02)
                    continue
                if isinstance(cause, ApplicationError) and cause.type == QUEUE_PAUSED:
                    await self._wait_for_resume()
                    continue
                attempts += 1
                last = str(cause or e)
                await workflow.sleep(min(0.2 * 2**attempts, 2.0))
        await workflow.execute_local_activity(
            FAIL_ITEM,
            FailJob(job.item_id, "WorkerLost", f"the item did not complete in {attempts} attempt(s): {last}"),
            start_to_close_timeout=timedelta(seconds=60),
        )
        return "failed"

    async def _run_on(self, job: ItemJob, task_queue: str, schedule_to_start: timedelta | None) -> str:
        """One attempt of the item on `task_queue` (retries are the workflow's own, above)."""
        result = await workflow.execute_activity(
            RUN_ITEM,
            job.item_id,
            task_queue=task_queue,
            schedule_to_start_timeout=schedule_to_start,
            start_to_close_timeout=RUN_LIMIT,
            heartbeat_timeout=timedelta(seconds=job.heartbeat_timeout),
            retry_policy=RetryPolicy(maximum_attempts=1),
            priority=Priority(priority_key=job.priority_key),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return str(result)
