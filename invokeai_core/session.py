"""Sessions: a graph plus its execution state (results, errors, history), appended to as it runs.

What runs next is the scheduler's job (`invokeai_core.scheduler`): a session builds one for its
graph's current version, replaying the history, and asks it for ready copies. Nothing of the
scheduler is serialised: a session is plain JSON (graph, results, errors, history), which is how it
resumes after a JSON round trip, a restart, or a move to another worker.
"""

from __future__ import annotations

import datetime as _dt
import json
import traceback as _tb
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from invokeai_core.errors import DuplicateNodeError, GraphError, SessionError
from invokeai_core.graph import Edge, Graph, parse_edge
from invokeai_core.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput
from invokeai_core.invocations.flow import COLLECT, ITERATE
from invokeai_core.registry import NodeRegistry
from invokeai_core.scheduler import (
    Key,
    PreparedInvocation,
    PrepareError,
    Scheduler,
    parse_prepared_id,
    prepared_id,
    type_adapter,
)

__all__ = [
    "Key",
    "NodeError",
    "PrepareError",
    "PreparedInvocation",
    "Session",
    "SessionStatus",
    "parse_prepared_id",
    "prepared_id",
]

SessionStatus = Literal["pending", "running", "completed", "failed", "canceled"]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


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


def parse_graph_parts(into: Graph, data: Any) -> tuple[list[BaseInvocation], list[Edge]]:
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
        value = type_adapter(tp).validate_python(getattr(output, field))
    except ValidationError:
        return output  # keep the JSON value; the consuming input validates it when prepared
    return output.model_copy(update={field: value})


class Session:
    """A graph and its execution state. Append-only: nodes and edges are added, never changed."""

    def __init__(self, graph: Graph | None = None, *, id: str | None = None, registry: NodeRegistry | None = None):
        """A session for `graph`, or for an empty graph of `registry`'s node types."""
        if graph is None:
            if registry is None:
                raise TypeError("Session() needs a graph, or the registry its nodes are parsed against")
            graph = Graph(registry)
        self.id = id or uuid.uuid4().hex
        self.graph = graph
        self.results: dict[Key, BaseInvocationOutput] = {}
        self.errors: dict[Key, NodeError] = {}
        self.history: list[Key] = []
        self.canceled = False
        self.created_at = _now()
        self.updated_at = self.created_at
        self._last_node: str | None = next(reversed(self.graph.nodes), None)
        self._scheduler: Scheduler | None = None
        self._in_flight: set[Key] = set()  # handed out by next(), not yet completed (not serialised)

    # -- building -----------------------------------------------------------------------------
    def add_node(self, node: BaseInvocation | dict[str, Any], *, link_previous: bool = False) -> BaseInvocation:
        """Append a node; with `link_previous`, auto-link it to the previously added node."""
        previous = self._last_node
        with self.graph.transaction():
            added = self.graph.add_node(node)
            if link_previous and previous is not None:
                for edge in self.graph.auto_link_edges(previous, added):
                    self.graph.add_edge(edge)
        self._last_node = added.id
        self.updated_at = _now()
        return added

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
            nodes, edges = parse_graph_parts(self.graph, graph)
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
        return self._plan().has_run(node_id) or any(k[0] == node_id for k in self._in_flight)

    # -- scheduling ---------------------------------------------------------------------------
    def _plan(self) -> Scheduler:
        """The scheduler for the graph as it is now (re-planned, replaying the history, after the
        graph changed)."""
        scheduler = self._scheduler
        if scheduler is None or scheduler.version != self.graph.version:
            scheduler = self._scheduler = Scheduler(self.graph, self.results, self.history)
        return scheduler

    def next(self) -> PreparedInvocation | None:
        """The next ready node copy with its inputs filled in, or None if nothing is ready (or the
        session has failed or was canceled). Raises `PrepareError` when a copy's inputs cannot be
        filled (e.g. an unfilled required input); the runner records it as that copy's error."""
        if self.errors or self.canceled:
            return None
        scheduler = self._plan()
        key = scheduler.pop_ready()
        if key is None:
            return None
        try:
            prepared = scheduler.prepare(key)
        except Exception as e:
            raise PrepareError(key, e) from e
        self._in_flight.add(key)
        return prepared

    def complete(self, key: Key, output: BaseInvocationOutput) -> None:
        """Record a copy's output and schedule what it unblocks."""
        scheduler = self._plan()
        self._in_flight.discard(key)
        self.results[key] = output
        self.history.append(key)
        scheduler.completed(key)

    def set_error(self, key: Key, error: NodeError) -> None:
        self._in_flight.discard(key)
        self.errors[key] = error
        self.updated_at = _now()

    # -- status and results -------------------------------------------------------------------
    def mark_crashed(self, error_type: str, message: str) -> bool:
        """Record that the process running this session died: the copy that was running (the first
        ready one) gets the error. Returns False for a session that had finished or never started."""
        if self.is_complete():
            return False
        try:
            prepared = self.next()
            key = prepared.key if prepared is not None else None
        except PrepareError as e:
            key = e.key
        if key is None:
            return False
        pid = prepared_id(key)
        self.set_error(
            key, NodeError(node_id=pid, source_node_id=key[0], type=error_type, message=message, traceback="")
        )
        return True

    def is_complete(self) -> bool:
        if self.errors or self.canceled:
            return True
        return not self._plan().has_ready()

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
        return [self.results[(source_id, a)] for a in self._plan().assignments(source_id)]

    def results_by_source(self) -> dict[str, Any]:
        """Outputs keyed by source node id: one output, or a list for nodes under an iterate (an
        empty list when a finished session iterated over nothing)."""
        scheduler = self._plan()
        finished_ok = not self.errors and not self.canceled and self.is_complete()
        out: dict[str, Any] = {}
        for nid in self.graph.nodes:
            assignments = scheduler.assignments(nid)
            if not scheduler.scope(nid):
                if assignments:
                    out[nid] = self.results[(nid, ())]
            elif assignments or finished_ok:
                out[nid] = [self.results[(nid, a)] for a in assignments]
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
        """The session's JSON. The containers are copied first, so a session that runs on a worker
        thread meanwhile is read consistently."""
        results = dict(self.results)
        errors = dict(self.errors)
        history = list(self.history)
        return {
            "id": self.id,
            "graph": self.graph.to_dict(),
            "results": {prepared_id(k): v.model_dump(mode="json") for k, v in results.items()},
            "errors": {prepared_id(k): v.model_dump(mode="json") for k, v in errors.items()},
            "history": [prepared_id(k) for k in history],
            "canceled": self.canceled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def results_page(self, offset: int = 0, limit: int = 100) -> list[tuple[str, BaseInvocationOutput]]:
        """`limit` results from position `offset` of the history, as `(prepared id, output)`."""
        keys = self.history[max(0, offset) : max(0, offset) + max(0, limit)]
        return [(prepared_id(k), self.results[k]) for k in keys]

    @classmethod
    def from_dict(cls, data: dict[str, Any], registry: NodeRegistry) -> Session:
        graph = Graph.from_dict(data.get("graph", {}), registry)
        session = cls(graph, id=data.get("id"))
        with graph.memoized_types():  # many copies of the same flow node: infer each type once
            for pid, raw in data.get("results", {}).items():
                key = parse_prepared_id(pid)
                if key[0] not in graph.nodes:
                    raise SessionError(f"results name '{pid}', but the graph has no node '{key[0]}'")
                out_cls = registry.get_output(raw.get("type"))
                session.results[key] = _retype_flow_output(graph, key[0], out_cls.model_validate(raw))
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
    def from_json(cls, text: str, registry: NodeRegistry) -> Session:
        return cls.from_dict(json.loads(text), registry)
