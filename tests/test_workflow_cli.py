"""`invokeai workflows ...` and `invokeai run --workflow`, run for real on an isolated root folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_queue_cli import _file, bad, ok, ok_json

WORKFLOW: dict[str, Any] = {
    "name": "Scaler",
    "description": "a constant, scaled",
    "graph": {
        "nodes": {
            "c": {"id": "c", "type": "tp_const", "value": 1},
            "s": {"id": "s", "type": "tp_scale", "factor": 3},
        },
        "edges": [{"source": {"node_id": "c", "field": "value"}, "destination": {"node_id": "s", "field": "value"}}],
    },
    "inputs": [
        {"name": "start", "node_id": "c", "field": "value", "description": "What to scale"},
        {"name": "factor", "node_id": "s", "field": "factor"},
    ],
}


def test_save_list_get_versions_delete(cli_root: Path, tmp_path: Path) -> None:
    root = cli_root
    first = ok_json("workflows", "save", _file(tmp_path, WORKFLOW, "wf.json"), root=root)
    assert (first["id"], first["version"]) == ("scaler", 1)
    assert "saved workflow scaler version 2 (2 input(s))" in ok(
        "workflows", "save", _file(tmp_path, {**WORKFLOW, "name": "Scaler 2"}, "wf2.json"), "--id", "scaler", root=root
    )
    listed = ok_json("workflows", "list", root=root)
    assert [(w["id"], w["version"], w["versions"], w["name"]) for w in listed["items"]] == [
        ("scaler", 2, 2, "Scaler 2")
    ]
    shown = ok("workflows", "get", "Scaler 2", root=root)
    assert "workflow scaler (version 2): Scaler 2" in shown and "input start: c.value - What to scale" in shown
    assert ok_json("workflows", "get", "scaler", "--version", "1", root=root)["name"] == "Scaler"
    assert [v["version"] for v in ok_json("workflows", "versions", "scaler", root=root)] == [1, 2]
    # what `get --json` prints, `save` takes back
    exported = ok("workflows", "get", "scaler", "--json", root=root)
    assert ok_json("workflows", "save", _file(tmp_path, exported, "back.json"), root=root)["version"] == 3
    assert "deleted workflow scaler (3 version(s))" in ok("workflows", "delete", "scaler", root=root)
    assert ok_json("workflows", "list", root=root)["total"] == 0
    bad("workflows", "get", "scaler", root=root, needles=("workflow 'scaler' does not exist",))
    bad("workflows", "delete", "scaler", root=root, needles=("workflow 'scaler' does not exist",))


def test_a_bad_exposed_input_is_refused_on_save_naming_it(cli_root: Path, tmp_path: Path) -> None:
    wrong = {**WORKFLOW, "inputs": [{"name": "speed", "node_id": "s", "field": "velocity"}]}
    bad(
        "workflows",
        "save",
        _file(tmp_path, wrong),
        root=cli_root,
        needles=("workflow input 'speed'", "node 's', field 'velocity'", "no input named 'velocity'"),
    )
    missing = {**WORKFLOW, "inputs": [{"name": "speed", "node_id": "nope", "field": "value"}]}
    bad("workflows", "save", _file(tmp_path, missing), root=cli_root, needles=("'speed'", "no node 'nope'"))
    bad("workflows", "save", _file(tmp_path, "[1]"), root=cli_root, needles=("JSON object",))
    assert ok_json("workflows", "list", root=cli_root)["total"] == 0


def test_run_a_workflow_with_inputs(cli_root: Path, tmp_path: Path) -> None:
    root = cli_root
    ok("workflows", "save", _file(tmp_path, WORKFLOW), root=root)
    out = ok_json("run", "--workflow", "scaler", "--set", "start=5", "--set", "factor=2.5", root=root)
    assert out["status"] == "completed" and out["results"]["s"]["value"] == 12.5
    by_name = ok_json("run", "--workflow", "Scaler", root=root)  # the saved values
    assert by_name["results"]["s"]["value"] == 3
    bad(
        "run",
        "--workflow",
        "scaler",
        "--set",
        "speed=1",
        root=root,
        needles=("workflow input 'speed'", "no such input (inputs: factor, start)"),
    )
    bad(
        "run",
        "--workflow",
        "scaler",
        "--set",
        "start=lots",
        root=root,
        needles=("workflow input 'start' (node 'c', field 'value')", "'lots' is invalid"),
    )
    bad("run", "--workflow", "nope", root=root, needles=("workflow 'nope' does not exist",))
    bad("run", "--workflow", "scaler", "--set", "start", root=root, needles=("use NAME=VALUE",))
    bad("run", "--set", "start=1", root=root, needles=("--set and --version go with --workflow",))
    assert ok_json("sessions", "list", root=root)["total"] == 2  # the refused runs made no session


def test_enqueue_a_workflow_and_process_it(cli_root: Path, tmp_path: Path) -> None:
    root = cli_root
    ok("workflows", "save", _file(tmp_path, WORKFLOW), root=root)
    result = ok_json("workflows", "enqueue", "scaler", "--set", "start=2", "--runs", "3", root=root)
    assert result["enqueued"] == 3
    bad("workflows", "enqueue", "scaler", "--set", "factor=[1]", root=root, needles=("'factor'", "is invalid"))
    ok("queue", "process", "--until-empty", root=root)
    for item_id in result["item_ids"]:
        item = ok_json("queue", "show", str(item_id), root=root)
        assert item["status"] == "completed"
        assert item["field_values"] == [{"node_path": "c", "field_name": "value", "value": 2.0}]
        session = json.loads(ok("sessions", "show", item["session_id"], "--json", root=root))
        assert session["results"]["s"]["value"] == 6
