"""How the kernel's errors become HTTP responses.

Every refusal is JSON `{"detail": ...}`. Errors that name a node and a field (graph validation,
batches, sessions) are 422 (or 409 for a conflict with the session's state) with a list of
structured details shaped like FastAPI's own validation errors, plus the kernel's fields:

    {"detail": [{"type": "TypeMismatchError", "loc": ["body", "sum", "a"], "msg": "node 'sum', field 'a': ...",
                 "node_id": "sum", "field": "a", "reason": "..."}]}

| error | status |
|---|---|
| `GraphError` (unknown type or field, bad value, bad edge, cycle, missing input, ...) | 422 |
| `BatchError` (malformed batch, bad datum) | 422 |
| `InvalidQueueIdError` | 422 |
| `SessionError` (e.g. an edge into a node that already ran), `QueueFullError`, other `QueueError` | 409 |
| `SessionNotFoundError`, `QueueItemNotFoundError`, `BatchNotFoundError` | 404 |
| `ServiceUnavailableError` (the implementation is not installed) | 503 |
| `StorageUnavailableError` (a store unreachable or busy: object store down, database locked) | 503 + Retry-After |
| `StorageError` (a store failed: access denied, no such bucket, a corrupt database) | 502 |
| `InvalidTextError` (text that cannot be encoded as UTF-8, caught by a store) | 422 |
| `WorkflowInputError` (a bad exposed input on save, an unknown input or bad value on enqueue) | 422 (1) |
| `WorkflowNotFoundError` | 404 |
| other `WorkflowError` (a bad workflow id, a malformed workflow) | 422 |

(1) located at `["body", "inputs", NAME]`, with `input` naming the exposed input.
| any other `InvokeAIError` | 400 |

**Text that cannot be encoded as UTF-8** (a lone surrogate such as `"\\ud800"` in JSON, or a body
that is not UTF-8) is refused in one place before any route runs: `TextCheckMiddleware`, around the
FastAPI app, checks the path, the query and every JSON body, and answers 422 with the location
(`{"detail": [{"type": "invalid_text", "loc": ["body", "nodes", "n1", "value"], "msg": ...}]}`).
Form fields and file names cannot carry such text (Starlette decodes them as UTF-8 or Latin-1).

Every error answer is described in the OpenAPI by `ErrorResponse` (see `invokeai_web.openapi`).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from invokeai_core import (
    BatchError,
    BatchNotFoundError,
    GraphError,
    InvalidQueueIdError,
    InvalidTextError,
    InvokeAIError,
    QueueError,
    QueueFullError,
    QueueItemNotFoundError,
    ServiceUnavailableError,
    SessionError,
    SessionNotFoundError,
    StorageError,
    StorageUnavailableError,
    WorkflowError,
    WorkflowInputError,
    WorkflowNotFoundError,
    find_invalid_text,
)
from invokeai_web.security import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from fastapi import FastAPI, Request


def located_detail(exc: InvokeAIError) -> list[dict[str, Any]]:
    """The structured detail of an error that may carry a node id and a field."""
    if isinstance(exc, GraphError):
        data: dict[str, Any] = dict(exc.to_dict())
    else:
        data = {
            "type": type(exc).__name__,
            "node_id": getattr(exc, "node_id", None),
            "field": getattr(exc, "field", None),
            "reason": getattr(exc, "reason", str(exc)),
        }
    loc: list[str] = ["body", *(x for x in (data.get("node_id"), data.get("field")) if x)]
    return [{"type": data["type"], "loc": loc, "msg": str(exc), **{k: v for k, v in data.items() if k != "type"}}]


def _located(status: int) -> Any:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvokeAIError)
        return JSONResponse({"detail": located_detail(exc)}, status_code=status)

    return handler


def _plain(status: int, headers: dict[str, str] | None = None) -> Any:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "type": type(exc).__name__}, status_code=status, headers=headers)

    return handler


#: How long a client should wait before trying a busy or unreachable store again.
RETRY_AFTER_SECONDS = "5"


async def _http_error(request: Request, exc: Exception) -> Any:
    """FastAPI's own HTTP errors, with a reason where it gives none: a body its JSON parser gave up on
    because it nests too deeply is "There was an error parsing the body" otherwise."""
    from fastapi.exception_handlers import http_exception_handler

    if isinstance(exc.__cause__, RecursionError):
        return JSONResponse({"detail": "the request body's JSON is nested too deeply to parse"}, status_code=400)
    return await http_exception_handler(request, exc)  # type: ignore[arg-type]


async def _workflow_input(request: Request, exc: Exception) -> JSONResponse:
    """A workflow's exposed input was wrong: located at the input's name (`["body", "inputs", NAME]`),
    with `input` naming it, and the node and field it sets when known."""
    assert isinstance(exc, WorkflowInputError)
    detail = {
        "type": "WorkflowInputError",
        "loc": ["body", "inputs", exc.input_name],
        "msg": str(exc),
        "input": exc.input_name,
        "node_id": exc.node_id,
        "field": exc.field,
        "reason": exc.reason,
    }
    return JSONResponse({"detail": [detail]}, status_code=422)


async def _invalid_text(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidTextError)
    return JSONResponse({"detail": [text_detail(("body", *exc.loc), exc.reason)]}, status_code=422)


_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 with `Allow` naming every method the OpenAPI declares for the path (Starlette names only
    the first route's, and a path may have one route per method)."""
    path = request.url.path
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            methods |= {m.upper() for m in item if m in _METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    allow = ", ".join(sorted(methods)) or dict(getattr(exc, "headers", None) or {}).get("Allow", "")
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allow})


def install_error_handlers(app: FastAPI) -> None:
    from starlette.exceptions import HTTPException

    app.add_exception_handler(HTTPException, _http_error)
    # Starlette picks the handler of the most specific class in the exception's MRO.
    app.add_exception_handler(405, _method_not_allowed)
    app.add_exception_handler(InvalidTextError, _invalid_text)
    app.add_exception_handler(WorkflowInputError, _workflow_input)
    app.add_exception_handler(WorkflowNotFoundError, _plain(404))
    app.add_exception_handler(WorkflowError, _plain(422))
    app.add_exception_handler(GraphError, _located(422))
    app.add_exception_handler(BatchError, _located(422))
    app.add_exception_handler(QueueFullError, _plain(409))
    app.add_exception_handler(SessionError, _located(409))
    app.add_exception_handler(InvalidQueueIdError, _plain(422))
    app.add_exception_handler(QueueItemNotFoundError, _plain(404))
    app.add_exception_handler(BatchNotFoundError, _plain(404))
    app.add_exception_handler(QueueError, _plain(409))
    app.add_exception_handler(SessionNotFoundError, _plain(404))
    app.add_exception_handler(ServiceUnavailableError, _plain(503))
    app.add_exception_handler(StorageUnavailableError, _plain(503, {"Retry-After": RETRY_AFTER_SECONDS}))
    app.add_exception_handler(StorageError, _plain(502))
    app.add_exception_handler(InvokeAIError, _plain(400))


class ErrorItem(BaseModel):
    """One problem: where (`loc`, as in FastAPI's validation errors) and what; errors of the graph
    engine add the node id, the field and the rule broken."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="The error's kind (a kernel error class, or FastAPI's validation error type)")
    loc: list[str | int] = Field(description="Where: 'body', 'query' or 'path', then keys and indexes")
    msg: str
    node_id: str | None = None
    field: str | None = None
    reason: str | None = None


class ErrorResponse(BaseModel):
    """Every error answer: `detail` is a message, or a list of located problems."""

    model_config = ConfigDict(extra="allow")

    detail: str | list[ErrorItem]
    type: str | None = Field(default=None, description="The kernel error class, for errors that are not located")


#: What any route may answer besides its own statuses (the guard, validation, the stores), by status.
COMMON_ERRORS: dict[int, str] = {
    400: "Malformed request (e.g. its Content-Length), or an error of the engine that is not located",
    401: "Missing or wrong access token (servers started with one)",
    403: "A cross-site request, or a path outside what the server may touch",
    413: "The request body is larger than max_upload_mb",
    421: "The Host header is not a loopback name (servers without a token)",
    422: "Invalid input: each problem located (`loc`), with the node and field for graphs and batches",
    429: "Too many wrong access tokens from this address (see Retry-After)",
    502: "A store failed (database, object store)",
    503: "A store is busy or unreachable (see Retry-After), or a service is not installed",
}
NOT_FOUND = "No such session, queue, item, batch, image, node type or model"
CONFLICT = "Refused by the state of the session or queue (e.g. an edge into a node that already ran, a full queue)"


def error_responses(statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` for these statuses, each answered with `ErrorResponse`."""
    return {status: {"model": ErrorResponse, "description": text} for status, text in statuses.items()}


def text_detail(loc: tuple[str | int, ...], reason: str) -> dict[str, Any]:
    field = next((p for p in reversed(loc[1:]) if isinstance(p, str)), None)
    where = ".".join(str(p) for p in loc)
    return {"type": "invalid_text", "loc": list(loc), "msg": f"{where}: {reason}", "field": field, "reason": reason}


#: A JSON escape of a UTF-16 surrogate; only a body containing one needs the full check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
#: Bodies larger than this are parsed for the check on a worker thread, not the event loop.
_THREAD_ABOVE = 64 * 1024


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether FastAPI would parse this body as JSON (no content type, or `application/*json`)."""
    for k, v in headers:
        if k.lower() == b"content-type":
            kind = v.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))
    return True


def body_text_problem(body: bytes) -> tuple[tuple[str | int, ...], str] | None:
    """Where a JSON body holds text that cannot be encoded as UTF-8, or None.

    Fast on the common case: a UTF-8 check in C, and a full parse only when the body has a
    surrogate escape (a valid pair, as `json.dumps` writes an emoji, passes)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as e:
        return ("body",), f"the body is not valid UTF-8 (byte {e.start}); JSON must be UTF-8"
    if _SURROGATE_ESCAPE.search(body) is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None  # not JSON: FastAPI answers that with its own 422
    return find_invalid_text(data, ("body",))


class TextCheckMiddleware:
    """Refuse text that cannot be encoded as UTF-8 before any route runs (422 naming where).

    Bodies are already bounded by the outer guard's `max_upload_mb`; only JSON bodies are read
    here (uploads stream through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        problem = find_invalid_text(scope.get("path", ""), ("path",)) or find_invalid_text(
            dict(parse_qsl(query, keep_blank_values=True)), ("query",)
        )
        if problem is None and scope.get("method") in ("POST", "PUT", "PATCH") and _is_json(scope.get("headers", [])):
            chunks = []
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = b"".join(chunks)
            if len(body) > _THREAD_ABOVE:
                from starlette.concurrency import run_in_threadpool

                problem = await run_in_threadpool(body_text_problem, body)
            else:
                problem = body_text_problem(body)
            receive = _replay(body, receive)
        if problem is None:
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": [text_detail(*problem)]}, status_code=422)
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
