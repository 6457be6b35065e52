"""How a request proves it may use a server that has an access token.

Programs send `Authorization: Bearer TOKEN` (HTTP) or `auth={"token": TOKEN}` (the Socket.IO
handshake). A browser cannot put a header on an `<img>` or a WebSocket, so the web UI signs in
once instead: `POST /api/v1/auth/login` with the token sets an `HttpOnly`, `SameSite=Strict`
cookie that every later same-origin request (fetches, images, the Socket.IO handshake) carries.

* **The cookie is a sign-in, not the token.** It holds a random sign-in id, its expiry and an HMAC
  of both keyed with the token: a leaked cookie never reveals the token, a new token invalidates
  every cookie, and `POST /auth/logout` revokes that sign-in id, so the cookie stops working even
  if someone kept a copy. Revoked ids are kept until the cookie would have expired anyway, in
  `<root>/web_signouts.json`, so they survive a restart and every server on the same root honours
  them (each re-reads the file when it changes).
* **Wrong guesses are throttled.** Each client address may present a wrong token (header,
  Socket.IO `auth` or the sign-in form) `auth_failures_per_minute` times in a sliding minute; past
  that, every request of that address that carries a token gets 429 with `Retry-After`, right or
  wrong, so guessing is as slow as the limit. Requests without a token are not guesses, and a
  signed-in cookie still works meanwhile (it cannot be guessed, so checking it reveals nothing).
* `SameSite=Strict` keeps other sites' pages from riding on the cookie, on top of the guard's
  `Origin` check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any

logger = logging.getLogger("invokeai.web.auth")

COOKIE_NAME = "invokeai_session"
COOKIE_MAX_AGE = 7 * 24 * 3600
#: The least length of an access token on a server reachable from other machines.
MIN_TOKEN_LENGTH = 16

#: Paths anyone may GET: the web UI's own files (they hold no data; the UI then signs in).
PUBLIC_PREFIXES = ("/assets/",)
PUBLIC_PATHS = frozenset({"/", "/index.html"})

#: Client addresses whose failures are remembered at once (the oldest are forgotten past it).
MAX_TRACKED_CLIENTS = 10_000


def _mac(token: str, payload: str) -> str:
    return hmac.new(token.encode(), f"invokeai-web sign-in v2 {payload}".encode(), hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Throttle:
    """Wrong credentials per client address in a sliding minute (see the module docstring)."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.get(client)
            if times is None:
                return 0.0
            while times and now - times[0] >= self.window:
                times.popleft()
            if not times:
                del self._failures[client]
                return 0.0
            return max(0.0, self.window - (now - times[0])) if len(times) >= self.per_minute else 0.0

    def failed(self, client: str) -> None:
        with self._lock:
            times = self._failures.setdefault(client, deque())
            self._failures.move_to_end(client)
            times.append(time.monotonic())
            while len(times) > self.per_minute:
                times.popleft()
            while len(self._failures) > MAX_TRACKED_CLIENTS:
                self._failures.popitem(last=False)


class Gate:
    """The server's access token, its signed-in cookies and the throttle of wrong guesses, shared by
    the guard middleware, the sign-in routes and Socket.IO. Without a token everything passes."""

    def __init__(self, token: str | None, failures_per_minute: int = 10, signouts: Path | None = None) -> None:
        self.token = token
        self.throttle = Throttle(failures_per_minute)
        self.signouts = signouts
        self._revoked: dict[str, float] = {}  # sign-in id -> its expiry
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the signouts file last read
        self._lock = threading.Lock()

    # -- cookies ------------------------------------------------------------------------------
    def new_cookie(self) -> str:
        """A fresh sign-in: `<id>.<expiry>.<hmac>`."""
        assert self.token
        payload = f"{secrets.token_urlsafe(18)}.{int(time.time()) + COOKIE_MAX_AGE}"
        return f"{payload}.{_mac(self.token, payload)}"

    def _cookie_id(self, value: str) -> str | None:
        """The sign-in id of a valid, unexpired, unrevoked cookie value."""
        if not self.token:
            return None
        sid, _, rest = value.partition(".")
        expires, _, mac = rest.partition(".")
        if not (sid and expires.isdigit() and mac) or not _same(mac, _mac(self.token, f"{sid}.{expires}")):
            return None
        if int(expires) < time.time():
            return None
        with self._lock:
            self._reload()
            return None if sid in self._revoked else sid

    def revoke(self, cookie_header: str | None) -> None:
        """Sign out: the request's cookie stops working, everywhere it was copied to."""
        value = _cookie(cookie_header)
        sid = self._cookie_id(value) if value else None
        if value is None or sid is None:
            return
        now = time.time()
        with self._lock:
            self._reload()
            self._revoked = {k: v for k, v in self._revoked.items() if v >= now}
            self._revoked[sid] = float(value.split(".")[1])
            if self.signouts is not None:
                tmp = self.signouts.with_name(f".{self.signouts.name}.{secrets.token_hex(4)}.tmp")
                try:
                    tmp.write_text(json.dumps(self._revoked), encoding="utf-8")
                    os.replace(tmp, self.signouts)
                except OSError:  # revoked in this process still; other processes see it after a retry
                    logger.exception("cannot record the sign-out in %s", self.signouts)
                    tmp.unlink(missing_ok=True)
                self._seen = _stamp(self.signouts)

    def _reload(self) -> None:
        """Read the signouts file again if another process (or a restart) changed it."""
        if self.signouts is None:
            return
        stamp = _stamp(self.signouts)
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            data = json.loads(self.signouts.read_text(encoding="utf-8")) if stamp else {}
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict):
            self._revoked.update({str(k): float(v) for k, v in data.items() if isinstance(v, int | float)})

    # -- checking -----------------------------------------------------------------------------
    def check(
        self, client: str, *, authorization: str | None, cookie: str | None, auth: Any = None
    ) -> tuple[bool, float]:
        """`(ok, retry_after)`: whether the request carries the token (header or Socket.IO `auth`
        payload) or a signed-in cookie; `retry_after` > 0 when its address is throttled and its
        token was not checked. Cookies cannot be guessed (a random id, signed), so they are always
        checked and a stale one never counts as a guess: a signed-in browser keeps working."""
        if not self.token:
            return True, 0.0
        presented = _credentials(authorization, cookie, auth)
        if any(self._cookie_id(value) is not None for kind, value in presented if kind == "cookie"):
            return True, 0.0
        tokens = [value for kind, value in presented if kind == "token"]
        if not tokens:
            return False, 0.0
        wait = self.throttle.retry_after(client)
        if wait > 0:
            return False, wait
        if any(_same(value, self.token) for value in tokens):
            return True, 0.0
        self.throttle.failed(client)
        return False, 0.0

    def check_token(self, client: str, token: str) -> tuple[bool, float]:
        """The sign-in form's check of a typed token, throttled like every other token."""
        return self.check(client, authorization=None, cookie=None, auth={"token": token})


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _cookie(cookie_header: str | None) -> str | None:
    if not cookie_header:
        return None
    try:
        jar = SimpleCookie(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE_NAME)
    return morsel.value if morsel is not None else None


def _credentials(authorization: str | None, cookie_header: str | None, auth: Any) -> list[tuple[str, str]]:
    """What a request presents as credentials: `("token", value)` and `("cookie", value)` pairs."""
    found: list[tuple[str, str]] = []
    if authorization:
        scheme, _, value = authorization.partition(" ")
        found.append(("token", value.strip() if scheme.lower() == "bearer" else ""))
    cookie = _cookie(cookie_header)
    if cookie is not None:
        found.append(("cookie", cookie))
    token = auth.get("token") if isinstance(auth, dict) else None
    if isinstance(token, str):
        found.append(("token", token))
    return found


def client_address(scope_or_environ: Any) -> str:
    """The peer address of an ASGI scope (`client`) or a WSGI-style environ (`REMOTE_ADDR`)."""
    client = scope_or_environ.get("client")
    if client:
        return str(client[0])
    return str(scope_or_environ.get("REMOTE_ADDR", "?"))


def is_public(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))
