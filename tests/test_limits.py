"""The kernel's part of bounded work: the `[limits]` table, node outputs too large to store, the
output cache's byte budget, queue priorities at the edge of int64, and temporary files of image
saves that a crash interrupted."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from invokeai_core import BaseInvocation, BaseInvocationOutput, InputField, InvocationContext, OutputField
from invokeai_core.config import load_config
from invokeai_core.errors import BatchError, ConfigError
from invokeai_core.invocations.baseinvocation import invocation, invocation_output
from invokeai_core.invoker import Invoker
from invokeai_core.services.base import PRIORITY_STORE_MAX


@invocation_output("t_text_output")
class TextOutput(BaseInvocationOutput):
    value: str = OutputField()


@invocation("t_text", version="1.0.0")
class TextNode(BaseInvocation):
    """`size` times the letter x."""

    size: int = InputField(default=1)

    def invoke(self, context: InvocationContext) -> TextOutput:
        return TextOutput(value="x" * self.size)


def test_the_limits_table_has_documented_defaults_and_follows_the_usual_precedence(tmp_path: Path) -> None:
    config = load_config(root=tmp_path, environ={})
    limits = config.limits
    assert (limits.collection_items, limits.string_length, limits.integer_bits) == (100_000, 1_000_000, 4096)
    assert (limits.image_pixels, limits.regex_seconds, limits.output_mb, limits.graph_nodes) == (
        40_000_000,
        1.0,
        16.0,
        100_000,
    )
    assert config.cache_max_mb == 256
    (tmp_path / "invokeai.toml").write_text("[limits]\ncollection_items = 50\nstring_length = 70\n")
    env = {"INVOKEAI_LIMITS__STRING_LENGTH": "80"}
    config = load_config(root=tmp_path, environ=env, overrides={"limits.output_mb": 2})
    assert (config.limits.collection_items, config.limits.string_length, config.limits.output_bytes) == (50, 80, 2**21)
    assert config.source_of("limits.string_length") == "env INVOKEAI_LIMITS__STRING_LENGTH"
    with pytest.raises(ConfigError, match=r"unknown configuration key 'limits.items'"):
        load_config(root=tmp_path, environ={}, overrides={"limits.items": 3})
    with pytest.raises(ConfigError, match=r"limits.integer_bits"):
        load_config(root=tmp_path, environ={}, overrides={"limits.integer_bits": 10**6})


@pytest.mark.parametrize("invokeai_storage", ["sqlite"])
def test_an_output_too_large_to_store_fails_its_node_and_leaves_session_and_item_consistent(
    invokeai_root: Path, invokeai_host: Any, invokeai_register_nodes: Any, invokeai_storage: str
) -> None:
    invokeai_register_nodes(TextNode, name="bigtext")
    config = load_config(root=invokeai_root, environ={}, overrides={"limits.output_mb": 1, "queue_processor": True})
    graph = {"nodes": {"big": {"id": "big", "type": "t_text", "size": 2 * 2**20}}, "edges": []}
    with Invoker.from_config(config, invokeai_host) as invoker:
        item_id = invoker.enqueue_batch("default", {"graph": graph}).item_ids[0]
        deadline = time.monotonic() + 30
        while invoker.queue.get_item(item_id).status in ("pending", "in_progress"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        item = invoker.queue.get_item(item_id)
        assert item.status == "failed" and item.error_type == "OutputTooLargeError"
        assert "node 'big' (t_text) produced an output of 2.0 MiB, more than limits.output_mb (1 MiB)" in (
            item.error_message or ""
        )
        session_id = item.session_id
    # a fresh process's view: the stored session failed on that node and holds no result
    with Invoker.from_config(config, invokeai_host) as invoker:
        session = invoker.get_session(session_id)
        assert session.status == "failed" and not session.results
        assert session.errors_by_source()["big"].type == "OutputTooLargeError"
        # and the session takes further nodes (it used to answer 500 to every append)
        invoker.add_node(session_id, {"id": "small", "type": "t_text", "size": 3})
        assert "small" in invoker.get_session(session_id).graph.nodes
    with sqlite3.connect(config.db_file) as db:
        assert db.execute("SELECT count(*) FROM session_results").fetchone()[0] == 0


def test_the_output_cache_is_bounded_by_bytes_and_evicts_the_least_recently_used(tmp_path: Path) -> None:
    from invokeai_core.services.memory import MemoryOutputCache, resident_size

    mib = 2**20
    cache = MemoryOutputCache(size=100, max_bytes=10 * mib)
    outputs = {f"k{i}": TextOutput(value=str(i) * (2 * mib)) for i in range(6)}  # 2 MiB each
    for key in ("k0", "k1", "k2", "k3"):
        cache.save(key, outputs[key])
    assert cache.get("k0") is outputs["k0"]  # k0 is now the most recently used
    cache.save("k4", outputs["k4"])
    cache.save("k5", outputs["k5"])
    assert cache.bytes <= 10 * mib and len(cache) == 4
    assert cache.get("k1") is None and cache.get("k2") is None  # the least recently used went first
    assert all(cache.get(k) is not None for k in ("k0", "k3", "k4", "k5"))
    cache.save("huge", TextOutput(value="h" * (3 * mib)))  # over a quarter of the budget: never kept
    assert cache.get("huge") is None and len(cache) == 4
    assert 2 * mib <= resident_size(outputs["k0"]) < 2 * mib + 4096
    # configured in MiB; 0 disables the cache
    assert MemoryOutputCache(load_config(root=tmp_path, environ={}, overrides={"cache_max_mb": 1})).max_bytes == mib
    assert not MemoryOutputCache(load_config(root=tmp_path, environ={}, overrides={"cache_max_mb": 0})).enabled


@pytest.mark.parametrize("invokeai_storage", ["memory", "sqlite"])
def test_priorities_are_bounded_and_a_prepend_never_overflows(invokeai_invoker: Invoker, invokeai_storage: str) -> None:
    queue = invokeai_invoker.queue
    graph = {"nodes": {"a": {"id": "a", "type": "tp_const", "value": 1}}, "edges": []}
    for priority in (2**31, -(2**31) - 1, 2**63, 2**64):
        with pytest.raises(BatchError, match="priority"):
            queue.enqueue_batch("default", {"graph": graph, "priority": priority})
    top = queue.enqueue_batch("default", {"graph": graph, "priority": 2**31 - 1})
    assert queue.enqueue_batch("default", {"graph": graph}, prepend=True).priority == 2**31
    # an item that sits at the largest storable priority (an older version allowed it): prepends stay there
    if invokeai_storage == "sqlite":
        with sqlite3.connect(invokeai_invoker.config.db_file) as db:
            db.execute("UPDATE queue_items SET priority = ? WHERE item_id = ?", (PRIORITY_STORE_MAX, top.item_ids[0]))
    else:
        item = queue.get_item(top.item_ids[0])
        queue._items[item.item_id] = item.model_copy(update={"priority": PRIORITY_STORE_MAX})  # type: ignore[attr-defined]
    for _ in range(2):
        assert queue.enqueue_batch("default", {"graph": graph}, prepend=True).priority == PRIORITY_STORE_MAX
    order = [i.priority for i in queue.list_items("default", limit=10)]
    assert order == [PRIORITY_STORE_MAX] * 3 + [2**31]


def test_temporary_files_of_interrupted_image_saves_are_removed_at_start_up(invokeai_invoker: Invoker) -> None:
    files = invokeai_invoker.services.images
    images_dir: Path = files.images_dir  # type: ignore[attr-defined]
    thumbs_dir: Path = files.thumbnails_dir  # type: ignore[attr-defined]
    images_dir.mkdir(parents=True, exist_ok=True)
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    old = [images_dir / ".a.png.1234abcd.tmp", thumbs_dir / ".a.webp.1234abcd.tmp"]
    young = images_dir / ".b.png.5678abcd.tmp"
    for p in (*old, young):
        p.write_bytes(b"half a png")
    hour_ago = time.time() - 3600
    for p in old:
        os.utime(p, (hour_ago, hour_ago))
    invokeai_invoker.start(process_queue=True)  # the queue processor's start-up recovery
    assert not any(p.exists() for p in old)
    assert young.exists()  # may be a save in progress in another process
