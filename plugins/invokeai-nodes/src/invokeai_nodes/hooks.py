"""Entry point of the plugin (group `invokeai.plugins`, name `nodes`).

Keep this module light: it is imported whenever the CLI starts. Node modules are imported inside
`register_invocations`, which runs only when the node registry is needed; they in turn import
Pillow and dynamicprompts only inside `invoke()`, so even listing every node stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from invokeai_core import hookimpl

#: The node modules, in the order their nodes are listed.
NODE_MODULES = (
    "primitives",
    "image_primitives",
    "math",
    "strings",
    "collections",
    "images",
    "image_filters",
    "image_channels",
    "image_files",
)


@hookimpl
def register_invocations(register: Callable[[Any], None]) -> None:
    for name in NODE_MODULES:
        module = importlib.import_module(f"invokeai_nodes.{name}")
        for cls in module.NODES:
            register(cls)
