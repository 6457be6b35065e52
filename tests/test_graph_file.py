"""Graph files that say what they need: versions per node, migrations, the missing-plugin message,
and the published JSON Schema (`invokeai schema graph`), through the real CLI where a user would."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import REPO, run_cli, write_fake_plugin
from graph_file_nodes import BlurV2, NumberInvocation, blur_to_1_5, blur_to_2
from PIL import Image

from invokeai_core import Graph, GraphError, MissingPluginError, hookimpl
from invokeai_core.config import load_config
from invokeai_core.graph_file import GRAPH_SCHEMA_VERSION
from invokeai_core.plugins.host import PluginHost

TESTS = Path(__file__).resolve().parent

MIGRATING_PLUGIN = """
from invokeai_core import hookimpl


@hookimpl
def register_invocations(register):
    from graph_file_nodes import BlurV2, NumberInvocation

    register(BlurV2)
    register(NumberInvocation)


@hookimpl
def register_node_migrations(register):
    from graph_file_nodes import blur_to_1_5, blur_to_2

    register("gf_blur", "1.5.0", blur_to_1_5)
    register("gf_blur", "2.0.0", blur_to_2, renamed_inputs={"radius": "size"})
"""


def _host(tmp_path: Path, *, migrations: bool = True) -> PluginHost:
    plugin = types.ModuleType("gf")

    @hookimpl
    def register_invocations(register: Any) -> None:
        register(BlurV2)
        register(NumberInvocation)

    @hookimpl
    def register_node_migrations(register: Any) -> None:
        register("gf_blur", "2.0.0", blur_to_2, renamed_inputs={"radius": "size"})
        register("gf_blur", "1.5.0", blur_to_1_5)  # registered out of order: run in version order

    plugin.register_invocations = register_invocations  # type: ignore[attr-defined]
    if migrations:
        plugin.register_node_migrations = register_node_migrations  # type: ignore[attr-defined]
    host = PluginHost(load_config(root=tmp_path, environ={}), allowlist=set(), strict=True).load()
    host.register_plugin(plugin, "gf", version="2.0.0")
    return host


def old_file(version: str = "1.0.0") -> dict[str, Any]:
    """A file saved when `gf_blur` was at `version` (its input was `radius`)."""
    info = {"version": version, "plugin": "gf", "distribution": "invokeai-gf", "distribution_version": "1.0.0"}
    return {
        "schema_version": 2,
        "nodes": {
            "n": {"id": "n", "type": "gf_number", "number": 4},
            "b": {"id": "b", "type": "gf_blur", "radius": 3},
            "c": {"id": "c", "type": "gf_blur"},
        },
        "edges": [{"source": {"node_id": "n", "field": "number"}, "destination": {"node_id": "c", "field": "radius"}}],
        "node_versions": {"n": {**info, "version": "1.0.0"}, "b": info, "c": info},
    }


def test_a_saved_graph_records_versions_and_loads_back(tmp_path: Path) -> None:
    host = _host(tmp_path)
    graph = Graph.from_dict(
        {
            "nodes": {"n": {"id": "n", "type": "gf_number"}, "b": {"id": "b", "type": "gf_blur", "size": 1.5}},
            "edges": [],
        },
        host.registry,
    )
    data = graph.to_file_dict()
    assert data["schema_version"] == GRAPH_SCHEMA_VERSION
    assert data["node_versions"]["b"] == {"version": "2.0.0", "plugin": "gf"}  # registered at run time: no dist
    again = Graph.from_dict(json.loads(json.dumps(data)), host.registry)
    assert again.to_dict() == graph.to_dict()
    jsonschema.validate(data, Graph.file_schema(host.registry))


def test_old_nodes_are_migrated_in_version_order_and_edges_follow_renames(tmp_path: Path) -> None:
    host = _host(tmp_path)
    graph = Graph.from_dict(old_file("1.0.0"), host.registry)
    assert graph.nodes["b"].size == 3.0 and graph.nodes["b"].mode == "gaussian"  # 1.5.0 then 2.0.0
    assert [str(e) for e in graph.edges] == ["n.number -> c.size"]
    # saved at 1.5.0: only the 2.0.0 step runs (mode stays the default)
    graph = Graph.from_dict(old_file("1.5.0"), host.registry)
    assert graph.nodes["b"].size == 3.0 and graph.nodes["b"].mode == "box"


def test_without_migrations_an_old_node_is_refused_naming_the_field(tmp_path: Path) -> None:
    host = _host(tmp_path, migrations=False)
    with pytest.raises(GraphError, match="node 'b', field 'radius': unknown field"):
        Graph.from_dict(old_file("1.0.0"), host.registry)


def test_files_without_versions_load_as_version_1_unmigrated(tmp_path: Path) -> None:
    host = _host(tmp_path)
    plain = {"nodes": {"b": {"id": "b", "type": "gf_blur", "size": 2}}, "edges": []}
    assert Graph.from_dict(plain, host.registry).nodes["b"].size == 2.0
    assert Graph.from_dict({**plain, "schema_version": 1}, host.registry).nodes["b"].size == 2.0
    # a schema-1 file with a 1.0 field is not migrated (it has no versions to migrate from)
    with pytest.raises(GraphError, match="radius"):
        Graph.from_dict({"nodes": {"b": {"id": "b", "type": "gf_blur", "radius": 3}}, "edges": []}, host.registry)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 3}, "schema version 3, but this invokeai-core reads up to version 2: upgrade"),
        ({"schema_version": "2"}, "'schema_version' must be a positive integer"),
        ({"node_versions": {"ghost": {"version": "1.0.0"}}}, "names node 'ghost', which is not in 'nodes'"),
        ({"node_versions": {"b": {"version": "1.0.0", "colour": "red"}}}, "unknown 'node_versions' key"),
        ({"node_versions": {"b": {"version": "one"}}}, "node 'b', field 'version': 'node_versions': 'one' is not"),
        ({"extra": 1}, "unknown graph key"),
        ({"ui": [1]}, "'ui' must be an object"),
        ({"$schema": 3}, "'$schema' must be a string"),
    ],
)
def test_malformed_files_are_refused_clearly(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    host = _host(tmp_path)
    data = {**old_file(), **change}
    with pytest.raises(GraphError) as e:
        Graph.from_dict(data, host.registry)
    assert message in str(e.value)


def test_a_raising_migration_names_the_node_the_step_and_the_plugin(tmp_path: Path) -> None:
    host = _host(tmp_path)
    data = old_file("1.0.0")
    data["nodes"]["b"]["radius"] = "wide"  # float("wide") raises inside blur_to_2
    with pytest.raises(GraphError, match=r"node 'b': the migration of 'gf_blur' to version 2.0.0 \(plugin 'gf'\)"):
        Graph.from_dict(data, host.registry)


def test_a_missing_node_type_names_the_distribution(tmp_path: Path) -> None:
    host = _host(tmp_path)
    data = old_file()
    data["nodes"]["b"]["type"] = "gf_sharpen"
    with pytest.raises(MissingPluginError) as e:
        Graph.from_dict(data, host.registry)
    assert e.value.distribution == "invokeai-gf" and e.value.node_type == "gf_sharpen"
    assert "needs the distribution invokeai-gf 1.0.0, install it: invokeai plugins install 'invokeai-gf>=1.0.0'" in str(
        e.value
    )
    # a distribution that is installed but does not provide the type says so
    data["node_versions"]["b"] = {"version": "1.0.0", "distribution": "pydantic"}
    with pytest.raises(MissingPluginError, match=r"pydantic .* is installed but provides no 'gf_sharpen'"):
        Graph.from_dict(data, host.registry)


def _cli_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    write_fake_plugin(site, "invokeai-gf", "gf", "invokeai_gf_hooks", MIGRATING_PLUGIN, version="2.0.0")
    return {"PYTHONPATH": f"{site}:{TESTS}"}


def test_cli_runs_an_old_file_through_the_migrations(tmp_path: Path, cli_root: Path) -> None:
    env = _cli_env(tmp_path)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old_file("1.0.0")))
    res = run_cli("run", "-f", str(path), "--json", root=cli_root, env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["status"] == "completed" and out["results"]["b"]["size"] == 3.0 and out["results"]["c"]["size"] == 4.0


def test_cli_names_the_distribution_to_install_and_exits_2(tmp_path: Path, cli_root: Path) -> None:
    path = tmp_path / "needs.json"
    path.write_text(json.dumps(old_file("1.0.0")))
    res = run_cli("run", "-f", str(path), root=cli_root)  # invokeai-gf is not installed here
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "node type 'gf_number' needs the distribution invokeai-gf 1.0.0" in lines[0]
    assert "invokeai plugins install 'invokeai-gf>=1.0.0'" in lines[0]


def _schema(cli_root: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    res = run_cli("schema", "graph", *args, root=cli_root, env=env)
    assert res.returncode == 0, res.stderr
    schema: dict[str, Any] = json.loads(res.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_every_example_validates_against_the_published_schema(cli_root: Path) -> None:
    schema = _schema(cli_root)
    generic = _schema(cli_root, "--no-nodes")
    assert "add" in schema["$defs"] and "add" not in generic["$defs"]
    examples = sorted((REPO / "examples").glob("*.json"))
    assert len(examples) >= 4
    for path in examples:
        data = json.loads(path.read_text())
        graph = data["graph"] if "data" in data else data  # a batch file holds a graph
        jsonschema.validate(graph, schema)
        jsonschema.validate(graph, generic)


def test_the_schema_checks_node_fields_and_the_format(cli_root: Path) -> None:
    validator = jsonschema.Draft202012Validator(_schema(cli_root))
    good = json.loads((REPO / "examples" / "hello.json").read_text())
    assert not list(validator.iter_errors(good))
    bad_value = json.loads(json.dumps(good))
    bad_value["nodes"]["sum"]["b"] = "three"
    assert any("'three' is not of type 'integer'" in e.message for e in validator.iter_errors(bad_value))
    bad_field = json.loads(json.dumps(good))
    bad_field["nodes"]["sum"]["c"] = 1
    assert list(validator.iter_errors(bad_field))
    assert list(validator.iter_errors({**good, "schema_version": GRAPH_SCHEMA_VERSION + 1}))
    assert list(validator.iter_errors({**good, "node_versions": {"sum": {"plugin": "nodes"}}}))  # no version


def test_images_embed_a_versioned_graph_that_validates_and_reruns(tmp_path: Path, cli_root: Path) -> None:
    out = tmp_path / "out"
    res = run_cli(
        "run", "blank_image --width 8 --height 8 | save_image", "--out", str(out), "--json", root=cli_root, timeout=120
    )
    assert res.returncode == 0, res.stderr
    embedding = []
    for path in sorted(out.glob("*.png")):
        with Image.open(path) as img:
            text = getattr(img, "text", {}).get("invokeai_graph")
        if text:
            embedding.append((path, json.loads(text)))
    [(png, embedded)] = embedding  # the final image of save_image; the blank one is intermediate
    assert embedded["schema_version"] == GRAPH_SCHEMA_VERSION
    versions = embedded["node_versions"]
    assert {v["distribution"] for v in versions.values()} == {"invokeai-nodes"}
    assert all(v["version"] and v["distribution_version"] for v in versions.values())
    jsonschema.validate(embedded, _schema(cli_root))
    again = run_cli("run", "--from-image", str(png), "--json", root=cli_root, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "completed"


def test_schema_command_imports_nothing_heavy(cli_root: Path) -> None:
    code = (
        "import sys; from invokeai_core.cli.main import main\n"
        "try:\n    main(['schema', 'graph', '--no-nodes'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'diffusers', 'fastapi', 'jsonschema') if m in sys.modules]\n"
        "sys.stderr.write(repr(heavy))"
    )
    import subprocess

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stderr.strip().endswith("[]"), res.stderr
