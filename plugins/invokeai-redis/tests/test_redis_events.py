"""Events across processes through a real Redis: wanted events cross once, unwanted ones never leave,
a graph run by another process (`invokeai run`) is seen here, and a dead Redis is a clear error."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, wait_until

from invokeai_core import (
    InvocationCompleteEvent,
    InvocationProgressEvent,
    SessionCompleteEvent,
    StorageUnavailableError,
)

INVOKEAI = str(Path(sys.executable).parent / "invokeai")


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    """This environment without INVOKEAI_* settings, with a root folder and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(INVOKEAI_ROOT=str(root), HF_HUB_OFFLINE="1", **extra)
    return env


@pytest.fixture
def make_bus(redis_url: str, channel: str) -> Iterator[Any]:
    from invokeai_redis.bus import RedisEventBus
    from invokeai_redis.settings import RedisSettings

    buses: list[RedisEventBus] = []

    def make() -> RedisEventBus:
        bus = RedisEventBus(settings=RedisSettings(url=redis_url, channel=channel))
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.stop()


def complete(session_id: str, node: str = "n") -> InvocationCompleteEvent:
    return InvocationCompleteEvent(
        session_id=session_id, node_id=node, source_node_id=node, invocation_type="add", result={"value": 3}
    )


def test_wanted_events_cross_once_in_order_and_unwanted_ones_stay_home(make_bus: Any) -> None:
    a, b = make_bus(), make_bus()
    assert not a.has_subscribers("invocation_complete")  # nobody anywhere: the engine builds nothing
    got_b: list[Any] = []
    got_a: list[Any] = []
    b.subscribe(got_b.append, names=["invocation_complete"])
    a.subscribe(got_a.append, names=["session_complete"])
    wait_until(lambda: a.has_subscribers("invocation_complete"))  # b's interest reached a
    assert not a.has_subscribers("invocation_progress")

    for i in range(20):
        a.emit(complete("s1", f"n{i}"))
    wait_until(lambda: len(got_b) == 20)
    assert [e.node_id for e in got_b] == [f"n{i}" for i in range(20)]
    assert got_b[0] == complete("s1", "n0").model_copy(update={"timestamp": got_b[0].timestamp})
    assert isinstance(got_b[0], InvocationCompleteEvent) and got_b[0].result == {"value": 3}

    b.emit(SessionCompleteEvent(session_id="s1"))  # b's own event: to a (which wants it), once
    wait_until(lambda: len(got_a) == 1)
    b.emit(complete("s2"))  # delivered locally to b, and never echoed back from the channel
    a.emit(
        InvocationProgressEvent(session_id="s1", node_id="n", source_node_id="n", invocation_type="x", step=1, total=2)
    )
    wait_until(lambda: len(got_b) == 21)
    assert [e.session_id for e in got_b[-1:]] == ["s2"]
    assert a.received == 0 + 1 and b.received == 20  # the progress event never left a


def test_interest_goes_away_with_the_subscriber_and_the_process(make_bus: Any) -> None:
    a, b = make_bus(), make_bus()
    unsubscribe = b.subscribe(lambda e: None)  # everything
    wait_until(lambda: a.has_subscribers("invocation_progress"))
    unsubscribe()
    wait_until(lambda: not a.has_subscribers("invocation_progress"))
    c = make_bus()
    c.subscribe(lambda e: None, names=["session_started"])
    wait_until(lambda: a.has_subscribers("session_started"))
    c.stop()
    wait_until(lambda: not a.has_subscribers("session_started"))
    c.start()  # an Invoker started again: c listens and advertises again
    wait_until(lambda: a.has_subscribers("session_started"))


def test_a_refresh_racing_a_subscription_never_hides_the_subscriber(make_bus: Any) -> None:
    """The listener's refresh reads this process's interest, a subscriber on another thread changes
    it and advertises, then the refresh writes what it read: the new subscriber must still be
    advertised (before the fix, the older value landed last, and the other processes dropped its
    events until the next refresh: the deployment test's lost live events)."""
    import json
    import threading
    import time

    a, b = make_bus(), make_bus()
    computed, release = threading.Event(), threading.Event()
    real = b._local_interest

    def slow_refresh() -> str:
        value: str = real()
        if threading.current_thread().name == "refresh":
            computed.set()
            release.wait(10)
        return value

    b._local_interest = slow_refresh
    refresh = threading.Thread(target=b._advertise, name="refresh")
    refresh.start()
    assert computed.wait(10)
    subscriber = threading.Thread(target=lambda: b.subscribe(lambda e: None, names=["invocation_progress"]))
    subscriber.start()
    time.sleep(0.3)  # unordered, the subscriber's write would land now, before the refresh's
    release.set()
    refresh.join(10)
    subscriber.join(10)
    advertised = json.loads(b._redis.get(b._interest_key))
    assert "invocation_progress" in advertised["names"], advertised
    wait_until(lambda: a.has_subscribers("invocation_progress"))


def test_a_graph_run_by_another_process_is_seen_here(
    make_bus: Any, redis_url: str, channel: str, tmp_path: Path
) -> None:
    """`invokeai run` in a subprocess, with `services.events = "redis"`: its node events arrive here."""
    bus = make_bus()
    got: list[Any] = []
    bus.subscribe(got.append, names=["invocation_complete", "session_complete"])
    graph = {
        "nodes": {
            "one": {"id": "one", "type": "add", "a": 1, "b": 2},
            "two": {"id": "two", "type": "mul", "b": 10},
        },
        "edges": [{"source": {"node_id": "one", "field": "value"}, "destination": {"node_id": "two", "field": "a"}}],
    }
    env = cli_env(
        tmp_path,
        INVOKEAI_SERVICES__EVENTS="redis",
        INVOKEAI_PLUGINS__REDIS__URL=redis_url,
        INVOKEAI_PLUGINS__REDIS__CHANNEL=channel,
    )
    run = subprocess.run(
        [INVOKEAI, "run", "-f", "-", "--json"],
        input=json.dumps(graph),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["results"]["two"]["value"] == 30
    wait_until(lambda: any(e.event_name == "session_complete" for e in got))
    sid = result["session_id"]
    assert [(e.event_name, getattr(e, "source_node_id", None)) for e in got if e.session_id == sid] == [
        ("invocation_complete", "one"),
        ("invocation_complete", "two"),
        ("session_complete", None),
    ]


def test_an_unreachable_redis_is_a_clear_error_at_start(tmp_path: Path) -> None:
    from invokeai_redis.bus import RedisEventBus
    from invokeai_redis.settings import RedisSettings

    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(StorageUnavailableError, match=r"cannot reach Redis at redis://127\.0\.0\.1:\d+/0 for events"):
        RedisEventBus(settings=RedisSettings(url=url, connect_timeout=2))
    env = cli_env(tmp_path, INVOKEAI_SERVICES__EVENTS="redis", INVOKEAI_PLUGINS__REDIS__URL=url)
    run = subprocess.run([INVOKEAI, "run", "add --a 1 --b 2"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "cannot reach Redis at" in run.stderr and run.stderr.count("\n") <= 2


def test_bad_settings_name_the_key() -> None:
    from invokeai_redis.settings import load_settings

    from invokeai_core import load_config

    config = load_config(environ={"INVOKEAI_PLUGINS__REDIS__URL": "http://nope"})
    with pytest.raises(Exception, match=r"plugins\.redis\.url"):
        load_settings(config)


def test_selecting_redis_imports_redis_py_only_then() -> None:
    code = (
        "import sys; from invokeai_core import PluginHost, load_config; "
        "PluginHost(load_config(environ={})).load(); print('redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_a_server_shows_live_what_a_worker_process_runs(redis_url: str, channel: str, tmp_path: Path) -> None:
    """The deployment this plugin is for: `invokeai serve` (no queue processor) and a worker process
    (`invokeai queue process`) on one database. A browser-like Socket.IO client of the server sees
    the worker's sessions live: item status, node events, completion."""
    pytest.importorskip("invokeai_web", reason="needs the invokeai-web plugin")
    from invokeai_web.app import ServerThread, create_app
    from invokeai_web.settings import WebSettings

    from invokeai_core import Invoker, PluginHost, load_config

    environ = {
        "INVOKEAI_SERVICES__EVENTS": "redis",
        "INVOKEAI_PLUGINS__REDIS__URL": redis_url,
        "INVOKEAI_PLUGINS__REDIS__CHANNEL": channel,
    }
    config = load_config(root=tmp_path, environ=environ)
    invoker = Invoker.from_config(config, PluginHost(config).load())
    env = cli_env(tmp_path, **environ)
    worker = subprocess.Popen([INVOKEAI, "queue", "process"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with ServerThread(create_app(invoker, WebSettings(port=0, queue_processor=False))) as url:
            seen = asyncio.run(watch_one_item(url))
            names = [n for n, _ in seen]
            assert names.index("invocation_complete") < names.index("session_complete")
            complete = next(d for n, d in seen if n == "invocation_complete")
            assert complete["source_node_id"] == "one" and complete["result"]["value"] == 9
            # it was the worker that ran it: this server has no processor
            assert invoker.queue_processor is None
    finally:
        worker.terminate()
        worker.wait(30)
        invoker.stop()


async def watch_one_item(url: str) -> list[tuple[str, Any]]:
    """Subscribe to the default queue like the web UI, enqueue one add node, and collect that item's
    events until it completes."""
    import httpx
    import socketio

    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    client = socketio.AsyncClient(reconnection=False)

    @client.on("*")
    async def any_event(name: str, data: Any = None) -> None:
        await events.put((name, data))

    await client.connect(url, transports=["websocket"], wait_timeout=10)
    try:
        ack = await client.call("subscribe_queue", {"queue_id": "default"}, timeout=10)
        assert ack["ok"], ack
        graph = {"nodes": {"one": {"id": "one", "type": "add", "a": 4, "b": 5}}}
        async with httpx.AsyncClient() as http:
            r = await http.post(url + "/api/v1/queue/default/enqueue_batch", json={"batch": {"graph": graph}})
        assert r.status_code == 201, r.text
        item_id = r.json()["item_ids"][0]
        seen: list[tuple[str, Any]] = []
        while not any(n == "queue_item_status_changed" and d["status"] == "completed" for n, d in seen):
            name, data = await asyncio.wait_for(events.get(), 60)
            if isinstance(data, dict) and data.get("item_id") == item_id:
                seen.append((name, data))
        return seen
    finally:
        await client.disconnect()
