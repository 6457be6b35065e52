"""The server: builds the FastAPI app and the Socket.IO server on one ASGI app, and runs it.

    guard (token, host, origin, body size)  [CORS outside it when origins are configured]
      -> socketio.ASGIApp: /socket.io/ -> Socket.IO (rooms per session and queue)
                           everything else -> FastAPI: /api/v1/..., /openapi.json, /docs, /redoc
                                                       (assets under /docs-assets), / (static UI)

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

    from invokeai_core import EventServiceBase, Invoker
    from invokeai_web.events import EventBridge
    from invokeai_web.settings import WebSettings

logger = logging.getLogger("invokeai.web")

STATIC_DIR = Path(__file__).parent / "static"
#: What `/` answers when the web UI is not built into the package.
UI_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>invokeai-core: the web UI is not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The web UI is not built</h1>
<p>This server answers the HTTP API at <a href="/api/v1/app/version">/api/v1</a> (documented at
<a href="/docs">/docs</a>) and live events on Socket.IO, but the browser UI was not built into the
<code>invokeai-web</code> package.</p>
<p>Build it from a source checkout (needs Node.js and npm), then restart <code>invokeai serve</code>:</p>
<pre>./scripts/setup.sh
# or only the UI:
cd plugins/invokeai-web/frontend &amp;&amp; npm ci &amp;&amp; npm run build</pre>
</body></html>
"""
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
    from invokeai_web.docs import install_docs
    from invokeai_web.errors import COMMON_ERRORS, TextCheckMiddleware, error_responses, install_error_handlers
    from invokeai_web.events import EventBridge, LocalFanout
    from invokeai_web.openapi import install_openapi
    from invokeai_web.routers import (
        auth,
        graphs,
        images,
        nodes,
        plugin_install,
        queue,
        sessions,
        system,
        workflows,
    )
    from invokeai_web.security import GuardMiddleware
    from invokeai_web.sockets import SOCKETIO_PATH, create_socket_server
    from invokeai_web.webhooks import WebhookService

    bridge = EventBridge(invoker.services.events)
    gate = Gate(
        settings.access_token, settings.auth_failures_per_minute, signouts=invoker.config.root / "web_signouts.json"
    )

    webhooks = WebhookService(invoker, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        webhooks.start()  # before the processor: no finished item goes unnoticed
        if manage_invoker:
            await run_in_threadpool(lambda: invoker.start(process_queue=settings.queue_processor))
        await bridge.start()
        try:
            yield
        finally:
            await bridge.stop()
            webhooks.stop()
            if manage_invoker:
                await run_in_threadpool(invoker.stop)

    api = FastAPI(
        title="invokeai-core",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by invokeai_web.docs, with local assets
        redoc_url=None,
        responses=error_responses(COMMON_ERRORS),
        openapi_tags=[
            {"name": "sessions", "description": "Build sessions node by node and run them"},
            {"name": "queue", "description": "The session queue: batches, items, pause/resume"},
            {"name": "workflows", "description": "The workflow library: save in versions, run with inputs"},
            {"name": "images", "description": "Upload, list and serve images"},
            {"name": "nodes", "description": "Node types and their schemas"},
            {"name": "graphs", "description": "Graph files: versioned saves, loading with migrations, the JSON Schema"},
            {"name": "app", "description": "Versions, configuration and plugins"},
        ],
    )
    api.state.invoker = invoker
    api.state.settings = settings
    api.state.bridge = bridge
    api.state.gate = gate
    api.state.webhooks = webhooks
    api.state.api_prefix = API_PREFIX
    install_error_handlers(api)
    api.add_middleware(TextCheckMiddleware)
    for module in (sessions, queue, workflows, images, nodes, graphs, system, plugin_install, auth):
        api.include_router(module.router, prefix=API_PREFIX)
    api.state.route_errors = add_plugin_routes(api, invoker)
    install_openapi(api, lambda: invoker.registry, SOCKETIO_MOUNT)
    install_docs(api, api.title)
    if (STATIC_DIR / "index.html").is_file():  # the web UI, when built into the package
        api.router.routes.append(_ui_mount())
    else:
        from fastapi.responses import HTMLResponse

        @api.get("/", include_in_schema=False)
        def ui_not_built() -> HTMLResponse:
            return HTMLResponse(UI_NOT_BUILT)

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


def make_server(
    app: Any, *, log_level: str = "warning", access_log: bool | None = None, own_logging: bool = False
) -> Any:
    """A uvicorn server for `app` (not started). Access lines by default only at debug; with
    `own_logging` uvicorn installs no handlers of its own (`configure_logging` does)."""
    import uvicorn

    kwargs: dict[str, Any] = {"log_config": None} if own_logging else {}
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=log_level == "debug" if access_log is None else access_log,
        lifespan="on",
        timeout_graceful_shutdown=5,
        ws_max_size=2**20,
        **kwargs,
    )
    return uvicorn.Server(config)


def configure_logging(log_level: str) -> None:
    """`invokeai serve`'s log on stderr, one format for the server's and uvicorn's records: at info an
    access line per request, a line per session start and finish, and the shutdown; uvicorn's own
    start-up chatter only at debug."""
    level = getattr(logging, log_level.upper())
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.invokeai_serve = True  # type: ignore[attr-defined]  # replaced, not doubled, by a second call
    for name in ("invokeai", "uvicorn"):
        target = logging.getLogger(name)
        target.handlers = [h for h in target.handlers if not getattr(h, "invokeai_serve", False)]
        target.addHandler(handler)
        target.setLevel(level)
        target.propagate = False
    logging.getLogger("uvicorn.error").setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    logging.getLogger("uvicorn.access").setLevel(level)


def log_sessions(events: EventServiceBase) -> Callable[[], None]:
    """Log one line when a session starts and one when it finishes (its status and how long it ran)."""
    started: dict[str | None, float] = {}

    def on_event(event: Any) -> None:
        queued = f" (queue {event.queue_id}, item {event.item_id})" if event.item_id is not None else ""
        if event.event_name == "session_started":
            started[event.session_id] = event.timestamp
            logger.info("session %s started%s", event.session_id, queued)
            return
        t0 = started.pop(event.session_id, None)
        took = f" in {event.timestamp - t0:.2f} s" if t0 is not None else ""
        logger.info("session %s %s%s%s", event.session_id, event.status, took, queued)

    return events.subscribe(on_event, names=["session_started", "session_complete"])


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
    server = make_server(app, log_level=log_level, access_log=log_level in ("debug", "info"), own_logging=True)
    configure_logging(log_level)
    unsubscribe = log_sessions(invoker.services.events)
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
        logger.info("shutting down: stopping the queue processor and the services")
        invoker.stop()
        unsubscribe()
        logger.info("stopped serving %s", url)


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

        from invokeai_core import ConfigError
        from invokeai_web.settings import WebSettings, is_loopback

        settings = getattr(getattr(getattr(self.app, "api", None), "state", None), "settings", None)
        if isinstance(settings, WebSettings):
            settings.check_bind(self.host)
        elif not is_loopback(self.host):
            raise ConfigError(f"refusing to bind {self.host}: ServerThread serves apps of create_app() off loopback")
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
