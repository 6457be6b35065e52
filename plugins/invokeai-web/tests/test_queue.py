"""The session queue over HTTP, watched on Socket.IO."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytestmark = pytest.mark.anyio


def chain_batch(values: list[int], *, slow_steps: int = 0) -> dict[str, Any]:
    nodes: dict[str, Any] = {"a": {"id": "a", "type": "wt_int"}, "b": {"id": "b", "type": "wt_double"}}
    edges = [{"source": {"node_id": "a", "field": "value"}, "destination": {"node_id": "b", "field": "value"}}]
    if slow_steps:
        nodes["s"] = {"id": "s", "type": "wt_slow", "steps": slow_steps, "delay": 0.02}
    return {
        "graph": {"nodes": nodes, "edges": edges},
        "data": [[{"node_path": "a", "field_name": "value", "items": values}]],
    }


def statuses(watcher: Any) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for e in watcher.named("queue_item_status_changed"):
        out.setdefault(e["item_id"], []).append(e["status"])
    return out


async def test_enqueue_a_batch_of_three_and_watch_the_queue(server: Any, watcher: Any) -> None:
    await watcher.subscribe("queue", "default")
    async with server.async_client() as http:
        r = await http.post("/queue/default/enqueue_batch", json={"batch": chain_batch([1, 2, 3])})
        assert r.status_code == 201, r.text
        result = r.json()
        assert (result["enqueued"], result["requested"], result["queue_id"]) == (3, 3, "default")
        ids = result["item_ids"]

        def all_done(evs: Any) -> bool:
            return sum(s[-1] == "completed" for s in statuses(watcher).values()) == 3

        await watcher.wait_for(all_done)
        (enqueued,) = watcher.named("batch_enqueued")
        assert enqueued["batch_id"] == result["batch_id"] and enqueued["enqueued"] == 3
        assert watcher.events[0][0] == "batch_enqueued"
        assert statuses(watcher) == {i: ["in_progress", "completed"] for i in ids}
        # the sessions' own events come through the queue's room, tagged with queue and item
        completes = [e for e in watcher.named("invocation_complete") if e["node_id"] == "b"]
        assert [(e["item_id"], e["result"]["value"]) for e in completes] == list(zip(ids, [2, 4, 6], strict=True))
        assert all(e["queue_id"] == "default" for _, e in watcher.events)
        # per item: in_progress, then the session's events, then completed
        for item_id in ids:
            mine = [n for n, e in watcher.events if e.get("item_id") == item_id]
            assert mine[0] == "queue_item_status_changed" and mine[-1] == "queue_item_status_changed"
            assert mine.index("session_complete") == len(mine) - 2

        status = (await http.get("/queue/default/status")).json()
        assert status["queue"]["completed"] == 3 and status["queue"]["pending"] == 0
        assert status["processor"]["started"] is True

        page = (await http.get("/queue/default/list", params={"limit": 2})).json()
        assert [i["item_id"] for i in page["items"]] == ids[:2] and page["has_more"] is True
        assert "graph" not in page["items"][0]
        page2 = (await http.get("/queue/default/list", params={"cursor": page["next_cursor"]})).json()
        assert [i["item_id"] for i in page2["items"]] == ids[2:] and page2["has_more"] is False
        item = (await http.get(f"/queue/default/i/{ids[1]}")).json()
        assert item["status"] == "completed" and item["field_values"][0]["value"] == 2 and "nodes" in item["graph"]
        session = (await http.get(f"/sessions/{item['session_id']}")).json()
        assert session["results"]["b"]["value"] == 4

        r = await http.put("/queue/default/prune")
        assert r.json() == {"deleted": 3}
        assert (await http.get(f"/queue/default/i/{ids[0]}")).status_code == 404


async def test_pause_cancel_retry_resume_clear(server: Any, watcher: Any) -> None:
    await watcher.subscribe("queue", "q1")
    async with server.async_client() as http:
        r = await http.put("/queue/q1/processor/pause")
        assert r.status_code == 200 and r.json()["queue"]["paused"] is True
        first = (await http.post("/queue/q1/enqueue_batch", json={"batch": chain_batch([1, 2])})).json()
        second = (await http.post("/queue/q1/enqueue_batch", json={"batch": chain_batch([3, 4, 5])})).json()
        third = (await http.post("/queue/q1/enqueue_batch", json={"batch": chain_batch([6])})).json()
        status = (await http.get("/queue/q1/status")).json()["queue"]
        assert (status["pending"], status["paused"]) == (6, True)

        a, b = first["item_ids"]
        r = await http.put(f"/queue/q1/i/{a}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "canceled"
        r = await http.put("/queue/q1/cancel_by_batch_ids", json={"batch_ids": [second["batch_id"]]})
        assert sorted(r.json()["item_ids"]) == second["item_ids"]
        r = await http.put("/queue/q1/retry_items_by_id", json={"item_ids": [a]})
        (retried,) = r.json()["item_ids"]
        assert retried not in (a, b)

        # a batch prepended runs before everything pending
        front = (await http.post("/queue/q1/enqueue_batch", json={"batch": chain_batch([9]), "prepend": True})).json()
        (front_id,) = front["item_ids"]
        r = await http.put("/queue/q1/processor/resume")
        assert r.json()["queue"]["paused"] is False

        expected = {front_id, b, retried, *third["item_ids"]}

        def finished(evs: Any) -> bool:
            s = statuses(watcher)
            return all(s.get(i, [""])[-1] == "completed" for i in expected)

        await watcher.wait_for(finished)
        started = [e["item_id"] for e in watcher.named("queue_item_status_changed") if e["status"] == "in_progress"]
        assert started[0] == front_id
        status = (await http.get("/queue/q1/status")).json()["queue"]
        assert (status["completed"], status["canceled"], status["pending"]) == (4, 4, 0)

        await http.put("/queue/q1/processor/pause")
        more = (await http.post("/queue/q1/enqueue_batch", json={"batch": chain_batch([1, 2, 3])})).json()
        r = await http.put("/queue/q1/cancel_all_except_current")
        assert sorted(r.json()["item_ids"]) == more["item_ids"]
        r = await http.put("/queue/q1/clear")
        assert r.json() == {"deleted": 11}
        assert (await http.get("/queue/q1/status")).json()["queue"]["total"] == 0


async def test_cancel_a_running_item(server: Any, watcher: Any) -> None:
    await watcher.subscribe("queue", "default")
    async with server.async_client() as http:
        result = (
            await http.post("/queue/default/enqueue_batch", json={"batch": chain_batch([1], slow_steps=500)})
        ).json()
        (item_id,) = result["item_ids"]
        await watcher.wait_for(lambda evs: any(n == "invocation_progress" for n, _ in evs))
        r = await http.put(f"/queue/default/i/{item_id}/cancel")
        assert r.status_code == 200
        await watcher.wait_for(lambda evs: any(n == "session_canceled" for n, _ in evs))
        assert statuses(watcher)[item_id][-1] == "canceled"
        assert len(watcher.named("invocation_progress")) < 500
        progress = watcher.named("invocation_progress")[0]
        assert progress["image"]["width"] <= 256 and progress["image"]["dataURL"].startswith("data:image/jpeg;base64,")


async def test_queue_refusals(server: Any) -> None:
    async with server.async_client() as http:
        assert (await http.get("/queue/nope/status")).status_code == 404
        assert (await http.get("/queue/nope/list")).status_code == 404
        assert (await http.put("/queue/nope/clear")).status_code == 404
        assert (await http.get("/queue/bad%20id/status")).status_code == 422
        r = await http.post("/queue/default/enqueue_batch", json={"batch": {"graph": {"nodes": {}}, "bogus": 1}})
        assert r.status_code == 422
        bad = chain_batch([1, "two"])
        r = await http.post("/queue/default/enqueue_batch", json={"batch": bad})
        assert r.status_code == 422
        (d,) = r.json()["detail"]
        assert (d["node_id"], d["field"], d["type"]) == ("a", "value", "BatchError")
        bad_graph = chain_batch([1])
        bad_graph["graph"]["nodes"]["b"]["type"] = "nope"
        (d,) = (await http.post("/queue/default/enqueue_batch", json={"batch": bad_graph})).json()["detail"]
        assert (d["node_id"], d["field"]) == ("b", "type")
        await http.put("/queue/other/processor/pause")
        other = (await http.post("/queue/other/enqueue_batch", json={"batch": chain_batch([1])})).json()
        (other_id,) = other["item_ids"]
        assert (await http.get(f"/queue/default/i/{other_id}")).status_code == 404  # wrong queue
        assert (await http.get(f"/queue/other/i/{other_id}")).status_code == 200
        assert (await http.put("/queue/default/retry_items_by_id", json={"item_ids": [other_id]})).status_code == 404
        assert (await http.get("/queue/default/i/999999")).status_code == 404
        # unknown batch ids: the list is refused whole (nothing canceled), each unknown one located
        ids = [other["batch_id"]] + [f"{i:0128d}" for i in range(1000)]
        r = await http.put("/queue/other/cancel_by_batch_ids", json={"batch_ids": ids[:1000]})
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert [d["loc"] for d in detail] == [["body", "batch_ids", i] for i in range(1, 1000)]
        assert detail[0]["type"] == "BatchNotFoundError" and f"{0:0128d}" in detail[0]["msg"]
        assert (await http.get(f"/queue/other/i/{other_id}")).json()["status"] == "pending"


@pytest.mark.parametrize("invokeai_storage", ["sqlite"])
async def test_the_queue_is_full(server: Any, invokeai_config: Any) -> None:
    server.invoker.queue.max_size = 2
    async with server.async_client() as http:
        await http.put("/queue/default/processor/pause")
        r = await http.post("/queue/default/enqueue_batch", json={"batch": chain_batch([1, 2, 3])})
        assert r.status_code == 409 and r.json()["type"] == "QueueFullError"
        assert (await http.get("/queue/default/status")).json()["queue"]["total"] == 0


@pytest.mark.parametrize("invokeai_storage", ["sqlite"])
async def test_a_locked_database_is_503_with_retry_after(server: Any) -> None:
    """Another process holding the database's lock is the server's trouble, not the client's."""
    import sqlite3

    db = server.invoker.queue.db
    db.busy_timeout = 0.2
    with db.read() as conn:
        conn.execute("PRAGMA busy_timeout = 200")
    other = sqlite3.connect(str(db.path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        async with server.async_client() as http:
            r = await http.post("/queue/default/enqueue_batch", json={"batch": chain_batch([1])})
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert r.json()["type"] == "DatabaseBusyError" and "locked" in r.json()["detail"]
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with server.async_client() as http:
        r = await http.post("/queue/default/enqueue_batch", json={"batch": chain_batch([1])})
        assert r.status_code == 201, r.text


async def test_move_pending_items_and_the_refusals(server: Any) -> None:
    async with server.async_client() as http:
        await http.put("/queue/mv/processor/pause")
        r = await http.post("/queue/mv/enqueue_batch", json={"batch": chain_batch([1, 2, 3, 4])})
        a, b, c, d = r.json()["item_ids"]

        async def order() -> list[int]:
            page = (await http.get("/queue/mv/list", params={"status": "pending"})).json()
            return [i["item_id"] for i in page["items"]]

        r = await http.put(f"/queue/mv/i/{d}/move", json={"to": "front"})
        assert r.status_code == 200, r.text
        assert r.json()["item_id"] == d and r.json()["status"] == "pending"
        assert await order() == [d, a, b, c]
        assert (await http.put(f"/queue/mv/i/{a}/move", json={"to": "back"})).status_code == 200
        assert (await http.put(f"/queue/mv/i/{c}/move", json={"before": d})).status_code == 200
        assert await order() == [c, d, b, a]

        r = await http.put(f"/queue/mv/i/{a}/move", json={"to": "front", "before": b})
        assert r.status_code == 422 and "exactly one" in r.text
        r = await http.put(f"/queue/mv/i/{a}/move", json={})
        assert r.status_code == 422 and "exactly one" in r.text
        r = await http.put(f"/queue/mv/i/{a}/move", json={"to": "middle"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "to"]
        assert (await http.put("/queue/mv/i/999999/move", json={"to": "front"})).status_code == 404
        r = await http.put(f"/queue/mv/i/{a}/move", json={"before": 999999})
        assert r.status_code == 404 and "999999" in r.text
        r = await http.put(f"/queue/mv/i/{a}/move", json={"before": a})
        assert r.status_code == 409 and "before itself" in r.json()["detail"]
        await http.put(f"/queue/mv/i/{b}/cancel")
        r = await http.put(f"/queue/mv/i/{b}/move", json={"to": "front"})
        assert r.status_code == 409 and r.json() == {
            "detail": f"queue item {b} is canceled; only pending items can be moved",
            "type": "QueueItemNotPendingError",
        }
        other = (await http.post("/queue/other/enqueue_batch", json={"batch": chain_batch([9])})).json()["item_ids"]
        assert (await http.put(f"/queue/mv/i/{a}/move", json={"before": other[0]})).status_code == 404
        assert await order() == [c, d, a]  # nothing changed by the refusals

        await http.put("/queue/mv/processor/resume")
        for _ in range(200):
            status = (await http.get("/queue/mv/status")).json()["queue"]
            if status["completed"] == 3:
                break
            await asyncio.sleep(0.05)
        items = [(await http.get(f"/queue/mv/i/{i}")).json() for i in (c, d, a)]
        assert all(i["status"] == "completed" for i in items)
        starts = [i["started_at"] for i in items]
        assert starts == sorted(starts)  # taken in the moved order
