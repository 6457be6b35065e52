"""Sessions: append-only building, auto-link, stepping, results, history, errors and resuming."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from nodes_for_tests import ALL_NODES, RECORD_LOG, IntNode, edge, graph, make_registry, node

from invokeai_core.errors import (
    DuplicateNodeError,
    EdgeError,
    GraphError,
    IterateCollectError,
    NodeNotFoundError,
    SessionError,
    TypeMismatchError,
)
from invokeai_core.graph import Edge, Graph
from invokeai_core.session import NodeError, PrepareError, Session, parse_prepared_id, prepared_id


@pytest.fixture
def registry():
    return make_registry()


@pytest.fixture
def invoker(invokeai_register_nodes, invokeai_invoker):
    invokeai_register_nodes(*ALL_NODES)
    return invokeai_invoker


def drive(session: Session, steps: int | None = None) -> list[str]:
    """Run ready copies in the calling thread (what the Invoker does, minus services); returns the
    prepared ids that ran. A node exception is recorded like the Invoker records it."""
    ran: list[str] = []
    while steps is None or len(ran) < steps:
        try:
            prepared = session.next()
        except PrepareError as e:
            session.set_error(e.key, NodeError.from_exception(e.prepared_id, e.error))
            break
        if prepared is None:
            break
        try:
            out = prepared.invocation.invoke(SimpleNamespace(node_id=prepared.id))  # type: ignore[arg-type]
        except Exception as e:
            session.set_error(prepared.key, NodeError.from_exception(prepared.id, e))
            break
        session.complete(prepared.key, out)
        ran.append(prepared.id)
    return ran


def step(invoker, session_id: str) -> Session:
    invoker.invoke(session_id, all=False)
    return invoker.wait(session_id, timeout=30)


def run_all(invoker, session_id: str) -> Session:
    invoker.invoke(session_id, all=True)
    return invoker.wait(session_id, timeout=30)


RANGE_GRAPH = graph(
    node("range", "t_range", start=0, stop=3),
    node("it", "iterate"),
    node("x10", "t_mul", b=10),
    node("plus1", "t_add", b=1),
    node("c", "collect"),
    node("total", "t_sum_ints"),
    edge("range", "collection", "it", "collection"),
    edge("it", "item", "x10", "a"),
    edge("x10", "value", "plus1", "a"),
    edge("plus1", "value", "c", "item"),
    edge("c", "collection", "total", "collection"),
)


# -- building -------------------------------------------------------------------------------------


def test_add_node_and_edge_are_append_only(registry):
    s = Session(registry=registry)
    s.add_node(node("a", "t_int", value=2))
    s.add_node(IntNode(id="b", value=3))
    s.add_node(node("sum", "t_add"))
    s.add_edge(edge("a", "value", "sum", "a"))
    s.add_edge(Edge.between("b", "value", "sum", "b"))
    assert list(s.graph.nodes) == ["a", "b", "sum"]
    assert [str(e) for e in s.graph.edges] == ["a.value -> sum.a", "b.value -> sum.b"]
    # nothing can be replaced: same id again, or a second edge into the same input
    with pytest.raises(DuplicateNodeError):
        s.add_node(node("a", "t_int", value=99))
    with pytest.raises(EdgeError):
        s.add_edge(edge("b", "value", "sum", "a"))
    assert s.graph.nodes["a"].value == 2
    assert len(s.graph.edges) == 2
    drive(s)
    assert s.results_by_source()["sum"].value == 5


def test_session_has_no_api_to_change_or_delete():
    for name in ("delete_node", "remove_node", "update_node", "delete_edge", "remove_edge"):
        assert not hasattr(Session, name)
        assert not hasattr(Graph, name)


def test_malformed_edge_is_an_edge_error(registry):
    s = Session(registry=registry)
    s.add_node(node("a", "t_int"))
    with pytest.raises(EdgeError):
        s.add_edge({"source": {"node_id": "a"}, "destination": {"node_id": "a", "field": "value"}})


def test_auto_link_same_named_compatible_outputs(registry):
    s = Session(registry=registry)
    s.add_node(node("i", "t_int", value=3))
    s.add_node(node("scale", "t_scale", factor=5), link_previous=True)  # value -> value
    s.add_node(node("f", "t_float"), link_previous=True)  # int value -> float value
    s.add_node(node("s", "t_str"), link_previous=True)  # float value -> str value: skipped
    assert [str(e) for e in s.graph.edges] == ["i.value -> scale.value", "scale.value -> f.value"]
    drive(s)
    r = s.results_by_source()
    assert r["scale"].value == 15
    assert r["f"].value == 30.0
    assert r["s"].value == ""


def test_auto_link_skips_explicitly_set_and_connected_inputs(registry):
    s = Session(registry=registry)
    s.add_node(node("i", "t_int", value=3))
    s.add_node(node("scale", "t_scale", value=7), link_previous=True)  # value set explicitly: no link
    assert s.graph.edges == []
    s.add_node(node("k", "t_int", value=1))
    s.add_node(node("j", "t_int", value=4))
    s.add_node(node("scale2", "t_scale"), link_previous=True)
    assert [str(e) for e in s.graph.edges] == ["j.value -> scale2.value"]
    # with link_previous=False nothing is linked
    s.add_node(node("scale3", "t_scale"))
    assert len(s.graph.edges) == 1
    drive(s)
    assert s.results_by_source()["scale"].value == 14
    assert s.results_by_source()["scale2"].value == 8


def test_auto_link_skips_a_float_into_int(registry):
    s = Session(registry=registry)
    s.add_node(node("f", "t_float", value=1.5))
    s.add_node(node("scale", "t_scale"), link_previous=True)
    assert s.graph.edges == []


def test_auto_link_into_flow_nodes(registry):
    s = Session(registry=registry)
    s.add_node(node("r", "t_range", start=1, stop=4))
    s.add_node(node("it", "iterate"), link_previous=True)  # collection -> collection
    s.add_node(node("c", "collect"), link_previous=True)  # item -> item
    s.add_node(node("total", "t_sum_ints"), link_previous=True)  # collection -> collection
    assert [str(e) for e in s.graph.edges] == [
        "r.collection -> it.collection",
        "it.item -> c.item",
        "c.collection -> total.collection",
    ]
    drive(s)
    assert s.results_by_source()["total"].value == 6


def test_auto_link_skips_a_non_list_into_iterate(registry):
    # an output named `collection` that is not a list is not linked into iterate.collection (and
    # adding the node does not fail)
    s = Session(registry=registry)
    s.add_node(node("n", "t_not_list", value=3))
    s.add_node(node("it", "iterate"), link_previous=True)
    assert s.graph.edges == []
    s.add_node(node("total", "t_sum_ints"))
    s.add_node(node("c", "collect"), link_previous=True)  # `value` is not an input of collect
    assert s.graph.edges == []


def test_add_graph_all_or_nothing(registry):
    s = Session(registry=registry)
    s.add_node(node("a", "t_int", value=1))
    before = s.graph.to_dict()
    bad = graph(
        node("b", "t_int", value=2),
        node("s", "t_str"),
        node("sum", "t_add"),
        edge("b", "value", "sum", "a"),
        edge("b", "value", "s", "value"),  # int -> str: refused
    )
    with pytest.raises(TypeMismatchError) as e:
        s.add_graph(bad)
    assert (e.value.node_id, e.value.field) == ("s", "value")
    assert s.graph.to_dict() == before
    # an id already in the session
    with pytest.raises(DuplicateNodeError) as e:
        s.add_graph(graph(node("z", "t_int"), node("a", "t_int")))
    assert e.value.node_id == "a"
    assert s.graph.to_dict() == before
    # an unknown node type in the added graph
    with pytest.raises(GraphError):
        s.add_graph(graph(node("q", "t_nope")))
    assert s.graph.to_dict() == before
    # broken iterate/collect wiring in the added graph
    with pytest.raises(IterateCollectError):
        s.add_graph(
            graph(
                node("r1", "t_range"),
                node("r2", "t_range"),
                node("i1", "iterate"),
                node("i2", "iterate"),
                node("c", "collect"),
                edge("r1", "collection", "i1", "collection"),
                edge("r2", "collection", "i2", "collection"),
                edge("i1", "item", "c", "item"),
                edge("i2", "item", "c", "item"),
            )
        )
    assert s.graph.to_dict() == before
    # a cycle in the added graph
    with pytest.raises(GraphError):
        s.add_graph(
            graph(node("p", "t_add"), node("q", "t_add"), edge("p", "value", "q", "a"), edge("q", "value", "p", "a"))
        )
    assert s.graph.to_dict() == before
    # and a good graph goes in whole, with edges to nodes already in the session
    s.add_graph(
        graph(
            node("b", "t_int", value=2),
            node("sum", "t_add"),
            edge("a", "value", "sum", "a"),
            edge("b", "value", "sum", "b"),
        )
    )
    assert list(s.graph.nodes) == ["a", "b", "sum"]
    drive(s)
    assert s.results_by_source()["sum"].value == 3


def test_add_graph_object(registry):
    s = Session(registry=registry)
    g = Graph.from_dict(
        graph(node("a", "t_int", value=4), node("m", "t_mul", b=2), edge("a", "value", "m", "a")), registry
    )
    s.add_graph(g)
    drive(s)
    assert s.results_by_source()["m"].value == 8
    # the added graph object itself is not changed by the session
    assert list(g.nodes) == ["a", "m"]


def test_add_graph_sets_the_previous_node_for_auto_link(registry):
    s = Session(registry=registry)
    s.add_graph(graph(node("a", "t_int", value=4), node("b", "t_int", value=6)))
    s.add_node(node("scale", "t_scale"), link_previous=True)
    assert [str(e) for e in s.graph.edges] == ["b.value -> scale.value"]


def test_edge_into_a_node_that_already_ran_is_refused(invoker):
    session = invoker.create_session(graph(node("a", "t_int", value=1), node("sum", "t_add", b=1), node("k", "t_int")))
    session = run_all(invoker, session.id)
    with pytest.raises(SessionError) as e:
        invoker.add_edge(session.id, edge("a", "value", "sum", "a"))
    assert e.value.node_id == "sum"
    assert session.graph.edges == []
    # through add_graph too: an edge from a new node into a node that ran
    with pytest.raises(SessionError):
        invoker.add_nodes(session.id, graph(node("n", "t_int"), edge("n", "value", "sum", "b")))
    assert "n" not in session.graph.nodes
    # a node that has not run can still get edges, and runs with them
    invoker.add_node(session.id, node("late", "t_add", b=100))
    invoker.add_edge(session.id, edge("sum", "value", "late", "a"))
    session = run_all(invoker, session.id)
    assert session.results_by_source()["late"].value == 101


def test_appending_after_completion_runs_only_the_new_nodes(invoker):
    RECORD_LOG.clear()
    session = invoker.create_session(graph(node("r", "t_record", a=1)))
    session = run_all(invoker, session.id)
    assert session.status == "completed"
    invoker.add_node(session.id, node("r2", "t_record"))
    invoker.add_edge(session.id, edge("r", "value", "r2", "a"))
    assert session.status != "completed"
    session = run_all(invoker, session.id)
    assert session.status == "completed"
    assert RECORD_LOG == [("r", 1), ("r2", 1)]


def test_add_node_link_previous_through_the_invoker(invoker):
    session = invoker.create_session()
    invoker.add_node(session.id, node("a", "t_int", value=6))
    invoker.add_node(session.id, node("b", "t_scale", factor=7), link_previous=True)
    session = run_all(invoker, session.id)
    assert session.results_by_source()["b"].value == 42


# -- running ----------------------------------------------------------------------------------------


def test_run_next_node_vs_all(invoker):
    session = invoker.create_session(RANGE_GRAPH)
    assert session.status == "pending"
    session = step(invoker, session.id)
    assert [prepared_id(k) for k in session.history] == ["range"]
    assert session.status == "running"
    session = step(invoker, session.id)
    assert [prepared_id(k) for k in session.history] == ["range", "it#0"]
    session = run_all(invoker, session.id)
    assert session.status == "completed"
    assert session.results_by_source()["c"].collection == [1, 11, 21]
    assert session.results_by_source()["total"].value == 33
    # stepping a finished session runs nothing
    n = len(session.history)
    session = step(invoker, session.id)
    assert len(session.history) == n


def test_results_per_source_and_per_prepared_copy(invoker):
    session = run_all(invoker, invoker.create_session(RANGE_GRAPH).id)
    by_source = session.results_by_source()
    assert by_source["range"].collection == [0, 1, 2]
    assert [o.value for o in by_source["x10"]] == [0, 10, 20]
    assert [o.item for o in by_source["it"]] == [0, 1, 2]
    assert session.results[("x10", (1,))].value == 10
    data = session.to_dict()
    assert data["results"]["x10#2"] == {"type": "t_int_output", "value": 20}
    assert data["results"]["plus1#0"] == {"type": "t_int_output", "value": 1}
    assert data["results"]["range"]["collection"] == [0, 1, 2]
    assert session.prepared_source_mapping["plus1#1"] == "plus1"
    assert [o.value for o in session.outputs_of("plus1")] == [1, 11, 21]
    out = session.result_json()
    assert out["status"] == "completed" and out["errors"] == {}
    assert out["results"]["c"] == {"type": "collect_output", "collection": [1, 11, 21]}
    assert out["results"]["x10"] == [{"type": "t_int_output", "value": v} for v in (0, 10, 20)]
    json.dumps(out)


def test_prepared_ids_round_trip():
    assert prepared_id(("n", ())) == "n"
    assert prepared_id(("n", (2,))) == "n#2"
    assert prepared_id(("n", (1, 0))) == "n#1.0"
    for key in [("n", ()), ("n", (3,)), ("a.b", (1, 12))]:
        assert parse_prepared_id(prepared_id(key)) == key


def test_history_is_ordered(invoker):
    session = run_all(invoker, invoker.create_session(RANGE_GRAPH).id)
    hist = [prepared_id(k) for k in session.history]
    assert hist[0] == "range"
    assert hist[-2:] == ["c", "total"]
    pos = {pid: i for i, pid in enumerate(hist)}
    for i in range(3):
        assert pos[f"it#{i}"] < pos[f"x10#{i}"] < pos[f"plus1#{i}"] < pos["c"]
    assert len(hist) == len(set(hist)) == 1 + 3 * 3 + 2
    # history survives JSON
    assert Session.from_json(session.to_json(), invoker.registry).history == session.history


def test_iterate_copies_run_in_collection_order(invoker):
    RECORD_LOG.clear()
    g = graph(
        node("it", "iterate", collection=[5, 3, 9, 1]),
        node("rec", "t_record"),
        node("rec2", "t_record"),
        edge("it", "item", "rec", "a"),
        edge("rec", "value", "rec2", "a"),
    )
    session = run_all(invoker, invoker.create_session(g).id)
    assert [k for k in session.history if k[0] == "it"] == [("it", (i,)) for i in range(4)]
    assert [a for nid, a in RECORD_LOG if nid.startswith("rec#")] == [5, 3, 9, 1]
    assert [nid for nid, _ in RECORD_LOG if nid.startswith("rec#")] == ["rec#0", "rec#1", "rec#2", "rec#3"]
    assert [a for nid, a in RECORD_LOG if nid.startswith("rec2#")] == [5, 3, 9, 1]


def test_failing_node_fails_the_session(invoker):
    events = []
    invoker.services.events.subscribe(events.append, names=["invocation_error", "session_complete"])
    g = graph(
        node("a", "t_int", value=7),
        node("fail", "t_fail", message="kaboom"),
        node("after", "t_add"),
        node("after2", "t_add"),
        edge("a", "value", "fail", "a"),
        edge("fail", "value", "after", "a"),
        edge("after", "value", "after2", "a"),
    )
    session = run_all(invoker, invoker.create_session(g).id)
    assert session.status == "failed"
    assert session.is_complete()
    errors = session.errors_by_source()
    assert list(errors) == ["fail"]
    err = errors["fail"]
    assert err.type == "ValueError"
    assert err.message == "kaboom (7)"
    assert err.node_id == "fail" and err.source_node_id == "fail"
    assert "Traceback" in err.traceback and "raise ValueError" in err.traceback
    results = session.results_by_source()
    assert "after" not in results and "after2" not in results
    assert [prepared_id(k) for k in session.history] == ["a"]
    out = session.result_json()
    assert out["status"] == "failed"
    assert out["errors"]["fail"]["type"] == "ValueError"
    assert out["errors"]["fail"]["message"] == "kaboom (7)"
    error_events = [e for e in events if e.event_name == "invocation_error"]
    assert len(error_events) == 1
    assert error_events[0].source_node_id == "fail"
    assert error_events[0].error_type == "ValueError"
    assert [e.status for e in events if e.event_name == "session_complete"] == ["failed"]
    # nothing more runs when asked again
    session = run_all(invoker, session.id)
    assert [prepared_id(k) for k in session.history] == ["a"]


def test_first_error_stops_other_branches(invoker):
    RECORD_LOG.clear()
    g = graph(
        node("fail", "t_fail"),
        node("other", "t_record", a=1),
    )
    session = run_all(invoker, invoker.create_session(g).id)
    assert session.status == "failed"
    assert RECORD_LOG == []  # `fail` is first in order; the independent node never ran


def test_failure_inside_an_iteration_names_the_copy(invoker):
    g = graph(
        node("it", "iterate", collection=[1, 2, 3]),
        node("check", "t_fail_on", bad=2),
        node("c", "collect"),
        edge("it", "item", "check", "a"),
        edge("check", "value", "c", "item"),
    )
    session = run_all(invoker, invoker.create_session(g).id)
    assert session.status == "failed"
    err = session.errors_by_source()["check"]
    assert err.node_id == "check#1"
    assert err.type == "RuntimeError" and err.message == "bad value 2"
    assert "c" not in session.results_by_source()


def test_missing_required_input_at_run_time_is_a_node_error(invoker):
    session = invoker.create_session()
    invoker.add_node(session.id, node("r", "t_required"))
    session = run_all(invoker, session.id)
    assert session.status == "failed"
    err = session.errors_by_source()["r"]
    assert err.type == "MissingInputError"
    assert "'a'" in err.message


def test_invalid_value_across_an_edge_is_a_node_error(invoker):
    # an iterate over untyped items reaches a bounded input: the value is checked when prepared
    g = graph(
        node("it", "iterate", collection=[5, 50]),
        node("b", "t_bounded"),
        edge("it", "item", "b", "a"),
    )
    session = run_all(invoker, invoker.create_session(g).id)
    assert session.status == "failed"
    err = session.errors_by_source()["b"]
    assert err.node_id == "b#1"
    assert session.results[("b", (0,))].value == 5


def test_resume_after_json_round_trip(invoker):
    full = run_all(invoker, invoker.create_session(RANGE_GRAPH).id)
    expected = full.result_json()["results"]

    session = invoker.create_session(RANGE_GRAPH)
    for _ in range(5):
        session = step(invoker, session.id)
    assert len(session.history) == 5
    text = session.to_json()
    restored = Session.from_json(text, invoker.registry)
    assert restored.id == session.id
    assert restored.history == session.history
    assert restored.status == "running"
    assert restored.to_dict()["results"] == session.to_dict()["results"]
    invoker.services.sessions.save(restored)
    restored = run_all(invoker, restored.id)
    assert restored.status == "completed"
    assert restored.result_json()["results"] == expected
    # each copy ran exactly once across both processes' worth of work
    hist = [prepared_id(k) for k in restored.history]
    assert len(hist) == len(set(hist)) == len(full.history)


def test_resume_nested_iteration_with_models_after_json(registry):
    g = graph(
        node("it", "iterate", collection=[{"image_name": "a"}, {"image_name": "b"}]),
        node("img", "t_image"),
        node("inner", "iterate", collection=[1, 2]),
        node("sum", "t_add"),
        node("c", "collect"),
        node("c2", "collect"),
        edge("it", "item", "img", "image"),
        edge("img", "width", "sum", "a"),
        edge("inner", "item", "sum", "b"),
        edge("sum", "value", "c", "item"),
        edge("img", "image", "c2", "item"),
    )
    ref = Session(Graph.from_dict(g, registry))
    drive(ref)
    s = Session(Graph.from_dict(g, registry))
    steps = 0
    while not s.is_complete() and steps < 50:
        assert len(drive(s, steps=1)) == 1
        s = Session.from_json(s.to_json(), registry)  # a round trip after every node
        steps += 1
    assert s.status == "completed"
    assert steps == len(ref.history) == 13
    # the per-item collect kept both scopes: one list per outer item
    assert [c.collection for c in s.results_by_source()["c"]] == [[9, 10], [9, 10]]
    assert s.result_json()["results"] == ref.result_json()["results"]
    assert [i.image_name for i in s.results_by_source()["c2"].collection] == ["a+", "b+"]


def test_from_dict_refuses_history_without_results(registry):
    s = Session(Graph.from_dict(graph(node("a", "t_int")), registry))
    data = s.to_dict()
    data["history"] = ["a"]
    with pytest.raises(SessionError):
        Session.from_dict(data, registry)


def test_session_json_is_plain_json(invoker):
    session = run_all(invoker, invoker.create_session(RANGE_GRAPH).id)
    data = json.loads(session.to_json())
    assert set(data) >= {"id", "graph", "results", "errors", "history"}
    assert data["history"][:2] == ["range", "it#0"]
    assert data["graph"] == Graph.from_dict(RANGE_GRAPH, make_registry()).to_dict()


def test_status_of_empty_and_fresh_sessions(registry):
    s = Session(registry=registry)
    assert s.status == "completed"  # nothing will ever run: done, and the invoker can say so
    assert s.is_complete()
    s.add_node(node("a", "t_int"))
    assert s.status == "pending"
    assert not s.is_complete()
    drive(s)
    assert s.status == "completed"


def test_has_run(registry):
    s = Session(Graph.from_dict(RANGE_GRAPH, registry))
    assert not s.has_run("range")
    drive(s, steps=2)
    assert s.has_run("range") and s.has_run("it")
    assert not s.has_run("x10")
    s.add_node(node("zz", "t_int_list"))
    with pytest.raises(SessionError) as e:
        s.add_edge(edge("zz", "collection", "it", "collection"))
    assert e.value.node_id == "it"


def test_unknown_nodes_in_session_edges(registry):
    s = Session(registry=registry)
    s.add_node(node("a", "t_int"))
    with pytest.raises(NodeNotFoundError):
        s.add_edge(edge("a", "value", "ghost", "a"))


def test_edge_into_a_running_node_is_refused(registry):
    s = Session(Graph.from_dict(graph(node("a", "t_int", value=1), node("b", "t_add")), registry))
    prepared = s.next()
    assert prepared is not None and prepared.id == "a"
    # `a` is handed out (running) but not complete: its inputs are fixed already
    s.add_node(node("k", "t_int"))
    with pytest.raises(SessionError):
        s.add_edge(edge("k", "value", "a", "value"))
    s.complete(prepared.key, prepared.invocation.invoke(None))  # type: ignore[arg-type]
    with pytest.raises(SessionError):
        s.add_edge(edge("k", "value", "a", "value"))
    s.add_edge(edge("k", "value", "b", "a"))  # b has not run


def test_scheduler_products_and_mixed_scopes(registry):
    # two independent iterates combine as a product; a collect over the inner one keeps one list
    # per outer item, and a node mixing an iterated value and an aggregate runs once per item
    g = graph(
        node("xs", "t_int_list", collection=[1, 2]),
        node("ys", "t_int_list", collection=[10, 20, 30]),
        node("ix", "iterate"),
        node("iy", "iterate"),
        node("sum", "t_add"),
        node("per_x", "collect"),
        node("all", "collect"),
        node("cx", "collect"),
        node("tot", "t_sum_ints"),
        node("share", "t_add"),
        edge("xs", "collection", "ix", "collection"),
        edge("ys", "collection", "iy", "collection"),
        edge("ix", "item", "sum", "a"),
        edge("iy", "item", "sum", "b"),
        edge("sum", "value", "per_x", "item"),
        edge("per_x", "collection", "all", "item"),
        edge("ix", "item", "cx", "item"),
        edge("cx", "collection", "tot", "collection"),
        edge("ix", "item", "share", "a"),
        edge("tot", "value", "share", "b"),
    )
    s = Session(Graph.from_dict(g, registry))
    drive(s)
    r = s.results_by_source()
    assert s.status == "completed"
    assert [o.value for o in r["sum"]] == [11, 21, 31, 12, 22, 32]
    assert [o.collection for o in r["per_x"]] == [[11, 21, 31], [12, 22, 32]]
    assert r["all"].collection == [[11, 21, 31], [12, 22, 32]]
    assert [o.value for o in r["share"]] == [4, 5]


def test_product_with_an_empty_iterate(registry):
    g = graph(
        node("xs", "t_int_list", collection=[1, 2]),
        node("ys", "t_int_list", collection=[]),
        node("ix", "iterate"),
        node("iy", "iterate"),
        node("sum", "t_add"),
        node("per_x", "collect"),
        node("all", "collect"),
        edge("xs", "collection", "ix", "collection"),
        edge("ys", "collection", "iy", "collection"),
        edge("ix", "item", "sum", "a"),
        edge("iy", "item", "sum", "b"),
        edge("sum", "value", "per_x", "item"),
        edge("per_x", "collection", "all", "item"),
    )
    s = Session(Graph.from_dict(g, registry))
    drive(s)
    assert s.status == "completed"
    assert s.results_by_source()["all"].collection == [[], []]
