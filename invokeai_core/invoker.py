"""The Invoker: the one entry point applications (CLI, web API, tests) use to run graphs.

It owns the services, an in-process session processor (worker threads that serve `invoke()`), and,
when asked to (`start(process_queue=True)` or `queue_processor = true`), the queue processor that
runs the session queue's items (`invokeai_core.queue_processor`). Applications create sessions, add
nodes and edges, ask for the next node or all of them to run, wait, cancel, and enqueue batches;
they never touch services or plugin internals directly.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from invokeai_core.context import InvocationContext
from invokeai_core.errors import GraphError, OutputTooLargeError, SessionNotFoundError
from invokeai_core.events import (
    InvocationCompleteEvent,
    InvocationErrorEvent,
    InvocationProgressEvent,
    InvocationStartedEvent,
    ProgressImage,
    SessionCanceledEvent,
    SessionCompleteEvent,
    SessionStartedEvent,
)
from invokeai_core.graph import Edge, Graph
from invokeai_core.invocations.baseinvocation import BaseInvocation
from invokeai_core.session import NodeError, PreparedInvocation, PrepareError, Session, parse_graph_parts

if TYPE_CHECKING:
    from invokeai_core.batch import Batch
    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.invocations.baseinvocation import BaseInvocationOutput
    from invokeai_core.plugins.host import PluginHost
    from invokeai_core.queue_processor import QueueProcessor
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.services.base import EnqueueResult, SessionQueueBase
    from invokeai_core.services.container import Services

logger = logging.getLogger("invokeai.invoker")


def _has_preflight(node: BaseInvocation) -> bool:
    return type(node).preflight is not BaseInvocation.preflight


_STOP = object()


def _node_event_fields(
    session_id: str, prepared: PreparedInvocation, queue_id: str | None, item_id: int | None
) -> dict[str, Any]:
    """The fields every node event carries."""
    return {
        "session_id": session_id,
        "queue_id": queue_id,
        "item_id": item_id,
        "node_id": prepared.id,
        "source_node_id": prepared.source_node_id,
        "invocation_type": type(prepared.invocation).invocation_type,
    }


@functools.cache
def _may_be_large(cls: type[BaseInvocationOutput]) -> bool:
    """Whether an output class has a field whose size its values choose (numbers and flags do not:
    integers are bounded by `limits.integer_bits`), so only those outputs are measured."""
    return any(info.annotation not in (int, float, bool) for info in cls.output_fields().values())


def _check_output_size(node_id: str, type_id: str, output: BaseInvocationOutput, limit: int) -> None:
    """Fail a node whose output is too large to store and serve (`limits.output_mb`), before it is
    recorded, so its session and queue item fail consistently."""
    if not _may_be_large(type(output)):
        return
    size = len(output.model_dump_json())
    if size > limit:
        raise OutputTooLargeError(
            f"node '{node_id}' ({type_id}) produced an output of {size / 2**20:.1f} MiB, more than "
            f"limits.output_mb ({limit / 2**20:g} MiB)"
        )


class _Run:
    """Book-keeping for one session while the processor owns it."""

    __slots__ = ("all", "done", "pending", "session")

    def __init__(self, session: Session | None = None) -> None:
        self.done = threading.Event()
        self.pending = 0
        self.all = False
        #: Holds the live session while it runs (persistent stores cache live sessions weakly).
        self.session = session


class Invoker:
    """Runs sessions on worker threads; see the module docstring."""

    def __init__(self, services: Services, host: PluginHost, *, workers: int | None = None) -> None:
        if services.nodes is not host.registry:
            raise ValueError("the services were built with another node registry than this host's")
        self.services = services
        self.host = host
        self.workers = workers if workers is not None else services.config.queue_workers
        self._requests: queue.Queue[Any] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._runs: dict[str, _Run] = {}
        self._busy: set[str] = set()
        self._canceled: set[str] = set()
        self._active: set[str] = set()  # sessions inside run_session, on any thread
        self._lock = threading.Lock()
        self._started = False
        #: The queue processor, while it runs (see `start`).
        self.queue_processor: QueueProcessor | None = None

    # -- construction helpers -----------------------------------------------------------------
    @classmethod
    def from_config(cls, config: InvokeAIConfig | None = None, host: PluginHost | None = None) -> Invoker:
        """The composition root: the plugin host (loaded from `config` unless given), its node
        registry, the event bus, then every kernel service, each handed a `ServiceRuntime`.

        Building every kernel service here means a misconfiguration fails before anything runs."""
        from invokeai_core.plugins.host import PluginHost
        from invokeai_core.services.container import Services

        if host is None:
            host = PluginHost(config).load()
        config = config if config is not None else host.config
        services = Services(config, host.service_registry, host.registry)
        services.build_all()
        return cls(services, host)

    @property
    def registry(self) -> NodeRegistry:
        return self.host.registry

    @property
    def config(self) -> InvokeAIConfig:
        return self.services.config

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, *, process_queue: bool | None = None) -> Invoker:
        """Start the services and the session processor. With `process_queue` (default: the
        `queue_processor` setting) also start the queue processor, which recovers from a crash first
        and then runs queued items until `stop()`."""
        if not self._started:
            self._started = True
            self.services.build_all()
            self.services.start(self)
            self.host.call_startup(self)
            for i in range(self.workers):
                t = threading.Thread(target=self._worker, name=f"invokeai-session-processor-{i}", daemon=True)
                t.start()
                self._threads.append(t)
        if (self.config.queue_processor if process_queue is None else process_queue) and self.queue_processor is None:
            from invokeai_core.queue_processor import QueueProcessor

            processor = QueueProcessor(self)
            try:
                processor.start()
            except BaseException:
                self.stop()
                raise
            self.queue_processor = processor
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        if not self._started:
            return
        if self.queue_processor is not None:
            self.queue_processor.stop(timeout)
            self.queue_processor = None
        with self._lock:
            self._canceled.update(self._runs)
        for _ in self._threads:
            self._requests.put(_STOP)
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        self.host.call_shutdown(self)
        self.services.stop(self)
        self._started = False

    def __enter__(self) -> Invoker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- sessions -----------------------------------------------------------------------------
    def create_session(self, graph: Graph | dict[str, Any] | None = None, *, session_id: str | None = None) -> Session:
        """A new stored session for `graph` (JSON is parsed against this Invoker's registry). The
        one place sessions are made: `invoke`, the queue processor and the applications use it."""
        if isinstance(graph, dict):
            graph = Graph.from_dict(graph, self.registry)
        if graph is not None:
            self.preflight(graph.nodes.values(), graph.edges)
        session = Session(graph if graph is not None else Graph(self.registry), id=session_id)
        self.services.sessions.save(session)
        return session

    def get_session(self, session_id: str) -> Session:
        return self.services.sessions.get(session_id)

    def add_node(
        self, session_id: str, node: BaseInvocation | dict[str, Any], *, link_previous: bool = False
    ) -> BaseInvocation:
        session = self.get_session(session_id)
        node = session.graph.parse_node(node)
        self.preflight([node])  # auto-links only feed inputs given no value
        added = session.add_node(node, link_previous=link_previous)
        self.services.sessions.save(session)
        return added

    def add_nodes(self, session_id: str, graph: Graph | dict[str, Any]) -> None:
        session = self.get_session(session_id)
        if isinstance(graph, Graph):
            nodes, edges = list(graph.nodes.values()), list(graph.edges)
        else:
            nodes, edges = parse_graph_parts(session.graph, graph)
        self.preflight(nodes, edges)
        session.add_graph({"nodes": {n.id: n for n in nodes}, "edges": edges})
        self.services.sessions.save(session)

    def add_edge(self, session_id: str, edge: Edge | dict[str, Any]) -> Edge:
        session = self.get_session(session_id)
        added = session.add_edge(edge)
        self.services.sessions.save(session)
        return added

    # -- running ------------------------------------------------------------------------------
    def invoke(self, session_id: str, *, all: bool = True) -> None:
        """Ask the processor to run the next ready node (`all=False`) or every node."""
        session = self.get_session(session_id)  # raises SessionNotFoundError early
        if not self._started:
            self.start()
        with self._lock:
            run = self._runs.get(session_id)
            if run is None:
                run = self._runs[session_id] = _Run(session)
            run.pending += 1
            run.done.clear()
        self._requests.put((session_id, all))

    def wait(self, session_id: str, timeout: float | None = None) -> Session:
        """Block until the processor has finished every request for the session."""
        run = self._runs.get(session_id)
        if run is not None and not run.done.wait(timeout):
            raise TimeoutError(f"session '{session_id}' did not finish within {timeout} s")
        if run is not None and run.session is not None:
            return run.session
        return self.get_session(session_id)

    def cancel(self, session_id: str) -> None:
        """Cancel a session: the running node sees `context.is_canceled()`, nothing more runs."""
        session = self.get_session(session_id)
        with self._lock:
            self._canceled.add(session_id)
            running = session_id in self._runs or session_id in self._active
        if not running and not session.canceled and not session.is_complete():
            self._mark_canceled(session)

    def is_canceled(self, session_id: str) -> bool:
        return session_id in self._canceled

    def forget(self, session_id: str) -> None:
        """Drop the processor's book-keeping for a finished session (the queue processor calls it)."""
        with self._lock:
            if session_id not in self._runs and session_id not in self._active:
                self._canceled.discard(session_id)

    # -- the queue ----------------------------------------------------------------------------
    @property
    def queue(self) -> SessionQueueBase:
        """The session queue service."""
        return self.services.queue

    def enqueue_batch(self, queue_id: str, batch: Batch | dict[str, Any], *, prepend: bool = False) -> EnqueueResult:
        """Expand a batch into the queue; the queue processor (if started) runs the items."""
        from invokeai_core.errors import BatchError
        from invokeai_core.services.base import coerce_batch

        checked = coerce_batch(batch)
        graph, groups = checked.validated(self.registry)
        try:
            self.preflight(graph.nodes.values(), graph.edges)
            for group in groups:  # each value a batch substitutes, on a copy of its node
                for node_id, field, values in group:
                    node = graph.nodes[node_id]
                    if _has_preflight(node):
                        self.preflight([node.model_copy(update={field: v}) for v in values])
        except GraphError as e:
            raise BatchError(e.reason, e.node_id, e.field) from None
        return self.services.queue.enqueue_batch(queue_id, checked, prepend=prepend)

    def enqueue_workflow(
        self,
        queue_id: str,
        workflow_id: str,
        inputs: dict[str, Any] | None = None,
        *,
        runs: int = 1,
        version: int | None = None,
        priority: int = 0,
        prepend: bool = False,
    ) -> EnqueueResult:
        """Enqueue a saved workflow `runs` times with these exposed-input values (by name). An unknown
        workflow raises `WorkflowNotFoundError`; an unknown input name or a bad value
        `WorkflowInputError` naming the input; nothing is enqueued then."""
        from invokeai_core.workflows import workflow_batch

        workflow = self.services.workflows.get(workflow_id, version)
        batch = workflow_batch(workflow, inputs or {}, self.registry, runs=runs, priority=priority)
        return self.enqueue_batch(queue_id, batch, prepend=prepend)

    def preflight(self, nodes: Iterable[BaseInvocation], edges: Iterable[Edge] = ()) -> None:
        """Run `BaseInvocation.preflight(services)` of the nodes that define it (checks that need a
        service, such as "this model is installed") before they are stored or run. A `GraphError` about
        an input the node was not given a value for, or that one of `edges` feeds, is ignored."""
        todo = [n for n in nodes if _has_preflight(n)]
        if not todo:
            return
        fed = {(e.destination.node_id, e.destination.field) for e in edges}
        for node in todo:
            try:
                node.preflight(self.services)
            except GraphError as e:
                if e.field in node.model_fields_set and (node.id, e.field) not in fed:
                    raise

    def run_graph(self, graph: Graph | dict[str, Any], *, timeout: float | None = None) -> Session:
        """Create a session for `graph`, run all of it, and return it when done."""
        session = self.create_session(graph)
        self.invoke(session.id, all=True)
        return self.wait(session.id, timeout)

    # -- the processor ------------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            request = self._requests.get()
            if request is _STOP:
                return
            session_id, run_all = request
            with self._lock:
                if session_id in self._busy:
                    self._requests.put(request)  # another worker owns it; retry after it finishes
                    continue
                self._busy.add(session_id)
            try:
                self.run_session(session_id, run_all=run_all)
            except Exception:
                logger.exception("the session processor failed on session %s", session_id)
            finally:
                with self._lock:
                    self._busy.discard(session_id)
                    run = self._runs.get(session_id)
                    if run is not None:
                        run.pending -= 1
                        if run.pending <= 0:
                            del self._runs[session_id]
                            run.done.set()

    def run_session(
        self, session_id: str, *, run_all: bool = True, queue_id: str | None = None, item_id: int | None = None
    ) -> Session:
        """Run a session in the calling thread (the processor calls this; so does a queue worker)."""
        try:
            session = self.get_session(session_id)
        except SessionNotFoundError:
            logger.warning("session %s vanished before it ran", session_id)
            raise
        with self._lock:
            self._active.add(session_id)
        try:
            return self._run_session(session, run_all, queue_id, item_id)
        finally:
            with self._lock:
                self._active.discard(session_id)

    def _run_session(self, session: Session, run_all: bool, queue_id: str | None, item_id: int | None) -> Session:
        session_id = session.id
        events = self.services.events
        if not session.history and not session.errors and events.has_subscribers("session_started"):
            events.emit(SessionStartedEvent(session_id=session.id, queue_id=queue_id, item_id=item_id))
        while True:
            if session_id in self._canceled:
                self._mark_canceled(session, queue_id, item_id)
                return session
            try:
                prepared = session.next()
            except PrepareError as e:
                self._record_error(session, e.key, e.prepared_id, e.error, "?", queue_id, item_id)
                break
            if prepared is None:
                break
            if not self._run_node(session, prepared, queue_id, item_id):
                break
            if not run_all:
                break
        if session_id in self._canceled and not session.errors:
            self._mark_canceled(session, queue_id, item_id)
            return session
        if session.is_complete():
            self.services.sessions.save(session)
            if events.has_subscribers("session_complete"):
                events.emit(
                    SessionCompleteEvent(
                        session_id=session.id, queue_id=queue_id, item_id=item_id, status=session.status
                    )
                )
        return session

    def _mark_canceled(self, session: Session, queue_id: str | None = None, item_id: int | None = None) -> None:
        if session.canceled:
            return
        session.canceled = True
        self.services.sessions.save(session)
        events = self.services.events
        events.emit(SessionCanceledEvent(session_id=session.id, queue_id=queue_id, item_id=item_id))
        events.emit(SessionCompleteEvent(session_id=session.id, queue_id=queue_id, item_id=item_id, status="canceled"))

    def _record_error(
        self,
        session: Session,
        key: Any,
        pid: str,
        exc: BaseException,
        type_id: str,
        queue_id: str | None,
        item_id: int | None,
    ) -> None:
        error = NodeError.from_exception(pid, exc)
        session.set_error(key, error)
        self.services.sessions.save(session)
        node = session.graph.nodes.get(error.source_node_id)
        self.services.events.emit(
            InvocationErrorEvent(
                session_id=session.id,
                queue_id=queue_id,
                item_id=item_id,
                node_id=pid,
                source_node_id=error.source_node_id,
                invocation_type=node.invocation_type if node is not None else type_id,
                error_type=error.type,
                error_message=error.message,
                error_traceback=error.traceback,
            )
        )

    def _run_node(
        self, session: Session, prepared: PreparedInvocation, queue_id: str | None, item_id: int | None
    ) -> bool:
        inv = prepared.invocation
        cls = type(inv)
        type_id = cls.invocation_type
        services = self.services
        events = services.events
        sid = session.id
        if events.has_subscribers("invocation_started"):
            events.emit(InvocationStartedEvent(**_node_event_fields(sid, prepared, queue_id, item_id)))
        cache = services.cache
        key: str | None = None
        output: BaseInvocationOutput | None = None
        try:
            if inv.use_cache and cls.invocation_meta.cacheable and cache.enabled:
                key = self.cache_key(inv)
                output = cache.get(key)
            cached = output is not None
            if output is None:
                context = InvocationContext(
                    services,
                    session_id=sid,
                    node_id=prepared.id,
                    source_node_id=prepared.source_node_id,
                    invocation_type=type_id,
                    is_canceled=lambda: sid in self._canceled,
                    emit_progress=self._progress_emitter(sid, prepared, queue_id, item_id),
                    graph_json=session.graph.to_file_dict,
                    queue_id=queue_id,
                    item_id=item_id,
                )
                output = inv.invoke(context)
                if not isinstance(output, cls.output_class):
                    raise TypeError(
                        f"node '{prepared.id}' ({type_id}) returned {type(output).__name__}, "
                        f"but its invoke() is declared to return {cls.output_class.__name__}"
                    )
                _check_output_size(prepared.id, type_id, output, self.config.limits.output_bytes)
                if key is not None:
                    cache.save(key, output)
        except Exception as e:
            if sid in self._canceled:
                return False
            self._record_error(session, prepared.key, prepared.id, e, type_id, queue_id, item_id)
            return False
        session.complete(prepared.key, output)
        services.sessions.node_completed(session, prepared.id)
        if events.has_subscribers("invocation_complete"):
            events.emit(
                InvocationCompleteEvent(
                    **_node_event_fields(sid, prepared, queue_id, item_id),
                    result=output.model_dump(mode="json"),
                    cached=cached,
                )
            )
        return True

    def cache_key(self, inv: BaseInvocation) -> str:
        """Same node type, node version, plugin version and inputs = same key."""
        cls = type(inv)
        entry = self.registry.entry(cls.invocation_type)
        body = inv.model_dump_json(exclude={"id", "use_cache"})
        digest = hashlib.blake2b(body.encode(), digest_size=20).hexdigest()
        return f"{cls.invocation_type}:{cls.invocation_meta.version}:{entry.plugin}:{entry.plugin_version}:{digest}"

    def _progress_emitter(
        self, sid: str, prepared: PreparedInvocation, queue_id: str | None, item_id: int | None
    ) -> Any:
        events = self.services.events

        def emit(step: int, total: int, message: str | None, image: Callable[[], dict[str, Any]] | None) -> None:
            if not events.has_subscribers("invocation_progress"):
                return
            events.emit(
                InvocationProgressEvent(
                    **_node_event_fields(sid, prepared, queue_id, item_id),
                    step=step,
                    total=total,
                    message=message,
                    image=ProgressImage(**image()) if image is not None else None,
                )
            )

        return emit
