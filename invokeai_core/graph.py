"""Graphs of invocations: nodes, edges, and every validation rule of DESIGN.md.

A `Graph` is append-only: nodes and edges are added, never changed or removed. Each addition is
validated before anything is mutated, so a rejected edge leaves the graph exactly as it was. Bulk
construction (`Graph.from_dict`) validates once at the end with a single topological sort, which
keeps 10,000-node graphs linear.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from invokeai_core.errors import (
    CycleError,
    DuplicateNodeError,
    EdgeError,
    GraphError,
    IterateCollectError,
    MissingInputError,
    NodeFieldError,
    NodeNotFoundError,
    TypeMismatchError,
)
from invokeai_core.invocations.baseinvocation import BaseInvocation
from invokeai_core.invocations.fields import Input, field_extra
from invokeai_core.invocations.flow import COLLECT, ITERATE
from invokeai_core.registry import NodeRegistry
from invokeai_core.typecompat import are_types_compatible, is_list_type, list_element_type, type_name

_ITERATE_OUTPUTS: dict[str, Any] = {"index": int, "total": int}


class EdgeConnection(BaseModel):
    """One end of an edge: a node id and a field name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node_id: str
    field: str


class Edge(BaseModel):
    """An edge from an output field to an input field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: EdgeConnection
    destination: EdgeConnection

    @classmethod
    def between(cls, source: str, source_field: str, destination: str, destination_field: str) -> Edge:
        return cls(
            source=EdgeConnection(node_id=source, field=source_field),
            destination=EdgeConnection(node_id=destination, field=destination_field),
        )

    def __str__(self) -> str:
        s, d = self.source, self.destination
        return f"{s.node_id}.{s.field} -> {d.node_id}.{d.field}"


def _pydantic_error(e: ValidationError, node_id: str, cls: type[BaseInvocation]) -> NodeFieldError:
    err = e.errors()[0]
    loc = [str(x) for x in err.get("loc", ())]
    field = loc[0] if loc else None
    if err.get("type") == "extra_forbidden":
        known = ", ".join(cls.input_fields()) or "none"
        return NodeFieldError(f"unknown field (fields of '{cls.invocation_type}': {known})", node_id, field)
    return NodeFieldError(f"{err.get('msg', 'invalid value')} (got {err.get('input')!r})", node_id, field)


def _get_default_registry() -> NodeRegistry:
    from invokeai_core.plugins.host import get_host

    return get_host().registry


class Graph:
    """Nodes keyed by id plus the edges between their fields."""

    def __init__(self, registry: NodeRegistry | None = None) -> None:
        self.nodes: dict[str, BaseInvocation] = {}
        self.edges: list[Edge] = []
        self._registry = registry
        self._in: dict[tuple[str, str], list[Edge]] = {}
        self._in_by_node: dict[str, list[Edge]] = {}
        self._out_by_node: dict[str, list[Edge]] = {}
        self._collects = 0
        self.version = 0  # bumped on every change; executors use it to know when to re-plan

    # -- construction -------------------------------------------------------------------------
    @property
    def registry(self) -> NodeRegistry:
        if self._registry is None:
            self._registry = _get_default_registry()
        return self._registry

    @classmethod
    def from_dict(cls, data: Any, registry: NodeRegistry | None = None, *, validate: bool = True) -> Graph:
        """Parse and validate graph JSON (`{"nodes": {...}, "edges": [...]}`)."""
        graph = cls(registry)
        if not isinstance(data, dict):
            raise GraphError(f"a graph must be a JSON object with 'nodes' and 'edges', not {type(data).__name__}")
        unknown = set(data) - {"nodes", "edges", "id"}
        if unknown:
            raise GraphError(f"unknown graph key(s): {', '.join(sorted(unknown))} (expected 'nodes', 'edges')")
        nodes = data.get("nodes", {})
        if isinstance(nodes, list):
            items = []
            for i, n in enumerate(nodes):
                if not isinstance(n, dict) or "id" not in n:
                    raise GraphError(f"nodes[{i}] must be an object with an 'id'")
                items.append((n["id"], n))
        elif isinstance(nodes, dict):
            items = list(nodes.items())
        else:
            raise GraphError("'nodes' must be an object keyed by node id (or a list of nodes)")
        for key, raw in items:
            graph._add_node_unchecked(graph.parse_node(raw, key))
        edges = data.get("edges", [])
        if not isinstance(edges, list):
            raise GraphError("'edges' must be a list")
        for i, raw_edge in enumerate(edges):
            try:
                edge = raw_edge if isinstance(raw_edge, Edge) else Edge.model_validate(raw_edge)
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(x) for x in err.get("loc", ()))
                raise EdgeError(f"edges[{i}] is malformed at '{where}': {err.get('msg')}") from None
            graph._check_edge(edge, check_cycle=False)
            graph._append_edge(edge)
        if validate:
            graph.validate(require_inputs=False)
        return graph

    @classmethod
    def from_json(cls, text: str, registry: NodeRegistry | None = None) -> Graph:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise GraphError(f"the graph is not valid JSON: {e}") from None
        return cls.from_dict(data, registry)

    def parse_node(self, raw: Any, key: str | None = None) -> BaseInvocation:
        """Build a node from its JSON (or accept an existing node object)."""
        if isinstance(raw, BaseInvocation):
            node = raw
            if key is not None and node.id != key:
                raise NodeFieldError(f"the node's id '{node.id}' does not match its key '{key}'", key, "id")
            return node
        if not isinstance(raw, dict):
            raise GraphError(f"a node must be a JSON object, not {type(raw).__name__}", key)
        node_id = raw.get("id", key)
        if key is not None and node_id != key:
            raise NodeFieldError(f"the node's id '{node_id}' does not match its key '{key}'", key, "id")
        type_id = raw.get("type")
        if not isinstance(type_id, str):
            raise NodeFieldError("the node has no 'type'", node_id, "type")
        node_cls = self.registry.get(type_id, node_id)
        body = dict(raw)
        body["id"] = node_id
        try:
            return node_cls.model_validate(body)
        except ValidationError as e:
            raise _pydantic_error(e, str(node_id), node_cls) from None

    def copy(self) -> Graph:
        """A shallow copy (nodes are shared; they are never mutated)."""
        g = Graph(self._registry)
        g.nodes = dict(self.nodes)
        g.edges = list(self.edges)
        g._in = {k: list(v) for k, v in self._in.items()}
        g._in_by_node = {k: list(v) for k, v in self._in_by_node.items()}
        g._out_by_node = {k: list(v) for k, v in self._out_by_node.items()}
        g._collects = self._collects
        return g

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": {nid: n.model_dump(mode="json") for nid, n in self.nodes.items()},
            "edges": [e.model_dump(mode="json") for e in self.edges],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    # -- mutation (append-only) ---------------------------------------------------------------
    def add_node(self, node: BaseInvocation | dict[str, Any]) -> BaseInvocation:
        """Add a node; its id must be new."""
        parsed = self.parse_node(node)
        self._add_node_unchecked(parsed)
        return parsed

    def _add_node_unchecked(self, node: BaseInvocation) -> None:
        node_id = node.id
        if not isinstance(node_id, str) or not node_id:
            raise NodeFieldError("a node id must be a non-empty string", str(node_id), "id")
        if "#" in node_id:
            raise NodeFieldError("a node id may not contain '#' (reserved for executed copies)", node_id, "id")
        if node_id in self.nodes:
            raise DuplicateNodeError("a node with this id is already in the graph", node_id, "id")
        self.nodes[node_id] = node
        if node.invocation_type == COLLECT:
            self._collects += 1
        self.version += 1

    def add_edge(self, edge: Edge | dict[str, Any]) -> Edge:
        """Validate and add an edge; nothing changes if it is refused."""
        if not isinstance(edge, Edge):
            try:
                edge = Edge.model_validate(edge)
            except ValidationError as e:
                raise EdgeError(f"malformed edge: {e.errors()[0].get('msg')}") from None
        self._check_edge(edge, check_cycle=True)
        self._append_edge(edge)
        if self._collects:
            try:
                compute_scopes(self)
            except GraphError:
                self._pop_edge(edge)
                raise
        return edge

    def _append_edge(self, edge: Edge) -> None:
        s, d = edge.source, edge.destination
        self.edges.append(edge)
        self._in.setdefault((d.node_id, d.field), []).append(edge)
        self._in_by_node.setdefault(d.node_id, []).append(edge)
        self._out_by_node.setdefault(s.node_id, []).append(edge)
        self.version += 1

    def _pop_edge(self, edge: Edge) -> None:
        s, d = edge.source, edge.destination
        self.edges.pop()
        self._in[(d.node_id, d.field)].pop()
        self._in_by_node[d.node_id].pop()
        self._out_by_node[s.node_id].pop()
        self.version += 1

    def transaction(self) -> _GraphTransaction:
        """`with graph.transaction():` rolls back every node and edge added in the block on error."""
        return _GraphTransaction(self)

    # -- queries ------------------------------------------------------------------------------
    def incoming(self, node_id: str) -> list[Edge]:
        return self._in_by_node.get(node_id, [])

    def outgoing(self, node_id: str) -> list[Edge]:
        return self._out_by_node.get(node_id, [])

    def incoming_to(self, node_id: str, field: str) -> list[Edge]:
        return self._in.get((node_id, field), [])

    def get_node(self, node_id: str) -> BaseInvocation:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise NodeNotFoundError("no such node in the graph", node_id) from None

    def output_type(self, node_id: str, field: str) -> Any:
        """The type of an output field, inferring what flows through iterate and collect."""
        node = self.get_node(node_id)
        t = node.invocation_type
        if t == ITERATE:
            if field == "item":
                return list_element_type(self._collection_input_type(node_id))
            if field in _ITERATE_OUTPUTS:
                return _ITERATE_OUTPUTS[field]
        elif t == COLLECT and field == "collection":
            return list[self._collect_item_type(node_id)]  # type: ignore[misc]
        info = node.output_class.model_fields.get(field)
        if info is None:
            outputs = ", ".join(node.output_class.model_fields) or "none"
            raise EdgeError(f"'{t}' has no output named '{field}' (outputs: {outputs})", node_id, field)
        return info.annotation

    def input_type(self, node_id: str, field: str) -> Any:
        node = self.get_node(node_id)
        if node.invocation_type == COLLECT:
            item_t = self._collect_item_type(node_id)
            if field == "item":
                return item_t
            if field == "collection":
                return list[item_t]  # type: ignore[valid-type]
        info = type(node).input_fields().get(field)
        if info is None:
            fields = ", ".join(type(node).input_fields()) or "none"
            raise EdgeError(
                f"'{node.invocation_type}' has no input named '{field}' (inputs: {fields})", node_id, field
            )
        return info.annotation

    def _collection_input_type(self, iterate_id: str) -> Any:
        edges = self.incoming_to(iterate_id, "collection")
        if not edges:
            return list[Any]
        s = edges[0].source
        return self.output_type(s.node_id, s.field)

    def _collect_item_type(self, collect_id: str) -> Any:
        items = self.incoming_to(collect_id, "item")
        if items:
            s = items[0].source
            return self.output_type(s.node_id, s.field)
        coll = self.incoming_to(collect_id, "collection")
        if coll:
            s = coll[0].source
            return list_element_type(self.output_type(s.node_id, s.field))
        return Any

    # -- validation ---------------------------------------------------------------------------
    def _check_edge(self, edge: Edge, *, check_cycle: bool) -> None:
        s, d = edge.source, edge.destination
        if s.node_id not in self.nodes:
            raise NodeNotFoundError(f"edge {edge}: the source node does not exist", s.node_id, s.field)
        if d.node_id not in self.nodes:
            raise NodeNotFoundError(f"edge {edge}: the destination node does not exist", d.node_id, d.field)
        if s.node_id == d.node_id:
            raise CycleError(f"edge {edge} connects the node to itself (graphs may not have cycles)", d.node_id, d.field)
        src_t = self.output_type(s.node_id, s.field)
        dst_node = self.nodes[d.node_id]
        dst_cls = type(dst_node)
        info = dst_cls.input_fields().get(d.field)
        if info is None:
            self.input_type(d.node_id, d.field)  # raises the "no input named" error
            raise AssertionError("unreachable")
        if field_extra(info).get("input") == Input.Direct.value:
            raise EdgeError("this input takes only a direct value, not a connection", d.node_id, d.field)
        dst_type_id = dst_node.invocation_type
        existing = self.incoming_to(d.node_id, d.field)
        if existing and not (dst_type_id == COLLECT and d.field == "item"):
            e = existing[0].source
            raise EdgeError(
                f"input is already connected (from node '{e.node_id}' field '{e.field}'); an input is fed once",
                d.node_id,
                d.field,
            )
        self._check_edge_types(edge, src_t, dst_type_id)
        if check_cycle and self._reaches(d.node_id, s.node_id):
            raise CycleError(f"edge {edge} would create a cycle", d.node_id, d.field)

    def _check_edge_types(self, edge: Edge, src_t: Any, dst_type_id: str) -> None:
        s, d = edge.source, edge.destination

        def mismatch(dst_t: Any, what: str = "") -> TypeMismatchError:
            return TypeMismatchError(
                f"type mismatch: output '{s.field}' of node '{s.node_id}' is {type_name(src_t)}, "
                f"input expects {type_name(dst_t)}{what}",
                d.node_id,
                d.field,
            )

        if dst_type_id == ITERATE and d.field == "collection":
            if not (are_types_compatible(src_t, list[Any]) and (is_list_type(src_t) or _is_any(src_t))):
                raise mismatch(list[Any], " (iterate needs a list)")
            self._check_iterate_consumers(d.node_id, list_element_type(src_t))
            return
        if dst_type_id == COLLECT:
            items = self.incoming_to(d.node_id, "item")
            if d.field == "item":
                if items:
                    first = items[0].source
                    item_t = self.output_type(first.node_id, first.field)
                    if not are_types_compatible(src_t, item_t):
                        raise mismatch(item_t, " (every item of a collect has one type)")
                else:
                    coll = self.incoming_to(d.node_id, "collection")
                    if coll:
                        c = coll[0].source
                        elem = list_element_type(self.output_type(c.node_id, c.field))
                        if not are_types_compatible(src_t, elem):
                            raise mismatch(elem, " (the collect's collection input has that element type)")
                    self._check_collect_consumers(d.node_id, src_t)
                return
            if d.field == "collection":
                if not (is_list_type(src_t) or _is_any(src_t)):
                    raise mismatch(list[Any])
                if items:
                    first = items[0].source
                    item_t = self.output_type(first.node_id, first.field)
                    if not are_types_compatible(list_element_type(src_t), item_t):
                        raise mismatch(list[item_t])  # type: ignore[valid-type]
                else:
                    self._check_collect_consumers(d.node_id, list_element_type(src_t))
                return
        dst_t = self.input_type(d.node_id, d.field)
        if not are_types_compatible(src_t, dst_t):
            raise mismatch(dst_t)

    def _check_iterate_consumers(self, iterate_id: str, item_t: Any) -> None:
        for e in self.outgoing(iterate_id):
            if e.source.field == "item":
                dst_t = self._consumer_type(e)
                if dst_t is not None and not are_types_compatible(item_t, dst_t):
                    raise TypeMismatchError(
                        f"iterate would produce {type_name(item_t)} items but its item output already feeds "
                        f"an input of type {type_name(dst_t)}",
                        e.destination.node_id,
                        e.destination.field,
                    )

    def _check_collect_consumers(self, collect_id: str, item_t: Any) -> None:
        for e in self.outgoing(collect_id):
            dst_t = self._consumer_type(e)
            if dst_t is not None and not are_types_compatible(list[item_t], dst_t):  # type: ignore[valid-type]
                raise TypeMismatchError(
                    f"collect would produce list[{type_name(item_t)}] but already feeds an input of type "
                    f"{type_name(dst_t)}",
                    e.destination.node_id,
                    e.destination.field,
                )

    def _consumer_type(self, e: Edge) -> Any:
        d = e.destination
        node = self.nodes[d.node_id]
        if node.invocation_type in (ITERATE, COLLECT):
            return None  # flow nodes re-check when their own types are known
        return self.input_type(d.node_id, d.field)

    def _reaches(self, start: str, target: str) -> bool:
        """Whether `target` is reachable from `start` following edges forward."""
        seen = {start}
        stack = [start]
        out = self._out_by_node
        while stack:
            n = stack.pop()
            if n == target:
                return True
            for e in out.get(n, ()):
                nxt = e.destination.node_id
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    def topological_order(self) -> list[str]:
        """Node ids in a topological order (ties kept in insertion order); raises `CycleError`."""
        indeg = {nid: 0 for nid in self.nodes}
        for e in self.edges:
            indeg[e.destination.node_id] += 1
        ready = deque(nid for nid, d in indeg.items() if d == 0)
        order: list[str] = []
        out = self._out_by_node
        while ready:
            n = ready.popleft()
            order.append(n)
            for e in out.get(n, ()):
                m = e.destination.node_id
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
        if len(order) != len(self.nodes):
            stuck = next(nid for nid, d in indeg.items() if d > 0)
            raise CycleError("the graph has a cycle through this node", stuck)
        return order

    def validate(self, *, require_inputs: bool = True) -> None:
        """Check every rule: acyclic, edge types, iterate/collect wiring, and (optionally) that every
        required input is set or connected."""
        compute_scopes(self)  # includes the topological sort (cycles)
        for nid in self.nodes:
            if self.nodes[nid].invocation_type == ITERATE:
                self._check_iterate_consumers(nid, list_element_type(self._collection_input_type(nid)))
            elif self.nodes[nid].invocation_type == COLLECT:
                self._check_collect_consumers(nid, self._collect_item_type(nid))
        if require_inputs:
            for nid, node in self.nodes.items():
                missing = self.missing_inputs(nid)
                if missing:
                    raise MissingInputError("required input is neither set nor connected", nid, missing[0])

    def missing_inputs(self, node_id: str) -> list[str]:
        node = self.nodes[node_id]
        missing = []
        for name in type(node).required_inputs():
            if (node_id, name) in self._in:
                continue
            if name in node.model_fields_set and getattr(node, name) is not None:
                continue
            missing.append(name)
        return missing


class _GraphTransaction:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def __enter__(self) -> Graph:
        self.n_nodes = len(self.graph.nodes)
        self.n_edges = len(self.graph.edges)
        return self.graph

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            return
        g = self.graph
        while len(g.edges) > self.n_edges:
            g._pop_edge(g.edges[-1])
        while len(g.nodes) > self.n_nodes:
            nid = next(reversed(g.nodes))
            node = g.nodes.pop(nid)
            if node.invocation_type == COLLECT:
                g._collects -= 1
        g.version += 1


def _is_any(tp: Any) -> bool:
    return tp is Any


def compute_scopes(graph: Graph) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """The topological order and each node's *output scope*: the iterate nodes it runs under.

    A regular node runs under the union of its inputs' scopes; an iterate adds itself; a collect
    removes the last (innermost) iterate of its items' scope. Scopes are ordered by topological
    position. Raises `IterateCollectError` for broken wiring: a collect whose items come from
    different scopes, or whose `collection` input comes from a scope its items are not in.
    """
    order = graph.topological_order()
    pos = {nid: i for i, nid in enumerate(order)}
    scope: dict[str, tuple[str, ...]] = {}
    empty: tuple[str, ...] = ()
    for nid in order:
        node = graph.nodes[nid]
        incoming = graph.incoming(nid)
        t = node.invocation_type
        if t == COLLECT:
            item_scopes = {scope[e.source.node_id] for e in incoming if e.destination.field == "item"}
            if len(item_scopes) > 1:
                raise IterateCollectError(
                    "the items of a collect must all come from the same iteration scope", nid, "item"
                )
            item_scope = next(iter(item_scopes)) if item_scopes else empty
            out_scope = item_scope[:-1]
            for e in incoming:
                if e.destination.field == "collection":
                    cs = scope[e.source.node_id]
                    if not set(cs) <= set(out_scope):
                        raise IterateCollectError(
                            "the collection input of a collect must come from outside the iteration it gathers",
                            nid,
                            "collection",
                        )
            scope[nid] = out_scope
            continue
        if not incoming:
            s: tuple[str, ...] = empty
        elif len(incoming) == 1:
            s = scope[incoming[0].source.node_id]
        else:
            members: set[str] = set()
            for e in incoming:
                members.update(scope[e.source.node_id])
            s = tuple(sorted(members, key=pos.__getitem__))
        if t == ITERATE:
            s = (*s, nid)
        scope[nid] = s
    return order, scope
