"""SDXL image to image and inpainting in the granular graph, exactly equal to diffusers' pipelines.

The reference pipelines are built here, independently, with `from_pretrained` on the model folder.
Granular image to image starts from latents (image_to_latents encodes with the distribution's mode),
so the reference is given the same latents as `image` (the pipelines accept a 4-channel latents
tensor there) and the test encodes them itself with the reference pipeline's VAE (contiguous, as
image_to_latents stores them: the UNet's rounding depends on the memory layout). Final latents are
compared at every stage with `torch.equal` (stages.py), for every scheduler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import edge
from stages import ALL_SCHEDULERS, assert_equal_stages, our_stages, reference_pipeline, reference_stages

SIZE = 64
STEPS = 4
STRENGTH = 0.75


def _graph(src: Any, mask: Any | None, *, seed: int, scheduler: str) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "m": {"id": "m", "type": "sdxl_model_loader", "model": "tiny-sdxl"},
        "p": {"id": "p", "type": "prompt", "prompt": "a stone bridge"},
        "n": {"id": "n", "type": "prompt", "prompt": "fog"},
        "i": {"id": "i", "type": "image_to_latents", "image": src.model_dump()},
        "z": {"id": "z", "type": "noise", "seed": seed, "width": SIZE, "height": SIZE},
        "d": {
            "id": "d",
            "type": "denoise_latents",
            "steps": STEPS,
            "strength": STRENGTH,
            "cfg_scale": 6.0,
            "scheduler": scheduler,
        },
        "l": {"id": "l", "type": "latents_to_image"},
    }
    edges = [
        edge("m", "clip", "p", "clip"),
        edge("m", "clip2", "p", "clip2"),
        edge("m", "clip", "n", "clip"),
        edge("m", "clip2", "n", "clip2"),
        edge("m", "unet", "d", "unet"),
        edge("m", "vae", "i", "vae"),
        edge("m", "vae", "l", "vae"),
        edge("p", "conditioning", "d", "positive_conditioning"),
        edge("n", "conditioning", "d", "negative_conditioning"),
        edge("z", "latents", "d", "noise"),
        edge("i", "latents", "d", "latents"),
        edge("d", "latents", "l", "latents"),
    ]
    if mask is not None:
        nodes["k"] = {
            "id": "k",
            "type": "create_denoise_mask",
            "mask": mask.model_dump(),
            "width": SIZE,
            "height": SIZE,
        }
        edges.append(edge("k", "denoise_mask", "d", "denoise_mask"))
    return {"nodes": nodes, "edges": edges}


def _images() -> tuple[Any, Any]:
    from PIL import Image, ImageDraw

    src = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize((SIZE, SIZE)),
            Image.radial_gradient("L").resize((SIZE, SIZE)),
            Image.linear_gradient("L").rotate(90).resize((SIZE, SIZE)),
        ),
    )
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).rectangle((16, 8, 47, 39), fill=255)
    return src, mask


def _reference(folder: Path, src: Any, mask: Any | None, *, seed: int, scheduler: str) -> dict[str, Any]:
    """Every stage (stages.py) of the diffusers SDXL img2img / inpaint pipeline given the latents."""
    import torch
    from diffusers.image_processor import VaeImageProcessor

    cls = "StableDiffusionXLImg2ImgPipeline" if mask is None else "StableDiffusionXLInpaintPipeline"
    pipe = reference_pipeline(cls, folder, scheduler)
    with torch.no_grad():
        processor = VaeImageProcessor(vae_scale_factor=pipe.vae_scale_factor)
        encoded = pipe.vae.encode(processor.preprocess(src)).latent_dist.mode() * pipe.vae.config.scaling_factor
        encoded = encoded.contiguous()  # the values image_to_latents stores, in the layout it stores them
    call: dict[str, Any] = {
        "prompt": "a stone bridge",
        "negative_prompt": "fog",
        "image": encoded,
        "strength": STRENGTH,
        "num_inference_steps": STEPS,
        "guidance_scale": 6.0,
    }
    if mask is not None:
        call.update(mask_image=mask, height=SIZE, width=SIZE)
    return reference_stages(pipe, seed, **call)


@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
@pytest.mark.parametrize("masked", [False, True], ids=["img2img", "inpaint"])
def test_sdxl_granular_img2img_and_inpaint_equal_the_pipelines(
    masked: bool, scheduler: str, manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any
) -> None:
    """Every stage, exactly: the denoiser runs StableDiffusionXLImg2ImgPipeline (the mask blended
    after each step by our callback), the reference the img2img or the inpaint pipeline."""
    import torch

    src, mask = _images()
    images = invokeai_invoker.services.image_service
    src_field = images.create(src).field
    mask_field = images.create(mask).field if masked else None
    graph = _graph(src_field, mask_field, seed=21, scheduler=scheduler)
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionXLImg2ImgPipeline", scheduler)
    ref = _reference(model_folders["sdxl"], src, mask if masked else None, seed=21, scheduler=scheduler)
    assert ours["final"].shape == (1, 4, SIZE // 8, SIZE // 8)
    assert_equal_stages(ours, ref)
    start = invokeai_invoker.services.objects.load(ours["run"]["i"].latents.latents_name)
    assert not torch.equal(ours["final"], start)  # it did denoise


def test_sdxl_granular_inpaint_keeps_the_unmasked_area(
    manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any
) -> None:
    """The mask is honoured: outside it, the final latents are the (un-noised) source latents."""
    import torch

    src, mask = _images()
    images = invokeai_invoker.services.image_service
    run = invokeai_run_graph(_graph(images.create(src).field, images.create(mask).field, seed=3, scheduler="default"))
    assert run.status == "completed", run.errors
    objects = invokeai_invoker.services.objects
    ours, start = objects.load(run["d"].latents.latents_name), objects.load(run["i"].latents.latents_name)
    keep = objects.load(run["k"].denoise_mask.mask_name) < 0.5
    keep = keep.expand_as(ours)
    assert torch.equal(ours[keep], start[keep])
    assert not torch.equal(ours[~keep], start[~keep])
