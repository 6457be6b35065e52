"""Batches: one graph expanded into many sessions (invokeai_core.batch)."""

from __future__ import annotations

import json

import pytest
from nodes_for_tests import ALL_NODES, edge, graph, make_registry, node

from invokeai_core.batch import Batch, BatchDatum
from invokeai_core.errors import BatchError
from invokeai_core.session import Session

GRAPH = graph(
    node("a", "t_int", value=0),
    node("b", "t_int", value=0),
    node("s", "t_str", value=""),
    node("sum", "t_add"),
    node("bounded", "t_bounded"),
    node("img", "t_image"),
    node("f", "t_float"),
    edge("a", "value", "sum", "a"),
    edge("b", "value", "sum", "b"),
)


@pytest.fixture
def registry():
    return make_registry()


def datum(node_id, field, items):
    return BatchDatum(node_path=node_id, field_name=field, items=items)


def combos(batch, registry):
    """(a, b, s) per expanded session, in order."""
    out = []
    for _sid, g, _values in batch.expand(registry):
        out.append((g.nodes["a"].value, g.nodes["b"].value, g.nodes["s"].value))
    return out


def test_expansion_order_product_last_group_fastest(registry):
    batch = Batch(
        graph=GRAPH,
        data=[
            [datum("a", "value", [1, 2])],
            [datum("b", "value", [10, 20, 30])],
        ],
    )
    assert combos(batch, registry) == [
        (1, 10, ""),
        (1, 20, ""),
        (1, 30, ""),
        (2, 10, ""),
        (2, 20, ""),
        (2, 30, ""),
    ]
    assert batch.count() == 6


def test_zipped_within_a_group(registry):
    batch = Batch(
        graph=GRAPH,
        data=[[datum("a", "value", [1, 2, 3]), datum("s", "value", ["x", "y", "z"])]],
    )
    assert combos(batch, registry) == [(1, 0, "x"), (2, 0, "y"), (3, 0, "z")]
    assert batch.count() == 3


def test_runs_are_outermost(registry):
    batch = Batch(
        graph=GRAPH,
        runs=2,
        data=[
            [datum("a", "value", [1, 2]), datum("s", "value", ["p", "q"])],
            [datum("b", "value", [7, 8])],
        ],
    )
    expected_once = [(1, 7, "p"), (1, 8, "p"), (2, 7, "q"), (2, 8, "q")]
    assert combos(batch, registry) == expected_once * 2
    assert batch.count() == 8


def test_no_data_gives_runs_copies(registry):
    batch = Batch(graph=GRAPH, runs=3)
    assert batch.count() == 3
    assert combos(batch, registry) == [(0, 0, "")] * 3


def test_count_does_not_build(registry):
    big = [[datum("a", "value", list(range(1000)))], [datum("b", "value", list(range(1000)))]]
    batch = Batch(graph=GRAPH, data=[*big, [datum("s", "value", [str(i) for i in range(1000)])]], runs=5)
    assert batch.count() == 5 * 1000**3
    # count() never parses the graph: it answers even for a graph that would not validate
    broken = Batch(graph=graph(node("x", "t_nope")), data=[[datum("x", "v", [1, 2])]], runs=2)
    assert broken.count() == 4


def test_expansion_yields_values_and_unique_ids(registry):
    batch = Batch(
        graph=GRAPH,
        data=[[datum("a", "value", [1, 2]), datum("img", "image", [{"image_name": "p.png"}, {"image_name": "q.png"}])]],
    )
    expanded = list(batch.expand(registry))
    ids = [sid for sid, _, _ in expanded]
    assert len(set(ids)) == 2
    _, g0, values0 = expanded[0]
    assert values0 == [
        {"node_path": "a", "field_name": "value", "value": 1},
        {"node_path": "img", "field_name": "image", "value": {"image_name": "p.png"}},
    ]
    json.dumps(values0)
    assert g0.nodes["img"].image.image_name == "p.png"  # validated into the field's type
    assert expanded[1][1].nodes["img"].image.image_name == "q.png"
    # the expanded graph is complete (a required input set by the batch counts as set) and round-trips
    g0.validate(require_inputs=True)
    assert g0.to_dict()["nodes"]["img"]["image"] == {"image_name": "p.png"}


def test_expansion_does_not_touch_the_source_graph(registry):
    batch = Batch(graph=GRAPH, data=[[datum("a", "value", [5, 6])]])
    graphs = [g for _, g, _ in batch.expand(registry)]
    assert [g.nodes["a"].value for g in graphs] == [5, 6]
    assert batch.graph["nodes"]["a"]["value"] == 0


def test_int_items_into_a_float_field(registry):
    batch = Batch(graph=GRAPH, data=[[datum("f", "value", [1, 2])]])
    values = [g.nodes["f"].value for _, g, _ in batch.expand(registry)]
    assert values == [1.0, 2.0] and all(type(v) is float for v in values)


def test_expanded_sessions_run(invokeai_register_nodes, invokeai_invoker):
    invokeai_register_nodes(*ALL_NODES)
    batch = Batch(
        graph=graph(
            node("a", "t_int"),
            node("m", "t_mul"),
            edge("a", "value", "m", "a"),
        ),
        data=[[datum("a", "value", [1, 2])], [datum("m", "b", [10, 100])]],
    )
    sums = []
    for _sid, g, _ in batch.expand(invokeai_invoker.registry):
        session = invokeai_invoker.run_graph(g, timeout=30)
        assert isinstance(session, Session) and session.status == "completed"
        sums.append(session.results_by_source()["m"].value)
    assert sums == [10, 100, 20, 200]


# -- refusals ---------------------------------------------------------------------------------------


def refused(batch, registry, node_id, field, *words):
    with pytest.raises(BatchError) as e:
        list(batch.expand(registry))
    err = e.value
    assert err.node_id == node_id
    assert err.field == field
    for w in words:
        assert w in err.reason, (w, err.reason)
    if node_id is not None:
        assert f"'{node_id}'" in str(err)
    if field is not None:
        assert f"'{field}'" in str(err)
    return err


def test_ragged_zipped_group_refused(registry):
    batch = Batch(graph=GRAPH, data=[[datum("a", "value", [1, 2, 3]), datum("b", "value", [1, 2])]])
    refused(batch, registry, "b", "value", "ragged", "3", "2")


def test_mixed_item_types_refused(registry):
    batch = Batch(graph=GRAPH, data=[[datum("a", "value", [1, "two", 3])]])
    refused(batch, registry, "a", "value", "mix")


def test_duplicate_target_refused(registry):
    batch = Batch(graph=GRAPH, data=[[datum("a", "value", [1])], [datum("a", "value", [2])]])
    refused(batch, registry, "a", "value", "twice")
    same_group = Batch(graph=GRAPH, data=[[datum("a", "value", [1]), datum("a", "value", [2])]])
    refused(same_group, registry, "a", "value", "twice")


def test_unknown_node_refused(registry):
    batch = Batch(graph=GRAPH, data=[[datum("ghost", "value", [1])]])
    refused(batch, registry, "ghost", "value", "no such node")


def test_unknown_field_refused(registry):
    batch = Batch(graph=GRAPH, data=[[datum("a", "nope", [1])]])
    refused(batch, registry, "a", "nope", "no input named 'nope'")
    for reserved in ("id", "use_cache"):
        refused(Batch(graph=GRAPH, data=[[datum("a", reserved, ["x"])]]), registry, "a", reserved)


def test_value_failing_the_field_type_refused(registry):
    batch = Batch(graph=GRAPH, data=[[datum("a", "value", ["one", "two"])]])
    err = refused(batch, registry, "a", "value", "items[0]", "'one'")
    assert "integer" in err.reason


def test_value_failing_the_field_constraints_refused(registry):
    batch = Batch(graph=GRAPH, data=[[datum("bounded", "a", [5, 11])]])
    refused(batch, registry, "bounded", "a", "items[1]", "11")


def test_field_fed_by_an_edge_refused(registry):
    batch = Batch(graph=GRAPH, data=[[datum("sum", "a", [1, 2])]])
    refused(batch, registry, "sum", "a", "edge")


def test_empty_items_and_empty_group_refused(registry):
    refused(Batch(graph=GRAPH, data=[[datum("a", "value", [])]]), registry, "a", "value", "empty")
    with pytest.raises(BatchError):
        list(Batch(graph=GRAPH, data=[[]]).expand(registry))


def test_invalid_graph_refused(registry):
    batch = Batch(graph=graph(node("x", "t_nope")), data=[])
    with pytest.raises(BatchError) as e:
        list(batch.expand(registry))
    assert e.value.node_id == "x" and e.value.field == "type"


def test_runs_must_be_positive():
    with pytest.raises(ValueError):
        Batch(graph=GRAPH, runs=0)
