"""The denoising loop, run by diffusers' own pipelines on cached components.

Rather than re-implementing the loop, `denoise` assembles the matching diffusers pipeline (text to
image, or image to image) from the cached UNet and a fresh scheduler, with no text encoder and no VAE,
and calls it with our embeddings and noise and `output_type="latent"`. The maths is therefore the
pipeline's own, step for step, which is what makes a granular graph bit-for-bit equal to a pipeline
call. The random generator is replayed from the noise's seed so stochastic schedulers (euler_a,
ddpm) draw exactly what the pipeline would. Masks use diffusers' legacy latent blend (the path the
inpaint pipeline takes with a 4-channel UNet), applied after each step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invokeai_diffusers import ip_adapter
from invokeai_diffusers.fields import (
    CLIPField,
    ConditioningField,
    ControlField,
    DenoiseMaskField,
    IPAdapterField,
    LatentsField,
    T2IAdapterField,
    UNetField,
)
from invokeai_diffusers.lora import applied
from invokeai_diffusers.nodes.common import (
    DiffusionNodeError,
    device_and_dtype,
    generator,
    load,
    load_loras,
    load_object,
    lora_error,
    models,
    raise_if_canceled,
    record,
    step_callback,
)
from invokeai_diffusers.schedulers import install_scheduler, make_scheduler

if TYPE_CHECKING:
    from invokeai_core import InvocationContext


@dataclass
class DenoiseRequest:
    unet: UNetField
    positive: ConditioningField
    negative: ConditioningField | None
    noise: LatentsField | None
    latents: LatentsField | None
    mask: DenoiseMaskField | None
    steps: int
    cfg_scale: float
    scheduler: str
    strength: float
    seed: int | None
    ip_adapters: list[IPAdapterField] = field(default_factory=list)
    control: list[ControlField] = field(default_factory=list)
    t2i_adapters: list[T2IAdapterField] = field(default_factory=list)


def _conditioning(
    context: InvocationContext, request: DenoiseRequest, base: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    positive = load_object(context, request.positive.conditioning_name, "positive_conditioning")
    if positive.get("base") != base:
        raise DiffusionNodeError(
            "positive_conditioning", f"was encoded for a {positive.get('base')} model, the UNet is {base}"
        )
    if request.negative is not None:
        negative = load_object(context, request.negative.conditioning_name, "negative_conditioning")
        if negative.get("base") != base:
            raise DiffusionNodeError(
                "negative_conditioning", f"was encoded for a {negative.get('base')} model, the UNet is {base}"
            )
    elif base == "sdxl":
        # what StableDiffusionXLPipeline does without a negative prompt (force_zeros_for_empty_prompt)
        negative = {
            "embeds": torch.zeros_like(positive["embeds"]),
            "pooled": torch.zeros_like(positive["pooled"]),
            "base": base,
        }
    else:
        from invokeai_diffusers.nodes.conditioning import encode_prompt

        negative = encode_prompt(context, "", positive.get("clip") or CLIPField(model=positive["model"]), None)
    return positive, negative


def denoise(context: InvocationContext, request: DenoiseRequest) -> Any:
    """Run the denoising and return the latents tensor."""
    import torch

    model = record(context, request.unet.model, "unet")
    base = "sdxl" if model.base == "sdxl" else "sd"
    unet = load(context, request.unet.model, "unet", "unet")
    loras = load_loras(context, request.unet.loras, model.base, "unet")
    scheduler = make_scheduler("default", load(context, request.unet.model, "scheduler", "unet"))
    positive, negative = _conditioning(context, request, base)
    guidance = None
    if request.control or request.t2i_adapters:
        from invokeai_diffusers.nodes import control_denoise

        guidance = control_denoise.prepare(
            context,
            request.control,
            request.t2i_adapters,
            model.base,
            img2img=request.latents is not None,
            masked=request.mask is not None,
        )
    device, dtype = device_and_dtype(context)
    noise = load_object(context, request.noise.latents_name, "noise") if request.noise is not None else None
    seed = request.seed if request.seed is not None else (request.noise.seed if request.noise is not None else None)
    kwargs: dict[str, Any] = {
        "prompt_embeds": positive["embeds"],
        "negative_prompt_embeds": negative["embeds"],
        "num_inference_steps": request.steps,
        "guidance_scale": request.cfg_scale,
        "output_type": "latent",
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    if base == "sdxl":
        kwargs["pooled_prompt_embeds"] = positive["pooled"]
        kwargs["negative_pooled_prompt_embeds"] = negative["pooled"]
    if request.ip_adapters and request.t2i_adapters:
        raise DiffusionNodeError(
            "ip_adapter", "IP-Adapters and T2I-Adapters cannot be used together (use a ControlNet with the IP-Adapter)"
        )
    adapters, image_encoder = load_ip_adapters(context, request.ip_adapters, unet)
    with torch.inference_mode(), lora_error("unet"), applied(model.base, {"unet": (unet, loras)}):
        if request.latents is None:
            if noise is None:
                raise DiffusionNodeError("noise", "text to image needs noise (connect a noise node)")
            shape = tuple(noise.shape)
            if guidance is not None:
                vae = _vae_config(context, request.unet.model)
                pipe = _pipeline(base, "txt2img", unet, scheduler, request.scheduler, vae=vae, guidance=guidance)
                kwargs.update(_guidance_arguments(context, guidance, shape, img2img=False, sdxl=base == "sdxl"))
            else:
                pipe = _pipeline(base, "txt2img", unet, scheduler, request.scheduler)
            gen = None
            if seed is not None:
                if noise.dtype != dtype:  # draw in the pipeline's dtype, as the pipeline would
                    noise = torch.randn(shape, generator=generator(seed), dtype=dtype)
                gen = generator(seed)
                torch.randn(shape, generator=gen, dtype=noise.dtype)  # the pipeline drew the noise first
            kwargs["callback_on_step_end"] = step_callback(context, model.base, request.steps)
            if guidance is not None and guidance.kind == "t2i_adapter":
                _legacy_callback(kwargs)
            with ip_adapter_error("ip_adapter"), ip_adapter.applied(pipe, adapters, image_encoder, kwargs):
                latents = pipe(
                    latents=noise.to(device, dtype), height=shape[-2] * 8, width=shape[-1] * 8, generator=gen, **kwargs
                ).images
        else:
            if seed is None:
                raise DiffusionNodeError("noise", "image to image needs a seed: connect a noise node (or set seed)")
            # Contiguous, as the inpaint pipelines make theirs (they repeat image latents to the batch
            # size): a VAE's raw output is not (its strides follow the last convolution), and the UNet's
            # kernels round differently for another memory layout (~1e-6 per step). Same values in the
            # same layout give the pipelines' bits.
            init = load_object(context, request.latents.latents_name, "latents").to(device, dtype).contiguous()
            vae = _vae_config(context, request.unet.model)
            pipe = _pipeline(base, "img2img", unet, scheduler, request.scheduler, vae=vae, guidance=guidance)
            if guidance is not None:
                kwargs.update(
                    _guidance_arguments(context, guidance, tuple(init.shape), img2img=True, sdxl=base == "sdxl")
                )
            callback = step_callback(context, model.base, _effective_steps(request.steps, request.strength))
            if request.mask is not None:
                callback = _masked(callback, context, request, init, seed)
            kwargs["callback_on_step_end"] = callback
            with ip_adapter_error("ip_adapter"), ip_adapter.applied(pipe, adapters, image_encoder, kwargs):
                latents = pipe(image=init, strength=request.strength, generator=generator(seed), **kwargs).images
    raise_if_canceled(context)
    return latents


def load_ip_adapters(
    context: InvocationContext, fields: list[IPAdapterField], unet: Any
) -> tuple[list[tuple[IPAdapterField, Any, Any]], Any]:
    """Each IP-Adapter's state dict and image, and the image encoder they share (the first one's;
    diffusers' pipelines hold one). Checked against the UNet before anything is injected."""
    from pathlib import Path

    from invokeai_diffusers.ip_adapter import IPAdapterError, check_fits, image_encoder_folder

    out: list[tuple[IPAdapterField, Any, Any]] = []
    encoder = None
    first: tuple[str, Path] | None = None
    for f in fields:
        found = record(context, f.name, "ip_adapter")
        if found.type != "ip_adapter":
            raise DiffusionNodeError("ip_adapter", f"'{found.name}' is not an IP-Adapter")
        (state_dict,) = load(context, f.name, "ip_adapter", "ip_adapter")
        try:
            check_fits(f.name, state_dict, unet)
        except IPAdapterError as e:
            raise DiffusionNodeError("ip_adapter", str(e)) from None
        folder = image_encoder_folder(Path(found.path)).resolve()
        if first is None:
            first = (f.name, folder)
            encoder = load(context, f.name, "image_encoder", "ip_adapter")
        elif folder != first[1]:
            raise DiffusionNodeError(
                "ip_adapter",
                f"IP-Adapters '{first[0]}' and '{f.name}' use different image encoders ({first[1]}, {folder}); "
                "a pipeline holds one",
            )
        try:
            image = context.images.load(f.image).convert("RGB")
        except Exception as e:
            raise DiffusionNodeError("ip_adapter", f"cannot load image '{f.image.image_name}' ({e})") from None
        out.append((f, state_dict, image))
    return out, encoder


def ip_adapter_error(field_name: str) -> Any:
    """Turns an IPAdapterError raised while applying adapters into a DiffusionNodeError naming the field."""
    from contextlib import contextmanager

    from invokeai_diffusers.ip_adapter import IPAdapterError

    @contextmanager
    def guard() -> Any:
        try:
            yield
        except IPAdapterError as e:
            raise DiffusionNodeError(field_name, str(e)) from None

    return guard()


def _guidance_arguments(
    context: InvocationContext, guidance: Any, shape: tuple[int, ...], *, img2img: bool, sdxl: bool
) -> dict[str, Any]:
    from invokeai_diffusers.nodes.control_denoise import call_arguments

    return call_arguments(context, guidance, shape[-1] * 8, shape[-2] * 8, img2img=img2img, sdxl=sdxl)


def _legacy_callback(kwargs: dict[str, Any]) -> None:
    """The adapter pipelines have no `callback_on_step_end`: the same callback, the old way."""
    from invokeai_diffusers.nodes.control_denoise import legacy_callback

    kwargs.pop("callback_on_step_end_tensor_inputs", None)
    kwargs["callback"] = legacy_callback(kwargs.pop("callback_on_step_end"))
    kwargs["callback_steps"] = 1


def _effective_steps(steps: int, strength: float) -> int:
    return max(1, min(int(steps * strength), steps))


def _masked(inner: Any, context: InvocationContext, request: DenoiseRequest, init: Any, seed: int) -> Any:
    """After each step, keep the unmasked area at the (re-noised) original, like diffusers' 4-channel
    inpainting: `latents = (1 - mask) * add_noise(init, noise, next_t) + mask * latents`."""
    import torch

    assert request.mask is not None
    mask = load_object(context, request.mask.mask_name, "denoise_mask").to(init.device, init.dtype)
    if tuple(mask.shape[-2:]) != tuple(init.shape[-2:]):
        raise DiffusionNodeError(
            "denoise_mask",
            f"the mask is {mask.shape[-1] * 8}x{mask.shape[-2] * 8}, "
            f"the latents are {init.shape[-1] * 8}x{init.shape[-2] * 8}",
        )
    noise = torch.randn(tuple(init.shape), generator=generator(seed), dtype=init.dtype).to(init.device)
    t_start = max(request.steps - _effective_steps(request.steps, request.strength), 0)

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        timesteps = pipe.scheduler.timesteps[t_start * pipe.scheduler.order :]
        proper = init
        if step < len(timesteps) - 1:
            proper = pipe.scheduler.add_noise(init, noise, torch.tensor([timesteps[step + 1]]))
        kwargs["latents"] = (1 - mask) * proper + mask * kwargs["latents"]
        return inner(pipe, step, timestep, kwargs)

    return callback


class VaeConfig:
    """What an image-to-image pipeline reads of its VAE when it is given latents: the config.

    diffusers' img2img pipelines read `vae.config` even when `image` is already latents:
    `vae_scale_factor` (from `block_out_channels`, it sizes SDXL's `add_time_ids`) in the
    constructor and `latents_mean`/`latents_std` in `prepare_latents` (SDXL), so `vae=None` fails
    there. Loading the real VAE would cost a load (and memory) a denoise never uses: the latents
    come in already encoded and go out undecoded (`output_type="latent"`), so nothing calls
    `encode` or `decode`. The pipeline therefore gets this stand-in, the VAE's own `config.json`
    read from the model's config folder, which is everything it reads; if a future diffusers calls
    anything else on it, the AttributeError says so rather than silently loading weights.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        from diffusers.configuration_utils import FrozenDict

        self.config = FrozenDict(config)


def _vae_config(context: InvocationContext, model: str) -> VaeConfig:
    from invokeai_core import InvokeAIError

    try:
        return VaeConfig(models(context).component_config(model, "vae"))
    except InvokeAIError as e:
        raise DiffusionNodeError("unet", str(e)) from None


def _pipeline(
    base: str,
    mode: str,
    unet: Any,
    scheduler: Any,
    scheduler_name: str,
    *,
    vae: VaeConfig | None = None,
    guidance: Any = None,
) -> Any:
    import diffusers

    if guidance is not None:  # ControlNets or T2I-Adapters: their pipelines (see control_denoise)
        from invokeai_diffusers.nodes.control_denoise import pipeline_class, pipeline_extras

        cls = pipeline_class(guidance, base == "sdxl", mode == "img2img")
        extra: dict[str, Any] = pipeline_extras(guidance, base == "sdxl", mode == "img2img")
    elif base == "sdxl":
        cls = diffusers.StableDiffusionXLPipeline if mode == "txt2img" else diffusers.StableDiffusionXLImg2ImgPipeline
        extra = {"text_encoder_2": None, "tokenizer_2": None, "add_watermarker": False}
        if mode == "img2img":
            extra["requires_aesthetics_score"] = False
    else:
        cls = diffusers.StableDiffusionPipeline if mode == "txt2img" else diffusers.StableDiffusionImg2ImgPipeline
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    pipe = cls(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler, **extra)
    install_scheduler(pipe, scheduler_name)
    pipe.set_progress_bar_config(disable=True)
    return pipe
