"""The scheduler: what a session runs next, given its graph and the results so far.

Each node of the graph runs as one or more *prepared copies*. A node outside any iteration runs once
(its prepared id is its node id). A node downstream of an `iterate` runs once per item; its copies
are keyed by an *assignment*, one index per enclosing iterate (prepared id `node#i` or `node#i.j`).
Scopes come from `graph.compute_scopes`.

Scheduling is event-driven and linear in the number of executed copies: when a copy completes, only
its consumers are examined, and collects count arrivals instead of re-scanning. A `Scheduler` plans
one version of a graph; nothing of it is serialised: it is rebuilt by replaying the history, which is
how a session resumes after a JSON round trip, a restart, or a move to another worker, and how nodes
appended to a running session are scheduled.

Dependencies run one way: the scheduler reads the graph and the session's results mapping; it knows
nothing of sessions, stores or the Invoker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from invokeai_core.errors import MissingInputError, NodeFieldError
from invokeai_core.graph import Edge, Graph, compute_scopes
from invokeai_core.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput
from invokeai_core.invocations.flow import COLLECT, ITERATE
from invokeai_core.typecompat import strip_annotated

Key = tuple[str, tuple[int, ...]]


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


def type_adapter(annotation: Any) -> TypeAdapter[Any]:
    """A cached pydantic adapter for a type (validation of values crossing edges and loaded results)."""
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
    return type_adapter(dst_t).validate_python


class Scheduler:
    """The plan of one graph version plus the scheduling state rebuilt from a history.

    `results` is the session's own mapping (read, never written). Build a new scheduler when the
    graph's `version` changes; `Scheduler(graph, results, history)` replays `history`."""

    def __init__(self, graph: Graph, results: Mapping[Key, BaseInvocationOutput], history: Iterable[Key]) -> None:
        self.graph = graph
        self.results = results
        #: The graph version this plan is for.
        self.version = graph.version
        self._plan()
        self._replay(history)

    # -- planning -------------------------------------------------------------------------------
    def _plan(self) -> None:
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

    def _target_scope(self, node_id: str) -> tuple[str, ...]:
        """The scope a node's instance assignment is expressed over, as seen by its inputs."""
        s = self._scope[node_id]
        return s[:-1] if self.graph.nodes[node_id].invocation_type == ITERATE else s

    def _positions(self, sub: tuple[str, ...], full: tuple[str, ...]) -> tuple[int, ...] | None:
        if sub == full[: len(sub)]:
            return None if len(sub) == len(full) else tuple(range(len(sub)))
        index = {it: i for i, it in enumerate(full)}
        return tuple(index[it] for it in sub)

    def _replay(self, history: Iterable[Key]) -> None:
        self._ready: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._iter_len: dict[tuple[str, tuple[int, ...]], int] = {}
        self._collect_count: dict[Key, int] = {}
        self._by_source: dict[str, list[tuple[int, ...]]] = {}
        for nid in self._order:
            if not self.graph.incoming(nid):
                self._trigger_initial(nid)
        for key in history:
            self.completed(key)

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

    # -- the session's questions ----------------------------------------------------------------
    def pop_ready(self) -> Key | None:
        """The next ready copy (FIFO) that has no result yet, taken off the ready queue."""
        ready, results = self._ready, self.results
        while ready:
            key = ready.popleft()
            if key in results:
                continue
            self._queued.discard(key)
            return key
        return None

    def has_ready(self) -> bool:
        return bool(self._ready)

    def completed(self, key: Key) -> None:
        """A copy's result was recorded: schedule what it unblocks."""
        self._by_source.setdefault(key[0], []).append(key[1])
        self._on_complete(key)

    def has_run(self, node_id: str) -> bool:
        """Whether any copy of the node has a result."""
        return bool(self._by_source.get(node_id))

    def assignments(self, node_id: str) -> list[tuple[int, ...]]:
        """The assignments of the node's copies that have results, in iteration order."""
        return sorted(self._by_source.get(node_id, ()))

    def scope(self, node_id: str) -> tuple[str, ...]:
        """The iterate nodes the node runs under (empty outside any iteration)."""
        return self._scope.get(node_id, ())

    def prepare(self, key: Key) -> PreparedInvocation:
        """The copy `key` with its inputs filled in from the results of the copies it depends on."""
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
