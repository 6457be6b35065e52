"""Graphs of invocations: nodes, edges, and every validation rule of DESIGN.md.

A `Graph` is append-only: nodes and edges are added, never changed or removed. Each addition is
validated before anything is mutated, so a rejected edge leaves the graph exactly as it was. Bulk
construction (`Graph.from_dict`) validates once at the end with a single topological sort, which
keeps 10,000-node graphs linear.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections import deque
from collections.abc import Iterator
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
    find_invalid_text,
    printable,
)
from invokeai_core.invocations.baseinvocation import BaseInvocation
from invokeai_core.invocations.fields import Input, field_extra
from invokeai_core.invocations.flow import COLLECT, ITERATE
from invokeai_core.registry import NodeRegistry
from invokeai_core.typecompat import are_types_compatible, is_list_type, list_element_type, type_name

#: The longest node id (ids are CLI arguments, event fields and database keys).
MAX_NODE_ID_LENGTH = 256


def node_limit(registry: NodeRegistry) -> int:
    """`limits.graph_nodes` of the configuration the registry parses against (else the default)."""
    config = (registry.validation_context or {}).get("config")
    if config is None:
        from invokeai_core.config import LimitsConfig

        return LimitsConfig().graph_nodes
    return int(config.limits.graph_nodes)


def _too_many_nodes(limit: int) -> str:
    return f"a graph may have at most limits.graph_nodes ({limit}) nodes"


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
    got = repr(err.get("input"))
    if len(got) > 200:  # a 40 MiB string must not come back whole in the error
        got = f"{got[:160]}... ({len(got)} characters)"
    return NodeFieldError(f"{err.get('msg', 'invalid value')} (got {got})", node_id, field)


class Graph:
    """Nodes keyed by id plus the edges between their fields."""

    def __init__(self, registry: NodeRegistry) -> None:
        if not isinstance(registry, NodeRegistry):
            raise TypeError(f"Graph() needs the NodeRegistry its nodes are parsed against, not {registry!r}")
        self.nodes: dict[str, BaseInvocation] = {}
        self.edges: list[Edge] = []
        #: The node types this graph's nodes are parsed against.
        self.registry = registry
        self._in: dict[tuple[str, str], list[Edge]] = {}
        self._in_by_node: dict[str, list[Edge]] = {}
        self._out_by_node: dict[str, list[Edge]] = {}
        self._collects = 0
        self._type_memo: dict[tuple[str, str], Any] | None = None
        self.version = 0  # bumped on every change; executors use it to know when to re-plan
        #: `compute_scopes`' answer for one version: validation and the session's plan share it.
        self._scopes: tuple[int, list[str], dict[str, tuple[str, ...]]] | None = None

    @property
    def _node_limit(self) -> int:
        return node_limit(self.registry)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls, data: Any, registry: NodeRegistry, *, validate: bool = True, require_inputs: bool = False
    ) -> Graph:
        """Parse and validate graph JSON (`{"nodes": {...}, "edges": [...]}`).

        With `require_inputs`, every required input must also be set or connected (a graph about to
        run); without it, inputs may still be waiting for edges (a graph being built).

        The cyclic garbage collector is paused while parsing: building tens of thousands of small
        models otherwise triggers repeated full collections that make parsing superlinear, and
        nothing created here forms reference cycles that need collecting.
        """
        with _gc_paused():
            return cls._from_dict(data, registry, validate=validate, require_inputs=require_inputs)

    @classmethod
    def _from_dict(cls, data: Any, registry: NodeRegistry, *, validate: bool, require_inputs: bool) -> Graph:
        graph = cls(registry)
        if not isinstance(data, dict):
            raise GraphError(f"a graph must be a JSON object with 'nodes' and 'edges', not {type(data).__name__}")
        from invokeai_core.graph_file import is_graph_file, upgrade_file

        if is_graph_file(data):  # a graph file with versions: checked against what is installed, migrated
            data = upgrade_file(data, registry)
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
        if len(items) > graph._node_limit:  # refused before any node is parsed
            raise GraphError(f"{_too_many_nodes(graph._node_limit)}; this one has {len(items)}")
        for key, raw in items:
            graph._add_node_unchecked(graph.parse_node(raw, key))
        edges = data.get("edges", [])
        if not isinstance(edges, list):
            raise GraphError("'edges' must be a list")
        parsed: list[Edge] = []
        for i, raw_edge in enumerate(edges):
            try:
                parsed.append(raw_edge if isinstance(raw_edge, Edge) else Edge.model_validate(raw_edge))
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(x) for x in err.get("loc", ()))
                raise EdgeError(f"edges[{i}] is malformed at '{where}': {err.get('msg')}") from None
        for edge in parsed:
            graph._check_structure(edge, check_cycle=False)
            graph._append_edge(edge)
        if validate:
            graph.validate(require_inputs=require_inputs)
        return graph

    @classmethod
    def from_json(cls, text: str, registry: NodeRegistry, *, require_inputs: bool = False) -> Graph:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise GraphError(f"the graph is not valid JSON: {e}") from None
        return cls.from_dict(data, registry, require_inputs=require_inputs)

    def parse_node(self, raw: Any, key: str | None = None) -> BaseInvocation:
        """Build a node from its JSON (or accept an existing node object)."""
        if isinstance(raw, BaseInvocation):
            node = raw
            if key is not None and node.id != key:
                raise NodeFieldError(f"the node's id '{node.id}' does not match its key '{key}'", key, "id")
            return node
        if not isinstance(raw, dict):
            raise GraphError(f"a node must be a JSON object, not {type(raw).__name__}", key)
        bad_text = find_invalid_text(raw) or find_invalid_text(key, ("id",))
        if bad_text is not None:  # nothing that cannot be stored and served enters a graph
            loc, reason = bad_text
            raise NodeFieldError(reason, printable(str(raw.get("id", key))), str(loc[0]) if loc else None)
        node_id = raw.get("id", key)
        if key is not None and node_id != key:
            raise NodeFieldError(f"the node's id '{node_id}' does not match its key '{key}'", key, "id")
        type_id = raw.get("type")
        if not isinstance(type_id, str):
            raise NodeFieldError("the node has no 'type'", node_id, "type")
        node_cls = self.registry.get(type_id, node_id)
        body = raw
        if raw.get("id") != node_id:
            body = {**raw, "id": node_id}  # the key names it (a node with neither gets a fresh uuid)
        # (`None` in a required input, the "not set yet" placeholder, is dropped by the node's own
        # before-validator, which also drops `type`: nothing else to copy here)
        try:
            return node_cls.model_validate(body, context=self.registry.validation_context)
        except ValidationError as e:
            raise _pydantic_error(e, str(node_id), node_cls) from None

    def copy(self) -> Graph:
        """A shallow copy (nodes are shared; they are never mutated)."""
        g = Graph(self.registry)
        g.nodes = dict(self.nodes)
        g.edges = list(self.edges)
        g._in = {k: list(v) for k, v in self._in.items()}
        g._in_by_node = {k: list(v) for k, v in self._in_by_node.items()}
        g._out_by_node = {k: list(v) for k, v in self._out_by_node.items()}
        g._collects = self._collects
        return g

    def with_values(self, values: dict[str, dict[str, Any]]) -> Graph:
        """A copy whose nodes have these input values (`{node_id: {field: value}}`) set; batches use
        it to make each session's graph before the graph is ever run."""
        g = self.copy()
        for node_id, fields in values.items():
            g.nodes[node_id] = g.get_node(node_id).model_copy(update=fields)
        g.version = self.version + 1
        return g

    @contextlib.contextmanager
    def memoized_types(self) -> Iterator[Graph]:
        """Infer each output type once inside the block (the graph must not change in it): loading
        many results of the same flow node asks for the same types again and again."""
        outer = self._type_memo
        if outer is None:
            self._type_memo = {}
        try:
            yield self
        finally:
            if outer is None:
                self._type_memo = None

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": {nid: node_json(n) for nid, n in self.nodes.items()},
            "edges": [e.model_dump(mode="json") for e in self.edges],
        }

    def to_json(self, **kwargs: Any) -> str:
        """`to_dict()` as JSON text. Without `json.dumps` options it is written by pydantic node by
        node (about 2.5x faster than building the dict: stores write whole graphs with it)."""
        if kwargs:
            return json.dumps(self.to_dict(), **kwargs)
        nodes = ", ".join(f"{json.dumps(nid)}: {node_json_text(n)}" for nid, n in self.nodes.items())
        edges = ", ".join(e.model_dump_json() for e in self.edges)
        return '{"nodes": {' + nodes + '}, "edges": [' + edges + "]}"

    def to_file_dict(self) -> dict[str, Any]:
        """The graph as a graph file: `to_dict()` plus `schema_version` and, per node, its type's
        version and the plugin and distribution that provided it (`node_versions`), so that a later
        load can migrate old nodes and name what to install (see `invokeai_core.graph_file`)."""
        from invokeai_core.graph_file import file_dict

        return file_dict(self)

    def to_file_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_file_dict(), indent=indent)

    @staticmethod
    def file_schema(registry: NodeRegistry | None = None) -> dict[str, Any]:
        """The JSON Schema of graph files (`invokeai schema graph`); with a registry, nodes are
        checked against the installed node types."""
        from invokeai_core.graph_file import file_schema

        return file_schema(registry)

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
        if len(node_id) > MAX_NODE_ID_LENGTH:
            raise NodeFieldError(
                f"a node id may have at most {MAX_NODE_ID_LENGTH} characters, not {len(node_id)}",
                node_id[:40] + "...",
                "id",
            )
        if not node_id.isprintable():
            raise NodeFieldError(
                "a node id may not contain control characters (NUL, newlines, ...)", repr(node_id), "id"
            )
        if len(self.nodes) >= self._node_limit:
            raise NodeFieldError(_too_many_nodes(self._node_limit), node_id, "id")
        if node_id in self.nodes:
            raise DuplicateNodeError("a node with this id is already in the graph", node_id, "id")
        self.nodes[node_id] = node
        if node.invocation_type == COLLECT:
            self._collects += 1
        self.version += 1

    def add_edge(self, edge: Edge | dict[str, Any]) -> Edge:
        """Validate and add an edge; nothing changes if it is refused."""
        edge = parse_edge(edge)
        self._check_structure(edge, check_cycle=True)
        self._append_edge(edge)
        try:
            self._check_edge_types(edge)
            self._recheck_downstream_types([edge])
            if self._collects:
                compute_scopes(self)
        except GraphError:
            self._pop_edge(edge)
            raise
        return edge

    def add_edges(self, edges: list[Edge] | list[dict[str, Any]]) -> list[Edge]:
        """Add many edges at once, all or nothing: each is checked on its own, then cycles, scopes and
        types are checked once over the whole graph (linear, unlike one `add_edge` after another)."""
        parsed = [parse_edge(e) for e in edges]
        n = len(self.edges)
        try:
            for edge in parsed:
                self._check_structure(edge, check_cycle=False)
                self._append_edge(edge)
            if parsed:
                self._check_all(self.edges[n:])
        except GraphError:
            while len(self.edges) > n:
                self._pop_edge(self.edges[-1])
            raise
        return parsed

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

    def auto_link_edges(self, source_id: str, node: BaseInvocation) -> list[Edge]:
        """Edges from `source_id`'s outputs into `node`'s unset, unconnected inputs of the same name
        and a compatible type (incompatible or direct-only inputs are skipped, never an error).
        `node` must be in the graph already; the edges are returned, not added."""
        edges = []
        src = self.nodes[source_id]
        inputs = type(node).input_fields()
        direct = _direct_only_inputs(type(node))
        for name in src.output_class.output_fields():
            if name not in inputs or name in direct:
                continue
            if name in node.model_fields_set or self.incoming_to(node.id, name):
                continue
            if node.invocation_type == COLLECT and name == "collection":
                continue  # a collect gathers items; a same-named list is not its prefix
            if are_types_compatible(self.output_type(source_id, name), self.input_type(node.id, name)):
                edges.append(Edge.between(source_id, name, node.id, name))
        return edges

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
        memo = self._type_memo
        if memo is not None:
            key = (node_id, field)
            if key not in memo:
                memo[key] = self._output_type(node_id, field)
            return memo[key]
        return self._output_type(node_id, field)

    def _output_type(self, node_id: str, field: str) -> Any:
        node = self.get_node(node_id)
        t = node.invocation_type
        if t == ITERATE:
            if field == "item":
                return list_element_type(self._collection_input_type(node_id))
            if field in _ITERATE_OUTPUTS:
                return _ITERATE_OUTPUTS[field]
        elif t == COLLECT and field == "collection":
            return list[self._collect_item_type(node_id)]  # type: ignore[misc]
        info = node.output_class.output_fields().get(field)
        if info is None:
            outputs = ", ".join(node.output_class.output_fields()) or "none"
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
            raise EdgeError(f"'{node.invocation_type}' has no input named '{field}' (inputs: {fields})", node_id, field)
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
    def _check_structure(self, edge: Edge, *, check_cycle: bool) -> None:
        """Everything about one edge except types: both ends exist, the fields exist, the input may
        take a connection and is not fed yet, and (optionally) the edge closes no cycle."""
        s, d = edge.source, edge.destination
        s_id, s_field, d_id, d_field = s.node_id, s.field, d.node_id, d.field
        nodes = self.nodes
        src_node = nodes.get(s_id)
        if src_node is None:
            raise NodeNotFoundError(f"edge {edge}: the source node does not exist", s_id, s_field)
        dst_node = nodes.get(d_id)
        if dst_node is None:
            raise NodeNotFoundError(f"edge {edge}: the destination node does not exist", d_id, d_field)
        if s_id == d_id:
            raise CycleError(f"edge {edge} connects the node to itself (graphs may not have cycles)", d_id, d_field)
        outputs = src_node.output_class.output_fields()
        if s_field not in outputs:
            names = ", ".join(outputs) or "none"
            raise EdgeError(
                f"'{src_node.invocation_type}' has no output named '{s_field}' (outputs: {names})", s_id, s_field
            )
        dst_cls = type(dst_node)
        inputs = dst_cls.input_fields()
        if d_field not in inputs:
            names = ", ".join(inputs) or "none"
            raise EdgeError(
                f"'{dst_node.invocation_type}' has no input named '{d_field}' (inputs: {names})", d_id, d_field
            )
        if d_field in _direct_only_inputs(dst_cls):
            raise EdgeError("this input takes only a direct value, not a connection", d_id, d_field)
        existing = self._in.get((d_id, d_field))
        if existing and not (d_field == "item" and dst_node.invocation_type == COLLECT):
            e = existing[0].source
            raise EdgeError(
                f"input is already connected (from node '{e.node_id}' field '{e.field}'); an input is fed once",
                d_id,
                d_field,
            )
        if check_cycle and self._reaches(d_id, s_id):
            raise CycleError(f"edge {edge} would create a cycle", d_id, d_field)

    def _check_edge_types(self, edge: Edge) -> None:
        """Check the types across an edge that is in the graph, with the types inferred now.

        A collect's item type is the type of its first item edge (or, without items, the element
        type of its `collection` input); every other item and the `collection` elements must fit it.
        """
        s, d = edge.source, edge.destination
        src_t = self.output_type(s.node_id, s.field)
        dst_type_id = self.nodes[d.node_id].invocation_type

        def mismatch(dst_t: Any, what: str = "") -> TypeMismatchError:
            return TypeMismatchError(
                f"type mismatch: output '{s.field}' of node '{s.node_id}' is {type_name(src_t)}, "
                f"input expects {type_name(dst_t)}{what}",
                d.node_id,
                d.field,
            )

        if dst_type_id == ITERATE and d.field == "collection":
            if not ((is_list_type(src_t) or _is_any(src_t)) and are_types_compatible(src_t, list[Any])):
                raise mismatch(list[Any], " (iterate needs a list)")
            return
        if dst_type_id == COLLECT:
            items = self.incoming_to(d.node_id, "item")
            coll = self.incoming_to(d.node_id, "collection")
            if d.field == "item":
                first = items[0]
                if first is not edge:
                    item_t = self.output_type(first.source.node_id, first.source.field)
                    if not are_types_compatible(src_t, item_t):
                        raise mismatch(item_t, " (every item of a collect has one type)")
                elif coll:
                    c = coll[0].source
                    elem = list_element_type(self.output_type(c.node_id, c.field))
                    if not are_types_compatible(elem, src_t):
                        raise TypeMismatchError(
                            f"type mismatch: the collect's collection input has {type_name(elem)} elements, "
                            f"which do not fit its items of type {type_name(src_t)} (output '{s.field}' of "
                            f"node '{s.node_id}')",
                            d.node_id,
                            d.field,
                        )
                return
            if not ((is_list_type(src_t) or _is_any(src_t)) and are_types_compatible(src_t, list[Any])):
                raise mismatch(list[Any])
            if items:
                first_src = items[0].source
                item_t = self.output_type(first_src.node_id, first_src.field)
                if not are_types_compatible(list_element_type(src_t), item_t):
                    raise mismatch(list[item_t])  # type: ignore[valid-type]
            return
        dst_t = self.input_type(d.node_id, d.field)
        if not are_types_compatible(src_t, dst_t):
            raise mismatch(dst_t)

    def _recheck_downstream_types(self, edges: list[Edge]) -> None:
        """Edges into flow nodes can change the types those (and the flow nodes after them) infer:
        re-check every edge leaving them."""
        seen: set[str] = set()
        stack: list[tuple[str, Edge]] = []
        for edge in edges:
            start = edge.destination.node_id
            if start not in seen and self.nodes[start].invocation_type in (ITERATE, COLLECT):
                seen.add(start)
                stack.append((start, edge))
        while stack:
            nid, cause = stack.pop()
            for e in self.outgoing(nid):
                try:
                    self._check_edge_types(e)
                except TypeMismatchError as err:
                    raise TypeMismatchError(
                        f"{err.reason} (the types flowing through '{cause.destination.node_id}' changed with "
                        f"the edge {cause})",
                        err.node_id,
                        err.field,
                    ) from None
                nxt = e.destination.node_id
                if nxt not in seen and self.nodes[nxt].invocation_type in (ITERATE, COLLECT):
                    seen.add(nxt)
                    stack.append((nxt, cause))

    def _check_all(self, edges: list[Edge] | None = None) -> None:
        """Cycles and iterate/collect scopes over the whole graph, then the types of `edges` (all
        edges by default) with the final inferred types."""
        compute_scopes(self)  # includes the topological sort (cycles)
        with self.memoized_types():
            for e in self.edges if edges is None else edges:
                self._check_edge_types(e)
            if edges is not None:
                # flow nodes fed by the new edges may infer new types for older edges after them
                self._recheck_downstream_types(edges)

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
            raise self._cycle_error(indeg)
        return order

    def _cycle_error(self, indeg: dict[str, int]) -> CycleError:
        """Name a node on a cycle and its input on that cycle. Every node left with in-degree > 0
        has a predecessor that is also left, so walking predecessors must come back to a node."""
        nid = next(n for n, d in indeg.items() if d > 0)
        seen: dict[str, Edge] = {}
        while nid not in seen:
            e = next(e for e in self.incoming(nid) if indeg[e.source.node_id] > 0)
            seen[nid] = e
            nid = e.source.node_id
        # `nid` is on the cycle; report it with the input through which the cycle enters it
        cycle = [nid]
        cur = seen[nid].source.node_id
        while cur != nid:
            cycle.append(cur)
            cur = seen[cur].source.node_id
        path = " <- ".join([*cycle, nid])
        field = seen[nid].destination.field
        return CycleError(f"the graph has a cycle ({path}); graphs may not have cycles", nid, field)

    def validate(self, *, require_inputs: bool = True) -> None:
        """Check every rule: acyclic, edge types, iterate/collect wiring, and (optionally) that every
        required input is set or connected."""
        self._check_all()
        if require_inputs:
            for nid in self.nodes:
                missing = self.missing_inputs(nid)
                if missing:
                    raise MissingInputError("required input is neither set nor connected", nid, missing[0])

    def missing_inputs(self, node_id: str) -> list[str]:
        node = self.nodes[node_id]
        missing = []
        for name in type(node).required_input_names:
            if (node_id, name) in self._in:
                continue
            if name in node.model_fields_set and getattr(node, name) is not None:
                continue
            missing.append(name)
        return missing


def _direct_only_inputs(cls: type[BaseInvocation]) -> frozenset[str]:
    """The inputs of a node class that take no connection, cached per class."""
    cached: frozenset[str] | None = cls.__dict__.get("_direct_only_cache")
    if cached is None:
        direct = Input.Direct.value
        cached = frozenset(k for k, v in cls.input_fields().items() if field_extra(v).get("input") == direct)
        type.__setattr__(cls, "_direct_only_cache", cached)
    return cached


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


def node_json(node: BaseInvocation) -> dict[str, Any]:
    """A node's JSON, leaving out required inputs that are not set (their `None` placeholder is not
    a valid value and would not parse back)."""
    data = node.model_dump(mode="json")
    for name in type(node).required_input_names:
        if data.get(name, 0) is None:
            del data[name]
    return data


def node_json_text(node: BaseInvocation) -> str:
    """`node_json(node)` as JSON text, written by pydantic in one pass."""
    unset = {name for name in type(node).required_input_names if getattr(node, name, 0) is None}
    return node.model_dump_json(exclude=unset) if unset else node.model_dump_json()


def parse_edge(edge: Edge | dict[str, Any]) -> Edge:
    """An `Edge` from an edge or its JSON; a malformed one is an `EdgeError`."""
    if isinstance(edge, Edge):
        return edge
    try:
        return Edge.model_validate(edge)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        raise EdgeError(f"malformed edge at '{where}': {err.get('msg')}") from None


def _is_any(tp: Any) -> bool:
    return tp is Any


def compute_scopes(graph: Graph) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """The topological order and each node's *output scope*: the iterate nodes it runs under.

    A regular node runs under the union of its inputs' scopes; an iterate adds itself; a collect
    removes the last (innermost) iterate of its items' scope. Scopes are ordered by topological
    position. Raises `IterateCollectError` for broken wiring: a collect whose items come from
    different scopes, or whose `collection` input comes from a scope its items are not in. The answer
    is kept for the graph's version: validating a graph and planning its session compute it once.
    """
    cached = graph._scopes
    if cached is not None and cached[0] == graph.version:
        return cached[1], cached[2]
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
    graph._scopes = (graph.version, order, scope)  # read-only for callers
    return order, scope
