"""The cost of persistence per node, through `invokeai run -f` (a real process), SQLite against memory.

For chains and fan-out/fan-in graphs of `add` nodes (1k, 10k and 100k nodes by default), runs
`invokeai run -f graph.json --json` once with the default configuration (SQLite sessions in a fresh
root) and once with `-o services.sessions=memory`, and prints per size: the wall time, the cost per
node, the ratio SQLite/memory, the growth ratio t(10N)/t(N) of each store, and the peak RSS of each
process. Targets (issue 15): SQLite at most 1.5x memory at every size, growth at most 11 for 10x the
nodes, the 100k-node chain under 1 GiB peak RSS.

    .venv/bin/python bench/persistence.py                 # 1k, 10k, 100k
    .venv/bin/python bench/persistence.py --sizes 1000 10000 --runs 3

Each figure is the best of `--runs` runs (the machine is shared; the best run is the least disturbed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

INVOKEAI = str(Path(sys.executable).parent / "invokeai")


def chain(n: int) -> dict[str, Any]:
    nodes = {f"n{i}": {"id": f"n{i}", "type": "add", "b": 1} for i in range(n)}
    nodes["n0"]["a"] = 1
    edges = [
        {"source": {"node_id": f"n{i}", "field": "value"}, "destination": {"node_id": f"n{i + 1}", "field": "a"}}
        for i in range(n - 1)
    ]
    return {"nodes": nodes, "edges": edges}


def fan(n: int) -> dict[str, Any]:
    """One source, n - 2 nodes fed by it, one collect gathering them all."""
    nodes: dict[str, Any] = {"src": {"id": "src", "type": "add", "a": 1, "b": 1}}
    edges = []
    for i in range(n - 2):
        nodes[f"f{i}"] = {"id": f"f{i}", "type": "add", "b": i}
        edges.append(
            {"source": {"node_id": "src", "field": "value"}, "destination": {"node_id": f"f{i}", "field": "a"}}
        )
        edges.append(
            {"source": {"node_id": f"f{i}", "field": "value"}, "destination": {"node_id": "all", "field": "item"}}
        )
    nodes["all"] = {"id": "all", "type": "collect"}
    return {"nodes": nodes, "edges": edges}


#: Runs its arguments as one child and prints that child's peak RSS (KiB) last on stderr.
_MEASURE = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"
)


def run_once(graph_file: Path, store: str, work: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one `invokeai run -f` in a fresh root folder."""
    root = Path(tempfile.mkdtemp(dir=work))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(INVOKEAI_ROOT=str(root), HF_HUB_OFFLINE="1", INVOKEAI_LOAD_PLUGINS="nodes")
    args = [INVOKEAI, *(["-o", "services.sessions=memory"] if store == "memory" else []), "run", "-f", str(graph_file)]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *args, "--json"], env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    err = proc.stderr.decode()
    if proc.returncode != 0:
        raise SystemExit(f"{store} run of {graph_file.name} failed ({proc.returncode}): {err[-2000:]}")
    if json.loads(proc.stdout)["status"] != "completed":
        raise SystemExit(f"{store} run of {graph_file.name} did not complete")
    return elapsed, int(err.rsplit("peak-rss-kib", 1)[1].split()[0])


def run_best(graph_file: Path, store: str, work: Path, runs: int) -> tuple[float, int]:
    results = [run_once(graph_file, store, work) for _ in range(runs)]
    return min(r[0] for r in results), max(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--shapes", nargs="+", default=["chain", "fan"], choices=["chain", "fan"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        table: dict[tuple[str, int], dict[str, tuple[float, int]]] = {}
        for shape in args.shapes:
            for n in args.sizes:
                graph_file = work / f"{shape}{n}.json"
                graph_file.write_text(json.dumps((chain if shape == "chain" else fan)(n)))
                table[(shape, n)] = {
                    store: run_best(graph_file, store, work, args.runs) for store in ("memory", "sqlite")
                }
                graph_file.unlink()
        print(
            f"{'case':<14}{'nodes':>8}{'memory s':>10}{'sqlite s':>10}{'mem us/n':>10}{'sql us/n':>10}"
            f"{'ratio':>7}{'mem MiB':>9}{'sql MiB':>9}"
        )
        for (shape, n), row in table.items():
            (tm, rm), (ts, rs) = row["memory"], row["sqlite"]
            print(
                f"{shape:<14}{n:>8}{tm:>10.2f}{ts:>10.2f}{tm / n * 1e6:>10.1f}{ts / n * 1e6:>10.1f}"
                f"{ts / tm:>7.2f}{rm / 1024:>9.0f}{rs / 1024:>9.0f}"
            )
        print("growth t(10N)/t(N) (linear = 10, target <= 11):")
        for shape in args.shapes:
            for n in args.sizes:
                if (shape, n * 10) in table:
                    for store in ("memory", "sqlite"):
                        ratio = table[(shape, n * 10)][store][0] / table[(shape, n)][store][0]
                        print(f"  {shape} {store} {n}->{n * 10}: {ratio:.2f}")
        worst = max(row["sqlite"][0] / row["memory"][0] for row in table.values())
        print(f"worst SQLite/memory ratio: {worst:.2f} (target <= 1.5)")
        big = table.get(("chain", 100_000))
        if big is not None:
            print(f"100k-node chain peak RSS: sqlite {big['sqlite'][1] / 1024:.0f} MiB (target < 1024)")


if __name__ == "__main__":
    main()
