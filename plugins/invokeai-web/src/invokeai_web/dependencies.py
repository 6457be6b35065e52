"""What the API is built on: the configuration, the plugin host, the Invoker, and how routes reach them.

`build_invoker` makes the services and the Invoker from configuration (the same way every
application does, so a misconfiguration fails before the server listens). Routes get the Invoker
through the `InvokerDep` dependency, which reads `app.state.invoker`; plugins' routes
(`register_routes`) use `request.app.state.invoker` the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request, Response
from pydantic_core import to_json

from invokeai_core import Invoker
from invokeai_web.settings import WebSettings

if TYPE_CHECKING:
    from invokeai_core import InvokeAIConfig, PluginHost
    from invokeai_web.events import EventBridge


def build_invoker(config: InvokeAIConfig | None = None, host: PluginHost | None = None) -> Invoker:
    """The Invoker with the configured services (built eagerly, so errors surface now)."""
    return Invoker.from_config(config, host)


def get_invoker(request: Request) -> Invoker:
    invoker: Invoker = request.app.state.invoker
    return invoker


def get_settings(request: Request) -> WebSettings:
    settings: WebSettings = request.app.state.settings
    return settings


def get_bridge(request: Request) -> EventBridge:
    bridge: EventBridge = request.app.state.bridge
    return bridge


def rendered(data: Any, status_code: int = 200) -> Response:
    """`data` as a JSON response, encoded by the calling (worker) thread.

    FastAPI encodes what a route returns on the event loop, where a large session or graph would
    stall every other client (Socket.IO included); routes that may answer with a lot of JSON return
    this instead (their `response_model` still documents the shape)."""
    return Response(to_json(data), status_code=status_code, media_type="application/json")


InvokerDep = Annotated[Invoker, Depends(get_invoker)]
SettingsDep = Annotated[WebSettings, Depends(get_settings)]
