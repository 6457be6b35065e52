"""The session queue and persistence: SQLite (the default) against the memory stores, in-process.

Prints, for each store:
* enqueue one batch of 10,000 sessions (target for SQLite: <= 2 s);
* dequeue-and-run 1,000 one-node sessions through the queue processor (sessions per second);
* a 1,000-node chain run with the session persisted node by node, against the same chain in
  memory: the extra time per node (target: <= 1 ms);
* a session built node by node through the Invoker (`add_node`, `add_edge`, each saved), 1,000
  and 4,000 nodes: the time per node and edge (linear growth: the same at both sizes).
and the SQLite/memory ratios.

    .venv/bin/python bench/session_queue.py [--workers N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_core.batch import Batch, BatchDatum
from invokeai_core.config import InvokeAIConfig, load_config
from invokeai_core.events import EventBase
from invokeai_core.invoker import Invoker
from invokeai_core.plugins.host import PluginHost
from invokeai_core.testing import make_plugin

ENQUEUE_N = 10_000
RUN_N = 1_000
CHAIN_N = 1_000
BUILD_N = (1_000, 4_000)


@invocation_output("bench_q_int_output")
class BenchIntOutput(BaseInvocationOutput):
    value: int = OutputField(description="v")


@invocation("bench_q_inc", version="1.0.0", use_cache=False)
class BenchInc(BaseInvocation):
    value: int = InputField(default=0, description="v")

    def invoke(self, context: InvocationContext) -> BenchIntOutput:
        return BenchIntOutput(value=self.value + 1)


def one_node_batch(n: int) -> Batch:
    graph = {"nodes": {"n": {"id": "n", "type": "bench_q_inc"}}, "edges": []}
    return Batch(graph=graph, data=[[BatchDatum(node_path="n", field_name="value", items=list(range(n)))]])


def chain(n: int) -> dict[str, Any]:
    nodes = {f"n{i}": {"id": f"n{i}", "type": "bench_q_inc"} for i in range(n)}
    edges = [
        {"source": {"node_id": f"n{i}", "field": "value"}, "destination": {"node_id": f"n{i + 1}", "field": "value"}}
        for i in range(n - 1)
    ]
    return {"nodes": nodes, "edges": edges}


def make_config(root: Path, storage: str, workers: int) -> InvokeAIConfig:
    config = load_config(
        root=root,
        environ={},
        overrides={
            "services.sessions": storage,
            "services.image_records": storage,
            "services.queue": storage,
            "max_queue_size": ENQUEUE_N * 2,
            "queue_workers": workers,
        },
    )
    return config


def measure(storage: str, root: Path, workers: int) -> dict[str, float]:
    config = make_config(root, storage, workers)
    host = PluginHost(config, discover=False).load()
    host.register_plugin(make_plugin(BenchInc, name="bench_queue"), "bench_queue")
    out: dict[str, float] = {}
    with Invoker.from_config(config, host) as invoker:
        invoker.enqueue_batch("warmup", one_node_batch(100))
        invoker.queue.clear("warmup")

        t0 = time.perf_counter()
        result = invoker.enqueue_batch("bench", one_node_batch(ENQUEUE_N))
        out["enqueue_s"] = time.perf_counter() - t0
        assert result.enqueued == ENQUEUE_N
        invoker.queue.clear("bench")

        queue = invoker.queue
        queue.pause("run")
        ids = invoker.enqueue_batch("run", one_node_batch(RUN_N)).item_ids
        done = threading.Event()
        finished = 0
        lock = threading.Lock()

        def count(event: EventBase) -> None:
            nonlocal finished
            if getattr(event, "status", None) in ("completed", "failed", "canceled"):
                with lock:
                    finished += 1
                    if finished == RUN_N:
                        done.set()

        invoker.services.events.subscribe(count, names=["queue_item_status_changed"])
        invoker.start(process_queue=True)
        t0 = time.perf_counter()
        queue.resume("run")
        assert invoker.queue_processor is not None
        invoker.queue_processor.wake()
        assert done.wait(600), "the queue did not drain"
        out["run_s"] = time.perf_counter() - t0
        assert queue.status("run").completed == RUN_N, queue.status("run")
        assert queue.get_item(ids[-1]).status == "completed"

        invoker.run_graph(chain(100), timeout=600)  # warm up
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            session = invoker.run_graph(chain(CHAIN_N), timeout=600)
            runs.append(time.perf_counter() - t0)
            assert session.status == "completed" and len(session.history) == CHAIN_N
        out["chain_s"] = statistics.median(runs)

        for n in BUILD_N:
            session = invoker.create_session()
            t0 = time.perf_counter()
            for i in range(n):
                invoker.add_node(session.id, {"id": f"n{i}", "type": "bench_q_inc"})
                if i:
                    edge = {
                        "source": {"node_id": f"n{i - 1}", "field": "value"},
                        "destination": {"node_id": f"n{i}", "field": "value"},
                    }
                    invoker.add_edge(session.id, edge)
            out[f"build_{n}_ms"] = (time.perf_counter() - t0) / n * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=1, help="queue processor workers (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {s: measure(s, Path(tmp) / s, args.workers) for s in ("memory", "sqlite")}
    mem, sql = results["memory"], results["sqlite"]
    print(f"{'':34} {'memory':>10} {'sqlite':>10} {'ratio':>7}")
    print(
        f"{'enqueue 10,000 sessions (s)':34} {mem['enqueue_s']:10.3f} {sql['enqueue_s']:10.3f} "
        f"{sql['enqueue_s'] / mem['enqueue_s']:7.2f}"
    )
    mem_rate, sql_rate = RUN_N / mem["run_s"], RUN_N / sql["run_s"]
    print(
        f"{'run 1,000 one-node sessions (/s)':34} {mem_rate:10.0f} {sql_rate:10.0f} {mem_rate / sql_rate:7.2f}"
        f"   ({args.workers} worker{'s' if args.workers > 1 else ''})"
    )
    mem_node, sql_node = mem["chain_s"] / CHAIN_N * 1e3, sql["chain_s"] / CHAIN_N * 1e3
    print(f"{'1,000-node chain (ms per node)':34} {mem_node:10.3f} {sql_node:10.3f} {sql_node / mem_node:7.2f}")
    print()
    print(f"enqueue 10,000 on SQLite: {sql['enqueue_s']:.2f} s (target <= 2 s)")
    print(f"queue throughput on SQLite: {sql_rate:.0f} sessions/s ({1e3 / sql_rate:.2f} ms per session)")
    extra = sql_node - mem_node
    print(f"SQLite persistence per node: +{extra:.3f} ms (target <= 1 ms)")
    small, big = (sql[f"build_{n}_ms"] for n in BUILD_N)
    print(
        f"building a session node by node on SQLite: {small:.3f} ms per node+edge at {BUILD_N[0]:,}, "
        f"{big:.3f} at {BUILD_N[1]:,} (ratio {big / small:.2f}; linear = 1)"
    )


if __name__ == "__main__":
    main()
