"""The server's outer guard, a plain ASGI middleware in front of everything (API, Socket.IO, static).

* **Access token.** With `access_token` set, an HTTP request without `Authorization: Bearer TOKEN`
  or the web UI's session cookie (`invokeai_web.auth`) gets 401, except the UI's own static files
  and the sign-in routes (`/api/v1/auth...`). Socket.IO checks the token itself when a client
  connects (`invokeai_web.sockets`), so browsers can pass it in the handshake's `auth` payload.
* **Loopback only means loopback.** Without a token the server is bound to a loopback address (a
  request that reached another local address, say through a bare `uvicorn --host 0.0.0.0`, gets
  403), and the `Host` header must name one too (`127.0.0.1`, `localhost`, `[::1]`): a web page that
  re-binds its own domain name to 127.0.0.1 (DNS rebinding) is refused with 421.
* **Cross-site requests.** A browser request whose `Origin` is neither this server nor one of
  `cors_origins` is refused with 403, so a page elsewhere cannot post forms or uploads to a local
  server (CORS alone only hides the responses). `Origin: null` (a sandboxed iframe, a `file://`
  page, a cross-site redirect) names no site at all, so a server without a token refuses it too
  on every request that could change something (any method but GET/HEAD/OPTIONS, and Socket.IO).
* **Guessing the token** is throttled per client address (429, see `invokeai_web.auth`).
* **Body size.** A request body over `max_upload_mb` gets 413, whether it declares its length or
  streams it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from math import ceil
from typing import Any
from urllib.parse import urlsplit

from invokeai_core import ConfigError
from invokeai_web import API_PREFIX
from invokeai_web.auth import Gate, client_address, is_public
from invokeai_web.settings import WebSettings, is_loopback

#: The sign-in routes, reachable without the token.
AUTH_PATHS = frozenset({f"{API_PREFIX}/auth", f"{API_PREFIX}/auth/login", f"{API_PREFIX}/auth/logout"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


#: Methods that never change anything on this server.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def too_many_failures(wait: float) -> str:
    return f"too many wrong access tokens from this address; try again in {ceil(wait)} s"


class _BodyTooLarge(Exception):
    pass


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        out.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
    return out


def _host_name(value: str) -> str:
    """The host part of a `Host` header (`127.0.0.1:9090` -> `127.0.0.1`, `[::1]:80` -> `::1`)."""
    value = value.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


async def send_json_error(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, settings: WebSettings, gate: Gate, *, socketio_path: str = "/socket.io/") -> None:
        self.app = app
        self.settings = settings
        self.gate = gate
        self.token = settings.access_token
        self.limit = settings.max_upload_bytes
        self.origins = {o.rstrip("/") for o in settings.cors_origins}
        self.socketio_path = socketio_path
        # without a token the server only ever listens on loopback (enforced at start)
        self.check_host = not self.token
        try:  # ...and however it was started, it answers only there (a token too weak counts as none)
            settings.check_bind("0.0.0.0")
            self.loopback_only = False
        except ConfigError:
            self.loopback_only = True

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        server = scope.get("server")
        if self.loopback_only and server and server[1] is not None and not is_loopback(str(server[0])):
            return 403, (
                f"this server has no access token, so it answers on loopback addresses only, not {server[0]}: "
                "set plugins.web.access_token (see `invokeai serve --help`)"
            )
        if self.check_host:
            host = headers.get("host")
            if host is not None and not is_loopback(_host_name(host)):
                return 421, f"this server answers to loopback host names only, not {host!r}"
        origin = headers.get("origin")
        if origin == "null":
            changes = scope["type"] == "websocket" or scope.get("method") not in SAFE_METHODS
            if not self.token and (changes or self._is_socketio(scope)):
                return 403, (
                    "requests from an opaque origin (Origin: null: a sandboxed frame or a file:// page) may not "
                    "change this server; open the web UI from the server itself"
                )
        elif origin is not None:
            origin = origin.rstrip("/")
            if origin not in self.origins and "*" not in self.origins:
                parts = urlsplit(origin)
                if parts.netloc != headers.get("host", ""):
                    return 403, f"cross-origin requests from {origin} are not allowed (see plugins.web.cors_origins)"
        return None

    def _is_socketio(self, scope: Scope) -> bool:
        return bool((scope.get("path", "") + "/").startswith(self.socketio_path))

    @staticmethod
    def _open(scope: Scope) -> bool:
        path = scope.get("path", "")
        return path in AUTH_PATHS or is_public(scope.get("method", "GET"), path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        extra: list[tuple[bytes, bytes]] = []
        if refusal is None and self.token and not self._is_socketio(scope) and not self._open(scope):
            ok, wait = self.gate.check(
                client_address(scope), authorization=headers.get("authorization"), cookie=headers.get("cookie")
            )
            if wait > 0:
                refusal = (429, too_many_failures(wait))
                extra = [(b"retry-after", str(ceil(wait)).encode())]
            elif not ok:
                refusal = (401, "missing or invalid access token (send 'Authorization: Bearer TOKEN')")
                extra = [(b"www-authenticate", b"Bearer")]
        if refusal is not None:
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": refusal[1][:120]})
                return
            await send_json_error(send, refusal[0], refusal[1], extra)
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, headers)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        limit = self.limit
        declared = headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await send_json_error(send, 400, "malformed Content-Length")
                return
            if too_big:
                await send_json_error(send, 413, self._too_large_message())
                return
        received = 0
        overflow = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflow = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow:
                return  # whatever the app answers to the broken-off body, the answer is 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not overflow:
                raise
        if overflow and not started:
            await send_json_error(send, 413, self._too_large_message())

    def _too_large_message(self) -> str:
        return f"the request body is larger than the server's limit of {self.settings.max_upload_mb:g} MiB"
