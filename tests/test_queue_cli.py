"""`invokeai queue ...` and `invokeai sessions ...`, run for real on an isolated root folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_cli


def _edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


GRAPH = {
    "nodes": {
        "c": {"id": "c", "type": "tp_const", "value": 1},
        "s": {"id": "s", "type": "tp_scale", "factor": 3},
    },
    "edges": [_edge("c", "value", "s", "value")],
}


def _file(tmp_path: Path, data: Any, name: str = "batch.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def ok(*args: str, root: Path) -> str:
    res = run_cli(*args, root=root)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


def ok_json(*args: str, root: Path) -> Any:
    return json.loads(ok(*args, "--json", root=root))


def bad(*args: str, root: Path, needles: tuple[str, ...] = ()) -> str:
    res = run_cli(*args, root=root)
    assert res.returncode == 2, (args, res.stdout, res.stderr)
    assert res.stderr.startswith("invokeai: error: ") and res.stderr.count("\n") == 1, res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)
    return res.stderr


def test_enqueue_process_and_inspect(cli_root: Path, tmp_path: Path) -> None:
    root = cli_root
    batch = {"graph": GRAPH, "data": [[{"node_path": "c", "field_name": "value", "items": [1, 2, 3]}]]}
    first = ok_json("queue", "enqueue", _file(tmp_path, batch), root=root)
    assert (first["enqueued"], first["item_ids"]) == (3, [1, 2, 3])
    front = ok_json("queue", "enqueue", str(REPO / "examples" / "hello.json"), "--prepend", root=root)
    assert front["item_ids"] == [4] and front["priority"] == 1

    listed = ok_json("queue", "list", root=root)
    assert [i["item_id"] for i in listed] == [4, 1, 2, 3]
    page = ok("queue", "list", "--limit", "2", root=root)
    assert "(more: --cursor 1)" in page
    assert [i["item_id"] for i in ok_json("queue", "list", "--cursor", "1", root=root)] == [2, 3]
    item = ok_json("queue", "show", "2", root=root)
    assert item["status"] == "pending" and item["graph"]["nodes"]["c"]["value"] == 2

    assert ok_json("queue", "cancel", "3", root=root) == {"canceled": [3]}
    ok("queue", "pause", root=root)
    assert ok_json("queue", "status", "-q", "default", root=root)["paused"] is True
    ok("queue", "resume", root=root)

    out = ok("queue", "process", "--until-empty", root=root)
    assert out.index("item 4 [default] completed") < out.index("item 1 [default] completed")
    counts = ok_json("queue", "status", "-q", "default", root=root)
    assert (counts["completed"], counts["canceled"], counts["pending"]) == (3, 1, 0)
    text = ok("queue", "status", root=root)
    assert "default" in text and "active" in text

    assert ok_json("queue", "retry", "3", root=root) == {"retried": [5]}
    ok("queue", "process", "--until-empty", root=root)
    assert ok_json("queue", "show", "5", root=root)["status"] == "completed"

    sessions = ok_json("sessions", "list", root=root)
    assert sessions["total"] == 4
    session_id = ok_json("queue", "show", "2", root=root)["session_id"]
    shown = ok_json("sessions", "show", session_id, root=root)
    assert shown["status"] == "completed" and shown["results"]["s"]["value"] == 6.0
    human = ok("sessions", "show", session_id, root=root)
    assert "s (tp_scale): value=6.0" in human
    assert [s["id"] for s in ok_json("sessions", "list", "--query", session_id[:10], root=root)["items"]] == [
        session_id
    ]
    assert (
        ok_json("sessions", "list", "--query", "tp_scale", "--limit", "1", root=root)["total"] == 3
    )  # not the add graph

    assert "pruned 5 item(s)" in ok("queue", "prune", root=root)
    ok("queue", "enqueue", _file(tmp_path, GRAPH, "graph.json"), "--runs", "2", root=root)
    assert "deleted 2 item(s)" in ok("queue", "clear", root=root)
    assert ok_json("queue", "list", root=root) == []


def test_cancel_batches_and_all(cli_root: Path, tmp_path: Path) -> None:
    root = cli_root
    a = ok_json("queue", "enqueue", _file(tmp_path, {"graph": GRAPH, "runs": 2, "batch_id": "aaa"}), root=root)
    ok("queue", "enqueue", _file(tmp_path, {"graph": GRAPH, "runs": 2}), "-q", "other", root=root)
    assert ok_json("queue", "cancel", "--batch", "aaa", root=root) == {"canceled": a["item_ids"]}
    assert ok_json("queue", "cancel", "--all", "-q", "other", root=root) == {"canceled": [3, 4]}
    assert "other" in ok("queue", "status", root=root)


def test_bad_input_is_one_line_exit_2_and_changes_nothing(cli_root: Path, tmp_path: Path) -> None:
    root = cli_root
    ok("queue", "enqueue", _file(tmp_path, GRAPH, "graph.json"), root=root)
    before = ok_json("queue", "list", root=root)
    bad("queue", "cancel", "1", "999", root=root, needles=("999", "does not exist"))
    bad("queue", "retry", "999", root=root, needles=("999",))
    bad("queue", "status", "-q", "nosuch", root=root, needles=("unknown queue 'nosuch'", "default"))
    bad("queue", "clear", "-q", "nosuch", root=root, needles=("nosuch",))
    bad("queue", "cancel", "--batch", "nob", root=root, needles=("nob",))
    bad("queue", "cancel", root=root, needles=("--all",))
    bad("queue", "enqueue", str(tmp_path / "missing.json"), root=root, needles=("missing.json",))
    bad("queue", "enqueue", _file(tmp_path, "{nope", "broken.json"), root=root, needles=("not valid JSON",))
    unknown = {"graph": {"nodes": {"x": {"id": "x", "type": "warp_drive"}}, "edges": []}}
    bad("queue", "enqueue", _file(tmp_path, unknown, "u.json"), root=root, needles=("warp_drive", "'x'"))
    ragged = {"graph": GRAPH, "data": [[{"node_path": "c", "field_name": "nope", "items": [1]}]]}
    bad("queue", "enqueue", _file(tmp_path, ragged, "r.json"), root=root, needles=("'c'", "'nope'"))
    bad(
        "queue",
        "enqueue",
        _file(tmp_path, GRAPH, "graph.json"),
        "-q",
        "bad id",
        root=root,
        needles=("invalid queue id",),
    )
    many = {"graph": GRAPH, "runs": 5}
    bad(
        "-o",
        "max_queue_size=3",
        "queue",
        "enqueue",
        _file(tmp_path, many, "m.json"),
        root=root,
        needles=("maximum of 3",),
    )
    bad("sessions", "show", "nope", root=root, needles=("'nope'",))
    assert ok_json("queue", "list", root=root) == before


@pytest.mark.parametrize("content", [b"not a database at all" * 50, b"SQLite format 3\x00" + b"\x01" * 2000])
def test_a_corrupt_database_is_a_clear_error_naming_the_file(cli_root: Path, content: bytes) -> None:
    db = cli_root / "invokeai.db"
    db.write_bytes(content)
    for args in (("queue", "status"), ("sessions", "list"), ("run", "-f", str(REPO / "examples" / "hello.json"))):
        bad(*args, root=cli_root, needles=(str(db), "corrupt"))
    assert db.read_bytes() == content


def test_a_locked_database_is_a_clear_error_naming_the_file(cli_root: Path) -> None:
    import sqlite3

    ok("queue", "status", root=cli_root)  # create it
    db = cli_root / "invokeai.db"
    holder = sqlite3.connect(str(db), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        bad("-o", "db_busy_timeout=0.2", "queue", "status", root=cli_root, needles=(str(db), "locked"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    ok("queue", "status", root=cli_root)


def test_the_example_batch_file_expands_as_its_help_says(cli_root: Path) -> None:
    """examples/batch.json: a group zipping two data times a group of two values, 6 items, the last
    group varying fastest; `invokeai queue enqueue --help` documents the format."""
    helped = " ".join(ok("queue", "enqueue", "--help", root=cli_root).split())
    for words in ('"node_path": NODE_ID, "field_name": INPUT, "items": [VALUE, ...]', "zipped", "last group varying"):
        assert words in helped
    assert "examples/batch.json" in helped and "6 items" in helped
    result = ok_json("queue", "enqueue", str(REPO / "examples" / "batch.json"), root=cli_root)
    assert result["enqueued"] == 6
    ok("queue", "process", "--until-empty", root=cli_root)
    scaled = [
        ok_json("sessions", "show", ok_json("queue", "show", str(i), root=cli_root)["session_id"], root=cli_root)[
            "results"
        ]["scaled"]["value"]
        for i in result["item_ids"]
    ]
    assert scaled == [11, 1100, 22, 2200, 33, 3300]


def test_help_lists_the_commands(cli_root: Path) -> None:
    out = ok("queue", "--help", root=cli_root)
    for name in (
        "status",
        "list",
        "show",
        "enqueue",
        "cancel",
        "retry",
        "clear",
        "prune",
        "pause",
        "resume",
        "process",
    ):
        assert name in out
    assert "list" in ok("sessions", "--help", root=cli_root) and "show" in ok("sessions", "--help", root=cli_root)


def test_move_items_front_back_and_before(cli_root: Path, tmp_path: Path) -> None:
    root = cli_root
    batch = {"graph": GRAPH, "data": [[{"node_path": "c", "field_name": "value", "items": [1, 2, 3, 4]}]]}
    a, b, c, d = ok_json("queue", "enqueue", _file(tmp_path, batch), root=root)["item_ids"]
    moved = ok_json("queue", "move", str(d), "--front", root=root)
    assert moved["pending_order"] == [d, a, b, c] and moved["item"]["item_id"] == d
    assert "moved item 1 to place 4 of 4" in ok("queue", "move", str(a), "--back", root=root)
    assert ok_json("queue", "move", str(a), "--before", str(b), root=root)["pending_order"] == [d, a, b, c]
    assert [i["item_id"] for i in ok_json("queue", "list", root=root)] == [d, a, b, c]  # stored
    ok("queue", "process", "--until-empty", root=root)
    shown = [ok_json("queue", "show", str(i), root=root) for i in (d, a, b, c)]
    starts = [s["started_at"] for s in shown]
    assert starts == sorted(starts)  # the processor took them in the moved order
    # bad moves: one line, exit 2, nothing changed
    ok_json("queue", "enqueue", _file(tmp_path, batch), root=root)
    before = ok_json("queue", "list", root=root)
    bad("queue", "move", str(a), "--front", root=root, needles=(f"queue item {a} is completed", "only pending"))
    bad("queue", "move", "999", "--back", root=root, needles=("queue item 999 does not exist",))
    bad("queue", "move", "5", "--before", "999", root=root, needles=("999",))
    bad("queue", "move", "5", root=root, needles=("exactly one of --front, --back or --before",))
    bad("queue", "move", "5", "--front", "--before", "6", root=root, needles=("exactly one",))
    bad("queue", "move", "5", "--before", "5", root=root, needles=("before itself",))
    assert ok_json("queue", "list", root=root) == before
