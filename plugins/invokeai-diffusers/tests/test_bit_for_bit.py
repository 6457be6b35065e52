"""Our graphs and nodes equal diffusers' own pipelines exactly, at every stage, for every scheduler.

References are built independently here (`from_pretrained` on the model folder, the scheduler
chosen by the diffusers class names in `stages.SCHEDULER_CLASSES`). Compared with `torch.equal`
(see `stages.py`): the scheduler's class and full config, prompt embeddings (negative, pooled),
initial latents, the latents after every scheduler step, the final latents (granular), the VAE
decoder's input and output, and the 8-bit pixels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import granular_txt2img
from stages import (
    ALL_SCHEDULERS,
    MODEL_DEFAULT,
    SCHEDULER_CLASSES,
    assert_equal_stages,
    our_stages,
    reference_pipeline,
    reference_stages,
)

SIZE = 64
STEPS = 4
PROMPT, NEGATIVE = "a red fox", "blurry"


@pytest.fixture(scope="session")
def old_config_folder(model_folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SD model with an old-style scheduler config (DDIM, `steps_offset` 0, `clip_sample`
    on), which diffusers' pipelines fix up when they are built (steps_offset 1, clip_sample off)."""
    folder = tmp_path_factory.mktemp("old-config") / "tiny-sd-old"
    shutil.copytree(model_folders["sd"], folder)
    config = {
        "_class_name": "DDIMScheduler",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": True,
        "set_alpha_to_one": False,
        "steps_offset": 0,
        "num_train_timesteps": 1000,
    }
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "DDIMScheduler"]  # what from_pretrained builds
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def test_scheduler_names_map_to_the_classes_and_configs_diffusers_uses(
    manager: Any, model_folders: Any, old_config_folder: Path
) -> None:
    """Per name, the scheduler our denoiser's pipeline runs has the type and the full config of
    `getattr(diffusers, ClassName).from_config(pipe.scheduler.config, **kwargs)` (the model's own,
    `pipe.scheduler`, for default), on a diffusers pipeline built with `from_pretrained`."""
    import diffusers
    from invokeai_diffusers.nodes.denoise import _pipeline
    from invokeai_diffusers.schedulers import SCHEDULERS, make_scheduler

    assert sorted(SCHEDULERS) == sorted(n for n in SCHEDULER_CLASSES if n != "default")
    manager.add(old_config_folder, name="tiny-sd-old")
    for model, base, cls_name in (
        ("tiny-sd", "sd", "StableDiffusionPipeline"),
        ("tiny-sdxl", "sdxl", "StableDiffusionXLPipeline"),
        ("tiny-sd-old", "sd", "StableDiffusionPipeline"),
    ):
        folder = Path(manager.get(model).path)
        pipe = reference_pipeline(cls_name, folder, "default")
        unet = manager.load(model, "unet")
        for name, spec in SCHEDULER_CLASSES.items():
            if spec is None:
                expected = pipe.scheduler
            else:
                class_name, kwargs = spec
                expected = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **kwargs)
            ours = _pipeline(base, "txt2img", unet, make_scheduler("default", manager.load(model, "scheduler")), name)
            assert type(ours.scheduler) is type(expected), (model, name)
            assert dict(ours.scheduler.config) == dict(expected.config), (model, name)
        if model == "tiny-sd-old":  # the fix-ups carried over
            assert (pipe.scheduler.config.steps_offset, pipe.scheduler.config.clip_sample) == (1, False)
            assert type(pipe.scheduler).__name__ == "DDIMScheduler"


def _txt2img_node(model: str, scheduler: str, seed: int) -> dict[str, Any]:
    node = {
        "id": "t",
        "type": "txt2img",
        "model": model,
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "seed": seed,
        "width": SIZE,
        "height": SIZE,
        "steps": STEPS,
        "scheduler": scheduler,
    }
    return {"nodes": {"t": node}, "edges": []}


def _compare_txt2img(
    invoker: Any,
    run_graph: Any,
    model: str,
    folder: Path,
    scheduler: str,
    *,
    sdxl: bool,
    seed: int,
    model_default: str = MODEL_DEFAULT,
) -> None:
    pipeline = "StableDiffusionXLPipeline" if sdxl else "StableDiffusionPipeline"
    graph = granular_txt2img(
        model, prompt=PROMPT, negative=NEGATIVE, seed=seed, size=SIZE, steps=STEPS, scheduler=scheduler, sdxl=sdxl
    )
    granular = our_stages(invoker, run_graph, graph, pipeline, scheduler, model_default=model_default)
    node = our_stages(
        invoker,
        run_graph,
        _txt2img_node(model, scheduler, seed),
        pipeline,
        scheduler,
        image_node="t",
        model_default=model_default,
    )
    pipe = reference_pipeline(pipeline, folder, scheduler)
    call = {
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "num_inference_steps": STEPS,
        "guidance_scale": 7.5,  # the nodes' cfg_scale (the SDXL pipeline defaults to 5)
        "width": SIZE,
        "height": SIZE,
    }
    ref = reference_stages(pipe, seed, **call)
    assert_equal_stages(granular, ref)
    assert_equal_stages(node, ref)


@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_sd_txt2img_graph_and_node_equal_the_pipeline_at_every_stage(
    scheduler: str, manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, model_folders: Any
) -> None:
    _compare_txt2img(
        invokeai_invoker, invokeai_run_graph, "tiny-sd", model_folders["sd"], scheduler, sdxl=False, seed=42
    )


@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_sdxl_txt2img_graph_and_node_equal_the_pipeline_at_every_stage(
    scheduler: str, manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, model_folders: Any
) -> None:
    _compare_txt2img(
        invokeai_invoker, invokeai_run_graph, "tiny-sdxl", model_folders["sdxl"], scheduler, sdxl=True, seed=9
    )


@pytest.mark.parametrize("scheduler", ["default", "ddim", "euler"])
def test_an_old_scheduler_config_is_fixed_up_as_the_pipeline_does(
    scheduler: str,
    manager: Any,
    invokeai_run_graph: Any,
    invokeai_invoker: Any,
    old_config_folder: Path,
) -> None:
    """steps_offset 0 / clip_sample on in the model's config: the pipeline's constructor fixes them,
    and our schedulers (default and swapped) carry the fixed config, as a diffusers user's do."""
    manager.add(old_config_folder, name="tiny-sd-old")
    _compare_txt2img(
        invokeai_invoker,
        invokeai_run_graph,
        "tiny-sd-old",
        old_config_folder,
        scheduler,
        sdxl=False,
        seed=4,
        model_default="DDIMScheduler",
    )


@pytest.mark.parametrize("sdxl", [False, True], ids=["sd", "sdxl"])
def test_granular_graph_without_negative_prompt_equals_the_pipeline(
    sdxl: bool, manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, model_folders: Any
) -> None:
    """No negative conditioning: SD encodes the empty prompt, SDXL uses zeros
    (force_zeros_for_empty_prompt), as the pipelines do without a negative prompt."""
    model, pipeline = ("tiny-sdxl", "StableDiffusionXLPipeline") if sdxl else ("tiny-sd", "StableDiffusionPipeline")
    graph = granular_txt2img(
        model, prompt="x", negative=None, seed=3, size=SIZE, steps=STEPS, scheduler="euler_a", cfg=5.0, sdxl=sdxl
    )
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, pipeline, "euler_a")
    pipe = reference_pipeline(pipeline, model_folders["sdxl" if sdxl else "sd"], "euler_a")
    call = {"prompt": "x", "num_inference_steps": STEPS, "guidance_scale": 5.0, "width": SIZE, "height": SIZE}
    assert_equal_stages(ours, reference_stages(pipe, 3, **call))


def _source_images(invokeai_invoker: Any) -> tuple[Any, Any, Any, Any]:
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
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    images = invokeai_invoker.services.image_service
    return src, mask, images.create(src).field, images.create(mask).field


@pytest.mark.parametrize("sdxl", [False, True], ids=["sd", "sdxl"])
@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_img2img_node_equals_the_pipeline_at_every_stage(
    scheduler: str,
    sdxl: bool,
    manager: Any,
    invokeai_run_graph: Any,
    invokeai_invoker: Any,
    model_folders: Any,
) -> None:
    src, _, src_field, _ = _source_images(invokeai_invoker)
    model = "tiny-sdxl" if sdxl else "tiny-sd"
    pipeline = "StableDiffusionXLImg2ImgPipeline" if sdxl else "StableDiffusionImg2ImgPipeline"
    node = {
        "id": "i",
        "type": "img2img",
        "model": model,
        "image": src_field.model_dump(),
        "prompt": "oil painting",
        "negative_prompt": NEGATIVE,
        "strength": 0.6,
        "steps": 5,
        "seed": 5,
        "scheduler": scheduler,
    }
    graph = {"nodes": {"i": node}, "edges": []}
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, pipeline, scheduler, image_node="i")
    extra = {"requires_aesthetics_score": False} if sdxl else {}
    pipe = reference_pipeline(pipeline, model_folders["sdxl" if sdxl else "sd"], scheduler, **extra)
    call = {
        "prompt": "oil painting",
        "negative_prompt": NEGATIVE,
        "image": src,
        "strength": 0.6,
        "num_inference_steps": 5,
        "guidance_scale": 7.5,
    }
    assert_equal_stages(ours, reference_stages(pipe, 5, **call))


@pytest.mark.parametrize("sdxl", [False, True], ids=["sd", "sdxl"])
@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_inpaint_node_equals_the_pipeline_at_every_stage(
    scheduler: str,
    sdxl: bool,
    manager: Any,
    invokeai_run_graph: Any,
    invokeai_invoker: Any,
    model_folders: Any,
) -> None:
    src, mask, src_field, mask_field = _source_images(invokeai_invoker)
    model = "tiny-sdxl" if sdxl else "tiny-sd"
    pipeline = "StableDiffusionXLInpaintPipeline" if sdxl else "StableDiffusionInpaintPipeline"
    node = {
        "id": "i",
        "type": "inpaint",
        "model": model,
        "image": src_field.model_dump(),
        "mask": mask_field.model_dump(),
        "prompt": "a window",
        "negative_prompt": NEGATIVE,
        "strength": 0.9,
        "steps": 4,
        "seed": 11,
        "scheduler": scheduler,
    }
    graph = {"nodes": {"i": node}, "edges": []}
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, pipeline, scheduler, image_node="i")
    extra = {"requires_aesthetics_score": False} if sdxl else {}
    pipe = reference_pipeline(pipeline, model_folders["sdxl" if sdxl else "sd"], scheduler, **extra)
    call = {
        "prompt": "a window",
        "negative_prompt": NEGATIVE,
        "image": src,
        "mask_image": mask,
        "strength": 0.9,
        "num_inference_steps": 4,
        "guidance_scale": 7.5,
        "width": SIZE,
        "height": SIZE,
    }
    assert_equal_stages(ours, reference_stages(pipe, 11, **call))
