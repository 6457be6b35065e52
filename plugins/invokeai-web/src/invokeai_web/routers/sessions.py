"""Sessions: create (optionally from a graph), list, get, append nodes and edges, invoke, cancel.

Every call goes through the Invoker. Graphs, nodes and edges are validated by the kernel; a refusal
is 422 with the node id and the field (see `invokeai_web.errors`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, Field

from invokeai_core import Edge, Page, Session, SessionError, SessionSummary
from invokeai_web.dependencies import InvokerDep, rendered
from invokeai_web.errors import CONFLICT, error_responses
from invokeai_web.openapi import ANY_INVOCATION_REF, ANY_OUTPUT_REF, GRAPH_REF, schema_ref

router = APIRouter(prefix="/sessions", tags=["sessions"], responses=error_responses({409: CONFLICT}))

SessionId = Annotated[str, Path(min_length=1, max_length=128, description="The session id")]
GraphJson = Annotated[dict[str, Any], schema_ref(GRAPH_REF)]
NodeJson = Annotated[dict[str, Any], schema_ref(ANY_INVOCATION_REF)]
OutputJson = Annotated[dict[str, Any], schema_ref(ANY_OUTPUT_REF)]


class NodeErrorOut(BaseModel):
    node_id: str
    source_node_id: str
    type: str
    message: str
    traceback: str


class SessionOut(BaseModel):
    """A session: its graph and execution state. Results and errors are keyed by *prepared* node id
    (the graph's node id, or `node#i` for the copy that ran for item `i` of an `iterate`)."""

    id: str
    status: str = Field(description="pending, running, completed, failed or canceled")
    graph: GraphJson
    results: dict[str, OutputJson] = Field(description="Outputs by prepared node id")
    errors: dict[str, NodeErrorOut] = Field(description="Node errors by prepared node id")
    history: list[str] = Field(description="Prepared node ids in the order they completed")
    canceled: bool
    created_at: str
    updated_at: str


class NodeAdded(BaseModel):
    node: NodeJson
    edges: list[Edge] = Field(description="Every edge into the node (the auto-linked ones, when asked for)")


class InvokeAccepted(BaseModel):
    session_id: str
    all: bool = Field(description="Whether every ready node runs, or only the next one")


def session_json(session: Session) -> dict[str, Any]:
    """The session's JSON (`Session.to_dict`, a consistent snapshot) with its status."""
    data = session.to_dict()
    return {"id": data["id"], "status": session.status, **data}


@router.post("", status_code=201, response_model=SessionOut, summary="Create a session")
def create_session(invoker: InvokerDep, graph: Annotated[GraphJson | None, Body()] = None) -> Response:
    """Create a session, empty or from a graph (the JSON of a `Graph`). The graph is validated as a
    whole (types, edges, cycles, iterate/collect); required inputs may still be missing, since nodes
    and edges can be appended before it runs."""
    return rendered(session_json(invoker.create_session(graph)), 201)


@router.get("", response_model=Page[SessionSummary], summary="List sessions")
def list_sessions(
    invoker: InvokerDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    query: Annotated[str | None, Query(max_length=200, description="Matches session ids and node types")] = None,
) -> Page[SessionSummary]:
    """Newest first."""
    return invoker.services.sessions.list(offset=offset, limit=limit, query=query or None)


@router.get("/{session_id}", response_model=SessionOut, summary="Get a session")
def get_session(invoker: InvokerDep, session_id: SessionId) -> Response:
    """The whole session (encoded off the event loop). To page through a long session's results
    instead, use `GET /sessions/{id}/results`."""
    return rendered(session_json(invoker.get_session(session_id)))


class ResultOut(BaseModel):
    node_id: str = Field(description="The prepared node id (`node`, or `node#i` under an iterate)")
    source_node_id: str = Field(description="The graph's node id")
    output: OutputJson


class ResultsPage(BaseModel):
    """Results in the order they completed (the session's history)."""

    items: list[ResultOut]
    offset: int
    limit: int
    total: int = Field(description="How many results the session has")


@router.get("/{session_id}/results", response_model=ResultsPage, summary="Page through a session's results")
def get_results(
    invoker: InvokerDep,
    session_id: SessionId,
    offset: Annotated[int, Query(ge=0, le=10**9, description="Position in the history")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    session = invoker.get_session(session_id)
    page = session.results_page(offset, limit)
    items = [
        {"node_id": pid, "source_node_id": pid.partition("#")[0], "output": out.model_dump(mode="json")}
        for pid, out in page
    ]
    return rendered({"items": items, "offset": offset, "limit": limit, "total": len(session.history)})


@router.post("/{session_id}/nodes", status_code=201, response_model=NodeAdded, summary="Append a node")
def add_node(
    invoker: InvokerDep,
    session_id: SessionId,
    node: Annotated[NodeJson, Body()],
    link_previous: Annotated[
        bool,
        Query(description="Auto-link the node to the previously added one (inputs take outputs of the same name)"),
    ] = False,
) -> dict[str, Any]:
    """Append one node (its `type` picks the node type; `id` is generated when left out)."""
    added = invoker.add_node(session_id, node, link_previous=link_previous)
    session = invoker.get_session(session_id)
    return {"node": added.model_dump(mode="json"), "edges": session.graph.incoming(added.id)}


@router.post("/{session_id}/edges", status_code=201, response_model=Edge, summary="Append an edge")
def add_edge(invoker: InvokerDep, session_id: SessionId, edge: Edge) -> Edge:
    """Append an edge. Refused (409) if its destination has already run."""
    return invoker.add_edge(session_id, edge)


@router.put("/{session_id}/invoke", status_code=202, response_model=InvokeAccepted, summary="Run the session")
def invoke_session(
    invoker: InvokerDep,
    session_id: SessionId,
    all: Annotated[bool, Query(description="Run every node (true) or only the next ready one (false)")] = True,
) -> dict[str, Any]:
    """Start running the session in the background; follow it on Socket.IO (`subscribe_session`).

    With `all=true` the graph must be complete (every required input set or connected): 422 names
    the node and field otherwise. A session that has nothing left to run is 409."""
    session = invoker.get_session(session_id)
    if all:
        session.graph.validate(require_inputs=True)
    if session.is_complete():
        raise SessionError(f"the session has nothing left to run (status '{session.status}')")
    invoker.invoke(session_id, all=all)
    return {"session_id": session_id, "all": all}


@router.delete("/{session_id}/invoke", status_code=202, response_model=InvokeAccepted, summary="Cancel the session")
def cancel_session(invoker: InvokerDep, session_id: SessionId) -> dict[str, Any]:
    """Cancel: the running node sees `context.is_canceled()` and nothing more runs
    (`session_canceled` follows on Socket.IO)."""
    invoker.cancel(session_id)
    return {"session_id": session_id, "all": True}
