"""A typed client generated from the live server's OpenAPI (openapi-python-client) calls every
route of a real `invokeai serve` and parses every answer, errors included: the generated client
raises on any status the OpenAPI does not declare."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import start_serve
from PIL import Image
from test_schemathesis import require_tool

GENERATOR = str(Path(sys.executable).parent / "openapi-python-client")


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.timeout(300)
def test_a_generated_client_calls_every_route_and_parses_every_answer(tmp_path: Path) -> None:
    require_tool(GENERATOR, "openapi-python-client (pinned in requirements/dev.txt)")
    proc, url = start_serve(tmp_path / "root", log_file=tmp_path / "serve.log")
    try:
        spec = tmp_path / "openapi.json"
        spec.write_bytes(httpx.get(url + "/openapi.json", timeout=30).content)
        out = tmp_path / "gen" / "invokeai_client"
        config = tmp_path / "generator.yaml"  # the image files are binary answers
        config.write_text(
            "content_type_overrides:\n  image/png: application/octet-stream\n  image/webp: application/octet-stream\n"
        )
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        cmd = [GENERATOR, "generate", "--path", str(spec), "--output-path", str(out), "--meta", "none"]
        res = subprocess.run([*cmd, "--config", str(config)], capture_output=True, text=True, timeout=240, env=env)
        assert out.is_dir() and "WARNING" not in res.stdout + res.stderr, res.stdout + res.stderr
        sys.path.insert(0, str(out.parent))
        try:
            _drive(url, out)
        finally:
            sys.path.remove(str(out.parent))
            for name in [m for m in sys.modules if m.startswith("invokeai_client")]:
                del sys.modules[name]
    finally:
        proc.terminate()
        proc.wait(30)


def _drive(url: str, out: Path) -> None:
    client_mod = importlib.import_module("invokeai_client")
    models = importlib.import_module("invokeai_client.models")
    types = importlib.import_module("invokeai_client.types")
    client = client_mod.Client(base_url=url, raise_on_unexpected_status=True, timeout=httpx.Timeout(30))
    modules = {p.stem: f"invokeai_client.api.{p.parent.name}.{p.stem}" for p in (out / "api").glob("*/*.py")}
    modules.pop("__init__", None)
    called: set[str] = set()

    def call(route: str, status: int, **kwargs: Any) -> Any:
        (stem,) = [s for s in modules if s.startswith(route + "_api_v1")]
        called.add(stem)
        r = importlib.import_module(modules[stem]).sync_detailed(client=client, **kwargs)
        assert r.status_code == status, (route, r.status_code, r.content[:300])
        if r.headers.get("content-type", "").startswith("application/json"):
            assert r.parsed is not None, route  # parsed into the declared model, errors included
            if status >= 400:
                assert isinstance(r.parsed, models.ErrorResponse), (route, r.parsed)
        return r.parsed

    for name in ("app_version", "app_config", "list_plugins", "auth_status", "list_nodes", "list_models"):
        call(name, 200)
    call("login", 204, body=models.Login(token="x"))
    call("logout", 204)
    call("get_node", 200, node_type="add")
    call("get_node", 404, node_type="nope")
    graph = models.Graph.from_dict({"nodes": {"one": {"id": "one", "type": "integer", "value": 2}}})
    session = call("create_session", 201, body=graph)
    sid = session.id
    call("get_session", 200, session_id=sid)
    call("get_session", 404, session_id="nope")
    call("get_results", 200, session_id=sid, offset=0, limit=10)
    call("get_results", 404, session_id="nope")
    call("list_sessions", 200)
    call("add_node", 201, session_id=sid, body=models.AddIntegers.from_dict({"id": "sum", "type": "add", "b": 3}))
    error = call("add_node", 422, session_id=sid, body=models.AddIntegers.from_dict({"id": "one", "type": "add"}))
    assert error.detail[0].node_id == "one"
    edge = {"source": {"node_id": "one", "field": "value"}, "destination": {"node_id": "sum", "field": "a"}}
    call("add_edge", 201, session_id=sid, body=models.Edge.from_dict(edge))
    call("add_edge", 422, session_id=sid, body=models.Edge.from_dict(edge))
    call("invoke_session", 202, session_id=sid)
    call("cancel_session", 202, session_id=sid)
    body = models.EnqueueBatchBody.from_dict({"batch": {"graph": graph.to_dict(), "batch_id": "b1"}})
    item_id = call("enqueue_batch", 201, queue_id="q1", body=body).item_ids[0]
    call("queue_status", 200, queue_id="q1")
    call("queue_status", 404, queue_id="nope")
    call("list_items", 200, queue_id="q1")
    call("get_item", 200, queue_id="q1", item_id=item_id)
    call("get_item", 404, queue_id="q1", item_id=10**9)
    call("pause", 200, queue_id="q1")
    call("resume", 200, queue_id="q1")
    call("cancel_item", 200, queue_id="q1", item_id=item_id)
    call("cancel_by_batch_ids", 200, queue_id="q1", body=models.BatchIdsBody(batch_ids=["b1"]))
    call("cancel_by_batch_ids", 422, queue_id="q1", body=models.BatchIdsBody(batch_ids=["nope"]))
    call("cancel_all_except_current", 200, queue_id="q1")
    call("retry_items", 200, queue_id="q1", body=models.ItemIdsBody(item_ids=[item_id]))
    call("clear", 200, queue_id="q1")
    call("prune", 200, queue_id="default")
    # reorder a pending item of a paused queue, and read its (empty) webhook deliveries
    call("pause", 200, queue_id="q2")
    body = models.EnqueueBatchBody.from_dict({"batch": {"graph": graph.to_dict(), "runs": 2}})
    first, second = call("enqueue_batch", 201, queue_id="q2", body=body).item_ids
    moved = call("move_item", 200, queue_id="q2", item_id=second, body=models.MoveBody.from_dict({"to": "front"}))
    assert moved.item_id == second
    call("move_item", 200, queue_id="q2", item_id=second, body=models.MoveBody.from_dict({"before": first}))
    call("move_item", 404, queue_id="q2", item_id=10**9, body=models.MoveBody.from_dict({"to": "back"}))
    assert call("item_webhooks", 200, queue_id="q2", item_id=first) == []
    # the workflow library
    wf = {
        "name": "one",
        "graph": graph.to_dict(),
        "inputs": [{"name": "value", "node_id": "one", "field": "value"}],
    }
    saved = call("save_workflow", 201, workflow_id="one", body=models.WorkflowBody.from_dict(wf))
    assert saved.version == 1
    assert call("list_workflows", 200).total == 1
    assert call("get_workflow", 200, workflow_id="one").inputs[0].name == "value"
    call("get_workflow", 404, workflow_id="nope")
    assert [v.version for v in call("list_versions", 200, workflow_id="one")] == [1]
    run = models.EnqueueWorkflowBody.from_dict({"inputs": {"value": 5}, "runs": 2, "queue_id": "q2"})
    assert call("enqueue_workflow", 201, workflow_id="one", body=run).enqueued == 2
    bad_run = models.EnqueueWorkflowBody.from_dict({"inputs": {"nope": 5}, "queue_id": "q2"})
    assert call("enqueue_workflow", 422, workflow_id="one", body=bad_run).detail[0].to_dict()["input"] == "nope"
    assert call("delete_workflow", 200, workflow_id="one").deleted == 1
    call("clear", 200, queue_id="q2")
    upload = models.BodyUploadImageApiV1ImagesUploadPost(
        file=types.File(payload=io.BytesIO(_png()), file_name="a.png", mime_type="image/png")
    )
    name = call("upload_image", 201, body=upload).image_name
    bad = models.BodyUploadImageApiV1ImagesUploadPost(
        file=types.File(payload=io.BytesIO(b"not an image"), file_name="a.png", mime_type="image/png")
    )
    call("upload_image", 415, body=bad)
    call("list_images", 200)
    call("get_image_record", 200, image_name=name)
    call("get_image_record", 404, image_name="nope.png")
    call("get_image_full", 200, image_name=name)
    call("get_image_thumbnail", 200, image_name=name)
    call("update_image", 200, image_name=name, body=models.ImageUpdate(starred=True))
    call("delete_image", 204, image_name=name)
    call("add_model", 422, body=models.ModelAdd(path="missing"))
    call("get_model", 404, name="nope")
    call("remove_model", 404, name="nope")
    call("graph_file_schema", 200)
    saved = call("graph_file", 200, body=graph)
    assert saved.schema_version == 2 and saved.node_versions["one"].distribution == "invokeai-nodes"
    loaded = call("load_graph_file", 200, body=models.GraphFile.from_dict(saved.to_dict()))
    assert loaded.schema_version == 2 and loaded.changed == []
    newer = {**saved.to_dict(), "schema_version": 9}  # (a missing node type: test_graph_files_api.py)
    error = call("load_graph_file", 422, body=models.GraphFile.from_dict(newer))
    assert "schema version 9" in error.detail[0].msg
    call("check_plugins", 200)
    call("install_plugins", 403, body=models.InstallRequest(specs=["invokeai-sunset"]))  # off by default
    call("uninstall_plugin", 403, body=models.UninstallRequest(name="sunset"))
    assert called == set(modules), sorted(set(modules) - called)
