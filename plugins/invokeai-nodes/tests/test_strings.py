"""String nodes: join, split, replace (plain and regex) and dynamic prompts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from invokeai_core.testing import GraphRun


def test_string_join(run_node: Callable[..., Any]) -> None:
    assert run_node("string_join", strings=["a", "photo", "of"], separator=" ").value == "a photo of"
    assert run_node("string_join", strings=["x", "y"]).value == "xy"
    assert run_node("string_join").value == ""


def test_string_join_gathers_the_outputs_of_several_nodes(invokeai_run_graph: Callable[..., GraphRun]) -> None:
    def edge(s: str, d: str, f: str) -> dict[str, Any]:
        return {"source": {"node_id": s, "field": f}, "destination": {"node_id": d, "field": "item"}}

    graph = {
        "nodes": {
            "a": {"id": "a", "type": "string", "value": "a cat"},
            "b": {"id": "b", "type": "string", "value": "in the rain"},
            "c": {"id": "c", "type": "collect"},
            "j": {"id": "j", "type": "string_join", "separator": ", "},
        },
        "edges": [
            edge("a", "c", "value"),
            edge("b", "c", "value"),
            {"source": {"node_id": "c", "field": "collection"}, "destination": {"node_id": "j", "field": "strings"}},
        ],
    }
    assert invokeai_run_graph(graph)["j"].value == "a cat, in the rain"


def test_string_split(run_node: Callable[..., Any]) -> None:
    assert run_node("string_split", string="cat, dog ,bird").collection == ["cat", "dog", "bird"]
    assert run_node("string_split", string="a b", strip=False, delimiter=" ").collection == ["a", "b"]
    assert run_node("string_split", string=" a,b ", strip=False).collection == [" a", "b "]
    assert run_node("string_split", string="one  two\tthree", delimiter="").collection == ["one", "two", "three"]
    assert run_node("string_split", string="k=v=w", delimiter="=", max_splits=1).collection == ["k", "v=w"]


def test_string_replace_plain_text(run_node: Callable[..., Any]) -> None:
    out = run_node("string_replace", string="a cat and a Cat", search_string="cat", replace_string="dog")
    assert out.value == "a dog and a Cat"
    out = run_node(
        "string_replace", string="a cat and a Cat", search_string="cat", replace_string="dog", case_sensitive=False
    )
    assert out.value == "a dog and a dog"
    # plain mode is literal on both sides: "." is a dot, "\\1" is a backslash and a one
    out = run_node("string_replace", string="a.b.c", search_string=".", replace_string="\\1")
    assert out.value == "a\\1b\\1c"


def test_string_replace_regex(run_node: Callable[..., Any]) -> None:
    out = run_node(
        "string_replace", string="width 512, height 768", search_string=r"(\d+)", replace_string=r"<\1>", use_regex=True
    )
    assert out.value == "width <512>, height <768>"
    out = run_node(
        "string_replace", string="Foo foo", search_string="^f", replace_string="b", use_regex=True, case_sensitive=False
    )
    assert out.value == "boo foo"


def test_a_bad_regex_is_refused_before_running_naming_the_field(refused: Callable[..., Any]) -> None:
    err = refused("string_replace", string="x", search_string="(unclosed", use_regex=True)
    assert err.node_id == "n" and err.field == "search_string" and "not a valid regular expression" in str(err)
    err = refused("string_replace", string="x", search_string="(a)", replace_string=r"\2", use_regex=True)
    assert err.field == "replace_string" and "invalid group reference" in str(err)
    assert refused("string_replace", string="x", search_string="").field == "search_string"


def test_regex_syntax_is_plain_text_without_use_regex(run_node: Callable[..., Any]) -> None:
    assert run_node("string_replace", string="f(unclosed", search_string="(unclosed", replace_string="!").value == "f!"


def test_a_bad_regex_arriving_by_edge_is_a_clear_node_error(invokeai_run_graph: Callable[..., GraphRun]) -> None:
    graph = {
        "nodes": {
            "p": {"id": "p", "type": "string", "value": "[a-"},
            "r": {"id": "r", "type": "string_replace", "string": "abc", "use_regex": True},
        },
        "edges": [
            {"source": {"node_id": "p", "field": "value"}, "destination": {"node_id": "r", "field": "search_string"}}
        ],
    }
    result = invokeai_run_graph(graph)
    assert result.status == "failed"
    assert result.errors["r"].message.startswith(
        "string_replace: input 'search_string': not a valid regular expression"
    )


def test_dynamic_prompt_combinatorial_lists_every_combination(run_node: Callable[..., Any]) -> None:
    out = run_node("dynamic_prompt", prompt="a {red|blue} {cat|dog}", combinatorial=True, max_prompts=10)
    assert out.collection == ["a red cat", "a red dog", "a blue cat", "a blue dog"]
    out = run_node("dynamic_prompt", prompt="a {red|blue} {cat|dog}", combinatorial=True, max_prompts=3)
    assert out.collection == ["a red cat", "a red dog", "a blue cat"]
    out = run_node("dynamic_prompt", prompt="{2$$x|y|z}", combinatorial=True, max_prompts=100)
    assert sorted(out.collection) == ["x,y", "x,z", "y,x", "y,z", "z,x", "z,y"]


def test_dynamic_prompt_random_is_reproducible_with_a_seed(run_node: Callable[..., Any]) -> None:
    template = "a {red|green|blue|white|black} {cat|dog|fox|owl}"
    first = run_node("dynamic_prompt", prompt=template, max_prompts=8, seed=42).collection
    assert len(first) == 8
    colors, animals = {"red", "green", "blue", "white", "black"}, {"cat", "dog", "fox", "owl"}
    for prompt in first:
        a, color, animal = prompt.split(" ")
        assert a == "a" and color in colors and animal in animals
    assert run_node("dynamic_prompt", prompt=template, max_prompts=8, seed=42).collection == first
    assert run_node("dynamic_prompt", prompt=template, max_prompts=8, seed=43).collection != first


def test_dynamic_prompt_keeps_plain_text_and_wildcards(run_node: Callable[..., Any]) -> None:
    assert run_node("dynamic_prompt", prompt="no variants here", max_prompts=5, combinatorial=True).collection == [
        "no variants here"
    ]
    # wildcard files are not supported: the text stays, and combinations are not repeated
    out = run_node("dynamic_prompt", prompt="__animal__ {a|b}", combinatorial=True, max_prompts=10)
    assert out.collection == ["__animal__ a", "__animal__ b"]


def test_dynamic_prompt_bad_template_is_a_clear_node_error(node_error: Callable[..., Any]) -> None:
    err = node_error("dynamic_prompt", prompt="a {red|blue", combinatorial=True, max_prompts=2)
    assert err.message.startswith("dynamic_prompt: input 'prompt': cannot be parsed")


@pytest.mark.parametrize("max_prompts", [0, -1])
def test_dynamic_prompt_needs_at_least_one_prompt(refused: Callable[..., Any], max_prompts: int) -> None:
    assert refused("dynamic_prompt", prompt="x", max_prompts=max_prompts).field == "max_prompts"
