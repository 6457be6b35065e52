"""`[limits]`: every node whose output size its inputs choose checks them before the work.

Values typed into the graph are refused when it is built (naming node and field); values that arrive
through an edge fail the node when it runs, with the same message, before any work is done. The
limits here are small ones written to the test root's invokeai.toml, read the way a user's file is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from invokeai_core.testing import GraphRun

LIMITS = {"collection_items": 1000, "string_length": 5000, "integer_bits": 256, "image_pixels": 100_000}


@pytest.fixture
def invokeai_config(invokeai_root: Path) -> Any:
    from invokeai_core import load_config

    lines = ["[limits]", *(f"{k} = {json.dumps(v)}" for k, v in LIMITS.items()), "regex_seconds = 0.5", "output_mb = 1"]
    (invokeai_root / "invokeai.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(root=invokeai_root, environ={})


def edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


REFUSED = [
    ("range", {"start": 0, "stop": 1001}, "stop", "1001 items, more than limits.collection_items (1000)"),
    ("range", {"start": 0, "stop": 10**12, "step": 10**6}, "stop", "1000000 items"),
    ("range_of_size", {"size": 363890635}, "size", "363890635 items"),
    ("random_range", {"size": 1001}, "size", "limits.collection_items"),
    ("string_split", {"string": "," * 1000}, "string", "1001 items"),
    ("string_split", {"string": "x" * 5001}, "string", "5001 characters, more than limits.string_length (5000)"),
    ("string_join", {"strings": ["x" * 3000, "y" * 3000]}, "strings", "6000 characters"),
    ("string_replace", {"string": "x" * 5001}, "string", "limits.string_length"),
    ("dynamic_prompt", {"prompt": "{a|b}" * 2000}, "prompt", "limits.string_length"),
    ("dynamic_prompt", {"prompt": "{a|b}", "max_prompts": 1001}, "max_prompts", "1001 items"),
    # a variable used many times repeats its value; defined from another one it could double per level
    ("dynamic_prompt", {"prompt": "${x=" + "a" * 1000 + "}" + "${x}" * 10}, "prompt", "limits.string_length (5000)"),
    ("dynamic_prompt", {"prompt": "${a=aaaa}${b=${a}${a}}${b}"}, "prompt", "defined from another variable"),
    ("dynamic_prompt", {"prompt": "{a|b} " + "x" * 4000, "max_prompts": 1000}, "max_prompts", "limits.output_mb"),
    ("integer_math", {"operation": "exp", "a": 2, "b": 4_000_000}, "b", "about 4000001 bits"),
    ("integer_math", {"operation": "mul", "a": 2**200, "b": 2**100}, "a", "limits.integer_bits (256)"),
    ("mul", {"a": 2**200, "b": 2**100}, "a", "limits.integer_bits"),
    ("add", {"a": 2**256, "b": 1}, "a", "limits.integer_bits"),
    ("sub", {"a": 1, "b": -(2**256)}, "b", "limits.integer_bits"),
    ("blank_image", {"width": 16384, "height": 16384}, "height", "more than limits.image_pixels (100000)"),
]


@pytest.mark.parametrize(("type_id", "fields", "field", "message"), REFUSED)
def test_typed_values_past_a_limit_are_refused_before_anything_runs(
    refused: Callable[..., Any], type_id: str, fields: dict[str, Any], field: str, message: str
) -> None:
    err = refused(type_id, **fields)
    assert (err.node_id, err.field) == ("n", field)
    assert message in str(err)


@pytest.mark.parametrize(
    ("type_id", "fields"),
    [
        ("range", {"start": 0, "stop": 1000}),
        ("range_of_size", {"size": 1000}),
        ("string_split", {"string": "," * 999}),
        ("integer_math", {"operation": "exp", "a": 2, "b": 255}),
        ("integer_math", {"operation": "exp", "a": 1, "b": 10**100}),  # 1 ** anything is small
        ("blank_image", {"width": 400, "height": 250, "mode": "L"}),
        ("dynamic_prompt", {"prompt": "${c={red|blue}} a ${c} cat on a ${c} mat", "max_prompts": 2}),
    ],
)
def test_values_at_a_limit_run(run_node: Callable[..., Any], type_id: str, fields: dict[str, Any]) -> None:
    run_node(type_id, **fields)


def test_values_arriving_through_edges_fail_the_node_before_the_work(
    invokeai_run_graph: Callable[..., GraphRun],
) -> None:
    cases = [
        ("range_of_size", "size", "size", "limits.collection_items (1000)"),
        ("range", "stop", "stop", "limits.collection_items (1000)"),
        ("blank_image", "height", "height", "limits.image_pixels (100000)"),
        ("integer_math", "b", "b", "limits.integer_bits (256)"),
    ]
    for type_id, target, field, message in cases:
        extra = {"operation": "exp", "a": 3} if type_id == "integer_math" else {}
        extra.update({"width": 1000} if type_id == "blank_image" else {})
        graph = {
            "nodes": {"v": {"id": "v", "type": "integer", "value": 5000}, "n": {"id": "n", "type": type_id, **extra}},
            "edges": [edge("v", "value", "n", target)],
        }
        run = invokeai_run_graph(graph)
        assert run.status == "failed", (type_id, run.results)
        error = run.errors["n"]
        assert error.type == "InvalidInputError" and f"input '{field}'" in error.message and message in error.message


def test_string_replace_may_not_grow_a_string_past_the_limit(run_node: Callable[..., Any], node_error: Any) -> None:
    error = node_error("string_replace", string="ab" * 100, search_string="a", replace_string="x" * 100)
    assert "input 'replace_string'" in error.message and "limits.string_length (5000)" in error.message
    error = node_error(
        "string_replace", string="ab" * 100, search_string="(a)", replace_string=r"\1" * 60, use_regex=True
    )
    assert "limits.string_length" in error.message
    assert (
        run_node("string_replace", string="ab" * 100, search_string="a", replace_string="x" * 20).value.count("x")
        == 2000
    )


def test_a_catastrophic_regex_stops_at_regex_seconds_and_leaves_other_threads_running(node_error: Any) -> None:
    """`(a|aa)+$` on 40 characters backtracks for hours; the regex module stops it after
    regex_seconds (0.5 s here) and releases the GIL meanwhile: a thread counting beside it keeps counting."""
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.01)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        error = node_error("string_replace", string="a" * 40 + "!", search_string="(a|aa)+$", use_regex=True)
    finally:
        stop.set()
        counter.join()
    assert "limits.regex_seconds (0.5 s)" in error.message and "input 'search_string'" in error.message
    assert ticks >= 20  # about 50 in the half second the regex ran; a held GIL would give about 1


def test_the_regex_engine_has_no_exponential_backtracking_on_nested_plus(run_node: Callable[..., Any]) -> None:
    # the issue's `(a+)+$` froze the server 17.8 s on 28 characters with `re`, doubling per character
    assert run_node("string_replace", string="a" * 200 + "!", search_string="(a+)+$", use_regex=True).value


def test_the_cli_refuses_a_graph_past_a_limit_with_exit_status_2(invokeai_root: Path, invokeai_config: Any) -> None:
    exe = Path(sys.executable).with_name("invokeai")
    env = {"INVOKEAI_ROOT": str(invokeai_root), "INVOKEAI_LOAD_PLUGINS": "nodes", "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [str(exe), "run", "range_of_size --size 363890635"], capture_output=True, text=True, env=env, timeout=60
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "size" in res.stderr and "limits.collection_items (1000)" in res.stderr
    env["INVOKEAI_LIMITS__COLLECTION_ITEMS"] = "2000"  # the environment overrides the file
    res = subprocess.run([str(exe), "run", "range_of_size --size 1500"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
