"""The hookspec this plugin adds (through the kernel's `register_hookspecs`): `register_routes(app)`.

Light on purpose (pluggy only): the CLI loads it on every start.
"""

from __future__ import annotations

from typing import Any

from invokeai_core import hookspec


@hookspec
def register_routes(app: Any) -> None:
    """Add HTTP routes to the API server: `app.include_router(router, prefix=app.state.api_prefix)`.

    `app` is the `fastapi.FastAPI` application, called once when `invokeai serve` builds it. Routes
    reach the Invoker through `request.app.state.invoker` (and its services through
    `invoker.services.get(kind)`). Put them under `app.state.api_prefix` (`/api/v1`) and use a tag
    of your own; they are covered by the server's access-token and size rules and appear in its
    OpenAPI schema. Import FastAPI inside the hook body, never at module import time, and mark the
    implementation `@hookimpl(optionalhook=True)` so your plugin still loads without invokeai-web.
    A hook that raises is logged and skipped; the server starts without that plugin's routes.
    """
