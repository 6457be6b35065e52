"""`services.events = "redis"`: the kernel's event bus, shared by every process on one Redis.

Each process keeps the kernel's synchronous in-process dispatch (its own subscribers are called on
the emitting thread, as with the default bus) and also publishes the events other processes want on
one Redis pub/sub channel; a listener thread delivers what other processes publish to this process's
subscribers. So `invokeai serve` shows live the sessions that another process (a CLI run, a second
server, a worker) executes on the same database.

**Only wanted events cross.** The engine builds an event (and encodes a progress preview) only when
somebody subscribes to it (`has_subscribers`). Each process advertises the event names it has
subscribers for under `<channel>:interest:<process id>` (a key that expires unless refreshed, so a
dead process stops counting) and announces changes on the channel; the others read the union. A
process with nobody watching anywhere publishes nothing.

**A broken link never breaks a run.** Publishing failures are logged (once per outage) and the
session goes on; the listener reconnects with backoff. Only the first connection is checked: an
unreachable Redis at start is a `StorageUnavailableError` naming the URL.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from invokeai_core import ALL_EVENTS, EventBase, Handler, InProcessEventBus, StorageUnavailableError
from invokeai_redis.settings import RedisSettings, load_settings

logger = logging.getLogger("invokeai.redis")

EVENT_CLASSES: dict[str, type[EventBase]] = {cls.event_name: cls for cls in ALL_EVENTS}

#: How long an advertised interest lives without a refresh, and how often it is refreshed.
INTEREST_TTL_S = 15
REFRESH_S = 5.0


class RedisEventBus(InProcessEventBus):
    """See the module docstring."""

    def __init__(self, config: Any = None, *, settings: RedisSettings | None = None) -> None:
        import redis

        super().__init__(config)
        self.settings = settings if settings is not None else load_settings(config)
        self.origin = uuid.uuid4().hex
        self.channel = self.settings.channel
        self._interest_key = f"{self.channel}:interest:{self.origin}"
        self._advertise_lock = threading.Lock()
        timeout = self.settings.connect_timeout
        self._redis = redis.Redis.from_url(
            self.settings.url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=30
        )
        try:
            self._redis.ping()
            self._remote: tuple[frozenset[str], bool] = self._read_remote_interest()
        except redis.RedisError as e:
            raise StorageUnavailableError(
                f"cannot reach Redis at {self.settings.url} for events (plugins.redis.url): {e}"
            ) from None
        self._publish_failing = False
        #: Events received from other processes and delivered here (for tests and diagnostics).
        self.received = 0
        self._stop = threading.Event()
        self._refresh_now = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="invokeai-redis-events", daemon=True)
        self._thread.start()

    # -- the kernel's interface -------------------------------------------------------------------
    def emit(self, event: EventBase) -> None:
        super().emit(event)
        if not self._remote_wants(event.event_name):
            return
        message = json.dumps({"origin": self.origin, "event": event.event_name, "data": event.model_dump(mode="json")})
        try:
            self._redis.publish(self.channel, message)
            if self._publish_failing:
                self._publish_failing = False
                logger.warning("publishing events to Redis at %s works again", self.settings.url)
        except Exception as e:  # never break the engine over a lost event
            if not self._publish_failing:
                self._publish_failing = True
                logger.warning("cannot publish events to Redis at %s: %s (sessions go on)", self.settings.url, e)

    def subscribe(
        self,
        handler: Handler,
        *,
        names: list[str] | None = None,
        session_id: str | None = None,
        queue_id: str | None = None,
    ) -> Callable[[], None]:
        unsubscribe = super().subscribe(handler, names=names, session_id=session_id, queue_id=queue_id)
        self._interest_changed()

        def unsubscribe_and_tell() -> None:
            unsubscribe()
            self._interest_changed()

        return unsubscribe_and_tell

    def has_subscribers(self, name: str) -> bool:
        return super().has_subscribers(name) or self._remote_wants(name)

    def start(self) -> None:
        """Listen again after a `stop` (an Invoker started a second time)."""
        if not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._listen, name="invokeai-redis-events", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop listening and withdraw this process's interest (the Invoker calls it on stop)."""
        self._stop.set()
        self._refresh_now.set()
        self._thread.join(5)
        try:
            with self._advertise_lock:
                self._redis.delete(self._interest_key)
            self._announce()
            self._redis.close()
        except Exception:
            logger.debug("withdrawing interest from Redis failed", exc_info=True)

    close = stop

    # -- interest ---------------------------------------------------------------------------------
    def _remote_wants(self, name: str) -> bool:
        names, everything = self._remote
        return everything or name in names

    def _local_interest(self) -> str:
        return json.dumps({"names": sorted(self._names), "all": self._wildcards > 0})

    def _advertise(self) -> None:
        """This process's interest, under its key (which expires unless advertised again).

        Two threads advertise (the listener's refresh, and whichever thread subscribes), so reading
        the interest and writing it happen under one lock: otherwise a refresh that read the interest
        just before a subscription could land its older value after the subscriber's, and the others
        would drop the new subscriber's events until the next refresh (seen as lost live events)."""
        with self._advertise_lock:
            self._redis.set(self._interest_key, self._local_interest(), ex=INTEREST_TTL_S)

    def _announce(self) -> None:
        """Tell the other processes that this one's interest changed."""
        self._redis.publish(self.channel, json.dumps({"origin": self.origin, "interest": True}))

    def _interest_changed(self) -> None:
        """Advertise this process's interest now, and tell the others to re-read."""
        try:
            self._advertise()
            self._announce()
        except Exception as e:
            logger.warning("cannot advertise event interest to Redis at %s: %s", self.settings.url, e)

    def _read_remote_interest(self) -> tuple[frozenset[str], bool]:
        names: set[str] = set()
        everything = False
        keys = [k for k in self._redis.scan_iter(match=f"{self.channel}:interest:*", count=100)]
        values = self._redis.mget(keys) if keys else []
        for key, value in zip(keys, values, strict=True):
            if value is None or (key.decode() if isinstance(key, bytes) else key) == self._interest_key:
                continue
            try:
                data = json.loads(value)
            except ValueError:
                continue
            names.update(n for n in data.get("names", ()) if isinstance(n, str))
            everything = everything or bool(data.get("all"))
        return frozenset(names), everything

    # -- listening --------------------------------------------------------------------------------
    def _listen(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._listen_once()
                delay = 0.5
            except Exception as e:
                if self._stop.is_set():
                    break
                logger.warning("lost the Redis event channel at %s (%s); reconnecting", self.settings.url, e)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _listen_once(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
            self._interest_changed()
            self._remote = self._read_remote_interest()
            next_refresh = time.monotonic() + REFRESH_S
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.2)
                if message is not None and message.get("type") == "message":
                    self._on_message(message["data"])
                if self._refresh_now.is_set() or time.monotonic() >= next_refresh:
                    self._refresh_now.clear()
                    self._advertise()
                    self._remote = self._read_remote_interest()
                    next_refresh = time.monotonic() + REFRESH_S
        finally:
            pubsub.close()

    def _on_message(self, raw: bytes | str) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            logger.debug("ignoring a message that is not JSON on %s", self.channel)
            return
        if not isinstance(data, dict) or data.get("origin") == self.origin:
            return
        if data.get("interest"):
            self._refresh_now.set()  # another process's interest changed: re-read it
            return
        cls = EVENT_CLASSES.get(str(data.get("event")))
        if cls is None:
            logger.debug("ignoring an unknown event %r from Redis", data.get("event"))
            return
        try:
            event = cls.model_validate(data.get("data") or {})
        except Exception:
            logger.warning("ignoring a malformed %s event from Redis", data.get("event"))
            return
        self.received += 1
        InProcessEventBus.emit(self, event)  # to this process's subscribers only, never published again
