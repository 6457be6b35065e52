"""Sessions: a graph plus its execution state, and the scheduler that decides what runs next.

Execution model
---------------
Each node of the graph runs as one or more *prepared copies*. A node outside any iteration runs once
(its prepared id is its node id). A node downstream of an `iterate` runs once per item; its copies
are keyed by an *assignment*, one index per enclosing iterate (prepared id `node#i` or `node#i.j`).
Scopes come from `graph.compute_scopes`.

Scheduling is event-driven and linear in the number of executed copies: when a copy completes, only
its consumers are examined, and collects count arrivals instead of re-scanning. Nothing of this
transient state is serialised: a session is plain JSON (graph, results, errors, history) and the
scheduler state is rebuilt by replaying the history, which is how a session resumes after a JSON
round trip, a restart, or a move to another worker.
"""

from __future__ import annotations

import datetime as _dt
import json
import traceback as _tb
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError

from invokeai_core.errors import DuplicateNodeError, GraphError, MissingInputError, NodeFieldError, SessionError
from invokeai_core.graph import Edge, Graph, compute_scopes, parse_edge
from invokeai_core.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput
from invokeai_core.invocations.fields import Input, field_extra
from invokeai_core.invocations.flow import COLLECT, ITERATE
from invokeai_core.registry import NodeRegistry
from invokeai_core.typecompat import are_types_compatible, strip_annotated

Key = tuple[str, tuple[int, ...]]
SessionStatus = Literal["pending", "running", "completed", "failed", "canceled"]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def prepared_id(key: Key) -> str:
    """`node` for a node outside iterations, `node#i.j` for a copy under iterates."""
    source, assignment = key
    if not assignment:
        return source
    return source + "#" + ".".join(map(str, assignment))


def parse_prepared_id(pid: str) -> Key:
    source, sep, rest = pid.partition("#")
    if not sep:
        return source, ()
    return source, tuple(int(x) for x in rest.split("."))


class NodeError(BaseModel):
    """A node's failure, as recorded in the session and emitted as `invocation_error`."""

    node_id: str
    source_node_id: str
    type: str
    message: str
    traceback: str

    @classmethod
    def from_exception(cls, pid: str, exc: BaseException) -> NodeError:
        source, _ = parse_prepared_id(pid)
        return cls(
            node_id=pid,
            source_node_id=source,
            type=type(exc).__name__,
            message=str(exc),
            traceback="".join(_tb.format_exception(type(exc), exc, exc.__traceback__)),
        )


class PrepareError(Exception):
    """Filling a node copy's inputs failed; the runner records `error` as that copy's node error."""

    def __init__(self, key: Key, error: BaseException) -> None:
        self.key = key
        self.prepared_id = prepared_id(key)
        self.error = error
        super().__init__(str(error))


@dataclass
class PreparedInvocation:
    """A copy of a node with its inputs filled in, ready to `invoke`."""

    key: Key
    id: str
    source_node_id: str
    invocation: BaseInvocation


@lru_cache(maxsize=1024)
def _cached_adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _adapter(annotation: Any) -> TypeAdapter[Any]:
    try:
        return _cached_adapter(annotation)
    except TypeError:  # unhashable metadata
        return TypeAdapter(annotation)


def _declared_output_type(node: BaseInvocation, field: str) -> Any:
    info = node.output_class.output_fields().get(field)
    return Any if info is None else info.annotation


def _input_type(node: BaseInvocation, field: str) -> Any:
    """An input's type with its constraints (`ge=`, `max_length=` ...), as pydantic validates it."""
    info = type(node).input_fields()[field]
    return Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation


def _make_converter(src_t: Any, dst_t: Any) -> Callable[[Any], Any] | None:
    """How a value crosses an edge: as is, or validated into the input's type.

    Values come out of an `Any`-typed output (iterate, collect, or a JSON round trip) as plain
    JSON; the input's pydantic type turns them back into models (e.g. `ImageField`). `int -> float`
    edges convert the number. An input with constraints always validates the value.
    """
    dst = strip_annotated(dst_t)
    constrained = dst is not dst_t
    if dst is Any and not constrained:
        return None
    if not constrained:
        src = strip_annotated(src_t)
        if src is int and dst is float:
            return float
        if src == dst and isinstance(src, type) and not issubclass(src, BaseModel):
            return None
    return _adapter(dst_t).validate_python


def _parse_graph_parts(into: Graph, data: Any) -> tuple[list[BaseInvocation], list[Edge]]:
    """The nodes and edges of graph JSON, parsed against `into`'s registry but not added (its edges
    may name nodes already in the session; they are checked when added)."""
    if not isinstance(data, dict):
        raise GraphError(f"a graph must be a JSON object with 'nodes' and 'edges', not {type(data).__name__}")
    unknown = set(data) - {"nodes", "edges", "id"}
    if unknown:
        raise GraphError(f"unknown graph key(s): {', '.join(sorted(unknown))} (expected 'nodes', 'edges')")
    raw_edges = data.get("edges", [])
    if not isinstance(raw_edges, list):
        raise GraphError("'edges' must be a list")
    scratch = Graph.from_dict({"nodes": data.get("nodes", {})}, into.registry, validate=False)
    return list(scratch.nodes.values()), [parse_edge(e) for e in raw_edges]


def _retype_flow_output(graph: Graph, node_id: str, output: BaseInvocationOutput) -> BaseInvocationOutput:
    """Iterate and collect outputs are declared `Any`: after JSON, their values are plain JSON. Give
    them back the type the graph infers (e.g. `list[ImageField]`) so a resumed session holds the same
    values as one that never left memory."""
    t = graph.nodes[node_id].invocation_type
    field = "item" if t == ITERATE else "collection" if t == COLLECT else None
    if field is None:
        return output
    tp = graph.output_type(node_id, field)
    if tp is Any or tp == list[Any]:
        return output
    try:
        value = _adapter(tp).validate_python(getattr(output, field))
    except ValidationError:
        return output  # keep the JSON value; the consuming input validates it when prepared
    return output.model_copy(update={field: value})


class Session:
    """A graph and its execution state. Append-only: nodes and edges are added, never changed."""

    def __init__(self, graph: Graph | None = None, *, id: str | None = None, registry: NodeRegistry | None = None):
        self.id = id or uuid.uuid4().hex
        self.graph = graph if graph is not None else Graph(registry)
        self.results: dict[Key, BaseInvocationOutput] = {}
        self.errors: dict[Key, NodeError] = {}
        self.history: list[Key] = []
        self.canceled = False
        self.created_at = _now()
        self.updated_at = self.created_at
        self._last_node: str | None = next(reversed(self.graph.nodes), None)
        self._plan_version = -1
        self._in_flight: set[Key] = set()  # handed out by next(), not yet completed (not serialised)

    # -- building -----------------------------------------------------------------------------
    def add_node(self, node: BaseInvocation | dict[str, Any], *, link_previous: bool = False) -> BaseInvocation:
        """Append a node; with `link_previous`, auto-link it to the previously added node."""
        previous = self._last_node
        with self.graph.transaction():
            added = self.graph.add_node(node)
            if link_previous and previous is not None:
                for edge in self.auto_link_edges(previous, added):
                    self.graph.add_edge(edge)
        self._last_node = added.id
        self.updated_at = _now()
        return added

    def auto_link_edges(self, source_id: str, node: BaseInvocation) -> list[Edge]:
        """Edges from `source_id`'s outputs into `node`'s unset, unconnected inputs of the same name
        and a compatible type (incompatible or direct-only inputs are skipped, never an error)."""
        edges = []
        src = self.graph.nodes[source_id]
        outputs = list(src.output_class.output_fields())
        inputs = type(node).input_fields()
        for name in outputs:
            info = inputs.get(name)
            if info is None or field_extra(info).get("input") == Input.Direct.value:
                continue
            if name in node.model_fields_set or self.graph.incoming_to(node.id, name):
                continue
            if node.invocation_type == COLLECT and name == "collection":
                continue  # a collect gathers items; a same-named list is not its prefix
            src_t = self.graph.output_type(source_id, name)
            if are_types_compatible(src_t, self.graph.input_type(node.id, name)):
                edges.append(Edge.between(source_id, name, node.id, name))
        return edges

    def add_edge(self, edge: Edge | dict[str, Any]) -> Edge:
        """Append an edge. Refused if its destination has already run."""
        edge = parse_edge(edge)
        dst = edge.destination.node_id
        if self.has_run(dst):
            raise SessionError("cannot add an edge into a node that has already run", dst, edge.destination.field)
        added = self.graph.add_edge(edge)
        self.updated_at = _now()
        return added

    def add_graph(self, graph: Graph | dict[str, Any]) -> None:
        """Append every node and edge of `graph` at once, all or nothing. Its edges may also connect
        nodes already in the session (but not into a node that has already run)."""
        if isinstance(graph, Graph):
            nodes = list(graph.nodes.values())
            edges = list(graph.edges)
        else:
            nodes, edges = _parse_graph_parts(self.graph, graph)
        seen: set[str] = set()
        for n in nodes:
            if n.id in self.graph.nodes or n.id in seen:
                raise DuplicateNodeError("a node with this id is already in the session", n.id, "id")
            seen.add(n.id)
        for e in edges:
            d = e.destination
            if d.node_id not in seen and self.has_run(d.node_id):
                raise SessionError("cannot add an edge into a node that has already run", d.node_id, d.field)
        with self.graph.transaction():
            for n in nodes:
                self.graph.add_node(n)
            self.graph.add_edges(edges)
        if nodes:
            self._last_node = nodes[-1].id
        self.updated_at = _now()

    def has_run(self, node_id: str) -> bool:
        """Whether any copy of the node has run or is running (its inputs are then fixed)."""
        if not self.history and not self._in_flight:
            return False  # a session being built: no plan needed (building stays linear)
        self._ensure_plan()
        return bool(self._by_source.get(node_id)) or any(k[0] == node_id for k in self._in_flight)

    # -- planning and scheduling --------------------------------------------------------------
    def _ensure_plan(self) -> None:
        if self._plan_version == self.graph.version:
            return
        graph = self.graph
        order, scope = compute_scopes(graph)
        self._order = order
        self._scope = scope
        self._scope_index = {nid: {it: i for i, it in enumerate(s)} for nid, s in scope.items() if s}
        self._edge_pos: dict[int, tuple[int, ...] | None] = {}
        self._converters: dict[int, Callable[[Any], Any] | None] = {}
        self._collects_by_iterate: dict[str, list[str]] = {}
        nodes = graph.nodes
        for e in graph.edges:
            src, dst = e.source.node_id, e.destination.node_id
            dnode = nodes[dst]
            if dnode.invocation_type == COLLECT and e.destination.field == "item":
                self._edge_pos[id(e)] = None  # items are gathered by `_prepare`, not restricted
            else:
                self._edge_pos[id(e)] = self._positions(scope[src], self._target_scope(dst))
            if dnode.invocation_type in (ITERATE, COLLECT):
                self._converters[id(e)] = None
            else:
                src_t = _declared_output_type(nodes[src], e.source.field)
                if nodes[src].invocation_type == ITERATE:
                    src_t = Any
                self._converters[id(e)] = _make_converter(src_t, _input_type(dnode, e.destination.field))
        for nid in order:
            if nodes[nid].invocation_type == COLLECT:
                items = graph.incoming_to(nid, "item")
                if items and scope[items[0].source.node_id]:
                    self._collects_by_iterate.setdefault(scope[items[0].source.node_id][-1], []).append(nid)
        self._plan_version = graph.version
        self._replay()

    def _target_scope(self, node_id: str) -> tuple[str, ...]:
        """The scope a node's instance assignment is expressed over, as seen by its inputs."""
        s = self._scope[node_id]
        return s[:-1] if self.graph.nodes[node_id].invocation_type == ITERATE else s

    def _positions(self, sub: tuple[str, ...], full: tuple[str, ...]) -> tuple[int, ...] | None:
        if sub == full[: len(sub)]:
            return None if len(sub) == len(full) else tuple(range(len(sub)))
        index = {it: i for i, it in enumerate(full)}
        return tuple(index[it] for it in sub)

    def _replay(self) -> None:
        self._ready: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._iter_len: dict[tuple[str, tuple[int, ...]], int] = {}
        self._collect_count: dict[Key, int] = {}
        self._by_source: dict[str, list[tuple[int, ...]]] = {}
        for nid in self._order:
            if not self.graph.incoming(nid):
                self._trigger_initial(nid)
        for key in self.history:
            self._by_source.setdefault(key[0], []).append(key[1])
            self._on_complete(key)

    def _trigger_initial(self, nid: str) -> None:
        t = self.graph.nodes[nid].invocation_type
        if t == ITERATE:
            self._expand_iterate(nid, ())
        elif t == COLLECT:
            self._check_collect(nid, ())
        else:
            self._check_node(nid, ())

    def _enqueue(self, key: Key) -> None:
        self._queued.add(key)
        self._ready.append(key)

    def _on_complete(self, key: Key) -> None:
        src, a = key
        graph = self.graph
        nodes = graph.nodes
        for e in graph.outgoing(src):
            dst = e.destination.node_id
            dt = nodes[dst].invocation_type
            if dt == COLLECT and e.destination.field == "item":
                b = a[:-1] if a else a
                ck = (dst, b)
                self._collect_count[ck] = self._collect_count.get(ck, 0) + 1
                self._check_collect(dst, b)
                continue
            pos = self._edge_pos[id(e)]
            if pos is None:
                candidates: Iterator[tuple[int, ...]] | list[tuple[int, ...]] = [a]
            else:
                candidates = self._extensions(dst, pos, a)
            for b in candidates:
                if dt == ITERATE:
                    self._expand_iterate(dst, b)
                elif dt == COLLECT:
                    self._check_collect(dst, b)
                else:
                    self._check_node(dst, b)

    def _extensions(self, dst: str, pos: tuple[int, ...], a: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        """Every assignment over `dst`'s target scope that agrees with `a` at positions `pos`,
        over the item ranges known so far (unknown ranges are filled in by later triggers)."""
        target = self._target_scope(dst)
        fixed = dict(zip(pos, a, strict=True))
        index = {it: i for i, it in enumerate(target)}
        acc: list[int] = []

        def rec(i: int) -> Iterator[tuple[int, ...]]:
            if i == len(target):
                yield tuple(acc)
                return
            if i in fixed:
                acc.append(fixed[i])
                yield from rec(i + 1)
                acc.pop()
                return
            it = target[i]
            inner = tuple(acc[index[x]] for x in self._scope[it][:-1])
            length = self._iter_len.get((it, inner))
            if length is None:
                return
            for k in range(length):
                acc.append(k)
                yield from rec(i + 1)
                acc.pop()

        return rec(0)

    def _restrict(self, e: Edge, b: tuple[int, ...]) -> tuple[int, ...]:
        pos = self._edge_pos[id(e)]
        return b if pos is None else tuple(b[i] for i in pos)

    def _check_node(self, nid: str, b: tuple[int, ...]) -> None:
        key = (nid, b)
        if key in self._queued or key in self.results:
            return
        results = self.results
        for e in self.graph.incoming(nid):
            if (e.source.node_id, self._restrict(e, b)) not in results:
                return
        self._enqueue(key)

    def _collection_value(self, nid: str, b: tuple[int, ...]) -> tuple[bool, Any]:
        edges = self.graph.incoming_to(nid, "collection")
        if not edges:
            return True, self.graph.nodes[nid].collection  # type: ignore[attr-defined]
        e = edges[0]
        out = self.results.get((e.source.node_id, self._restrict(e, b)))
        if out is None:
            return False, None
        return True, getattr(out, e.source.field)

    def _expand_iterate(self, nid: str, b_in: tuple[int, ...]) -> None:
        if (nid, b_in) in self._iter_len:
            return
        ok, collection = self._collection_value(nid, b_in)
        if not ok:
            return
        length = len(collection) if collection is not None else 0
        self._iter_len[(nid, b_in)] = length
        results = self.results
        for k in range(length):
            key = (nid, (*b_in, k))
            if key not in results:
                self._enqueue(key)
        if length == 0:
            for cid in self._collects_by_iterate.get(nid, ()):
                pos = self._positions(self._scope[nid][:-1], self._scope[cid])
                for b in [b_in] if pos is None else list(self._extensions(cid, pos, b_in)):
                    self._check_collect(cid, b)

    def _check_collect(self, nid: str, b: tuple[int, ...]) -> None:
        key = (nid, b)
        if key in self._queued or key in self.results:
            return
        items = self.graph.incoming_to(nid, "item")
        if items:
            item_scope = self._scope[items[0].source.node_id]
            if item_scope:
                j = item_scope[-1]
                index = self._scope_index.get(nid, {})
                inner = tuple(b[index[x]] for x in self._scope[j][:-1])
                length = self._iter_len.get((j, inner))
                if length is None:
                    return
                expected = length * len(items)
            else:
                expected = len(items)
            if self._collect_count.get(key, 0) < expected:
                return
        ok, _ = self._collection_value(nid, b)
        if ok:
            self._enqueue(key)

    # -- execution ----------------------------------------------------------------------------
    def next(self) -> PreparedInvocation | None:
        """The next ready node copy with its inputs filled in, or None if nothing is ready (or the
        session has failed or was canceled). Raises `MissingInputError` for an unfilled required
        input; the runner records it as that node's error."""
        if self.errors or self.canceled:
            return None
        self._ensure_plan()
        while self._ready:
            key = self._ready.popleft()
            if key in self.results:
                continue
            self._queued.discard(key)
            try:
                prepared = self._prepare(key)
            except Exception as e:
                raise PrepareError(key, e) from e
            self._in_flight.add(key)
            return prepared
        return None

    def _prepare(self, key: Key) -> PreparedInvocation:
        nid, b = key
        node = self.graph.nodes[nid]
        t = node.invocation_type
        pid = prepared_id(key)
        updates: dict[str, Any] = {"id": pid}
        results = self.results
        if t == ITERATE:
            _, collection = self._collection_value(nid, b[:-1])
            updates["collection"] = collection
            updates["index"] = b[-1]
        elif t == COLLECT:
            _, prefix = self._collection_value(nid, b)
            gathered = list(prefix or ())
            items = self.graph.incoming_to(nid, "item")
            if items:
                if self._scope[items[0].source.node_id]:
                    j = self._scope[items[0].source.node_id][-1]
                    index = self._scope_index.get(nid, {})
                    inner = tuple(b[index[x]] for x in self._scope[j][:-1])
                    for k in range(self._iter_len[(j, inner)]):
                        for e in items:
                            gathered.append(getattr(results[(e.source.node_id, (*b, k))], e.source.field))
                else:
                    for e in items:
                        gathered.append(getattr(results[(e.source.node_id, ())], e.source.field))
            updates["collection"] = gathered
            updates["item"] = None
        else:
            for e in self.graph.incoming(nid):
                value = getattr(results[(e.source.node_id, self._restrict(e, b))], e.source.field)
                conv = self._converters[id(e)]
                if conv is not None:
                    try:
                        value = conv(value)
                    except ValidationError as err:
                        detail = err.errors()[0].get("msg", "invalid value")
                        raise NodeFieldError(
                            f"the value {value!r} from output '{e.source.field}' of node "
                            f"'{prepared_id((e.source.node_id, self._restrict(e, b)))}' is invalid here: {detail}",
                            nid,
                            e.destination.field,
                        ) from None
                updates[e.destination.field] = value
            for name in type(node).required_input_names:
                if name not in updates and (name not in node.model_fields_set or getattr(node, name) is None):
                    raise MissingInputError("required input is neither set nor connected", nid, name)
        prepared = node.model_copy(update=updates)
        return PreparedInvocation(key=key, id=pid, source_node_id=nid, invocation=prepared)

    def complete(self, key: Key, output: BaseInvocationOutput) -> None:
        """Record a copy's output and schedule what it unblocks."""
        self._ensure_plan()
        self._in_flight.discard(key)
        self.results[key] = output
        self.history.append(key)
        self._by_source.setdefault(key[0], []).append(key[1])
        self._on_complete(key)

    def set_error(self, key: Key, error: NodeError) -> None:
        self._in_flight.discard(key)
        self.errors[key] = error
        self.updated_at = _now()

    # -- status and results -------------------------------------------------------------------
    def is_complete(self) -> bool:
        if self.errors or self.canceled:
            return True
        self._ensure_plan()
        return not self._ready

    @property
    def status(self) -> SessionStatus:
        if self.canceled:
            return "canceled"
        if self.errors:
            return "failed"
        if not self.history:
            # nothing has run: "pending" while something is ready, "completed" when nothing ever
            # will (an empty graph, or one that only iterates over empty collections). A plain node
            # without inputs is always ready: found at once, without planning the whole graph (a
            # session built node by node is saved, and asked its status, after every node).
            if self._has_ready_root():
                return "pending"
            return "completed" if self.is_complete() else "pending"
        return "completed" if self.is_complete() else "running"

    def _has_ready_root(self) -> bool:
        """Whether a regular (not iterate/collect) node has no incoming edges: it can run now."""
        graph = self.graph
        for nid, node in graph.nodes.items():
            if node.invocation_type not in (ITERATE, COLLECT) and not graph.incoming(nid):
                return True
        return False

    @property
    def prepared_source_mapping(self) -> dict[str, str]:
        return {prepared_id(k): k[0] for k in self.history}

    def outputs_of(self, source_id: str) -> list[BaseInvocationOutput]:
        """Every output of a source node, in iteration order."""
        self._ensure_plan()
        return [self.results[(source_id, a)] for a in sorted(self._by_source.get(source_id, []))]

    def results_by_source(self) -> dict[str, Any]:
        """Outputs keyed by source node id: one output, or a list for nodes under an iterate (an
        empty list when a finished session iterated over nothing)."""
        self._ensure_plan()
        finished_ok = not self.errors and not self.canceled and self.is_complete()
        out: dict[str, Any] = {}
        for nid in self.graph.nodes:
            assignments = self._by_source.get(nid)
            if not self._scope.get(nid):
                if assignments:
                    out[nid] = self.results[(nid, ())]
            elif assignments or finished_ok:
                out[nid] = [self.results[(nid, a)] for a in sorted(assignments or ())]
        return out

    def errors_by_source(self) -> dict[str, NodeError]:
        return {k[0]: v for k, v in self.errors.items()}

    def result_json(self) -> dict[str, Any]:
        """The `invokeai run --json` object of DESIGN.md."""
        results = {}
        for nid, value in self.results_by_source().items():
            if isinstance(value, list):
                results[nid] = [v.model_dump(mode="json") for v in value]
            else:
                results[nid] = value.model_dump(mode="json")
        errors = {
            nid: {"type": e.type, "message": e.message, "traceback": e.traceback, "node_id": e.node_id}
            for nid, e in self.errors_by_source().items()
        }
        return {"session_id": self.id, "status": self.status, "results": results, "errors": errors}

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "graph": self.graph.to_dict(),
            "results": {prepared_id(k): v.model_dump(mode="json") for k, v in self.results.items()},
            "errors": {prepared_id(k): v.model_dump(mode="json") for k, v in self.errors.items()},
            "history": [prepared_id(k) for k in self.history],
            "canceled": self.canceled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], registry: NodeRegistry | None = None) -> Session:
        graph = Graph.from_dict(data.get("graph", {}), registry)
        session = cls(graph, id=data.get("id"))
        reg = graph.registry
        graph._type_memo = {}  # many copies of the same flow node: infer each type once
        try:
            for pid, raw in data.get("results", {}).items():
                key = parse_prepared_id(pid)
                if key[0] not in graph.nodes:
                    raise SessionError(f"results name '{pid}', but the graph has no node '{key[0]}'")
                out_cls = reg.get_output(raw.get("type"))
                session.results[key] = _retype_flow_output(graph, key[0], out_cls.model_validate(raw))
        finally:
            graph._type_memo = None
        for pid, raw in data.get("errors", {}).items():
            session.errors[parse_prepared_id(pid)] = NodeError.model_validate(raw)
        session.history = [parse_prepared_id(p) for p in data.get("history", [])]
        missing = [prepared_id(k) for k in session.history if k not in session.results]
        if missing:
            raise SessionError(f"history names '{missing[0]}' but it has no result")
        session.canceled = bool(data.get("canceled", False))
        session.created_at = data.get("created_at", session.created_at)
        session.updated_at = data.get("updated_at", session.updated_at)
        return session

    @classmethod
    def from_json(cls, text: str, registry: NodeRegistry | None = None) -> Session:
        return cls.from_dict(json.loads(text), registry)
