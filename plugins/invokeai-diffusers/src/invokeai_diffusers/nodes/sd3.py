"""Stable Diffusion 3.5 nodes: loader, text encoder (CLIP-L, CLIP-G, T5), denoise, decode, and the
one-node `sd3_txt2img`.

The maths is diffusers' `StableDiffusion3Pipeline`, called on cached components (see `flux` and
`denoise`). Latents are SD3's own `(1, C, H/8, W/8)`; decoding applies the VAE's shift and scale
factors. Without a negative prompt, `sd3_denoise` encodes the empty prompt with the positive
prompt's encoders, which is what the pipeline does. SD3's pipeline accepts only flow-matching
schedulers: the model's own `FlowMatchEulerDiscreteScheduler`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    Input,
    InputField,
    InvocationContext,
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
    raise_if_canceled,
    record,
    save_image,
    store_latents,
)
from invokeai_diffusers.nodes.conditioning import ConditioningOutput, warn_if_truncated
from invokeai_diffusers.nodes.flux import (
    FlowSchedulerName,
    check_flow_size,
    check_transformer_base,
    decode_flow_latents,
    flow_scheduler,
    flow_step_callback,
    preflight_transformer_model,
    vae_stand_in,
)

if TYPE_CHECKING:
    from invokeai_core import Services

SD3_PARTS = (
    "transformer",
    "vae",
    "text_encoder",
    "tokenizer",
    "text_encoder_2",
    "tokenizer_2",
    "text_encoder_3",
    "tokenizer_3",
)


@invocation_output("sd3_model_loader_output")
class SD3ModelLoaderOutput(BaseInvocationOutput):
    """Handles to an SD3.5 model's components."""

    transformer: TransformerField = OutputField(description="The transformer (and scheduler config)")
    clip: CLIPField = OutputField(description="The CLIP-L text encoder")
    clip2: CLIPField = OutputField(description="The CLIP-G text encoder")
    t5: T5EncoderField = OutputField(description="The T5 text encoder")
    vae: VAEField = OutputField(description="The VAE")


@invocation("sd3_model_loader", title="SD3 Main Model", tags=["model", "sd3"], category="model", version="1.0.0")
class SD3ModelLoaderInvocation(BaseInvocation):
    """Selects an installed Stable Diffusion 3.5 model."""

    model: str = InputField(
        description="The installed SD3 model's name", ui_type="model", ui_model_type="main", ui_model_base="sd-3"
    )

    def preflight(self, services: Services) -> None:
        preflight_transformer_model(self, services, "sd-3")

    def invoke(self, context: InvocationContext) -> SD3ModelLoaderOutput:
        found = record(context, self.model, "model")
        check_transformer_base(found, "sd-3")
        return SD3ModelLoaderOutput(
            transformer=TransformerField(model=found.name),
            clip=CLIPField(model=found.name),
            clip2=CLIPField(model=found.name, text_encoder="text_encoder_2", tokenizer="tokenizer_2"),
            t5=T5EncoderField(model=found.name, text_encoder="text_encoder_3", tokenizer="tokenizer_3"),
            vae=VAEField(model=found.name),
        )


def encode_sd3_prompt(
    context: InvocationContext,
    prompt: str,
    clip: CLIPField,
    clip2: CLIPField,
    t5: T5EncoderField,
    max_sequence_length: int,
) -> dict[str, Any]:
    """`{"embeds", "pooled", "base": "sd-3", "model", "encoders"}` from StableDiffusion3Pipeline.encode_prompt."""
    import torch
    from diffusers import StableDiffusion3Pipeline

    for field, model in (("clip", clip.model), ("clip2", clip2.model), ("t5", t5.model)):
        found = record(context, model, field)
        if found.base != "sd-3":
            raise DiffusionNodeError(field, f"'{found.name}' is a {found.base} model, this node takes an sd-3 one")
    device, _ = device_and_dtype(context)
    parts = {
        "tokenizer": load(context, clip.model, clip.tokenizer, "clip"),
        "text_encoder": load(context, clip.model, clip.text_encoder, "clip"),
        "tokenizer_2": load(context, clip2.model, clip2.tokenizer, "clip2"),
        "text_encoder_2": load(context, clip2.model, clip2.text_encoder, "clip2"),
        "tokenizer_3": load(context, t5.model, t5.tokenizer, "t5"),
        "text_encoder_3": load(context, t5.model, t5.text_encoder, "t5"),
    }
    warn_if_truncated(context, parts["tokenizer"], prompt)
    with torch.inference_mode():
        pipe = StableDiffusion3Pipeline(transformer=None, scheduler=None, vae=None, **parts)
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=prompt,
            prompt_2=None,
            prompt_3=None,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            max_sequence_length=max_sequence_length,
        )
    return {
        "embeds": embeds,
        "pooled": pooled,
        "base": "sd-3",
        "model": clip.model,
        "encoders": (clip, clip2, t5, max_sequence_length),
    }


@invocation(
    "sd3_text_encoder",
    title="SD3 Text Encoder",
    tags=["prompt", "conditioning", "sd3"],
    category="conditioning",
    version="1.0.0",
)
class SD3TextEncoderInvocation(BaseInvocation):
    """Encodes a prompt for SD3.5 with CLIP-L, CLIP-G (pooled and sequence) and T5."""

    prompt: str = InputField(default="", description="The prompt", ui_component="textarea")
    clip: CLIPField = InputField(description="CLIP-L (from sd3_model_loader)", input=Input.Connection)
    clip2: CLIPField = InputField(description="CLIP-G (from sd3_model_loader)", input=Input.Connection)
    t5: T5EncoderField = InputField(description="T5 (from sd3_model_loader)", input=Input.Connection)
    max_sequence_length: int = InputField(default=256, ge=1, le=512, description="T5 tokens")

    def invoke(self, context: InvocationContext) -> ConditioningOutput:
        encoded = encode_sd3_prompt(context, self.prompt, self.clip, self.clip2, self.t5, self.max_sequence_length)
        return ConditioningOutput(conditioning=ConditioningField(conditioning_name=context.objects.save(encoded)))


def _sd3_conditioning(context: InvocationContext, name: str, field: str) -> dict[str, Any]:
    found = load_object(context, name, field)
    if found.get("base") != "sd-3":
        raise DiffusionNodeError(field, f"was encoded for a {found.get('base')} model, use sd3_text_encoder")
    return dict(found)


@invocation("sd3_denoise", title="SD3 Denoise", tags=["latents", "denoise", "sd3"], category="latents", version="1.0.0")
class SD3DenoiseInvocation(BaseInvocation):
    """Denoises SD3.5 latents from the seed's noise (text to image), with classifier-free guidance."""

    transformer: TransformerField = InputField(
        description="The transformer (from sd3_model_loader)", input=Input.Connection
    )
    positive_conditioning: ConditioningField = InputField(
        description="The prompt (from sd3_text_encoder)", input=Input.Connection
    )
    negative_conditioning: ConditioningField | None = InputField(
        default=None, description="The negative prompt (default: the empty prompt)", input=Input.Connection
    )
    width: int = InputField(default=1024, gt=0, multiple_of=16, description="Image width in pixels")
    height: int = InputField(default=1024, gt=0, multiple_of=16, description="Image height in pixels")
    steps: int = InputField(default=28, ge=1, le=1000, description="Denoising steps")
    cfg_scale: float = InputField(default=7.0, ge=0, le=100, description="Classifier-free guidance scale")
    scheduler: FlowSchedulerName = InputField(
        default="default", description="The sampler (SD3 takes only flow-matching ones; 'default': the model's own)"
    )
    seed: int = InputField(default=0, ge=0, lt=2**32, description="The seed of the noise")

    def invoke(self, context: InvocationContext) -> LatentsOutput:
        import torch
        from diffusers import StableDiffusion3Pipeline

        check_flow_size(self.width, self.height)
        model = record(context, self.transformer.model, "transformer")
        if model.base != "sd-3":
            raise DiffusionNodeError("transformer", f"'{model.name}' is a {model.base} model, not SD3")
        positive = _sd3_conditioning(context, self.positive_conditioning.conditioning_name, "positive_conditioning")
        if self.negative_conditioning is not None:
            negative = _sd3_conditioning(context, self.negative_conditioning.conditioning_name, "negative_conditioning")
        else:
            negative = encode_sd3_prompt(context, "", *positive["encoders"])
        transformer = load(context, model.name, "transformer", "transformer")
        scheduler = flow_scheduler(context, model.name, self.scheduler, "transformer")
        pipe = StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=scheduler,
            vae=vae_stand_in(context, model.name, "transformer"),
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
            text_encoder_3=None,
            tokenizer_3=None,
        )
        pipe.set_progress_bar_config(disable=True)
        with torch.inference_mode():
            latents = pipe(
                prompt_embeds=positive["embeds"],
                pooled_prompt_embeds=positive["pooled"],
                negative_prompt_embeds=negative["embeds"],
                negative_pooled_prompt_embeds=negative["pooled"],
                width=self.width,
                height=self.height,
                num_inference_steps=self.steps,
                guidance_scale=self.cfg_scale,
                generator=generator(self.seed),
                output_type="latent",
                callback_on_step_end=flow_step_callback(context, self.steps, self.height, self.width),
                callback_on_step_end_tensor_inputs=["latents"],
            ).images
        raise_if_canceled(context)
        metadata = {
            "model": model.name,
            "seed": self.seed,
            "steps": self.steps,
            "cfg_scale": self.cfg_scale,
            "scheduler": self.scheduler,
        }
        return store_latents(context, latents, seed=self.seed, metadata=metadata)


@invocation(
    "sd3_vae_decode", title="SD3 Latents to Image", tags=["latents", "vae", "sd3"], category="latents", version="1.0.0"
)
class SD3VaeDecodeInvocation(BaseInvocation):
    """Decodes SD3.5 latents with its VAE (shift and scale factors, as the SD3 pipeline)."""

    latents: LatentsField = InputField(description="The latents to decode", input=Input.Connection)
    vae: VAEField = InputField(description="The VAE (from sd3_model_loader)", input=Input.Connection)
    gallery: bool = InputField(default=True, description="Show the image in the gallery (not intermediate)")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        found = record(context, self.vae.model, "vae")
        if found.base != "sd-3":
            raise DiffusionNodeError("vae", f"'{found.name}' is a {found.base} model, this node takes an sd-3 one")
        vae = load(context, self.vae.model, "vae", "vae")
        latents = load_object(context, self.latents.latents_name, "latents")
        image = decode_flow_latents(context, latents, vae)
        metadata = {**(self.latents.metadata or {}), "vae": self.vae.model}
        return save_image(context, image, metadata, gallery=self.gallery)


@invocation("sd3_txt2img", title="SD3 Text to Image", tags=["image", "sd3"], category="image", version="1.0.0")
class SD3TextToImageInvocation(BaseInvocation):
    """Generates an image from a prompt with an SD3.5 model in one node (a whole StableDiffusion3Pipeline call)."""

    model: str = InputField(
        description="The installed SD3 model's name", ui_type="model", ui_model_type="main", ui_model_base="sd-3"
    )
    prompt: str = InputField(default="", description="The prompt", ui_component="textarea")
    negative_prompt: str = InputField(default="", description="The negative prompt", ui_component="textarea")
    width: int = InputField(default=1024, gt=0, multiple_of=16, description="Image width in pixels")
    height: int = InputField(default=1024, gt=0, multiple_of=16, description="Image height in pixels")
    steps: int = InputField(default=28, ge=1, le=1000, description="Denoising steps")
    cfg_scale: float = InputField(default=7.0, ge=0, le=100, description="Classifier-free guidance scale")
    max_sequence_length: int = InputField(default=256, ge=1, le=512, description="T5 tokens")
    scheduler: FlowSchedulerName = InputField(default="default", description="The sampler (flow-matching only)")
    seed: int = InputField(default=0, ge=0, lt=2**32, description="The seed")
    gallery: bool = InputField(default=True, description="Show the image in the gallery (not intermediate)")

    def preflight(self, services: Services) -> None:
        preflight_transformer_model(self, services, "sd-3")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        import torch
        from diffusers import StableDiffusion3Pipeline

        check_flow_size(self.width, self.height)
        found = record(context, self.model, "model")
        check_transformer_base(found, "sd-3")
        parts = {p: load(context, found.name, p, "model") for p in SD3_PARTS}
        scheduler = flow_scheduler(context, found.name, self.scheduler, "model")
        pipe = StableDiffusion3Pipeline(scheduler=scheduler, **parts)
        pipe.set_progress_bar_config(disable=True)
        warn_if_truncated(context, parts["tokenizer"], self.prompt)
        with torch.inference_mode():
            image = pipe(
                prompt=self.prompt,
                negative_prompt=self.negative_prompt,
                width=self.width,
                height=self.height,
                num_inference_steps=self.steps,
                guidance_scale=self.cfg_scale,
                max_sequence_length=self.max_sequence_length,
                generator=generator(self.seed),
                callback_on_step_end=flow_step_callback(context, self.steps, self.height, self.width),
                callback_on_step_end_tensor_inputs=["latents"],
            ).images[0]
        raise_if_canceled(context)
        metadata = {
            "model": found.name,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "steps": self.steps,
            "cfg_scale": self.cfg_scale,
            "width": self.width,
            "height": self.height,
        }
        return save_image(context, image, metadata, gallery=self.gallery)
