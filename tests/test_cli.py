"""The `invokeai` executable, run for real in subprocesses with an isolated root folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import INVOKEAI, REPO, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invokeai_core.version import __version__


def graph_file(tmp_path: Path, graph: dict[str, object], name: str = "graph.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(graph))
    return str(path)


def edge(s: str, sf: str, d: str, df: str) -> dict[str, dict[str, str]]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


def test_version(cli_root: Path) -> None:
    res = run_cli("--version", root=cli_root)
    assert res.returncode == 0 and __version__ in res.stdout


def test_plugins_lists_name_version_hooks_status(cli_root: Path) -> None:
    res = run_cli("plugins", root=cli_root)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("testpack "))
    assert "invokeai-testpack" in line and "1.2.3" in line and "loaded" in line and "register_invocations" in line
    data = json.loads(run_cli("plugins", "--json", root=cli_root).stdout)
    tp = next(p for p in data if p["name"] == "testpack")
    assert tp["status"] == "loaded" and "tp_const" in tp["nodes"]


def test_nodes_lists_types_and_shows_one(cli_root: Path) -> None:
    res = run_cli("nodes", root=cli_root)
    assert res.returncode == 0
    types = {ln.split()[0] for ln in res.stdout.splitlines()[1:]}
    assert {"iterate", "collect", "tp_const", "add", "range"} <= types
    detail = run_cli("nodes", "add", root=cli_root)
    assert detail.returncode == 0
    text = detail.stdout
    assert "add: Add Integers" in text and "plugin nodes" in text
    assert "Inputs:" in text and "First number" not in text  # invokeai-nodes words it its own way
    assert "--a INTEGER" in text and "--b INTEGER" in text and "Outputs (integer_output):" in text and "value" in text
    assert "Usage: add [OPTIONS]" in text and "--link SOURCE FIELD DEST_FIELD" in text
    schema = json.loads(run_cli("nodes", "add", "--json", root=cli_root).stdout)
    assert schema["properties"]["type"]["const"] == "add"
    assert schema["plugin"] == "nodes" and schema["category"] == "math" and schema["version"] == "1.0.0"
    assert schema["output"]["properties"]["value"]["type"] == "integer"
    missing = run_cli("nodes", "no_such_node", root=cli_root)
    assert missing.returncode == 2 and "no_such_node" in missing.stderr and missing.stderr.count("\n") == 1


def test_run_a_graph_file(cli_root: Path) -> None:
    res = run_cli("run", "-f", str(REPO / "examples" / "hello.json"), root=cli_root)
    assert res.returncode == 0, res.stderr
    assert "sum (add): value=5" in res.stdout and "completed" in res.stdout


def test_run_json_output_shape(cli_root: Path) -> None:
    res = run_cli("run", "-f", str(REPO / "examples" / "iterate.json"), "--json", root=cli_root)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"session_id", "status", "results", "errors"}
    assert out["status"] == "completed" and out["errors"] == {}
    assert out["results"]["gather"]["collection"] == [1, 11, 21]
    assert [r["value"] for r in out["results"]["times10"]] == [0, 10, 20]


def test_run_from_stdin(cli_root: Path) -> None:
    graph = {"nodes": {"x": {"id": "x", "type": "tp_const", "value": 1.5}}, "edges": []}
    res = run_cli("run", "-f", "-", "--json", root=cli_root, input=json.dumps(graph))
    assert res.returncode == 0 and json.loads(res.stdout)["results"]["x"]["value"] == 1.5


def test_a_failed_session_exits_1_with_the_error(tmp_path: Path, cli_root: Path) -> None:
    graph = {"nodes": {"f": {"id": "f", "type": "tp_fail", "message": "broken on purpose"}}, "edges": []}
    res = run_cli("run", "-f", graph_file(tmp_path, graph), "--json", root=cli_root)
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert out["status"] == "failed"
    assert out["errors"]["f"]["type"] == "RuntimeError" and out["errors"]["f"]["message"] == "broken on purpose"
    assert "Traceback" in out["errors"]["f"]["traceback"]
    human = run_cli("run", "-f", graph_file(tmp_path, graph), root=cli_root)
    assert human.returncode == 1 and "f: error: RuntimeError: broken on purpose" in human.stderr


BAD_GRAPHS = {
    "unknown type": ({"nodes": {"n": {"id": "n", "type": "warp_drive"}}, "edges": []}, ["'n'", "warp_drive"]),
    "unknown field": ({"nodes": {"n": {"id": "n", "type": "add", "c": 1}}, "edges": []}, ["'n'", "'c'"]),
    "bad value": ({"nodes": {"n": {"id": "n", "type": "add", "a": "two"}}, "edges": []}, ["'n'", "'a'"]),
    "type mismatch": (
        {
            "nodes": {"f": {"id": "f", "type": "tp_const"}, "i": {"id": "i", "type": "add"}},
            "edges": [edge("f", "value", "i", "a")],
        },
        ["'i'", "'a'", "float", "int"],
    ),
    "cycle": (
        {
            "nodes": {"a": {"id": "a", "type": "add"}, "b": {"id": "b", "type": "add"}},
            "edges": [edge("a", "value", "b", "a"), edge("b", "value", "a", "a")],
        },
        ["cycle"],
    ),
    "missing input": ({"nodes": {"s": {"id": "s", "type": "tp_scale"}}, "edges": []}, ["'s'", "'value'", "required"]),
    "input fed twice": (
        {
            "nodes": {
                "a": {"id": "a", "type": "add"},
                "b": {"id": "b", "type": "add"},
                "c": {"id": "c", "type": "add"},
            },
            "edges": [edge("a", "value", "c", "a"), edge("b", "value", "c", "a")],
        },
        ["'c'", "'a'", "already connected"],
    ),
    "not json": ("{nodes: ", ["not valid JSON"]),
}


@pytest.mark.parametrize("name", sorted(BAD_GRAPHS))
def test_bad_graphs_exit_2_with_one_clear_line(name: str, tmp_path: Path, cli_root: Path) -> None:
    graph, needles = BAD_GRAPHS[name]
    path = tmp_path / "bad.json"
    path.write_text(graph if isinstance(graph, str) else json.dumps(graph))
    res = run_cli("run", "-f", str(path), root=cli_root)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("invokeai: error: ")
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


def test_run_with_a_missing_file_exits_2(tmp_path: Path, cli_root: Path) -> None:
    res = run_cli("run", "-f", str(tmp_path / "nope.json"), root=cli_root)
    assert res.returncode == 2 and "nope.json" in res.stderr


def test_config_show_precedence(cli_root: Path) -> None:
    (cli_root / "invokeai.toml").write_text('cache_size = 10\nlog_level = "debug"\n[services]\nimages = "local"\n')
    res = run_cli(
        "-o",
        "cache_size=30",
        "config",
        "show",
        "--json",
        root=cli_root,
        env={"INVOKEAI_CACHE_SIZE": "20", "INVOKEAI_LOG_LEVEL": "warning"},
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["config"]["cache_size"] == 30 and out["sources"]["cache_size"] == "cli"
    assert out["config"]["log_level"] == "warning" and out["sources"]["log_level"] == "env INVOKEAI_LOG_LEVEL"
    assert out["sources"]["services.images"].startswith("file ")
    text = run_cli("config", "show", root=cli_root).stdout
    assert "cache_size" in text and "file" in text


def test_bad_configuration_exits_2(cli_root: Path) -> None:
    (cli_root / "invokeai.toml").write_text("cache_sise = 10\n")
    res = run_cli("config", "show", root=cli_root)
    assert res.returncode == 2 and "cache_sise" in res.stderr
    (cli_root / "invokeai.toml").write_text('[services]\nimages = "nowhere"\n')
    res = run_cli("run", "-f", str(REPO / "examples" / "hello.json"), root=cli_root)
    assert res.returncode == 2 and "nowhere" in res.stderr and "available: local" in res.stderr
    (cli_root / "invokeai.toml").write_text('[services]\nimages = "s3"\n')
    # as if invokeai-s3 were not installed (it may be, in the development environment)
    res = run_cli(
        "run", "-f", str(REPO / "examples" / "hello.json"), root=cli_root, env={"INVOKEAI_LOAD_PLUGINS": "nodes"}
    )
    assert res.returncode == 2 and "pip install invokeai-s3" in res.stderr


def test_help_builds_no_node_command_and_a_pipeline_imports_nothing_heavy(cli_root: Path) -> None:
    from test_lazy_imports import HEAVY, PROBE

    def loaded(argv: list[str], modules: list[str]) -> list[str]:
        code = PROBE.format(argv=argv, body="from invokeai_core.cli.main import main; main()", heavy=modules)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
        env.update(INVOKEAI_ROOT=str(cli_root), HF_HUB_OFFLINE="1")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        line = next((ln for ln in res.stderr.splitlines() if ln.startswith("MODULES=")), None)
        assert line is not None, res.stderr
        found: list[str] = json.loads(line[len("MODULES=") :])
        return found

    cli_modules = ["invokeai_core.cli.node_commands", "invokeai_core.cli.pipeline", "invokeai_nodes.math"]
    assert loaded(["invokeai", "--help"], cli_modules) == []
    assert loaded(["invokeai", "run", "--help"], cli_modules) == []
    assert loaded(["invokeai", "run", "add --a 1 --b 2"], HEAVY) == []


# -- text that cannot be encoded as UTF-8 ---------------------------------------------------------
#: Text with at least one lone surrogate (what invalid UTF-8 in argv, or a JSON "\ud800", becomes).
_LONE = st.integers(0xD800, 0xDFFF).map(chr)
UNENCODABLE = st.tuples(st.text(max_size=5), _LONE, st.text(max_size=5)).map("".join)


def _exit_status(argv: list[str]) -> int:
    from invokeai_core.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=UNENCODABLE, where=st.sampled_from(["option", "pipeline", "graph"]))
def test_unencodable_text_exits_2_with_one_line(
    text: str, where: str, tmp_path: Path, cli_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    if where == "graph":  # JSON escapes in a graph file: refused by the graph, naming node and field
        path = tmp_path / "g.json"
        path.write_text(json.dumps({"nodes": {"c": {"type": "collect", "item": text}}}))
        argv = ["--root", str(cli_root), "run", "-f", str(path)]
    elif where == "pipeline":
        argv = ["--root", str(cli_root), "run", f"collect --id {text}"]
    else:
        argv = ["--root", str(cli_root), "-o", f"db_path={text}", "run", "-f", "-"]
    assert _exit_status(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("invokeai: error: ") and "lone surrogate" in err
    if where == "graph":
        assert "node 'c', field 'item'" in err
    assert not (cli_root / "invokeai.db").exists() or where == "graph"


def test_bytes_that_are_not_utf8_exit_2(tmp_path: Path, cli_root: Path) -> None:
    """The real executable, given invalid UTF-8 in an argument, a graph file and stdin."""
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"nodes": {"c": {"type": "collect", "item": "\xed\xa0\x80"}}}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(INVOKEAI_ROOT=str(cli_root), HF_HUB_OFFLINE="1")
    for argv, stdin in (
        ([b"run", b"collect --id \xff"], None),
        ([b"run", b"-f", str(bad).encode()], None),
        ([b"run", b"-f", b"-"], bad.read_bytes()),
    ):
        res = subprocess.run([INVOKEAI.encode(), *argv], input=stdin, capture_output=True, env=env, timeout=60)
        err = res.stderr.decode("utf-8", "backslashreplace")
        assert res.returncode == 2, err
        assert err.count("\n") == 1 and ("not valid UTF-8" in err or "not UTF-8 text" in err), err
