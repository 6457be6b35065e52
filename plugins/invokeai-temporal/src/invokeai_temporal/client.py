"""A Temporal client for synchronous code: one event loop on a daemon thread per process.

The kernel's services are synchronous (the API server calls the queue from worker threads), the
Temporal SDK is asyncio: `TemporalConnection.call(coro_fn)` runs a coroutine on the loop and waits
for it. An unreachable Temporal is `TemporalUnavailableError`, a `StorageUnavailableError`: the API
answers 503 with Retry-After and the CLI prints one line and exits with status 2.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from invokeai_core import StorageUnavailableError

if TYPE_CHECKING:
    from temporalio.client import Client

    from invokeai_temporal.settings import TemporalSettings

T = TypeVar("T")


class TemporalUnavailableError(StorageUnavailableError):
    """Temporal cannot be reached (or did not answer in time)."""


def _detail(error: BaseException | str) -> str:
    """The useful part of an SDK error: the OS's message inside the transport error when present
    ("Connection refused"), else its first line, at most 200 characters."""
    text = str(error).strip()
    found = re.findall(r'message: "([^"]+)"', text)
    if found:
        return found[-1]
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def unreachable(settings: TemporalSettings, error: BaseException | str) -> TemporalUnavailableError:
    detail = _detail(error)
    return TemporalUnavailableError(
        f"cannot reach Temporal at {settings.address} (plugins.temporal.address, namespace "
        f"'{settings.namespace}'): {detail}"
    )


class TemporalConnection:
    """A connected client and the loop it lives on; see the module docstring."""

    def __init__(self, settings: TemporalSettings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="invokeai-temporal-loop", daemon=True)
        self._thread.start()
        self._client: Client | None = None
        self._connect_lock = threading.Lock()

    @property
    def client(self) -> Client:
        """The client, connecting on first use (raises `TemporalUnavailableError`)."""
        with self._connect_lock:
            if self._client is None:
                self._client = self.run(self._connect(), timeout=self.settings.connect_timeout)
            return self._client

    async def _connect(self) -> Client:
        from temporalio.client import Client

        return await Client.connect(self.settings.address, namespace=self.settings.namespace)

    def run(self, coro: Awaitable[T], *, timeout: float | None = None) -> T:
        """Run `coro` on the loop and wait for it; connection failures and timeouts become
        `TemporalUnavailableError`."""
        from temporalio.service import RPCError, RPCStatusCode

        async def bounded() -> T:
            return await asyncio.wait_for(coro, timeout)

        future = asyncio.run_coroutine_threadsafe(bounded(), self.loop)
        try:
            return future.result()
        except TimeoutError as e:
            raise unreachable(self.settings, f"no answer in {timeout} s") from e
        except RPCError as e:
            if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise unreachable(self.settings, e.message) from e
            raise
        except RuntimeError as e:  # the SDK's connection errors (e.g. "Failed client connect: ...")
            if "connect" in str(e).lower():
                raise unreachable(self.settings, e) from e
            raise

    def call(self, fn: Callable[[Client], Awaitable[T]], *, timeout: float | None = None) -> T:
        """`fn(client)` on the loop (connecting first), bounded by `timeout` (default connect_timeout)."""
        client = self.client
        return self.run(fn(client), timeout=self.settings.connect_timeout if timeout is None else timeout)

    def check(self) -> None:
        """Raise `TemporalUnavailableError` unless Temporal answers a health check now."""

        async def health(client: Client) -> Any:
            return await client.service_client.check_health()

        self.call(health)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
