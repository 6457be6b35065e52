"""Graph files: what the web UI's workflow editor saves and opens (`invokeai run -f` reads the same).

A graph file is a `Graph` plus `schema_version` and `node_versions` (per node: its type's version and
the plugin distribution that provided it). `POST /graphs/file` stamps a graph with what is installed
here; `POST /graphs/load` reads a file back: node types checked against the installed plugins (a
missing one is 422 with the distribution to install), nodes saved at older versions migrated by the
plugins' `register_node_migrations`; `GET /graphs/schema` is the file format's JSON Schema (the one
`invokeai schema graph` prints).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, Field

from invokeai_core import Graph
from invokeai_web.dependencies import InvokerDep, rendered
from invokeai_web.openapi import COMPONENTS, GRAPH_REF, schema_ref

router = APIRouter(prefix="/graphs", tags=["graphs"])

GRAPH_FILE_REF = COMPONENTS + "GraphFile"
GraphJson = Annotated[dict[str, Any], schema_ref(GRAPH_REF)]
GraphFileJson = Annotated[dict[str, Any], schema_ref(GRAPH_FILE_REF)]


class NodeVersionChange(BaseModel):
    node_id: str
    node_type: str
    saved: str = Field(description="The node type's version when the file was saved")
    installed: str = Field(description="The installed node type's version (the migrations between ran)")


class LoadedGraph(BaseModel):
    graph: GraphJson = Field(description="The graph at the installed node versions, ready to run or edit")
    changed: list[NodeVersionChange] = Field(description="Nodes saved at another version than the installed one")
    schema_version: int = Field(description="The file's schema version (1 for files without one)")


@router.get("/schema", response_model=dict[str, Any], summary="The JSON Schema of graph files")
def graph_file_schema(invoker: InvokerDep) -> Response:
    """JSON Schema (draft 2020-12) of graph files, with each installed node type's fields."""
    return rendered(Graph.file_schema(invoker.registry))


@router.post("/file", response_model=GraphFileJson, summary="A graph as a versioned graph file")
def graph_file(invoker: InvokerDep, graph: Annotated[GraphJson, Body()]) -> Response:
    """The graph with `schema_version` and, per node, its type's version and the plugin distribution
    installed here that provides it: what a saved workflow file holds."""
    return rendered(Graph.from_dict(graph, invoker.registry).to_file_dict())


@router.post("/load", response_model=LoadedGraph, summary="Read a graph file")
def load_graph_file(invoker: InvokerDep, file: Annotated[GraphFileJson, Body()]) -> Response:
    """Check a saved graph file against what is installed and bring it to the installed node versions.
    A node type no loaded plugin provides is 422 (`MissingPluginError`, with `node_type`,
    `distribution` and `distribution_version`); a file that does not record versions (schema 1)
    loads as it is."""
    graph = Graph.from_dict(file, invoker.registry)
    changed = []
    raw = file.get("node_versions")
    version = file.get("schema_version", 1)
    versions: dict[str, Any] = raw if isinstance(raw, dict) and version >= 2 else {}
    for node_id, info in versions.items():
        node = graph.nodes[node_id]
        installed = node.invocation_meta.version
        if info.get("version") != installed:
            changed.append(
                {
                    "node_id": node_id,
                    "node_type": node.invocation_type,
                    "saved": info["version"],
                    "installed": installed,
                }
            )
    return rendered({"graph": graph.to_dict(), "changed": changed, "schema_version": version})
