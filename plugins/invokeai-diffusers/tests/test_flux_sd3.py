"""FLUX.1 (dev- and schnell-style, text to image and image to image) and SD3.5, exactly equal to
diffusers' FluxPipeline, FluxImg2ImgPipeline and StableDiffusion3Pipeline.

The models are tiny random-weight pipelines built here (`flow_models`), saved as diffusers folders
and installed. The references are built independently with `from_pretrained` on those folders; the
reference scheduler is picked by its diffusers class name and deep-copied from the pipeline's.
Every stage is compared with `torch.equal`: prompt embeddings and pooled embeddings (the
reference's `encode_prompt` under `no_grad`), the initial latents (what `prepare_latents` returns,
recorded on both sides), the latents after every step (the reference's `callback_on_step_end`; on
our side the scheduler's step outputs), the final latents, the VAE's decoded tensor, and the 8-bit
image. Those pipelines accept only flow-matching schedulers, so the scheduler names are `default`
(the model's FlowMatchEulerDiscreteScheduler) and `flow_match_euler`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import edge, pixels
from flow_models import build_flux, build_sd3
from stages import Recorder

SIZE = 64
STEPS = 2
PROMPT, NEGATIVE = "a red fox", "the fog"
MAX_SEQ = 32
REFERENCE_SCHEDULERS = {
    "default": "FlowMatchEulerDiscreteScheduler",
    "flow_match_euler": "FlowMatchEulerDiscreteScheduler",
}


@pytest.fixture(scope="session")
def flow_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("flow-models")
    return {
        "flux-dev": build_flux(base / "flux-dev", guidance_embeds=True),
        "flux-schnell": build_flux(base / "flux-schnell", guidance_embeds=False, seed=5),
        "sd3": build_sd3(base / "sd3"),
    }


@pytest.fixture
def flow_manager(invokeai_invoker: Any, flow_folders: dict[str, Path]) -> Any:
    from invokeai_diffusers.models.manager import ModelManager

    mm = invokeai_invoker.services.get(ModelManager)
    for name, folder in flow_folders.items():
        mm.add(folder, name=name)
    return mm


def _reference_pipe(cls_name: str, folder: Path, scheduler: str) -> Any:
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(str(folder), local_files_only=True)
    expected = getattr(diffusers, REFERENCE_SCHEDULERS[scheduler])
    assert type(pipe.scheduler) is expected
    pipe.scheduler = copy.deepcopy(pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run_reference(pipe: Any, seed: int, **call: Any) -> dict[str, Any]:
    """Initial, per-step and final latents, decoded tensor and 8-bit image of one reference call."""
    import diffusers
    import torch

    steps: list[Any] = []

    def on_step(p: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        steps.append(kwargs["latents"].clone())
        return kwargs

    with Recorder(type(pipe), "prepare_latents", lambda out: out[0]) as initial:
        final = pipe(
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="latent",
            callback_on_step_end=on_step,
            **call,
        ).images
    with Recorder(diffusers.AutoencoderKL, "decode", lambda out: out[0]) as decoded:
        image = pipe(generator=torch.Generator("cpu").manual_seed(seed), output_type="pt", **call).images
    as_uint8 = (image.permute(0, 2, 3, 1).float().cpu().numpy()[0] * 255).round().astype("uint8")
    return {
        "initial": initial.values[0],
        "steps": steps,
        "final": final,
        "decoded": decoded.values[0],
        "image": as_uint8,
    }


def _run_ours(invokeai_run_graph: Any, graph: dict[str, Any], pipeline_cls: Any) -> tuple[Any, dict[str, Any]]:
    import diffusers

    with (
        Recorder(pipeline_cls, "prepare_latents", lambda out: out[0]) as initial,
        Recorder(diffusers.FlowMatchEulerDiscreteScheduler, "step", lambda out: out[0]) as steps,
        Recorder(diffusers.AutoencoderKL, "decode", lambda out: out[0]) as decoded,
    ):
        run = invokeai_run_graph(graph)
    assert run.status == "completed", run.errors
    return run, {"initial": initial.values, "steps": steps.values, "decoded": decoded.values}


def _assert_stages(ours: dict[str, Any], ref: dict[str, Any]) -> None:
    import torch

    assert len(ours["initial"]) == 1 and torch.equal(ours["initial"][0], ref["initial"])
    assert len(ours["steps"]) == len(ref["steps"]) > 0
    for i, (a, b) in enumerate(zip(ours["steps"], ref["steps"], strict=True)):
        assert torch.equal(a, b), f"step {i}: max difference {(a - b).abs().max()}"
    assert len(ours["decoded"]) == 1 and torch.equal(ours["decoded"][0], ref["decoded"])


# -- FLUX -----------------------------------------------------------------------------------------
def flux_graph(model: str, *, seed: int, scheduler: str, guidance: float, image: Any | None = None) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "m": {"id": "m", "type": "flux_model_loader", "model": model},
        "p": {"id": "p", "type": "flux_text_encoder", "prompt": PROMPT, "max_sequence_length": MAX_SEQ},
        "d": {
            "id": "d",
            "type": "flux_denoise",
            "width": SIZE,
            "height": SIZE,
            "steps": STEPS if image is None else 4,
            "guidance": guidance,
            "seed": seed,
            "scheduler": scheduler,
            "denoising_strength": 0.5,
        },
        "l": {"id": "l", "type": "flux_vae_decode"},
    }
    edges = [
        edge("m", "clip", "p", "clip"),
        edge("m", "t5", "p", "t5"),
        edge("m", "transformer", "d", "transformer"),
        edge("p", "conditioning", "d", "positive_conditioning"),
        edge("d", "latents", "l", "latents"),
        edge("m", "vae", "l", "vae"),
    ]
    if image is not None:
        nodes["i"] = {"id": "i", "type": "flux_vae_encode", "image": image.model_dump()}
        edges += [edge("m", "vae", "i", "vae"), edge("i", "latents", "d", "latents")]
    return {"nodes": nodes, "edges": edges}


@pytest.mark.parametrize(
    ("model", "scheduler"),
    [("flux-dev", "default"), ("flux-schnell", "default"), ("flux-dev", "flow_match_euler")],
)
def test_flux_granular_graph_and_node_equal_flux_pipeline(
    model: str,
    scheduler: str,
    flow_manager: Any,
    flow_folders: dict[str, Path],
    invokeai_run_graph: Any,
    invokeai_invoker: Any,
) -> None:
    import diffusers
    import torch

    seed, guidance = 7, 4.0
    run, ours = _run_ours(
        invokeai_run_graph, flux_graph(model, seed=seed, scheduler=scheduler, guidance=guidance), diffusers.FluxPipeline
    )
    pipe = _reference_pipe("FluxPipeline", flow_folders[model], scheduler)
    assert pipe.transformer.config.guidance_embeds is (model == "flux-dev")
    with torch.no_grad():
        embeds, pooled, _ = pipe.encode_prompt(PROMPT, None, max_sequence_length=MAX_SEQ)
    cond = invokeai_invoker.services.objects.load(run["p"].conditioning.conditioning_name)
    assert torch.equal(cond["embeds"], embeds) and torch.equal(cond["pooled"], pooled)
    call = {
        "prompt": PROMPT,
        "width": SIZE,
        "height": SIZE,
        "num_inference_steps": STEPS,
        "guidance_scale": guidance,
        "max_sequence_length": MAX_SEQ,
    }
    ref = _run_reference(pipe, seed, **call)
    _assert_stages(ours, ref)
    final = invokeai_invoker.services.objects.load(run["d"].latents.latents_name)
    assert final.shape == (1, 4, SIZE // 8, SIZE // 8)
    assert torch.equal(final, pipe._unpack_latents(ref["final"], SIZE, SIZE, pipe.vae_scale_factor))
    got = pixels(invokeai_invoker, run["l"].image).astype("uint8")
    assert np.array_equal(got, ref["image"]) and ref["image"].std() > 1

    node = {
        "id": "t",
        "type": "flux_txt2img",
        "model": model,
        "prompt": PROMPT,
        "width": SIZE,
        "height": SIZE,
        "steps": STEPS,
        "guidance": guidance,
        "max_sequence_length": MAX_SEQ,
        "scheduler": scheduler,
        "seed": seed,
    }
    one = invokeai_run_graph({"nodes": {"t": node}, "edges": []})
    assert one.status == "completed", one.errors
    assert np.array_equal(pixels(invokeai_invoker, one["t"].image).astype("uint8"), ref["image"])


def test_flux_guidance_matters_for_dev_only(flow_manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any) -> None:
    import torch

    def final(model: str, guidance: float) -> Any:
        run = invokeai_run_graph(flux_graph(model, seed=1, scheduler="default", guidance=guidance))
        assert run.status == "completed", run.errors
        return invokeai_invoker.services.objects.load(run["d"].latents.latents_name)

    assert not torch.equal(final("flux-dev", 1.0), final("flux-dev", 6.0))
    assert torch.equal(final("flux-schnell", 1.0), final("flux-schnell", 6.0))


def test_flux_img2img_graph_equals_flux_img2img_pipeline(
    flow_manager: Any, flow_folders: dict[str, Path], invokeai_run_graph: Any, invokeai_invoker: Any
) -> None:
    """Granular image to image starts from latents (flux_vae_encode takes the distribution's mode), so
    the reference gets the same latents as `image`, encoded here with its own VAE, as the pipeline's
    `_encode_vae_image` scales them."""
    import diffusers
    import torch
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    src = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize((SIZE, SIZE)),
            Image.radial_gradient("L").resize((SIZE, SIZE)),
            Image.linear_gradient("L").rotate(90).resize((SIZE, SIZE)),
        ),
    )
    field = invokeai_invoker.services.image_service.create(src).field
    graph = flux_graph("flux-dev", seed=3, scheduler="default", guidance=3.5, image=field)
    run, ours = _run_ours(invokeai_run_graph, graph, diffusers.FluxImg2ImgPipeline)
    pipe = _reference_pipe("FluxImg2ImgPipeline", flow_folders["flux-dev"], "default")
    with torch.no_grad():
        processor = VaeImageProcessor(vae_scale_factor=pipe.vae_scale_factor)
        mode = pipe.vae.encode(processor.preprocess(src)).latent_dist.mode()
        encoded = ((mode - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor).contiguous()
    start = invokeai_invoker.services.objects.load(run["i"].latents.latents_name)
    assert torch.equal(start, encoded)
    call = {
        "prompt": PROMPT,
        "image": encoded,
        "strength": 0.5,
        "width": SIZE,
        "height": SIZE,
        "num_inference_steps": 4,
        "guidance_scale": 3.5,
        "max_sequence_length": MAX_SEQ,
    }
    ref = _run_reference(pipe, 3, **call)
    assert len(ref["steps"]) == 2  # strength 0.5 of 4 steps
    _assert_stages(ours, ref)
    final = invokeai_invoker.services.objects.load(run["d"].latents.latents_name)
    assert torch.equal(final, pipe._unpack_latents(ref["final"], SIZE, SIZE, pipe.vae_scale_factor))
    assert not torch.equal(final, start)
    assert np.array_equal(pixels(invokeai_invoker, run["l"].image).astype("uint8"), ref["image"])


# -- SD3.5 ----------------------------------------------------------------------------------------
def sd3_graph(*, seed: int, scheduler: str, negative: str | None, cfg: float) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "m": {"id": "m", "type": "sd3_model_loader", "model": "sd3"},
        "p": {"id": "p", "type": "sd3_text_encoder", "prompt": PROMPT, "max_sequence_length": MAX_SEQ},
        "d": {
            "id": "d",
            "type": "sd3_denoise",
            "width": SIZE,
            "height": SIZE,
            "steps": STEPS,
            "cfg_scale": cfg,
            "seed": seed,
            "scheduler": scheduler,
        },
        "l": {"id": "l", "type": "sd3_vae_decode"},
    }
    edges = [
        edge("m", "clip", "p", "clip"),
        edge("m", "clip2", "p", "clip2"),
        edge("m", "t5", "p", "t5"),
        edge("m", "transformer", "d", "transformer"),
        edge("p", "conditioning", "d", "positive_conditioning"),
        edge("d", "latents", "l", "latents"),
        edge("m", "vae", "l", "vae"),
    ]
    if negative is not None:
        nodes["n"] = {"id": "n", "type": "sd3_text_encoder", "prompt": negative, "max_sequence_length": MAX_SEQ}
        edges += [edge("m", f, "n", f) for f in ("clip", "clip2", "t5")]
        edges.append(edge("n", "conditioning", "d", "negative_conditioning"))
    return {"nodes": nodes, "edges": edges}


@pytest.mark.parametrize(("scheduler", "negative"), [("default", NEGATIVE), ("flow_match_euler", None)])
def test_sd3_granular_graph_and_node_equal_sd3_pipeline(
    scheduler: str,
    negative: str | None,
    flow_manager: Any,
    flow_folders: dict[str, Path],
    invokeai_run_graph: Any,
    invokeai_invoker: Any,
) -> None:
    import diffusers
    import torch

    seed, cfg = 11, 5.0
    run, ours = _run_ours(
        invokeai_run_graph,
        sd3_graph(seed=seed, scheduler=scheduler, negative=negative, cfg=cfg),
        diffusers.StableDiffusion3Pipeline,
    )
    pipe = _reference_pipe("StableDiffusion3Pipeline", flow_folders["sd3"], scheduler)
    with torch.no_grad():
        embeds, neg_embeds, pooled, neg_pooled = pipe.encode_prompt(
            PROMPT, None, None, negative_prompt=negative, max_sequence_length=MAX_SEQ
        )
    objects = invokeai_invoker.services.objects
    cond = objects.load(run["p"].conditioning.conditioning_name)
    assert torch.equal(cond["embeds"], embeds) and torch.equal(cond["pooled"], pooled)
    if negative is not None:
        neg = objects.load(run["n"].conditioning.conditioning_name)
        assert torch.equal(neg["embeds"], neg_embeds) and torch.equal(neg["pooled"], neg_pooled)
    call: dict[str, Any] = {
        "prompt": PROMPT,
        "width": SIZE,
        "height": SIZE,
        "num_inference_steps": STEPS,
        "guidance_scale": cfg,
        "max_sequence_length": MAX_SEQ,
    }
    if negative is not None:
        call["negative_prompt"] = negative
    ref = _run_reference(pipe, seed, **call)
    _assert_stages(ours, ref)
    final = objects.load(run["d"].latents.latents_name)
    assert final.shape == (1, 4, SIZE // 8, SIZE // 8) and torch.equal(final, ref["final"])
    got = pixels(invokeai_invoker, run["l"].image).astype("uint8")
    assert np.array_equal(got, ref["image"]) and ref["image"].std() > 1

    node = {
        "id": "t",
        "type": "sd3_txt2img",
        "model": "sd3",
        "prompt": PROMPT,
        "negative_prompt": negative or "",
        "width": SIZE,
        "height": SIZE,
        "steps": STEPS,
        "cfg_scale": cfg,
        "max_sequence_length": MAX_SEQ,
        "scheduler": scheduler,
        "seed": seed,
    }
    one = invokeai_run_graph({"nodes": {"t": node}, "edges": []})
    assert one.status == "completed", one.errors
    assert np.array_equal(pixels(invokeai_invoker, one["t"].image).astype("uint8"), ref["image"])


# -- model manager: folders and single files -------------------------------------------------------
def test_folders_are_probed_with_base_and_variant(flow_manager: Any) -> None:
    got = {r.name: (r.base, r.variant, r.format) for r in flow_manager.list()}
    assert got["flux-dev"] == ("flux", "dev", "diffusers")
    assert got["flux-schnell"] == ("flux", "schnell", "diffusers")
    assert got["sd3"] == ("sd-3", "normal", "diffusers")


def _flux_layout_file(path: Path, *, dev: bool, prefix: str = "") -> Path:
    import torch
    from safetensors.torch import save_file

    keys = ["img_in.weight", "double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"]
    if dev:
        keys.append("guidance_in.in_layer.weight")
    save_file({prefix + k: torch.zeros(2, 2) for k in keys}, str(path))
    return path


def test_single_files_probe_by_key_layout_and_need_a_config_folder(
    flow_manager: Any, flow_folders: dict[str, Path], tmp_path: Path
) -> None:
    from invokeai_diffusers.models.manager import ModelInstallError
    from invokeai_diffusers.models.probe import probe

    dev = _flux_layout_file(tmp_path / "flux1-dev.safetensors", dev=True)
    schnell = _flux_layout_file(tmp_path / "flux1-schnell.safetensors", dev=False, prefix="model.diffusion_model.")
    assert (probe(dev).base, probe(dev).variant, probe(dev).format) == ("flux", "dev", "checkpoint")
    assert (probe(schnell).base, probe(schnell).variant) == ("flux", "schnell")
    with pytest.raises(ModelInstallError, match="pass --config DIR"):
        flow_manager.add(dev)
    with pytest.raises(ModelInstallError, match=r"a FLUX\.1 dev file, but --config .* is a schnell model"):
        flow_manager.add(dev, config=flow_folders["flux-schnell"])
    with pytest.raises(ModelInstallError, match="needs a FluxPipeline or FluxImg2ImgPipeline folder"):
        flow_manager.add(dev, config=flow_folders["sd3"])
    assert flow_manager.add(dev, config=flow_folders["flux-dev"]).base == "flux"


def test_sd3_single_file_in_the_original_layout_generates_what_its_folder_does(
    flow_manager: Any, flow_folders: dict[str, Path], tmp_path: Path, invokeai_run_graph: Any, invokeai_invoker: Any
) -> None:
    """An SD3 file in Stability's key layout (the MMDiT under `model.diffusion_model.joint_blocks.`, the
    VAE under `first_stage_model.`), converted by diffusers' from_single_file with a config folder's
    configs, gives the folder model's exact latents and pixels. The config folder's own VAE weights
    are re-randomised, so equal pixels show the VAE came from the file."""
    import shutil

    import torch
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from flow_models import sd3_original_layout
    from ldm_layout import vae_to_ldm
    from safetensors.torch import save_file

    folder = flow_folders["sd3"]
    transformer = SD3Transformer2DModel.from_pretrained(str(folder), subfolder="transformer")
    vae = AutoencoderKL.from_pretrained(str(folder), subfolder="vae")
    path = tmp_path / "sd3.5-tiny.safetensors"
    save_file({**sd3_original_layout(transformer), **vae_to_ldm(vae)}, str(path))
    config = tmp_path / "sd3-config"
    shutil.copytree(folder, config)
    torch.manual_seed(123)
    AutoencoderKL.from_config(vae.config).save_pretrained(config / "vae")  # other VAE weights
    record = flow_manager.add(path, name="sd3-file", config=config)
    assert (record.base, record.format) == ("sd-3", "checkpoint")
    results = []
    for model in ("sd3", "sd3-file"):
        graph = sd3_graph(seed=4, scheduler="default", negative=None, cfg=4.0)
        graph["nodes"]["m"]["model"] = model
        run = invokeai_run_graph(graph)
        assert run.status == "completed", run.errors
        latents = invokeai_invoker.services.objects.load(run["d"].latents.latents_name)
        results.append((latents, pixels(invokeai_invoker, run["l"].image)))
    assert torch.equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1]) and results[0][1].std() > 1


def test_flux_single_file_in_bfl_layout_loads_exactly_and_generates(
    flow_manager: Any, flow_folders: dict[str, Path], tmp_path: Path, invokeai_run_graph: Any, invokeai_invoker: Any
) -> None:
    """A FLUX.1-dev file in Black Forest Labs' layout (`double_blocks.`, `single_blocks.`, fused qkv,
    under `model.diffusion_model.`). diffusers' converter hard-codes FLUX's published width (3072) for
    `single_blocks.N.linear1`, so this transformer has the published width and heads (24 x 128) and one
    block of each kind (530M parameters, random bf16, about 1 GB). It loads through the model manager
    with a config folder (whose own transformer weights are deleted) tensor for tensor, and generates."""
    import json
    import shutil

    import torch
    from diffusers import FluxTransformer2DModel
    from flow_models import flux_bfl_layout
    from safetensors.torch import save_file

    config = tmp_path / "flux-wide-config"
    shutil.copytree(flow_folders["flux-dev"], config)
    for weights in (config / "transformer").glob("*.safetensors"):
        weights.unlink()
    wide = json.loads((config / "transformer" / "config.json").read_text())
    wide.update(attention_head_dim=128, num_attention_heads=24, axes_dims_rope=[16, 56, 56])
    (config / "transformer" / "config.json").write_text(json.dumps(wide))
    with torch.device("meta"):
        shapes = FluxTransformer2DModel.from_config(wide).state_dict()
    gen = torch.Generator().manual_seed(0)
    source = {k: torch.randn(v.shape, generator=gen, dtype=torch.bfloat16) * 0.02 for k, v in shapes.items()}

    # what flux_bfl_layout reads of a transformer: state_dict() and config.num_layers / num_single_layers
    holder = type("Wide", (), {"state_dict": lambda self: source, "config": type("Config", (), wide)})()
    path = tmp_path / "flux1-dev-wide.safetensors"
    save_file(flux_bfl_layout(holder, "model.diffusion_model."), str(path))
    del holder
    record = flow_manager.add(path, name="flux-file", config=config)
    assert (record.base, record.variant, record.format) == ("flux", "dev", "checkpoint")
    loaded = flow_manager.load("flux-file", "transformer").state_dict()
    assert loaded.keys() == source.keys()
    assert all(torch.equal(loaded[k], source[k].to(loaded[k].dtype)) for k in source)
    del loaded
    graph = flux_graph("flux-file", seed=2, scheduler="default", guidance=3.5)
    graph["nodes"]["d"].update(width=32, height=32, steps=1)
    run = invokeai_run_graph(graph)
    assert run.status == "completed", run.errors
    assert run["l"].width == 32
    flow_manager.remove("flux-file")  # frees the cached 2 GB


def test_wrong_models_and_inputs_get_errors_naming_the_field(
    flow_manager: Any, manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any
) -> None:
    from PIL import Image

    from invokeai_core import NodeFieldError

    for loader, model, message in (
        ("main_model_loader", "flux-dev", "'flux-dev' is a flux model: use flux_model_loader"),
        ("sdxl_model_loader", "sd3", "'sd3' is a sd-3 model: use sd3_model_loader"),
        ("flux_model_loader", "sd3", "'sd3' is a sd-3 model: use sd3_model_loader"),
        ("sd3_model_loader", "tiny-sd", "'tiny-sd' is a sd-1 model: use main_model_loader"),
        ("flux_model_loader", "nope", "unknown model 'nope'"),
    ):
        with pytest.raises(NodeFieldError, match=f"node 'm', field 'model': {message}"):
            invokeai_run_graph({"nodes": {"m": {"id": "m", "type": loader, "model": model}}, "edges": []})
    graph = flux_graph("flux-dev", seed=1, scheduler="default", guidance=1.0)
    graph["nodes"]["q"] = {"id": "q", "type": "sd3_model_loader", "model": "sd3"}
    graph["nodes"]["s"] = {"id": "s", "type": "sd3_text_encoder", "prompt": "x", "max_sequence_length": MAX_SEQ}
    graph["edges"] = [
        e for e in graph["edges"] if e["destination"] != {"node_id": "d", "field": "positive_conditioning"}
    ]
    graph["edges"] += [edge("q", f, "s", f) for f in ("clip", "clip2", "t5")]
    graph["edges"].append(edge("s", "conditioning", "d", "positive_conditioning"))
    run = invokeai_run_graph(graph)
    assert run.status == "failed"
    assert "positive_conditioning" in str(run.errors) and "use flux_text_encoder" in str(run.errors)
    src = invokeai_invoker.services.image_service.create(Image.new("RGB", (SIZE, SIZE), "red")).field
    graph = flux_graph("flux-dev", seed=1, scheduler="default", guidance=1.0, image=src)
    graph["nodes"]["d"]["denoising_strength"] = 0.0
    run = invokeai_run_graph(graph)
    assert run.status == "failed"
    assert "field 'denoising_strength': 0.0 leaves no step of 4 to run" in str(run.errors)


def test_fp16_precision_loads_flux_and_sd3_in_bfloat16(flow_folders: dict[str, Path], tmp_path: Path) -> None:
    """T5 and the FLUX/SD3.5 transformers overflow in fp16: where fp16 is chosen (CUDA's default) they
    load in bf16, as diffusers' documentation runs them."""
    import torch
    from invokeai_diffusers.models.manager import ModelManager
    from invokeai_diffusers.settings import DiffusersSettings

    manager = ModelManager(None, settings=DiffusersSettings(models_dir=tmp_path, precision="float16", device="cpu"))
    manager.add(flow_folders["flux-schnell"], name="f")
    for submodel in ("transformer", "text_encoder_2", "vae"):
        assert manager.load("f", submodel).dtype == torch.bfloat16, submodel


def test_flow_preview_unpacks_flux_latents_as_the_pipeline_does() -> None:
    import torch
    from diffusers import FluxPipeline
    from invokeai_diffusers.nodes.flux import flow_preview

    packed = torch.randn(1, (SIZE // 16) ** 2, 16, generator=torch.Generator().manual_seed(0))
    unpacked = FluxPipeline._unpack_latents(packed, SIZE, SIZE, 8)
    a, b = flow_preview(packed, SIZE, SIZE), flow_preview(unpacked, SIZE, SIZE)
    assert a.size == (SIZE // 8, SIZE // 8) and np.array_equal(np.asarray(a), np.asarray(b))


def test_cli_installs_a_flux_folder_lists_it_and_generates(flow_folders: dict[str, Path], tmp_path: Path) -> None:
    import json

    from test_models_cli import cli

    added = cli("models", "add", str(flow_folders["flux-schnell"]), "--name", "fs", root=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "fs (flux" in added.stdout
    single = _flux_layout_file(tmp_path / "flux1-dev.safetensors", dev=True)
    refused = cli("models", "add", str(single), root=tmp_path)
    assert refused.returncode != 0 and "pass --config DIR" in refused.stdout + refused.stderr
    listed = json.loads(cli("models", "list", "--json", root=tmp_path).stdout)
    assert [(m["name"], m["base"], m["variant"], m["format"]) for m in listed] == [
        ("fs", "flux", "schnell", "diffusers")
    ]
    node = {"id": "t", "type": "flux_txt2img", "model": "fs", "prompt": "hi", "width": 32, "height": 32, "steps": 1}
    run = cli("run", "-f", "-", "--json", root=tmp_path, input=json.dumps({"nodes": {"t": node}, "edges": []}))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["status"] == "completed" and out["results"]["t"]["width"] == 32
