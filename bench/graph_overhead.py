"""Graph engine overhead, in-process, with in-memory services and trivial nodes.

Prints microseconds per executed node for: chains of 1,000 and 10,000 nodes, a fan-out/fan-in of
10,000, and an iterate over 10,000 items through 2 nodes into a collect; the 10k/1k ratio of the
chain (linear growth means about 10); and the median wall time of `invokeai --help` over 10 runs.
Targets (issue 2): <= 50 us per node, 10k/1k ratio <= 12, `--help` <= 0.4 s on the 2-core CI box.

    .venv/bin/python bench/graph_overhead.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
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
from invokeai_core.config import load_config
from invokeai_core.graph import Graph
from invokeai_core.invoker import Invoker
from invokeai_core.plugins.host import PluginHost
from invokeai_core.testing import make_plugin


@invocation_output("bench_int_output")
class BenchIntOutput(BaseInvocationOutput):
    value: int = OutputField(description="v")


@invocation_output("bench_list_output")
class BenchListOutput(BaseInvocationOutput):
    collection: list[int] = OutputField(description="c")


@invocation("bench_inc", version="1.0.0")
class BenchInc(BaseInvocation):
    value: int = InputField(default=0, description="v")

    def invoke(self, context: InvocationContext) -> BenchIntOutput:
        return BenchIntOutput(value=self.value + 1)


@invocation("bench_list", version="1.0.0")
class BenchList(BaseInvocation):
    size: int = InputField(default=0, description="n")

    def invoke(self, context: InvocationContext) -> BenchListOutput:
        return BenchListOutput(collection=list(range(self.size)))


def edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


def chain(n: int) -> dict[str, Any]:
    nodes = {f"n{i}": {"id": f"n{i}", "type": "bench_inc"} for i in range(n)}
    edges = [edge(f"n{i}", "value", f"n{i + 1}", "value") for i in range(n - 1)]
    return {"nodes": nodes, "edges": edges}


def fan(n: int) -> dict[str, Any]:
    nodes: dict[str, Any] = {"src": {"id": "src", "type": "bench_inc"}, "gather": {"id": "gather", "type": "collect"}}
    edges = []
    for i in range(n):
        nodes[f"f{i}"] = {"id": f"f{i}", "type": "bench_inc"}
        edges.append(edge("src", "value", f"f{i}", "value"))
        edges.append(edge(f"f{i}", "value", "gather", "item"))
    return {"nodes": nodes, "edges": edges}


def iterate(n: int) -> dict[str, Any]:
    nodes = {
        "list": {"id": "list", "type": "bench_list", "size": n},
        "each": {"id": "each", "type": "iterate"},
        "a": {"id": "a", "type": "bench_inc"},
        "b": {"id": "b", "type": "bench_inc"},
        "gather": {"id": "gather", "type": "collect"},
    }
    edges = [
        edge("list", "collection", "each", "collection"),
        edge("each", "item", "a", "value"),
        edge("a", "value", "b", "value"),
        edge("b", "value", "gather", "item"),
    ]
    return {"nodes": nodes, "edges": edges}


def measure(invoker: Invoker, graph_json: dict[str, Any]) -> tuple[int, float, float]:
    t0 = time.perf_counter()
    graph = Graph.from_dict(graph_json, invoker.registry, require_inputs=True)
    t1 = time.perf_counter()
    session = invoker.run_graph(graph, timeout=600)
    t2 = time.perf_counter()
    assert session.status == "completed", session.errors
    return len(session.history), t1 - t0, t2 - t1


def help_median(runs: int = 10) -> float:
    exe = str(Path(sys.executable).parent / "invokeai")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        memory = {f"services.{k}": "memory" for k in ("sessions", "image_records", "queue")}
        config = load_config(root=root, environ={}, overrides=memory)  # engine only; bench/session_queue.py: SQLite
        host = PluginHost(config, discover=False).load()
        host.register_plugin(make_plugin(BenchInc, BenchList, name="bench"), "bench")
        with Invoker.from_config(config, host) as invoker:
            measure(invoker, chain(200))  # warm up
            rows = []
            per_node: dict[str, float] = {}
            for name, graph in [
                ("chain 1k", chain(1_000)),
                ("chain 10k", chain(10_000)),
                ("fan-out/fan-in 10k", fan(10_000)),
                ("iterate 10k x 2 nodes", iterate(10_000)),
            ]:
                executed, build, run = measure(invoker, graph)
                total = build + run
                per_node[name] = total / executed * 1e6
                rows.append((name, executed, build * 1e3, run * 1e3, run / executed * 1e6, total / executed * 1e6))
    print(f"{'case':24} {'executed':>9} {'build ms':>9} {'run ms':>9} {'run us/node':>12} {'total us/node':>14}")
    for name, executed, build_ms, run_ms, run_us, total_us in rows:
        print(f"{name:24} {executed:9d} {build_ms:9.1f} {run_ms:9.1f} {run_us:12.1f} {total_us:14.1f}")
    t1k = next(r for r in rows if r[0] == "chain 1k")
    t10k = next(r for r in rows if r[0] == "chain 10k")
    ratio = (t10k[2] + t10k[3]) / (t1k[2] + t1k[3])
    print(f"chain 10k/1k time ratio: {ratio:.2f} (linear = 10, target <= 12)")
    worst = max(per_node.values())
    print(f"worst total us/node: {worst:.1f} (target <= 50)")
    print(f"invokeai --help median of 10: {help_median():.3f} s (target <= 0.4 s)")


if __name__ == "__main__":
    main()
