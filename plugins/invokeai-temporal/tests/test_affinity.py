"""Model affinity, measured: two `invokeai worker`s whose model caches hold one small model each
(`ram_budget_gb` fits one demo model, not two), two models, and items that alternate between them.

The same run is made with affinity on and off (off: every item goes to the shared task queue, which
deals them out to whichever worker asks first, much like round-robin). The items alternate in pairs
(a a b b a a b b ...) so that dealing them out in turn does not line up with the models by luck. The
`model_load_started` events of both workers are counted through Redis (the invokeai-redis plugin's
own event bus, in this process) and both counts are printed; affinity must cause fewer loads.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from deploy_helpers import Procs, RedisServer, TemporalServer, cli, enqueue, finished, wait_until, write_config

PLUGINS = "postgres,temporal,diffusers,redis"
MODELS = ("affinity-a", "affinity-b")
#: GB: a demo model takes about 10 MB of cache, so one fits and two do not
ONE_MODEL = 0.014


def generate(model: str) -> dict[str, Any]:
    return {
        "nodes": {
            "g": {"id": "g", "type": "txt2img", "model": model, "prompt": "a", "width": 64, "height": 64, "steps": 2}
        },
        "edges": [],
    }


def batch_of(models: list[str]) -> dict[str, Any]:
    return {
        "graph": generate(models[0]),
        "data": [[{"node_path": "g", "field_name": "model", "items": models}]],
    }


class LoadCounter:
    """Counts `model_load_started` events of every process on the Redis channel."""

    def __init__(self, url: str) -> None:
        from invokeai_redis.bus import RedisEventBus
        from invokeai_redis.settings import RedisSettings

        self.bus = RedisEventBus(settings=RedisSettings(url=url))
        self.count = 0
        self.lock = threading.Lock()
        self.bus.subscribe(self._on, names=["model_load_started"])

    def _on(self, event: Any) -> None:
        with self.lock:
            self.count += 1

    def take(self) -> int:
        with self.lock:
            count, self.count = self.count, 0
            return count


def run(root: Path, logs: Path, counter: LoadCounter) -> tuple[int, int]:
    """(loads while warming up, loads over the 12 alternating items) with two workers."""
    with Procs() as procs:
        for i in range(2):
            procs.worker(root, logs / f"worker{i}.log", PLUGINS)
        counter.take()
        warm = enqueue(root, batch_of(list(MODELS)), PLUGINS)  # both idle: one model each, most likely
        wait_until(lambda: finished(root, warm, PLUGINS), 180, "the warm-up items")
        warm_loads = counter.take()
        pattern = [MODELS[(i // 2) % 2] for i in range(12)]
        ids = enqueue(root, batch_of(pattern), PLUGINS)
        wait_until(lambda: finished(root, ids, PLUGINS), 300, "the alternating items")
        statuses = [cli(root, "queue", "show", str(i), plugins=PLUGINS).stdout for i in ids]
        assert all("completed" in s for s in statuses), statuses
        return warm_loads, counter.take()


def test_affinity_loads_fewer_models_than_the_shared_queue(
    tmp_path: Path, pg_dsn: str, temporal: TemporalServer
) -> None:
    redis = RedisServer(tmp_path)
    counter = LoadCounter(redis.url)
    loads: dict[bool, tuple[int, int]] = {}
    try:
        for affinity in (True, False):
            root = tmp_path / f"affinity-{affinity}"
            root.mkdir()
            write_config(
                root,
                pg_dsn,
                temporal.address,
                prefix=f"t{uuid.uuid4().hex[:10]}",
                services={"events": "redis"},
                temporal={"affinity": affinity, "affinity_wait": 30},
                plugins={"redis": {"url": redis.url}, "diffusers": {"ram_budget_gb": ONE_MODEL, "device": "cpu"}},
            )
            for name in MODELS:
                made = cli(root, "models", "create-demo", "--name", name, plugins=PLUGINS, timeout=300)
                assert made.returncode == 0, made.stderr
            logs = tmp_path / f"logs-{affinity}"
            logs.mkdir()
            loads[affinity] = run(root, logs, counter)
    finally:
        counter.bus.stop()
        redis.stop()
    (warm_on, on), (warm_off, off) = loads[True], loads[False]
    print(
        f"\nmodel_load_started over 12 items alternating in pairs between 2 models on 2 workers: "
        f"affinity {on}, shared queue {off} (warm-up: {warm_on} and {warm_off})"
    )
    assert warm_on > 0 and warm_off > 0  # the counter sees the workers' loads
    assert on < off
