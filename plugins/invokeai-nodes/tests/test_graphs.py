"""Whole graphs of pack nodes, run through the Invoker: iteration over images, and which images end
up intermediate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image


def edge(source: str, source_field: str, destination: str, destination_field: str) -> dict[str, Any]:
    return {
        "source": {"node_id": source, "field": source_field},
        "destination": {"node_id": destination, "field": destination_field},
    }


def test_range_iterate_blank_blur_collect_makes_images_of_growing_width(
    invokeai_run_graph: Callable[..., Any], invokeai_invoker: Any
) -> None:
    """range 0..4 -> iterate -> width = 64 + item * 16 (mul, add) -> blank_image -> img_blur -> collect."""
    graph = {
        "nodes": {
            "range": {"id": "range", "type": "range", "start": 0, "stop": 4, "step": 1},
            "each": {"id": "each", "type": "iterate"},
            "times16": {"id": "times16", "type": "mul", "b": 16},
            "plus64": {"id": "plus64", "type": "add", "b": 64},
            "blank": {"id": "blank", "type": "blank_image", "height": 32, "mode": "RGB", "color": "#ffffff"},
            "blur": {"id": "blur", "type": "img_blur", "radius": 3, "blur_type": "gaussian"},
            "gather": {"id": "gather", "type": "collect"},
        },
        "edges": [
            edge("range", "collection", "each", "collection"),
            edge("each", "item", "times16", "a"),
            edge("times16", "value", "plus64", "a"),
            edge("plus64", "value", "blank", "width"),
            edge("blank", "image", "blur", "image"),
            edge("blur", "image", "gather", "item"),
        ],
    }
    result = invokeai_run_graph(graph)
    assert result.status == "completed", result.errors
    assert [o.value for o in result["plus64"]] == [64, 80, 96, 112]
    assert [o.width for o in result["blur"]] == [64, 80, 96, 112]
    images = invokeai_invoker.services.image_service
    collected = result["gather"].collection
    assert len(collected) == 4 and len({f.image_name for f in collected}) == 4
    for field, width in zip(collected, [64, 80, 96, 112], strict=True):
        pil = images.get_pil(field.image_name)
        assert pil.size == (width, 32) and pil.mode == "RGB"
        assert pil.getpixel((width // 2, 16)) == (255, 255, 255)  # blurring white keeps the middle white
        assert images.get_record(field.image_name).is_intermediate is True
    # every image the graph made (4 blank + 4 blurred) is intermediate: nothing went through save_image
    assert images.list(is_intermediate=True, limit=100).total == 8
    assert images.list(is_intermediate=False, limit=100).total == 0


def test_a_zero_width_arriving_by_edge_is_refused_naming_the_field(invokeai_run_graph: Callable[..., Any]) -> None:
    graph = {
        "nodes": {
            "w": {"id": "w", "type": "integer", "value": 0},
            "blank": {"id": "blank", "type": "blank_image"},
        },
        "edges": [edge("w", "value", "blank", "width")],
    }
    result = invokeai_run_graph(graph)
    assert result.status == "failed"
    message = result.errors["blank"].message
    assert "width" in message and "greater than or equal to 1" in message


def test_prompts_and_images_in_one_graph(
    invokeai_run_graph: Callable[..., Any], invokeai_invoker: Any, put_image: Callable[[Image.Image], Any]
) -> None:
    """A dynamic prompt fans out; each prompt is cleaned up by string nodes; an uploaded image is
    cropped, inverted and saved as the one final output."""
    upload = put_image(Image.new("RGB", (10, 10), (0, 0, 0)))
    graph = {
        "nodes": {
            "prompts": {
                "id": "prompts",
                "type": "dynamic_prompt",
                "prompt": "a {red|blue}  cat",
                "combinatorial": True,
                "max_prompts": 5,
            },
            "each": {"id": "each", "type": "iterate"},
            "tidy": {
                "id": "tidy",
                "type": "string_replace",
                "search_string": r"\s+",
                "replace_string": " ",
                "use_regex": True,
            },
            "gather": {"id": "gather", "type": "collect"},
            "joined": {"id": "joined", "type": "string_join", "separator": " / "},
            "img": {"id": "img", "type": "image", "image": upload},
            "crop": {"id": "crop", "type": "img_crop", "x": 2, "y": 2, "width": 4, "height": 3},
            "neg": {"id": "neg", "type": "img_invert"},
            "save": {"id": "save", "type": "save_image"},
        },
        "edges": [
            edge("prompts", "collection", "each", "collection"),
            edge("each", "item", "tidy", "string"),
            edge("tidy", "value", "gather", "item"),
            edge("gather", "collection", "joined", "strings"),
            edge("img", "image", "crop", "image"),
            edge("crop", "image", "neg", "image"),
            edge("neg", "image", "save", "image"),
        ],
    }
    result = invokeai_run_graph(graph)
    assert result.status == "completed", result.errors
    assert result["joined"].value == "a red cat / a blue cat"
    saved = result["save"]
    assert (saved.width, saved.height) == (4, 3)
    images = invokeai_invoker.services.image_service
    assert images.get_pil(saved.image.image_name).getpixel((0, 0)) == (255, 255, 255)
    finals = images.list(is_intermediate=False, limit=100).items
    assert [r.image_name for r in finals] == [saved.image.image_name]
