"""Fixtures: a real uvicorn server on a free 127.0.0.1 port, around an Invoker built from a temporary
root (the kernel's fixtures), with the web test nodes registered; and a Socket.IO watcher."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))


INVOKEAI = str(Path(sys.executable).parent / "invokeai")


def serve_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update({"INVOKEAI_ROOT": str(root), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


def start_serve(root: Path, *args: str, log_file: Path | None = None, **env: str) -> tuple[subprocess.Popen[str], str]:
    """`invokeai serve` in a subprocess on a free 127.0.0.1 port, once it printed its start line (which
    names the UI and the docs); returns it and its URL."""
    # the server logs a line per request on stderr: a test sending many requests gives a `log_file`, or
    # the unread pipe fills and the server blocks on its next log line
    stderr: Any = open(log_file, "w") if log_file is not None else subprocess.PIPE
    proc = subprocess.Popen(
        [INVOKEAI, "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=serve_env(root, **env),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server listens (or dies)
    if "serving on" not in line:
        proc.kill()
        raise AssertionError(f"no start line: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    url = line.split("serving on ", 1)[1].split()[0]
    assert f"API docs: {url}/docs and {url}/redoc" in line  # the start line names the UI and the docs
    return proc, url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def web_settings_overrides() -> dict[str, Any]:
    """Override per test module or test (`@pytest.mark.parametrize` or a fixture of the same name)."""
    return {}


@dataclass
class Server:
    url: str
    invoker: Any
    app: Any
    settings: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def client(self, **kwargs: Any) -> Any:
        import httpx

        return httpx.Client(base_url=self.api, headers=self.headers, timeout=30, **kwargs)

    def async_client(self, **kwargs: Any) -> Any:
        import httpx

        return httpx.AsyncClient(base_url=self.api, headers=self.headers, timeout=30, **kwargs)


@pytest.fixture
def web_nodes(invokeai_register_nodes: Callable[..., Any]) -> None:
    from web_nodes import ALL_NODES

    invokeai_register_nodes(*ALL_NODES, name="webtest")


@pytest.fixture
def server(
    invokeai_host: Any, invokeai_config: Any, web_nodes: None, web_settings_overrides: dict[str, Any]
) -> Iterator[Server]:
    from invokeai_web.app import ServerThread, create_app
    from invokeai_web.settings import WebSettings

    from invokeai_core import Invoker

    settings = WebSettings(**{"port": 0, **web_settings_overrides})
    invoker = Invoker.from_config(invokeai_config, invokeai_host)
    app = create_app(invoker, settings)
    headers = {"Authorization": f"Bearer {settings.access_token}"} if settings.access_token else {}
    with ServerThread(app) as url:
        yield Server(url, invoker, app, settings, headers)


class Watcher:
    """A python-socketio client that records every event it receives, in order."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, auth: Any = None) -> None:
        import socketio

        self.url = url
        self.headers = headers or {}
        self.auth = auth
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

        @self.sio.on("*")
        async def catch_all(event: str, data: Any = None) -> None:
            self.events.append((event, data))
            self._changed.set()

    async def connect(self) -> Watcher:
        await self.sio.connect(
            self.url, headers=self.headers, auth=self.auth, transports=["websocket"], wait_timeout=10
        )
        return self

    async def subscribe(self, kind: str, key: str) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(f"subscribe_{kind}", {f"{kind}_id": key}, timeout=10)
        assert ack["ok"], ack
        return ack

    async def unsubscribe(self, kind: str, key: str) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(f"unsubscribe_{kind}", {f"{kind}_id": key}, timeout=10)
        return ack

    def named(self, *names: str) -> list[dict[str, Any]]:
        return [data for name, data in self.events if name in names]

    async def wait_for(
        self, predicate: Callable[[list[tuple[str, dict[str, Any]]]], bool], timeout: float = 30
    ) -> None:
        async def wait() -> None:
            while not predicate(self.events):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            names = [n for n, _ in self.events][-20:]
            raise AssertionError(f"timed out waiting; last events: {names}") from None

    async def close(self) -> None:
        await self.sio.disconnect()


@pytest.fixture
async def watcher(server: Server) -> Any:
    w = await Watcher(server.url, server.headers).connect()
    try:
        yield w
    finally:
        await w.close()
