"""Graph construction and validation (invokeai_core.graph): every rule refuses with a typed error
that names the node, the field and the reason."""

from __future__ import annotations

import json

import pytest
from nodes_for_tests import IntNode, edge, graph, make_registry, node

from invokeai_core.errors import (
    CycleError,
    DuplicateNodeError,
    EdgeError,
    GraphError,
    MissingInputError,
    NodeFieldError,
    NodeNotFoundError,
    TypeMismatchError,
    UnknownNodeTypeError,
)
from invokeai_core.graph import Edge, Graph


@pytest.fixture
def registry():
    return make_registry()


@pytest.fixture
def g(registry):
    return Graph(registry)


def chain(registry) -> Graph:
    return Graph.from_dict(
        graph(
            node("one", "t_int", value=2),
            node("sum", "t_add", b=3),
            node("prod", "t_mul", b=4),
            edge("one", "value", "sum", "a"),
            edge("sum", "value", "prod", "a"),
        ),
        registry,
    )


def assert_error(exc_info, cls, node_id, field, *reason_words):
    err = exc_info.value
    assert type(err) is cls, f"expected {cls.__name__}, got {type(err).__name__}: {err}"
    assert err.node_id == node_id
    assert err.field == field
    for word in reason_words:
        assert word in err.reason, f"{word!r} not in reason {err.reason!r}"
    # the message names both the node and the field
    assert f"'{node_id}'" in str(err)
    if field is not None:
        assert f"'{field}'" in str(err)


# -- nodes ----------------------------------------------------------------------------------------


def test_unknown_node_type(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict(graph(node("x", "t_nope")), registry)
    assert_error(e, UnknownNodeTypeError, "x", "type", "t_nope")


def test_unknown_field_on_a_node(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict(graph(node("sum", "t_add", a=1, c=2)), registry)
    assert_error(e, NodeFieldError, "sum", "c", "unknown field")
    # the reason lists the fields the node does have
    assert "a" in e.value.reason and "b" in e.value.reason


def test_bad_field_value(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict(graph(node("sum", "t_add", a="not a number")), registry)
    assert_error(e, NodeFieldError, "sum", "a", "not a number")


def test_constraint_violation_names_the_field(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict(graph(node("b", "t_bounded", a=11)), registry)
    assert_error(e, NodeFieldError, "b", "a")


def test_node_without_type(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict({"nodes": {"x": {"id": "x", "value": 1}}, "edges": []}, registry)
    assert_error(e, NodeFieldError, "x", "type")


def test_node_id_must_match_its_key(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict({"nodes": {"x": node("y", "t_int")}, "edges": []}, registry)
    assert_error(e, NodeFieldError, "x", "id")


def test_duplicate_node_id(g):
    g.add_node(node("a", "t_int"))
    with pytest.raises(GraphError) as e:
        g.add_node(node("a", "t_add"))
    assert_error(e, DuplicateNodeError, "a", "id")
    assert g.nodes["a"].invocation_type == "t_int"
    assert len(g.nodes) == 1


def test_duplicate_node_id_in_a_node_list(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict({"nodes": [node("a", "t_int"), node("a", "t_int")], "edges": []}, registry)
    assert_error(e, DuplicateNodeError, "a", "id")


def test_hash_in_node_id_refused(g, registry):
    with pytest.raises(GraphError) as e:
        g.add_node(node("a#0", "t_int"))
    assert_error(e, NodeFieldError, "a#0", "id", "'#'")
    assert not g.nodes
    with pytest.raises(GraphError) as e:
        Graph.from_dict(graph(node("x#1", "t_int")), registry)
    assert_error(e, NodeFieldError, "x#1", "id")


def test_add_node_object(g):
    added = g.add_node(IntNode(id="n", value=5))
    assert g.get_node("n") is added
    with pytest.raises(NodeNotFoundError) as e:
        g.get_node("missing")
    assert e.value.node_id == "missing"


def test_malformed_graph_documents(registry):
    with pytest.raises(GraphError):
        Graph.from_dict([], registry)
    with pytest.raises(GraphError, match="unknown graph key"):
        Graph.from_dict({"nodes": {}, "edges": [], "extra": 1}, registry)
    with pytest.raises(GraphError, match="not valid JSON"):
        Graph.from_json("{nope", registry)
    with pytest.raises(EdgeError, match=r"edges\[0\]"):
        Graph.from_dict({"nodes": {"a": node("a", "t_int")}, "edges": [{"source": {"node_id": "a"}}]}, registry)


# -- edges ----------------------------------------------------------------------------------------


def test_unknown_edge_source_node(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict(graph(node("b", "t_add"), edge("ghost", "value", "b", "a")), registry)
    assert_error(e, NodeNotFoundError, "ghost", "value", "source")


def test_unknown_edge_destination_node(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict(graph(node("a", "t_int"), edge("a", "value", "ghost", "a")), registry)
    assert_error(e, NodeNotFoundError, "ghost", "a", "destination")


def test_unknown_output_field(g):
    g.add_node(node("a", "t_int"))
    g.add_node(node("b", "t_add"))
    with pytest.raises(GraphError) as e:
        g.add_edge(edge("a", "nope", "b", "a"))
    assert_error(e, EdgeError, "a", "nope", "no output named 'nope'")
    assert "value" in e.value.reason  # lists the outputs there are


def test_unknown_input_field(g):
    g.add_node(node("a", "t_int"))
    g.add_node(node("b", "t_add"))
    with pytest.raises(GraphError) as e:
        g.add_edge(edge("a", "value", "b", "c"))
    assert_error(e, EdgeError, "b", "c", "no input named 'c'")


def test_edges_into_id_and_use_cache_refused(g):
    g.add_node(node("a", "t_int"))
    g.add_node(node("b", "t_add"))
    for field in ("id", "use_cache"):
        with pytest.raises(EdgeError) as e:
            g.add_edge(edge("a", "value", "b", field))
        assert e.value.node_id == "b" and e.value.field == field


def test_input_fed_twice(g):
    for nid in ("a", "b"):
        g.add_node(node(nid, "t_int"))
    g.add_node(node("sum", "t_add"))
    g.add_edge(edge("a", "value", "sum", "a"))
    with pytest.raises(GraphError) as e:
        g.add_edge(edge("b", "value", "sum", "a"))
    assert_error(e, EdgeError, "sum", "a", "already connected", "'a'")
    # the same edge twice is refused too
    with pytest.raises(EdgeError):
        g.add_edge(edge("a", "value", "sum", "a"))
    assert len(g.edges) == 1


def test_input_fed_twice_in_json(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict(
            graph(
                node("a", "t_int"),
                node("b", "t_int"),
                node("sum", "t_add"),
                edge("a", "value", "sum", "b"),
                edge("b", "value", "sum", "b"),
            ),
            registry,
        )
    assert_error(e, EdgeError, "sum", "b", "already connected")


def test_edge_into_direct_only_input(g):
    g.add_node(node("a", "t_int"))
    g.add_node(node("d", "t_direct"))
    with pytest.raises(GraphError) as e:
        g.add_edge(edge("a", "value", "d", "a"))
    assert_error(e, EdgeError, "d", "a", "direct")
    g.add_edge(edge("a", "value", "d", "b"))  # the other input takes connections


def test_edge_into_iterate_index_refused(g):
    g.add_node(node("a", "t_int"))
    g.add_node(node("it", "iterate"))
    with pytest.raises(EdgeError) as e:
        g.add_edge(edge("a", "value", "it", "index"))
    assert (e.value.node_id, e.value.field) == ("it", "index")


def test_self_cycle(g, registry):
    g.add_node(node("a", "t_add"))
    with pytest.raises(GraphError) as e:
        g.add_edge(edge("a", "value", "a", "b"))
    assert_error(e, CycleError, "a", "b", "cycle")
    assert g.edges == []
    with pytest.raises(CycleError) as e:
        Graph.from_dict(graph(node("a", "t_add"), edge("a", "value", "a", "b")), registry)
    assert (e.value.node_id, e.value.field) == ("a", "b")


def test_three_node_cycle(g):
    for nid in ("a", "b", "c"):
        g.add_node(node(nid, "t_add"))
    g.add_edge(edge("a", "value", "b", "a"))
    g.add_edge(edge("b", "value", "c", "a"))
    before = g.to_dict()
    with pytest.raises(GraphError) as e:
        g.add_edge(edge("c", "value", "a", "a"))
    assert_error(e, CycleError, "a", "a", "cycle")
    assert g.to_dict() == before


def test_three_node_cycle_in_json_names_a_node_and_field_on_the_cycle(registry):
    with pytest.raises(GraphError) as e:
        Graph.from_dict(
            graph(
                node("src", "t_int"),
                node("a", "t_add"),
                node("b", "t_add"),
                node("c", "t_add"),
                node("after", "t_add"),
                edge("src", "value", "a", "b"),
                edge("a", "value", "b", "a"),
                edge("b", "value", "c", "a"),
                edge("c", "value", "a", "a"),
                edge("c", "value", "after", "a"),
            ),
            registry,
        )
    err = e.value
    assert isinstance(err, CycleError)
    # the node is on the cycle (not merely downstream of it) and the field is its cycle input
    assert (err.node_id, err.field) in {("a", "a"), ("b", "a"), ("c", "a")}
    assert "cycle" in err.reason


def test_type_mismatch_names_node_and_field(g):
    g.add_node(node("s", "t_str", value="x"))
    g.add_node(node("sum", "t_add"))
    with pytest.raises(GraphError) as e:
        g.add_edge(edge("s", "value", "sum", "b"))
    assert_error(e, TypeMismatchError, "sum", "b", "str", "int")
    # the source is named too
    assert "'s'" in e.value.reason


def test_float_into_int_refused_int_into_float_allowed(g):
    g.add_node(node("i", "t_int", value=2))
    g.add_node(node("f", "t_float"))
    g.add_node(node("scale", "t_scale"))
    g.add_edge(edge("i", "value", "f", "value"))
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("f", "value", "scale", "value"))
    assert (e.value.node_id, e.value.field) == ("scale", "value")


def test_union_literal_subclass_edges(g):
    g.add_node(node("u", "t_union_out"))
    g.add_node(node("ui", "t_union_in"))
    g.add_node(node("i", "t_int"))
    g.add_node(node("sum", "t_add"))
    g.add_node(node("lit", "t_literal"))
    g.add_node(node("s", "t_str"))
    g.add_node(node("lit_in", "t_literal_in"))
    g.add_node(node("dog", "t_dog"))
    g.add_node(node("animal", "t_animal"))
    g.add_edge(edge("u", "value", "ui", "value"))  # int | str -> int | str
    g.add_edge(edge("i", "value", "ui", "maybe"))  # int -> int | None
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("u", "value", "sum", "a"))  # int | str -> int: too wide
    assert (e.value.node_id, e.value.field) == ("sum", "a")
    g.add_edge(edge("lit", "mode", "s", "value"))  # Literal -> str
    g.add_edge(edge("lit", "mode", "lit_in", "mode"))  # Literal -> same Literal
    g.add_edge(edge("dog", "animal", "animal", "animal"))  # Dog -> Animal


def test_list_element_types_on_edges(g):
    g.add_node(node("ints", "t_int_list"))
    g.add_node(node("floats", "t_float_list"))
    g.add_node(node("sum_f", "t_sum_floats"))
    g.add_node(node("sum_i", "t_sum_ints"))
    g.add_edge(edge("ints", "collection", "sum_f", "collection"))  # list[int] -> list[float]
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("floats", "collection", "sum_i", "collection"))
    assert (e.value.node_id, e.value.field) == ("sum_i", "collection")


def test_rejected_edge_leaves_graph_unchanged(registry):
    g = chain(registry)
    g.add_node(node("s", "t_str"))
    g.add_node(node("c", "collect"))
    g.add_node(node("it", "iterate"))
    g.add_node(node("r", "t_range"))
    g.add_edge(edge("r", "collection", "it", "collection"))
    g.add_edge(edge("it", "item", "c", "item"))
    before = g.to_dict()
    edges_before = list(g.edges)
    incoming_before = {nid: list(g.incoming(nid)) for nid in g.nodes}
    outgoing_before = {nid: list(g.outgoing(nid)) for nid in g.nodes}
    bad = [
        edge("prod", "value", "one", "value"),  # cycle
        edge("s", "value", "prod", "b"),  # type mismatch
        edge("one", "value", "sum", "a"),  # fed twice
        edge("one", "nope", "sum", "b"),  # unknown output
        edge("prod", "value", "c", "item"),  # collect items from two scopes
        edge("s", "value", "c", "item"),  # collect items of different types
    ]
    for b in bad:
        with pytest.raises(GraphError):
            g.add_edge(b)
        assert g.edges == edges_before
        assert {nid: list(g.incoming(nid)) for nid in g.nodes} == incoming_before
        assert {nid: list(g.outgoing(nid)) for nid in g.nodes} == outgoing_before
        assert g.to_dict() == before
        g.validate(require_inputs=False)  # still a valid graph
    # and a good edge is still accepted afterwards
    g.add_edge(edge("one", "value", "prod", "b"))
    assert len(g.edges) == len(edges_before) + 1


def test_graph_version_changes_on_every_addition(g):
    v0 = g.version
    g.add_node(node("a", "t_int"))
    v1 = g.version
    g.add_node(node("b", "t_add"))
    g.add_edge(edge("a", "value", "b", "a"))
    assert v0 < v1 < g.version


def test_transaction_rolls_back(g):
    g.add_node(node("a", "t_int"))
    before = g.to_dict()
    with pytest.raises(TypeMismatchError), g.transaction():
        g.add_node(node("b", "t_add"))
        g.add_edge(edge("a", "value", "b", "a"))
        g.add_node(node("s", "t_str"))
        g.add_edge(edge("a", "value", "s", "value"))
    assert g.to_dict() == before
    assert g.outgoing("a") == []
    # the ids used inside the failed transaction are free again
    g.add_node(node("b", "t_add"))
    g.add_edge(edge("a", "value", "b", "a"))


# -- JSON and validation --------------------------------------------------------------------------


def test_json_round_trip(registry):
    g = chain(registry)
    g.add_node(node("r", "t_range", start=1, stop=4))
    g.add_node(node("it", "iterate"))
    g.add_node(node("c", "collect"))
    g.add_node(node("img", "t_image", image={"image_name": "cat.png"}))
    g.add_edge(edge("r", "collection", "it", "collection"))
    g.add_edge(edge("it", "item", "c", "item"))
    data = g.to_dict()
    assert data["nodes"]["one"] == {"id": "one", "type": "t_int", "value": 2, "use_cache": True}
    assert data["edges"][0] == edge("one", "value", "sum", "a")
    text = g.to_json()
    again = Graph.from_json(text, registry)
    assert again.to_dict() == data
    assert list(again.nodes) == list(g.nodes)
    assert again.edges == g.edges
    assert again.nodes["img"].image.image_name == "cat.png"  # a model field comes back as a model
    assert json.loads(text) == data


def test_nodes_as_a_list(registry):
    g = Graph.from_dict({"nodes": [node("a", "t_int", value=1), node("b", "t_add")], "edges": []}, registry)
    assert list(g.nodes) == ["a", "b"]


def test_missing_required_input(registry):
    g = Graph.from_dict(graph(node("r", "t_required", b=1)), registry)
    g.validate(require_inputs=False)
    with pytest.raises(GraphError) as e:
        g.validate(require_inputs=True)
    assert_error(e, MissingInputError, "r", "a", "required")
    assert g.missing_inputs("r") == ["a"]


def test_required_input_satisfied_by_value_or_edge(registry):
    g = Graph.from_dict(
        graph(
            node("i", "t_int"),
            node("r1", "t_required", a=0),
            node("r2", "t_required"),
            edge("i", "value", "r2", "a"),
        ),
        registry,
    )
    g.validate(require_inputs=True)
    assert g.missing_inputs("r1") == [] and g.missing_inputs("r2") == []


def test_required_image_input(registry):
    g = Graph.from_dict(graph(node("img", "t_image")), registry)
    with pytest.raises(MissingInputError) as e:
        g.validate()
    assert (e.value.node_id, e.value.field) == ("img", "image")


def test_topological_order_keeps_insertion_order_for_ties(registry):
    g = Graph.from_dict(
        graph(
            node("z", "t_int"),
            node("y", "t_add"),
            node("x", "t_int"),
            edge("x", "value", "y", "a"),
        ),
        registry,
    )
    assert g.topological_order() == ["z", "x", "y"]


def test_edge_helpers():
    e = Edge.between("a", "value", "b", "a")
    assert str(e) == "a.value -> b.a"
    assert Edge.model_validate(edge("a", "value", "b", "a")) == e
    assert hash(e) == hash(Edge.between("a", "value", "b", "a"))


def test_error_to_dict(g):
    g.add_node(node("a", "t_int"))
    with pytest.raises(GraphError) as e:
        g.add_edge(edge("a", "value", "missing", "x"))
    assert e.value.to_dict() == {
        "type": "NodeNotFoundError",
        "node_id": "missing",
        "field": "x",
        "reason": e.value.reason,
    }


def test_large_graph_is_fast_enough_to_build(registry):
    # linear construction: a 3,000 node chain builds and validates (no quadratic blow-up needed to
    # finish within the test timeout); no wall-clock assertion.
    n = 3000
    nodes = [node("n0", "t_int", value=1)] + [node(f"n{i}", "t_add", b=1) for i in range(1, n)]
    edges = [edge(f"n{i - 1}", "value", f"n{i}", "a") for i in range(1, n)]
    g = Graph.from_dict({"nodes": {x["id"]: x for x in nodes}, "edges": edges}, registry)
    assert g.topological_order()[-1] == f"n{n - 1}"


def test_node_without_id_gets_a_fresh_one(g):
    a = g.add_node({"type": "t_int", "value": 1})
    b = g.add_node({"type": "t_int", "value": 2})
    assert a.id and b.id and a.id != b.id
    assert set(g.nodes) == {a.id, b.id}


def test_required_input_placeholder_round_trips(registry):
    # a required input that is connected (not set) is left out of the JSON and parses back; an
    # explicit null in JSON means "not set" too
    g = Graph.from_dict(graph(node("i", "t_int"), node("r", "t_required"), edge("i", "value", "r", "a")), registry)
    data = g.to_dict()
    assert "a" not in data["nodes"]["r"]
    assert Graph.from_dict(data, registry).to_dict() == data
    again = Graph.from_dict(graph(node("img", "t_image", image=None)), registry)
    assert again.missing_inputs("img") == ["image"]


def test_add_edges_is_all_or_nothing(g):
    for nid in ("a", "b"):
        g.add_node(node(nid, "t_int"))
    g.add_node(node("sum", "t_add"))
    g.add_node(node("s", "t_str"))
    before = g.to_dict()
    with pytest.raises(TypeMismatchError):
        g.add_edges([edge("a", "value", "sum", "a"), edge("b", "value", "s", "value")])
    assert g.to_dict() == before
    with pytest.raises(CycleError):
        g.add_edges([edge("a", "value", "sum", "a"), edge("sum", "value", "sum", "b")])
    assert g.to_dict() == before
    g.add_node(node("p", "t_add"))
    g.add_node(node("q", "t_add"))
    before = g.to_dict()
    with pytest.raises(CycleError) as e:
        g.add_edges([edge("p", "value", "q", "a"), edge("q", "value", "p", "a")])
    assert e.value.node_id in ("p", "q") and e.value.field == "a"
    assert g.to_dict() == before
    added = g.add_edges([edge("a", "value", "sum", "a"), edge("b", "value", "sum", "b")])
    assert [str(e) for e in added] == ["a.value -> sum.a", "b.value -> sum.b"]
