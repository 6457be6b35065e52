"""Batches: one graph expanded into many sessions by substituting field values.

`data` is a list of *groups*; each group is a list of `BatchDatum(node_path, field_name, items)` whose
item lists are zipped (so they must have equal lengths). Groups are combined as a cartesian
product, and the whole is repeated `runs` times.

Order (documented, stable): runs outermost; then the product of the groups in the order given, the
*last* group varying fastest (like nested for-loops, `itertools.product`); within a group, the
zipped index.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from invokeai_core.errors import BatchError, GraphError
from invokeai_core.graph import Graph
from invokeai_core.registry import NodeRegistry


class BatchDatum(BaseModel):
    """Values to substitute into one node's field, one per session."""

    model_config = ConfigDict(extra="forbid")

    node_path: str = Field(description="The node id in the graph")
    field_name: str = Field(description="The input field to set")
    items: list[Any] = Field(description="One value per expanded session")


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    graph: dict[str, Any] = Field(description="The graph JSON to expand")
    data: list[list[BatchDatum]] = Field(default_factory=list, description="Zipped groups, combined as a product")
    runs: int = Field(default=1, ge=1, description="How many times to repeat the whole expansion")
    priority: int = Field(
        default=0, ge=-(2**31), le=2**31 - 1, description="Queue priority (higher runs first), a 32-bit integer"
    )

    def count(self) -> int:
        """How many sessions `expand` yields, without building them."""
        sizes = [len(group[0].items) if group else 1 for group in self.data]
        return self.runs * math.prod(sizes)

    def validated(self, registry: NodeRegistry) -> tuple[Graph, list[list[tuple[str, str, list[Any]]]]]:
        """Parse the graph and check every datum; returns the graph and the converted values."""
        try:
            graph = Graph.from_dict(self.graph, registry)
            graph.validate(require_inputs=False)
        except GraphError as e:
            raise BatchError(f"the graph is invalid: {e}", e.node_id, e.field) from None
        seen: set[tuple[str, str]] = set()
        groups: list[list[tuple[str, str, list[Any]]]] = []
        for gi, group in enumerate(self.data):
            if not group:
                raise BatchError(f"group {gi} is empty")
            length = len(group[0].items)
            converted_group = []
            for datum in group:
                node_id, field = datum.node_path, datum.field_name
                if len(datum.items) != length:
                    raise BatchError(
                        f"group {gi} is ragged: its data must have equal lengths ({length} vs {len(datum.items)})",
                        node_id,
                        field,
                    )
                if not datum.items:
                    raise BatchError("items must not be empty", node_id, field)
                if (node_id, field) in seen:
                    raise BatchError("this field is targeted twice", node_id, field)
                seen.add((node_id, field))
                node = graph.nodes.get(node_id)
                if node is None:
                    raise BatchError("no such node in the graph", node_id, field)
                info = type(node).input_fields().get(field)
                if info is None:
                    raise BatchError(f"'{node.invocation_type}' has no input named '{field}'", node_id, field)
                if graph.incoming_to(node_id, field):
                    raise BatchError("this field is fed by an edge; a batch cannot also set it", node_id, field)
                kinds = {type(v) for v in datum.items}
                if len(kinds) > 1:
                    names = ", ".join(sorted(k.__name__ for k in kinds))
                    raise BatchError(f"items mix types ({names}); use one type per datum", node_id, field)
                # the field's constraints (ge=, max_length= ...) count too: they live in its metadata
                annotation: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
                adapter: TypeAdapter[Any] = TypeAdapter(annotation)
                values = []
                for i, v in enumerate(datum.items):
                    try:
                        values.append(adapter.validate_python(v))
                    except ValidationError as e:
                        msg = e.errors()[0].get("msg", "invalid value")
                        raise BatchError(f"items[{i}] = {v!r} is invalid: {msg}", node_id, field) from None
                converted_group.append((node_id, field, values))
            groups.append(converted_group)
        return graph, groups

    def expand(self, registry: NodeRegistry) -> Iterator[tuple[str, Graph, list[dict[str, Any]]]]:
        """Yield `(session_id, graph, field_values)` for each session, in the documented order."""
        graph, groups = self.validated(registry)
        ranges = [range(len(g[0][2])) for g in groups]
        for _ in range(self.runs):
            for combo in itertools.product(*ranges):
                updates: dict[str, dict[str, Any]] = {}
                values: list[dict[str, Any]] = []
                for group, index in zip(groups, combo, strict=True):
                    for node_id, field, items in group:
                        value = items[index]
                        updates.setdefault(node_id, {})[field] = value
                        values.append({"node_path": node_id, "field_name": field, "value": _jsonable(value)})
                yield uuid.uuid4().hex, graph.with_values(updates), values


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value
