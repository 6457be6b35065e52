"""The crash guarantee at size: `invokeai queue process` killed with SIGKILL in the middle of a
10,000-node session resumes, after a restart, from its last committed node: nothing that committed
runs again, nothing is lost, and the database is intact.

Every node is a `tp_tally`, which appends its node id to a log file when it runs, so the log is the
record of every execution to compare with what the session committed. Results are group-committed
(`session_commit_ms`): the nodes that completed in the last window before the kill had not committed
and run again; with `session_commit_ms = 0` every node commits on its own and at most the node in
flight runs again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import INVOKEAI, run_cli
from test_crash_recovery import _env as crash_env
from test_crash_recovery import _query, killed

from invokeai_core.services.sqlite_sessions import COMMIT_BATCH

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

NODES = 10_000


def _env(root: Path, commit_ms: str) -> dict[str, str]:
    return {**crash_env(root), "INVOKEAI_QUEUE_REQUEUE_ON_CRASH": "true", "INVOKEAI_SESSION_COMMIT_MS": commit_ms}


def _chain(log: Path) -> dict[str, Any]:
    nodes = {f"t{i}": {"id": f"t{i}", "type": "tp_tally", "log": str(log)} for i in range(NODES)}
    edges = [
        {"source": {"node_id": f"t{i}", "field": "value"}, "destination": {"node_id": f"t{i + 1}", "field": "value"}}
        for i in range(NODES - 1)
    ]
    return {"graph": {"nodes": nodes, "edges": edges}}


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("commit_ms", ["0", "50"], ids=["every-node", "group-commit"])
def test_a_10k_node_session_killed_mid_run_resumes_from_its_last_committed_node(
    cli_root: Path, tmp_path: Path, commit_ms: str
) -> None:
    root, log = cli_root, tmp_path / "ran.log"
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps(_chain(log)))
    res = run_cli("queue", "enqueue", str(batch), "--json", root=root, timeout=120)
    assert res.returncode == 0, res.stderr
    db = root / "invokeai.db"

    proc = subprocess.Popen(
        [INVOKEAI, "queue", "process"],
        env=_env(root, commit_ms),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with killed(proc):
        deadline = time.monotonic() + 300
        while len(_lines(log)) < NODES // 3:  # well inside the session
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the session never got a third of the way"
            time.sleep(0.005)

    ran_before = _lines(log)
    ((session_id, committed),) = _query(
        db, "SELECT s.id, s.history_len FROM sessions s JOIN queue_items q ON q.session_id = s.id"
    )
    stored = [
        r[0] for r in _query(db, "SELECT node_id FROM session_results WHERE session_id = ? ORDER BY seq", session_id)
    ]
    assert stored == [f"t{i}" for i in range(committed)]  # what committed is a prefix, in order
    assert committed <= len(ran_before) < NODES
    assert ran_before[:committed] == stored  # each committed node had run exactly once
    # what ran without committing: the node in flight, and with group commit the last window's nodes
    assert len(ran_before) - committed <= (1 if commit_ms == "0" else COMMIT_BATCH)

    res = run_cli(
        "queue", "process", "--until-empty", root=root, env={"INVOKEAI_QUEUE_REQUEUE_ON_CRASH": "true"}, timeout=600
    )
    assert res.returncode == 0, res.stderr
    assert "re-queued 1 item" in res.stderr

    ran = Counter(_lines(log))
    assert set(ran) == {f"t{i}" for i in range(NODES)}  # nothing lost
    again = {node for node, n in ran.items() if n > 1}
    assert all(n <= 2 for n in ran.values())
    assert again == {f"t{i}" for i in range(committed, len(ran_before))}  # nothing that had committed ran again
    assert _query(db, "SELECT status, history_len FROM sessions WHERE id = ?", session_id) == [("completed", NODES)]
    assert _query(db, "SELECT status FROM queue_items") == [("completed",)]
    shown = run_cli("sessions", "show", session_id, "--json", root=root, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["results"][f"t{NODES - 1}"]["value"] == NODES
    assert _query(db, "PRAGMA integrity_check") == [("ok",)]
