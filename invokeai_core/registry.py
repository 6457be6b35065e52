"""The registry of node types and output types, each attributed to the plugin that registered it.

Registration happens through the `register_invocations(register)` hook; nothing registers itself at
import time, so a node module that is imported but not registered by a loaded plugin is invisible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from invokeai_core.errors import DuplicateRegistrationError, RegistryError, UnknownNodeTypeError
from invokeai_core.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput


@dataclass(frozen=True)
class NodeEntry:
    """A registered node type and where it came from."""

    cls: type[BaseInvocation]
    plugin: str
    plugin_version: str
    #: The distribution that installed the plugin (None for plugins registered at run time).
    dist: str | None = None


@dataclass(frozen=True)
class OutputEntry:
    cls: type[BaseInvocationOutput]
    plugin: str


class NodeRegistry:
    """Node types by type id, output types by type id."""

    def __init__(self, validation_context: Mapping[str, Any] | None = None) -> None:
        self._nodes: dict[str, NodeEntry] = {}
        self._outputs: dict[str, OutputEntry] = {}
        #: Passed to pydantic as `context` whenever a node of this registry is parsed from JSON, so
        #: a node's validators can read `info.context["config"]` (the host's configuration: limits,
        #: plugin settings) without any process-wide lookup.
        self.validation_context: Mapping[str, Any] | None = validation_context
        from invokeai_core.graph_file import NodeMigrations

        #: Node migrations (`register_node_migrations`), run when a graph file is read.
        self.migrations = NodeMigrations()

    # -- registration -------------------------------------------------------------------------
    def check(self, cls: type[BaseInvocation], plugin: str) -> None:
        """Raise if `cls` cannot be registered for `plugin` (not a node, or a duplicate type id)."""
        if not (isinstance(cls, type) and issubclass(cls, BaseInvocation)) or "invocation_type" not in cls.__dict__:
            raise RegistryError(
                f"plugin '{plugin}' registered {cls!r}, which is not a class decorated with @invocation"
            )
        existing = self._nodes.get(cls.invocation_type)
        if existing is not None and existing.cls is not cls:
            raise DuplicateRegistrationError("node type", cls.invocation_type, existing.plugin, plugin)
        out = cls.output_class
        existing_out = self._outputs.get(out.output_type)
        if existing_out is not None and existing_out.cls is not out:
            raise DuplicateRegistrationError("output type", out.output_type, existing_out.plugin, plugin)

    def add(self, cls: type[BaseInvocation], plugin: str, plugin_version: str = "0", dist: str | None = None) -> None:
        """Register a node class (and its output class) for a plugin."""
        self.check(cls, plugin)
        self._nodes[cls.invocation_type] = NodeEntry(cls, plugin, plugin_version, dist)
        out = cls.output_class
        self._outputs.setdefault(out.output_type, OutputEntry(out, plugin))

    def remove_plugin(self, plugin: str) -> None:
        """Roll back everything a plugin registered."""
        self._nodes = {k: v for k, v in self._nodes.items() if v.plugin != plugin}
        self._outputs = {k: v for k, v in self._outputs.items() if v.plugin != plugin}
        self.migrations.remove_plugin(plugin)

    # -- lookups ------------------------------------------------------------------------------
    def get(self, type_id: str, node_id: str | None = None) -> type[BaseInvocation]:
        entry = self._nodes.get(type_id)
        if entry is None:
            raise UnknownNodeTypeError(
                f"unknown node type '{type_id}' (is the plugin that provides it installed? "
                "see `invokeai nodes` and `invokeai plugins`)",
                node_id,
                "type",
            )
        return entry.cls

    def entry(self, type_id: str) -> NodeEntry:
        self.get(type_id)
        return self._nodes[type_id]

    def get_output(self, type_id: str) -> type[BaseInvocationOutput]:
        entry = self._outputs.get(type_id)
        if entry is None:
            raise RegistryError(f"unknown output type '{type_id}'")
        return entry.cls

    def __contains__(self, type_id: object) -> bool:
        return type_id in self._nodes

    def types(self) -> list[str]:
        return sorted(self._nodes)

    def entries(self) -> list[NodeEntry]:
        return [self._nodes[k] for k in sorted(self._nodes)]

    def by_plugin(self, plugin: str) -> list[str]:
        return sorted(k for k, v in self._nodes.items() if v.plugin == plugin)

    def output_entries(self) -> list[OutputEntry]:
        return [self._outputs[k] for k in sorted(self._outputs)]

    # -- schemas ------------------------------------------------------------------------------
    def node_schema(self, type_id: str) -> dict[str, Any]:
        """The node's JSON schema with its metadata, plugin and output schema."""
        entry = self.entry(type_id)
        schema = entry.cls.model_json_schema()
        schema["plugin"] = entry.plugin
        schema["plugin_version"] = entry.plugin_version
        schema["distribution"] = entry.dist
        out = entry.cls.output_class
        schema["output"] = out.model_json_schema()
        return schema
