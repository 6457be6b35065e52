"""The plugin's registration, and the primitive, math and collection nodes, run through the real
Invoker with real values."""

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


def edge(source: str, source_field: str, destination: str, destination_field: str) -> dict[str, Any]:
    return {
        "source": {"node_id": source, "field": source_field},
        "destination": {"node_id": destination, "field": destination_field},
    }


def failing(run: Run, type_id: str, **fields: Any) -> Any:
    result = run({"nodes": {"n": {"id": "n", "type": type_id, **fields}}, "edges": []})
    assert result.status == "failed"
    return result.errors["n"]


#: Every node type of the pack, by category (`invokeai nodes` lists them the same way).
NODES_BY_CATEGORY: dict[str, list[str]] = {
    "primitives": [
        "integer",
        "float",
        "string",
        "boolean",
        "color",
        "integer_collection",
        "float_collection",
        "string_collection",
        "image",
        "image_collection",
    ],
    "math": ["add", "sub", "mul", "div", "integer_math", "float_math", "round_float", "float_to_int", "rand_int"],
    "strings": ["string_join", "string_split", "string_replace", "dynamic_prompt"],
    "collections": ["range", "range_of_size", "random_range"],
    "images": [
        "blank_image",
        "image_load",
        "save_image",
        "img_resize",
        "img_scale",
        "img_crop",
        "img_paste",
        "img_blur",
        "img_conv",
        "img_chan",
        "img_mul",
        "img_lerp",
        "img_ilerp",
        "img_invert",
        "mask_from_alpha",
        "img_channel_offset",
    ],
}


def test_the_plugin_is_installed_and_registers_its_nodes(invokeai_host: Any) -> None:
    info = invokeai_host.plugins["nodes"]
    assert info.dist == "invokeai-nodes" and info.status == "loaded"
    registry = invokeai_host.registry
    expected = {t for types in NODES_BY_CATEGORY.values() for t in types}
    assert {e.cls.invocation_type for e in registry.entries() if e.plugin == "nodes"} == expected
    for category, type_ids in NODES_BY_CATEGORY.items():
        for type_id in type_ids:
            assert registry.entry(type_id).plugin == "nodes", type_id
            cls = registry.get(type_id)
            assert cls.invocation_meta.category == category, type_id
            assert cls.invocation_meta.description, f"{type_id} has no docstring"
            for name, field in cls.input_fields().items():
                assert field.description, f"{type_id}.{name} has no description"
            for name, field in cls.output_class.model_fields.items():
                assert field.description, f"{type_id} output {name} has no description"


def test_random_nodes_are_never_cached_and_the_others_are(invokeai_host: Any) -> None:
    never = {"rand_int", "random_range", "dynamic_prompt", "image_load", "save_image"}
    for type_ids in NODES_BY_CATEGORY.values():
        for type_id in type_ids:
            assert invokeai_host.registry.get(type_id).invocation_meta.cacheable is (type_id not in never), type_id


def test_primitives(invokeai_run_graph: Run) -> None:
    assert one(invokeai_run_graph, "integer", value=7).value == 7
    assert one(invokeai_run_graph, "float", value=2.5).value == 2.5
    assert one(invokeai_run_graph, "string", value="hi").value == "hi"
    assert one(invokeai_run_graph, "boolean", value=True).value is True
    assert one(invokeai_run_graph, "integer_collection", collection=[1, 2]).collection == [1, 2]
    assert one(invokeai_run_graph, "float_collection", collection=[0.5]).collection == [0.5]
    assert one(invokeai_run_graph, "string_collection", collection=["a", "b"]).collection == ["a", "b"]
    assert one(invokeai_run_graph, "boolean").value is False  # the default


def test_color_primitive_takes_channels_or_hex(invokeai_run_graph: Run) -> None:
    color = one(invokeai_run_graph, "color", color={"r": 255, "g": 128, "b": 0}).color
    assert color.as_tuple() == (255, 128, 0, 255)  # alpha defaults to opaque
    assert one(invokeai_run_graph, "color", color="#10203040").color.as_tuple() == (16, 32, 48, 64)
    assert one(invokeai_run_graph, "color").color.as_tuple() == (0, 0, 0, 255)


def test_bad_colors_are_refused_before_anything_runs(refused: Any) -> None:
    err = refused("color", color={"r": 256, "g": 0, "b": 0})
    assert err.node_id == "n" and err.field == "color" and "255" in str(err)
    err = refused("color", color="#12345")
    assert err.field == "color" and "#rrggbb" in str(err)


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
    assert one(invokeai_run_graph, "rand_int", low=7, high=8).value == 7  # unseeded, but one choice


def test_random_bounds_are_checked_before_running_and_when_they_arrive_by_edge(
    invokeai_run_graph: Run, refused: Any
) -> None:
    for type_id in ("rand_int", "random_range"):
        err = refused(type_id, low=5, high=5)
        assert err.node_id == "n" and err.field == "high" and "greater than low (5)" in str(err)
    # `high` fed by an edge is only known when the node runs: a node error with the same words
    graph = {
        "nodes": {
            "h": {"id": "h", "type": "integer", "value": 2},
            "r": {"id": "r", "type": "rand_int", "low": 5},
        },
        "edges": [edge("h", "value", "r", "high")],
    }
    result = invokeai_run_graph(graph)
    assert result.status == "failed"
    assert result.errors["r"].message == "rand_int: input 'high': must be greater than low (5), got 2"


def test_a_bound_fed_by_an_edge_is_not_judged_by_its_default(invokeai_run_graph: Run) -> None:
    """low above the default high would be refused, but high arrives by edge and is larger."""
    graph = {
        "nodes": {
            "h": {"id": "h", "type": "integer", "value": 3_000_000_010},
            "r": {"id": "r", "type": "rand_int", "low": 3_000_000_000, "seed": 1},
        },
        "edges": [edge("h", "value", "r", "high")],
    }
    result = invokeai_run_graph(graph)
    assert result.status == "completed", result.errors
    assert 3_000_000_000 <= result["r"].value < 3_000_000_010


def test_ranges(invokeai_run_graph: Run) -> None:
    assert one(invokeai_run_graph, "range", start=0, stop=10, step=3).collection == [0, 3, 6, 9]
    assert one(invokeai_run_graph, "range", start=5, stop=0, step=-2).collection == [5, 3, 1]
    assert one(invokeai_run_graph, "range", start=3, stop=3).collection == []
    assert one(invokeai_run_graph, "range_of_size", start=2, size=3, step=5).collection == [2, 7, 12]
    assert one(invokeai_run_graph, "range_of_size", start=2, size=0).collection == []


def test_a_zero_step_or_negative_size_is_refused_naming_the_field(invokeai_run_graph: Run, refused: Any) -> None:
    err = refused("range", step=0)
    assert err.node_id == "n" and err.field == "step" and "must not be zero" in str(err)
    assert refused("range_of_size", size=-1).field == "size"
    assert refused("random_range", size=-1).field == "size"
    # a zero step arriving through an edge is refused when the value crosses it, naming the field
    graph = {
        "nodes": {"z": {"id": "z", "type": "integer", "value": 0}, "r": {"id": "r", "type": "range"}},
        "edges": [edge("z", "value", "r", "step")],
    }
    result = invokeai_run_graph(graph)
    assert result.status == "failed"
    assert "step" in result.errors["r"].message and "must not be zero" in result.errors["r"].message


def test_a_pipeline_of_pack_nodes(invokeai_run_graph: Run) -> None:
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
