"""Events: the in-process bus, and the events a real run through the Invoker emits."""

from __future__ import annotations

import base64
import io
import logging
import threading
from typing import Any

import pytest
from PIL import Image

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_core.events import (
    ALL_EVENTS,
    BatchEnqueuedEvent,
    EventBase,
    InProcessEventBus,
    InvocationCompleteEvent,
    InvocationErrorEvent,
    InvocationProgressEvent,
    InvocationStartedEvent,
    QueueItemStatusChangedEvent,
    SessionCompleteEvent,
)


# -- the bus ----------------------------------------------------------------------------------------
def _started(session_id: str = "s1", queue_id: str | None = None) -> InvocationStartedEvent:
    return InvocationStartedEvent(
        session_id=session_id, queue_id=queue_id, node_id="n", source_node_id="n", invocation_type="s_t"
    )


def _complete(session_id: str = "s1", queue_id: str | None = None) -> SessionCompleteEvent:
    return SessionCompleteEvent(session_id=session_id, queue_id=queue_id)


def test_event_names_are_the_documented_ones():
    names = {cls.event_name for cls in ALL_EVENTS}
    assert {
        "invocation_started",
        "invocation_progress",
        "invocation_complete",
        "invocation_error",
        "session_complete",
        "session_canceled",
        "queue_item_status_changed",
        "batch_enqueued",
        "model_load_started",
        "model_load_complete",
        "model_unloaded",
    } <= names
    assert len(names) == len(ALL_EVENTS)


def test_queue_events_require_their_queue_and_item():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        QueueItemStatusChangedEvent(session_id="s", queue_id="q", batch_id="b", status="pending")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        QueueItemStatusChangedEvent(session_id="s", item_id=1, batch_id="b", status="pending")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        BatchEnqueuedEvent(batch_id="b", enqueued=1, requested=1)  # type: ignore[call-arg]


def test_payload_carries_the_name_and_ids():
    event = QueueItemStatusChangedEvent(session_id="s", queue_id="q", item_id=3, batch_id="b", status="completed")
    payload = event.payload()
    assert payload["event"] == "queue_item_status_changed"
    assert (payload["session_id"], payload["queue_id"], payload["item_id"]) == ("s", "q", 3)
    assert payload["status"] == "completed"
    assert isinstance(payload["timestamp"], float)


def test_subscribe_to_everything():
    bus = InProcessEventBus()
    got: list[EventBase] = []
    bus.subscribe(got.append)
    events = [
        _started(),
        _complete(),
        BatchEnqueuedEvent(queue_id="q", batch_id="b", enqueued=1, requested=1),
    ]
    for e in events:
        bus.emit(e)
    assert got == events


def test_subscribe_filters_by_names():
    bus = InProcessEventBus()
    got: list[EventBase] = []
    bus.subscribe(got.append, names=["session_complete"])
    bus.emit(_started())
    bus.emit(_complete())
    assert [e.event_name for e in got] == ["session_complete"]


def test_subscribe_filters_by_session_id():
    bus = InProcessEventBus()
    got: list[EventBase] = []
    bus.subscribe(got.append, session_id="mine")
    bus.emit(_started("other"))
    bus.emit(_started("mine"))
    bus.emit(_complete("mine"))
    assert [(e.event_name, e.session_id) for e in got] == [
        ("invocation_started", "mine"),
        ("session_complete", "mine"),
    ]


def test_subscribe_filters_by_queue_id():
    bus = InProcessEventBus()
    got: list[EventBase] = []
    bus.subscribe(got.append, queue_id="q1")
    bus.emit(_started("s", queue_id=None))
    bus.emit(_started("s", queue_id="q2"))
    bus.emit(_started("s", queue_id="q1"))
    assert [e.queue_id for e in got] == ["q1"]


def test_filters_combine():
    bus = InProcessEventBus()
    got: list[EventBase] = []
    bus.subscribe(got.append, names=["session_complete"], session_id="s1", queue_id="q")
    bus.emit(_complete("s1", "q"))
    bus.emit(_complete("s2", "q"))
    bus.emit(_complete("s1", "other"))
    bus.emit(_started("s1", "q"))
    assert len(got) == 1


def test_unsubscribe():
    bus = InProcessEventBus()
    got: list[EventBase] = []
    other: list[EventBase] = []
    unsubscribe = bus.subscribe(got.append)
    bus.subscribe(other.append)
    bus.emit(_started())
    unsubscribe()
    bus.emit(_started())
    assert len(got) == 1
    assert len(other) == 2
    unsubscribe()  # twice is harmless


def test_has_subscribers():
    bus = InProcessEventBus()
    assert not bus.has_subscribers("session_complete")
    off = bus.subscribe(lambda e: None, names=["session_complete", "invocation_error"])
    assert bus.has_subscribers("session_complete")
    assert bus.has_subscribers("invocation_error")
    assert not bus.has_subscribers("invocation_progress")
    off2 = bus.subscribe(lambda e: None, names=["session_complete"])
    off()
    assert bus.has_subscribers("session_complete")  # still the second one
    assert not bus.has_subscribers("invocation_error")
    off2()
    assert not bus.has_subscribers("session_complete")
    off3 = bus.subscribe(lambda e: None)  # a wildcard wants every name
    assert bus.has_subscribers("invocation_progress")
    off3()
    assert not bus.has_subscribers("invocation_progress")


def test_a_raising_handler_does_not_break_emit(caplog: pytest.LogCaptureFixture):
    bus = InProcessEventBus()
    before: list[EventBase] = []
    after: list[EventBase] = []

    def broken(event: EventBase) -> None:
        raise RuntimeError("handler exploded")

    bus.subscribe(before.append)
    bus.subscribe(broken)
    bus.subscribe(after.append)
    with caplog.at_level(logging.ERROR, logger="invokeai.events"):
        bus.emit(_started())  # does not raise
        bus.emit(_complete())
    assert len(before) == 2 and len(after) == 2
    assert "handler exploded" in caplog.text


def test_a_handler_may_unsubscribe_while_handling():
    bus = InProcessEventBus()
    got: list[EventBase] = []
    offs: list[Any] = []

    def once(event: EventBase) -> None:
        got.append(event)
        offs[0]()

    offs.append(bus.subscribe(once))
    bus.emit(_started())
    bus.emit(_started())
    assert len(got) == 1


# -- events from a real run ------------------------------------------------------------------------------
@invocation_output("s_ev_int_output")
class EvIntOutput(BaseInvocationOutput):
    value: int = OutputField()


@invocation("s_ev_add", use_cache=False)
class EvAdd(BaseInvocation):
    a: int = InputField(default=0)
    b: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> EvIntOutput:
        return EvIntOutput(value=self.a + self.b)


@invocation("s_ev_fail", use_cache=False)
class EvFail(BaseInvocation):
    value: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> EvIntOutput:
        raise ValueError(f"cannot handle {self.value}")


@invocation("s_ev_progress", use_cache=False)
class EvProgress(BaseInvocation):
    steps: int = InputField(default=3)

    def invoke(self, context: InvocationContext) -> EvIntOutput:
        for step in range(1, self.steps + 1):
            preview = Image.new("RGB", (512, 256), (step * 40, 0, 0))
            context.progress(step, self.steps, image=preview if step == self.steps else None, message=f"step {step}")
        return EvIntOutput(value=self.steps)


ENTERED = threading.Event()


@invocation("s_ev_wait_cancel", use_cache=False)
class EvWaitCancel(BaseInvocation):
    def invoke(self, context: InvocationContext) -> EvIntOutput:
        ENTERED.set()
        for _ in range(2000):  # at most ~20 s, ends as soon as the session is canceled
            if context.is_canceled():
                return EvIntOutput(value=-1)
            threading.Event().wait(0.01)
        return EvIntOutput(value=0)


def _edge(src: str, src_field: str, dst: str, dst_field: str) -> dict[str, Any]:
    return {
        "source": {"node_id": src, "field": src_field},
        "destination": {"node_id": dst, "field": dst_field},
    }


def _run_collecting(invoker: Any, graph: dict[str, Any], **filters: Any) -> tuple[Any, list[EventBase]]:
    session = invoker.create_session(graph)
    events: list[EventBase] = []
    unsubscribe = invoker.services.events.subscribe(events.append, session_id=session.id, **filters)
    try:
        invoker.invoke(session.id, all=True)
        done = invoker.wait(session.id, timeout=30)
    finally:
        unsubscribe()
    return done, events


def test_events_of_a_two_node_chain(invokeai_register_nodes, invokeai_invoker):
    invokeai_register_nodes(EvAdd)
    graph = {
        "nodes": {
            "one": {"id": "one", "type": "s_ev_add", "a": 1, "b": 2},
            "two": {"id": "two", "type": "s_ev_add", "b": 10},
        },
        "edges": [_edge("one", "value", "two", "a")],
    }
    session, events = _run_collecting(
        invokeai_invoker, graph, names=["invocation_started", "invocation_complete", "session_complete"]
    )
    assert session.status == "completed"
    assert [(e.event_name, getattr(e, "node_id", None)) for e in events] == [
        ("invocation_started", "one"),
        ("invocation_complete", "one"),
        ("invocation_started", "two"),
        ("invocation_complete", "two"),
        ("session_complete", None),
    ]
    assert all(e.session_id == session.id for e in events)
    complete = [e for e in events if isinstance(e, InvocationCompleteEvent)]
    assert [c.result for c in complete] == [
        {"type": "s_ev_int_output", "value": 3},
        {"type": "s_ev_int_output", "value": 13},
    ]
    assert all(c.invocation_type == "s_ev_add" and c.cached is False for c in complete)
    final = events[-1]
    assert isinstance(final, SessionCompleteEvent) and final.status == "completed"


def test_events_of_another_session_are_not_delivered(invokeai_register_nodes, invokeai_invoker):
    invokeai_register_nodes(EvAdd)
    graph = {"nodes": {"n": {"id": "n", "type": "s_ev_add"}}, "edges": []}
    first, first_events = _run_collecting(invokeai_invoker, graph)
    assert {e.session_id for e in first_events} == {first.id}
    second = invokeai_invoker.run_graph(graph, timeout=30)
    assert second.id != first.id
    assert {e.session_id for e in first_events} == {first.id}


def test_invocation_error_event(invokeai_register_nodes, invokeai_invoker):
    invokeai_register_nodes(EvAdd, EvFail)
    graph = {
        "nodes": {
            "ok": {"id": "ok", "type": "s_ev_add", "a": 4},
            "bad": {"id": "bad", "type": "s_ev_fail"},
            "after": {"id": "after", "type": "s_ev_add"},
        },
        "edges": [_edge("ok", "value", "bad", "value"), _edge("bad", "value", "after", "a")],
    }
    session, events = _run_collecting(invokeai_invoker, graph)
    assert session.status == "failed"
    names = [e.event_name for e in events]
    assert names.index("invocation_error") < names.index("session_complete")
    errors = [e for e in events if isinstance(e, InvocationErrorEvent)]
    assert len(errors) == 1
    error = errors[0]
    assert (error.node_id, error.source_node_id, error.invocation_type) == ("bad", "bad", "s_ev_fail")
    assert error.error_type == "ValueError"
    assert error.error_message == "cannot handle 4"
    assert "ValueError: cannot handle 4" in error.error_traceback
    assert "after" not in [getattr(e, "node_id", None) for e in events]  # nothing runs after the error
    final = events[-1]
    assert isinstance(final, SessionCompleteEvent) and final.status == "failed"


def test_invocation_progress_with_a_preview(invokeai_register_nodes, invokeai_invoker):
    invokeai_register_nodes(EvProgress)
    graph = {"nodes": {"p": {"id": "p", "type": "s_ev_progress", "steps": 3}}, "edges": []}
    session, events = _run_collecting(invokeai_invoker, graph, names=["invocation_progress"])
    assert session.status == "completed"
    progress = [e for e in events if isinstance(e, InvocationProgressEvent)]
    assert [(p.step, p.total, p.message) for p in progress] == [
        (1, 3, "step 1"),
        (2, 3, "step 2"),
        (3, 3, "step 3"),
    ]
    assert progress[0].image is None and progress[1].image is None
    preview = progress[2].image
    assert preview is not None
    assert (preview.width, preview.height) == (256, 128)  # shrunk for the wire
    prefix = "data:image/jpeg;base64,"
    assert preview.dataURL.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(preview.dataURL[len(prefix) :]))) as decoded:
        assert decoded.format == "JPEG"
        assert decoded.size == (256, 128)
        red, green, _ = decoded.convert("RGB").getpixel((10, 10))  # type: ignore[misc]
        assert red > 100 and green < 30
    assert progress[2].payload()["image"]["dataURL"].startswith(prefix)
    assert all(p.node_id == "p" and p.invocation_type == "s_ev_progress" for p in progress)


def test_progress_without_subscribers_is_free(invokeai_register_nodes, invokeai_run_graph):
    invokeai_register_nodes(EvProgress)
    run = invokeai_run_graph({"nodes": {"p": {"id": "p", "type": "s_ev_progress"}}, "edges": []})
    assert run.status == "completed"
    assert run["p"].value == 3


def test_session_canceled_events(invokeai_register_nodes, invokeai_invoker):
    invokeai_register_nodes(EvWaitCancel, EvAdd)
    ENTERED.clear()
    graph = {
        "nodes": {"w": {"id": "w", "type": "s_ev_wait_cancel"}, "next": {"id": "next", "type": "s_ev_add"}},
        "edges": [_edge("w", "value", "next", "a")],
    }
    session = invokeai_invoker.create_session(graph)
    events: list[EventBase] = []
    invokeai_invoker.services.events.subscribe(events.append, session_id=session.id)
    invokeai_invoker.invoke(session.id, all=True)
    assert ENTERED.wait(20)
    invokeai_invoker.cancel(session.id)
    done = invokeai_invoker.wait(session.id, timeout=30)
    assert done.status == "canceled"
    names = [e.event_name for e in events]
    assert "session_canceled" in names
    assert names[-1] == "session_complete"
    assert events[-1].status == "canceled"  # type: ignore[attr-defined]
    assert "next" not in [getattr(e, "node_id", None) for e in events]
