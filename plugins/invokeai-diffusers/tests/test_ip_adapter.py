"""IP-Adapter: installed as models, applied in denoise_latents exactly as diffusers' `load_ip_adapter`
+ `set_ip_adapter_scale` + `ip_adapter_image` apply it.

Tiny IP-Adapters are made here for the tiny models in the file layout `load_ip_adapter` reads
(`image_proj.proj/norm` for diffusers' `ImageProjection`, `ip_adapter.{N}.to_k_ip/to_v_ip` numbered
over the UNet's attention processors as `_convert_ip_adapter_attn_to_diffusers` numbers them), with a
tiny random CLIP image encoder in `image_encoder/` beside them (h94/IP-Adapter's layout). The
references are pipelines built independently with `from_pretrained` + `load_ip_adapter`. Compared
exactly at every stage by `stages.py` (scheduler, prompt embeddings, initial noise, the latents after
every scheduler step, final latents, the decoder's input and output, the 8-bit image), for all 11
schedulers (SD) and SDXL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import edge, granular_txt2img
from stages import (
    ALL_SCHEDULERS,
    assert_equal_stages,
    our_stages,
    reference_pipeline,
    reference_stages,
    steps_for,
)

SIZE = 64
STEPS = 3
PROMPT, NEGATIVE = "a lighthouse", "rain"


def make_ip_adapter(unet_folder: Path, out: Path, *, seed: int, embed_dim: int = 32) -> Path:
    """Random IP-Adapter weights shaped for the UNet (saved as `load_ip_adapter`'s .safetensors)."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(str(unet_folder), subfolder="unet", local_files_only=True)
    cross = unet.config.cross_attention_dim
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        "image_proj.proj.weight": torch.randn(cross * 4, embed_dim, generator=gen) * 0.2,
        "image_proj.proj.bias": torch.randn(cross * 4, generator=gen) * 0.1,
        "image_proj.norm.weight": 1 + torch.randn(cross, generator=gen) * 0.1,
        "image_proj.norm.bias": torch.randn(cross, generator=gen) * 0.1,
    }
    key_id = 1
    channels = unet.config.block_out_channels
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        for part in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{key_id}.{part}.weight"] = torch.randn(hidden, cross, generator=gen) * 0.3
        key_id += 2
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out))
    return out


def make_image_encoder(folder: Path, *, seed: int) -> Path:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=4,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def ip_files(model_folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """repo/models/{sd-a,sd-b,xl}.safetensors + repo/models/image_encoder (h94/IP-Adapter's layout)."""
    repo = tmp_path_factory.mktemp("ip-adapter-repo")
    make_image_encoder(repo / "models" / "image_encoder", seed=3)
    bare = tmp_path_factory.mktemp("bare") / "lonely.safetensors"
    return {
        "repo": repo,
        "sd-a": make_ip_adapter(model_folders["sd"], repo / "models" / "sd-a.safetensors", seed=1),
        "sd-b": make_ip_adapter(model_folders["sd"], repo / "models" / "sd-b.safetensors", seed=2),
        "xl": make_ip_adapter(model_folders["sdxl"], repo / "models" / "xl.safetensors", seed=4),
        "lonely": make_ip_adapter(model_folders["sd"], bare, seed=5),
    }


@pytest.fixture
def images(invokeai_invoker: Any) -> dict[str, tuple[Any, Any]]:
    from PIL import Image

    rng = np.random.default_rng(8)
    out = {}
    for name, size in (("cat", (40, 48)), ("dog", (64, 64))):
        pil = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8), mode="RGB")
        out[name] = (pil, invokeai_invoker.services.image_service.create(pil).field)
    return out


@pytest.fixture
def with_ip(manager: Any, ip_files: dict[str, Path]) -> Any:
    for name in ("sd-a", "sd-b", "xl"):
        manager.add(ip_files[name])
    return manager


def ip_graph(
    model: str,
    adapters: list[tuple[str, Any, float, float, float]],
    *,
    scheduler: str,
    seed: int,
    steps: int = STEPS,
    sdxl: bool = False,
) -> dict[str, Any]:
    """The granular graph with ip_adapter nodes (one edge, or a collect node for several)."""
    graph = granular_txt2img(
        model, prompt=PROMPT, negative=NEGATIVE, seed=seed, size=SIZE, steps=steps, scheduler=scheduler, sdxl=sdxl
    )
    for i, (name, field, weight, begin, end) in enumerate(adapters):
        graph["nodes"][f"ip{i}"] = {
            "id": f"ip{i}",
            "type": "ip_adapter",
            "model": name,
            "image": field.model_dump(),
            "weight": weight,
            "begin_step_percent": begin,
            "end_step_percent": end,
        }
    if len(adapters) == 1:
        graph["edges"].append(edge("ip0", "ip_adapter", "d", "ip_adapter"))
    elif adapters:
        graph["nodes"]["c"] = {"id": "c", "type": "collect"}
        graph["edges"] += [edge(f"ip{i}", "ip_adapter", "c", "item") for i in range(len(adapters))]
        graph["edges"].append(edge("c", "collection", "d", "ip_adapter"))
    return graph


def reference_pipe(cls_name: str, folder: Path, scheduler: str, repo: Path, weights: list[str]) -> Any:
    pipe = reference_pipeline(cls_name, folder, scheduler)
    pipe.load_ip_adapter(str(repo), subfolder="models", weight_name=weights, local_files_only=True)
    return pipe


@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_sd_ip_adapter_equals_diffusers_load_ip_adapter(
    scheduler: str,
    with_ip: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
    ip_files: Any,
    images: Any,
) -> None:
    import torch

    pil, field = images["cat"]
    steps = steps_for(scheduler, STEPS)
    graph = ip_graph("tiny-sd", [("sd-a", field, 0.7, 0.0, 1.0)], scheduler=scheduler, seed=6, steps=steps)
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionPipeline", scheduler)
    pipe = reference_pipe(
        "StableDiffusionPipeline", model_folders["sd"], scheduler, ip_files["repo"], ["sd-a.safetensors"]
    )
    pipe.set_ip_adapter_scale(0.7)
    call = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "num_inference_steps": steps, "width": SIZE, "height": SIZE}
    assert_equal_stages(ours, reference_stages(pipe, 6, ip_adapter_image=pil, **call))
    plain = invokeai_run_graph(ip_graph("tiny-sd", [], scheduler=scheduler, seed=6, steps=steps))
    without = invokeai_invoker.services.objects.load(plain["d"].latents.latents_name)
    assert not torch.allclose(without, ours["final"], atol=1e-3)  # the adapter changes the result


def test_sdxl_ip_adapter_equals_diffusers(
    with_ip: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, ip_files: Any, images: Any
) -> None:
    pil, field = images["dog"]
    graph = ip_graph("tiny-sdxl", [("xl", field, 0.9, 0.0, 1.0)], scheduler="euler_a", seed=2, sdxl=True)
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionXLPipeline", "euler_a")
    pipe = reference_pipe(
        "StableDiffusionXLPipeline", model_folders["sdxl"], "euler_a", ip_files["repo"], ["xl.safetensors"]
    )
    pipe.set_ip_adapter_scale(0.9)
    call = {
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "guidance_scale": 7.5,
        "num_inference_steps": STEPS,
        "width": SIZE,
        "height": SIZE,
    }
    assert_equal_stages(ours, reference_stages(pipe, 2, ip_adapter_image=pil, **call))


def test_two_adapters_with_step_ranges_equal_diffusers_with_scales_switched_per_step(
    with_ip: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, ip_files: Any, images: Any
) -> None:
    import torch

    steps = 4
    (cat, cat_field), (dog, dog_field) = images["cat"], images["dog"]
    adapters = [("sd-a", cat_field, 0.8, 0.0, 0.5), ("sd-b", dog_field, -0.6, 0.25, 1.0)]
    graph = ip_graph("tiny-sd", adapters, scheduler="dpmpp_2m", seed=11, steps=steps)
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionPipeline", "dpmpp_2m")
    pipe = reference_pipe(
        "StableDiffusionPipeline",
        model_folders["sd"],
        "dpmpp_2m",
        ip_files["repo"],
        ["sd-a.safetensors", "sd-b.safetensors"],
    )

    def scales(step: int) -> list[float]:  # step i of 4 is at fraction i / 4
        fraction = step / steps
        return [w if begin <= fraction < end else 0.0 for _, _, w, begin, end in adapters]

    def switch(p: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        p.set_ip_adapter_scale(scales(step + 1))
        return kwargs

    call = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "num_inference_steps": steps, "width": SIZE, "height": SIZE}
    assert scales(0) == [0.8, 0.0] and scales(3) == [0.0, -0.6]
    ref = reference_stages(
        pipe,
        11,
        callback=switch,
        reset=lambda: pipe.set_ip_adapter_scale(scales(0)),
        ip_adapter_image=[cat, dog],
        **call,
    )
    assert_equal_stages(ours, ref, steps)
    full = [(n, f, w, 0.0, 1.0) for n, f, w, _, _ in adapters]
    always = invokeai_run_graph(ip_graph("tiny-sd", full, scheduler="dpmpp_2m", seed=11, steps=steps))
    assert always.status == "completed", always.errors
    unranged = invokeai_invoker.services.objects.load(always["d"].latents.latents_name)
    assert not torch.allclose(unranged, ours["final"], atol=1e-3)  # the step ranges matter


def test_the_unet_is_restored_and_no_base_model_reloads(
    with_ip: Any, invokeai_invoker: Any, invokeai_run_graph: Any, images: Any
) -> None:
    import torch

    _, field = images["cat"]
    first = invokeai_run_graph(ip_graph("tiny-sd", [], scheduler="default", seed=1))
    assert first.status == "completed", first.errors
    unet = with_ip.load("tiny-sd", "unet")
    processors = dict(unet.attn_processors)
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    events: list[Any] = []
    invokeai_invoker.services.events.subscribe(events.append, names=["model_load_started"])
    for _ in range(2):
        run = invokeai_run_graph(ip_graph("tiny-sd", [("sd-a", field, 1.0, 0.0, 1.0)], scheduler="default", seed=1))
        assert run.status == "completed", run.errors
    assert sorted((e.model_name, e.submodel) for e in events) == [("sd-a", "image_encoder"), ("sd-a", "ip_adapter")]
    after = dict(unet.attn_processors)
    assert list(after) == list(processors) and all(after[k] is processors[k] for k in processors)
    assert unet.encoder_hid_proj is None and unet.config.encoder_hid_dim_type is None
    now = unet.state_dict()
    assert list(now) == list(state) and all(torch.equal(now[k], state[k]) for k in state)


def test_ip_adapters_are_probed_and_need_their_image_encoder(manager: Any, ip_files: Any) -> None:
    from invokeai_diffusers.models.manager import ModelInstallError

    record = manager.add(ip_files["sd-a"])
    assert (record.name, record.type, record.base, record.format) == ("sd-a", "ip_adapter", "sd-1", "ip_adapter")
    assert record.size == ip_files["sd-a"].stat().st_size
    with pytest.raises(ModelInstallError, match="needs its CLIP image encoder beside it"):
        manager.add(ip_files["lonely"])
    (state_dict,) = manager.load("sd-a", "ip_adapter")
    assert sorted(state_dict) == ["image_proj", "ip_adapter"] and "proj.weight" in state_dict["image_proj"]
    assert type(manager.load("sd-a", "image_encoder")).__name__ == "CLIPVisionModelWithProjection"


def test_bad_ip_adapter_inputs_name_the_field(with_ip: Any, invokeai_run_graph: Any, images: Any) -> None:
    from invokeai_core import NodeFieldError

    _, field = images["cat"]
    with pytest.raises(NodeFieldError) as err:
        invokeai_run_graph(ip_graph("tiny-sd", [("tiny-sd", field, 1.0, 0.0, 1.0)], scheduler="default", seed=1))
    assert err.value.field == "model" and "is a main model, not an IP-Adapter" in str(err.value)
    with pytest.raises(NodeFieldError) as err:
        invokeai_run_graph(ip_graph("tiny-sd", [("sd-a", field, 1.0, 0.6, 0.5)], scheduler="default", seed=1))
    assert err.value.field == "end_step_percent"
    run = invokeai_run_graph(
        ip_graph("tiny-sdxl", [("sd-a", field, 1.0, 0.0, 1.0)], scheduler="default", seed=1, sdxl=True)
    )
    assert run.status == "failed" and "IP-Adapter 'sd-a' takes text 32 wide, the UNet 64" in str(run.errors)
    assert "'ip_adapter'" in str(run.errors)
    with pytest.raises(NodeFieldError) as err:
        invokeai_run_graph({"nodes": {"m": {"id": "m", "type": "main_model_loader", "model": "sd-a"}}, "edges": []})
    assert err.value.field == "model" and "is an IP-Adapter, not a main model: use the ip_adapter node" in str(
        err.value
    )
