"""Graph files that say what they need: the schema version, and per node the node type's version and
the plugin distribution (and its version) that provided it; node migrations; the JSON Schema.

A graph file is the JSON of a `Graph` (what the API accepts) plus two optional keys:

    {"schema_version": 2,
     "nodes": {...}, "edges": [...],
     "node_versions": {"sum": {"version": "1.0.0", "plugin": "nodes",
                               "distribution": "invokeai-nodes", "distribution_version": "0.1.0"}}}

* A file without `schema_version` is version 1 (every graph written before versions existed) and
  its nodes are taken to be at the installed versions: nothing is migrated, it loads as it did.
* A node whose recorded version is older than the installed node type's runs the migrations that
  plugins registered (`register_node_migrations`) for versions after it, up to the installed one,
  in version order; renamed inputs and outputs are renamed in the edges too.
* A node whose type is not installed is one error naming the distribution to install
  (`MissingPluginError`), instead of "unknown node type".
* A file of a newer schema version is refused rather than guessed at.
* `ui` holds an editor's own state (the web UI's node positions); the engine ignores it, so a
  workflow saved by the web UI runs with `invokeai run -f` as it is.

Parsing happens in `Graph.from_dict`, so every way in (`invokeai run -f`, `--from-image`, the API's
sessions and queue routes) reads both forms. Light to import (pydantic and packaging only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invokeai_core.errors import DuplicateRegistrationError, GraphError, MissingPluginError, RegistryError

if TYPE_CHECKING:
    from invokeai_core.graph import Graph
    from invokeai_core.registry import NodeRegistry

#: The graph file format this kernel writes (and the newest it reads).
GRAPH_SCHEMA_VERSION = 2
#: The keys a graph file may have at its top level.
FILE_KEYS = frozenset({"$schema", "id", "schema_version", "nodes", "edges", "node_versions", "ui"})
PROVENANCE_KEYS = ("version", "plugin", "distribution", "distribution_version")

NodeMigrate = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class NodeMigration:
    """Upgrades the JSON of a node of `node_type` saved at a version before `to_version` to it."""

    node_type: str
    to_version: str
    migrate: NodeMigrate
    plugin: str
    renamed_inputs: Mapping[str, str] = field(default_factory=dict)
    renamed_outputs: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> Any:
        return _version(self.to_version)


def _version(text: str) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        raise RegistryError(f"'{text}' is not a version (expected e.g. 1.1.0)") from None


def make_migration(
    plugin: str,
    node_type: str,
    to_version: str,
    migrate: NodeMigrate,
    *,
    renamed_inputs: Mapping[str, str] | None = None,
    renamed_outputs: Mapping[str, str] | None = None,
) -> NodeMigration:
    """A checked migration (a bad registration raises inside the plugin's hook, failing it)."""
    if not isinstance(node_type, str) or not node_type:
        raise RegistryError(f"plugin '{plugin}': a node migration needs a node type, got {node_type!r}")
    _version(str(to_version))
    if not callable(migrate):
        raise RegistryError(f"plugin '{plugin}': the migration of '{node_type}' to {to_version} is not callable")
    for what, names in (("renamed_inputs", renamed_inputs), ("renamed_outputs", renamed_outputs)):
        if names is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in names.items()):
            raise RegistryError(f"plugin '{plugin}': {what} of '{node_type}' must map old names to new names")
    return NodeMigration(
        node_type, str(to_version), migrate, plugin, dict(renamed_inputs or {}), dict(renamed_outputs or {})
    )


class NodeMigrations:
    """Registered node migrations, by node type, each attributed to its plugin."""

    def __init__(self) -> None:
        self._by_type: dict[str, list[NodeMigration]] = {}

    def check(self, m: NodeMigration) -> None:
        for other in self._by_type.get(m.node_type, []):
            if other.key == m.key and other is not m:
                raise DuplicateRegistrationError(
                    "node migration", f"{m.node_type} to {m.to_version}", other.plugin, m.plugin
                )

    def add(self, m: NodeMigration) -> None:
        self.check(m)
        steps = self._by_type.setdefault(m.node_type, [])
        steps.append(m)
        steps.sort(key=lambda s: s.key)

    def remove_plugin(self, plugin: str) -> None:
        self._by_type = {
            t: kept for t, steps in self._by_type.items() if (kept := [s for s in steps if s.plugin != plugin])
        }

    def steps(self, node_type: str, from_version: str, to_version: str) -> list[NodeMigration]:
        """The migrations a node saved at `from_version` runs to reach `to_version`, in order."""
        low, high = _version(from_version), _version(to_version)
        return [s for s in self._by_type.get(node_type, []) if low < s.key <= high]

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_type.values())


# -- reading -----------------------------------------------------------------------------------------
def is_graph_file(data: Mapping[str, Any]) -> bool:
    return any(key in data for key in ("schema_version", "node_versions", "$schema", "ui"))


def schema_version(data: Mapping[str, Any]) -> int:
    raw = data.get("schema_version", 1)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise GraphError(f"'schema_version' must be a positive integer, not {raw!r}")
    if raw > GRAPH_SCHEMA_VERSION:
        raise GraphError(
            f"the graph file has schema version {raw}, but this invokeai-core reads up to version "
            f"{GRAPH_SCHEMA_VERSION}: upgrade invokeai-core (`pip install -U invokeai-core`)"
        )
    return raw


def _provenances(data: Mapping[str, Any], node_ids: set[str]) -> dict[str, dict[str, str | None]]:
    raw = data.get("node_versions", {})
    if not isinstance(raw, dict):
        raise GraphError("'node_versions' must be an object keyed by node id")
    out: dict[str, dict[str, str | None]] = {}
    for node_id, info in raw.items():
        if node_id not in node_ids:
            raise GraphError(f"'node_versions' names node '{node_id}', which is not in 'nodes'")
        if not isinstance(info, dict) or not isinstance(info.get("version"), str):
            raise GraphError("'node_versions' entries must be objects with a 'version' string", node_id)
        unknown = set(info) - set(PROVENANCE_KEYS)
        if unknown:
            raise GraphError(
                f"unknown 'node_versions' key(s) {', '.join(sorted(unknown))} (expected {', '.join(PROVENANCE_KEYS)})",
                node_id,
            )
        for key in PROVENANCE_KEYS:
            if info.get(key) is not None and not isinstance(info[key], str):
                raise GraphError(f"'node_versions' key '{key}' must be a string", node_id)
        out[node_id] = {k: info.get(k) for k in PROVENANCE_KEYS}
    return out


def _installed(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def missing_plugin_error(node_id: str, node_type: str, info: Mapping[str, str | None]) -> MissingPluginError:
    dist, dist_version = info.get("distribution"), info.get("distribution_version")
    plugin = info.get("plugin")
    if dist is None:
        where = f"plugin '{plugin}'" if plugin else "a plugin"
        return MissingPluginError(
            f"node type '{node_type}' is not installed: the file was saved with {where} that provides it "
            "(see `invokeai plugins`)",
            node_id,
            node_type=node_type,
            plugin=plugin,
        )
    wanted = f"{dist}>={dist_version}" if dist_version else dist
    installed = _installed(dist)
    if installed is None:
        how = f"install it: invokeai plugins install '{wanted}'"
    else:
        how = (
            f"{dist} {installed} is installed but provides no '{node_type}' (its plugin failed or is disabled: "
            f"see `invokeai plugins`; or it is older: invokeai plugins install '{wanted}')"
        )
    return MissingPluginError(
        f"node type '{node_type}' needs the distribution {dist}"
        + (f" {dist_version}" if dist_version else "")
        + f", {how}",
        node_id,
        node_type=node_type,
        plugin=plugin,
        distribution=dist,
        distribution_version=dist_version,
    )


def upgrade_file(data: Mapping[str, Any], registry: NodeRegistry) -> dict[str, Any]:
    """The plain graph JSON of a graph file: node types checked against what is installed, nodes
    saved at older versions migrated, the file keys dropped. Raises `GraphError` (its subclass
    `MissingPluginError` for a node type that is not installed)."""
    unknown = set(data) - FILE_KEYS
    if unknown:
        raise GraphError(f"unknown graph key(s): {', '.join(sorted(unknown))} (expected 'nodes', 'edges')")
    version = schema_version(data)
    if "ui" in data and not isinstance(data["ui"], dict):
        raise GraphError(f"'ui' must be an object (an editor's state), not {type(data['ui']).__name__}")
    if "$schema" in data and not isinstance(data["$schema"], str):
        raise GraphError("'$schema' must be a string (the URL of the graph file schema)")
    nodes = data.get("nodes", {})
    edges = data.get("edges", [])
    plain = {k: v for k, v in data.items() if k in ("nodes", "edges", "id")}
    if "node_versions" not in data or not isinstance(nodes, dict | list):
        return plain
    if isinstance(nodes, list):
        items = [(n.get("id"), n) if isinstance(n, dict) else (None, n) for n in nodes]
    else:
        items = list(nodes.items())
    provenance = _provenances(data, {k for k, _ in items if isinstance(k, str)})
    if version < 2:
        return plain  # version 1 records no versions: nodes are taken to be at the installed ones
    renamed_in: dict[str, dict[str, str]] = {}
    renamed_out: dict[str, dict[str, str]] = {}
    new_items: list[tuple[Any, Any]] = []
    for node_id, raw in items:
        info = provenance.get(node_id) if isinstance(node_id, str) else None
        type_id = raw.get("type") if isinstance(raw, dict) else None
        if info is None or not isinstance(type_id, str):
            new_items.append((node_id, raw))
            continue
        if type_id not in registry:
            raise missing_plugin_error(str(node_id), type_id, info)
        new_items.append((node_id, _migrate(registry, str(node_id), raw, info, renamed_in, renamed_out)))
    out: dict[str, Any] = {k: v for k, v in data.items() if k in ("id",)}
    out["nodes"] = dict(new_items) if isinstance(nodes, dict) else [raw for _, raw in new_items]
    out["edges"] = _rename_edges(edges, renamed_in, renamed_out) if renamed_in or renamed_out else edges
    return out


def _migrate(
    registry: NodeRegistry,
    node_id: str,
    raw: dict[str, Any],
    info: Mapping[str, str | None],
    renamed_in: dict[str, dict[str, str]],
    renamed_out: dict[str, dict[str, str]],
) -> dict[str, Any]:
    type_id = raw["type"]
    saved = str(info["version"])
    installed = registry.get(type_id).invocation_meta.version
    try:
        older = _version(saved) < _version(installed)
    except RegistryError as e:
        raise GraphError(f"'node_versions': {e}", node_id, "version") from None
    if not older:
        return raw  # the same version, or a newer one (read as it is; a field it lacks is refused)
    node = dict(raw)
    for step in registry.migrations.steps(type_id, saved, installed):
        try:
            result = step.migrate(dict(node))
        except Exception as e:
            raise GraphError(
                f"the migration of '{type_id}' to version {step.to_version} (plugin '{step.plugin}') "
                f"raised {type(e).__name__}: {e}",
                node_id,
            ) from None
        if not isinstance(result, dict):
            raise GraphError(
                f"the migration of '{type_id}' to version {step.to_version} (plugin '{step.plugin}') "
                f"returned {type(result).__name__}, not the node's JSON object",
                node_id,
            )
        node = {**result, "id": raw.get("id", node_id), "type": type_id}
        for old, new in step.renamed_inputs.items():
            chain = renamed_in.setdefault(node_id, {})
            _chain_rename(chain, old, new)
        for old, new in step.renamed_outputs.items():
            chain = renamed_out.setdefault(node_id, {})
            _chain_rename(chain, old, new)
    return node


def _chain_rename(chain: dict[str, str], old: str, new: str) -> None:
    """Record `old -> new`, following earlier renames (a -> b then b -> c is a -> c)."""
    for k, v in list(chain.items()):
        if v == old:
            chain[k] = new
    chain.setdefault(old, new)


def _rename_edges(edges: Any, renamed_in: dict[str, dict[str, str]], renamed_out: dict[str, dict[str, str]]) -> Any:
    if not isinstance(edges, list):
        return edges
    out = []
    for edge in edges:
        try:
            src, dst = edge["source"], edge["destination"]
            s_field = renamed_out.get(src["node_id"], {}).get(src["field"], src["field"])
            d_field = renamed_in.get(dst["node_id"], {}).get(dst["field"], dst["field"])
            edge = {**edge, "source": {**src, "field": s_field}, "destination": {**dst, "field": d_field}}
        except (KeyError, TypeError):
            pass  # a malformed edge is refused, with its index, by the graph
        out.append(edge)
    return out


# -- writing ---------------------------------------------------------------------------------------
def provenance(registry: NodeRegistry, type_id: str) -> dict[str, str | None]:
    entry = registry.entry(type_id)
    return {
        "version": entry.cls.invocation_meta.version,
        "plugin": entry.plugin,
        "distribution": entry.dist,
        "distribution_version": entry.plugin_version if entry.dist else None,
    }


def file_dict(graph: Graph) -> dict[str, Any]:
    """The graph as a file (`Graph.to_file_dict`)."""
    data = graph.to_dict()
    cache: dict[str, dict[str, str | None]] = {}
    versions: dict[str, dict[str, str | None]] = {}
    for node_id, node in graph.nodes.items():
        type_id = node.invocation_type
        if type_id not in cache:
            cache[type_id] = {k: v for k, v in provenance(graph.registry, type_id).items() if v is not None}
        versions[node_id] = cache[type_id]
    return {"schema_version": GRAPH_SCHEMA_VERSION, **data, "node_versions": versions}


# -- the JSON Schema -------------------------------------------------------------------------------
SCHEMA_ID = "https://invokeai-core.dev/schemas/graph.schema.json"


def file_schema(registry: NodeRegistry | None = None, *, node_ref: str | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the graph file format.

    With a `registry`, each node is checked against its installed node type's schema (fields,
    types, limits), selected by `type`, and the node types are listed under `$defs`; without one
    (or for a type that is not installed), a node is any object with an `id` and a `type`. With
    `node_ref` (OpenAPI), nodes refer to that schema instead of carrying their own."""
    generic_node = {
        "type": "object",
        "description": "A node: its `type` (a node type id) and its input values",
        "required": ["type"],
        "properties": {
            "id": {"type": "string", "maxLength": 256},
            "type": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        },
    }
    defs: dict[str, Any] = {
        "EdgeConnection": {
            "type": "object",
            "additionalProperties": False,
            "required": ["node_id", "field"],
            "properties": {"node_id": {"type": "string"}, "field": {"type": "string"}},
        },
        "Edge": {
            "type": "object",
            "description": "From an output field of one node to an input field of another",
            "additionalProperties": False,
            "required": ["source", "destination"],
            "properties": {
                "source": {"$ref": "#/$defs/EdgeConnection"},
                "destination": {"$ref": "#/$defs/EdgeConnection"},
            },
        },
        "NodeVersion": {
            "type": "object",
            "description": "What provided a node when the file was saved",
            "additionalProperties": False,
            "required": ["version"],
            "properties": {
                "version": {"type": "string", "description": "The node type's version (`@invocation(version=)`)"},
                "plugin": {"type": "string", "description": "The plugin (entry-point name) that registered it"},
                "distribution": {"type": "string", "description": "The distribution to install to get it"},
                "distribution_version": {"type": "string", "description": "That distribution's version"},
            },
        },
        "Node": generic_node,
    }
    node_schema: dict[str, Any] = {"$ref": "#/$defs/Node"}
    if node_ref is not None:
        node_schema = {"$ref": node_ref}
    elif registry is not None:
        conditions = []
        for entry in registry.entries():
            type_id = entry.cls.invocation_type
            sch = entry.cls.model_json_schema(ref_template="#/$defs/" + type_id + "__{model}")
            for name, sub in sch.pop("$defs", {}).items():
                defs[f"{type_id}__{name}"] = sub
            # an input an edge feeds is not in the node's JSON: only `type` is required in a file
            sch["required"] = ["type"]
            defs[type_id] = sch
            conditions.append(
                {"if": {"properties": {"type": {"const": type_id}}}, "then": {"$ref": f"#/$defs/{type_id}"}}
            )
        node_schema = {"allOf": [{"$ref": "#/$defs/Node"}, *conditions]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "invokeai-core graph file",
        "description": (
            "A graph of nodes and edges, as `invokeai run -f` and the API read it and the web UI saves it. "
            f"A file without `schema_version` is version 1 (nodes at the installed versions); version "
            f"{GRAPH_SCHEMA_VERSION} records per node its type's version and the distribution that provided it."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "$schema": {"type": "string"},
            "id": {"description": "Ignored (graphs of the first release carried one)"},
            "schema_version": {"type": "integer", "minimum": 1, "maximum": GRAPH_SCHEMA_VERSION},
            "nodes": {
                "description": "Nodes keyed by node id (or a list of nodes with ids)",
                "type": ["object", "array"],
                "additionalProperties": node_schema,
                "propertyNames": {"maxLength": 256},
                "items": {"allOf": [node_schema, {"required": ["id"]}]},
            },
            "edges": {"type": "array", "items": {"$ref": "#/$defs/Edge"}},
            "node_versions": {
                "type": "object",
                "description": "Per node id, what provided the node when the file was saved",
                "additionalProperties": {"$ref": "#/$defs/NodeVersion"},
            },
            "ui": {
                "type": "object",
                "description": "Editor state (the web UI keeps node positions here); ignored by the engine",
            },
        },
        "$defs": defs,
    }
