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
| any other `InvokeAIError` | 400 |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from invokeai_core import (
    BatchError,
    BatchNotFoundError,
    GraphError,
    InvalidQueueIdError,
    InvokeAIError,
    QueueError,
    QueueFullError,
    QueueItemNotFoundError,
    ServiceUnavailableError,
    SessionError,
    SessionNotFoundError,
    StorageError,
    StorageUnavailableError,
)

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


def install_error_handlers(app: FastAPI) -> None:
    from starlette.exceptions import HTTPException

    app.add_exception_handler(HTTPException, _http_error)
    # Starlette picks the handler of the most specific class in the exception's MRO.
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
