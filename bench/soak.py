"""A soak: `--sessions` small sessions (2,000) through the queue of a real `invokeai serve` (SQLite
stores of a fresh root) with a Socket.IO client subscribed to the queue the whole time, enqueued in
batches of `--chunk` (200); prints the server's RSS (VmRSS, from /proc) after the first chunk and at
the end, and their ratio (target: at most 1.2), plus the events the client received. Not a test
(about a minute on 2 cores); run it after changes to the engine, the stores or the web plugin.

    .venv/bin/python bench/soak.py [--sessions 2000] [--chunk 200] [--nodes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def chunk_batch(start: int, count: int, nodes: int) -> dict[str, Any]:
    graph: dict[str, Any] = {"nodes": {"n0": {"id": "n0", "type": "integer"}}, "edges": []}
    for i in range(1, nodes):
        graph["nodes"][f"n{i}"] = {"id": f"n{i}", "type": "add", "b": i}
        graph["edges"].append(
            {"source": {"node_id": f"n{i - 1}", "field": "value"}, "destination": {"node_id": f"n{i}", "field": "a"}}
        )
    items = list(range(start, start + count))  # distinct inputs: no output-cache hits
    return {"batch": {"graph": graph, "data": [[{"node_path": "n0", "field_name": "value", "items": items}]]}}


async def soak(url: str, pid: int, sessions: int, chunk: int, nodes: int) -> None:
    import httpx
    import socketio

    sio = socketio.AsyncClient(reconnection=False)
    received = {"events": 0, "completed": 0}
    done = asyncio.Event()
    target = {"n": 0}

    @sio.on("*")
    async def on_event(event: str, data: Any = None) -> None:
        received["events"] += 1
        if event == "queue_item_status_changed" and data["status"] == "completed":
            received["completed"] += 1
            if received["completed"] >= target["n"]:
                done.set()

    await sio.connect(url, transports=["websocket"], wait_timeout=30)
    assert (await sio.call("subscribe_queue", {"queue_id": "default"}, timeout=30))["ok"]
    figures: list[tuple[int, float]] = []
    async with httpx.AsyncClient(base_url=url + "/api/v1", timeout=60) as http:
        for start in range(0, sessions, chunk):
            count = min(chunk, sessions - start)
            target["n"] = start + count
            done.clear()
            (await http.post("/queue/default/enqueue_batch", json=chunk_batch(start, count, nodes))).raise_for_status()
            await asyncio.wait_for(done.wait(), 600)
            figures.append((start + count, rss_mib(pid)))
            print(f"  {start + count:6d} sessions: RSS {figures[-1][1]:7.1f} MiB", flush=True)
        status = (await http.get("/queue/default/status")).json()["queue"]
    await sio.disconnect()
    first, last = figures[0][1], figures[-1][1]
    print(f"RSS after the first {figures[0][0]}: {first:.1f} MiB; after {figures[-1][0]}: {last:.1f} MiB")
    print(f"ratio end / first chunk: {last / first:.3f} (target <= 1.2); events received: {received['events']}")
    print(f"queue: {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
        env.update(INVOKEAI_ROOT=root, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        invokeai = str(Path(sys.executable).parent / "invokeai")
        proc = subprocess.Popen([invokeai, "serve", "--port", "0"], stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "serving on" not in line:
            proc.kill()
            sys.exit(f"the server did not start: {line!r}")
        url = line.split("serving on ", 1)[1].split()[0]
        try:
            asyncio.run(soak(url, proc.pid, args.sessions, args.chunk, args.nodes))
        finally:
            proc.terminate()
            proc.wait(20)


if __name__ == "__main__":
    main()
