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


class StalledClient:
    """A Socket.IO client that subscribes to the default queue and then never reads again.

    A bare WebSocket on a socket with a 4 KiB receive buffer, spoken by hand (RFC 6455 frames) so
    that nothing reads behind the test's back: what a frozen browser tab looks like to the server.
    """

    def __init__(self, url: str) -> None:
        import base64
        import os
        import socket

        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert self.recv().startswith("0{")  # Engine.IO open
        self.send("40")  # Socket.IO connect
        assert self.recv().startswith("40{")
        self.send('421["subscribe_queue",{"queue_id":"default"}]')
        assert '"ok":true' in self.recv()

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self.sock.recv(4096)
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def recv(self) -> str:
        b0, b1 = self._read(2)
        size = b1 & 0x7F
        if size == 126:
            size = int.from_bytes(self._read(2), "big")
        elif size == 127:
            size = int.from_bytes(self._read(8), "big")
        assert b0 & 0x0F == 1, "a text frame"
        return self._read(size).decode()

    def send(self, text: str) -> None:
        import os

        data = text.encode()
        mask = os.urandom(4)
        assert len(data) < 126
        self.sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def close(self) -> None:
        self.sock.close()


class TestSlowClients:
    @pytest.fixture
    def web_settings_overrides(self) -> dict[str, Any]:
        return {"client_backlog": 400}  # above the bridge's burst of 64 events between yields

    async def test_a_client_that_stops_reading_is_cut_off_and_others_get_everything(
        self, server: Any, watcher: Any
    ) -> None:
        fanout = server.app.bridge.fanout
        stalled = await asyncio.to_thread(StalledClient, server.url)
        try:
            await watcher.subscribe("queue", "default")
            async with server.async_client() as http:
                # 12 MB of progress fills the stalled client's pipe (socket buffers); then many small events
                node = {"id": "s", "type": "wt_slow", "steps": 400, "delay": 0, "message_bytes": 30_000}
                slow = {"nodes": {"s": node}}
                await http.post("/queue/default/enqueue_batch", json={"batch": {"graph": slow}})
                quick = {"graph": one_node(), "runs": 100}  # about 600 events that are not progress
                r = await http.post("/queue/default/enqueue_batch", json={"batch": quick})
                assert r.status_code == 201, r.text
                await watcher.wait_for(
                    lambda evs: (
                        sum(n == "queue_item_status_changed" and d["status"] == "completed" for n, d in evs) == 101
                    ),
                    timeout=90,
                )
            assert (fanout.dropped, fanout.skipped > 0) == (1, True), (fanout.dropped, fanout.skipped)
            # the well-behaved watcher missed nothing: every step of the slow node, every item
            assert [e["step"] for e in watcher.named("invocation_progress")] == list(range(1, 401))
            assert len(watcher.named("session_complete")) == 101
            # the stalled client is gone from the server: nothing more is queued for it
            await asyncio.sleep(0.2)
            assert len(server.app.sio.eio.sockets) == 1
        finally:
            await asyncio.to_thread(stalled.close)
