"""Socket.IO rooms: clients get only what they subscribed to, once, in order; an idle server costs the
engine nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytestmark = pytest.mark.anyio


def one_node(value: int = 1) -> dict[str, Any]:
    return {"nodes": {"n": {"id": "n", "type": "wt_int", "value": value}}}


async def test_only_subscribed_sessions_are_delivered(server: Any, watcher: Any) -> None:
    from conftest import Watcher

    other = await Watcher(server.url).connect()
    try:
        async with server.async_client() as http:
            a = (await http.post("/sessions", json=one_node(1))).json()["id"]
            b = (await http.post("/sessions", json=one_node(2))).json()["id"]
            await watcher.subscribe("session", a)
            await other.subscribe("session", b)
            await http.put(f"/sessions/{a}/invoke")
            await http.put(f"/sessions/{b}/invoke")
            for w, sid in ((watcher, a), (other, b)):
                await w.wait_for(lambda evs, sid=sid: any(n == "session_complete" for n, _ in evs))
                assert {e["session_id"] for _, e in w.events} == {sid}
            # unsubscribed: nothing more arrives
            ack = await watcher.unsubscribe("session", a)
            assert ack == {"ok": True, "room": f"session:{a}"}
            before = len(watcher.events)
            await http.post(f"/sessions/{a}/nodes", json={"id": "m", "type": "wt_int"})
            await http.put(f"/sessions/{a}/invoke")
            server.invoker.wait(a, timeout=30)
            await asyncio.sleep(0.2)
            assert len(watcher.events) == before
    finally:
        await other.close()


async def test_a_client_in_a_session_and_its_queue_gets_each_event_once(server: Any, watcher: Any) -> None:
    async with server.async_client() as http:
        await http.put("/queue/default/processor/pause")
        batch = {"graph": one_node(3)}
        (item_id,) = (await http.post("/queue/default/enqueue_batch", json={"batch": batch})).json()["item_ids"]
        session_id = (await http.get(f"/queue/default/i/{item_id}")).json()["session_id"]
        await watcher.subscribe("queue", "default")
        await watcher.subscribe("session", session_id)
        await watcher.subscribe("session", session_id)  # twice: still one membership
        await http.put("/queue/default/processor/resume")
        await watcher.wait_for(
            lambda evs: any(n == "queue_item_status_changed" and e["status"] == "completed" for n, e in evs)
        )
        names = [n for n, _ in watcher.events]
        assert names == [
            "queue_item_status_changed",
            "session_started",
            "invocation_started",
            "invocation_complete",
            "session_complete",
            "queue_item_status_changed",
        ]


async def test_malformed_subscriptions_are_refused_in_the_ack(server: Any, watcher: Any) -> None:
    for kind, value in (("session", "../x"), ("session", 42), ("queue", "bad id"), ("queue", None)):
        ack = await watcher.sio.call(f"subscribe_{kind}", {f"{kind}_id": value}, timeout=10)
        assert ack["ok"] is False and "invalid" in ack["error"]
    ack = await watcher.sio.call("subscribe_queue", "default", timeout=10)  # a bare id works too
    assert ack == {"ok": True, "room": "queue:default"}


async def test_the_bridge_subscribes_to_the_bus_only_while_someone_watches(server: Any) -> None:
    from conftest import Watcher

    bus = server.invoker.services.events
    bridge = server.app.bridge
    assert not bus.has_subscribers("invocation_progress") and not bridge.watching
    w = await Watcher(server.url).connect()
    assert not bus.has_subscribers("invocation_progress")  # connected, not subscribed
    await w.subscribe("session", "abc")
    assert bus.has_subscribers("invocation_progress") and bridge.watching
    await w.close()
    for _ in range(100):  # the server notices the disconnect
        if not bridge.watching:
            break
        await asyncio.sleep(0.05)
    assert not bridge.watching and not bus.has_subscribers("invocation_progress")


async def test_events_keep_their_order_under_load(server: Any, watcher: Any) -> None:
    """Many progress events from a worker thread arrive complete and in order."""
    async with server.async_client() as http:
        graph = {"nodes": {"s": {"id": "s", "type": "wt_slow", "steps": 300, "delay": 0}}}
        sid = (await http.post("/sessions", json=graph)).json()["id"]
        await watcher.subscribe("session", sid)
        await http.put(f"/sessions/{sid}/invoke")
        await watcher.wait_for(lambda evs: any(n == "session_complete" for n, _ in evs))
        steps = [e["step"] for e in watcher.named("invocation_progress")]
        assert steps == list(range(1, 301))
        assert server.app.bridge.failed == 0
