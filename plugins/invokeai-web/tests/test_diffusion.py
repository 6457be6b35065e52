"""Cancel a running diffusion session from the API (the offline demo model of invokeai-diffusers)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def demo_model(server: Any) -> str:
    pytest.importorskip("torch")
    pytest.importorskip("invokeai_diffusers")
    if server.invoker.host.plugins.get("diffusers") is None:
        pytest.skip("the diffusers plugin is not loaded")
    from invokeai_diffusers.models.manager import ModelManager

    record = server.invoker.services.get(ModelManager).create_demo()
    return str(record.name)


async def test_cancel_a_running_diffusion_session(server: Any, watcher: Any, demo_model: str) -> None:
    async with server.async_client() as http:
        models = (await http.get("/models")).json()
        assert [m["name"] for m in models] == [demo_model]
        node = {"id": "t", "type": "txt2img", "model": demo_model, "prompt": "a cat", "width": 64, "height": 64}
        node["steps"] = 1000
        sid = (await http.post("/sessions", json={"nodes": {"t": node}})).json()["id"]
        await watcher.subscribe("session", sid)
        assert (await http.put(f"/sessions/{sid}/invoke")).status_code == 202
        await watcher.wait_for(lambda evs: len(watcher.named("invocation_progress")) >= 2, timeout=120)
        r = await http.delete(f"/sessions/{sid}/invoke")
        assert r.status_code == 202
        await watcher.wait_for(lambda evs: any(n == "session_complete" for n, _ in evs), timeout=60)

        names = [n for n, _ in watcher.events]
        assert "session_canceled" in names and "invocation_complete" not in names
        assert names.index("session_canceled") < names.index("session_complete")
        assert watcher.named("session_complete")[0]["status"] == "canceled"
        progress = watcher.named("invocation_progress")
        assert len(progress) < 1000
        assert [p["step"] for p in progress] == list(range(1, len(progress) + 1))
        preview = progress[0]["image"]
        assert preview["width"] == 8 and preview["dataURL"].startswith("data:image/jpeg;base64,")  # small
        body = (await http.get(f"/sessions/{sid}")).json()
        assert body["status"] == "canceled" and body["results"] == {}
        assert (await http.get("/images")).json()["total"] == 0


async def test_an_unknown_model_is_refused_before_anything_runs(server: Any, demo_model: str) -> None:
    """A model name that is not installed is bad input, checked when the graph arrives: 422 naming the
    node, the field and the models that exist; nothing is enqueued or stored."""
    graph = {"nodes": {"t": {"id": "t", "type": "txt2img", "model": "demo-s", "width": 64, "height": 64}}}
    async with server.async_client() as http:
        r = await http.post("/queue/default/enqueue_batch", json={"batch": {"graph": graph}})
        assert r.status_code == 422, r.text
        (detail,) = r.json()["detail"]
        assert (detail["node_id"], detail["field"], detail["loc"]) == ("t", "model", ["body", "t", "model"])
        assert "unknown model 'demo-s'" in detail["msg"] and "did you mean 'demo-sd'?" in detail["msg"]
        good = {"graph": {"nodes": {"t": {**graph["nodes"]["t"], "model": demo_model}}}}
        data = [[{"node_path": "t", "field_name": "model", "items": [demo_model, "ghost"]}]]
        r = await http.post("/queue/default/enqueue_batch", json={"batch": {**good, "data": data}})
        assert r.status_code == 422 and "unknown model 'ghost'" in r.json()["detail"][0]["msg"]
        assert (await http.get("/queue/default/status")).json()["queue"]["total"] == 0
        r = await http.post("/sessions", json=graph)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "model"
        sid = (await http.post("/sessions", json={"nodes": {}})).json()["id"]
        r = await http.post(f"/sessions/{sid}/nodes", json={"id": "m", "type": "main_model_loader", "model": "x"})
        assert r.status_code == 422 and "unknown model 'x'" in r.json()["detail"][0]["msg"]
        assert (await http.get(f"/sessions/{sid}")).json()["graph"]["nodes"] == {}
