"""The enriched OpenAPI schema, the nodes/plugins/app routes, and the `register_routes` hookspec."""

from __future__ import annotations

import types
from typing import Any

import pytest

from invokeai_core import hookimpl


def test_every_node_and_output_type_is_a_named_schema_with_its_metadata(server: Any) -> None:
    with server.client() as http:
        schema = http.get(server.url + "/openapi.json").json()
    components = schema["components"]["schemas"]
    registry = server.invoker.registry
    assert len(registry.types()) > 5
    for entry in registry.entries():
        cls = entry.cls
        node = components[cls.invocation_type]
        meta = cls.invocation_meta
        assert node["properties"]["type"]["const"] == cls.invocation_type
        assert (node["title"], node["category"], node["version"], node["node_kind"]) == (
            meta.title,
            meta.category,
            meta.version,
            "invocation",
        )
        out = cls.output_class.output_type
        assert components["InvocationOutputMap"]["properties"][cls.invocation_type] == {
            "$ref": f"#/components/schemas/{out}"
        }
        assert components[out]["node_kind"] == "output" and components[out]["properties"]["type"]["const"] == out
        assert components["AnyInvocation"]["discriminator"]["mapping"][cls.invocation_type].endswith(
            "/" + cls.invocation_type
        )
    gray = components["wt_gray"]
    assert gray["properties"]["size"]["ui_type"] == "size" and gray["properties"]["value"]["maximum"] == 255
    assert gray["properties"]["value"]["description"] == "The gray level" and gray["tags"] == ["test"]
    # nested models resolve inside the document
    image_ref = components["wt_image_output"]["properties"]["image"]["$ref"]
    assert image_ref.split("/")[-1] in components
    assert components["Graph"]["properties"]["nodes"]["additionalProperties"]["$ref"].endswith("/AnyInvocation")


def test_events_and_socketio_are_described(server: Any) -> None:
    from invokeai_core import ALL_EVENTS

    with server.client() as http:
        schema = http.get(server.url + "/openapi.json").json()
    components = schema["components"]["schemas"]
    server_events = components["ServerEvents"]["properties"]
    assert sorted(server_events) == sorted(ev.event_name for ev in ALL_EVENTS)
    started = components[server_events["invocation_started"]["$ref"].split("/")[-1]]
    assert started["properties"]["event"]["const"] == "invocation_started"
    assert {"session_id", "node_id", "source_node_id", "invocation_type"} <= set(started["properties"])
    assert schema["x-socketio"]["path"] == "/socket.io/"
    assert set(schema["x-socketio"]["client_events"]) == {
        "subscribe_session",
        "unsubscribe_session",
        "subscribe_queue",
        "unsubscribe_queue",
    }


def test_request_bodies_reference_the_graph_and_node_unions(server: Any) -> None:
    with server.client() as http:
        schema = http.get(server.url + "/openapi.json").json()
    create = schema["paths"]["/api/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "#/components/schemas/Graph" in str(create)
    add = schema["paths"]["/api/v1/sessions/{session_id}/nodes"]["post"]["requestBody"]
    assert "#/components/schemas/AnyInvocation" in str(add)
    assert "#/components/schemas/Graph" in str(schema["components"]["schemas"]["BatchIn"])


def test_the_schema_follows_nodes_registered_while_serving(server: Any, invokeai_register_nodes: Any) -> None:
    from web_nodes import WtIntOutput

    from invokeai_core import BaseInvocation, InputField, InvocationContext, invocation

    @invocation("wt_late", title="Late", category="test", version="2.1.0")
    class Late(BaseInvocation):
        n: int = InputField(default=1)

        def invoke(self, context: InvocationContext) -> WtIntOutput:
            return WtIntOutput(value=self.n)

    with server.client() as http:
        assert "wt_late" not in http.get(server.url + "/openapi.json").json()["components"]["schemas"]
        invokeai_register_nodes(Late)
        assert http.get(server.url + "/openapi.json").json()["components"]["schemas"]["wt_late"]["version"] == "2.1.0"
        assert http.get("/nodes/wt_late").json()["version"] == "2.1.0"


def test_nodes_plugins_and_app_routes(server: Any) -> None:
    with server.client() as http:
        nodes = http.get("/nodes").json()
        by_type = {n["type"]: n for n in nodes}
        assert by_type["wt_add"]["plugin"] == "webtest" and by_type["wt_add"]["output_type"] == "wt_int_output"
        assert by_type["wt_add"]["schema"]["properties"]["a"]["description"] == "First"
        assert by_type["wt_add"]["schema"]["output"]["properties"]["value"]
        assert by_type["iterate"]["plugin"] == "core"
        assert http.get("/nodes/wt_slow").json()["cacheable"] is False
        assert http.get("/nodes/nope").status_code == 404
        plugins = {p["name"]: p for p in http.get("/plugins").json()}
        assert plugins["core"]["builtin"] is True and plugins["webtest"]["nodes"] == sorted(
            ["wt_add", "wt_double", "wt_gray", "wt_int", "wt_slow"]
        )
        assert plugins["web"]["status"] == "loaded"
        version = http.get("/app/version").json()
        assert version["plugins"]["web"] == version["web_version"]
        config = http.get("/app/config").json()
        assert config["config"]["services"]["queue"] == "memory" and config["web"]["port"] == 0


def _routes_plugin(path: str, fail: bool = False) -> types.ModuleType:
    module = types.ModuleType("routes_plugin")

    @hookimpl
    def register_routes(app: Any) -> None:
        from fastapi import APIRouter

        router = APIRouter(prefix=path, tags=["hello"])

        @router.get("")
        def hello() -> dict[str, Any]:
            return {"hello": "world", "nodes": len(app.state.invoker.registry.types())}

        app.include_router(router, prefix=app.state.api_prefix)
        if fail:
            raise RuntimeError("half-way through")

    module.register_routes = register_routes  # type: ignore[attr-defined]
    return module


@pytest.fixture
def extra_routes(request: pytest.FixtureRequest, invokeai_register_plugin: Any) -> None:
    invokeai_register_plugin(_routes_plugin("/hello"), "greeter")
    invokeai_register_plugin(_routes_plugin("/broken", fail=True), "broken_greeter")


def test_hook_register_routes(extra_routes: None, server: Any) -> None:
    with server.client() as http:
        r = http.get("/hello")
        assert r.status_code == 200 and r.json()["hello"] == "world" and r.json()["nodes"] > 5
        plugins = {p["name"]: p for p in http.get("/plugins").json()}
        assert "register_routes" in plugins["greeter"]["hooks"] and plugins["greeter"]["routes_error"] is None
        assert plugins["broken_greeter"]["routes_error"] == "RuntimeError: half-way through"
        paths = http.get(server.url + "/openapi.json").json()["paths"]
        assert "/api/v1/hello" in paths
        # the broken plugin's half-registered route was taken back
        assert "/api/v1/broken" not in paths
        assert http.get("/broken").status_code == 404


def test_diffusers_adds_its_models_routes(server: Any, tmp_path: Any) -> None:
    if "diffusers" not in server.invoker.host.plugins or server.invoker.host.plugins["diffusers"].status != "loaded":
        pytest.skip("invokeai-diffusers is not installed")
    models = server.invoker.config.root / "models"
    models.mkdir(exist_ok=True)
    with server.client() as http:
        assert http.get("/models").json() == []
        r = http.post("/models", json={"path": str(models / "missing")})
        assert r.status_code == 422 and "no such file" in r.json()["detail"][0]["msg"]
        assert r.json()["detail"][0]["loc"] == ["body", "path"]
        r = http.post("/models", json={"path": "bad\x00path"})
        assert r.status_code == 422
        garbage = models / "garbage.safetensors"
        garbage.write_bytes(b"\x00" * 64)
        r = http.post("/models", json={"path": str(garbage)})
        assert r.status_code == 422 and "not a readable safetensors file" in r.json()["detail"][0]["msg"]
        assert http.post("/models", json={"path": "garbage.safetensors"}).status_code == 422  # under models/
        r = http.post("/models", json={"path": str(garbage), "prediction_type": "x0"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "prediction_type"]
        # Outside the model folders: the same 403 whether the path exists or not, and what it is stays unsaid.
        outside = tmp_path / "elsewhere.safetensors"
        outside.write_bytes(b"\x00" * 64)
        answers = [
            http.post("/models", json={"path": p})
            for p in (str(outside), str(tmp_path / "missing"), "/etc/passwd", "../../etc", str(models / ".." / "x"))
        ]
        assert {r.status_code for r in answers} == {403}
        assert len({r.text for r in answers}) == 1 and "model folders" in answers[0].json()["detail"][0]["msg"]
        assert answers[0].json()["detail"][0]["loc"] == ["body", "path"]
        r = http.post("/models", json={"path": str(models / "x"), "config": "/etc"})
        assert r.status_code == 403 and r.json()["detail"][0]["loc"] == ["body", "config"]
        r = http.post("/models", json={"path": "~nosuchuser/x"})
        assert r.status_code == 422
        assert http.delete("/models/nope").status_code == 404
        assert http.get("/models/nope").status_code == 404
        assert "/api/v1/models" in http.get(server.url + "/openapi.json").json()["paths"]


def test_diffusers_loads_without_invokeai_web(invokeai_config: Any) -> None:
    """Its `register_routes` is optional: with invokeai-web not loaded, diffusers still loads."""
    from invokeai_core import PluginHost

    host = PluginHost(invokeai_config, allowlist={"diffusers"}).load()
    if "diffusers" not in host.plugins:
        pytest.skip("invokeai-diffusers is not installed")
    assert host.plugins["web"].status == "disabled"
    assert host.plugins["diffusers"].status == "loaded", host.plugins["diffusers"].error
    assert "register_routes" not in host.plugins["diffusers"].hooks  # no spec without invokeai-web


def test_without_a_built_ui_the_root_says_how_to_build_it(
    invokeai_host: Any, invokeai_config: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    from invokeai_web import app as web_app
    from invokeai_web.settings import WebSettings

    from invokeai_core import Invoker

    monkeypatch.setattr(web_app, "STATIC_DIR", tmp_path / "no-ui")
    invoker = Invoker.from_config(invokeai_config, invokeai_host)
    with web_app.ServerThread(web_app.create_app(invoker, WebSettings(port=0))) as url:
        page = httpx.get(url + "/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "web UI is not built" in page.text and "npm ci" in page.text and 'href="/docs"' in page.text
        assert httpx.get(url + "/docs").status_code == 200
        assert httpx.get(url + "/api/v1/app/version").status_code == 200
        assert httpx.get(url + "/index.html").status_code == 404
