"""Generation speed against raw diffusers, on the demo model (or a full-size SD 1.5 UNet on a GPU).

CPU (always): the demo model at 256x256, 8 steps, warm. Our granular graph and our `txt2img` node are
timed against a raw `StableDiffusionPipeline` call in the same process, alternating, several runs;
the ratios of the medians are printed (target <= 1.05), with the model loads of the repeated runs
(target 0) and the peak RSS.

GPU (when torch sees CUDA): a random-weight model with the full-size SD 1.5 UNet/VAE/CLIP configs at
512x512, 20 steps, fp16, the same comparison, and the card's name.

FLUX (always): a small random-weight FLUX.1-dev-style model at 256x256, 4 steps: our granular FLUX graph
and our `flux_txt2img` node against a raw `FluxPipeline` in the same process, the same way.

SDXL+ControlNet+LoRA (always): the demo SDXL model with a random ControlNet (`from_unet`) and a random
LoRA, at 256x256, 8 steps: our granular graph (sdxl_model_loader -> lora_loader -> prompts, controlnet
-> denoise_latents -> latents_to_image) against a raw `StableDiffusionXLControlNetPipeline` with
`load_lora_weights` + `set_adapters`, the same way.

    .venv/bin/python bench/diffusion.py [--runs 5] [--only control]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


def graphs(model: str, size: int, steps: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    granular = {
        "nodes": {
            "m": {"id": "m", "type": "main_model_loader", "model": model},
            "p": {"id": "p", "type": "prompt", "prompt": "a lighthouse at dusk"},
            "n": {"id": "n", "type": "prompt", "prompt": "blurry"},
            "z": {"id": "z", "type": "noise", "seed": seed, "width": size, "height": size},
            "d": {"id": "d", "type": "denoise_latents", "steps": steps, "cfg_scale": 7.5, "use_cache": False},
            "l": {"id": "l", "type": "latents_to_image", "use_cache": False},
        },
        "edges": [
            edge("m", "clip", "p", "clip"),
            edge("m", "clip", "n", "clip"),
            edge("m", "unet", "d", "unet"),
            edge("p", "conditioning", "d", "positive_conditioning"),
            edge("n", "conditioning", "d", "negative_conditioning"),
            edge("z", "latents", "d", "noise"),
            edge("d", "latents", "l", "latents"),
            edge("m", "vae", "l", "vae"),
        ],
    }
    node = {
        "nodes": {
            "t": {
                "id": "t",
                "type": "txt2img",
                "model": model,
                "prompt": "a lighthouse at dusk",
                "negative_prompt": "blurry",
                "width": size,
                "height": size,
                "steps": steps,
                "seed": seed,
                "use_cache": False,
            }
        },
        "edges": [],
    }
    for g in (granular, node):  # prompts and noise are cached between runs otherwise; time everything
        for n in g["nodes"].values():
            n["use_cache"] = False
    return granular, node


def full_size_sd15(path: Path) -> Path:
    """Random weights with the real SD 1.5 component configs (for the GPU figure)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from invokeai_diffusers.models.demo import offline_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    te = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=514,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            max_position_embeddings=77,
        )
    )
    sched = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    StableDiffusionPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=offline_tokenizer(),
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(path)
    return path


FLUX_SIZE, FLUX_STEPS = 256, 4


def small_flux(path: Path) -> Path:
    """A small random-weight FLUX.1-dev-style model (guidance embeds, dynamic shifting), built offline:
    2 double and 4 single blocks 128 wide, a 4-level VAE with 16 latent channels, CLIP and a small T5
    with tokenizers made in code. Its images are noise; it exists to time the pipeline's overheads."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from invokeai_diffusers.models.demo import offline_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, T5Tokenizer

    torch.manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in letters] + [("\u2581" + c, -2.5) for c in letters]
    FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=AutoencoderKL(
            block_out_channels=[32, 32, 64, 64],
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            latent_channels=16,
            layers_per_block=1,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.1159,
            scaling_factor=0.3611,
        ),
        text_encoder=CLIPTextModel(
            CLIPTextConfig(
                vocab_size=514,
                bos_token_id=512,
                eos_token_id=513,
                pad_token_id=513,
                hidden_size=64,
                intermediate_size=128,
                num_attention_heads=4,
                num_hidden_layers=2,
                max_position_embeddings=77,
            )
        ),
        tokenizer=offline_tokenizer(),
        text_encoder_2=T5EncoderModel(
            T5Config(vocab_size=64, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)
        ).eval(),
        tokenizer_2=T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512),
        transformer=FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,
            num_layers=2,
            num_single_layers=4,
            attention_head_dim=32,
            num_attention_heads=4,
            joint_attention_dim=64,
            pooled_projection_dim=64,
            guidance_embeds=True,
            axes_dims_rope=[8, 12, 12],
        ),
    ).save_pretrained(path)
    return path


def flux_rows(
    invoker: Any, manager: Any, host: Any, root: Path, runs: int, gpu: bool
) -> tuple[dict[str, list[float]], int]:
    """Our granular FLUX graph and flux_txt2img node against a raw FluxPipeline, alternating, warm."""
    import torch
    from diffusers import FluxPipeline

    from invokeai_core.graph import Graph

    record = manager.add(small_flux(root / "flux-small"), name="flux-small")
    raw = FluxPipeline.from_pretrained(record.path, local_files_only=True, dtype=manager.cache.dtype)
    raw.to(manager.cache.device)
    raw.set_progress_bar_config(disable=True)
    prompt, size, steps = "a lighthouse at dusk", FLUX_SIZE, FLUX_STEPS
    granular = {
        "nodes": {
            "m": {"id": "m", "type": "flux_model_loader", "model": record.name},
            "p": {"id": "p", "type": "flux_text_encoder", "prompt": prompt},
            "d": {"id": "d", "type": "flux_denoise", "width": size, "height": size, "steps": steps, "seed": 1},
            "l": {"id": "l", "type": "flux_vae_decode"},
        },
        "edges": [
            edge("m", "clip", "p", "clip"),
            edge("m", "t5", "p", "t5"),
            edge("m", "transformer", "d", "transformer"),
            edge("p", "conditioning", "d", "positive_conditioning"),
            edge("d", "latents", "l", "latents"),
            edge("m", "vae", "l", "vae"),
        ],
    }
    node = {
        "nodes": {
            "t": {
                "id": "t",
                "type": "flux_txt2img",
                "model": record.name,
                "prompt": prompt,
                "width": size,
                "height": size,
                "steps": steps,
                "seed": 1,
            }
        },
        "edges": [],
    }
    for g in (granular, node):
        for n in g["nodes"].values():
            n["use_cache"] = False
    g_granular = Graph.from_dict(granular, host.registry, require_inputs=True)
    g_node = Graph.from_dict(node, host.registry, require_inputs=True)

    def ours(graph: Graph) -> float:
        t0 = time.perf_counter()
        session = invoker.run_graph(graph.copy(), timeout=600)
        assert session.status == "completed", session.errors
        return time.perf_counter() - t0

    def baseline() -> float:
        t0 = time.perf_counter()
        raw(prompt, width=size, height=size, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(1))
        if gpu:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    ours(g_granular), ours(g_node), baseline()  # warm up
    loads = manager.cache.loads
    times: dict[str, list[float]] = {"FLUX raw pipeline": [], "FLUX granular graph": [], "FLUX flux_txt2img node": []}
    for _ in range(runs):
        times["FLUX raw pipeline"].append(baseline())
        times["FLUX granular graph"].append(ours(g_granular))
        times["FLUX raw pipeline"].append(baseline())
        times["FLUX flux_txt2img node"].append(ours(g_node))
    return times, manager.cache.loads - loads


CONTROL_SIZE, CONTROL_STEPS = 256, 8


def sdxl_control_lora_rows(
    invoker: Any, manager: Any, host: Any, root: Path, runs: int, gpu: bool
) -> tuple[dict[str, list[float]], int]:
    """Our SDXL + ControlNet + LoRA graph against the raw diffusers pipeline, alternating, warm."""
    import numpy as np
    import torch
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict
    from PIL import Image

    from invokeai_core.graph import Graph

    model = manager.create_demo(sdxl=True)
    pipe = StableDiffusionXLPipeline.from_pretrained(model.path, local_files_only=True)
    torch.manual_seed(0)
    net = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32, 64, 128))
    with torch.no_grad():
        for part in (net.controlnet_down_blocks, net.controlnet_mid_block):
            for param in part.parameters():
                param.copy_(torch.randn(param.shape) * 0.1)
    net.save_pretrained(str(root / "cn-demo-sdxl"))
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    te_config = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    pipe.unet.add_adapter(config)
    inject_adapter_in_model(te_config, pipe.text_encoder_2)  # also on the second encoder: an SDXL LoRA
    StableDiffusionXLPipeline.save_lora_weights(
        str(root),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet)),
        text_encoder_2_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder_2)),
        unet_lora_adapter_metadata=config.to_dict(),
        text_encoder_2_lora_adapter_metadata=te_config.to_dict(),
        weight_name="lora-demo-sdxl.safetensors",
    )
    manager.add(root / "cn-demo-sdxl", name="cn-demo-sdxl")
    manager.add(root / "lora-demo-sdxl.safetensors", name="lora-demo-sdxl")
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    control = Image.fromarray(pixels).resize((CONTROL_SIZE, CONTROL_SIZE), resample=Image.Resampling.NEAREST)
    image = invoker.services.image_service.create(control).field.model_dump()
    raw = StableDiffusionXLControlNetPipeline.from_pretrained(
        model.path,
        controlnet=ControlNetModel.from_pretrained(str(root / "cn-demo-sdxl"), dtype=manager.cache.dtype),
        local_files_only=True,
        dtype=manager.cache.dtype,
    )
    raw.load_lora_weights(str(root / "lora-demo-sdxl.safetensors"), adapter_name="demo")
    raw.set_adapters(["demo"], adapter_weights=[0.8])
    raw.to(manager.cache.device)
    raw.set_progress_bar_config(disable=True)
    prompt, negative, size, steps = "a lighthouse at dusk", "blurry", CONTROL_SIZE, CONTROL_STEPS
    graph = {
        "nodes": {
            "m": {"id": "m", "type": "sdxl_model_loader", "model": model.name},
            "x": {"id": "x", "type": "lora_loader", "lora": "lora-demo-sdxl", "weight": 0.8},
            "p": {"id": "p", "type": "prompt", "prompt": prompt},
            "n": {"id": "n", "type": "prompt", "prompt": negative},
            "z": {"id": "z", "type": "noise", "seed": 1, "width": size, "height": size},
            "c": {"id": "c", "type": "controlnet", "image": image, "control_model": "cn-demo-sdxl"},
            "d": {"id": "d", "type": "denoise_latents", "steps": steps, "cfg_scale": 7.5},
            "l": {"id": "l", "type": "latents_to_image"},
        },
        "edges": [
            edge("m", "unet", "x", "unet"),
            edge("m", "clip", "x", "clip"),
            edge("m", "clip2", "x", "clip2"),
            *(edge("x", f, t, f) for t in ("p", "n") for f in ("clip", "clip2")),
            edge("x", "unet", "d", "unet"),
            edge("p", "conditioning", "d", "positive_conditioning"),
            edge("n", "conditioning", "d", "negative_conditioning"),
            edge("z", "latents", "d", "noise"),
            edge("c", "control", "d", "control"),
            edge("d", "latents", "l", "latents"),
            edge("m", "vae", "l", "vae"),
        ],
    }
    for n in graph["nodes"].values():
        n["use_cache"] = False
    g = Graph.from_dict(graph, host.registry, require_inputs=True)

    def ours() -> float:
        t0 = time.perf_counter()
        session = invoker.run_graph(g.copy(), timeout=600)
        assert session.status == "completed", session.errors
        return time.perf_counter() - t0

    def baseline() -> float:
        t0 = time.perf_counter()
        raw(
            prompt,
            negative_prompt=negative,
            image=control,
            num_inference_steps=steps,
            guidance_scale=7.5,
            width=size,
            height=size,
            generator=torch.Generator("cpu").manual_seed(1),
        )
        if gpu:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    ours(), baseline()  # warm up
    loads = manager.cache.loads
    times: dict[str, list[float]] = {"SDXL+CN+LoRA raw pipeline": [], "SDXL+ControlNet+LoRA graph": []}
    for _ in range(runs):
        times["SDXL+CN+LoRA raw pipeline"].append(baseline())
        times["SDXL+ControlNet+LoRA graph"].append(ours())
    return times, manager.cache.loads - loads


def print_ratios(times: dict[str, list[float]], raw: str, width: int, note: str = "") -> None:
    """One line per row: its median and the ratio to the median of the `raw` row."""
    base = statistics.median(times[raw])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:{width}} median {med:7.3f} s   ratio to raw {med / base:5.3f}{note}")


def print_control_rows(control_times: dict[str, list[float]], control_loads: int) -> None:
    print(
        f"SDXL+ControlNet+LoRA (demo SDXL, random ControlNet and LoRA, {CONTROL_SIZE}x{CONTROL_SIZE}, "
        f"{CONTROL_STEPS} steps):"
    )
    print_ratios(control_times, "SDXL+CN+LoRA raw pipeline", 26)
    print(f"SDXL+ControlNet+LoRA model loads during timed runs: {control_loads} (target 0)")


def sd_rows(
    invoker: Any, manager: Any, host: Any, root: Path, runs: int, gpu: bool
) -> tuple[dict[str, list[float]], int]:
    """Our granular SD graph and txt2img node against a raw StableDiffusionPipeline, alternating, warm:
    the demo model at 256x256, 8 steps on a CPU; a full-size SD 1.5 UNet at 512x512, 20 steps, in the
    cache's dtype (fp16) on CUDA. Returns the times per row and the model loads of the timed runs."""
    import torch
    from diffusers import StableDiffusionPipeline

    from invokeai_core.graph import Graph

    size, steps = (512, 20) if gpu else (256, 8)
    if gpu:
        record = manager.add(full_size_sd15(root / "sd15-random"), name="sd15-random")
    else:
        record = manager.create_demo()
    dtype = manager.cache.dtype
    raw = StableDiffusionPipeline.from_pretrained(
        record.path, local_files_only=True, dtype=dtype, safety_checker=None, requires_safety_checker=False
    )
    raw.to(manager.cache.device)
    raw.set_progress_bar_config(disable=True)
    granular, node = graphs(record.name, size, steps, seed=1)
    g_granular = Graph.from_dict(granular, host.registry, require_inputs=True)
    g_node = Graph.from_dict(node, host.registry, require_inputs=True)

    def ours(graph: Graph) -> float:
        t0 = time.perf_counter()
        session = invoker.run_graph(graph.copy(), timeout=600)
        assert session.status == "completed", session.errors
        return time.perf_counter() - t0

    def baseline() -> float:
        t0 = time.perf_counter()
        raw(
            "a lighthouse at dusk",
            negative_prompt="blurry",
            num_inference_steps=steps,
            guidance_scale=7.5,
            width=size,
            height=size,
            generator=torch.Generator("cpu").manual_seed(1),
        )
        if gpu:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    ours(g_granular), ours(g_node), baseline()  # warm up (loads the model into the cache)
    loads_after_warmup = manager.cache.loads
    times: dict[str, list[float]] = {"raw pipeline": [], "granular graph": [], "txt2img node": []}
    for _ in range(runs):
        times["raw pipeline"].append(baseline())
        times["granular graph"].append(ours(g_granular))
        times["raw pipeline"].append(baseline())
        times["txt2img node"].append(ours(g_node))
    return times, manager.cache.loads - loads_after_warmup


def started_invoker(root: Path) -> tuple[Any, Any, Any]:
    """An Invoker on a fresh root (in-memory stores), its model manager and its plugin host."""
    from invokeai_diffusers.models.demo import quiet_progress_bars
    from invokeai_diffusers.models.manager import ModelManager

    from invokeai_core.config import load_config
    from invokeai_core.invoker import Invoker
    from invokeai_core.plugins.host import PluginHost

    quiet_progress_bars()
    memory = {f"services.{k}": "memory" for k in ("sessions", "image_records", "queue")}
    config = load_config(root=str(root), environ={}, overrides=memory)
    host = PluginHost(config).load()
    invoker = Invoker.from_config(config, host).start()
    return invoker, invoker.services.get(ModelManager), host


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=["control"], help="only the SDXL+ControlNet+LoRA rows")
    args = parser.parse_args()
    import torch

    gpu = torch.cuda.is_available()
    size, steps = (512, 20) if gpu else (256, 8)
    with tempfile.TemporaryDirectory() as root:
        invoker, manager, host = started_invoker(Path(root))
        if args.only == "control":
            control_times, control_loads = sdxl_control_lora_rows(invoker, manager, host, Path(root), args.runs, gpu)
            invoker.stop()
            print_control_rows(control_times, control_loads)
            return
        times, sd_loads = sd_rows(invoker, manager, host, Path(root), args.runs, gpu)
        dtype = manager.cache.dtype
        flux_times, flux_loads = flux_rows(invoker, manager, host, Path(root), args.runs, gpu)
        control_times, control_loads = sdxl_control_lora_rows(invoker, manager, host, Path(root), args.runs, gpu)
        invoker.stop()
    device = torch.cuda.get_device_name(0) if gpu else "CPU"
    print(f"device: {device}; {size}x{size}, {steps} steps, {dtype}; {args.runs} alternating runs each")
    print_ratios(times, "raw pipeline", 16)
    print(f"model loads during timed runs: {sd_loads} (target 0)")
    print(f"FLUX (tiny random-weight, {FLUX_SIZE}x{FLUX_SIZE}, {FLUX_STEPS} steps, dev-style guidance):")
    print_ratios(flux_times, "FLUX raw pipeline", 22)
    print(f"FLUX model loads during timed runs: {flux_loads} (target 0)")
    print_control_rows(control_times, control_loads)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
