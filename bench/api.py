"""The HTTP API and Socket.IO server against the in-process engine (invokeai-web).

Runs the same work both ways, on the same configuration (the SQLite stores of a fresh root, as a real
deployment), `--repeat` times each (medians are reported: the machine may be busy), and prints the
figures and their ratio:

1. **In-process**: an Invoker with its queue processor runs one batch of `--sessions` sessions, each a
   chain of `--nodes` trivial nodes (`integer -> add -> add ...` from invokeai-nodes), enqueued with
   `enqueue_batch`; done when every item's `completed` status was emitted.
2. **Server**: `invokeai serve` in a subprocess on a free 127.0.0.1 port with `--clients` Socket.IO
   clients connected over WebSocket. `--watchers` of them subscribe to the busy queue (and receive
   every event of every session: `batch_enqueued`, status changes, `session_*`, `invocation_*`); the
   others subscribe to queues of their own that stay idle. The same batch is posted to
   `POST /api/v1/queue/default/enqueue_batch`; done when a watching client has received every item's
   `completed` status.

Printed: sessions per second end to end (from the POST to the last `completed` event received), the
time per node of both and their ratio (target: the server at most 3x the in-process engine), the
server's own time for the batch (first item created to last completed, by its clock), and the delay
from each event's emission (its `timestamp`) to its receipt by a watching client, p50 and p99 (target:
p99 under 50 ms). The clients run in this process, so with many watchers on a small machine the
clients' own decoding, not the server, sets the pace (compare the server's time). Not a test.

    .venv/bin/python bench/api.py [--sessions 500] [--nodes 10] [--clients 100] [--watchers 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

WARM_UP = 20  # sessions run first, unmeasured, both ways
SPACING = 1000  # first values far apart: no two sessions share a node's inputs (no output-cache hits)


def batch(sessions: int, nodes: int, offset: int = 0) -> dict[str, Any]:
    graph_nodes: dict[str, Any] = {"n0": {"id": "n0", "type": "integer"}}
    edges = []
    for i in range(1, nodes):
        graph_nodes[f"n{i}"] = {"id": f"n{i}", "type": "add", "b": 1}
        edges.append(
            {"source": {"node_id": f"n{i - 1}", "field": "value"}, "destination": {"node_id": f"n{i}", "field": "a"}}
        )
    items = [offset + i * SPACING for i in range(sessions)]
    return {
        "graph": {"nodes": graph_nodes, "edges": edges},
        "data": [[{"node_path": "n0", "field_name": "value", "items": items}]],
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# -- 1. in-process -------------------------------------------------------------------------------------
def run_in_process(root: Path, sessions: int, nodes: int, repeat: int) -> list[float]:
    from invokeai_core.config import load_config
    from invokeai_core.invoker import Invoker
    from invokeai_core.plugins.host import PluginHost

    config = load_config(root=root, environ={})
    host = PluginHost(config).load()
    invoker = Invoker.from_config(config, host)
    if "add" not in invoker.registry or "integer" not in invoker.registry:
        sys.exit("bench/api.py needs the invokeai-nodes plugin (scripts/setup.sh installs it)")
    invoker.start(process_queue=True)
    done = threading.Event()
    state = {"batch": "", "finished": 0, "target": 0}

    def on_status(event: Any) -> None:
        if event.batch_id == state["batch"] and event.status in ("completed", "failed", "canceled"):
            state["finished"] += 1
            if state["finished"] == state["target"]:
                done.set()

    def run(queue_id: str, data: dict[str, Any]) -> float:
        from invokeai_core.batch import Batch

        b = Batch.model_validate(data)
        done.clear()
        state.update(batch=b.batch_id, finished=0, target=b.count())
        start = time.perf_counter()
        invoker.enqueue_batch(queue_id, b)
        if not done.wait(600):
            sys.exit("in-process: a batch did not finish within 10 minutes")
        return time.perf_counter() - start

    invoker.services.events.subscribe(on_status, names=["queue_item_status_changed"])
    times = []
    try:
        run("warmup", batch(WARM_UP, nodes, offset=-(10**9)))  # imports, caches, the database
        for r in range(repeat):
            times.append(run("default", batch(sessions, nodes, offset=r)))
        status = invoker.queue.status("default")
        if status.completed != sessions * repeat:
            sys.exit(f"in-process: {status.failed} failed, {status.canceled} canceled")
    finally:
        invoker.stop()
    return times


# -- 2. the server -------------------------------------------------------------------------------------
def start_server(root: Path) -> tuple[subprocess.Popen[str], str]:
    invokeai = str(Path(sys.executable).parent / "invokeai")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update({"INVOKEAI_ROOT": str(root), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen(
        [invokeai, "serve", "--port", "0", "--log-level", "warning"], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving on" not in line:
        proc.kill()
        sys.exit(f"the server did not start: {line!r}")
    return proc, line.split("serving on ", 1)[1].split()[0]


class Client:
    """A Socket.IO client that counts completed items per batch and records event delays."""

    def __init__(self, url: str, watching: bool) -> None:
        import socketio

        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.watching = watching
        self.delays: list[float] = []
        self.events = 0
        self.completed: dict[str, int] = {}
        self.targets: dict[str, tuple[int, asyncio.Event]] = {}
        self.done_at: dict[str, float] = {}

        @self.sio.on("*")
        async def on_event(event: str, data: Any = None) -> None:
            now = time.time()
            self.events += 1
            self.delays.append(now - data["timestamp"])
            if event == "queue_item_status_changed" and data["status"] == "completed":
                b = data["batch_id"]
                n = self.completed[b] = self.completed.get(b, 0) + 1
                target = self.targets.get(b)
                if target is not None and n == target[0]:
                    self.done_at[b] = time.perf_counter()
                    target[1].set()

    def expect(self, batch_id: str, count: int) -> asyncio.Event:
        event = asyncio.Event()
        self.targets[batch_id] = (count, event)
        if self.completed.get(batch_id, 0) >= count:
            self.done_at[batch_id] = time.perf_counter()
            event.set()
        return event

    async def connect(self, queue_id: str) -> None:
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=30)
        ack = await self.sio.call("subscribe_queue", {"queue_id": queue_id}, timeout=30)
        assert ack["ok"], ack


def _span(items: list[dict[str, Any]]) -> float:
    """Seconds from the first item's creation to the last one's completion, by the server's clock."""

    def t(text: str) -> float:
        return dt.datetime.fromisoformat(text).timestamp()

    return max(t(i["completed_at"]) for i in items) - min(t(i["created_at"]) for i in items)


async def run_server(url: str, sessions: int, nodes: int, clients: int, watchers: int, repeat: int) -> dict[str, Any]:
    import httpx

    from invokeai_core.batch import Batch

    watchers = max(1, min(watchers, clients))
    pool = [Client(url, i < watchers) for i in range(clients)]
    for i in range(0, clients, 20):  # connect in groups, as browsers would arrive
        group = pool[i : i + 20]
        await asyncio.gather(*(c.connect("default" if c.watching else f"idle-{i + j}") for j, c in enumerate(group)))
    watching = [c for c in pool if c.watching]
    times, spans, delays = [], [], []
    async with httpx.AsyncClient(base_url=url + "/api/v1", timeout=60) as http:
        warm_up = batch(WARM_UP, nodes, offset=-(10**9))
        (await http.post("/queue/warmup/enqueue_batch", json={"batch": warm_up})).raise_for_status()
        while (await http.get("/queue/warmup/status")).json()["queue"]["completed"] < WARM_UP:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let the connections settle
        for r in range(repeat):
            b = Batch.model_validate(batch(sessions, nodes, offset=r))
            waits = [c.expect(b.batch_id, sessions) for c in watching]
            for c in watching:
                c.delays.clear()
            start = time.perf_counter()
            res = await http.post("/queue/default/enqueue_batch", json={"batch": b.model_dump(mode="json")})
            res.raise_for_status()
            await asyncio.wait_for(waits[0].wait(), 600)
            times.append(watching[0].done_at[b.batch_id] - start)
            await asyncio.wait_for(asyncio.gather(*(w.wait() for w in waits)), 300)
            delays += [d for c in watching for d in c.delays]
            items = (await http.get("/queue/default/list", params={"limit": 1000, "status": "completed"})).json()
            spans.append(_span([i for i in items["items"] if i["batch_id"] == b.batch_id]))
            await http.put("/queue/default/prune")
        status = (await http.get("/queue/default/status")).json()["queue"]
    for c in pool:
        await c.sio.disconnect()
    return {
        "times": times,
        "spans": spans,
        "delays": delays,
        "events_per_watcher": sum(c.events for c in watching) / len(watching),
        "idle_events": sum(c.events for c in pool if not c.watching),
        "status": status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--clients", type=int, default=100, help="Socket.IO clients connected")
    parser.add_argument("--watchers", type=int, default=1, help="how many of them subscribe to the busy queue")
    parser.add_argument("--repeat", type=int, default=3, help="batches run each way (medians are reported)")
    args = parser.parse_args()
    n = args.sessions * args.nodes
    print(
        f"bench/api.py: {args.sessions} sessions x {args.nodes} nodes through enqueue_batch, "
        f"SQLite stores, {args.repeat} runs each way (medians)"
    )
    with tempfile.TemporaryDirectory() as base:
        inproc = statistics.median(run_in_process(Path(base) / "inproc", args.sessions, args.nodes, args.repeat))
        proc, url = start_server(Path(base) / "server")
        try:
            res = asyncio.run(run_server(url, args.sessions, args.nodes, args.clients, args.watchers, args.repeat))
        finally:
            proc.terminate()
            proc.wait(30)
    if res["status"]["failed"] or res["status"]["canceled"]:
        sys.exit(f"server: {res['status']}")
    server = statistics.median(res["times"])
    span = statistics.median(res["spans"])
    delays_ms = [d * 1000 for d in res["delays"]]
    for label, t in (("in-process engine ", inproc), ("server, end to end", server)):
        print(f"  {label}: {t:6.2f} s  {args.sessions / t:7.1f} sessions/s  {t / n * 1e3:.3f} ms/node")
    print(f"  ({args.clients} clients connected to the server, {args.watchers} of them watching the queue)")
    print(f"  server, its own time for the batch: {span:.2f} s ({span / n * 1e3:.3f} ms/node)")
    print(
        f"  events: {res['events_per_watcher']:.0f} to each watcher, {res['idle_events']} to the idle clients; "
        f"delay from emission to receipt: p50 {percentile(delays_ms, 50):.2f} ms, "
        f"p99 {percentile(delays_ms, 99):.2f} ms, max {max(delays_ms):.2f} ms   (target: p99 < 50 ms)"
    )
    print(f"  server / in-process time per node: {server / inproc:.2f}x   (target: <= 3x)")


if __name__ == "__main__":
    main()
