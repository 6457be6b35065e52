"""Socket.IO: clients subscribe to sessions and queues and receive their events, in order.

Client to server (each answers with an acknowledgement, so `await sio.call(...)` returns once the
subscription is in effect):

* `subscribe_session` / `unsubscribe_session` with `{"session_id": ID}` (or the id as a string)
* `subscribe_queue` / `unsubscribe_queue` with `{"queue_id": ID}` (or the id as a string)

The acknowledgement is `{"ok": true, "room": "session:ID"}`, or `{"ok": false, "error": ...}` for a
malformed id. Server to client: every kernel event (DESIGN.md), named as the event
(`invocation_started`, `invocation_progress`, ...), with the event's JSON (`event.payload()`: the
event name under `"event"` and every field) as its one argument. A client in both a session's room
and its queue's room gets each event once.

With an access token configured, the connection must carry it: an `Authorization: Bearer TOKEN`
header, `auth={"token": TOKEN}` in the Socket.IO handshake (browsers cannot set headers on a
WebSocket), or the web UI's session cookie; otherwise the connection is refused.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from invokeai_core import QUEUE_ID_RE
from invokeai_web.auth import client_address
from invokeai_web.events import queue_room, session_room
from invokeai_web.security import too_many_failures

if TYPE_CHECKING:
    from invokeai_web.auth import Gate
    from invokeai_web.events import EventBridge
    from invokeai_web.settings import WebSettings

logger = logging.getLogger("invokeai.web.sockets")

#: Session ids are uuid hex strings; accept any plain id of that shape (letters, digits, `_`, `-`).
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

#: Where the Socket.IO endpoint is mounted (the client library's default).
SOCKETIO_PATH = "socket.io"


def _extract(data: Any, key: str) -> Any:
    if isinstance(data, dict):
        return data.get(key)
    return data


def create_socket_server(settings: WebSettings, bridge: EventBridge, gate: Gate) -> Any:
    """The `socketio.AsyncServer` with the subscription handlers."""
    import socketio

    sio = socketio.AsyncServer(
        async_mode="asgi",
        # None: same-origin browsers only (python-socketio's default); configured origins otherwise
        cors_allowed_origins=list(settings.cors_origins) or None,
        logger=False,
        engineio_logger=False,
        max_http_buffer_size=1_000_000,
    )
    rooms_of: dict[str, set[tuple[str, str]]] = {}

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        ok, wait = gate.check(
            client_address(environ.get("asgi.scope", environ)),
            authorization=environ.get("HTTP_AUTHORIZATION"),
            cookie=environ.get("HTTP_COOKIE"),
            auth=auth,
        )
        if wait > 0:
            raise socketio.exceptions.ConnectionRefusedError(too_many_failures(wait))
        if not ok:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized: a valid access token is required")
        rooms_of[sid] = set()

    @sio.event
    async def disconnect(sid: str, *args: Any) -> None:
        for kind, key in rooms_of.pop(sid, set()):
            if kind == "session":
                bridge.unwatch_session(key)
            else:
                bridge.unwatch_queue(key)

    async def join(sid: str, kind: str, key: Any) -> dict[str, Any]:
        pattern = SESSION_ID_RE if kind == "session" else QUEUE_ID_RE
        if not isinstance(key, str) or not pattern.match(key):
            return {"ok": False, "error": f"invalid {kind} id {key!r}"}
        room = session_room(key) if kind == "session" else queue_room(key)
        mine = rooms_of.setdefault(sid, set())
        if (kind, key) not in mine:
            mine.add((kind, key))
            await sio.enter_room(sid, room)
            if kind == "session":
                bridge.watch_session(key)
            else:
                bridge.watch_queue(key)
        return {"ok": True, "room": room}

    async def leave(sid: str, kind: str, key: Any) -> dict[str, Any]:
        if not isinstance(key, str):
            return {"ok": False, "error": f"invalid {kind} id {key!r}"}
        room = session_room(key) if kind == "session" else queue_room(key)
        mine = rooms_of.get(sid, set())
        if (kind, key) in mine:
            mine.discard((kind, key))
            await sio.leave_room(sid, room)
            if kind == "session":
                bridge.unwatch_session(key)
            else:
                bridge.unwatch_queue(key)
        return {"ok": True, "room": room}

    @sio.on("subscribe_session")
    async def subscribe_session(sid: str, data: Any = None) -> dict[str, Any]:
        return await join(sid, "session", _extract(data, "session_id"))

    @sio.on("unsubscribe_session")
    async def unsubscribe_session(sid: str, data: Any = None) -> dict[str, Any]:
        return await leave(sid, "session", _extract(data, "session_id"))

    @sio.on("subscribe_queue")
    async def subscribe_queue(sid: str, data: Any = None) -> dict[str, Any]:
        return await join(sid, "queue", _extract(data, "queue_id"))

    @sio.on("unsubscribe_queue")
    async def unsubscribe_queue(sid: str, data: Any = None) -> dict[str, Any]:
        return await leave(sid, "queue", _extract(data, "queue_id"))

    return sio
