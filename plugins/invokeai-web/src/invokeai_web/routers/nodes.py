"""Node types: every registered node with its JSON schema and UI metadata."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from invokeai_web.dependencies import InvokerDep

router = APIRouter(prefix="/nodes", tags=["nodes"])


class NodeInfo(BaseModel):
    type: str = Field(description="The node type id (the graph's `type`, the CLI command, the schema name)")
    title: str
    description: str
    category: str
    tags: list[str]
    version: str
    cacheable: bool
    plugin: str = Field(description="The plugin that registered it")
    plugin_version: str
    output_type: str
    node_schema: dict[str, Any] = Field(
        alias="schema",
        description="The node's JSON schema: fields with their `ui_*` hints, `input` kind, defaults and limits, "
        "plus `output` (the output's schema)",
    )


def _info(invoker: Any, type_id: str) -> dict[str, Any]:
    entry = invoker.registry.entry(type_id)
    meta = entry.cls.invocation_meta
    return {
        "type": type_id,
        "title": meta.title,
        "description": meta.description,
        "category": meta.category,
        "tags": list(meta.tags),
        "version": meta.version,
        "cacheable": meta.cacheable,
        "plugin": entry.plugin,
        "plugin_version": entry.plugin_version,
        "output_type": entry.cls.output_class.output_type,
        "schema": invoker.registry.node_schema(type_id),
    }


@router.get("", response_model=list[NodeInfo], response_model_by_alias=True, summary="List node types")
def list_nodes(invoker: InvokerDep) -> list[dict[str, Any]]:
    return [_info(invoker, t) for t in invoker.registry.types()]


@router.get("/{node_type}", response_model=NodeInfo, response_model_by_alias=True, summary="Get a node type")
def get_node(invoker: InvokerDep, node_type: Annotated[str, Path(max_length=200)]) -> dict[str, Any]:
    if node_type not in invoker.registry:
        raise HTTPException(404, f"unknown node type '{node_type}' (see GET /api/v1/nodes)")
    return _info(invoker, node_type)
