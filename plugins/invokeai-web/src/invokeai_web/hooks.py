"""Entry point of invokeai-web (group `invokeai.plugins`, name `web`).

Deliberately light: click only. FastAPI, Socket.IO and uvicorn are imported when `invokeai serve`
runs, never when the plugin loads (`invokeai --help`, `nodes` and `plugins` stay fast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from invokeai_core import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def register_hookspecs(add: Callable[[Any], None]) -> None:
    from invokeai_web import hookspecs

    add(hookspecs)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from invokeai_web.cli import serve_command

    cli.add_command(serve_command)
