"""PostgreSQL (invokeai-postgres) against SQLite (the default), measured in the same run.

* **Enqueue**: 10,000 sessions as one batch, and as 500 batches of 20 (what API clients send), into
  each queue; seconds and the ratio PostgreSQL/SQLite.
* **Per-node persistence**: a 10,000-node chain of `add` nodes run by an Invoker whose sessions store
  is each of memory, SQLite and PostgreSQL (other stores in memory); wall time, cost per node and the
  ratios PostgreSQL/SQLite and each/memory.

PostgreSQL is a fresh cluster this script starts on 127.0.0.1 with Debian's server (the plugin tests'
`pg_server.py`, with `fsync=off`), or the server of `--dsn` (a database this script may fill). SQLite
runs with its defaults (WAL, `synchronous=NORMAL`). Each figure is the best of `--runs` runs.

    .venv/bin/python bench/postgres.py
    .venv/bin/python bench/postgres.py --nodes 2000 --items 2000 --runs 1   # a quick look
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins" / "invokeai-postgres" / "tests"))


def chain(n: int) -> dict[str, Any]:
    nodes = {f"n{i}": {"id": f"n{i}", "type": "add", "b": 1} for i in range(n)}
    nodes["n0"]["a"] = 1
    edges = [
        {"source": {"node_id": f"n{i}", "field": "value"}, "destination": {"node_id": f"n{i + 1}", "field": "a"}}
        for i in range(n - 1)
    ]
    return {"nodes": nodes, "edges": edges}


def best(runs: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(runs))


def invoker_for(root: Path, services: dict[str, str], dsn: str | None) -> Any:
    from invokeai_core import Invoker, PluginHost, load_config

    lines = ["[services]", *(f'{k} = "{v}"' for k, v in services.items())]
    if dsn is not None:
        lines += ["[plugins.postgres]", f'dsn = "{dsn}"']
    root.mkdir(parents=True, exist_ok=True)
    (root / "invokeai.toml").write_text("\n".join(lines) + "\n")
    config = load_config(root=root, environ={})
    return Invoker.from_config(config, PluginHost(config).load())


def time_enqueue(invoker: Any, items: int, batches: int) -> float:
    from invokeai_core import Batch

    queue = invoker.services.queue
    per = items // batches
    graph = {"nodes": {"a": {"id": "a", "type": "add", "a": 1, "b": 1}}, "edges": []}
    made = [
        Batch.model_validate(
            {"graph": graph, "data": [[{"node_path": "a", "field_name": "b", "items": list(range(per))}]]}
        )
        for _ in range(batches)
    ]
    queue.clear("bench")
    t0 = time.perf_counter()
    for batch in made:
        queue.enqueue_batch("bench", batch)
    elapsed = time.perf_counter() - t0
    assert queue.status("bench").pending == per * batches
    return elapsed


def time_chain(invoker: Any, nodes: int) -> float:
    from invokeai_core import Graph

    graph = Graph.from_dict(chain(nodes), invoker.registry)
    t0 = time.perf_counter()
    session = invoker.run_graph(graph, timeout=3600)
    invoker.services.sessions.flush()
    elapsed = time.perf_counter() - t0
    assert session.status == "completed", session.errors
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=None, help="an existing PostgreSQL database (default: start a cluster)")
    parser.add_argument("--items", type=int, default=10_000, help="sessions to enqueue")
    parser.add_argument("--nodes", type=int, default=10_000, help="nodes of the chain")
    parser.add_argument("--runs", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()

    server = None
    dsn = args.dsn
    if dsn is None:
        from pg_server import PgServer

        server = PgServer()
        server.start()
        dsn = server.create_database("bench_" + uuid.uuid4().hex[:8])
    stores = ("sessions", "image_records", "queue")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            sqlite = invoker_for(base / "sqlite", dict.fromkeys(stores, "sqlite"), None).start()
            pg = invoker_for(base / "pg", dict.fromkeys(stores, "postgres"), dsn).start()
            print(f"enqueue of {args.items} sessions (best of {args.runs})")
            for batches in (1, args.items // 20):
                s = best(args.runs, lambda inv=sqlite, b=batches: time_enqueue(inv, args.items, b))
                p = best(args.runs, lambda inv=pg, b=batches: time_enqueue(inv, args.items, b))
                label = "one batch" if batches == 1 else f"{batches} batches of {args.items // batches}"
                print(f"  {label:>24}: sqlite {s:7.2f} s   postgres {p:7.2f} s   ratio {p / s:5.2f}")
            sqlite.stop()
            pg.stop()

            print(f"per-node persistence, a {args.nodes}-node chain (best of {args.runs})")
            times: dict[str, float] = {}
            for name in ("memory", "sqlite", "postgres"):
                services = dict.fromkeys(stores, "memory") | {"sessions": name}
                invoker = invoker_for(base / f"chain-{name}", services, dsn).start()
                times[name] = best(args.runs, lambda inv=invoker: time_chain(inv, args.nodes))
                invoker.stop()
            for name, t in times.items():
                print(
                    f"  {name:>8}: {t:7.2f} s  {1e6 * t / args.nodes:7.1f} us/node  "
                    f"x{t / times['memory']:.2f} of memory"
                )
            print(f"  ratio postgres/sqlite: {times['postgres'] / times['sqlite']:.2f}")
    finally:
        if server is not None:
            server.remove()


if __name__ == "__main__":
    main()
