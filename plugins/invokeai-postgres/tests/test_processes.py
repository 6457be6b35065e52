"""Many real processes on one PostgreSQL database: `invokeai serve` API servers and `invokeai queue
process` workers, started and stopped by the tests by PID, on loopback.

* 2 servers take 200 concurrent enqueue requests (1,000 items): each accepted exactly once, no 5xx;
  4 workers then run every item exactly once (one image per item, every worker took some).
* kill -9 of the worker running an item: another worker recovers it (re-queued, it completes there),
  and nothing is left in progress.
* The server goes away mid-run: the API answers 503 with Retry-After; the running item ends
  completed or failed with its reason (never lost); when the server is back everything reconnects.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import write_config
from pg_server import PgServer

INVOKEAI = str(Path(sys.executable).parent / "invokeai")
SCHEMA = "invokeai"


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(
        INVOKEAI_ROOT=str(root),
        INVOKEAI_LOAD_PLUGINS="postgres,testpack,web",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def query(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {SCHEMA}")
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def workers(dsn: str) -> int:
    """How many queue workers are registered (0 before the first process created the tables)."""
    try:
        return int(query(dsn, "SELECT count(*) FROM queue_workers")[0][0])
    except psycopg.errors.UndefinedTable:
        return 0


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def cli(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INVOKEAI, *args], env=_env(root), capture_output=True, text=True, timeout=timeout)


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    """Processes started in the block, killed (SIGKILL) at its end if still running."""
    procs: list[subprocess.Popen[Any]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


def start_worker(root: Path, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [INVOKEAI, "queue", "process"],
        env=_env(root),
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_server(root: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [INVOKEAI, "serve", "--port", "0", "--no-queue-processor"],
        env=_env(root),
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),  # a line per request: never an unread pipe
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving on" not in line:
        proc.kill()
        raise AssertionError(f"no start line: {line!r} {log.read_text()}")
    return proc, line.split("serving on ", 1)[1].split()[0]


def http(method: str, url: str, body: Any = None, timeout: float = 60) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"null")


def gradient_batch(widths: list[int]) -> dict[str, Any]:
    """One item per width, each making one 8-pixel-high gradient image."""
    return {
        "graph": {"nodes": {"img": {"id": "img", "type": "tp_gradient", "width": 8, "height": 8}}, "edges": []},
        "data": [[{"node_path": "img", "field_name": "width", "items": widths}]],
    }


@pytest.fixture
def root(tmp_path: Path, pg_dsn: str) -> Path:
    write_config(tmp_path, pg_dsn, worker_lease=2, outage_wait=60)
    return tmp_path


def test_two_servers_and_four_workers_run_every_item_exactly_once(root: Path, pg_dsn: str, tmp_path: Path) -> None:
    with processes() as procs:
        servers = []
        for i in range(2):
            proc, url = start_server(root, tmp_path / f"server{i}.log")
            procs.append(proc)
            servers.append(url)

        def enqueue(i: int) -> tuple[int, Any]:
            batch = gradient_batch([8 + 5 * i + k for k in range(5)])  # distinct: no cached output
            batch["batch_id"] = f"b{i:03d}"
            status, _, body = http("POST", f"{servers[i % 2]}/api/v1/queue/default/enqueue_batch", {"batch": batch})
            return status, body

        with ThreadPoolExecutor(max_workers=40) as pool:
            answers = list(pool.map(enqueue, range(200)))
        assert [s for s, _ in answers] == [201] * 200, [a for a in answers if a[0] != 201][:3]
        ids = [i for _, body in answers for i in body["item_ids"]]
        assert len(ids) == 1000 and len(set(ids)) == 1000
        assert query(pg_dsn, "SELECT count(DISTINCT batch_id), count(*) FROM queue_items") == [(200, 1000)]

        workers = [start_worker(root, tmp_path / f"worker{i}.log") for i in range(4)]
        procs += workers

        def done() -> bool:
            return query(pg_dsn, "SELECT count(*) FROM queue_items WHERE status = 'completed'")[0][0] == 1000

        wait_until(done, 600, "1,000 completed items")
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            assert w.wait(60) == 0, (tmp_path / "worker0.log").read_text()[-2000:]
    assert query(pg_dsn, "SELECT status, count(*) FROM queue_items GROUP BY status") == [("completed", 1000)]
    # exactly once: one image (record and file) per item's session, no session ran twice
    assert query(pg_dsn, "SELECT count(*), count(DISTINCT session_id) FROM image_records") == [(1000, 1000)]
    assert query(pg_dsn, "SELECT count(*) FROM sessions WHERE history_len = 1 AND status = 'completed'") == [(1000,)]
    files = [p for p in (root / "outputs" / "images").rglob("*.png")]
    assert len(files) == 1000
    takers = query(pg_dsn, "SELECT worker_id, count(*) FROM queue_items GROUP BY worker_id")
    assert len(takers) == 4 and all(n > 0 for _, n in takers), takers
    assert query(pg_dsn, "SELECT count(*) FROM queue_workers") == [(0,)]  # every worker unregistered


def _running_worker_pid(dsn: str) -> int | None:
    rows = query(
        dsn,
        "SELECT w.pid FROM queue_items q JOIN queue_workers w ON w.worker_id = q.worker_id "
        "WHERE q.status = 'in_progress'",
    )
    return int(rows[0][0]) if rows else None


@pytest.mark.parametrize("requeue", [True, False])
def test_kill_9_of_a_worker_mid_item_is_recovered_by_another(
    root: Path, pg_dsn: str, tmp_path: Path, requeue: bool
) -> None:
    opts = ["-o", f"queue_requeue_on_crash={'true' if requeue else 'false'}"]
    graph = {
        "graph": {
            "nodes": {
                "z": {"id": "z", "type": "tp_sleep", "seconds": 3.0},
                "img": {"id": "img", "type": "tp_gradient", "width": 8, "height": 8},
            },
            "edges": [],
        }
    }
    batch_file = tmp_path / "batch.json"
    batch_file.write_text(json.dumps(graph))
    with processes() as procs:

        def worker(i: int) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [INVOKEAI, *opts, "queue", "process"],
                env=_env(root),
                stdout=open(tmp_path / f"w{i}.log", "w"),
                stderr=subprocess.STDOUT,
                text=True,
            )

        procs += [worker(0), worker(1)]
        wait_until(lambda: workers(pg_dsn) == 2, 60, "two workers")
        res = cli(root, "queue", "enqueue", str(batch_file))
        assert res.returncode == 0, res.stderr
        wait_until(lambda: _running_worker_pid(pg_dsn) is not None, 60, "the item to start")
        pid = _running_worker_pid(pg_dsn)
        victim = next(p for p in procs if p.pid == pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        survivor = next(p for p in procs if p.pid != pid)

        final = "completed" if requeue else "failed"
        wait_until(
            lambda: query(pg_dsn, "SELECT status FROM queue_items")[0][0] == final, 60, f"the item to be {final}"
        )
        assert survivor.poll() is None  # the other worker still serves
    [(status, error_type)] = query(pg_dsn, "SELECT status, error_type FROM queue_items")
    assert query(pg_dsn, "SELECT count(*) FROM queue_items WHERE status = 'in_progress'") == [(0,)]
    if requeue:
        assert (status, error_type) == ("completed", None)
        assert query(pg_dsn, "SELECT count(*) FROM image_records") == [(1,)]  # one set of images, none twice
    else:
        assert (status, error_type) == ("failed", "ProcessTerminated")


def test_the_database_going_away_mid_run(root: Path, pg_dsn: str, pg_server: PgServer, tmp_path: Path) -> None:
    graph = {
        "nodes": {
            "z": {"id": "z", "type": "tp_sleep", "seconds": 4.0},
            "img": {"id": "img", "type": "tp_gradient", "width": 8, "height": 8},
        },
        "edges": [],
    }
    with processes() as procs:
        server, url = start_server(root, tmp_path / "server.log")
        procs.append(server)
        procs.append(start_worker(root, tmp_path / "worker.log"))
        wait_until(lambda: workers(pg_dsn) == 1, 60, "the worker")
        status, _, body = http("POST", f"{url}/api/v1/queue/default/enqueue_batch", {"batch": {"graph": graph}})
        assert status == 201, body
        item_id = body["item_ids"][0]
        wait_until(lambda: _running_worker_pid(pg_dsn) is not None, 60, "the item to start")

        pg_server.stop()
        try:
            status, headers, body = http("GET", f"{url}/api/v1/queue/default/status")
            assert status == 503, body
            assert int(headers["retry-after"]) > 0
            assert "PostgreSQL" in json.dumps(body) and "unreachable" in json.dumps(body)
            status, headers, _ = http("POST", f"{url}/api/v1/queue/default/enqueue_batch", {"batch": {"graph": graph}})
            assert status == 503 and "retry-after" in headers
            time.sleep(2)
        finally:
            pg_server.start()

        def finished() -> bool:
            status, _, body = http("GET", f"{url}/api/v1/queue/default/i/{item_id}")
            return status == 200 and body["status"] in ("completed", "failed")

        wait_until(finished, 120, "the running item to finish")
        _, _, item = http("GET", f"{url}/api/v1/queue/default/i/{item_id}")
        if item["status"] == "failed":  # never lost: failed with its reason
            assert item["error_type"] and item["error_message"], item
        # both processes reconnected: a new item is accepted through the server and run by the worker
        status, _, body = http("POST", f"{url}/api/v1/queue/default/enqueue_batch", {"batch": {"graph": graph}})
        assert status == 201, body
        again = body["item_ids"][0]
        wait_until(
            lambda: http("GET", f"{url}/api/v1/queue/default/i/{again}")[2].get("status") == "completed",
            120,
            "the new item to complete",
        )
    assert query(pg_dsn, "SELECT count(*) FROM queue_items WHERE status IN ('in_progress', 'pending')") == [(0,)]
