"""The queue processor: worker threads that run queue items through the Invoker, on the memory and
the SQLite stores (every test runs on both): order, events, failures, cancel, pause, workers,
stopping, crash recovery in process, and one processor per database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_core.batch import Batch, BatchDatum
from invokeai_core.errors import BatchError
from invokeai_core.events import EventBase
from invokeai_core.invoker import Invoker
from invokeai_core.queue_processor import QueueProcessor
from invokeai_core.services.base import QueueError, QueueFullError, SessionQueueBase
from invokeai_core.services.container import Services

Q = "default"


_barrier = threading.Barrier(2, timeout=20)


@invocation_output("qp_meet_output")
class MeetOutput(BaseInvocationOutput):
    ok: bool = OutputField()


@invocation("qp_meet", use_cache=False)
class MeetInvocation(BaseInvocation):
    """Waits until another copy of itself runs at the same time."""

    n: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> MeetOutput:
        _barrier.wait()
        return MeetOutput(ok=True)


@pytest.fixture(params=["memory", "sqlite"])
def invokeai_storage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


def const_graph(value: float = 1.0) -> dict[str, Any]:
    return {
        "nodes": {
            "c": {"id": "c", "type": "tp_const", "value": value},
            "s": {"id": "s", "type": "tp_scale", "factor": 10},
        },
        "edges": [edge("c", "value", "s", "value")],
    }


def sleep_graph(seconds: float) -> dict[str, Any]:
    return {
        "nodes": {
            "c": {"id": "c", "type": "tp_const", "value": 1},
            "z": {"id": "z", "type": "tp_sleep", "seconds": seconds},
        },
        "edges": [edge("c", "value", "z", "value")],
    }


def batch(graph: dict[str, Any], values: list[float] | None = None, **kw: Any) -> Batch:
    data = [[BatchDatum(node_path="c", field_name="value", items=values)]] if values else []
    return Batch(graph=graph, data=data, **kw)


def record(invoker: Invoker, *names: str) -> list[EventBase]:
    seen: list[EventBase] = []
    invoker.services.events.subscribe(seen.append, names=list(names) or None)
    return seen


def status_of(queue: SessionQueueBase, item_id: int) -> str:
    return queue.get_item(item_id).status


def finished(queue: SessionQueueBase, *ids: int) -> bool:
    return all(status_of(queue, i) in ("completed", "failed", "canceled") for i in ids)


@pytest.fixture
def invoker(invokeai_invoker: Invoker) -> Iterator[Invoker]:
    """The test's Invoker with its queue processor running."""
    invokeai_invoker.start(process_queue=True)
    assert invokeai_invoker.queue_processor is not None
    yield invokeai_invoker


# == running =========================================================================================
def test_items_run_in_queue_order_and_every_status_change_is_an_event(invoker: Invoker):
    queue = invoker.queue
    queue.pause(Q)  # hold everything until the whole queue is built
    events = record(invoker, "queue_item_status_changed", "batch_enqueued")
    low = invoker.enqueue_batch(Q, batch(const_graph(), [1, 2])).item_ids
    high = invoker.enqueue_batch(Q, batch(const_graph(), [3], priority=5)).item_ids
    front = invoker.enqueue_batch(Q, batch(const_graph(), [4]), prepend=True).item_ids
    queue.resume(Q)
    invoker.queue_processor.wake()  # type: ignore[union-attr]
    ids = low + high + front
    wait_for(lambda: finished(queue, *ids), what="every item to finish")
    started = [e.item_id for e in events if getattr(e, "status", None) == "in_progress"]
    assert started == front + high + low
    per_item = {i: [getattr(e, "status", None) for e in events if e.item_id == i] for i in ids}
    assert all(v == ["in_progress", "completed"] for v in per_item.values()), per_item
    assert [e.event_name for e in events[:3]] == ["batch_enqueued"] * 3
    for i, value in zip(ids, [1, 2, 3, 4], strict=True):
        item = queue.get_item(i)
        assert item.status == "completed" and item.started_at and item.completed_at
        session = invoker.get_session(item.session_id)
        assert session.status == "completed"
        assert session.results_by_source()["s"].value == value * 10
    changed = [e for e in events if e.event_name == "queue_item_status_changed"]
    assert all(e.queue_id == Q and e.session_id for e in changed)


def test_session_events_carry_the_queue_and_item(invoker: Invoker):
    events = record(invoker, "invocation_complete", "session_complete")
    (item_id,) = invoker.enqueue_batch(Q, batch(const_graph())).item_ids
    wait_for(lambda: finished(invoker.queue, item_id))
    wait_for(lambda: any(e.event_name == "session_complete" for e in events))
    assert {(e.queue_id, e.item_id) for e in events} == {(Q, item_id)}
    assert [e.event_name for e in events] == ["invocation_complete", "invocation_complete", "session_complete"]


def test_a_failing_item_records_the_error_and_the_queue_goes_on(invoker: Invoker):
    fail = {"nodes": {"c": {"id": "c", "type": "tp_fail", "message": "broken on purpose"}}, "edges": []}
    (bad,) = invoker.enqueue_batch(Q, Batch(graph=fail)).item_ids
    (good,) = invoker.enqueue_batch(Q, batch(const_graph(2))).item_ids
    wait_for(lambda: finished(invoker.queue, bad, good))
    item = invoker.queue.get_item(bad)
    assert (item.status, item.error_type, item.error_message) == ("failed", "RuntimeError", "broken on purpose")
    assert item.error_traceback and "Traceback" in item.error_traceback
    assert invoker.get_session(item.session_id).status == "failed"
    assert status_of(invoker.queue, good) == "completed"


@invocation("qp_transient")
class TransientInvocation(BaseInvocation):
    """A node whose plugin is uninstalled while its item waits."""

    n: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> MeetOutput:
        return MeetOutput(ok=True)


def test_an_item_whose_graph_no_longer_parses_fails_clearly(
    invoker: Invoker, invokeai_register_nodes: Any, invokeai_host: Any
):
    invokeai_register_nodes(TransientInvocation, name="qp_transient_plugin")
    queue = invoker.queue
    queue.pause(Q)
    graph = {"nodes": {"t": {"id": "t", "type": "qp_transient"}}, "edges": []}
    (item_id,) = invoker.enqueue_batch(Q, Batch(graph=graph)).item_ids
    invokeai_host.unregister_plugin("qp_transient_plugin")
    queue.resume(Q)
    invoker.queue_processor.wake()  # type: ignore[union-attr]
    wait_for(lambda: finished(queue, item_id))
    item = queue.get_item(item_id)
    assert (item.status, item.error_type) == ("failed", "UnknownNodeTypeError")
    assert "qp_transient" in (item.error_message or "")


# == cancel ==========================================================================================
def test_cancelling_pending_items_never_touches_the_running_one(invoker: Invoker):
    queue = invoker.queue
    (running,) = invoker.enqueue_batch(Q, batch(sleep_graph(0.6))).item_ids
    waiting = invoker.enqueue_batch(Q, batch(const_graph(), [1, 2, 3])).item_ids
    wait_for(lambda: status_of(queue, running) == "in_progress")
    assert queue.cancel_items([waiting[0]]) == [waiting[0]]
    assert sorted(queue.cancel_all_except_current(Q)) == waiting[1:]
    assert status_of(queue, running) == "in_progress"
    wait_for(lambda: finished(queue, running))
    item = queue.get_item(running)
    assert item.status == "completed"
    session = invoker.get_session(item.session_id)
    assert session.status == "completed" and not invoker.is_canceled(session.id)
    for i in waiting:
        assert status_of(queue, i) == "canceled"


def test_cancelling_the_running_item_cancels_its_session(invoker: Invoker):
    queue = invoker.queue
    progress = threading.Event()
    invoker.services.events.subscribe(lambda e: progress.set(), names=["invocation_progress"])
    (slow,) = invoker.enqueue_batch(Q, batch(sleep_graph(60))).item_ids
    (after,) = invoker.enqueue_batch(Q, batch(const_graph(5))).item_ids
    assert progress.wait(30)
    assert queue.cancel_items([slow]) == [slow]
    wait_for(lambda: status_of(queue, after) == "completed", what="the next item to run")
    item = queue.get_item(slow)
    assert item.status == "canceled"
    session = invoker.get_session(item.session_id)
    wait_for(lambda: session.status == "canceled")
    assert "z" not in session.results_by_source() or session.canceled


@pytest.mark.parametrize("invokeai_storage", ["sqlite"])  # only a shared database has other processes
def test_a_cancel_from_another_process_stops_the_running_item(invoker: Invoker):
    from invokeai_core.services.sqlite_db import SqliteDatabase
    from invokeai_core.services.sqlite_queue import SqliteSessionQueue

    queue = invoker.queue
    assert isinstance(queue, SqliteSessionQueue)
    progress = threading.Event()
    invoker.services.events.subscribe(lambda e: progress.set(), names=["invocation_progress"])
    (slow,) = invoker.enqueue_batch(Q, batch(sleep_graph(60))).item_ids
    assert progress.wait(30)
    other = SqliteSessionQueue(db=SqliteDatabase(queue.db.path))  # its own connection, no events
    assert other.cancel_items([slow]) == [slow]
    session_id = queue.get_item(slow).session_id
    wait_for(lambda: invoker.get_session(session_id).status == "canceled", what="the monitor to cancel it")
    other.db.close()


# == pause, workers ==================================================================================
def test_pause_holds_the_queue_and_resume_releases_it(invoker: Invoker):
    queue = invoker.queue
    processor = invoker.queue_processor
    assert processor is not None
    processor.pause(Q)
    assert queue.status(Q).paused
    (item_id,) = invoker.enqueue_batch(Q, batch(const_graph())).item_ids
    processor.wake()
    other = invoker.enqueue_batch("other", batch(const_graph())).item_ids[0]
    wait_for(lambda: finished(queue, other), what="the unpaused queue to run")
    assert status_of(queue, item_id) == "pending"
    processor.resume(Q)
    wait_for(lambda: finished(queue, item_id))
    assert status_of(queue, item_id) == "completed"


def test_several_workers_run_items_at_the_same_time(invokeai_host: Any, invokeai_config: Any, invokeai_register_nodes):
    invokeai_register_nodes(MeetInvocation)
    invokeai_config.queue_workers = 2
    _barrier.reset()
    with Invoker(
        Services(invokeai_config, invokeai_host.service_registry, invokeai_host.registry), invokeai_host
    ) as invoker:
        invoker.start(process_queue=True)
        graph = {"nodes": {"c": {"id": "c", "type": "qp_meet"}}, "edges": []}
        ids = invoker.enqueue_batch(
            Q, Batch(graph=graph, data=[[BatchDatum(node_path="c", field_name="n", items=[1, 2])]])
        ).item_ids
        wait_for(lambda: finished(invoker.queue, *ids))
        assert [status_of(invoker.queue, i) for i in ids] == ["completed", "completed"]


# == retry, errors ===================================================================================
def test_retry_runs_a_failed_item_again(invoker: Invoker):
    fail = {"nodes": {"c": {"id": "c", "type": "tp_fail"}}, "edges": []}
    (bad,) = invoker.enqueue_batch(Q, Batch(graph=fail)).item_ids
    wait_for(lambda: finished(invoker.queue, bad))
    (again,) = invoker.queue.retry_items([bad])
    wait_for(lambda: finished(invoker.queue, again))
    assert status_of(invoker.queue, again) == "failed"
    assert invoker.queue.get_item(again).session_id != invoker.queue.get_item(bad).session_id


def test_bad_input_through_the_invoker(invoker: Invoker, invokeai_config: Any):
    with pytest.raises(BatchError):
        invoker.enqueue_batch(Q, {"graph": {"nodes": {"x": {"id": "x", "type": "warp_drive"}}, "edges": []}})
    with pytest.raises(QueueError):
        invoker.enqueue_batch("not a queue id!", batch(const_graph()))
    invoker.queue.max_size = 2  # type: ignore[attr-defined]
    with pytest.raises(QueueFullError):
        invoker.enqueue_batch(Q, batch(const_graph(), [1, 2, 3]))
    assert invoker.queue.status(Q).total == 0


# == stopping, one processor =========================================================================
@pytest.mark.parametrize("requeue", [False, True])
def test_stopping_interrupts_the_running_item(invokeai_invoker: Invoker, invokeai_config: Any, requeue: bool):
    invokeai_config.queue_requeue_on_crash = requeue
    invoker = invokeai_invoker.start(process_queue=True)
    progress = threading.Event()
    invoker.services.events.subscribe(lambda e: progress.set(), names=["invocation_progress"])
    (slow,) = invoker.enqueue_batch(Q, batch(sleep_graph(60))).item_ids
    old_session = None
    assert progress.wait(30)
    old_session = invoker.queue.get_item(slow).session_id
    invoker.stop()
    item = invoker.queue.get_item(slow)
    if requeue:
        assert item.status == "pending" and item.session_id != old_session
    else:
        assert (item.status, item.error_type) == ("failed", "ProcessorStopped")
    assert invoker.get_session(old_session).status == "canceled"


def test_only_one_processor_per_queue(invoker: Invoker):
    with pytest.raises(QueueError, match=r"already running|another queue processor"):
        QueueProcessor(invoker).start()
    assert invoker.queue_processor is not None and invoker.queue_processor.is_started


@pytest.mark.parametrize("invokeai_storage", ["sqlite"])  # memory queues are not shared
def test_a_second_invoker_on_the_same_database_cannot_process(
    invoker: Invoker, invokeai_config: Any, invokeai_host: Any
):
    second = Invoker(Services(invokeai_config, invokeai_host.service_registry, invokeai_host.registry), invokeai_host)
    with pytest.raises(QueueError, match="another queue processor is running on the database"):
        second.start(process_queue=True)
    assert not second._started  # a failed start leaves nothing running
    (item_id,) = invoker.enqueue_batch(Q, batch(const_graph())).item_ids
    wait_for(lambda: finished(invoker.queue, item_id))


# == crash recovery (in process) =====================================================================
def _interrupted_item(invoker: Invoker) -> tuple[int, int, str]:
    """Enqueue two chains; run the first node of the first item and leave it in progress, as a
    process killed mid-session would."""
    graph = {
        "nodes": {
            "c": {"id": "c", "type": "tp_const", "value": 3},
            "s1": {"id": "s1", "type": "tp_scale", "factor": 2},
            "s2": {"id": "s2", "type": "tp_scale", "factor": 5},
        },
        "edges": [edge("c", "value", "s1", "value"), edge("s1", "value", "s2", "value")],
    }
    first, second = invoker.enqueue_batch(Q, Batch(graph=graph, runs=2)).item_ids
    item = invoker.queue.dequeue()
    assert item is not None and item.item_id == first
    session = QueueProcessor(invoker)._session_for(item)
    invoker.run_session(session.id, run_all=False, queue_id=Q, item_id=first)
    assert [k[0] for k in session.history] == ["c"]
    return first, second, session.id


@pytest.mark.parametrize("invokeai_storage", ["sqlite"])
@pytest.mark.parametrize("requeue", [False, True])
def test_recovery_after_a_crash(
    invokeai_config: Any, invokeai_host: Any, invokeai_storage: str, requeue: bool, tmp_path: Path
):
    crashed = Invoker.from_config(invokeai_config, invokeai_host).start()
    first, second, session_id = _interrupted_item(crashed)
    crashed.services.sessions.db.close()  # the process dies: nothing more is written
    invokeai_config.queue_requeue_on_crash = requeue
    with Invoker.from_config(invokeai_config, invokeai_host) as restarted:
        restarted.start(process_queue=True)
        processor = restarted.queue_processor
        assert processor is not None
        assert [i.item_id for i in processor.recovered] == [first]
        wait_for(lambda: finished(restarted.queue, first, second))
        item = restarted.queue.get_item(first)
        session = restarted.get_session(session_id)
        if requeue:
            assert item.status == "completed" and item.session_id == session_id
            assert [k[0] for k in session.history] == ["c", "s1", "s2"]  # resumed: c did not run twice
            assert session.results_by_source()["s2"].value == 30
        else:
            assert (item.status, item.error_type) == ("failed", "ProcessTerminated")
            assert "terminated" in (item.error_message or "")
            assert session.status == "failed"
            assert session.errors_by_source()["s1"].type == "ProcessTerminated"  # the node that was running
            assert [k[0] for k in session.history] == ["c"]
        assert restarted.queue.get_item(second).status == "completed"
