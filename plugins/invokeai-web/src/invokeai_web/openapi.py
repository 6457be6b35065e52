"""The OpenAPI schema, enriched so that a typed client can be generated from it.

FastAPI describes the routes. `enrich` adds, under `components.schemas`:

* every registered **node type** as a schema named by its type id (`add`, `txt2img`, ...), and every
  **output type** by its output type id (`integer_output`, ...): fields with their descriptions,
  limits, defaults, `input` kind and `ui_*` hints, and the node's metadata (`title`, `tags`,
  `category`, `version`, `node_kind`, `output_type`);
* `AnyInvocation` / `AnyInvocationOutput`: the unions of them, discriminated by `type`;
* `InvocationOutputMap`: an object whose property for each node type is that node's output schema;
* `Graph` (nodes are `AnyInvocation`, edges are `Edge`), which the sessions and queue routes take;
* **errors**: every operation declares the statuses it can answer, each with `ErrorResponse`
  (`detail`: a message or a list of located problems with the node id and field): the common ones
  on every route (`invokeai_web.errors.COMMON_ERRORS`), 404 on every route with a path parameter,
  409 on the sessions and queue routes, and each route's own (415 for uploads, ...);
* every **event** (`InvocationStartedEvent`, ...) with its name as the `event` constant, and
  `ServerEvents`, an object mapping each Socket.IO event name to its schema; the top-level
  `x-socketio` extension names the endpoint and the events a client emits.

Node types can change while the server runs (plugins registered by tests, notebooks), so the schema is
rebuilt whenever the set of registered types changes. Light to import (pydantic only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import WithJsonSchema

if TYPE_CHECKING:
    from fastapi import FastAPI

    from invokeai_core import NodeRegistry

COMPONENTS = "#/components/schemas/"
GRAPH_REF = COMPONENTS + "Graph"
ANY_INVOCATION_REF = COMPONENTS + "AnyInvocation"
ANY_OUTPUT_REF = COMPONENTS + "AnyInvocationOutput"
EDGE_REF = COMPONENTS + "Edge"

#: What a client emits to the server on Socket.IO, and the argument it takes.
CLIENT_EVENTS = {
    "subscribe_session": {"session_id": "string"},
    "unsubscribe_session": {"session_id": "string"},
    "subscribe_queue": {"queue_id": "string"},
    "unsubscribe_queue": {"queue_id": "string"},
}


def schema_ref(ref: str) -> WithJsonSchema:
    """Describe a field (kept as plain JSON in Python) by a component of the enriched schema.

    (`allOf` around the `$ref`: pydantic resolves a bare `$ref` among its own definitions.)"""
    return WithJsonSchema({"allOf": [{"$ref": ref}]})


def _rewrite_refs(value: Any, rename: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(COMPONENTS):
                name = v[len(COMPONENTS) :]
                out[k] = COMPONENTS + rename.get(name, name)
            else:
                out[k] = _rewrite_refs(v, rename)
        return out
    if isinstance(value, list):
        return [_rewrite_refs(v, rename) for v in value]
    return value


def _union(refs: dict[str, str], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "oneOf": [{"$ref": r} for r in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": dict(refs)},
    }


def enrich(schema: dict[str, Any], registry: NodeRegistry, socketio_path: str = "/socket.io/") -> dict[str, Any]:
    """Add the node, output, graph and event schemas (see the module docstring) to `schema`."""
    from collections import Counter

    from pydantic.json_schema import models_json_schema

    from invokeai_core import ALL_EVENTS, Edge

    nodes = registry.entries()
    outputs = registry.output_entries()
    models: list[tuple[Any, Any]] = [(e.cls, "validation") for e in nodes]
    models += [(o.cls, "validation") for o in outputs]
    models += [(ev, "serialization") for ev in ALL_EVENTS]
    models.append((Edge, "validation"))
    keymap, top = models_json_schema(models, ref_template=COMPONENTS + "{model}")
    defs: dict[str, Any] = top.get("$defs", {})

    def name_of(cls: Any, mode: Any) -> str:
        ref: str = keymap[(cls, mode)]["$ref"]
        return ref[len(COMPONENTS) :]

    rename: dict[str, str] = {}
    node_refs: dict[str, str] = {}
    for e in nodes:
        rename[name_of(e.cls, "validation")] = e.cls.invocation_type
        node_refs[e.cls.invocation_type] = COMPONENTS + e.cls.invocation_type
    taken = set(node_refs)
    output_refs: dict[str, str] = {}
    output_name: dict[Any, str] = {}
    for o in outputs:
        wanted = o.cls.output_type
        old = name_of(o.cls, "validation")
        new = wanted if wanted not in taken else old  # a node type of the same name keeps the id
        rename[old] = new
        taken.add(new)
        output_refs[wanted] = COMPONENTS + new
        output_name[o.cls] = new
    defs = {rename.get(k, k): _rewrite_refs(v, rename) for k, v in defs.items()}

    event_refs: dict[str, str] = {}
    for ev in ALL_EVENTS:
        name = name_of(ev, "serialization")
        sch = defs[name]
        sch["properties"] = {"event": {"const": ev.event_name, "title": "Event"}, **sch.get("properties", {})}
        sch["required"] = ["event", *sch.get("required", [])]
        sch["x-event-name"] = ev.event_name
        event_refs[ev.event_name] = COMPONENTS + name

    components: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, sch in defs.items():
        components.setdefault(name, sch)
    for type_id in node_refs:  # node and output schemas always win over same-named route models
        components[type_id] = defs[type_id]
    for name in output_name.values():
        components[name] = defs[name]

    # class names of generated clients come from titles: two output classes of the same name (from
    # two plugins) are told apart by their component names
    titles = Counter(sch.get("title") for sch in components.values() if isinstance(sch, dict))
    for name, sch in components.items():
        if isinstance(sch, dict) and sch.get("title") and titles[sch["title"]] > 1:
            sch["title"] = name
    components["AnyInvocation"] = _union(node_refs, "Any registered node, by its `type`")
    components["AnyInvocationOutput"] = _union(output_refs, "Any registered node output, by its `type`")
    output_of = {e.cls.invocation_type: COMPONENTS + output_name[e.cls.output_class] for e in nodes}
    components["InvocationOutputMap"] = {
        "type": "object",
        "description": "For each node type, the schema of its output",
        "properties": {t: {"$ref": r} for t, r in output_of.items()},
        "required": list(output_of),
    }
    components["Graph"] = {
        "title": "Graph",
        "type": "object",
        "description": "Nodes keyed by node id (each with its `type`) and the edges between them",
        "additionalProperties": False,
        "properties": {
            "id": {"description": "Ignored (graphs of the first release carried one)"},
            "nodes": {"type": "object", "additionalProperties": {"$ref": ANY_INVOCATION_REF}, "default": {}},
            "edges": {"type": "array", "items": {"$ref": COMPONENTS + name_of(Edge, "validation")}, "default": []},
        },
    }
    # the graph file format (what the workflow editor saves, `invokeai run -f` reads): the same
    # description the kernel publishes (`invokeai schema graph`), its nodes as `AnyInvocation`
    from invokeai_core import Graph

    file_schema = Graph.file_schema(None)
    components["NodeVersion"] = file_schema["$defs"]["NodeVersion"]
    components["GraphFile"] = {
        "title": "GraphFile",
        "type": "object",
        "description": file_schema["description"],
        "additionalProperties": False,
        "properties": {
            "$schema": {"type": "string"},
            **components["Graph"]["properties"],
            "schema_version": file_schema["properties"]["schema_version"],
            "node_versions": {
                "type": "object",
                "description": file_schema["properties"]["node_versions"]["description"],
                "additionalProperties": {"$ref": COMPONENTS + "NodeVersion"},
            },
            "ui": file_schema["properties"]["ui"],
        },
    }
    components["ServerEvents"] = {
        "type": "object",
        "description": "Socket.IO events the server sends, by event name",
        "properties": {n: {"$ref": r} for n, r in event_refs.items()},
    }
    schema["x-socketio"] = {
        "path": socketio_path,
        "client_events": CLIENT_EVENTS,
        "server_events": {n: {"$ref": r} for n, r in event_refs.items()},
        "rooms": "a client receives the events of the sessions and queues it subscribed to",
    }
    return schema


ERROR_REF = COMPONENTS + "ErrorResponse"


def declare_errors(schema: dict[str, Any], not_found: str) -> dict[str, Any]:
    """404 on every operation with a path parameter, `ErrorResponse` as the body of every error
    answer that does not name one (routes of plugins that declare a status without a model), and
    `format: binary` on uploaded files."""
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "{" in path:
                responses.setdefault("404", {"description": not_found})
            for status, response in responses.items():
                if status[:1] in "45" and "content" not in response:
                    response["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}
    # uploaded files as OpenAPI's `format: binary` too, which client generators read as a file
    for component in schema.get("components", {}).get("schemas", {}).values():
        for prop in component.get("properties", {}).values():
            if prop.get("contentMediaType") == "application/octet-stream":
                prop.setdefault("format", "binary")
    return schema


def install_openapi(app: FastAPI, registry: Any, socketio_path: str = "/socket.io/") -> None:
    """Serve the enriched schema at `/openapi.json`, rebuilt when the registered types change."""
    from fastapi.openapi.utils import get_openapi

    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        reg = registry() if callable(registry) else registry
        key = (tuple(reg.types()), tuple(o.cls.output_type for o in reg.output_entries()))
        if cache.get("key") != key:
            base = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            from invokeai_web.errors import NOT_FOUND

            cache["schema"] = enrich(declare_errors(base, NOT_FOUND), reg, socketio_path)
            cache["key"] = key
        schema: dict[str, Any] = cache["schema"]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
