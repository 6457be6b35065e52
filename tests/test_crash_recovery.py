"""Crash recovery for real: a queue processor in its own process (`invokeai queue process`) is
killed with SIGKILL in the middle of a session (between two nodes: one done and recorded, the next
running), and `invokeai serve` is killed with SIGKILL with accepted items queued; after a restart
every item, session and image that was accepted is checked, and `PRAGMA integrity_check`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import INVOKEAI, run_cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def _edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


BATCH = {
    "graph": {
        "nodes": {
            "c": {"id": "c", "type": "tp_const", "value": 2},
            "img": {"id": "img", "type": "tp_gradient", "width": 8, "height": 4},
            "z": {"id": "z", "type": "tp_sleep", "seconds": 0.1},
            "s": {"id": "s", "type": "tp_scale", "factor": 10},
        },
        "edges": [_edge("c", "value", "z", "value"), _edge("z", "value", "s", "value")],
    },
    # four sessions; the first sleeps long enough to be killed in the middle of it
    "data": [
        [
            {"node_path": "z", "field_name": "seconds", "items": [2.0, 0.05, 0.05, 0.05]},
            {"node_path": "img", "field_name": "width", "items": [8, 9, 10, 11]},
        ]
    ],
}


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(INVOKEAI_ROOT=str(root), HF_HUB_OFFLINE="1")
    return env


@contextmanager
def killed(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Run the block while `proc` lives, then kill it with SIGKILL (on a failure too) and check that
    the kill is what ended it."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def _query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _wait_mid_session(db: Path, proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """The session id of item 1 once it is running its sleeping node (two nodes done, not three)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            rows = _query(
                db,
                "SELECT q.session_id, s.history_len FROM queue_items q JOIN sessions s ON s.id = q.session_id "
                "WHERE q.item_id = 1 AND q.status = 'in_progress'",
            )
        except sqlite3.OperationalError:  # the processor is still creating the tables
            rows = []
        if rows and rows[0][1] == 2:
            return str(rows[0][0])
        time.sleep(0.01)
    raise AssertionError("item 1 never reached the middle of its session")


def _images(root: Path) -> tuple[set[str], set[str], set[str]]:
    files = {p.name for p in (root / "outputs" / "images").glob("*.png")}
    thumbs = {p.stem for p in (root / "outputs" / "thumbnails").glob("*.webp")}
    records = {r[0] for r in _query(root / "invokeai.db", "SELECT image_name FROM image_records")}
    return files, thumbs, records


@pytest.mark.parametrize("requeue", [False, True], ids=["fail", "requeue"])
def test_sigkill_mid_session_then_restart(cli_root: Path, tmp_path: Path, requeue: bool) -> None:
    root = cli_root
    db = root / "invokeai.db"
    batch_file = tmp_path / "batch.json"
    batch_file.write_text(json.dumps(BATCH))
    res = run_cli("queue", "enqueue", str(batch_file), "--json", root=root)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["item_ids"] == [1, 2, 3, 4]

    proc = subprocess.Popen(
        [INVOKEAI, "queue", "process"], env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with killed(proc):
        session_id = _wait_mid_session(db, proc)

    # nothing accepted was lost by the kill
    items = _query(db, "SELECT item_id, status FROM queue_items ORDER BY item_id")
    assert items == [(1, "in_progress"), (2, "pending"), (3, "pending"), (4, "pending")]
    assert _query(db, "SELECT history_len FROM sessions WHERE id = ?", session_id) == [(2,)]
    done_before = [
        r[0] for r in _query(db, "SELECT node_id FROM session_results WHERE session_id = ? ORDER BY seq", session_id)
    ]
    assert done_before == ["c", "img"]
    files, thumbs, records = _images(root)
    assert len(records) == 1 and records <= files and {Path(n).stem for n in records} <= thumbs

    # restart: recover, then drain the queue
    options = ["-o", "queue_requeue_on_crash=true"] if requeue else []
    res = run_cli(*options, "queue", "process", "--until-empty", root=root, timeout=120)
    assert res.returncode == 0, res.stderr
    expected = "re-queued" if requeue else "failed"
    assert f"item 1 [default] was running when the process died: {expected}" in res.stdout

    final = {
        r[0]: r[1:]
        for r in _query(db, "SELECT item_id, status, error_type, error_message, session_id FROM queue_items")
    }
    assert sorted(final) == [1, 2, 3, 4]  # every accepted item is still there
    for item_id in (2, 3, 4):
        assert final[item_id][0] == "completed", final[item_id]
    status, error_type, error_message, item_session = final[1]
    assert item_session == session_id
    history = [
        r[0] for r in _query(db, "SELECT node_id FROM session_results WHERE session_id = ? ORDER BY seq", session_id)
    ]
    if requeue:
        assert status == "completed" and error_type is None
        assert history == ["c", "img", "z", "s"]  # resumed: the nodes that had run did not run again
    else:
        assert (status, error_type) == ("failed", "ProcessTerminated")
        assert "terminated" in error_message
        assert history == ["c", "img"]
        errors = _query(db, "SELECT node_id, error FROM session_errors WHERE session_id = ?", session_id)
        assert [(e[0], json.loads(e[1])["type"]) for e in errors] == [("z", "ProcessTerminated")]

    sessions = dict(_query(db, "SELECT id, status FROM sessions"))
    assert len(sessions) == 4
    assert sessions[session_id] == ("completed" if requeue else "failed")
    assert sorted(sessions.values()).count("completed") == (4 if requeue else 3)

    # every image has its record and its thumbnail, and every record its file: none half-written
    files, thumbs, records = _images(root)
    assert files == records and {Path(n).stem for n in files} == thumbs
    assert len(records) == 4  # one per session; the image made before the kill was kept, not redone

    # the CLI agrees
    status_out = json.loads(run_cli("queue", "status", "-q", "default", "--json", root=root).stdout)
    assert (status_out["completed"], status_out["failed"], status_out["pending"], status_out["in_progress"]) == (
        (4, 0, 0, 0) if requeue else (3, 1, 0, 0)
    )
    shown = run_cli("sessions", "show", session_id, "--json", root=root)
    assert json.loads(shown.stdout)["status"] == ("completed" if requeue else "failed")
    assert _query(db, "PRAGMA integrity_check") == [("ok",)]


def test_sigkill_of_invokeai_serve_with_queued_items(cli_root: Path) -> None:
    """Items accepted over HTTP (201) survive kill -9 of the server: another process runs them all,
    the database passes `PRAGMA integrity_check`, and every image has its record and file."""
    import urllib.request

    pytest.importorskip("invokeai_web", reason="invokeai-web is not installed (scripts/setup.sh)")
    root, db = cli_root, cli_root / "invokeai.db"
    assert run_cli("queue", "pause", root=root).returncode == 0  # accepted, none started: all queued
    proc = subprocess.Popen(
        [INVOKEAI, "serve", "--port", "0"], env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with killed(proc):
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving on " in line, proc.stderr.read() if proc.stderr else line
        url = line.split("serving on ", 1)[1].split()[0]
        request = urllib.request.Request(
            url + "/api/v1/queue/default/enqueue_batch",
            data=json.dumps({"batch": BATCH}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            assert r.status == 201 and json.loads(r.read())["item_ids"] == [1, 2, 3, 4]
    assert _query(db, "SELECT item_id, status FROM queue_items ORDER BY item_id") == [
        (i, "pending") for i in (1, 2, 3, 4)
    ]

    assert run_cli("queue", "resume", root=root).returncode == 0
    res = run_cli("queue", "process", "--until-empty", root=root, timeout=120)
    assert res.returncode == 0, res.stderr
    assert _query(db, "SELECT status, count(*) FROM queue_items GROUP BY status") == [("completed", 4)]
    assert _query(db, "PRAGMA integrity_check") == [("ok",)]
    files, thumbs, records = _images(root)
    assert len(records) == 4 and files == records and {Path(n).stem for n in files} == thumbs
