"""Sessions over HTTP, followed on Socket.IO: build node by node, invoke, events in order, image bytes."""

from __future__ import annotations

import io
from typing import Any

import pytest

pytestmark = pytest.mark.anyio


def edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


def session_done(session_id: str) -> Any:
    return lambda evs: any(n == "session_complete" and e["session_id"] == session_id for n, e in evs)


async def test_build_node_by_node_invoke_and_receive_events_in_order(server: Any, watcher: Any) -> None:
    from PIL import Image

    async with server.async_client() as http:
        r = await http.post("/sessions")
        assert r.status_code == 201, r.text
        session = r.json()
        sid = session["id"]
        assert session["status"] == "completed" and session["graph"] == {"nodes": {}, "edges": []}
        await watcher.subscribe("session", sid)

        r = await http.post(f"/sessions/{sid}/nodes", json={"id": "seven", "type": "wt_int", "value": 7})
        assert r.status_code == 201, r.text
        assert r.json()["node"]["id"] == "seven" and r.json()["edges"] == []
        r = await http.post(
            f"/sessions/{sid}/nodes", params={"link_previous": True}, json={"id": "twice", "type": "wt_double"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["edges"] == [edge("seven", "value", "twice", "value")]  # auto-linked by name
        r = await http.post(f"/sessions/{sid}/nodes", json={"id": "sum", "type": "wt_add", "b": 1})
        assert r.status_code == 201
        r = await http.post(f"/sessions/{sid}/edges", json=edge("twice", "value", "sum", "a"))
        assert r.status_code == 201 and r.json() == edge("twice", "value", "sum", "a")
        r = await http.post(f"/sessions/{sid}/nodes", json={"id": "img", "type": "wt_gray", "size": 24})
        await http.post(f"/sessions/{sid}/edges", json=edge("sum", "value", "img", "value"))

        r = await http.put(f"/sessions/{sid}/invoke")
        assert r.status_code == 202 and r.json() == {"session_id": sid, "all": True}
        await watcher.wait_for(session_done(sid))

        got = [(n, e.get("node_id")) for n, e in watcher.events]
        assert got == [
            ("session_started", None),
            ("invocation_started", "seven"),
            ("invocation_complete", "seven"),
            ("invocation_started", "twice"),
            ("invocation_complete", "twice"),
            ("invocation_started", "sum"),
            ("invocation_complete", "sum"),
            ("invocation_started", "img"),
            ("invocation_complete", "img"),
            ("session_complete", None),
        ]
        assert all(e["session_id"] == sid and e["event"] == n for n, e in watcher.events)
        completes = watcher.named("invocation_complete")
        assert [c["result"].get("value") for c in completes[:3]] == [7, 14, 15]
        assert watcher.named("session_complete")[0]["status"] == "completed"

        r = await http.get(f"/sessions/{sid}")
        body = r.json()
        assert body["status"] == "completed" and body["history"] == ["seven", "twice", "sum", "img"]
        image_name = body["results"]["img"]["image"]["image_name"]
        assert completes[3]["result"]["image"]["image_name"] == image_name

        r = await http.get(f"/images/i/{image_name}")
        assert r.status_code == 200
        record = r.json()
        assert (record["width"], record["session_id"], record["node_id"]) == (24, sid, "img")
        r = await http.get(f"/images/i/{image_name}/full")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(r.content))
        assert image.size == (24, 24) and image.getpixel((3, 3)) == 15
        r = await http.get(f"/images/i/{image_name}/thumbnail")
        assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(r.content)).format == "WEBP"


async def test_invoke_next_runs_one_node_at_a_time(server: Any, watcher: Any) -> None:
    graph = {
        "nodes": {"a": {"id": "a", "type": "wt_int", "value": 2}, "b": {"id": "b", "type": "wt_double"}},
        "edges": [edge("a", "value", "b", "value")],
    }
    async with server.async_client() as http:
        sid = (await http.post("/sessions", json=graph)).json()["id"]
        await watcher.subscribe("session", sid)
        r = await http.put(f"/sessions/{sid}/invoke", params={"all": False})
        assert r.status_code == 202
        await watcher.wait_for(lambda evs: len(watcher.named("invocation_complete")) == 1)
        body = (await http.get(f"/sessions/{sid}")).json()
        assert body["history"] == ["a"] and body["status"] == "running"
        await http.put(f"/sessions/{sid}/invoke", params={"all": False})
        await watcher.wait_for(session_done(sid))
        body = (await http.get(f"/sessions/{sid}")).json()
        assert body["status"] == "completed" and body["results"]["b"]["value"] == 4
        r = await http.put(f"/sessions/{sid}/invoke")
        assert r.status_code == 409  # nothing left to run
        # appended after it completed: runs on the next invoke
        await http.post(f"/sessions/{sid}/nodes", params={"link_previous": True}, json={"id": "c", "type": "wt_double"})
        r = await http.put(f"/sessions/{sid}/invoke")
        assert r.status_code == 202
        await watcher.wait_for(lambda evs: len(watcher.named("session_complete")) == 2)
        assert (await http.get(f"/sessions/{sid}")).json()["results"]["c"]["value"] == 8


async def test_invalid_graphs_are_422_with_node_id_and_field(server: Any) -> None:
    async with server.async_client() as http:
        bad_value = {"nodes": {"n": {"id": "n", "type": "wt_int", "value": "seven"}}, "edges": []}
        r = await http.post("/sessions", json=bad_value)
        assert r.status_code == 422
        (d,) = r.json()["detail"]
        assert (d["node_id"], d["field"], d["type"]) == ("n", "value", "NodeFieldError")
        assert d["loc"] == ["body", "n", "value"] and "seven" in d["msg"]

        unknown = {"nodes": {"x": {"id": "x", "type": "no_such_node"}}, "edges": []}
        (d,) = (await http.post("/sessions", json=unknown)).json()["detail"]
        assert (d["node_id"], d["field"], d["type"]) == ("x", "type", "UnknownNodeTypeError")

        mismatch = {
            "nodes": {"img": {"id": "img", "type": "wt_gray"}, "sum": {"id": "sum", "type": "wt_add"}},
            "edges": [edge("img", "image", "sum", "a")],
        }
        r = await http.post("/sessions", json=mismatch)
        assert r.status_code == 422
        (d,) = r.json()["detail"]
        assert (d["node_id"], d["field"], d["type"]) == ("sum", "a", "TypeMismatchError")

        cycle = {
            "nodes": {"a": {"id": "a", "type": "wt_add"}, "b": {"id": "b", "type": "wt_add"}},
            "edges": [edge("a", "value", "b", "a"), edge("b", "value", "a", "a")],
        }
        (d,) = (await http.post("/sessions", json=cycle)).json()["detail"]
        assert d["type"] == "CycleError" and d["node_id"] in ("a", "b") and d["field"] == "a"

        sid = (await http.post("/sessions", json={"nodes": {"a": {"id": "a", "type": "wt_add"}}})).json()["id"]
        r = await http.post(f"/sessions/{sid}/nodes", json={"id": "a", "type": "wt_int"})
        assert r.status_code == 422 and r.json()["detail"][0]["node_id"] == "a"
        r = await http.post(f"/sessions/{sid}/nodes", json={"id": "b", "type": "wt_int", "nope": 1})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "nope"
        r = await http.post(f"/sessions/{sid}/edges", json=edge("ghost", "value", "a", "a"))
        assert r.status_code == 422 and r.json()["detail"][0]["node_id"] == "ghost"
        r = await http.post(f"/sessions/{sid}/edges", json={"source": {"node_id": "a"}})
        assert r.status_code == 422  # malformed body: FastAPI's own validation

        # a required input neither set nor connected: refused when asked to run everything
        sid = (await http.post("/sessions", json={"nodes": {"d": {"id": "d", "type": "wt_double"}}})).json()["id"]
        r = await http.put(f"/sessions/{sid}/invoke")
        assert r.status_code == 422
        (d,) = r.json()["detail"]
        assert (d["node_id"], d["field"], d["type"]) == ("d", "value", "MissingInputError")


async def test_an_edge_into_a_node_that_ran_is_409(server: Any, watcher: Any) -> None:
    async with server.async_client() as http:
        graph = {"nodes": {"a": {"id": "a", "type": "wt_int", "value": 1}, "s": {"id": "s", "type": "wt_add"}}}
        sid = (await http.post("/sessions", json=graph)).json()["id"]
        await watcher.subscribe("session", sid)
        await http.put(f"/sessions/{sid}/invoke")
        await watcher.wait_for(session_done(sid))
        r = await http.post(f"/sessions/{sid}/edges", json=edge("a", "value", "s", "b"))
        assert r.status_code == 409
        assert r.json()["detail"][0]["node_id"] == "s" and r.json()["detail"][0]["field"] == "b"


async def test_unknown_sessions_are_404_and_listing_pages(server: Any) -> None:
    async with server.async_client() as http:
        for method, path in [
            ("GET", "/sessions/nope"),
            ("PUT", "/sessions/nope/invoke"),
            ("DELETE", "/sessions/nope/invoke"),
            ("POST", "/sessions/nope/edges"),
        ]:
            r = await http.request(method, path, json=edge("a", "value", "b", "value"))
            assert r.status_code == 404, (method, path, r.text)
        ids = []
        for i in range(5):
            graph = {"nodes": {f"n{i}": {"id": f"n{i}", "type": "wt_int" if i % 2 else "wt_add"}}}
            ids.append((await http.post("/sessions", json=graph)).json()["id"])
        page = (await http.get("/sessions", params={"limit": 2})).json()
        assert page["total"] == 5 and [s["id"] for s in page["items"]] == ids[::-1][:2]
        page = (await http.get("/sessions", params={"limit": 2, "offset": 4})).json()
        assert [s["id"] for s in page["items"]] == ids[:1]
        found = (await http.get("/sessions", params={"query": "wt_add"})).json()
        assert sorted(s["id"] for s in found["items"]) == sorted(ids[0::2])
        assert (await http.get("/sessions", params={"limit": 0})).status_code == 422


async def test_a_failing_node_is_reported_as_invocation_error(server: Any, watcher: Any) -> None:
    async with server.async_client() as http:
        graph = {"nodes": {"g": {"id": "g", "type": "wt_gray", "value": 10}}}
        sid = (await http.post("/sessions", json=graph)).json()["id"]
        await watcher.subscribe("session", sid)
        server.invoker.services.images.save = _broken_save  # the image store fails mid-node
        await http.put(f"/sessions/{sid}/invoke")
        await watcher.wait_for(session_done(sid))
        (err,) = watcher.named("invocation_error")
        assert err["node_id"] == "g" and err["error_type"] == "OSError" and "disk full" in err["error_message"]
        assert watcher.named("session_complete")[0]["status"] == "failed"
        body = (await http.get(f"/sessions/{sid}")).json()
        assert body["status"] == "failed" and body["errors"]["g"]["message"] == "disk full"


def _broken_save(*args: Any, **kwargs: Any) -> None:
    raise OSError("disk full")


async def test_a_long_sessions_results_are_paged(server: Any, watcher: Any) -> None:
    n = 2000
    nodes = {f"n{i}": {"id": f"n{i}", "type": "wt_add", "b": 1} for i in range(n)}
    graph = {"nodes": nodes, "edges": [edge(f"n{i}", "value", f"n{i + 1}", "a") for i in range(n - 1)]}
    async with server.async_client() as http:
        sid = (await http.post("/sessions", json=graph)).json()["id"]
        await watcher.subscribe("session", sid)
        assert (await http.put(f"/sessions/{sid}/invoke", params={"all": "true"})).status_code == 202
        await watcher.wait_for(session_done(sid), timeout=120)
        session = (await http.get(f"/sessions/{sid}")).json()
        expected = server.invoker.get_session(sid)
        assert session == {"id": sid, "status": "completed", **expected.to_dict()}
        page = (await http.get(f"/sessions/{sid}/results", params={"offset": 1990, "limit": 50})).json()
        assert page["total"] == n and page["offset"] == 1990 and len(page["items"]) == 10
        last = {"node_id": f"n{n - 1}", "source_node_id": f"n{n - 1}", "output": session["results"][f"n{n - 1}"]}
        assert page["items"][-1] == last
        first = (await http.get(f"/sessions/{sid}/results", params={"limit": 3})).json()
        assert [i["node_id"] for i in first["items"]] == ["n0", "n1", "n2"]
        assert (await http.get(f"/sessions/{sid}/results", params={"limit": 0})).status_code == 422
        assert (await http.get("/sessions/nope/results")).status_code == 404


async def test_invoke_answers_202_while_the_work_is_still_running(server: Any, watcher: Any) -> None:
    """`PUT /sessions/{id}/invoke` queues the work and answers at once: the session is still running
    after the 202 (its node takes seconds), and other requests are answered meanwhile."""
    graph = {"nodes": {"s": {"id": "s", "type": "wt_slow", "steps": 300, "delay": 0.01}}}
    async with server.async_client() as http:
        sid = (await http.post("/sessions", json=graph)).json()["id"]
        await watcher.subscribe("session", sid)
        r = await http.put(f"/sessions/{sid}/invoke", params={"all": "true"})
        assert r.status_code == 202 and r.json() == {"session_id": sid, "all": True}
        assert (await http.get("/app/version")).status_code == 200
        summary = (await http.get("/sessions", params={"query": sid})).json()["items"][0]
        assert summary["status"] in ("pending", "running")  # the 202 did not wait for the node
        assert not session_done(sid)(watcher.events)
        await watcher.wait_for(session_done(sid), timeout=120)
        done = (await http.get(f"/sessions/{sid}/results")).json()
        assert done["total"] == 1 and done["items"][0]["output"]["value"] == 300
