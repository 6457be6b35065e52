"""Text that cannot be encoded as UTF-8 (lone surrogates, bodies that are not UTF-8) is refused at the
edge on every route that takes text: 422 naming where, and nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: Text with at least one lone surrogate, as a JSON escape (`json.dumps` writes `\ud800`).
UNENCODABLE = st.tuples(st.text(max_size=4), st.integers(0xD800, 0xDFFF).map(chr), st.text(max_size=4)).map("".join)

#: Every route whose body takes text: method, path, body with `T` where the text goes, and its location.
ROUTES: list[tuple[str, str, Any, list[Any]]] = [
    ("POST", "/sessions", {"nodes": {"a": {"type": "string", "value": "T"}}}, ["nodes", "a", "value"]),
    ("POST", "/sessions", {"nodes": {"T": {"type": "integer"}}}, ["nodes", "T"]),
    ("POST", "/sessions/{sid}/nodes", {"type": "string", "id": "T"}, ["id"]),
    ("POST", "/sessions/{sid}/nodes?link_previous=true", {"type": "img_chan", "image": {"image_name": "T"}}, None),
    (
        "POST",
        "/sessions/{sid}/edges",
        {"source": {"node_id": "T", "field": "value"}, "destination": {"node_id": "x", "field": "a"}},
        None,
    ),
    (
        "POST",
        "/queue/default/enqueue_batch",
        {"batch": {"graph": {"nodes": {}}, "batch_id": "T"}},
        ["batch", "batch_id"],
    ),
    ("PUT", "/queue/default/cancel_by_batch_ids", {"batch_ids": ["T"]}, ["batch_ids", 0]),
    ("POST", "/auth/login", {"token": "T"}, ["token"]),
    ("POST", "/models", {"path": "T"}, ["path"]),
    ("POST", "/models", {"path": "x", "name": "T"}, ["name"]),
    ("PATCH", "/images/i/a.png", {"starred": True, "T": 1}, None),
]


def _fill(value: Any, text: str) -> Any:
    if isinstance(value, str):
        return text if value == "T" else value
    if isinstance(value, dict):
        return {_fill(k, text): _fill(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, text) for v in value]
    return value


@pytest.mark.parametrize("invokeai_storage", ["sqlite"])
def test_unencodable_text_is_422_on_every_route(server: Any) -> None:
    with server.client() as http:
        sid = http.post("/sessions").json()["id"]
        sessions_before = http.get("/sessions").json()["total"]

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        @given(text=UNENCODABLE, route=st.sampled_from(ROUTES))
        def check(text: str, route: tuple[str, str, Any, list[Any] | None]) -> None:
            method, path, body, loc = route
            r = http.request(
                method,
                path.format(sid=sid),
                content=json.dumps(_fill(body, text)),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 422, (route, r.text)
            (problem,) = r.json()["detail"]
            assert problem["type"] == "invalid_text" and "lone surrogate" in problem["msg"]
            assert problem["loc"][0] == "body"
            if loc is not None:
                assert len(problem["loc"]) == len(loc) + 1

        check()
        # raw bytes that are not UTF-8, and the same text in the query
        r = http.post("/sessions", content=b'{"nodes": {"a": {"type": "string", "value": "\xed\xa0\x80"}}}')
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
        assert http.get("/sessions", params={"query": "\udcff".encode("utf-8", "surrogatepass")}).status_code == 200
        # nothing was stored, and what is stored can be read back
        listed = http.get("/sessions").json()
        assert listed["total"] == sessions_before
        for item in listed["items"]:
            assert http.get(f"/sessions/{item['id']}").status_code == 200
        assert http.get(f"/sessions/{sid}").json()["graph"]["nodes"] == {}
