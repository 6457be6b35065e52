"""Our graphs and nodes give the same pixels as diffusers' own pipelines (at most 1/255 apart)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import granular_txt2img, pixels

SIZE = 128
STEPS = 4
SCHEDULERS = [
    "default",
    "ddim",
    "ddpm",
    "euler",
    "euler_a",
    "heun",
    "lms",
    "pndm",
    "dpmpp_2m",
    "dpmpp_2m_karras",
    "unipc",
]


def assert_same(a: Any, b: Any) -> None:
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 1, f"max difference {np.abs(a - b).max()}"
    assert b.std() > 1  # not a blank image on both sides


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_txt2img_graph_and_node_match_the_pipeline(
    scheduler: str, manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, model_folders: Any, reference: Any
) -> None:
    graph = granular_txt2img(
        "tiny-sd", prompt="a red fox", negative="blurry", seed=42, size=SIZE, steps=STEPS, scheduler=scheduler
    )
    graph["nodes"]["t"] = {
        "id": "t",
        "type": "txt2img",
        "model": "tiny-sd",
        "prompt": "a red fox",
        "negative_prompt": "blurry",
        "seed": 42,
        "width": SIZE,
        "height": SIZE,
        "steps": STEPS,
        "scheduler": scheduler,
    }
    run = invokeai_run_graph(graph)
    assert run.status == "completed", run.errors
    ref = reference(
        "StableDiffusionPipeline",
        model_folders["sd"],
        scheduler,
        prompt="a red fox",
        negative_prompt="blurry",
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        width=SIZE,
        height=SIZE,
        seed=42,
    )
    assert_same(pixels(invokeai_invoker, run["l"].image), ref)
    assert_same(pixels(invokeai_invoker, run["t"].image), ref)


def test_granular_graph_without_negative_prompt_matches(
    manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, model_folders: Any, reference: Any
) -> None:
    run = invokeai_run_graph(
        granular_txt2img(
            "tiny-sd", prompt="x", negative=None, seed=3, size=SIZE, steps=STEPS, scheduler="euler_a", cfg=5.0
        )
    )
    ref = reference(
        "StableDiffusionPipeline",
        model_folders["sd"],
        "euler_a",
        prompt="x",
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        width=SIZE,
        height=SIZE,
        seed=3,
    )
    assert_same(pixels(invokeai_invoker, run["l"].image), ref)


def test_sdxl_txt2img_node_and_graph_match_the_pipeline(
    manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, model_folders: Any, reference: Any
) -> None:
    graph = granular_txt2img(
        "tiny-sdxl", prompt="a castle", negative=None, seed=9, size=SIZE, steps=STEPS, scheduler="default", sdxl=True
    )
    graph["nodes"]["t"] = {
        "id": "t",
        "type": "txt2img",
        "model": "tiny-sdxl",
        "prompt": "a castle",
        "seed": 9,
        "width": SIZE,
        "height": SIZE,
        "steps": STEPS,
    }
    run = invokeai_run_graph(graph)
    assert run.status == "completed", run.errors
    ref = reference(
        "StableDiffusionXLPipeline",
        model_folders["sdxl"],
        prompt="a castle",
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        width=SIZE,
        height=SIZE,
        seed=9,
    )
    assert_same(pixels(invokeai_invoker, run["t"].image), ref)
    assert_same(pixels(invokeai_invoker, run["l"].image), ref)


def _source_images(invokeai_invoker: Any) -> tuple[Any, Any, Any, Any]:
    from PIL import Image, ImageDraw

    src = Image.linear_gradient("L").resize((SIZE, SIZE)).convert("RGB")
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).rectangle((32, 32, 95, 95), fill=255)
    images = invokeai_invoker.services.image_service
    return src, mask, images.create(src).field, images.create(mask).field


def test_img2img_node_matches_the_pipeline(
    manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, model_folders: Any, reference: Any
) -> None:
    src, _, src_field, _ = _source_images(invokeai_invoker)
    node = {
        "id": "i",
        "type": "img2img",
        "model": "tiny-sd",
        "image": src_field.model_dump(),
        "prompt": "oil painting",
        "strength": 0.6,
        "steps": 5,
        "seed": 5,
        "scheduler": "euler",
    }
    run = invokeai_run_graph({"nodes": {"i": node}, "edges": []})
    assert run.status == "completed", run.errors
    ref = reference(
        "StableDiffusionImg2ImgPipeline",
        model_folders["sd"],
        "euler",
        prompt="oil painting",
        image=src,
        strength=0.6,
        num_inference_steps=5,
        guidance_scale=7.5,
        seed=5,
    )
    assert_same(pixels(invokeai_invoker, run["i"].image), ref)


def test_inpaint_node_matches_the_pipeline(
    manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, model_folders: Any, reference: Any
) -> None:
    src, mask, src_field, mask_field = _source_images(invokeai_invoker)
    node = {
        "id": "i",
        "type": "inpaint",
        "model": "tiny-sd",
        "image": src_field.model_dump(),
        "mask": mask_field.model_dump(),
        "prompt": "a window",
        "strength": 0.9,
        "steps": 4,
        "seed": 11,
    }
    run = invokeai_run_graph({"nodes": {"i": node}, "edges": []})
    assert run.status == "completed", run.errors
    ref = reference(
        "StableDiffusionInpaintPipeline",
        model_folders["sd"],
        prompt="a window",
        image=src,
        mask_image=mask,
        strength=0.9,
        num_inference_steps=4,
        guidance_scale=7.5,
        width=SIZE,
        height=SIZE,
        seed=11,
    )
    assert_same(pixels(invokeai_invoker, run["i"].image), ref)
