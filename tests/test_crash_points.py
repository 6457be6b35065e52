"""kill -9 at chosen points (`INVOKEAI_CRASH_AT`, see `invokeai_core.crashpoints`), then a restart:
every accepted item completes or is in its documented state, none is stuck, no image file or record
is left without the other, and `PRAGMA integrity_check` is ok.

The kill between two nodes is in test_crash_recovery.py; of `invokeai serve` with queued items too;
a 10,000-node session killed mid-run in test_crash_resume_long.py."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from test_crash_recovery import _query

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

KILLED = -signal.SIGKILL


def _write(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def _image_batch(runs: int = 1) -> dict[str, Any]:
    graph = {"nodes": {"img": {"id": "img", "type": "tp_gradient", "width": 8, "height": 4}}, "edges": []}
    return {"graph": graph, "runs": runs}


def _files(root: Path) -> tuple[set[str], set[str]]:
    images = root / "outputs" / "images"
    names = {p.name for p in images.iterdir()} if images.is_dir() else set()
    return {n for n in names if n.endswith(".png")}, {n for n in names if n.endswith(".tmp")}


def _records(root: Path) -> set[str]:
    return {r[0] for r in _query(root / "invokeai.db", "SELECT image_name FROM image_records")}


def _intact(root: Path) -> None:
    assert _query(root / "invokeai.db", "PRAGMA integrity_check") == [("ok",)]


def test_killed_while_enqueueing_a_batch_enqueues_none_of_it(cli_root: Path, tmp_path: Path) -> None:
    batch = _write(tmp_path / "batch.json", _image_batch(runs=50))
    res = run_cli("queue", "enqueue", batch, root=cli_root, env={"INVOKEAI_CRASH_AT": "queue.enqueue"})
    assert res.returncode == KILLED, res.stderr
    assert _query(cli_root / "invokeai.db", "SELECT count(*) FROM queue_items") == [(0,)]  # all or nothing
    assert _query(cli_root / "invokeai.db", "SELECT count(*) FROM queue_graphs") == [(0,)]
    _intact(cli_root)
    again = run_cli("queue", "enqueue", batch, "--json", root=cli_root)
    assert again.returncode == 0, again.stderr
    assert len(json.loads(again.stdout)["item_ids"]) == 50
    done = run_cli("queue", "process", "--until-empty", root=cli_root, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _query(cli_root / "invokeai.db", "SELECT status, count(*) FROM queue_items GROUP BY status") == [
        ("completed", 50)
    ]
    _intact(cli_root)


@pytest.mark.parametrize("requeue", [False, True], ids=["fail", "requeue"])
def test_killed_while_writing_an_image(cli_root: Path, tmp_path: Path, requeue: bool) -> None:
    batch = _write(tmp_path / "batch.json", _image_batch())
    assert run_cli("queue", "enqueue", batch, root=cli_root).returncode == 0
    res = run_cli("queue", "process", "--until-empty", root=cli_root, env={"INVOKEAI_CRASH_AT": "images.write"})
    assert res.returncode == KILLED, res.stderr
    pngs, tmps = _files(cli_root)
    assert pngs == set() and len(tmps) >= 1 and _records(cli_root) == set()  # only the half-written file
    for tmp in tmps:  # older than a save that could still be going on in another process
        os.utime(cli_root / "outputs" / "images" / tmp, (1_000_000_000, 1_000_000_000))

    env = {"INVOKEAI_QUEUE_REQUEUE_ON_CRASH": "true"} if requeue else {}
    res = run_cli("queue", "process", "--until-empty", root=cli_root, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    pngs, tmps = _files(cli_root)
    assert tmps == set()  # the half-written file was removed at start-up
    ((status, error_type),) = _query(cli_root / "invokeai.db", "SELECT status, error_type FROM queue_items")
    if requeue:
        assert status == "completed" and len(pngs) == 1 and _records(cli_root) == pngs
    else:
        assert (status, error_type) == ("failed", "ProcessTerminated") and pngs == set() == _records(cli_root)
    _intact(cli_root)


def test_killed_while_committing_node_results(cli_root: Path, tmp_path: Path) -> None:
    log = tmp_path / "ran.log"
    n = 300  # more than one commit batch: results are committed (and the kill comes) before the end
    nodes = {f"t{i}": {"id": f"t{i}", "type": "tp_tally", "log": str(log)} for i in range(n)}
    edges = [
        {"source": {"node_id": f"t{i}", "field": "value"}, "destination": {"node_id": f"t{i + 1}", "field": "value"}}
        for i in range(n - 1)
    ]
    batch = _write(tmp_path / "batch.json", {"graph": {"nodes": nodes, "edges": edges}})
    assert run_cli("queue", "enqueue", batch, root=cli_root).returncode == 0
    res = run_cli("queue", "process", root=cli_root, env={"INVOKEAI_CRASH_AT": "sessions.commit"}, timeout=300)
    assert res.returncode == KILLED, res.stderr
    ((committed,),) = _query(cli_root / "invokeai.db", "SELECT history_len FROM sessions")
    assert committed == 0 and _query(cli_root / "invokeai.db", "SELECT count(*) FROM session_results") == [(0,)]
    ran_before = log.read_text().splitlines()
    assert ran_before  # nodes had run; their results were in the transaction that the kill undid

    res = run_cli(
        "queue", "process", "--until-empty", root=cli_root, env={"INVOKEAI_QUEUE_REQUEUE_ON_CRASH": "true"}, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert _query(cli_root / "invokeai.db", "SELECT status, history_len FROM sessions") == [("completed", n)]
    assert _query(cli_root / "invokeai.db", "SELECT status FROM queue_items") == [("completed",)]
    ran = log.read_text().splitlines()
    assert sorted(set(ran)) == sorted(nodes) and len(ran) == n + len(ran_before)  # only the undone ones ran again
    _intact(cli_root)
