"""Flow: values along chains, iterate/collect (nested, ragged, empty), and their wiring rules."""

from __future__ import annotations

import pytest
from nodes_for_tests import ALL_NODES, edge, graph, make_registry, node

from invokeai_core.errors import GraphError, IterateCollectError, TypeMismatchError
from invokeai_core.graph import Graph, compute_scopes


@pytest.fixture
def run(invokeai_register_nodes, invokeai_run_graph):
    invokeai_register_nodes(*ALL_NODES)

    def go(g):
        result = invokeai_run_graph(g, timeout=30)
        assert result.status == "completed", result.errors
        return result

    return go


@pytest.fixture
def registry():
    return make_registry()


def values(outputs, field="value"):
    return [getattr(o, field) for o in outputs]


# -- running --------------------------------------------------------------------------------------


def test_chain_propagates_values(run):
    r = run(
        graph(
            node("one", "t_int", value=2),
            node("sum", "t_add", b=3),
            node("prod", "t_mul", b=4),
            node("f", "t_float"),
            edge("one", "value", "sum", "a"),
            edge("sum", "value", "prod", "a"),
            edge("prod", "value", "f", "value"),
        )
    )
    assert r["one"].value == 2
    assert r["sum"].value == 5
    assert r["prod"].value == 20
    assert r["f"].value == 40.0
    assert isinstance(r["f"].value, float)


def test_int_into_float_converts(run):
    r = run(graph(node("i", "t_int", value=3), node("f", "t_float"), edge("i", "value", "f", "value")))
    assert r["f"].value == 6.0 and type(r["f"].value) is float


def test_subclass_and_model_values_cross_edges(run):
    r = run(
        graph(
            node("dog", "t_dog", name="fido"),
            node("animal", "t_animal"),
            node("img", "t_image", image={"image_name": "a.png"}),
            node("img2", "t_image"),
            edge("dog", "animal", "animal", "animal"),
            edge("img", "image", "img2", "image"),
        )
    )
    assert r["animal"].name == "Dog:fido"
    assert r["img2"].image.image_name == "a.png++"


def test_iterate_feeding_two_nodes_then_collect_in_order(run):
    r = run(
        graph(
            node("items", "t_int_list", collection=[3, 1, 2]),
            node("it", "iterate"),
            node("x10", "t_mul", b=10),
            node("plus1", "t_add", b=1),
            node("both", "t_add"),
            node("c", "collect"),
            node("c10", "collect"),
            edge("items", "collection", "it", "collection"),
            edge("it", "item", "x10", "a"),
            edge("it", "item", "plus1", "a"),
            edge("x10", "value", "both", "a"),
            edge("plus1", "value", "both", "b"),
            edge("both", "value", "c", "item"),
            edge("x10", "value", "c10", "item"),
        )
    )
    assert r["c"].collection == [34, 12, 23]
    assert r["c10"].collection == [30, 10, 20]
    assert values(r["x10"]) == [30, 10, 20]
    assert values(r["plus1"]) == [4, 2, 3]
    assert values(r["both"]) == [34, 12, 23]


def test_range_times_ten_plus_one(run):
    r = run(
        graph(
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
    )
    assert r["c"].collection == [1, 11, 21]
    assert r["total"].value == 33


def test_iterate_outputs_index_and_total(run):
    r = run(
        graph(
            node("items", "t_str_list", collection=["a", "b", "c"]),
            node("it", "iterate"),
            node("up", "t_str"),
            node("idx", "t_mul", b=100),
            node("c", "collect"),
            edge("items", "collection", "it", "collection"),
            edge("it", "item", "up", "value"),
            edge("it", "index", "idx", "a"),
            edge("idx", "value", "c", "item"),
        )
    )
    its = r["it"]
    assert [o.item for o in its] == ["a", "b", "c"]
    assert [o.index for o in its] == [0, 1, 2]
    assert [o.total for o in its] == [3, 3, 3]
    assert values(r["up"]) == ["A", "B", "C"]
    assert r["c"].collection == [0, 100, 200]


def nested_graph(data):
    return graph(
        node("data", "t_nested_list", collection=data),
        node("outer", "iterate"),
        node("inner", "iterate"),
        node("x10", "t_mul", b=10),
        node("inner_c", "collect"),
        node("outer_c", "collect"),
        edge("data", "collection", "outer", "collection"),
        edge("outer", "item", "inner", "collection"),
        edge("inner", "item", "x10", "a"),
        edge("x10", "value", "inner_c", "item"),
        edge("inner_c", "collection", "outer_c", "item"),
    )


def test_nested_iterate_collects_a_list_of_lists(run):
    r = run(nested_graph([[1, 2], [3, 4]]))
    assert r["outer_c"].collection == [[10, 20], [30, 40]]
    assert [c.collection for c in r["inner_c"]] == [[10, 20], [30, 40]]
    assert values(r["x10"]) == [10, 20, 30, 40]  # iteration order: outer, then inner


def test_ragged_nested_collections(run):
    r = run(nested_graph([[1, 2, 3], [4], [], [5, 6]]))
    assert r["outer_c"].collection == [[10, 20, 30], [40], [], [50, 60]]
    # prepared copies carry both indices
    ids = r.session.prepared_source_mapping
    assert ids["x10#0.2"] == "x10"
    assert ids["x10#3.1"] == "x10"
    assert "x10#2.0" not in ids


def test_nested_iterate_over_empty_outer(run):
    r = run(nested_graph([]))
    assert r["outer_c"].collection == []
    assert r["x10"] == []
    assert r["inner_c"] == []


def test_empty_iterate_collects_empty_list_and_completes(run):
    r = run(
        graph(
            node("range", "t_range", start=0, stop=0),
            node("it", "iterate"),
            node("x10", "t_mul", b=10),
            node("c", "collect"),
            node("total", "t_sum_ints"),
            edge("range", "collection", "it", "collection"),
            edge("it", "item", "x10", "a"),
            edge("x10", "value", "c", "item"),
            edge("c", "collection", "total", "collection"),
        )
    )
    assert r.status == "completed"
    assert r["c"].collection == []
    assert r["total"].value == 0
    assert r["x10"] == []
    assert r["it"] == []


def test_empty_iterate_with_direct_collection(run):
    r = run(
        graph(
            node("it", "iterate", collection=[]),
            node("x10", "t_mul", b=10),
            node("c", "collect"),
            edge("it", "item", "x10", "a"),
            edge("x10", "value", "c", "item"),
        )
    )
    assert r["c"].collection == []


def test_iterate_with_direct_collection(run):
    r = run(
        graph(
            node("it", "iterate", collection=[5, 6]),
            node("x10", "t_mul", b=10),
            node("c", "collect"),
            edge("it", "item", "x10", "a"),
            edge("x10", "value", "c", "item"),
        )
    )
    assert r["c"].collection == [50, 60]


def test_collect_direct_items_in_edge_order(run):
    r = run(
        graph(
            node("a", "t_int", value=1),
            node("b", "t_int", value=2),
            node("d", "t_int", value=3),
            node("c", "collect"),
            node("total", "t_sum_ints"),
            edge("d", "value", "c", "item"),
            edge("a", "value", "c", "item"),
            edge("b", "value", "c", "item"),
            edge("c", "collection", "total", "collection"),
        )
    )
    assert r["c"].collection == [3, 1, 2]
    assert r["total"].value == 6


def test_collect_collection_input_is_prepended(run):
    r = run(
        graph(
            node("prefix", "t_int_list", collection=[100, 200]),
            node("range", "t_range", start=1, stop=3),
            node("it", "iterate"),
            node("c", "collect"),
            node("direct", "collect", collection=[7]),
            node("seven", "t_int", value=8),
            edge("range", "collection", "it", "collection"),
            edge("it", "item", "c", "item"),
            edge("prefix", "collection", "c", "collection"),
            edge("seven", "value", "direct", "item"),
        )
    )
    assert r["c"].collection == [100, 200, 1, 2]
    assert r["direct"].collection == [7, 8]


def test_collect_with_only_a_collection(run):
    r = run(
        graph(
            node("prefix", "t_int_list", collection=[4, 5]),
            node("c", "collect"),
            node("total", "t_sum_ints"),
            edge("prefix", "collection", "c", "collection"),
            edge("c", "collection", "total", "collection"),
        )
    )
    assert r["c"].collection == [4, 5]
    assert r["total"].value == 9


def test_iterate_over_a_collect(run):
    r = run(
        graph(
            node("a", "t_int", value=1),
            node("b", "t_int", value=2),
            node("c", "collect"),
            node("it", "iterate"),
            node("x10", "t_mul", b=10),
            node("c2", "collect"),
            edge("a", "value", "c", "item"),
            edge("b", "value", "c", "item"),
            edge("c", "collection", "it", "collection"),
            edge("it", "item", "x10", "a"),
            edge("x10", "value", "c2", "item"),
        )
    )
    assert r["c2"].collection == [10, 20]


def test_iterate_items_become_models(run):
    # items of a list[dict] collection reach an ImageField input as ImageField
    r = run(
        graph(
            node("names", "t_any", value=None),
            node("it", "iterate", collection=[{"image_name": "a"}, {"image_name": "b"}]),
            node("img", "t_image"),
            node("c", "collect"),
            edge("it", "item", "img", "image"),
            edge("img", "image", "c", "item"),
        )
    )
    assert [i.image.image_name for i in r["img"]] == ["a+", "b+"]
    assert [i.image_name for i in r["c"].collection] == ["a+", "b+"]


def test_node_fed_by_a_collect_and_an_outside_value(run):
    r = run(
        graph(
            node("range", "t_range", start=0, stop=4),
            node("it", "iterate"),
            node("c", "collect"),
            node("total", "t_sum_ints"),
            node("k", "t_int", value=1000),
            node("plus", "t_add"),
            edge("range", "collection", "it", "collection"),
            edge("it", "item", "c", "item"),
            edge("c", "collection", "total", "collection"),
            edge("total", "value", "plus", "a"),
            edge("k", "value", "plus", "b"),
        )
    )
    assert r["plus"].value == 1006


def test_outside_value_used_inside_an_iteration(run):
    r = run(
        graph(
            node("range", "t_range", start=1, stop=4),
            node("k", "t_int", value=5),
            node("it", "iterate"),
            node("mul", "t_mul"),
            node("c", "collect"),
            edge("range", "collection", "it", "collection"),
            edge("it", "item", "mul", "a"),
            edge("k", "value", "mul", "b"),
            edge("mul", "value", "c", "item"),
        )
    )
    assert r["c"].collection == [5, 10, 15]
    assert r["k"].value == 5  # ran once, not per item


def test_two_independent_iterates_combine_as_a_product(run):
    r = run(
        graph(
            node("xs", "t_int_list", collection=[1, 2]),
            node("ys", "t_int_list", collection=[10, 20, 30]),
            node("ix", "iterate"),
            node("iy", "iterate"),
            node("sum", "t_add"),
            edge("xs", "collection", "ix", "collection"),
            edge("ys", "collection", "iy", "collection"),
            edge("ix", "item", "sum", "a"),
            edge("iy", "item", "sum", "b"),
        )
    )
    assert values(r["sum"]) == [11, 21, 31, 12, 22, 32]


# -- wiring rules ---------------------------------------------------------------------------------


def test_collect_items_from_different_scopes_refused(registry):
    g = Graph.from_dict(
        graph(
            node("r1", "t_range"),
            node("r2", "t_range"),
            node("it1", "iterate"),
            node("it2", "iterate"),
            node("c", "collect"),
            edge("r1", "collection", "it1", "collection"),
            edge("r2", "collection", "it2", "collection"),
            edge("it1", "item", "c", "item"),
        ),
        registry,
    )
    before = g.to_dict()
    with pytest.raises(IterateCollectError) as e:
        g.add_edge(edge("it2", "item", "c", "item"))
    assert (e.value.node_id, e.value.field) == ("c", "item")
    assert "scope" in e.value.reason
    assert g.to_dict() == before
    # a collect mixing an iterated item and an outside value is refused too
    g.add_node(node("k", "t_int"))
    with pytest.raises(IterateCollectError):
        g.add_edge(edge("k", "value", "c", "item"))
    # and the same wiring in JSON
    data = g.to_dict()
    data["edges"].append(edge("it2", "item", "c", "item"))
    with pytest.raises(IterateCollectError) as e:
        Graph.from_dict(data, registry)
    assert (e.value.node_id, e.value.field) == ("c", "item")


def test_collect_collection_input_scope_rule(registry):
    # the prefix list of a collect comes from inside the iteration it gathers: refused
    g = Graph.from_dict(
        graph(
            node("r", "t_range"),
            node("it", "iterate"),
            node("x", "t_mul"),
            node("c", "collect"),
            edge("r", "collection", "it", "collection"),
            edge("it", "item", "x", "a"),
            edge("x", "value", "c", "item"),
        ),
        registry,
    )
    g.add_node(node("it_list", "t_range"))
    g.add_edge(edge("it", "item", "it_list", "stop"))  # it_list runs once per item
    with pytest.raises(IterateCollectError) as e:
        g.add_edge(edge("it_list", "collection", "c", "collection"))
    assert (e.value.node_id, e.value.field) == ("c", "collection")


def test_iterate_needs_a_list(registry):
    g = Graph.from_dict(graph(node("i", "t_int"), node("it", "iterate")), registry)
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("i", "value", "it", "collection"))
    assert (e.value.node_id, e.value.field) == ("it", "collection")


def test_iterate_item_type_flows_downstream(registry):
    # iterate over list[str]: its item may not feed an int input
    g = Graph.from_dict(
        graph(
            node("strs", "t_str_list"),
            node("it", "iterate"),
            node("sum", "t_add"),
            node("up", "t_str"),
            edge("strs", "collection", "it", "collection"),
            edge("it", "item", "up", "value"),
        ),
        registry,
    )
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("it", "item", "sum", "a"))
    assert (e.value.node_id, e.value.field) == ("sum", "a")


def test_iterate_type_checked_when_the_collection_arrives_last(registry):
    g = Graph.from_dict(
        graph(
            node("strs", "t_str_list"),
            node("it", "iterate"),
            node("sum", "t_add"),
            edge("it", "item", "sum", "a"),  # item type unknown yet: accepted
        ),
        registry,
    )
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("strs", "collection", "it", "collection"))
    assert (e.value.node_id, e.value.field) == ("sum", "a")
    assert g.incoming_to("it", "collection") == []
    # same thing in JSON (edge order does not matter)
    with pytest.raises(TypeMismatchError):
        Graph.from_dict(
            graph(
                node("strs", "t_str_list"),
                node("it", "iterate"),
                node("sum", "t_add"),
                edge("it", "item", "sum", "a"),
                edge("strs", "collection", "it", "collection"),
            ),
            registry,
        )


def test_nested_iterate_types_checked_through_both_levels(registry):
    # outer.item -> inner.collection -> inner.item -> int input; the data (list[list[str]]) arrives
    # last: the mismatch two flow nodes away must still be found
    g = Graph.from_dict(
        graph(
            node("outer", "iterate"),
            node("inner", "iterate"),
            node("sum", "t_add"),
            node("src", "t_any"),
            edge("outer", "item", "inner", "collection"),
            edge("inner", "item", "sum", "a"),
        ),
        registry,
    )
    g.add_node(node("strs", "t_str_list"))
    g.add_node(node("nested", "t_nested_list"))
    before = g.to_dict()
    # list[str] -> outer: outer.item is str, which is not a list for inner.collection
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("strs", "collection", "outer", "collection"))
    assert (e.value.node_id, e.value.field) == ("inner", "collection")
    assert g.to_dict() == before
    # list[list[int]] -> outer: fine
    g.add_edge(edge("nested", "collection", "outer", "collection"))
    g.validate(require_inputs=False)


def test_nested_iterate_element_mismatch_two_levels_down(registry):
    g = Graph(registry)
    for n in (
        node("outer", "iterate"),
        node("inner", "iterate"),
        node("sum", "t_add"),
        node("x", "t_str_list"),
    ):
        g.add_node(n)
    g.add_edge(edge("outer", "item", "inner", "collection"))
    g.add_edge(edge("inner", "item", "sum", "a"))
    # a collect of list[str] values feeds the outer iterate: inner items are str, sum.a is int
    g.add_node(node("c", "collect"))
    g.add_edge(edge("x", "collection", "c", "item"))  # c.collection: list[list[str]]
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("c", "collection", "outer", "collection"))
    assert (e.value.node_id, e.value.field) == ("sum", "a")
    with pytest.raises(TypeMismatchError):
        data = g.to_dict()
        data["edges"].append(edge("c", "collection", "outer", "collection"))
        Graph.from_dict(data, registry)


def test_collect_item_types_must_agree(registry):
    g = Graph.from_dict(
        graph(
            node("a", "t_int"),
            node("s", "t_str"),
            node("c", "collect"),
            edge("a", "value", "c", "item"),
        ),
        registry,
    )
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("s", "value", "c", "item"))
    assert (e.value.node_id, e.value.field) == ("c", "item")


def test_collect_output_type_checked_against_consumer(registry):
    # collect of str items into a list[int] input is refused, in either edge order
    g = Graph.from_dict(
        graph(
            node("s", "t_str"),
            node("c", "collect"),
            node("total", "t_sum_ints"),
            edge("s", "value", "c", "item"),
        ),
        registry,
    )
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("c", "collection", "total", "collection"))
    assert (e.value.node_id, e.value.field) == ("total", "collection")

    g2 = Graph.from_dict(
        graph(
            node("s", "t_str"),
            node("c", "collect"),
            node("total", "t_sum_ints"),
            edge("c", "collection", "total", "collection"),
        ),
        registry,
    )
    with pytest.raises(TypeMismatchError) as e:
        g2.add_edge(edge("s", "value", "c", "item"))
    assert (e.value.node_id, e.value.field) == ("total", "collection")


def test_collect_of_ints_into_list_float_allowed(registry):
    g = Graph.from_dict(
        graph(
            node("a", "t_int"),
            node("c", "collect"),
            node("total", "t_sum_floats"),
            edge("a", "value", "c", "item"),
            edge("c", "collection", "total", "collection"),
        ),
        registry,
    )
    g.validate()


def test_collect_collection_and_items_must_agree(registry):
    g = Graph.from_dict(
        graph(
            node("strs", "t_str_list"),
            node("a", "t_int"),
            node("c", "collect"),
            edge("a", "value", "c", "item"),
        ),
        registry,
    )
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("strs", "collection", "c", "collection"))
    assert (e.value.node_id, e.value.field) == ("c", "collection")


def test_scopes(registry):
    g = Graph.from_dict(nested_graph([[1]]), registry)
    order, scope = compute_scopes(g)
    assert order.index("outer") < order.index("inner") < order.index("x10")
    assert scope["data"] == ()
    assert scope["outer"] == ("outer",)
    assert scope["inner"] == ("outer", "inner")
    assert scope["x10"] == ("outer", "inner")
    assert scope["inner_c"] == ("outer",)
    assert scope["outer_c"] == ()


def test_inferred_types(registry):
    g = Graph.from_dict(nested_graph([[1]]), registry)
    assert g.output_type("outer", "item") == list[int]
    assert g.output_type("inner", "item") is int
    assert g.output_type("inner", "index") is int
    assert g.output_type("inner_c", "collection") == list[int]
    assert g.output_type("outer_c", "collection") == list[list[int]]
    with pytest.raises(GraphError):
        g.output_type("outer", "nope")


def test_cycle_through_flow_nodes_refused(registry):
    # iterate -> collect -> back into the iterate: a cycle (type inference must not loop forever)
    with pytest.raises(GraphError) as e:
        Graph.from_dict(
            graph(
                node("it", "iterate"),
                node("c", "collect"),
                edge("it", "item", "c", "item"),
                edge("c", "collection", "it", "collection"),
            ),
            registry,
        )
    assert e.value.node_id in ("it", "c")
    assert "cycle" in e.value.reason
    g = Graph(registry)
    g.add_node(node("it", "iterate"))
    g.add_node(node("c", "collect"))
    g.add_edge(edge("it", "item", "c", "item"))
    with pytest.raises(GraphError):
        g.add_edge(edge("c", "collection", "it", "collection"))
    assert len(g.edges) == 1


def test_collect_into_iterate_item_type_chain(registry):
    # the element type survives collect -> iterate: str items may not reach an int input
    g = Graph.from_dict(
        graph(
            node("s", "t_str"),
            node("c", "collect"),
            node("it", "iterate"),
            node("sum", "t_add"),
            edge("s", "value", "c", "item"),
            edge("c", "collection", "it", "collection"),
        ),
        registry,
    )
    assert g.output_type("it", "item") is str
    with pytest.raises(TypeMismatchError) as e:
        g.add_edge(edge("it", "item", "sum", "a"))
    assert (e.value.node_id, e.value.field) == ("sum", "a")
