"""ControlNets and IP-Adapters on the one-node forms (txt2img, img2img, inpaint) and an IP-Adapter
beside a ControlNet in denoise_latents, each against the diffusers pipeline a user would call,
built independently (`from_pretrained`, `ControlNetModel.from_pretrained`, `load_ip_adapter`).

Compared exactly at every stage by `stages.py` (a one-node form keeps no latents, so the decoder's
input stands for the final latents); the one-node ControlNet for all 11 schedulers.
"""

# ruff: noqa: F811 (the fixtures imported from test_controlnet / test_ip_adapter are parameters here)
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import edge
from stages import ALL_SCHEDULERS, assert_equal_stages, reference_pipeline, reference_stages, steps_for
from stages import our_stages as stages_of
from test_controlnet import control_folders, control_image, controls, guided_graph  # noqa: F401 (fixtures)
from test_ip_adapter import images, ip_files, with_ip  # noqa: F401 (fixtures)

SIZE = 64
STEPS = 3
PROMPT, NEGATIVE = "a lighthouse", "rain"


def reference(
    cls_name: str, folder: Path, scheduler: str, *, controlnet: Path | None = None, ip: tuple[Path, str] | None = None
) -> Any:
    import diffusers

    extra: dict[str, Any] = {}
    if controlnet is not None:
        extra["controlnet"] = diffusers.ControlNetModel.from_pretrained(str(controlnet), local_files_only=True)
    pipe = reference_pipeline(cls_name, folder, scheduler, **extra)
    if ip is not None:
        pipe.load_ip_adapter(str(ip[0]), subfolder="models", weight_name=[ip[1]], local_files_only=True)
    return pipe


def our_stages(invoker: Any, run_graph: Any, graph: dict[str, Any], pipeline: str, scheduler: str) -> dict[str, Any]:
    return stages_of(invoker, run_graph, graph, pipeline, scheduler, image_node="g" if "g" in graph["nodes"] else "l")


def one_node(kind: str, **fields: Any) -> dict[str, Any]:
    node = {
        "id": "g",
        "type": kind,
        "model": "tiny-sd",
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "steps": STEPS,
        "seed": 5,
        **fields,
    }
    return {"nodes": {"g": node}, "edges": []}


@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_txt2img_with_a_controlnet_equals_the_controlnet_pipeline(
    scheduler: str,
    controls: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
) -> None:
    field, pil = control_image(invokeai_invoker, 3, (80, 48))  # another size: resized as the pipeline does
    item = {"image": field.model_dump(), "control_model": "cn-a", "control_weight": 0.6, "end_step_percent": 0.7}
    steps = steps_for(scheduler, STEPS)
    graph = one_node("txt2img", width=SIZE, height=SIZE, scheduler=scheduler, steps=steps, control=[item])
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionControlNetPipeline", scheduler)
    pipe = reference(
        "StableDiffusionControlNetPipeline", model_folders["sd"], scheduler, controlnet=cn_a_folder(controls)
    )
    ref = reference_stages(
        pipe,
        5,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=steps,
        width=SIZE,
        height=SIZE,
        image=pil,
        controlnet_conditioning_scale=0.6,
        control_guidance_end=0.7,
    )
    assert_equal_stages(ours, ref)
    plain = our_stages(
        invokeai_invoker,
        invokeai_run_graph,
        one_node("txt2img", width=SIZE, height=SIZE, scheduler=scheduler, steps=steps),
        "StableDiffusionPipeline",
        scheduler,
    )
    assert not np.array_equal(plain["image"], ours["image"])  # the ControlNet changes the result


def cn_a_folder(manager: Any) -> Path:
    return Path(manager.get("cn-a").path)


def test_img2img_with_a_controlnet_equals_the_controlnet_img2img_pipeline(
    controls: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
) -> None:
    src_field, src = control_image(invokeai_invoker, 4)
    field, pil = control_image(invokeai_invoker, 6)
    item = {"image": field.model_dump(), "control_model": "cn-a", "resize_mode": "crop_resize"}
    graph = one_node("img2img", image=src_field.model_dump(), strength=0.8, steps=4, control=[item])
    ours = our_stages(
        invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionControlNetImg2ImgPipeline", "default"
    )
    pipe = reference(
        "StableDiffusionControlNetImg2ImgPipeline",
        model_folders["sd"],
        "default",
        controlnet=cn_a_folder(controls),
    )
    ref = reference_stages(
        pipe,
        5,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=4,
        image=src,
        control_image=pil,  # already SIZE x SIZE: crop_resize leaves it as it is
        controlnet_conditioning_scale=1.0,  # the node's default (the pipeline's is 0.8)
        strength=0.8,
    )
    assert_equal_stages(ours, ref, 3)  # 4 steps at strength 0.8


@pytest.mark.parametrize("kind", ["txt2img", "inpaint"])
def test_one_node_forms_with_an_ip_adapter_equal_load_ip_adapter(
    kind: str,
    with_ip: Any,
    images: Any,
    ip_files: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
) -> None:
    from PIL import Image

    prompt_pil, prompt_field = images["cat"]
    adapter = {"name": "sd-a", "image": prompt_field.model_dump(), "weight": 0.7}
    call: dict[str, Any] = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "num_inference_steps": STEPS}
    if kind == "txt2img":
        graph = one_node(kind, width=SIZE, height=SIZE, ip_adapter=[adapter])
        pipeline, steps = "StableDiffusionPipeline", STEPS
        call.update(width=SIZE, height=SIZE)
    else:
        src = Image.fromarray(np.random.default_rng(2).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
        mask = Image.new("L", (SIZE, SIZE), 0)
        mask.paste(255, (16, 16, 48, 48))
        service = invokeai_invoker.services.image_service
        fields = {"image": service.create(src).field.model_dump(), "mask": service.create(mask).field.model_dump()}
        graph = one_node(kind, strength=1.0, ip_adapter=[adapter], **fields)
        pipeline, steps = "StableDiffusionInpaintPipeline", STEPS
        call.update(image=src, mask_image=mask, strength=1.0, width=SIZE, height=SIZE)
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, pipeline, "default")
    pipe = reference(pipeline, model_folders["sd"], "default", ip=(ip_files["repo"], "sd-a.safetensors"))
    pipe.set_ip_adapter_scale(0.7)
    assert_equal_stages(ours, reference_stages(pipe, 5, ip_adapter_image=prompt_pil, **call), steps)
    # the cached UNet is back as it was: a plain run equals the plain pipeline
    plain = our_stages(
        invokeai_invoker,
        invokeai_run_graph,
        one_node("txt2img", width=SIZE, height=SIZE),
        "StableDiffusionPipeline",
        "default",
    )
    ref_plain = reference("StableDiffusionPipeline", model_folders["sd"], "default")
    assert_equal_stages(
        plain,
        reference_stages(
            ref_plain, 5, prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, width=SIZE, height=SIZE
        ),
        STEPS,
    )


def add_ip_adapter(graph: dict[str, Any], image: dict[str, Any]) -> None:
    """An ip_adapter node (IP-Adapter sd-a prompted with `image`) into the graph's denoise_latents."""
    graph["nodes"]["ip"] = {"id": "ip", "type": "ip_adapter", "model": "sd-a", "image": image}
    graph["edges"].append(edge("ip", "ip_adapter", "d", "ip_adapter"))


def test_denoise_latents_with_a_controlnet_and_an_ip_adapter_equals_the_pipeline(
    controls: Any,
    with_ip: Any,
    images: Any,
    ip_files: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
) -> None:
    import torch

    field, pil = control_image(invokeai_invoker, 8)
    prompt_pil, prompt_field = images["dog"]
    graph = guided_graph("tiny-sd", [{"image": field.model_dump(), "control_model": "cn-a"}], seed=9)
    add_ip_adapter(graph, prompt_field.model_dump())
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionControlNetPipeline", "default")
    pipe = reference(
        "StableDiffusionControlNetPipeline",
        model_folders["sd"],
        "default",
        controlnet=cn_a_folder(controls),
        ip=(ip_files["repo"], "sd-a.safetensors"),
    )
    pipe.set_ip_adapter_scale(1.0)
    ref = reference_stages(
        pipe,
        9,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=STEPS,
        width=SIZE,
        height=SIZE,
        image=pil,
        controlnet_conditioning_scale=1.0,
        ip_adapter_image=prompt_pil,
    )
    assert_equal_stages(ours, ref, STEPS)
    final = invokeai_invoker.services.objects.load(ours["run"]["d"].latents.latents_name)
    assert torch.equal(final, ours["steps"][-1])


def test_bad_guidance_on_one_node_forms_names_the_field(
    controls: Any,
    with_ip: Any,
    images: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
) -> None:
    field, _ = control_image(invokeai_invoker, 1)
    _, prompt_field = images["cat"]
    img, prompt_img = field.model_dump(), prompt_field.model_dump()
    granular = guided_graph("tiny-sd", [{"image": img, "t2i_adapter_model": "t2i-a"}], kind="t2i_adapter", seed=1)
    add_ip_adapter(granular, prompt_img)
    for graph, node, message in (
        (
            one_node("txt2img", width=SIZE, height=SIZE, control=[{"image": img, "control_model": "t2i-a"}]),
            "g",
            "field 'control': 't2i-a' is a T2I-Adapter, not a ControlNet",
        ),
        (
            one_node("img2img", image=img, control=[{"image": img, "control_model": "cn-xl"}]),
            "g",
            "field 'control': ControlNet 'cn-xl' is for sdxl, the UNet is sd-1",
        ),
        (
            one_node("txt2img", width=SIZE, height=SIZE, ip_adapter=[{"name": "cn-a", "image": prompt_img}]),
            "g",
            "field 'ip_adapter': 'cn-a' is not an IP-Adapter",
        ),
        (granular, "d", "field 'ip_adapter': IP-Adapters and T2I-Adapters cannot be used together"),
    ):
        run = invokeai_run_graph(graph)
        assert run.status == "failed"
        assert node in run.errors and message in str(run.errors[node]), run.errors
