"""FLUX.1 (dev and schnell) nodes: loader, text encoder (CLIP pooled + T5), denoise, decode, and the
one-node `flux_txt2img`.

As for Stable Diffusion (see `denoise`), the maths is diffusers' own: each node assembles a
`FluxPipeline` (or `FluxImg2ImgPipeline`) from the cached components it needs, with the others left
out, and calls it. Latents travel unpacked, `(1, C, H/8, W/8)` like every other latents field;
`flux_denoise` packs them into FLUX's 2x2 patch sequence on the way in and unpacks the result on
the way out (pure reshapes, so no bit changes). Guidance: a dev model (its transformer embeds the
guidance, `guidance_embeds`) takes `guidance`; a schnell model ignores it, exactly as the pipeline
does. FLUX's pipelines accept only flow-matching schedulers (they pass `sigmas` and `mu` to
`set_timesteps`): the scheduler is the model's own `FlowMatchEulerDiscreteScheduler`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    ImageField,
    Input,
    InputField,
    InvocationContext,
    NodeFieldError,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_diffusers.fields import (
    CLIPField,
    ConditioningField,
    LatentsField,
    T5EncoderField,
    TransformerField,
    VAEField,
)
from invokeai_diffusers.nodes.common import (
    DiffusionNodeError,
    ImageOutput,
    LatentsOutput,
    device_and_dtype,
    generator,
    load,
    load_object,
    models,
    raise_if_canceled,
    record,
    save_image,
    store_latents,
)
from invokeai_diffusers.nodes.conditioning import ConditioningOutput, warn_if_truncated

if TYPE_CHECKING:
    from invokeai_core import Services
    from invokeai_diffusers.models.records import ModelRecord

#: The schedulers the flow-matching pipelines (FLUX.1, SD3.5) accept; `default` is the model's own.
FlowSchedulerName = Literal["default", "flow_match_euler"]
FLOW_SCHEDULERS: dict[str, str] = {"flow_match_euler": "FlowMatchEulerDiscreteScheduler"}


# -- shared by the FLUX and SD3 nodes -------------------------------------------------------------
def check_transformer_base(found: ModelRecord, base: str) -> None:
    """A transformer model loader's check: the model is a main model of `base` (flux or sd-3)."""
    if found.type != "main":
        raise DiffusionNodeError("model", f"'{found.name}' is a {found.type}, not a main model")
    if found.base != base:
        hint = {"sdxl": "sdxl_model_loader", "flux": "flux_model_loader", "sd-3": "sd3_model_loader"}
        raise DiffusionNodeError(
            "model", f"'{found.name}' is a {found.base} model: use {hint.get(found.base, 'main_model_loader')}"
        )


def preflight_transformer_model(node: BaseInvocation, services: Services, base: str) -> None:
    """Unknown models, LoRAs and models of another base are refused before anything runs."""
    from invokeai_core import InvokeAIError
    from invokeai_diffusers.models.manager import ModelManager

    try:
        found = services.get(ModelManager).get(node.model)  # type: ignore[attr-defined]
        check_transformer_base(found, base)
    except DiffusionNodeError as e:
        raise NodeFieldError(e.reason, node.id, "model") from None
    except InvokeAIError as e:
        raise NodeFieldError(str(e), node.id, "model") from None


def flow_preview(latents: Any, height: int, width: int) -> Any:
    """A small PIL preview of FLUX (packed, `(1, seq, C*4)`) or SD3 (`(1, C, h, w)`) latents: the
    first three channels, each stretched to its own range (no VAE decode, no per-model factors)."""
    import torch
    from PIL import Image

    sample = latents.detach().to("cpu", torch.float32)
    if sample.ndim == 3:  # FLUX: unpack the 2x2 patches
        h, w = height // 16, width // 16
        channels = sample.shape[-1] // 4
        sample = sample.view(1, h, w, channels, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, channels, h * 2, w * 2)
    rgb = sample[0, :3]
    if rgb.shape[0] < 3:
        rgb = rgb[:1].expand(3, -1, -1)
    low = rgb.amin(dim=(1, 2), keepdim=True)
    high = rgb.amax(dim=(1, 2), keepdim=True)
    rgb = (rgb - low) / (high - low).clamp(min=1e-6)
    pixels = rgb.permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


def flow_step_callback(context: InvocationContext, total: int, height: int, width: int) -> Any:
    """A `callback_on_step_end` that reports progress with a preview and stops on cancel."""

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        latents = kwargs.get("latents")
        preview = (lambda: flow_preview(latents, height, width)) if latents is not None else None
        context.progress(step + 1, total, image=preview, message=f"denoising step {step + 1}/{total}")
        if context.is_canceled():
            pipe._interrupt = True
        return kwargs

    return callback


def check_flow_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if value % 16:
            raise DiffusionNodeError(name, f"{value} is not a multiple of 16 (FLUX/SD3 latents come in 2x2 patches)")


def flow_scheduler(context: InvocationContext, model: str, name: str, field: str) -> Any:
    """A fresh scheduler (they hold per-run state) from the model's own scheduler config."""
    import diffusers

    config = load(context, model, "scheduler", field)
    class_name = FLOW_SCHEDULERS.get(name) or str(config.get("_class_name", "FlowMatchEulerDiscreteScheduler"))
    if not class_name.startswith("FlowMatch"):
        raise DiffusionNodeError(field, f"model '{model}' has a {class_name}; these pipelines need a flow-matching one")
    return getattr(diffusers, class_name).from_config(config)


def vae_stand_in(context: InvocationContext, model: str, field: str) -> Any:
    """The VAE's config without its weights, for pipelines that read `vae.config` but never run it."""
    from invokeai_core import InvokeAIError
    from invokeai_diffusers.nodes.denoise import VaeConfig

    try:
        return VaeConfig(models(context).component_config(model, "vae"))
    except InvokeAIError as e:
        raise DiffusionNodeError(field, str(e)) from None


def decode_flow_latents(context: InvocationContext, latents: Any, vae: Any) -> Any:
    """Unpacked latents to a PIL image as FLUX's and SD3's pipelines decode:
    `vae.decode(latents / scaling_factor + shift_factor)`, then the image processor."""
    import torch
    from diffusers.image_processor import VaeImageProcessor

    with torch.inference_mode():
        lat = latents.to(vae.device, vae.dtype)
        lat = lat / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
        decoded = vae.decode(lat, return_dict=False)[0]
        processor = VaeImageProcessor(vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1))
        return processor.postprocess(decoded, output_type="pil")[0]


def encode_flow_image(context: InvocationContext, pil: Any, vae: Any, seed: int | None) -> Any:
    """An image to latents as FLUX's img2img pipeline encodes: `(latents - shift_factor) * scaling_factor`
    (the distribution's mode, or a sample for a seed)."""
    import torch
    from diffusers.image_processor import VaeImageProcessor

    processor = VaeImageProcessor(vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1))
    with torch.inference_mode():
        pixels = processor.preprocess(pil).to(vae.device, vae.dtype)
        dist = vae.encode(pixels).latent_dist
        latents = dist.sample(generator(seed)) if seed is not None else dist.mode()
        latents = (latents - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor
    _, dtype = device_and_dtype(context)
    return latents.to(dtype).contiguous()


# -- loader ---------------------------------------------------------------------------------------
@invocation_output("flux_model_loader_output")
class FluxModelLoaderOutput(BaseInvocationOutput):
    """Handles to a FLUX.1 model's components."""

    transformer: TransformerField = OutputField(description="The transformer (and scheduler config)")
    clip: CLIPField = OutputField(description="The CLIP text encoder (pooled prompt)")
    t5: T5EncoderField = OutputField(description="The T5 text encoder (prompt sequence)")
    vae: VAEField = OutputField(description="The VAE")


@invocation("flux_model_loader", title="FLUX Main Model", tags=["model", "flux"], category="model", version="1.0.0")
class FluxModelLoaderInvocation(BaseInvocation):
    """Selects an installed FLUX.1 model (dev or schnell)."""

    model: str = InputField(
        description="The installed FLUX model's name", ui_type="model", ui_model_type="main", ui_model_base="flux"
    )

    def preflight(self, services: Services) -> None:
        preflight_transformer_model(self, services, "flux")

    def invoke(self, context: InvocationContext) -> FluxModelLoaderOutput:
        found = record(context, self.model, "model")
        check_transformer_base(found, "flux")
        return FluxModelLoaderOutput(
            transformer=TransformerField(model=found.name),
            clip=CLIPField(model=found.name),
            t5=T5EncoderField(model=found.name),
            vae=VAEField(model=found.name),
        )


# -- text encoder ---------------------------------------------------------------------------------
def _check_part(context: InvocationContext, model: str, field: str, base: str) -> None:
    found = record(context, model, field)
    if found.base != base:
        raise DiffusionNodeError(field, f"'{found.name}' is a {found.base} model, this node takes a {base} one")


def encode_flux_prompt(
    context: InvocationContext, prompt: str, clip: CLIPField, t5: T5EncoderField, max_sequence_length: int
) -> dict[str, Any]:
    """`{"embeds", "pooled", "base": "flux", "model"}` from FluxPipeline.encode_prompt."""
    import torch
    from diffusers import FluxPipeline

    _check_part(context, clip.model, "clip", "flux")
    _check_part(context, t5.model, "t5", "flux")
    device, _ = device_and_dtype(context)
    tokenizer = load(context, clip.model, clip.tokenizer, "clip")
    text_encoder = load(context, clip.model, clip.text_encoder, "clip")
    tokenizer_2 = load(context, t5.model, t5.tokenizer, "t5")
    text_encoder_2 = load(context, t5.model, t5.text_encoder, "t5")
    warn_if_truncated(context, tokenizer, prompt)
    with torch.inference_mode():
        pipe = FluxPipeline(
            scheduler=None,
            vae=None,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2,
            transformer=None,
        )
        embeds, pooled, _ = pipe.encode_prompt(
            prompt=prompt,
            prompt_2=None,
            device=device,
            num_images_per_prompt=1,
            max_sequence_length=max_sequence_length,
        )
    return {"embeds": embeds, "pooled": pooled, "base": "flux", "model": clip.model}


@invocation(
    "flux_text_encoder",
    title="FLUX Text Encoder",
    tags=["prompt", "conditioning", "flux"],
    category="conditioning",
    version="1.0.0",
)
class FluxTextEncoderInvocation(BaseInvocation):
    """Encodes a prompt for FLUX.1: CLIP's pooled vector and T5's token sequence."""

    prompt: str = InputField(default="", description="The prompt", ui_component="textarea")
    clip: CLIPField = InputField(description="The CLIP encoder (from flux_model_loader)", input=Input.Connection)
    t5: T5EncoderField = InputField(description="The T5 encoder (from flux_model_loader)", input=Input.Connection)
    max_sequence_length: int = InputField(
        default=512, ge=1, le=512, description="T5 tokens (512 for dev, 256 is schnell's usual)"
    )

    def invoke(self, context: InvocationContext) -> ConditioningOutput:
        encoded = encode_flux_prompt(context, self.prompt, self.clip, self.t5, self.max_sequence_length)
        return ConditioningOutput(conditioning=ConditioningField(conditioning_name=context.objects.save(encoded)))


# -- denoise --------------------------------------------------------------------------------------
def flux_pipeline(mode: str, transformer: Any, scheduler: Any, vae: Any) -> Any:
    import diffusers

    cls = diffusers.FluxPipeline if mode == "txt2img" else diffusers.FluxImg2ImgPipeline
    pipe = cls(
        scheduler=scheduler,
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_denoise(
    context: InvocationContext,
    *,
    transformer_field: TransformerField,
    conditioning: ConditioningField,
    width: int,
    height: int,
    steps: int,
    guidance: float,
    seed: int,
    scheduler: str,
    latents: LatentsField | None,
    strength: float,
) -> Any:
    """Denoised unpacked latents `(1, C, height/8, width/8)`."""
    import torch

    check_flow_size(width, height)
    model = record(context, transformer_field.model, "transformer")
    if model.base != "flux":
        raise DiffusionNodeError("transformer", f"'{model.name}' is a {model.base} model, not FLUX")
    positive = load_object(context, conditioning.conditioning_name, "positive_conditioning")
    if positive.get("base") != "flux":
        raise DiffusionNodeError(
            "positive_conditioning", f"was encoded for a {positive.get('base')} model, use flux_text_encoder"
        )
    transformer = load(context, model.name, "transformer", "transformer")
    sched = flow_scheduler(context, model.name, scheduler, "transformer")
    vae = vae_stand_in(context, model.name, "transformer")
    device, dtype = device_and_dtype(context)
    kwargs: dict[str, Any] = {
        "prompt_embeds": positive["embeds"],
        "pooled_prompt_embeds": positive["pooled"],
        "width": width,
        "height": height,
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "generator": generator(seed),
        "output_type": "latent",
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    with torch.inference_mode():
        if latents is None:
            pipe = flux_pipeline("txt2img", transformer, sched, vae)
            kwargs["callback_on_step_end"] = flow_step_callback(context, steps, height, width)
        else:
            init = load_object(context, latents.latents_name, "latents").to(device, dtype).contiguous()
            want = (height // 8, width // 8)
            if tuple(init.shape[-2:]) != want:
                raise DiffusionNodeError(
                    "latents",
                    f"the latents are {init.shape[-1] * 8}x{init.shape[-2] * 8}, width/height say {width}x{height}",
                )
            if init.shape[1] != vae.config.latent_channels:
                raise DiffusionNodeError(
                    "latents", f"{init.shape[1]} channels; this FLUX model's latents have {vae.config.latent_channels}"
                )
            # FluxImg2ImgPipeline.get_timesteps: the last `steps - int(steps - steps * strength)` steps run
            effective = steps - int(max(steps - steps * strength, 0))
            if effective < 1:
                raise DiffusionNodeError("denoising_strength", f"{strength} leaves no step of {steps} to run")
            pipe = flux_pipeline("img2img", transformer, sched, vae)
            kwargs["image"] = init
            kwargs["strength"] = strength
            kwargs["callback_on_step_end"] = flow_step_callback(context, effective, height, width)
        packed = pipe(**kwargs).images
        out = pipe._unpack_latents(packed, height, width, pipe.vae_scale_factor)
    raise_if_canceled(context)
    return out


@invocation(
    "flux_denoise", title="FLUX Denoise", tags=["latents", "denoise", "flux"], category="latents", version="1.0.0"
)
class FluxDenoiseInvocation(BaseInvocation):
    """Denoises FLUX.1 latents: from the seed's noise (text to image) or from `latents` (image to image)."""

    transformer: TransformerField = InputField(
        description="The transformer (from flux_model_loader)", input=Input.Connection
    )
    positive_conditioning: ConditioningField = InputField(
        description="The prompt (from flux_text_encoder)", input=Input.Connection
    )
    latents: LatentsField | None = InputField(
        default=None, description="Latents to start from (image to image)", input=Input.Connection
    )
    width: int = InputField(default=1024, gt=0, multiple_of=16, description="Image width in pixels")
    height: int = InputField(default=1024, gt=0, multiple_of=16, description="Image height in pixels")
    steps: int = InputField(default=28, ge=1, le=1000, description="Denoising steps (schnell: about 4)")
    guidance: float = InputField(
        default=3.5, ge=0, le=100, description="Distilled guidance (dev models; schnell models ignore it)"
    )
    denoising_strength: float = InputField(
        default=0.6, ge=0, le=1, description="Image to image: how much to change the start latents"
    )
    scheduler: FlowSchedulerName = InputField(
        default="default", description="The sampler (FLUX takes only flow-matching ones; 'default': the model's own)"
    )
    seed: int = InputField(default=0, ge=0, lt=2**32, description="The seed of the noise")

    def invoke(self, context: InvocationContext) -> LatentsOutput:
        out = flux_denoise(
            context,
            transformer_field=self.transformer,
            conditioning=self.positive_conditioning,
            width=self.width,
            height=self.height,
            steps=self.steps,
            guidance=self.guidance,
            seed=self.seed,
            scheduler=self.scheduler,
            latents=self.latents,
            strength=self.denoising_strength,
        )
        metadata = {
            "model": self.transformer.model,
            "seed": self.seed,
            "steps": self.steps,
            "guidance": self.guidance,
            **({"strength": self.denoising_strength} if self.latents is not None else {}),
        }
        return store_latents(context, out, seed=self.seed, metadata=metadata)


# -- decode / encode ------------------------------------------------------------------------------
def _flow_vae(context: InvocationContext, vae_field: VAEField, base: str) -> Any:
    _check_part(context, vae_field.model, "vae", base)
    return load(context, vae_field.model, "vae", "vae")


@invocation(
    "flux_vae_decode",
    title="FLUX Latents to Image",
    tags=["latents", "vae", "flux"],
    category="latents",
    version="1.0.0",
)
class FluxVaeDecodeInvocation(BaseInvocation):
    """Decodes FLUX.1 latents with its VAE (shift and scale factors, as the FLUX pipeline)."""

    latents: LatentsField = InputField(description="The latents to decode", input=Input.Connection)
    vae: VAEField = InputField(description="The VAE (from flux_model_loader)", input=Input.Connection)
    gallery: bool = InputField(default=True, description="Show the image in the gallery (not intermediate)")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        vae = _flow_vae(context, self.vae, "flux")
        latents = load_object(context, self.latents.latents_name, "latents")
        image = decode_flow_latents(context, latents, vae)
        metadata = {**(self.latents.metadata or {}), "vae": self.vae.model}
        return save_image(context, image, metadata, gallery=self.gallery)


@invocation(
    "flux_vae_encode",
    title="FLUX Image to Latents",
    tags=["latents", "vae", "flux"],
    category="latents",
    version="1.0.0",
)
class FluxVaeEncodeInvocation(BaseInvocation):
    """Encodes an image to FLUX.1 latents (for image to image), as FluxImg2ImgPipeline encodes."""

    image: ImageField = InputField(description="The image to encode (sides multiples of 16)")
    vae: VAEField = InputField(description="The VAE (from flux_model_loader)", input=Input.Connection)
    seed: int | None = InputField(default=None, ge=0, description="Sample the latent distribution with this seed")

    def invoke(self, context: InvocationContext) -> LatentsOutput:
        pil = context.images.load(self.image).convert("RGB")
        if pil.width % 16 or pil.height % 16:
            raise DiffusionNodeError(
                "image", f"the image is {pil.width}x{pil.height}; both sides must be multiples of 16"
            )
        vae = _flow_vae(context, self.vae, "flux")
        latents = encode_flow_image(context, pil, vae, self.seed)
        return store_latents(context, latents, metadata={"source_image": self.image.image_name})


# -- one node -------------------------------------------------------------------------------------
FLUX_PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")


@invocation("flux_txt2img", title="FLUX Text to Image", tags=["image", "flux"], category="image", version="1.0.0")
class FluxTextToImageInvocation(BaseInvocation):
    """Generates an image from a prompt with a FLUX.1 model in one node (a whole FluxPipeline call)."""

    model: str = InputField(
        description="The installed FLUX model's name", ui_type="model", ui_model_type="main", ui_model_base="flux"
    )
    prompt: str = InputField(default="", description="The prompt", ui_component="textarea")
    width: int = InputField(default=1024, gt=0, multiple_of=16, description="Image width in pixels")
    height: int = InputField(default=1024, gt=0, multiple_of=16, description="Image height in pixels")
    steps: int = InputField(default=28, ge=1, le=1000, description="Denoising steps (schnell: about 4)")
    guidance: float = InputField(default=3.5, ge=0, le=100, description="Distilled guidance (dev models only)")
    max_sequence_length: int = InputField(default=512, ge=1, le=512, description="T5 tokens")
    scheduler: FlowSchedulerName = InputField(default="default", description="The sampler (flow-matching only)")
    seed: int = InputField(default=0, ge=0, lt=2**32, description="The seed")
    gallery: bool = InputField(default=True, description="Show the image in the gallery (not intermediate)")

    def preflight(self, services: Services) -> None:
        preflight_transformer_model(self, services, "flux")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        import diffusers
        import torch

        check_flow_size(self.width, self.height)
        found = record(context, self.model, "model")
        check_transformer_base(found, "flux")
        parts = {p: load(context, found.name, p, "model") for p in FLUX_PARTS}
        pipe = diffusers.FluxPipeline(scheduler=flow_scheduler(context, found.name, self.scheduler, "model"), **parts)
        pipe.set_progress_bar_config(disable=True)
        warn_if_truncated(context, parts["tokenizer"], self.prompt)
        with torch.inference_mode():
            image = pipe(
                prompt=self.prompt,
                width=self.width,
                height=self.height,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                max_sequence_length=self.max_sequence_length,
                generator=generator(self.seed),
                callback_on_step_end=flow_step_callback(context, self.steps, self.height, self.width),
                callback_on_step_end_tensor_inputs=["latents"],
            ).images[0]
        raise_if_canceled(context)
        metadata = {
            "model": found.name,
            "prompt": self.prompt,
            "seed": self.seed,
            "steps": self.steps,
            "guidance": self.guidance,
            "width": self.width,
            "height": self.height,
        }
        return save_image(context, image, metadata, gallery=self.gallery)
