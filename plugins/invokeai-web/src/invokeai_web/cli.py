"""`invokeai serve`: run the HTTP API and Socket.IO server. Light to import (click only)."""

from __future__ import annotations

import sys
from typing import Any

import click


class _BadInput(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"invokeai: error: {self.format_message()}", err=True)


@click.command("serve")
@click.option("--host", default=None, help="Bind address [plugins.web.host; default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="TCP port, 0 for a free one [plugins.web.port; default 9090].")
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="A browser origin allowed to call the API (repeatable) [plugins.web.cors_origins].",
)
@click.option("--max-upload-mb", type=float, default=None, help="The largest request body [plugins.web.max_upload_mb].")
@click.option(
    "--queue-processor/--no-queue-processor",
    default=None,
    help="Run queued sessions in this process [plugins.web.queue_processor; default on].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Server log level.",
)
@click.pass_context
def serve_command(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    cors_origins: tuple[str, ...],
    max_upload_mb: float | None,
    queue_processor: bool | None,
    log_level: str,
) -> None:
    """Serve the HTTP API (/api/v1, /docs) and live events (Socket.IO) on 127.0.0.1:9090.

    Binding another address needs an access token (plugins.web.access_token, e.g. the environment
    variable INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN): every request must then carry
    `Authorization: Bearer TOKEN`, and the web UI asks for the token once (a sign-in cookie). The
    token is not a command-line flag, so it never shows in the process list.
    """
    from invokeai_core import CliState, InvokeAIError

    state = ctx.find_object(CliState)
    if state is None:  # pragma: no cover - always set by `invokeai`
        raise _BadInput("invokeai serve must run under the invokeai command")
    from invokeai_web.settings import load_web_settings

    overrides = {
        "host": host,
        "port": port,
        "cors_origins": list(cors_origins) or None,
        "max_upload_mb": max_upload_mb,
        "queue_processor": queue_processor,
    }
    try:
        settings = load_web_settings(state.config, overrides)
        settings.check_bind()
    except InvokeAIError as e:
        raise _BadInput(str(e)) from None

    from invokeai_web.app import serve

    invoker = state.invoker()
    try:
        invoker.start(process_queue=settings.queue_processor)
    except InvokeAIError as e:
        invoker.stop()
        raise _BadInput(f"cannot start: {e}") from None

    def ready(url: str) -> None:
        from invokeai_web.app import STATIC_DIR

        ui = f"web UI: {url}/" if (STATIC_DIR / "index.html").is_file() else "web UI not built"
        click.echo(f"invokeai-web: serving on {url} ({ui}, API docs: {url}/docs and {url}/redoc)", err=False)
        sys.stdout.flush()

    try:
        serve(invoker, settings, log_level=log_level, on_ready=ready)
    except OSError as e:
        invoker.stop()
        raise _BadInput(f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e}") from None
