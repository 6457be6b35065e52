"""From the kernel's event bus into the server's event loop, and out to Socket.IO rooms.

The kernel emits events synchronously on the thread that runs a node (a session or queue worker).
`EventBridge` subscribes to the bus, keeps only the events somebody watches (a session or a queue
that a Socket.IO client subscribed to: one set lookup per event, on the emitting thread), and
appends them to a thread-safe deque; the event loop is woken (`call_soon_threadsafe`) only when it
is not already draining, so a burst of events costs one wake-up. A single task on the loop takes
them in order, turns each into a `Message` (event name, target rooms, JSON text) and passes it to
a `Fanout`.

`Fanout` is the seam for scaling out: `LocalFanout` delivers to this process's Socket.IO server. A
broker-backed fan-out (several server processes behind a load balancer) publishes the same
JSON-ready `Message` to a channel and has each process deliver what it receives; python-socketio's
own broker managers (`AsyncRedisManager`, ...) can also be given to the Socket.IO server for that.
Events that cross processes do so through the kernel's `events` service: with
`services.events = "redis"` (the invokeai-redis plugin) this server's bus also receives the events
of sessions that other processes run, and the bridge delivers them like its own.

While nobody watches anything, the bridge is not subscribed to the bus at all, so the engine does not
build events (or encode progress previews) for an idle server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from invokeai_core import ALL_EVENTS

if TYPE_CHECKING:
    from invokeai_core import EventBase, EventServiceBase

logger = logging.getLogger("invokeai.web.events")

EVENT_NAMES: tuple[str, ...] = tuple(cls.event_name for cls in ALL_EVENTS)


def session_room(session_id: str) -> str:
    return f"session:{session_id}"


def queue_room(queue_id: str) -> str:
    return f"queue:{queue_id}"


@dataclass(frozen=True)
class Message:
    """One event on its way to clients, already JSON text (`event.payload()` encoded), so a broker
    can carry it as it is and each process sends it without encoding it again."""

    event: str
    rooms: tuple[str, ...]
    data: str

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.data)
        return result


def encode_event(event: EventBase) -> str:
    """`event.payload()` as compact JSON text, serialised by pydantic in one pass."""
    body = event.model_dump_json()
    head = '{"event":' + json.dumps(event.event_name)
    return head + "}" if body == "{}" else head + "," + body[1:]


class Fanout(Protocol):
    """Delivers messages to the clients in their rooms."""

    async def deliver(self, message: Message) -> None: ...


class LocalFanout:
    """Delivers to the Socket.IO server of this process.

    The packet is encoded once and put on each recipient's Engine.IO send queue directly, without a
    task per recipient (python-socketio's `emit` makes one and waits for all of them, which costs
    more than the send itself at event rates). A client in several of the rooms gets it once. If
    the Engine.IO internals this relies on are missing (another python-engineio), it falls back to
    `emit`.

    **A slow client cannot make the server hold unbounded memory.** Each client's send queue is
    checked before a packet goes on it: past a quarter of `backlog_limit` packets, progress events
    (lossy by nature: the next one supersedes them) are skipped for that client; at `backlog_limit`
    the client is disconnected and its queue emptied. Socket.IO clients reconnect by themselves
    and catch up over HTTP (the web UI re-reads the queue on reconnect).
    """

    def __init__(self, sio: Any, *, backlog_limit: int = 2000) -> None:
        self.sio = sio
        eio = getattr(sio, "eio", None)
        self._direct = hasattr(eio, "sockets") and hasattr(sio, "manager") and hasattr(sio, "packet_class")
        self.backlog_limit = backlog_limit
        self.progress_limit = max(1, backlog_limit // 4)
        #: Progress events not sent to a client that was behind; clients disconnected for it.
        self.skipped = 0
        self.dropped = 0
        self._dropping: set[str] = set()

    async def deliver(self, message: Message) -> None:
        if not self._direct:
            rooms = message.rooms[0] if len(message.rooms) == 1 else list(message.rooms)
            await self.sio.emit(message.event, message.payload, room=rooms)
            return
        self.send_now(message)

    def send_now(self, message: Message) -> int:
        """Queue the message for every recipient now (no await); returns how many."""
        from engineio import packet as eio_packet

        sio = self.sio
        participants = list(sio.manager.get_participants("/", list(message.rooms)))
        if not participants:
            return 0
        # a Socket.IO EVENT packet on the default namespace: `2["name",{...}]` (the JSON is text already)
        pkt = eio_packet.Packet(eio_packet.MESSAGE, "2[" + json.dumps(message.event) + "," + message.data + "]")
        sockets = sio.eio.sockets
        sent = 0
        progress = message.event == "invocation_progress"
        for sid, eio_sid in participants:
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed or eio_sid in self._dropping:
                continue
            backlog = socket.queue.qsize()
            if backlog >= self.backlog_limit:
                self._drop(sid, eio_sid, socket, backlog)
                continue
            if progress and backlog >= self.progress_limit:
                self.skipped += 1
                continue
            socket.queue.put_nowait(pkt)  # what `socket.send` does, minus a task and a wait per client
            sent += 1
        return sent

    def _drop(self, sid: str, eio_sid: str, socket: Any, backlog: int) -> None:
        """Disconnect a client that stopped reading, and free what was queued for it."""
        self._dropping.add(eio_sid)
        self.dropped += 1
        logger.warning(
            "a Socket.IO client (%s) is %d events behind: disconnecting it (it can reconnect and catch up)",
            sid,
            backlog,
        )
        while True:
            try:
                socket.queue.get_nowait()
                socket.queue.task_done()
            except asyncio.QueueEmpty:
                break
        asyncio.get_running_loop().create_task(self._disconnect(sid, eio_sid, socket))

    async def _disconnect(self, sid: str, eio_sid: str, socket: Any) -> None:
        try:
            await self.sio.disconnect(sid)  # leaves its rooms; our `disconnect` handler unwatches
            # abort: a client that does not read never drains a goodbye either
            await socket.close(wait=False, abort=True)
            self.sio.eio.sockets.pop(eio_sid, None)
        except Exception:  # pragma: no cover - the client went away on its own meanwhile
            logger.debug("disconnecting a slow client failed", exc_info=True)
        finally:
            self._dropping.discard(eio_sid)


class EventBridge:
    """Carries watched kernel events into the event loop, in order; see the module docstring."""

    def __init__(self, bus: EventServiceBase, fanout: Fanout | None = None) -> None:
        self.bus = bus
        self.fanout = fanout
        self._sessions: dict[str, int] = {}
        self._queues: dict[str, int] = {}
        # read on emitting threads without a lock: replaced whole, never mutated in place
        self._watched_sessions: frozenset[str] = frozenset()
        self._watched_queues: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[tuple[EventBase, str]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._scheduled = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        #: Events handed to the fanout, and those it failed on (for tests and diagnostics).
        self.delivered = 0
        self.failed = 0

    # -- lifecycle (on the event loop) ------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._pump(), name="invokeai-web-events")

    async def stop(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._queues.clear()
            self._refresh()
        if self._task is not None and self._wakeup is not None:
            self._stopping = True
            self._wakeup.set()
            try:
                await asyncio.wait_for(self._task, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        self._task = None
        self._loop = None

    # -- what is watched --------------------------------------------------------------------------
    def watch_session(self, session_id: str) -> None:
        self._change(self._sessions, session_id, +1)

    def unwatch_session(self, session_id: str) -> None:
        self._change(self._sessions, session_id, -1)

    def watch_queue(self, queue_id: str) -> None:
        self._change(self._queues, queue_id, +1)

    def unwatch_queue(self, queue_id: str) -> None:
        self._change(self._queues, queue_id, -1)

    @property
    def watching(self) -> bool:
        return self._unsubscribe is not None

    def _change(self, counts: dict[str, int], key: str, delta: int) -> None:
        with self._lock:
            n = counts.get(key, 0) + delta
            if n > 0:
                counts[key] = n
            else:
                counts.pop(key, None)
            self._refresh()

    def _refresh(self) -> None:
        self._watched_sessions = frozenset(self._sessions)
        self._watched_queues = frozenset(self._queues)
        wanted = bool(self._sessions or self._queues)
        if wanted and self._unsubscribe is None:
            self._unsubscribe = self.bus.subscribe(self._on_event, names=list(EVENT_NAMES))
        elif not wanted and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- the emitting thread ----------------------------------------------------------------------
    def _on_event(self, event: EventBase) -> None:
        if event.session_id not in self._watched_sessions and event.queue_id not in self._watched_queues:
            return
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        # encoded here, on the emitting (worker) thread: a large output never costs the event loop
        self._pending.append((event, encode_event(event)))  # appended first, then checked: never missed
        if not self._scheduled:
            self._scheduled = True
            try:
                loop.call_soon_threadsafe(wakeup.set)
            except RuntimeError:  # the loop closed while the server stops
                pass

    # -- the event loop ---------------------------------------------------------------------------
    def rooms_for(self, event: EventBase) -> tuple[str, ...]:
        rooms = []
        if event.session_id is not None and event.session_id in self._watched_sessions:
            rooms.append(session_room(event.session_id))
        if event.queue_id is not None and event.queue_id in self._watched_queues:
            rooms.append(queue_room(event.queue_id))
        return tuple(rooms)

    async def _pump(self) -> None:
        assert self._wakeup is not None
        wakeup, pending = self._wakeup, self._pending
        while True:
            await wakeup.wait()
            wakeup.clear()
            self._scheduled = False
            if self._stopping:
                return
            n = 0
            while pending:
                event, data = pending.popleft()
                rooms = self.rooms_for(event)
                if not rooms or self.fanout is None:
                    continue
                try:
                    await self.fanout.deliver(Message(event.event_name, rooms, data))
                    self.delivered += 1
                except Exception:
                    self.failed += 1
                    logger.exception("delivering %s failed", event.event_name)
                n += 1
                if n % 64 == 0:
                    await asyncio.sleep(0)  # let the sockets write and requests run during a burst
