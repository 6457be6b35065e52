"""Bad input and faults, each with real processes (the Temporal dev server, PostgreSQL, `invokeai
worker`s and the `invokeai` CLI) on loopback, lighter than the deployment test:

* Temporal unreachable at start: `invokeai worker`, `invokeai serve` and `invokeai queue enqueue`
  print one line naming Temporal and exit with status 2;
* a bad `--device` and a queue other than Temporal's: exit status 2, naming what is wrong;
* pause and resume: an item enqueued while its queue is paused stays pending (no worker holds it),
  and completes after the resume;
* a failing node fails the item after one attempt (no retry loop: one activity in the workflow's
  history), and `invokeai queue retry` runs it again, once, as a new item;
* a worker without the model an item needs fails the item, naming the model, after one attempt.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

from deploy_helpers import (
    PLUGINS,
    Procs,
    TemporalServer,
    cli,
    enqueue,
    finished,
    free_port,
    show,
    temporal_binary,
    wait_until,
    write_config,
)


def prefix_of(root: Path) -> str:
    import tomllib

    config = tomllib.loads((root / "invokeai.toml").read_text(encoding="utf-8"))
    return str(config["plugins"]["temporal"]["task_queue_prefix"])


def activities_scheduled(temporal: TemporalServer, workflow_id: str) -> int:
    """How many times the item's workflow scheduled its activity (its history, from the Temporal CLI)."""
    exe = temporal_binary()
    assert exe is not None
    done = subprocess.run(
        [exe, "workflow", "show", "--workflow-id", workflow_id, "--address", temporal.address, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)["events"]
    return sum(e.get("eventType") in ("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED", "ActivityTaskScheduled") for e in events)


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_temporal_unreachable_at_start(tmp_path: Path, pg_dsn: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    write_config(root, pg_dsn, nobody, temporal={"connect_timeout": 1})
    for args in (("worker", "--device", "cpu"), ("serve", "--port", "0")):
        done = cli(root, *args, plugins=f"{PLUGINS},web", timeout=60)
        line = one_line_error(done, "Temporal", nobody)
        print(f"\ninvokeai {' '.join(args)}: {line}")
    graph = root / "graph.json"
    graph.write_text(json.dumps({"nodes": {"c": {"id": "c", "type": "tp_const", "value": 1}}, "edges": []}))
    line = one_line_error(cli(root, "queue", "enqueue", str(graph)), "Temporal", nobody)
    print(f"invokeai queue enqueue: {line}")


def test_bad_device_and_another_queue(tmp_path: Path, pg_dsn: str, temporal: TemporalServer) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_config(root, pg_dsn, temporal.address)
    done = cli(root, "worker", "--device", "gpu0")
    assert done.returncode == 2 and "--device" in done.stderr and "gpu0" in done.stderr, done.stderr
    write_config(root, pg_dsn, temporal.address, services={"queue": "postgres"})
    done = cli(root, "worker", "--device", "cpu")
    assert done.returncode == 2 and "services.queue" in done.stderr and "'postgres'" in done.stderr, done.stderr


def test_pause_resume_and_retry(root: Path, tmp_path: Path, temporal: TemporalServer) -> None:
    tally = tmp_path / "tally.log"
    ok_graph = {"nodes": {"t": {"id": "t", "type": "tp_tally", "log": str(tally)}}, "edges": []}
    with Procs() as procs:
        worker = procs.worker(root, tmp_path / "worker.log", PLUGINS)
        assert cli(root, "queue", "pause").returncode == 0
        [paused_item] = enqueue(root, {"graph": ok_graph})
        time.sleep(3)  # more than enough for a worker to take it, were the queue not paused
        assert show(root, paused_item)["status"] == "pending"
        assert not tally.exists()
        assert cli(root, "queue", "resume").returncode == 0
        t_resume = time.monotonic()
        wait_until(lambda: finished(root, [paused_item]), 60, "the item after the resume")
        print(f"\nthe paused item completed {time.monotonic() - t_resume:.1f} s after the resume")
        assert show(root, paused_item)["status"] == "completed"
        assert tally.read_text().split() == ["t"]

        fail_graph = {"nodes": {"f": {"id": "f", "type": "tp_fail", "message": "no luck today"}}, "edges": []}
        [failing] = enqueue(root, {"graph": fail_graph})
        wait_until(lambda: finished(root, [failing]), 60, "the failing item")
        got = show(root, failing)
        assert got["status"] == "failed" and "no luck today" in got["error_message"], got
        prefix = prefix_of(root)
        assert activities_scheduled(temporal, f"{prefix}-item-{failing}") == 1  # no retry loop

        done = cli(root, "queue", "retry", str(failing), "--json")
        assert done.returncode == 0, done.stderr
        [again] = json.loads(done.stdout)["retried"]
        assert again != failing
        wait_until(lambda: finished(root, [again]), 60, "the retried item")
        got = show(root, again)
        assert got["status"] == "failed" and "no luck today" in got["error_message"], got
        assert activities_scheduled(temporal, f"{prefix}-item-{again}") == 1
        assert show(root, failing)["status"] == "failed"  # the old item is left as it was
        assert worker.poll() is None


def test_a_worker_without_the_model_fails_the_item_naming_it(
    tmp_path: Path, pg_dsn: str, temporal: TemporalServer
) -> None:
    """The API side has the model (so the enqueue's checks pass); the worker's machine does not."""
    plugins = "postgres,temporal,diffusers"
    prefix = f"t{uuid.uuid4().hex[:10]}"
    front, back = tmp_path / "front", tmp_path / "back"
    for folder in (front, back):
        folder.mkdir()
        write_config(folder, pg_dsn, temporal.address, prefix=prefix)
    made = cli(front, "models", "create-demo", "--name", "harbour-at-dusk", plugins=plugins, timeout=300)
    assert made.returncode == 0, made.stderr
    graph = {
        "nodes": {
            "g": {
                "id": "g",
                "type": "txt2img",
                "model": "harbour-at-dusk",
                "prompt": "a harbour",
                "width": 64,
                "height": 64,
                "steps": 2,
            }
        },
        "edges": [],
    }
    with Procs() as procs:
        worker = procs.worker(back, tmp_path / "worker.log", plugins)
        [item_id] = enqueue(front, {"graph": graph}, plugins)
        wait_until(lambda: finished(front, [item_id], plugins), 120, "the item")
        got = show(front, item_id, plugins)
        print(f"\n{got['status']}: {got['error_type']}: {got['error_message']}")
        assert got["status"] == "failed", got
        assert "harbour-at-dusk" in got["error_message"], got
        assert activities_scheduled(temporal, f"{prefix}-item-{item_id}") == 1  # failed, not retried
        assert worker.poll() is None
