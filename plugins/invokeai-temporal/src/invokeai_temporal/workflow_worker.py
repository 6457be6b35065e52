"""The Temporal worker that runs the queue-item workflows, for `invokeai worker` and `invokeai serve`.

Workflow tasks are small and deterministic (the workflow decides where its item's activity goes), so
any long-lived process may run them. `invokeai worker` always does. `invokeai serve` does too while
`eager_start` is on (the default): a server that hosts a workflow worker on the same client can ask
Temporal to *start its workflows eagerly* (`request_eager_start`). The first workflow task then comes
back in the start call's response and runs in the server at once, instead of being matched to a
polling worker, which is one queue round trip less on every item's dispatch (bench/scaleout.py).
The workflow stays cached (sticky) where its first task ran; if that process goes away, Temporal
hands its next task to another workflow worker after the sticky timeout (2 s for a server's), so
nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from invokeai_temporal.workflow import FAIL_ITEM, FailJob, QueueItemWorkflow

if TYPE_CHECKING:
    from temporalio.client import Client

    from invokeai_temporal.client import TemporalConnection

logger = logging.getLogger("invokeai.temporal")


def workflow_worker(
    client: Client,
    task_queue: str,
    fail_item: Callable[[FailJob], None],
    executor: Executor,
    graceful_shutdown: timedelta,
    sticky_timeout: timedelta = timedelta(seconds=10),
) -> Worker:
    """A worker for the workflows on `task_queue`, with their `invokeai-fail-item` local activity.
    Build it on the loop it runs on. `sticky_timeout`: how long a workflow task waits for this
    process (which has the workflow cached) before any workflow worker may take it."""

    @activity.defn(name=FAIL_ITEM)
    def fail(job: FailJob) -> None:
        fail_item(job)

    return Worker(
        client,
        task_queue=task_queue,
        workflows=[QueueItemWorkflow],
        # the workflow is small, deterministic and imports only temporalio; the sandbox
        # (fresh module state per run) cost ~7 ms of each item's dispatch (bench/scaleout.py)
        workflow_runner=UnsandboxedWorkflowRunner(),
        activities=[fail],
        activity_executor=executor,
        max_concurrent_activities=1,
        graceful_shutdown_timeout=graceful_shutdown,
        sticky_queue_schedule_to_start_timeout=sticky_timeout,
    )


class WorkflowHost:
    """Runs a workflow worker on a `TemporalConnection`'s loop in the background (see the module
    docstring); `running` tells whether workflows started through that connection may start eagerly."""

    def __init__(self, connection: TemporalConnection, task_queue: str, fail_item: Callable[[FailJob], None]) -> None:
        self.connection = connection
        self.task_queue = task_queue
        self.fail_item = fail_item
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="invokeai-temporal-fail")
        self._worker: Worker | None = None
        self._future: Future[None] | None = None

    @property
    def running(self) -> bool:
        return self._future is not None and not self._future.done()

    def start(self) -> None:
        client = self.connection.client  # connects (a clear error when Temporal is away)

        async def run() -> None:
            # a server that goes away hands its cached workflows on quickly
            self._worker = workflow_worker(
                client, self.task_queue, self.fail_item, self._executor, timedelta(seconds=5), timedelta(seconds=2)
            )
            await self._worker.run()

        self._future = asyncio.run_coroutine_threadsafe(run(), self.connection.loop)
        self._future.add_done_callback(self._ended)

    def _ended(self, future: Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.warning(
                "the workflow worker of this process stopped (%s); its workflows start as usual", future.exception()
            )

    def stop(self) -> None:
        worker, future = self._worker, self._future
        self._future = None
        if worker is not None and future is not None and not future.done():
            try:
                asyncio.run_coroutine_threadsafe(worker.shutdown(), self.connection.loop).result(15)
            except Exception as e:
                logger.debug("stopping the workflow worker: %s", e)
        self._executor.shutdown(wait=False, cancel_futures=True)
