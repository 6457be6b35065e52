"""The Invoker and its session processor: running, stepping, waiting, cancelling, caching, events."""

from __future__ import annotations

import threading
from typing import Any

from invokeai_core.events import EventBase
from invokeai_core.invoker import Invoker


def chain(*nodes: dict[str, Any], edges: list[tuple[str, str, str, str]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "nodes": {n["id"]: n for n in nodes},
        "edges": [
            {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}
            for s, sf, d, df in edges
        ],
    }


def record(invoker: Invoker, **filters: Any) -> list[EventBase]:
    events: list[EventBase] = []
    invoker.services.events.subscribe(events.append, **filters)
    return events


def test_run_all_and_events_in_order(invokeai_invoker: Invoker) -> None:
    events = record(invokeai_invoker)
    graph = chain(
        {"id": "a", "type": "tp_const", "value": 2},
        {"id": "b", "type": "tp_scale", "factor": 3},
        edges=[("a", "value", "b", "value")],
    )
    session = invokeai_invoker.run_graph(graph, timeout=30)
    assert session.status == "completed"
    assert session.results_by_source()["b"].value == 6.0
    names = [(e.event_name, getattr(e, "source_node_id", None)) for e in events if e.session_id == session.id]
    assert names == [
        ("session_started", None),
        ("invocation_started", "a"),
        ("invocation_complete", "a"),
        ("invocation_started", "b"),
        ("invocation_complete", "b"),
        ("session_complete", None),
    ]
    assert all(e.session_id == session.id for e in events)


def test_invoke_next_runs_one_node_at_a_time(invokeai_invoker: Invoker) -> None:
    graph = chain(
        {"id": "a", "type": "tp_const", "value": 1},
        {"id": "b", "type": "tp_scale"},
        edges=[("a", "value", "b", "value")],
    )
    session = invokeai_invoker.create_session(graph)
    invokeai_invoker.invoke(session.id, all=False)
    session = invokeai_invoker.wait(session.id, timeout=30)
    assert [k[0] for k in session.history] == ["a"] and session.status == "running"
    invokeai_invoker.invoke(session.id, all=False)
    session = invokeai_invoker.wait(session.id, timeout=30)
    assert [k[0] for k in session.history] == ["a", "b"] and session.status == "completed"


def test_cancel_reaches_the_running_node_and_stops_the_session(invokeai_invoker: Invoker) -> None:
    started = threading.Event()
    invokeai_invoker.services.events.subscribe(lambda e: started.set(), names=["invocation_progress"])
    events = record(invokeai_invoker, names=["session_canceled", "session_complete"])
    graph = chain(
        {"id": "slow", "type": "tp_sleep", "seconds": 30},
        {"id": "after", "type": "tp_scale"},
        edges=[("slow", "value", "after", "value")],
    )
    session = invokeai_invoker.create_session(graph)
    invokeai_invoker.invoke(session.id)
    assert started.wait(30), "the sleeper never reported progress"
    invokeai_invoker.cancel(session.id)
    session = invokeai_invoker.wait(session.id, timeout=30)
    assert session.status == "canceled"
    assert "after" not in session.results_by_source()
    assert [e.event_name for e in events] == ["session_canceled", "session_complete"]


def test_a_failing_node_fails_the_session(invokeai_invoker: Invoker) -> None:
    errors = record(invokeai_invoker, names=["invocation_error"])
    graph = chain({"id": "bad", "type": "tp_fail", "message": "nope"}, {"id": "c", "type": "tp_const"})
    session = invokeai_invoker.run_graph(graph, timeout=30)
    assert session.status == "failed"
    err = session.errors_by_source()["bad"]
    assert err.type == "RuntimeError" and err.message == "nope" and "Traceback" in err.traceback
    assert len(errors) == 1 and errors[0].source_node_id == "bad"  # type: ignore[attr-defined]


def test_output_cache_reuses_outputs_of_unchanged_nodes(invokeai_invoker: Invoker) -> None:
    completes = record(invokeai_invoker, names=["invocation_complete"])
    graph = chain({"id": "a", "type": "tp_const", "value": 5})
    invokeai_invoker.run_graph(graph, timeout=30)
    invokeai_invoker.run_graph(graph, timeout=30)
    assert [e.cached for e in completes] == [False, True]  # type: ignore[attr-defined]
    invokeai_invoker.run_graph(chain({"id": "a", "type": "tp_const", "value": 6}), timeout=30)
    assert completes[-1].cached is False  # type: ignore[attr-defined]
    invokeai_invoker.run_graph(chain({"id": "a", "type": "tp_const", "value": 5, "use_cache": False}), timeout=30)
    assert completes[-1].cached is False  # type: ignore[attr-defined]


def test_never_cached_nodes_and_flow_nodes(invokeai_invoker: Invoker) -> None:
    completes = record(invokeai_invoker, names=["invocation_complete"])
    graph = chain({"id": "s", "type": "tp_sleep", "seconds": 0.01})  # declared use_cache=False
    invokeai_invoker.run_graph(graph, timeout=30)
    invokeai_invoker.run_graph(graph, timeout=30)
    assert [e.cached for e in completes] == [False, False]  # type: ignore[attr-defined]


def test_cache_key_includes_node_and_plugin_version(invokeai_invoker: Invoker) -> None:
    from invokeai_testpack.nodes import TpConstInvocation

    node = TpConstInvocation(id="x", value=1.0)
    key = invokeai_invoker.cache_key(node)
    assert key.startswith("tp_const:1.0.0:testpack:1.2.3:")
    assert invokeai_invoker.cache_key(TpConstInvocation(id="other-id", value=1.0)) == key
    assert invokeai_invoker.cache_key(TpConstInvocation(id="x", value=2.0)) != key


def test_a_new_node_version_or_plugin_version_misses_the_cache(invokeai_invoker: Invoker) -> None:
    """An upgrade re-registers the plugin's nodes (`remove_plugin` + `add`, as loading does): outputs
    cached by the old node version or the old plugin version are not reused; the new ones are."""
    from invokeai_core import (
        BaseInvocation,
        BaseInvocationOutput,
        InputField,
        InvocationContext,
        OutputField,
        invocation,
        invocation_output,
    )

    @invocation_output("upgraded_output")
    class IntegerOutput(BaseInvocationOutput):
        value: int = OutputField()

    runs: list[str] = []

    def counting(version: str) -> type[BaseInvocation]:
        @invocation("upgraded_node", version=version)
        class Counting(BaseInvocation):
            value: int = InputField(default=1)

            def invoke(self, context: InvocationContext) -> IntegerOutput:
                runs.append(version)
                return IntegerOutput(value=self.value)

        return Counting

    registry = invokeai_invoker.registry
    completes = record(invokeai_invoker, names=["invocation_complete"])
    graph = chain({"id": "n", "type": "upgraded_node", "value": 7})
    for node_version, plugin_version in (("1.0.0", "1.0.0"), ("1.1.0", "1.0.0"), ("1.1.0", "2.0.0")):
        registry.remove_plugin("upgrades")
        registry.add(counting(node_version), "upgrades", plugin_version)
        for _ in range(2):
            session = invokeai_invoker.run_graph(graph, timeout=30)
            assert session.results_by_source()["n"].value == 7
    assert runs == ["1.0.0", "1.1.0", "1.1.0"]  # each upgrade ran the node once, then hit the cache
    assert [e.cached for e in completes] == [False, True] * 3  # type: ignore[attr-defined]


def test_cache_size_zero_disables_the_cache(invokeai_root: Any, invokeai_host: Any) -> None:
    from invokeai_core.config import load_config

    config = load_config(root=invokeai_root, overrides={"cache_size": 0}, environ={})
    with Invoker.from_config(config, invokeai_host) as invoker:
        completes = record(invoker, names=["invocation_complete"])
        graph = chain({"id": "a", "type": "tp_const", "value": 5})
        invoker.run_graph(graph, timeout=30)
        invoker.run_graph(graph, timeout=30)
    assert [e.cached for e in completes] == [False, False]  # type: ignore[attr-defined]


def test_images_saved_by_a_node_are_real_files_with_records(invokeai_invoker: Invoker) -> None:
    from PIL import Image

    session = invokeai_invoker.run_graph(
        chain({"id": "g", "type": "tp_gradient", "width": 40, "height": 20}), timeout=30
    )
    out = session.results_by_source()["g"]
    record_ = invokeai_invoker.services.image_records.get(out.image.image_name)
    assert (record_.width, record_.height, record_.is_intermediate) == (40, 20, False)
    path = invokeai_invoker.services.images.get_path(out.image.image_name)
    assert path is not None
    with Image.open(path) as img:
        assert img.size == (40, 20)
        assert img.getpixel((0, 0))[0] < 20 and img.getpixel((39, 0))[0] > 230
        assert '"tp_gradient"' in img.text["invokeai_graph"]
        assert img.text["invokeai_session_id"] == session.id


def test_many_sessions_run_concurrently_without_mixing(invokeai_invoker: Invoker) -> None:
    sessions = []
    for i in range(20):
        s = invokeai_invoker.create_session(
            chain(
                {"id": "a", "type": "tp_const", "value": i, "use_cache": False},
                {"id": "b", "type": "tp_scale", "factor": 10},
                edges=[("a", "value", "b", "value")],
            )
        )
        invokeai_invoker.invoke(s.id)
        sessions.append(s)
    for i, s in enumerate(sessions):
        done = invokeai_invoker.wait(s.id, timeout=30)
        assert done.results_by_source()["b"].value == i * 10


def test_an_empty_graph_completes_and_says_so(invokeai_invoker: Invoker) -> None:
    events = record(invokeai_invoker, names=["session_complete"])
    session = invokeai_invoker.run_graph({"nodes": {}, "edges": []}, timeout=10)
    assert session.status == "completed"
    assert [e.status for e in events] == ["completed"]  # type: ignore[attr-defined]


def test_preflight_refuses_bad_values_before_anything_is_stored_or_run(
    invokeai_invoker: Invoker, invokeai_register_nodes: Any
) -> None:
    """`BaseInvocation.preflight(services)`: a node's check against the services (here: the image it
    names exists) runs when a graph, a node or a batch arrives; values fed by edges or never given are
    not checked (they are known only when the node runs)."""
    import pytest
    from nodes_for_tests import StrNode, StrOutput
    from PIL import Image

    from invokeai_core import BaseInvocation, InputField, InvocationContext, invocation
    from invokeai_core.errors import BatchError, NodeFieldError
    from invokeai_core.services.container import Services

    @invocation("t_named_image", version="1.0.0")
    class NamedImageNode(BaseInvocation):
        name: str = InputField(default="", description="The name of a stored image")

        def preflight(self, services: Services) -> None:
            try:
                services.image_service.get_record(self.name)
            except KeyError:
                raise NodeFieldError(f"no image named '{self.name}'", self.id, "name") from None

        def invoke(self, context: InvocationContext) -> StrOutput:
            return StrOutput(value=self.name)

    invokeai_register_nodes(StrNode, NamedImageNode)
    invoker = invokeai_invoker
    stored = invoker.services.image_service.create(Image.new("RGB", (4, 4))).image_name
    bad = {"id": "n", "type": "t_named_image", "name": "nope"}
    with pytest.raises(NodeFieldError, match="node 'n', field 'name': no image named 'nope'"):
        invoker.create_session(chain(bad))
    fed = chain({"id": "s", "type": "t_str", "value": stored}, bad, edges=[("s", "value", "n", "name")])
    assert invoker.run_graph(fed, timeout=30).status == "completed"  # the edge's value counts, not "nope"
    unset = invoker.create_session(chain({"id": "n", "type": "t_named_image"}))  # "" is not checked
    with pytest.raises(NodeFieldError, match="no image named 'nope'"):
        invoker.add_node(unset.id, {**bad, "id": "m"})
    with pytest.raises(NodeFieldError, match="no image named 'nope'"):
        invoker.add_nodes(unset.id, chain({**bad, "id": "m"}))
    assert list(invoker.get_session(unset.id).graph.nodes) == ["n"]
    batch = {"graph": chain({**bad, "name": stored}), "data": [[{"node_path": "n", "field_name": "name"}]]}
    batch["data"][0][0]["items"] = [stored, "ghost"]
    with pytest.raises(BatchError, match="node 'n', field 'name': no image named 'ghost'"):
        invoker.enqueue_batch("default", batch)
    assert invoker.queue.status("default").total == 0
    batch["data"][0][0]["items"] = [stored]
    assert invoker.enqueue_batch("default", batch).enqueued == 1
