"""The server: builds the FastAPI app and the Socket.IO server on one ASGI app, and runs it.

    guard (token, host, origin, body size)  [CORS outside it when origins are configured]
      -> socketio.ASGIApp: /socket.io/ -> Socket.IO (rooms per session and queue)
                           everything else -> FastAPI: /api/v1/..., /openapi.json, /docs, / (static UI)

`create_app(invoker, settings)` builds it around an Invoker; its lifespan starts the Invoker (with
the queue processor unless `queue_processor = false`) and the event bridge, and stops both.
`serve(...)` binds the socket and runs uvicorn; `invokeai serve` calls it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invokeai_web import API_PREFIX, __version__

if TYPE_CHECKING:
    from fastapi import FastAPI

    from invokeai_core import Invoker
    from invokeai_web.events import EventBridge
    from invokeai_web.settings import WebSettings

logger = logging.getLogger("invokeai.web")

STATIC_DIR = Path(__file__).parent / "static"
SOCKETIO_MOUNT = "/socket.io/"

DESCRIPTION = """\
The HTTP API of invokeai-core. Node types, their outputs and the Socket.IO events are schemas in
`components.schemas` (`AnyInvocation`, `InvocationOutputMap`, `Graph`, `ServerEvents`); live events
come over Socket.IO at `/socket.io/` (see `x-socketio`)."""


class ServerApp:
    """The ASGI app uvicorn runs, with handles on its parts."""

    def __init__(self, asgi: Any, api: FastAPI, sio: Any, bridge: EventBridge, invoker: Invoker) -> None:
        self.asgi = asgi
        self.api = api
        self.sio = sio
        self.bridge = bridge
        self.invoker = invoker

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.asgi(scope, receive, send)


def _ui_mount() -> Any:
    """The web UI's static files at `/`, for every path outside the API: a wrong method on an API
    route stays that route's 405 (with its own `Allow`), an unknown API path a JSON 404."""
    from starlette.routing import Match, Mount
    from starlette.staticfiles import StaticFiles

    class UiMount(Mount):
        def matches(self, scope: Any) -> tuple[Match, Any]:
            if str(scope.get("path", "")).startswith(API_PREFIX + "/"):
                return Match.NONE, {}
            result: tuple[Match, Any] = super().matches(scope)
            return result

    return UiMount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="ui")


def add_plugin_routes(app: FastAPI, invoker: Invoker) -> dict[str, str]:
    """Call every plugin's `register_routes(app)`, each on its own (`PluginHost.call_each`): a failure
    is logged and reported (`GET /api/v1/plugins`), and the server starts without that plugin's
    routes."""
    before: dict[str, int] = {}

    def prepare(name: str) -> dict[str, Any]:
        before[name] = len(app.router.routes)
        return {}

    def undo(name: str, _: BaseException) -> None:
        del app.router.routes[before[name] :]  # nothing half-registered

    errors = invoker.host.call_each("register_routes", {"app": app}, prepare=prepare, on_error=undo, mark_failed=False)
    return {name: f"{type(e).__name__}: {e}" for name, e in errors.items()}


def create_app(invoker: Invoker, settings: WebSettings, *, manage_invoker: bool = True) -> ServerApp:
    """The whole server app around `invoker`. With `manage_invoker` its lifespan starts and stops it."""
    import socketio
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool

    from invokeai_web.auth import Gate
    from invokeai_web.errors import COMMON_ERRORS, TextCheckMiddleware, error_responses, install_error_handlers
    from invokeai_web.events import EventBridge, LocalFanout
    from invokeai_web.openapi import install_openapi
    from invokeai_web.routers import auth, images, nodes, queue, sessions, system
    from invokeai_web.security import GuardMiddleware
    from invokeai_web.sockets import SOCKETIO_PATH, create_socket_server

    bridge = EventBridge(invoker.services.events)
    gate = Gate(
        settings.access_token, settings.auth_failures_per_minute, signouts=invoker.config.root / "web_signouts.json"
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_invoker:
            await run_in_threadpool(lambda: invoker.start(process_queue=settings.queue_processor))
        await bridge.start()
        try:
            yield
        finally:
            await bridge.stop()
            if manage_invoker:
                await run_in_threadpool(invoker.stop)

    api = FastAPI(
        title="invokeai-core",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=error_responses(COMMON_ERRORS),
        openapi_tags=[
            {"name": "sessions", "description": "Build sessions node by node and run them"},
            {"name": "queue", "description": "The session queue: batches, items, pause/resume"},
            {"name": "images", "description": "Upload, list and serve images"},
            {"name": "nodes", "description": "Node types and their schemas"},
            {"name": "app", "description": "Versions, configuration and plugins"},
        ],
    )
    api.state.invoker = invoker
    api.state.settings = settings
    api.state.bridge = bridge
    api.state.gate = gate
    api.state.api_prefix = API_PREFIX
    install_error_handlers(api)
    api.add_middleware(TextCheckMiddleware)
    for module in (sessions, queue, images, nodes, system, auth):
        api.include_router(module.router, prefix=API_PREFIX)
    api.state.route_errors = add_plugin_routes(api, invoker)
    install_openapi(api, lambda: invoker.registry, SOCKETIO_MOUNT)
    if STATIC_DIR.is_dir():  # the web UI, when built into the package
        api.router.routes.append(_ui_mount())

    sio = create_socket_server(settings, bridge, gate)
    bridge.fanout = LocalFanout(sio, backlog_limit=settings.client_backlog)
    asgi: Any = socketio.ASGIApp(sio, other_asgi_app=api, socketio_path=SOCKETIO_PATH)
    asgi = GuardMiddleware(asgi, settings, gate, socketio_path=SOCKETIO_MOUNT)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        asgi = CORSMiddleware(
            asgi,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            allow_credentials=False,
        )
    return ServerApp(asgi, api, sio, bridge, invoker)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free port); binding here lets the caller learn the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app: Any, *, log_level: str = "warning") -> Any:
    """A uvicorn server for `app` (not started)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=log_level == "debug",
        lifespan="on",
        timeout_graceful_shutdown=5,
        ws_max_size=2**20,
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def _stop_on_signals(server: Any) -> Any:
    """SIGINT/SIGTERM stop the server gracefully (a second Ctrl-C forces it), and then `serve` returns,
    so the Invoker stops cleanly too (uvicorn's own handling re-raises the signal afterwards)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True

    originals = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in originals.items():
            signal.signal(s, h)


def serve(
    invoker: Invoker,
    settings: WebSettings,
    *,
    log_level: str = "info",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the server until interrupted (Ctrl-C / SIGTERM), then stop the Invoker."""
    settings.check_bind()
    sock = bind_socket(settings.host, settings.port)
    app = create_app(invoker, settings)
    server = make_server(app, log_level="warning" if log_level == "info" else log_level)
    url = socket_url(sock)
    original_startup = server.startup

    async def startup(sockets: Any = None) -> None:
        await original_startup(sockets=sockets)
        if on_ready is not None and server.started:
            on_ready(url)

    server.startup = startup
    server.capture_signals = lambda: _stop_on_signals(server)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        invoker.stop()


class ServerThread:
    """Run the app with uvicorn on a background thread (tests, benchmarks, notebooks).

    with ServerThread(create_app(invoker, settings)) as url:
        httpx.get(url + "/api/v1/app/version")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning") -> None:
        import threading

        self.app = app
        self.host = host
        self.port = port
        self.server = make_server(app, log_level=log_level)
        self.url = ""
        self._thread: threading.Thread | None = None

    def __enter__(self) -> str:
        import threading
        import time

        sock = bind_socket(self.host, self.port)
        self.url = socket_url(sock)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="invokeai-web-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
