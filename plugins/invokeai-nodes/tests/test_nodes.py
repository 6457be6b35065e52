"""Every node of invokeai-nodes, run through the real Invoker with real values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from invokeai_core.testing import GraphRun

Run = Callable[..., GraphRun]


def one(run: Run, type_id: str, **fields: Any) -> Any:
    result = run({"nodes": {"n": {"id": "n", "type": type_id, **fields}}, "edges": []})
    assert result.status == "completed", result.errors
    return result["n"]


def failing(run: Run, type_id: str, **fields: Any) -> Any:
    result = run({"nodes": {"n": {"id": "n", "type": type_id, **fields}}, "edges": []})
    assert result.status == "failed"
    return result.errors["n"]


def test_the_plugin_is_installed_and_registers_its_nodes(invokeai_host: Any) -> None:
    info = invokeai_host.plugins["nodes"]
    assert info.dist == "invokeai-nodes" and info.status == "loaded"
    registry = invokeai_host.registry
    for type_id in [
        "integer",
        "float",
        "string",
        "boolean",
        "integer_collection",
        "float_collection",
        "string_collection",
        "add",
        "sub",
        "mul",
        "div",
        "integer_math",
        "float_math",
        "round_float",
        "float_to_int",
        "rand_int",
        "range",
        "range_of_size",
        "random_range",
    ]:
        assert registry.entry(type_id).plugin == "nodes", type_id
        cls = registry.get(type_id)
        for name, field in cls.input_fields().items():
            assert field.description, f"{type_id}.{name} has no description"
        for name, field in cls.output_class.model_fields.items():
            assert field.description, f"{type_id} output {name} has no description"


def test_primitives(invokeai_run_graph: Run) -> None:
    assert one(invokeai_run_graph, "integer", value=7).value == 7
    assert one(invokeai_run_graph, "float", value=2.5).value == 2.5
    assert one(invokeai_run_graph, "string", value="hi").value == "hi"
    assert one(invokeai_run_graph, "boolean", value=True).value is True
    assert one(invokeai_run_graph, "integer_collection", collection=[1, 2]).collection == [1, 2]
    assert one(invokeai_run_graph, "float_collection", collection=[0.5]).collection == [0.5]
    assert one(invokeai_run_graph, "string_collection", collection=["a", "b"]).collection == ["a", "b"]


def test_integer_arithmetic(invokeai_run_graph: Run) -> None:
    assert one(invokeai_run_graph, "add", a=2, b=3).value == 5
    assert one(invokeai_run_graph, "sub", a=2, b=3).value == -1
    assert one(invokeai_run_graph, "mul", a=4, b=-3).value == -12
    assert one(invokeai_run_graph, "div", a=7, b=2).value == 3
    assert one(invokeai_run_graph, "div", a=-7, b=2).value == -3  # toward zero


def test_division_by_zero_is_a_clear_node_error(invokeai_run_graph: Run) -> None:
    err = failing(invokeai_run_graph, "div", a=1, b=0)
    assert err.type == "ZeroDivisionError" and "input 'b' is 0" in err.message


@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [
        ("add", 3, 4, 7),
        ("sub", 3, 4, -1),
        ("mul", 3, 4, 12),
        ("div", 9, 4, 2),
        ("exp", 2, 10, 1024),
        ("abs", -5, 0, 5),
        ("min", 3, 4, 3),
        ("max", 3, 4, 4),
        ("mod", 10, 3, 1),
    ],
)
def test_integer_math(invokeai_run_graph: Run, op: str, a: int, b: int, expected: int) -> None:
    assert one(invokeai_run_graph, "integer_math", operation=op, a=a, b=b).value == expected


@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [
        ("add", 1.5, 2.0, 3.5),
        ("sub", 1.5, 2.0, -0.5),
        ("mul", 1.5, 2.0, 3.0),
        ("div", 3.0, 2.0, 1.5),
        ("exp", 2.0, 0.5, 2.0**0.5),
        ("abs", -2.5, 0.0, 2.5),
        ("min", 1.0, 2.0, 1.0),
        ("max", 1.0, 2.0, 2.0),
        ("sqrt", 9.0, 0.0, 3.0),
    ],
)
def test_float_math(invokeai_run_graph: Run, op: str, a: float, b: float, expected: float) -> None:
    assert one(invokeai_run_graph, "float_math", operation=op, a=a, b=b).value == pytest.approx(expected)


def test_math_errors_name_the_problem(invokeai_run_graph: Run) -> None:
    assert "by zero" in failing(invokeai_run_graph, "integer_math", operation="mod", a=1, b=0).message
    assert "negative" in failing(invokeai_run_graph, "float_math", operation="sqrt", a=-1.0).message
    assert "not a real number" in failing(invokeai_run_graph, "float_math", operation="exp", a=-8.0, b=0.5).message


def test_rounding_and_conversion(invokeai_run_graph: Run) -> None:
    assert one(invokeai_run_graph, "round_float", value=2.71828, decimals=2).value == 2.72
    assert one(invokeai_run_graph, "float_to_int", value=13.0, multiple=8).value == 16
    assert one(invokeai_run_graph, "float_to_int", value=13.0, multiple=8, method="floor").value == 8
    assert one(invokeai_run_graph, "float_to_int", value=-2.5, method="truncate").value == -2
    assert one(invokeai_run_graph, "float_to_int", value=2.1, method="ceiling").value == 3


def test_random_nodes_are_seeded_and_never_cached(invokeai_run_graph: Run, invokeai_invoker: Any) -> None:
    first = one(invokeai_run_graph, "rand_int", low=0, high=1000, seed=42).value
    assert one(invokeai_run_graph, "rand_int", low=0, high=1000, seed=42).value == first
    assert 0 <= first < 1000
    assert invokeai_invoker.registry.get("rand_int").invocation_meta.cacheable is False
    values = one(invokeai_run_graph, "random_range", low=5, high=10, size=20, seed=3).collection
    assert len(values) == 20 and all(5 <= v < 10 for v in values)
    assert values == one(invokeai_run_graph, "random_range", low=5, high=10, size=20, seed=3).collection
    assert "greater than low" in failing(invokeai_run_graph, "rand_int", low=5, high=5).message


def test_ranges(invokeai_run_graph: Run) -> None:
    assert one(invokeai_run_graph, "range", start=0, stop=10, step=3).collection == [0, 3, 6, 9]
    assert one(invokeai_run_graph, "range", start=5, stop=0, step=-2).collection == [5, 3, 1]
    assert one(invokeai_run_graph, "range_of_size", start=2, size=3, step=5).collection == [2, 7, 12]
    assert "step" in failing(invokeai_run_graph, "range", step=0).message


def test_a_pipeline_of_pack_nodes(invokeai_run_graph: Run) -> None:
    def edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
        return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}

    graph = {
        "nodes": {
            "r": {"id": "r", "type": "range", "start": 0, "stop": 3},
            "it": {"id": "it", "type": "iterate"},
            "m": {"id": "m", "type": "mul", "b": 10},
            "p": {"id": "p", "type": "add", "b": 1},
            "c": {"id": "c", "type": "collect"},
        },
        "edges": [
            edge("r", "collection", "it", "collection"),
            edge("it", "item", "m", "a"),
            edge("m", "value", "p", "a"),
            edge("p", "value", "c", "item"),
        ],
    }
    result = invokeai_run_graph(graph)
    assert result["c"].collection == [1, 11, 21]
