"""Entry point of the plugin (group `invokeai.plugins`, name `nodes`).

Keep this module light: it is imported whenever the CLI starts. Node modules are imported inside
`register_invocations`, which runs only when the node registry is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from invokeai_core import hookimpl


@hookimpl
def register_invocations(register: Callable[[Any], None]) -> None:
    from invokeai_nodes import collections, math, primitives

    for module in (primitives, math, collections):
        for cls in module.NODES:
            register(cls)
