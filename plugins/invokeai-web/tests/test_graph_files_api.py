"""Graph files over the real server: versioned saves, loading with migrations, the missing-pack
answer, and the JSON Schema in the OpenAPI and at GET /graphs/schema."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from conftest import Server

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    InputField,
    InvocationContext,
    OutputField,
    hookimpl,
    invocation,
    invocation_output,
)


@invocation_output("wg_size_output")
class WgSizeOutput(BaseInvocationOutput):
    size: float = OutputField(description="The size used")


@invocation("wg_blur", title="Blur", category="tests", version="2.0.0")
class WgBlur(BaseInvocation):
    """2.0.0 renamed `radius` to `size`."""

    size: float = InputField(default=2.0, description="Blur size")

    def invoke(self, context: InvocationContext) -> WgSizeOutput:
        return WgSizeOutput(size=self.size)


def _radius_to_size(node: dict[str, Any]) -> dict[str, Any]:
    if "radius" in node:
        node["size"] = float(node.pop("radius"))
    return node


@pytest.fixture
def migrating_plugin(invokeai_register_plugin: Callable[..., Any]) -> None:
    plugin = types.ModuleType("wg")

    @hookimpl
    def register_invocations(register: Any) -> None:
        register(WgBlur)

    @hookimpl
    def register_node_migrations(register: Any) -> None:
        register("wg_blur", "2.0.0", _radius_to_size, renamed_inputs={"radius": "size"})

    plugin.register_invocations = register_invocations  # type: ignore[attr-defined]
    plugin.register_node_migrations = register_node_migrations  # type: ignore[attr-defined]
    invokeai_register_plugin(plugin, "wg")


def test_save_stamps_versions_and_load_migrates(server: Server, migrating_plugin: None) -> None:
    graph = {
        "nodes": {"b": {"id": "b", "type": "wg_blur", "size": 1.5}, "i": {"id": "i", "type": "wt_int"}},
        "edges": [],
    }
    with server.client() as c:
        saved = c.post("/graphs/file", json=graph)
        assert saved.status_code == 200, saved.text
        data = saved.json()
        assert data["schema_version"] == 2 and data["node_versions"]["b"]["version"] == "2.0.0"
        assert data["node_versions"]["b"]["plugin"] == "wg"
        schema = c.get("/graphs/schema").json()
        jsonschema.validate(data, schema)
        # a file saved when wg_blur was 1.0.0, with an edge into the old input
        old = {
            "schema_version": 2,
            "nodes": {"n": {"id": "n", "type": "wg_blur"}, "b": {"id": "b", "type": "wg_blur", "radius": 3}},
            "edges": [
                {"source": {"node_id": "n", "field": "size"}, "destination": {"node_id": "b", "field": "radius"}}
            ],
            "node_versions": {"b": {"version": "1.0.0", "plugin": "wg"}},
        }
        loaded = c.post("/graphs/load", json=old)
        assert loaded.status_code == 200, loaded.text
        body = loaded.json()
        assert body["graph"]["nodes"]["b"]["size"] == 3.0 and "radius" not in body["graph"]["nodes"]["b"]
        assert body["graph"]["edges"][0]["destination"] == {"node_id": "b", "field": "size"}
        assert body["changed"] == [{"node_id": "b", "node_type": "wg_blur", "saved": "1.0.0", "installed": "2.0.0"}]
        # the sessions route reads the same files
        created = c.post("/sessions", json=old)
        assert created.status_code == 201, created.text
        assert created.json()["graph"]["nodes"]["b"]["size"] == 3.0
        # a file without versions loads as it is
        plain = c.post("/graphs/load", json={"nodes": {"b": {"id": "b", "type": "wg_blur", "size": 4}}, "edges": []})
        assert plain.json()["changed"] == [] and plain.json()["schema_version"] == 1


def test_a_missing_pack_is_422_naming_the_distribution(server: Server) -> None:
    needs = {
        "schema_version": 2,
        "nodes": {"s": {"id": "s", "type": "sunset_gradient", "width": 8}},
        "edges": [],
        "node_versions": {
            "s": {
                "version": "1.0.0",
                "plugin": "sunset",
                "distribution": "invokeai-sunset",
                "distribution_version": "0.3.0",
            }
        },
    }
    with server.client() as c:
        for path in ("/graphs/load", "/sessions"):
            res = c.post(path, json=needs)
            assert res.status_code == 422, res.text
            [item] = res.json()["detail"]
            assert item["type"] == "MissingPluginError" and item["loc"] == ["body", "s", "type"]
            assert item["node_type"] == "sunset_gradient" and item["distribution"] == "invokeai-sunset"
            assert item["distribution_version"] == "0.3.0"
            assert "invokeai plugins install 'invokeai-sunset>=0.3.0'" in item["msg"]
        newer = c.post("/graphs/load", json={**needs, "schema_version": 9})
        assert newer.status_code == 422 and "schema version 9" in newer.text


def test_the_openapi_describes_graph_files(server: Server) -> None:
    with server.client() as c:
        schema = c.get(server.url + "/openapi.json").json()
    components = schema["components"]["schemas"]
    graph_file = components["GraphFile"]
    assert graph_file["properties"]["node_versions"]["additionalProperties"] == {
        "$ref": "#/components/schemas/NodeVersion"
    }
    assert graph_file["properties"]["nodes"]["additionalProperties"] == {"$ref": "#/components/schemas/AnyInvocation"}
    assert components["NodeVersion"]["required"] == ["version"]
    load = schema["paths"]["/api/v1/graphs/load"]["post"]
    assert load["requestBody"]["content"]["application/json"]["schema"]["allOf"] == [
        {"$ref": "#/components/schemas/GraphFile"}
    ]
    assert "/api/v1/graphs/schema" in schema["paths"] and "/api/v1/graphs/file" in schema["paths"]
