"""Bad graphs are refused with the typed error, whatever they look like: a hypothesis fuzzer over
random graph JSON (random node types, fields, values, ids and edges, valid and not), and the size
and id limits (`limits.graph_nodes`, node ids) that keep a graph's memory bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nodes_for_tests import edge, graph, make_registry, node

from invokeai_core.config import load_config
from invokeai_core.errors import GraphError, NodeFieldError
from invokeai_core.graph import MAX_NODE_ID_LENGTH, Graph
from invokeai_core.registry import NodeRegistry

REGISTRY = make_registry()
TYPES = [*sorted(REGISTRY.types()), "iterate", "collect", "no_such_type"]
FIELDS = ["value", "a", "b", "factor", "collection", "item", "index", "total", "text", "start", "stop", "zzz"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
NODE_IDS = st.sampled_from(["a", "b", "c", "d", "e"]) | st.text(max_size=6)


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(NODE_IDS, max_size=6))
    nodes: dict[str, Any] = {}
    for nid in ids:
        body: dict[str, Any] = {"id": nid, "type": draw(st.sampled_from(TYPES))}
        for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
            body[name] = draw(JSON_VALUES)
        nodes[nid] = body
    ends = st.sampled_from([*ids, "missing"]) if ids else st.just("missing")
    edges = [
        edge(draw(ends), draw(st.sampled_from(FIELDS)), draw(ends), draw(st.sampled_from(FIELDS)))
        for _ in range(draw(st.integers(0, 6)))
    ]
    data: Any = {"nodes": nodes, "edges": edges}
    return draw(st.sampled_from([data, data, data, {**data, "extra": 1}, [data], {"nodes": ids}]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.booleans())
def test_random_graphs_validate_or_raise_the_typed_error(data: Any, require_inputs: bool) -> None:
    try:
        parsed = Graph.from_dict(data, REGISTRY, require_inputs=require_inputs)
    except GraphError as e:
        assert e.reason and str(e)  # a typed error with a reason, never a bare exception
        return
    again = Graph.from_dict(json.loads(parsed.to_json()), REGISTRY, require_inputs=require_inputs)
    assert again.to_dict() == parsed.to_dict()  # what validated round-trips as it is


def limited_registry(tmp_path: Any, **limits: int) -> NodeRegistry:
    config = load_config(root=tmp_path, environ={}, overrides={f"limits.{k}": v for k, v in limits.items()})
    registry = make_registry()
    registry.validation_context = {"config": config}
    return registry


def test_a_graph_over_limits_graph_nodes_is_refused_before_its_nodes_are_parsed(tmp_path: Any) -> None:
    registry = limited_registry(tmp_path, graph_nodes=3)
    Graph.from_dict(graph(*(node(str(i), "t_int") for i in range(3))), registry)
    with pytest.raises(GraphError, match=r"at most limits.graph_nodes \(3\) nodes; this one has 4"):
        Graph.from_dict(graph(*(node(str(i), "t_int") for i in range(4))), registry)
    g = Graph.from_dict(graph(*(node(str(i), "t_int") for i in range(3))), registry)
    with pytest.raises(NodeFieldError, match=r"node 'x', field 'id': a graph may have at most") as e:
        g.add_node(node("x", "t_int"))  # appends count too (sessions grow node by node)
    assert (e.value.node_id, e.value.field) == ("x", "id") and set(g.nodes) == {"0", "1", "2"}


@pytest.mark.parametrize(
    ("node_id", "reason"),
    [
        ("a\x00b", "control characters"),
        ("line\nbreak", "control characters"),
        ("x" * (MAX_NODE_ID_LENGTH + 1), f"at most {MAX_NODE_ID_LENGTH} characters"),
    ],
)
def test_node_ids_with_control_characters_or_too_long_are_refused(node_id: str, reason: str) -> None:
    with pytest.raises(NodeFieldError, match=reason) as e:
        Graph.from_dict(graph(node(node_id, "t_int")), REGISTRY)
    assert e.value.field == "id" and len(str(e.value)) < 400  # the message never echoes a huge id
    Graph.from_dict(graph(node("x" * MAX_NODE_ID_LENGTH, "t_int"), node("é-ok", "t_int")), REGISTRY)
