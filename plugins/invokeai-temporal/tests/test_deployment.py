"""The deployment, for real, on loopback: the Temporal dev server, PostgreSQL, redis-server,
moto_server (S3), 2 `invokeai worker` processes and 2 `invokeai serve` API servers, all started and
stopped by the test by PID.

One test walks through the whole life of a deployment (each step builds on the last, and starting
the stack is most of the cost):

1. everything is up in under 60 s;
2. 20 items enqueued through API A all complete; their results and images are readable through API
   B (images on S3), and a Socket.IO client on B saw their live events (through Redis);
3. kill -9 of the worker running an item: the item completes on the other worker, nothing that had
   completed ran again (a tally node's log), exactly one set of output images;
4. kill -9 of the Temporal server mid-run, then a restart on its file: enqueue answers 503 with
   Retry-After meanwhile, and every accepted item completes;
5. cancel through B of an item running on a worker: canceled in under 2 s, the worker still serves;
6. priorities: with both workers busy, items of a higher priority start before lower ones;
7. kill -9 of the API server that started running items' workflows (eagerly): they complete.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    Procs,
    RedisServer,
    TemporalServer,
    http,
    query,
    running_worker_pid,
    start_moto_server,
    temporal_binary,
    wait_until,
    write_config,
)

PLUGINS = "postgres,temporal,testpack,web,redis,s3"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
}


class Watcher:
    """A Socket.IO client on an API server, subscribed to the default queue, recording events."""

    def __init__(self, url: str) -> None:
        import socketio

        self.sio = socketio.Client(reconnection=True)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

        @self.sio.on("*")
        def catch_all(event: str, data: Any = None) -> None:
            with self.lock:
                self.events.append((event, data))

        self.sio.connect(url, transports=["polling"], wait_timeout=10)  # the sync client: long-polling
        ack = self.sio.call("subscribe_queue", {"queue_id": "default"}, timeout=10)
        assert ack["ok"], ack

    def statuses(self, item_id: int) -> list[str]:
        with self.lock:
            return [
                d["status"] for n, d in self.events if n == "queue_item_status_changed" and d.get("item_id") == item_id
            ]


class RedisTap:
    """The status events the processes publish on the Redis channel (tells a lost publish from a
    lost delivery when B's client misses one)."""

    def __init__(self, url: str) -> None:
        import redis

        self.events: list[dict[str, Any]] = []
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(**{"invokeai:events": self._on})
        self.thread = self.pubsub.run_in_thread(sleep_time=0.1, daemon=True)

    def _on(self, message: dict[str, Any]) -> None:
        data = json.loads(message["data"])
        if data.get("event") == "queue_item_status_changed":
            self.events.append(data["data"])

    def statuses(self, item_id: int) -> list[str]:
        return [d["status"] for d in list(self.events) if d.get("item_id") == item_id]

    def close(self) -> None:
        self.thread.stop()
        self.thread.join(5)
        self.pubsub.close()


def workflow_events(temporal: TemporalServer, root: Path, item_id: int) -> list[dict[str, Any]]:
    """The history of the item's workflow (from the Temporal CLI)."""
    import subprocess
    import tomllib

    config = tomllib.loads((root / "invokeai.toml").read_text(encoding="utf-8"))
    prefix = config["plugins"]["temporal"]["task_queue_prefix"]
    exe = temporal_binary()
    assert exe is not None
    done = subprocess.run(
        [exe, "workflow", "show", "--workflow-id", f"{prefix}-item-{item_id}", "--address", temporal.address,
         "--output", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["events"])


def first_workflow_task_identity(temporal: TemporalServer, root: Path, item_id: int) -> str:
    """Which process took the item's first workflow task."""
    started = [e for e in workflow_events(temporal, root, item_id) if "workflowTaskStartedEventAttributes" in e]
    return str(started[0]["workflowTaskStartedEventAttributes"]["identity"])


def workflow_completed(temporal: TemporalServer, root: Path, item_id: int) -> bool:
    return any("workflowExecutionCompletedEventAttributes" in e for e in workflow_events(temporal, root, item_id))


def item(url: str, item_id: int) -> dict[str, Any]:
    status, _, body = http("GET", f"{url}/api/v1/queue/default/i/{item_id}")
    assert status == 200, body
    return dict(body)


def enqueue(url: str, batch: dict[str, Any]) -> list[int]:
    status, _, body = http("POST", f"{url}/api/v1/queue/default/enqueue_batch", {"batch": batch})
    assert status == 201, body
    return list(body["item_ids"])


def chain(log: Path, seconds: float, width: int = 8) -> dict[str, Any]:
    """tally (appends to `log`) -> sleep -> gradient image: one image; the tally runs once."""
    return {
        "nodes": {
            "t": {"id": "t", "type": "tp_tally", "log": str(log)},
            "z": {"id": "z", "type": "tp_sleep", "seconds": seconds},
            "img": {"id": "img", "type": "tp_gradient", "width": width, "height": 8},
        },
        "edges": [{"source": {"node_id": "t", "field": "value"}, "destination": {"node_id": "z", "field": "value"}}],
    }


def all_done(url: str, ids: list[int]) -> bool:
    return all(item(url, i)["status"] in ("completed", "failed", "canceled") for i in ids)


@pytest.fixture
def stack_root(tmp_path: Path, pg_dsn: str, temporal: TemporalServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    for k, v in AWS.items():
        monkeypatch.setenv(k, v)
    redis = RedisServer(tmp_path)
    moto = start_moto_server(tmp_path)
    moto.client().create_bucket(Bucket="images")
    root = tmp_path / "root"
    root.mkdir()
    write_config(
        root,
        pg_dsn,
        temporal.address,
        services={"images": "s3", "events": "redis"},
        plugins={
            "s3": {"bucket": "images", "region": "us-east-1", "endpoint_url": moto.url, "addressing_style": "path"},
            "redis": {"url": redis.url},
        },
    )
    try:
        yield root, moto, redis
    finally:
        redis.stop()
        moto.stop()


@pytest.fixture
def tap(stack_root: Any) -> Any:
    recorder = RedisTap(stack_root[2].url)
    yield recorder
    recorder.close()


def test_a_deployment_on_loopback(
    stack_root: Any, tap: RedisTap, pg_dsn: str, temporal: TemporalServer, tmp_path: Path
) -> None:
    root, moto, _ = stack_root
    logs = tmp_path / "logs"
    logs.mkdir()
    with Procs() as procs:
        # 1. up in under 60 s
        t0 = time.monotonic()
        workers = [procs.worker(root, logs / f"worker{i}.log", PLUGINS, **AWS) for i in range(2)]
        (server_a, a), (_, b) = (procs.server(root, logs / f"server{i}.log", PLUGINS) for i in range(2))
        up = time.monotonic() - t0
        print(f"\nup in {up:.1f} s (2 workers, 2 API servers)")
        assert up < 60
        watcher = Watcher(b)

        # 2. 20 items through A, read through B, events on B
        tallies = tmp_path / "tallies"
        tallies.mkdir()
        batch = {
            "graph": chain(tallies / "x", 0.2),
            "data": [
                [
                    {"node_path": "img", "field_name": "width", "items": list(range(8, 28))},
                    {"node_path": "t", "field_name": "log", "items": [str(tallies / f"{i}.log") for i in range(20)]},
                ]
            ],
        }
        ids = enqueue(a, batch)
        assert len(ids) == 20
        wait_until(lambda: all_done(b, ids), 120, "20 items to finish")
        for i in ids:
            got = item(b, i)
            assert got["status"] == "completed", got
            status, _, page = http("GET", f"{b}/api/v1/images?session_id={got['session_id']}")
            assert status == 200 and page["total"] == 1, page
            name = page["items"][0]["image_name"]
            status, _, png = http("GET", f"{b}/api/v1/images/i/{name}/full")
            assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
        assert all(len((tallies / f"{i}.log").read_text().split()) == 1 for i in range(20))
        try:
            wait_until(lambda: all("completed" in watcher.statuses(i) for i in ids), 30, "B's live events")
        except AssertionError:
            seen = {i: watcher.statuses(i) for i in ids}
            published = {i: tap.statuses(i) for i in ids}
            raise AssertionError(
                f"B's live events: statuses seen per item {seen}; {len(watcher.events)} events; "
                f"published on Redis {published}"
            ) from None
        assert all(
            watcher.statuses(i)[:2] == ["pending", "in_progress"] or "in_progress" in watcher.statuses(i) for i in ids
        )
        s3_keys = {o["Key"] for o in moto.client().list_objects_v2(Bucket="images").get("Contents", [])}
        assert sum(k.endswith(".png") for k in s3_keys) >= 20
        # eager start: the first workflow task of each item ran in API A, which enqueued it
        first = first_workflow_task_identity(temporal, root, ids[0])
        assert first.startswith(f"{server_a.pid}@"), (first, server_a.pid)

        # 3. kill -9 of the worker running an item
        log = tmp_path / "killed.log"
        [victim_item] = enqueue(a, {"graph": chain(log, 4.0, width=101)})  # a width of its own: no cached image
        victim_session = item(a, victim_item)["session_id"]

        def tally_persisted() -> bool:  # the tally completed and the session saved it
            rows = query(pg_dsn, "SELECT history_len FROM sessions WHERE id = %s", victim_session)
            return bool(rows) and rows[0][0] >= 1 and running_worker_pid(pg_dsn, victim_item) is not None

        wait_until(tally_persisted, 60, "the item's first node to complete")
        pid = running_worker_pid(pg_dsn, victim_item)
        victim = next(w for w in workers if w.pid == pid)
        survivor = next(w for w in workers if w.pid != pid)
        victim.kill()
        victim.wait(30)
        t_kill = time.monotonic()
        wait_until(lambda: item(b, victim_item)["status"] in ("completed", "failed"), 90, "the killed item")
        print(f"killed worker's item completed {time.monotonic() - t_kill:.1f} s after the kill")
        got = item(b, victim_item)
        assert got["status"] == "completed", got
        assert log.read_text().split() == ["t"]  # the tally, completed before the kill, never ran again
        assert query(pg_dsn, "SELECT count(*) FROM image_records WHERE session_id = %s", got["session_id"]) == [(1,)]
        assert survivor.poll() is None
        workers = [survivor, procs.worker(root, logs / "worker2.log", PLUGINS, **AWS)]

        # 4. kill -9 of Temporal mid-run, and a restart
        sleepers = enqueue(a, {"graph": chain(tmp_path / "t4.log", 1.0), "runs": 6})
        wait_until(lambda: running_worker_pid(pg_dsn) is not None, 60, "an item to run")
        temporal.kill()
        status, headers, body = http(
            "POST", f"{a}/api/v1/queue/default/enqueue_batch", {"batch": {"graph": chain(tmp_path / "no.log", 0)}}
        )
        assert status == 503 and int(headers["retry-after"]) > 0, body
        assert "Temporal" in json.dumps(body)
        time.sleep(1)
        temporal.start()
        wait_until(lambda: all_done(b, sleepers), 180, "the items accepted before the outage")
        assert [item(b, i)["status"] for i in sleepers] == ["completed"] * 6
        assert len((tmp_path / "t4.log").read_text().split()) == 6  # each item's tally ran once
        assert not (tmp_path / "no.log").exists()
        assert all(w.poll() is None for w in workers)

        # 5. cancel through B of an item running on a worker
        [long_item] = enqueue(a, {"graph": chain(tmp_path / "long.log", 60.0)})
        wait_until(lambda: running_worker_pid(pg_dsn, long_item) is not None, 60, "the long item to run")
        time.sleep(0.5)
        t_cancel = time.monotonic()
        status, _, body = http("PUT", f"{b}/api/v1/queue/default/i/{long_item}/cancel")
        assert status == 200, body
        wait_until(
            lambda: (
                query(pg_dsn, "SELECT status FROM sessions WHERE id = %s", item(b, long_item)["session_id"])
                == [("canceled",)]
            ),
            10,
            "the running session to be canceled",
            interval=0.01,
        )
        took = time.monotonic() - t_cancel
        print(f"cancel reached the running item in {took * 1000:.0f} ms")
        assert took < 2.0
        assert item(b, long_item)["status"] == "canceled"
        after = enqueue(a, {"graph": chain(tmp_path / "after.log", 0), "runs": 2})
        wait_until(lambda: all_done(b, after), 60, "items after the cancel")
        assert [item(b, i)["status"] for i in after] == ["completed"] * 2
        assert all(w.poll() is None for w in workers)

        # 6. priorities: both workers busy, then low and high items
        blockers = enqueue(a, {"graph": chain(tmp_path / "block.log", 2.0), "runs": 2})
        wait_until(lambda: len([i for i in blockers if item(b, i)["status"] == "in_progress"]) == 2, 60, "blockers")
        low = enqueue(a, {"graph": chain(tmp_path / "low.log", 0), "runs": 4, "priority": -1})
        high = enqueue(a, {"graph": chain(tmp_path / "high.log", 0), "runs": 4, "priority": 2})
        wait_until(lambda: all_done(b, blockers + low + high), 120, "the prioritized items")
        started = {i: item(b, i)["started_at"] for i in low + high}
        order = sorted(low + high, key=lambda i: started[i])
        print("start order (h = high, l = low):", "".join("h" if i in high else "l" for i in order))
        # Temporal orders by priority key, not strictly within a key, and two workers race: the high
        # items as a whole start first (FIFO would start every low item first)
        assert sum(order.index(i) for i in high) < sum(order.index(i) for i in low), order

        # 7. API A, which started its items' workflows eagerly (and so holds them cached), is killed
        # while they run: their workflows finish on the workers' workflow workers
        last = enqueue(a, {"graph": chain(tmp_path / "last.log", 1.5), "runs": 2})
        wait_until(lambda: all(item(b, i)["status"] == "in_progress" for i in last), 60, "the last items to start")
        server_a.kill()
        server_a.wait(10)
        wait_until(lambda: all(workflow_completed(temporal, root, i) for i in last), 60, "A's workflows to complete")
        assert [item(b, i)["status"] for i in last] == ["completed"] * 2
