"""ControlNet and T2I-Adapter: installed as models, run through diffusers' own ControlNet / Adapter
pipelines, and exactly equal to those pipelines built independently.

The models are tiny random-weight ones built here offline: ControlNets with
`ControlNetModel.from_unet` on the test UNets (their zero-initialised output convolutions are then
given random weights, else a ControlNet changes nothing), T2I-Adapters with small channels matched
to the UNet's blocks. The SDXL T2I-Adapter needs the real SDXL block order (a plain first block,
then two cross-attention blocks), so that test builds its own small SDXL model with that order.
The references are built with `from_pretrained` on the folders (the ControlNet / adapter passed in
as diffusers documents), the scheduler chosen by diffusers' class names (`stages.py`). Compared
exactly at every stage by `stages.py` (scheduler class and config, prompt embeddings, initial and
per-step latents, final latents, the decoder's input and output, the 8-bit image), for all 11
schedulers on SD 1.x (ControlNet and T2I-Adapter) and 2 on SDXL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import edge, granular_txt2img, pixels
from stages import ALL_SCHEDULERS, assert_equal_stages, our_stages, reference_stages, steps_for
from stages import reference_pipeline as stages_reference_pipeline

SIZE = 64
STEPS = 3
PROMPT, NEGATIVE = "a lighthouse", "rain"


# -- tiny models ----------------------------------------------------------------------------------
def randomize(module: Any, seed: int, scale: float = 0.1) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def make_controlnet(model_folder: Path, out: Path, seed: int) -> Path:
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(model_folder), subfolder="unet", local_files_only=True)
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64, 128))
    for i, part in enumerate((net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding)):
        randomize(part, seed * 10 + i)
    net.save_pretrained(str(out))
    return out


def make_adapter(out: Path, seed: int, *, xl: bool = False) -> Path:
    import torch
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    if xl:
        adapter = T2IAdapter(
            in_channels=3,
            channels=[32, 64, 64, 64],
            num_res_blocks=1,
            downscale_factor=16,
            adapter_type="full_adapter_xl",
        )
    else:
        adapter = T2IAdapter(
            in_channels=3, channels=[32, 64, 64], num_res_blocks=1, downscale_factor=8, adapter_type="full_adapter"
        )
    randomize(adapter, seed, 0.05)
    adapter.save_pretrained(str(out))
    return out


def build_sdxl_real_order(path: Path) -> Path:
    """A tiny SDXL model with SDXL's block order (DownBlock2D first), which T2I-Adapter XL expects."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from invokeai_diffusers.models.demo import _scheduler, _text_encoder, _vae, offline_tokenizer

    torch.manual_seed(3)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 8),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1, 1),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=32,
    )
    StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=_text_encoder(),
        text_encoder_2=_text_encoder(projection=True),
        tokenizer=offline_tokenizer(),
        tokenizer_2=offline_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    ).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def control_folders(model_folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("control")
    return {
        "cn-a": make_controlnet(model_folders["sd"], base / "cn-a", 1),
        "cn-b": make_controlnet(model_folders["sd"], base / "cn-b", 2),
        "cn-xl": make_controlnet(model_folders["sdxl"], base / "cn-xl", 3),
        "t2i-a": make_adapter(base / "t2i-a", 4),
        "t2i-b": make_adapter(base / "t2i-b", 5),
        "t2i-xl": make_adapter(base / "t2i-xl", 6, xl=True),
        "tiny-sdxl-order": build_sdxl_real_order(base / "tiny-sdxl-order"),
    }


@pytest.fixture
def controls(manager: Any, control_folders: dict[str, Path]) -> Any:
    for name, path in control_folders.items():
        manager.add(path, name=name)
    return manager


def control_image(invoker: Any, seed: int, size: tuple[int, int] = (SIZE, SIZE)) -> Any:
    """A blocky random RGB image (so edges and resizes have something to show)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    pil = Image.fromarray(small).resize(size, resample=Image.Resampling.NEAREST)
    return invoker.services.image_service.create(pil).field, pil


# -- graphs ---------------------------------------------------------------------------------------
def guided_graph(
    model: str,
    items: list[dict[str, Any]],
    *,
    kind: str = "controlnet",
    seed: int,
    scheduler: str = "default",
    steps: int = STEPS,
    sdxl: bool = False,
    loras: list[tuple[str, float]] | None = None,
) -> dict[str, Any]:
    """granular_txt2img with `kind` nodes c0, c1, ... into denoise_latents (several through a collect)."""
    graph = granular_txt2img(
        model, prompt=PROMPT, negative=NEGATIVE, seed=seed, size=SIZE, steps=steps, scheduler=scheduler, sdxl=sdxl
    )
    field = "control" if kind == "controlnet" else "t2i_adapter"
    for i, item in enumerate(items):
        graph["nodes"][f"c{i}"] = {"id": f"c{i}", "type": kind, **item}
    if len(items) == 1:
        graph["edges"].append(edge("c0", field, "d", field))
    elif items:
        graph["nodes"]["k"] = {"id": "k", "type": "collect"}
        graph["edges"] += [edge(f"c{i}", field, "k", "item") for i in range(len(items))]
        graph["edges"].append(edge("k", "collection", "d", field))
    source = "m"
    for i, (name, weight) in enumerate(loras or []):
        node = f"lora{i}"
        graph["nodes"][node] = {"id": node, "type": "lora_loader", "lora": name, "weight": weight}
        graph["edges"] += [edge(source, "unet", node, "unet"), edge(source, "clip", node, "clip")]
        source = node
    if source != "m":
        for e in graph["edges"]:
            if e["source"] == {"node_id": "m", "field": "unet"} and e["destination"]["node_id"] == "d":
                e["source"]["node_id"] = source
            if e["source"] == {"node_id": "m", "field": "clip"} and e["destination"]["node_id"] in ("p", "n"):
                e["source"]["node_id"] = source
    return graph


# -- the reference --------------------------------------------------------------------------------
def reference_pipeline(
    cls_name: str, folder: Path, part: str, modules: list[Any], scheduler: str, loras: list[tuple[Path, float]]
) -> Any:
    module = modules[0] if len(modules) == 1 else modules
    pipe = stages_reference_pipeline(cls_name, folder, scheduler, **{part: module})
    for i, (path, _) in enumerate(loras):
        pipe.load_lora_weights(str(path), adapter_name=f"l{i}")
    if loras:
        pipe.set_adapters([f"l{i}" for i in range(len(loras))], adapter_weights=[w for _, w in loras])
    return pipe


def compare(
    invoker: Any,
    run_graph: Any,
    graph: dict[str, Any],
    *,
    cls_name: str,
    folder: Path,
    part: str,
    modules: list[Any],
    scheduler: str,
    seed: int,
    loras: list[tuple[Path, float]] | None = None,
    **call: Any,
) -> dict[str, Any]:
    """Our graph and the reference pipeline, every stage (stages.py). StableDiffusionAdapterPipeline
    decodes with its deprecated `decode_latents`, so its reference decode is done on its final
    latents the way every other pipeline decodes (`decode_self`)."""
    ours = our_stages(invoker, run_graph, graph, cls_name, scheduler)
    ref_pipe = reference_pipeline(cls_name, folder, part, modules, scheduler, loras or [])
    common = {
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "num_inference_steps": call.pop("steps", STEPS),
        "guidance_scale": 7.5,  # the graph's cfg_scale (the SDXL pipelines default to 5)
    }
    ref = reference_stages(ref_pipe, seed, decode_self=cls_name == "StableDiffusionAdapterPipeline", **common, **call)
    assert_equal_stages(ours, ref)
    return ours


def load_modules(cls_name: str, folders: list[Path]) -> list[Any]:
    import diffusers

    cls = getattr(diffusers, cls_name)
    return [cls.from_pretrained(str(f), local_files_only=True) for f in folders]


# -- the tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_sd_controlnet_equals_the_controlnet_pipeline(
    scheduler: str,
    controls: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
    control_folders: Any,
) -> None:
    import torch

    image, pil = control_image(invokeai_invoker, 1, (80, 48))  # another size: just_resize, as the pipeline does
    item = {"image": image.model_dump(), "control_model": "cn-a", "control_weight": 0.8}
    steps = steps_for(scheduler, STEPS)
    graph = guided_graph("tiny-sd", [item], seed=11, scheduler=scheduler, steps=steps)
    ours = compare(
        invokeai_invoker,
        invokeai_run_graph,
        graph,
        cls_name="StableDiffusionControlNetPipeline",
        folder=model_folders["sd"],
        part="controlnet",
        modules=load_modules("ControlNetModel", [control_folders["cn-a"]]),
        scheduler=scheduler,
        seed=11,
        steps=steps,
        image=pil,
        controlnet_conditioning_scale=0.8,
        width=SIZE,
        height=SIZE,
    )
    plain = invokeai_run_graph(guided_graph("tiny-sd", [], seed=11, scheduler=scheduler, steps=steps))
    unguided = invokeai_invoker.services.objects.load(plain["d"].latents.latents_name)
    assert not torch.allclose(ours["final"], unguided, atol=1e-3)  # the ControlNet changes the result


@pytest.mark.parametrize("scheduler", ["default", "euler_a"])
def test_sdxl_controlnet_equals_the_sdxl_controlnet_pipeline(
    scheduler: str,
    controls: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
    control_folders: Any,
) -> None:
    image, pil = control_image(invokeai_invoker, 2)
    item = {"image": image.model_dump(), "control_model": "cn-xl", "control_weight": 1.2, "end_step_percent": 0.7}
    graph = guided_graph("tiny-sdxl", [item], seed=12, scheduler=scheduler, sdxl=True)
    compare(
        invokeai_invoker,
        invokeai_run_graph,
        graph,
        cls_name="StableDiffusionXLControlNetPipeline",
        folder=model_folders["sdxl"],
        part="controlnet",
        modules=load_modules("ControlNetModel", [control_folders["cn-xl"]]),
        scheduler=scheduler,
        seed=12,
        image=pil,
        controlnet_conditioning_scale=1.2,
        control_guidance_end=0.7,
        width=SIZE,
        height=SIZE,
    )


def test_multi_controlnet_with_weights_and_step_ranges_equals_multicontrolnet(
    controls: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, control_folders: Any
) -> None:
    image_a, pil_a = control_image(invokeai_invoker, 3)
    image_b, pil_b = control_image(invokeai_invoker, 4)
    items = [
        {"image": image_a.model_dump(), "control_model": "cn-a", "control_weight": 0.6, "end_step_percent": 0.5},
        {"image": image_b.model_dump(), "control_model": "cn-b", "control_weight": 1.4, "begin_step_percent": 0.25},
    ]
    graph = guided_graph("tiny-sd", items, seed=13, scheduler="dpmpp_2m", steps=4)
    compare(
        invokeai_invoker,
        invokeai_run_graph,
        graph,
        cls_name="StableDiffusionControlNetPipeline",
        folder=model_folders["sd"],
        part="controlnet",
        modules=load_modules("ControlNetModel", [control_folders["cn-a"], control_folders["cn-b"]]),
        scheduler="dpmpp_2m",
        seed=13,
        steps=4,
        image=[pil_a, pil_b],
        controlnet_conditioning_scale=[0.6, 1.4],
        control_guidance_start=[0.0, 0.25],
        control_guidance_end=[0.5, 1.0],
        width=SIZE,
        height=SIZE,
    )


def test_controlnet_with_a_lora_equals_the_pipeline_with_load_lora_weights(
    controls: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
    control_folders: Any,
    tmp_path: Path,
) -> None:
    from test_lora import make_lora

    lora = make_lora(model_folders["sd"], tmp_path / "ink.safetensors", seed=1, rank=4, alpha=8)
    controls.add(lora, name="ink")
    image, pil = control_image(invokeai_invoker, 5)
    item = {"image": image.model_dump(), "control_model": "cn-a", "control_weight": 0.9}
    graph = guided_graph("tiny-sd", [item], seed=14, scheduler="euler_a", loras=[("ink", 0.7)])
    compare(
        invokeai_invoker,
        invokeai_run_graph,
        graph,
        cls_name="StableDiffusionControlNetPipeline",
        folder=model_folders["sd"],
        part="controlnet",
        modules=load_modules("ControlNetModel", [control_folders["cn-a"]]),
        scheduler="euler_a",
        seed=14,
        loras=[(lora, 0.7)],
        image=pil,
        controlnet_conditioning_scale=0.9,
        width=SIZE,
        height=SIZE,
    )
    unet = controls.load("tiny-sd", "unet")
    assert not any("lora" in k for k in unet.state_dict())  # the adapters are gone after the run


@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_sd_t2i_adapter_and_multiadapter_equal_the_adapter_pipeline(
    scheduler: str,
    controls: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
    control_folders: Any,
) -> None:
    image_a, pil_a = control_image(invokeai_invoker, 6)
    image_b, pil_b = control_image(invokeai_invoker, 7, (96, 96))
    steps = steps_for(scheduler, STEPS)
    one = [{"image": image_a.model_dump(), "t2i_adapter_model": "t2i-a", "weight": 0.9}]
    graph = guided_graph("tiny-sd", one, kind="t2i_adapter", seed=15, scheduler=scheduler, steps=steps)
    ours = compare(
        invokeai_invoker,
        invokeai_run_graph,
        graph,
        cls_name="StableDiffusionAdapterPipeline",
        folder=model_folders["sd"],
        part="adapter",
        modules=load_modules("T2IAdapter", [control_folders["t2i-a"]]),
        scheduler=scheduler,
        seed=15,
        steps=steps,
        image=pil_a,
        adapter_conditioning_scale=0.9,
        width=SIZE,
        height=SIZE,
    )
    two = [*one, {"image": image_b.model_dump(), "t2i_adapter_model": "t2i-b", "weight": 0.5}]
    graph = guided_graph("tiny-sd", two, kind="t2i_adapter", seed=15, scheduler=scheduler, steps=steps)
    both = compare(
        invokeai_invoker,
        invokeai_run_graph,
        graph,
        cls_name="StableDiffusionAdapterPipeline",
        folder=model_folders["sd"],
        part="adapter",
        modules=load_modules("T2IAdapter", [control_folders["t2i-a"], control_folders["t2i-b"]]),
        scheduler=scheduler,
        seed=15,
        steps=steps,
        image=[pil_a, pil_b],
        adapter_conditioning_scale=[0.9, 0.5],
        width=SIZE,
        height=SIZE,
    )
    assert not np.array_equal(ours["image"], both["image"])


@pytest.mark.parametrize("scheduler", ["default", "dpmpp_2m"])
def test_sdxl_t2i_adapter_equals_the_sdxl_adapter_pipeline(
    scheduler: str, controls: Any, invokeai_invoker: Any, invokeai_run_graph: Any, control_folders: Any
) -> None:
    image, pil = control_image(invokeai_invoker, 8)
    item = {
        "image": image.model_dump(),
        "t2i_adapter_model": "t2i-xl",
        "weight": 1.1,
        "adapter_conditioning_factor": 0.5,
    }
    graph = guided_graph(
        "tiny-sdxl-order", [item], kind="t2i_adapter", seed=16, scheduler=scheduler, sdxl=True, steps=4
    )
    compare(
        invokeai_invoker,
        invokeai_run_graph,
        graph,
        cls_name="StableDiffusionXLAdapterPipeline",
        folder=control_folders["tiny-sdxl-order"],
        part="adapter",
        modules=load_modules("T2IAdapter", [control_folders["t2i-xl"]]),
        scheduler=scheduler,
        seed=16,
        steps=4,
        image=pil,
        adapter_conditioning_scale=1.1,
        adapter_conditioning_factor=0.5,
        width=SIZE,
        height=SIZE,
    )


# -- control images -------------------------------------------------------------------------------
def reference_canny(gray: Any, low: int, high: int) -> Any:
    """Canny written out pixel by pixel (OpenCV's defaults: 3x3 Sobel, replicated borders, L1
    magnitude, 4-direction non-maximum suppression, 8-connected hysteresis)."""
    import math
    from collections import deque

    h, w = gray.shape
    g = gray.astype(float)

    def px(y: int, x: int) -> float:
        return float(g[min(max(y, 0), h - 1), min(max(x, 0), w - 1)])

    mag = np.zeros((h, w))
    sector = np.zeros((h, w), dtype=int)
    for y in range(h):
        for x in range(w):
            gx = (px(y - 1, x + 1) + 2 * px(y, x + 1) + px(y + 1, x + 1)) - (
                px(y - 1, x - 1) + 2 * px(y, x - 1) + px(y + 1, x - 1)
            )
            gy = (px(y + 1, x - 1) + 2 * px(y + 1, x) + px(y + 1, x + 1)) - (
                px(y - 1, x - 1) + 2 * px(y - 1, x) + px(y - 1, x + 1)
            )
            mag[y, x] = abs(gx) + abs(gy)
            angle = (math.degrees(math.atan2(gy, gx)) + 180.0) % 180.0
            sector[y, x] = math.floor((angle + 22.5) / 45.0) % 4
    offsets = {0: ((0, 1), (0, -1)), 1: ((1, 1), (-1, -1)), 2: ((1, 0), (-1, 0)), 3: ((1, -1), (-1, 1))}

    def m(y: int, x: int) -> float:
        return float(mag[y, x]) if 0 <= y < h and 0 <= x < w else 0.0

    thin = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            (ay, ax), (by, bx) = offsets[int(sector[y, x])]
            if mag[y, x] >= m(y + ay, x + ax) and mag[y, x] >= m(y + by, x + bx):
                thin[y, x] = mag[y, x]
    out = np.zeros((h, w), dtype=bool)
    queue = deque((y, x) for y in range(h) for x in range(w) if thin[y, x] > high)
    for y, x in queue:
        out[y, x] = True
    while queue:
        y, x = queue.popleft()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and not out[ny, nx] and thin[ny, nx] > low:
                    out[ny, nx] = True
                    queue.append((ny, nx))
    return out


def test_canny_edge_node_matches_a_reference_written_out(
    manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any
) -> None:
    from PIL import Image, ImageDraw

    pil = Image.new("RGB", (48, 40), (20, 30, 40))
    draw = ImageDraw.Draw(pil)
    draw.rectangle((8, 6, 30, 28), fill=(200, 180, 60))
    draw.ellipse((22, 14, 44, 36), fill=(90, 220, 140))
    draw.line((0, 39, 47, 0), fill=(255, 255, 255), width=2)
    noisy = np.asarray(pil).astype(int) + np.random.default_rng(0).integers(-12, 13, size=(40, 48, 3))
    pil = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    field = invokeai_invoker.services.image_service.create(pil).field
    for low, high in ((50, 150), (100, 300)):
        node = {
            "id": "e",
            "type": "canny_edge",
            "image": field.model_dump(),
            "low_threshold": low,
            "high_threshold": high,
        }
        run = invokeai_run_graph({"nodes": {"e": node}, "edges": []})
        assert run.status == "completed", run.errors
        ours = pixels(invokeai_invoker, run["e"].image)
        expected = reference_canny(np.asarray(pil.convert("L")), low, high)
        assert ours.shape == (40, 48, 3) and set(np.unique(ours)) <= {0, 255}
        assert np.array_equal(ours[..., 0] == 255, expected) and (ours[..., 0] == ours[..., 2]).all()
        assert 20 < expected.sum() < 40 * 48 / 2  # edges found, not everything
    from invokeai_core import NodeFieldError

    bad = {"id": "e", "type": "canny_edge", "image": field.model_dump(), "low_threshold": 90, "high_threshold": 10}
    with pytest.raises(NodeFieldError, match="node 'e', field 'low_threshold'"):
        invokeai_run_graph({"nodes": {"e": bad}, "edges": []})


def test_resize_modes_give_the_output_size_and_keep_the_aspect(
    manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any
) -> None:
    from PIL import Image

    src = Image.new("RGB", (100, 50), (255, 0, 0))  # 2:1, red
    field = invokeai_invoker.services.image_service.create(src).field
    out = {}
    for mode in ("just_resize", "crop_resize", "fill_resize"):
        node = {
            "id": "r",
            "type": "image_resize_for_control",
            "image": field.model_dump(),
            "width": 64,
            "height": 64,
            "resize_mode": mode,
        }
        run = invokeai_run_graph({"nodes": {"r": node}, "edges": []})
        assert run.status == "completed", run.errors
        assert (run["r"].width, run["r"].height) == (64, 64)
        out[mode] = pixels(invokeai_invoker, run["r"].image)
    assert (out["just_resize"][..., 0] > 250).all() and (out["crop_resize"][..., 0] > 250).all()  # all red
    fill = out["fill_resize"]  # 64x32 of red in the middle, black bars above and below
    assert (fill[:16] == 0).all() and (fill[48:] == 0).all() and (fill[17:47, :, 0] > 250).all()
    from invokeai_diffusers.nodes.control import fit_image

    wide = Image.fromarray(np.arange(100 * 50 * 3, dtype=np.uint32).reshape(50, 100, 3).astype(np.uint8))
    assert fit_image(wide, 64, 64, "crop_resize").size == (64, 64)
    assert fit_image(wide, 48, 32, "fill_resize").size == (48, 32)
    assert fit_image(wide, 100, 50, "crop_resize").tobytes() == wide.tobytes()  # same size: unchanged


# -- the model manager ----------------------------------------------------------------------------
def test_controlnets_and_adapters_are_probed_listed_loaded_and_removed(controls: Any, control_folders: Any) -> None:
    import torch
    from diffusers import ControlNetModel, T2IAdapter

    kinds = {r.name: (r.type, r.base, r.format) for r in controls.list()}
    assert kinds["cn-a"] == ("controlnet", "sd-1", "diffusers")
    assert kinds["cn-xl"] == ("controlnet", "sdxl", "diffusers")
    assert kinds["t2i-a"] == ("t2i_adapter", "sd-1", "diffusers")
    assert kinds["t2i-xl"] == ("t2i_adapter", "sdxl", "diffusers")
    net = controls.load("cn-a", "controlnet")
    assert isinstance(net, ControlNetModel) and not net.training
    assert isinstance(controls.load("t2i-a", "t2i_adapter"), T2IAdapter)
    loads = controls.cache.loads
    assert controls.load("cn-a", "controlnet") is net and controls.cache.loads == loads  # cached
    ref = ControlNetModel.from_pretrained(str(control_folders["cn-a"]), local_files_only=True)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values(), strict=True))
    from invokeai_diffusers.models.cache import ModelLoadError

    with pytest.raises(ModelLoadError, match="only a 'controlnet' component"):
        controls.load("cn-a", "unet")
    controls.remove("cn-a")
    assert "cn-a" not in [r.name for r in controls.list()]


def test_single_file_controlnet_needs_a_config_folder(manager: Any, control_folders: Any, tmp_path: Path) -> None:
    import torch
    from diffusers import ControlNetModel
    from invokeai_diffusers.models.manager import ModelInstallError
    from safetensors.torch import save_file

    ref = ControlNetModel.from_pretrained(str(control_folders["cn-a"]), local_files_only=True)
    single = tmp_path / "cn-single.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(single))
    with pytest.raises(
        ModelInstallError, match="a single-file ControlNet needs its diffusers config: pass --config DIR"
    ):
        manager.add(single)
    with pytest.raises(ModelInstallError, match="not a ControlNet config folder"):
        manager.add(single, config=control_folders["t2i-a"])
    with pytest.raises(ModelInstallError, match="its cross-attention is 32 wide"):
        manager.add(single, config=control_folders["cn-xl"])
    record = manager.add(single, config=control_folders["cn-a"])
    assert (record.type, record.base, record.format) == ("controlnet", "sd-1", "checkpoint")
    net = manager.load(record.name, "controlnet")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values(), strict=True))
    adapter = tmp_path / "t2i.safetensors"
    save_file(
        {"adapter.conv_in.weight": torch.zeros(2, 2), "adapter.body.0.resnets.0.block1.weight": torch.zeros(2)},
        str(adapter),
    )
    with pytest.raises(ModelInstallError, match="a T2I-Adapter single file"):
        manager.add(adapter)
    with pytest.raises(ModelInstallError, match="--config is for single-file checkpoints"):
        manager.add(control_folders["cn-b"], config=control_folders["cn-a"])


def test_the_cli_adds_lists_and_removes_a_controlnet(control_folders: Any, tmp_path: Path) -> None:
    import json

    from test_models_cli import cli

    added = cli("models", "add", str(control_folders["cn-xl"]), "--name", "cn", root=tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("installed cn (sdxl, controlnet, diffusers) from ")
    listed = json.loads(cli("models", "list", "--json", root=tmp_path).stdout)
    assert [(m["name"], m["type"], m["base"]) for m in listed] == [("cn", "controlnet", "sdxl")]
    assert cli("models", "remove", "cn", root=tmp_path).returncode == 0
    assert json.loads(cli("models", "list", "--json", root=tmp_path).stdout) == []


# -- bad inputs -----------------------------------------------------------------------------------
def test_bad_control_inputs_name_the_node_and_field(
    controls: Any, invokeai_invoker: Any, invokeai_run_graph: Any
) -> None:
    from invokeai_core import NodeFieldError

    image, _ = control_image(invokeai_invoker, 9)
    img = image.model_dump()
    for model, message in (
        ("nope", "unknown model 'nope'"),
        ("tiny-sd", "'tiny-sd' is a main model, not a ControlNet"),
        ("t2i-a", "'t2i-a' is a T2I-Adapter, not a ControlNet"),
    ):
        graph = guided_graph("tiny-sd", [{"image": img, "control_model": model}], seed=1)
        with pytest.raises(NodeFieldError, match=f"node 'c0', field 'control_model': {message}"):
            invokeai_run_graph(graph)
    graph = guided_graph("tiny-sd", [{"image": img, "t2i_adapter_model": "cn-a"}], kind="t2i_adapter", seed=1)
    with pytest.raises(
        NodeFieldError, match="node 'c0', field 't2i_adapter_model': 'cn-a' is a ControlNet, not a T2I-Adapter"
    ):
        invokeai_run_graph(graph)
    with pytest.raises(
        NodeFieldError, match="node 'm', field 'model': 'cn-a' is a ControlNet, not a main model: use the controlnet"
    ):
        invokeai_run_graph({"nodes": {"m": {"id": "m", "type": "main_model_loader", "model": "cn-a"}}, "edges": []})
    bad_range = {"image": img, "control_model": "cn-a", "begin_step_percent": 0.6, "end_step_percent": 0.4}
    with pytest.raises(NodeFieldError, match="node 'c0', field 'begin_step_percent'"):
        invokeai_run_graph(guided_graph("tiny-sd", [bad_range], seed=1))
    for graph, message in (
        (
            guided_graph("tiny-sd", [{"image": img, "control_model": "cn-xl"}], seed=1),
            "field 'control': ControlNet 'cn-xl' is for sdxl, the UNet is sd-1",
        ),
        (
            guided_graph("tiny-sdxl", [{"image": img, "control_model": "cn-a"}], seed=1, sdxl=True),
            "field 'control': ControlNet 'cn-a' is for sd-1, the UNet is sdxl",
        ),
        (
            guided_graph("tiny-sd", [{"image": img, "t2i_adapter_model": "t2i-xl"}], kind="t2i_adapter", seed=1),
            "field 't2i_adapter': T2I-Adapter 't2i-xl' is for sdxl, the UNet is sd-1",
        ),
        (
            guided_graph(
                "tiny-sd",
                [{"image": img, "t2i_adapter_model": "t2i-a", "adapter_conditioning_factor": 0.5}],
                kind="t2i_adapter",
                seed=1,
            ),
            "field 't2i_adapter': adapter_conditioning_factor is SDXL's only",
        ),
        (
            guided_graph(
                "tiny-sd", [{"image": img, "control_model": "cn-a"}, {"image": img, "control_model": "cn-a"}], seed=1
            ),
            "'cn-a' is given twice",
        ),
    ):
        run = invokeai_run_graph(graph)
        assert run.status == "failed"
        assert "d" in run.errors and message in str(run.errors["d"]), run.errors
    both = guided_graph("tiny-sd", [{"image": img, "control_model": "cn-a"}], seed=1)
    both["nodes"]["t"] = {"id": "t", "type": "t2i_adapter", "image": img, "t2i_adapter_model": "t2i-a"}
    both["edges"].append(edge("t", "t2i_adapter", "d", "t2i_adapter"))
    run = invokeai_run_graph(both)
    assert run.status == "failed" and "ControlNets and T2I-Adapters cannot be combined" in str(run.errors["d"])


def test_sd_controlnet_image_to_image_equals_the_controlnet_img2img_pipeline(
    controls: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, control_folders: Any
) -> None:
    """image_to_latents -> denoise_latents (strength) with a ControlNet; the reference is given the
    same latents as `image` (encoded by its own VAE with the distribution's mode, contiguous, as
    image_to_latents stores them) and the control image as `control_image`."""
    import torch
    from diffusers.image_processor import VaeImageProcessor

    src_field, src = control_image(invokeai_invoker, 10)
    image, pil = control_image(invokeai_invoker, 11)
    graph = guided_graph("tiny-sd", [{"image": image.model_dump(), "control_model": "cn-a"}], seed=17, steps=4)
    graph["nodes"]["i"] = {"id": "i", "type": "image_to_latents", "image": src_field.model_dump()}
    graph["nodes"]["d"]["strength"] = 0.75
    graph["edges"] += [edge("m", "vae", "i", "vae"), edge("i", "latents", "d", "latents")]
    pipe = reference_pipeline(
        "StableDiffusionControlNetImg2ImgPipeline",
        model_folders["sd"],
        "controlnet",
        load_modules("ControlNetModel", [control_folders["cn-a"]]),
        "default",
        [],
    )
    with torch.no_grad():
        pixels_in = VaeImageProcessor(vae_scale_factor=8).preprocess(src)
        encoded = (pipe.vae.encode(pixels_in).latent_dist.mode() * pipe.vae.config.scaling_factor).contiguous()
    call = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "num_inference_steps": 4, "guidance_scale": 7.5}
    ref = pipe(
        image=encoded,
        control_image=pil,
        controlnet_conditioning_scale=1.0,  # the node's default (this pipeline's is 0.8)
        strength=0.75,
        generator=torch.Generator("cpu").manual_seed(17),
        output_type="latent",
        **call,
    ).images
    run = invokeai_run_graph(graph)
    assert run.status == "completed", run.errors
    assert torch.equal(invokeai_invoker.services.objects.load(run["d"].latents.latents_name), ref)
