"""How a request proves it may use a server that has an access token.

Programs send `Authorization: Bearer TOKEN` (HTTP) or `auth={"token": TOKEN}` (the Socket.IO
handshake). A browser cannot put a header on an `<img>` or a WebSocket, so the web UI signs in
once instead: `POST /api/v1/auth/login` with the token sets an `HttpOnly`, `SameSite=Strict`
cookie that every later same-origin request (fetches, images, the Socket.IO handshake) carries.

The cookie holds an HMAC of the token, not the token, so a leaked cookie never reveals it (and a
new token invalidates every cookie). `SameSite=Strict` keeps other sites' pages from riding on it,
on top of the guard's `Origin` check.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from typing import Any

COOKIE_NAME = "invokeai_session"
COOKIE_MAX_AGE = 7 * 24 * 3600

#: Paths anyone may GET: the web UI's own files (they hold no data; the UI then signs in).
PUBLIC_PREFIXES = ("/assets/",)
PUBLIC_PATHS = frozenset({"/", "/index.html"})


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"invokeai-web session cookie v1", hashlib.sha256).hexdigest()


def bearer_ok(expected: str, authorization: str | None) -> bool:
    if not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected.encode())


def cookie_ok(expected: str, cookie_header: str | None) -> bool:
    if not cookie_header:
        return False
    try:
        jar = SimpleCookie(cookie_header)
    except CookieError:
        return False
    morsel = jar.get(COOKIE_NAME)
    return morsel is not None and hmac.compare_digest(morsel.value.encode(), cookie_value(expected).encode())


def authenticated(expected: str | None, *, authorization: str | None, cookie: str | None, auth: Any = None) -> bool:
    """Whether a request carries the token: header, signed-in cookie or Socket.IO `auth` payload."""
    if not expected:
        return True
    if bearer_ok(expected, authorization) or cookie_ok(expected, cookie):
        return True
    token = auth.get("token") if isinstance(auth, dict) else None
    return isinstance(token, str) and hmac.compare_digest(token.encode(), expected.encode())


def is_public(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))
