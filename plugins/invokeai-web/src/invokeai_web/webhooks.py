"""Webhooks: an enqueue may name a URL; when each of its queue items completes, fails or is canceled
the server POSTs a signed JSON notice there (docs/webhooks.md).

* **Off the queue's path.** The event handler only puts the finished item's id on an in-memory
  queue; a background thread (`invokeai-webhooks`) builds the notice, signs it and sends it. A slow
  or dead target never holds up the queue processor or the event bus.
* **Signed** with HMAC-SHA256 under `plugins.web.webhook_secret`, over `"{t}.{body}"` where `t` is
  the Unix time of the attempt: header `InvokeAI-Signature: t=<t>,v1=<hex>` (Stripe's scheme), so a
  receiver can check both who sent it and that it is fresh (refuse old `t`: replays).
* **Retried** with exponential backoff: attempt `n` (1-based) that fails (no connection, a timeout, a
  status that is not 2xx) is tried again `webhook_backoff_seconds * 2**(n-1)` later, up to
  `webhook_attempts` attempts. Redirects are not followed (they would lead past the host check).
* **Recorded**: every attempt is a row of `webhook_deliveries` (item id, URL, attempt, status code,
  error, time) in the root's database, `GET /api/v1/queue/{queue_id}/i/{item_id}/webhooks`.
* **What may be a target** (`check_webhook`): `http` or `https` URLs with a host and no user name or
  password in them; when `webhook_allowed_hosts` is set, only those hosts (`example.com`, or
  `*.example.com` for its subdomains). Webhooks are off until `webhook_secret` is set: an enqueue
  naming one is refused (422) rather than sending unsigned notices.

Retries waiting when the server stops are not resumed by the next start (their attempts so far
stay recorded).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import json
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel, Field

from invokeai_core import FINISHED, EventBase, QueueItemNotFoundError, SqliteDatabase, utcnow

if TYPE_CHECKING:
    from invokeai_core import Invoker
    from invokeai_web.settings import WebSettings

logger = logging.getLogger("invokeai.webhooks")

SIGNATURE_HEADER = "InvokeAI-Signature"
WebhookUrl = Annotated[str, Field(min_length=1, max_length=2048, description="An http(s) URL")]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `v1` signature: HMAC-SHA256 of `"{timestamp}.{body}"` under `secret`, in hex."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None) -> bool:
    """What a receiver does (docs/webhooks.md): parse `t=...,v1=...`, recompute, compare in constant
    time, and refuse a timestamp more than `tolerance` seconds away from now."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(parts.get("v1", ""), sign(secret, timestamp, body))


def _refuse(msg: str) -> HTTPException:
    return HTTPException(422, [{"type": "webhook", "loc": ["body", "webhook"], "msg": msg, "field": "webhook"}])


def host_allowed(host: str, allowed: list[str]) -> bool:
    if not allowed:
        return True
    host = host.lower().rstrip(".")
    for pattern in allowed:
        p = pattern.lower().rstrip(".")
        if p.startswith("*."):
            if host.endswith(p[1:]) and host != p[2:]:
                return True
        elif host == p:
            return True
    return False


def check_webhook(settings: WebSettings, url: str) -> str:
    """The URL if it may be a target (module docstring); 422 naming `webhook` otherwise."""
    if not settings.webhook_secret:
        raise _refuse("webhooks are off on this server: set plugins.web.webhook_secret to sign them")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError as e:
        raise _refuse(f"webhook {url!r} is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise _refuse(f"webhook {url!r}: only http and https URLs are allowed")
    if not host:
        raise _refuse(f"webhook {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise _refuse(f"webhook {url!r}: credentials in the URL are not allowed (authenticate by the signature)")
    if not host_allowed(host, settings.webhook_allowed_hosts):
        allowed = ", ".join(settings.webhook_allowed_hosts)
        raise _refuse(f"webhook host '{host}' is not allowed (plugins.web.webhook_allowed_hosts: {allowed})")
    return url


# -- storage --------------------------------------------------------------------------------------
def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE webhook_batches (batch_id TEXT PRIMARY KEY, queue_id TEXT NOT NULL, url TEXT NOT NULL, "
        "created_at TEXT NOT NULL) WITHOUT ROWID"
    )
    conn.execute(
        """
        CREATE TABLE webhook_deliveries (
            delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
            item_id INTEGER NOT NULL,
            queue_id TEXT NOT NULL,
            url TEXT NOT NULL,
            event TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            status_code INTEGER,
            error TEXT,
            delivered INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX ix_webhook_item ON webhook_deliveries (item_id, delivery_id)")


MIGRATIONS = [_v1]


class WebhookDelivery(BaseModel):
    """One attempt to deliver a notice."""

    delivery_id: int
    item_id: int
    queue_id: str
    url: str
    event: str = Field(description="queue_item.completed, queue_item.failed or queue_item.canceled")
    attempt: int = Field(description="1 for the first try")
    status_code: int | None = Field(description="The target's HTTP status (None when none came)")
    error: str | None = Field(description="Why the attempt failed (None when delivered)")
    delivered: bool = Field(description="Whether the target answered 2xx")
    created_at: str


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    item_id: int = field(compare=False)
    attempt: int = field(compare=False)
    url: str = field(compare=False, default="")
    payload: dict[str, Any] | None = field(compare=False, default=None)


_STOP = object()


class WebhookService:
    """Registers batches' webhook URLs and delivers their items' notices (module docstring)."""

    def __init__(self, invoker: Invoker, settings: WebSettings) -> None:
        self.invoker = invoker
        self.settings = settings
        self.db = SqliteDatabase.for_config(invoker.config)
        self.db.migrate("webhooks", MIGRATIONS)
        self._events: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Any = None
        self._seq = 0

    # -- registration -----------------------------------------------------------------------------
    def register(self, queue_id: str, batch_id: str, url: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO webhook_batches (batch_id, queue_id, url, created_at) VALUES (?, ?, ?, ?)",
                (batch_id, queue_id, url, utcnow()),
            )

    def unregister(self, batch_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM webhook_batches WHERE batch_id = ?", (batch_id,))

    def url_for(self, batch_id: str) -> str | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT url FROM webhook_batches WHERE batch_id = ?", (batch_id,)).fetchone()
        return str(row[0]) if row else None

    def deliveries(self, item_id: int) -> list[WebhookDelivery]:
        cols = "delivery_id, item_id, queue_id, url, event, attempt, status_code, error, delivered, created_at"
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {cols} FROM webhook_deliveries WHERE item_id = ? ORDER BY delivery_id", (item_id,)
            ).fetchall()
        names = [c.strip() for c in cols.split(",")]
        return [WebhookDelivery.model_validate(dict(zip(names, r, strict=True))) for r in rows]

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._unsubscribe = self.invoker.services.events.subscribe(self._on_event, names=["queue_item_status_changed"])
        self._thread = threading.Thread(target=self._run, name="invokeai-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self._events.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _on_event(self, event: EventBase) -> None:
        """On the event bus's thread (the queue processor's): only hand the item over."""
        status = getattr(event, "status", None)
        if status in FINISHED and event.item_id is not None:
            self._events.put((event.item_id, getattr(event, "batch_id", None)))

    # -- the delivery thread ----------------------------------------------------------------------
    def _run(self) -> None:
        waiting: list[_Job] = []
        while True:
            timeout = max(0.0, waiting[0].due - time.monotonic()) if waiting else None
            try:
                got = self._events.get(timeout=timeout)
            except queue.Empty:
                got = None
            if got is _STOP:
                return
            if got is not None:
                item_id, batch_id = got
                try:
                    url = self.url_for(batch_id) if batch_id else None
                except Exception:
                    logger.exception("looking up the webhook of batch %s failed", batch_id)
                    url = None
                if url is not None:
                    self._seq += 1
                    heapq.heappush(waiting, _Job(time.monotonic(), self._seq, item_id, 1, url))
            while waiting and waiting[0].due <= time.monotonic():
                job = heapq.heappop(waiting)
                try:
                    again = self._attempt(job)
                except Exception:
                    logger.exception("webhook delivery for item %s failed", job.item_id)
                    again = None
                if again is not None:
                    heapq.heappush(waiting, again)

    def payload(self, item_id: int) -> dict[str, Any]:
        """The notice: the item (without its graph) and the URLs of the images its session produced."""
        item = self.invoker.queue.get_item(item_id)
        images: list[dict[str, str]] = []
        try:
            session = self.invoker.services.sessions.get(item.session_id)
            names: list[str] = []
            for output in session.results.values():
                _image_names(output.model_dump(mode="json"), names)
            base = self.settings.public_url.rstrip("/") if self.settings.public_url else ""
            for name in dict.fromkeys(names):
                images.append(
                    {
                        "image_name": name,
                        "url": f"{base}/api/v1/images/i/{name}/full",
                        "thumbnail_url": f"{base}/api/v1/images/i/{name}/thumbnail",
                    }
                )
        except Exception:  # a session that never started (canceled while pending) has no results
            pass
        return {
            "event": f"queue_item.{item.status}",
            "item": item.model_dump(mode="json", exclude={"graph", "error_traceback"}),
            "images": images,
        }

    def _attempt(self, job: _Job) -> _Job | None:
        """Send one attempt and record it; the next attempt when this one failed and some are left."""
        if job.payload is None:
            try:
                job.payload = self.payload(job.item_id)
            except QueueItemNotFoundError:
                return None  # pruned before its notice went out
        secret = self.settings.webhook_secret or ""
        timestamp = int(time.time())
        body = json.dumps({**job.payload, "attempt": job.attempt, "timestamp": timestamp}).encode()
        status_code: int | None = None
        error: str | None = None
        try:
            status_code = _post(job.url, body, signature_header(secret, timestamp, body), self.settings)
            if not 200 <= status_code < 300:
                error = f"the target answered {status_code}"
        except Exception as e:
            error = f"{type(e).__name__}: {e}"[:500]
        item = job.payload["item"]
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO webhook_deliveries (item_id, queue_id, url, event, attempt, status_code, error, "
                "delivered, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.item_id,
                    item["queue_id"],
                    job.url,
                    job.payload["event"],
                    job.attempt,
                    status_code,
                    error,
                    int(error is None),
                    utcnow(),
                ),
            )
        if error is None or job.attempt >= self.settings.webhook_attempts:
            if error is not None:
                logger.warning("webhook for item %s gave up after %d attempts: %s", job.item_id, job.attempt, error)
            return None
        delay = self.settings.webhook_backoff_seconds * 2 ** (job.attempt - 1)
        self._seq += 1
        return _Job(time.monotonic() + delay, self._seq, job.item_id, job.attempt + 1, job.url, job.payload)


def _image_names(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        name = value.get("image_name")
        if isinstance(name, str) and len(value) == 1:
            out.append(name)
            return
        for v in value.values():
            _image_names(v, out)
    elif isinstance(value, list):
        for v in value:
            _image_names(v, out)


def _post(url: str, body: bytes, signature: str, settings: WebSettings) -> int:
    """POST `body` to `url` (no redirects followed); the response status."""
    parts = urlsplit(url)
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    host = parts.hostname or ""
    conn = conn_class(host, parts.port, timeout=settings.webhook_timeout_seconds)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature,
                "User-Agent": "invokeai-webhooks",
            },
        )
        response = conn.getresponse()
        response.read(64 * 1024)
        return int(response.status)
    finally:
        conn.close()


def get_webhooks(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.webhooks
    return service


WebhooksDep = Annotated[WebhookService, Depends(get_webhooks)]
