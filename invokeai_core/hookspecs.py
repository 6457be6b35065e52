"""The hooks a plugin implements (entry-point group `invokeai.plugins`).

A plugin is any importable object (usually a module) whose functions are marked with
`@invokeai_core.hookimpl` and named after these specs. Hooks are called lazily, each plugin's
implementation on its own inside try/except, so one broken plugin is reported and rolled back
without taking the host down. Keep plugin modules light: import node modules and heavy libraries
inside the hook bodies (or deeper), never at module import time.

Every spec below lists its exact signature; `docs/plugins.md` repeats each one and a test checks
that it does. The host calls each implementation on its own, in pluggy's order (`tryfirst`, then the
most recently registered plugin first, `trylast`); `wrapper=True` / `hookwrapper=True` are refused at
load time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from invokeai_core.invocations.baseinvocation import BaseInvocation
    from invokeai_core.invoker import Invoker

PROJECT_NAME = "invokeai"
ENTRY_POINT_GROUP = "invokeai.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class ServiceRegistrar(Protocol):
    """The `register` callable passed to `register_services`."""

    def __call__(
        self,
        kind: str,
        name: str,
        path: str,
        *,
        description: str = "",
        install_hint: str | None = None,
        default: bool = False,
    ) -> None: ...


class NodeMigrationRegistrar(Protocol):
    """The `register` callable passed to `register_node_migrations`."""

    def __call__(
        self,
        node_type: str,
        to_version: str,
        migrate: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        renamed_inputs: Mapping[str, str] | None = None,
        renamed_outputs: Mapping[str, str] | None = None,
    ) -> None: ...


@hookspec
def register_invocations(register: Callable[[type[BaseInvocation]], None]) -> None:
    """Register node classes: call `register(InvocationClass)` for each.

    Called once, when the node registry is first needed (not when the CLI shows `--help`). Import
    your node modules inside this function. A node type id registered by two plugins is an error
    naming both; the later plugin is marked failed and all its registrations are rolled back.
    """


@hookspec
def register_node_migrations(register: NodeMigrationRegistrar) -> None:
    """Register how graph files saved with older versions of your node types are upgraded.

    `register(node_type, to_version, migrate, renamed_inputs=None, renamed_outputs=None)`:
    `migrate(node_json) -> node_json` turns the JSON of a `node_type` node saved at a version before
    `to_version` into its JSON at `to_version`. Loading a graph file whose `node_versions` say a node
    was saved at an older version than the installed one runs every migration after it, up to the
    installed version, in version order; `renamed_inputs` / `renamed_outputs` (`{"old": "new"}`)
    rename the fields in the file's edges too. Called when the node registry is built, after
    `register_invocations`. Two plugins registering the same (node type, version) is an error naming
    both; the later plugin fails.
    """


@hookspec
def register_services(register: ServiceRegistrar) -> None:
    """Register service implementations by dotted path, fsspec-style.

    `register(kind, name, "module:Class", description=..., install_hint=..., default=False)`.
    `kind` is one of images, image_records, objects, sessions, queue, events, cache, or a new kind
    of your own (looked up by nodes with `context.services.get(kind_or_abc)`). The class is imported
    only if configuration selects `name` for `kind` (or `default=True` and nothing is selected), and
    is constructed as `Class(config, runtime=ServiceRuntime(...))` when its `__init__` takes a
    `runtime` keyword (else `Class(config)`). `install_hint` is shown when importing it fails.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the `invokeai` CLI: `cli.add_command(my_command)`.

    Called when the CLI starts, so keep command modules light: import heavy libraries inside the
    command functions.
    """


@hookspec
def register_hookspecs(add: Callable[[Any], None]) -> None:
    """Add hookspecs of your own so other plugins can implement them: `add(module_or_class)`.

    The web plugin uses it for `register_routes(app)`. Called after every plugin is registered and
    before unknown hook names are checked.
    """


@hookspec
def startup(invoker: Invoker) -> None:
    """Called when an Invoker starts, after its services are built: open resources here."""


@hookspec
def shutdown(invoker: Invoker) -> None:
    """Called when an Invoker stops: close what `startup` opened."""
