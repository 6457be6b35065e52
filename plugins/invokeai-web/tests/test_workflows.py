"""The workflow library over HTTP: save in versions, list, get, delete, and enqueue with inputs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytestmark = pytest.mark.anyio


def workflow(name: str = "Gray", value: int = 10) -> dict[str, Any]:
    return {
        "name": name,
        "description": "a gray square, its level doubled",
        "graph": {
            "nodes": {
                "level": {"id": "level", "type": "wt_int", "value": value},
                "double": {"id": "double", "type": "wt_double"},
                "img": {"id": "img", "type": "wt_gray", "size": 8},
            },
            "edges": [
                {
                    "source": {"node_id": "level", "field": "value"},
                    "destination": {"node_id": "double", "field": "value"},
                }
            ],
        },
        "inputs": [
            {"name": "level", "node_id": "level", "field": "value", "description": "The number doubled"},
            {"name": "gray", "node_id": "img", "field": "value"},
        ],
    }


async def wait_done(http: Any, queue_id: str, n: int) -> None:
    for _ in range(400):
        q = (await http.get(f"/queue/{queue_id}/status")).json()["queue"]
        if q["completed"] + q["failed"] + q["canceled"] >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{queue_id}: not finished: {q}")


async def test_save_versions_list_get_delete(server: Any) -> None:
    async with server.async_client() as http:
        r = await http.post("/workflows/gray/versions", json=workflow())
        assert r.status_code == 201, r.text
        assert (r.json()["id"], r.json()["version"]) == ("gray", 1)
        r = await http.post("/workflows/gray/versions", json=workflow("Gray v2", value=20))
        assert r.json()["version"] == 2
        listed = (await http.get("/workflows")).json()
        assert [(w["id"], w["version"], w["versions"]) for w in listed["items"]] == [("gray", 2, 2)]
        assert (await http.get("/workflows", params={"query": "nothing"})).json()["total"] == 0
        latest = (await http.get("/workflows/gray")).json()
        assert latest["name"] == "Gray v2" and latest["graph"]["nodes"]["level"]["value"] == 20
        first = (await http.get("/workflows/gray", params={"version": 1})).json()
        assert first["graph"]["nodes"]["level"]["value"] == 10 and first["inputs"][0]["description"]
        assert [v["version"] for v in (await http.get("/workflows/gray/versions")).json()] == [1, 2]
        r = await http.get("/workflows/gray", params={"version": 7})
        assert r.status_code == 404 and "version 7 of workflow 'gray'" in r.json()["detail"]
        assert (await http.delete("/workflows/gray")).json() == {"deleted": 2}
        assert (await http.get("/workflows/gray")).status_code == 404
        assert (await http.delete("/workflows/gray")).status_code == 404


async def test_a_bad_exposed_input_is_422_naming_it(server: Any) -> None:
    async with server.async_client() as http:
        bad = {**workflow(), "inputs": [{"name": "speed", "node_id": "img", "field": "velocity"}]}
        r = await http.post("/workflows/w/versions", json=bad)
        assert r.status_code == 422
        (detail,) = r.json()["detail"]
        assert detail["input"] == "speed" and detail["loc"] == ["body", "inputs", "speed"]
        assert (detail["node_id"], detail["field"]) == ("img", "velocity") and "no input named" in detail["msg"]
        fed = {**workflow(), "inputs": [{"name": "d", "node_id": "double", "field": "value"}]}
        r = await http.post("/workflows/w/versions", json=fed)
        assert r.status_code == 422 and "fed by an edge" in r.json()["detail"][0]["msg"]
        r = await http.post("/workflows/w/versions", json={**workflow(), "inputs": [{"name": "x y", "node_id": "a"}]})
        assert r.status_code == 422
        assert (await http.post("/workflows/bad%20id/versions", json=workflow())).status_code == 422
        assert (await http.get("/workflows")).json()["total"] == 0


async def test_enqueue_a_workflow_with_inputs_runs_n_items(server: Any) -> None:
    async with server.async_client() as http:
        await http.post("/workflows/gray/versions", json=workflow())
        r = await http.post("/workflows/gray/enqueue", json={"inputs": {"level": 21, "gray": 200}, "runs": 3})
        assert r.status_code == 201, r.text
        result = r.json()
        assert result["enqueued"] == 3 and result["queue_id"] == "default"
        await wait_done(http, "default", 3)
        for item_id in result["item_ids"]:
            item = (await http.get(f"/queue/default/i/{item_id}")).json()
            assert item["status"] == "completed"
            assert {(v["node_path"], v["field_name"], v["value"]) for v in item["field_values"]} == {
                ("level", "value", 21),
                ("img", "value", 200),
            }
            session = (await http.get(f"/sessions/{item['session_id']}")).json()
            assert session["results"]["double"]["value"] == 42
        # a later version is what runs by default; an older one on request
        await http.post("/workflows/gray/versions", json=workflow(value=5))
        r = await http.post("/workflows/gray/enqueue", json={"version": 1, "queue_id": "v"})
        await wait_done(http, "v", 1)
        item = (await http.get(f"/queue/v/i/{r.json()['item_ids'][0]}")).json()
        session = (await http.get(f"/sessions/{item['session_id']}")).json()
        assert session["results"]["double"]["value"] == 20


@pytest.mark.parametrize(
    ("inputs", "name", "needle"),
    [
        ({"speed": 1}, "speed", "no such input (inputs: gray, level)"),
        ({"level": "high"}, "level", "'high' is invalid"),
        ({"gray": 999}, "gray", "less than or equal to 255"),
    ],
)
async def test_bad_input_values_are_422_naming_the_input(server: Any, inputs: dict[str, Any], name: str, needle: str):
    async with server.async_client() as http:
        await http.post("/workflows/gray/versions", json=workflow())
        r = await http.post("/workflows/gray/enqueue", json={"inputs": inputs})
        assert r.status_code == 422, r.text
        (detail,) = r.json()["detail"]
        assert detail["input"] == name and detail["loc"] == ["body", "inputs", name] and needle in detail["msg"]
        assert (await http.get("/queue/default/status")).json()["queue"]["total"] == 0  # nothing enqueued
        assert (await http.post("/workflows/nope/enqueue", json={})).status_code == 404
