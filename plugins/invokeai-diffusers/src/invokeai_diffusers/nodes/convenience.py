"""One-node generation: txt2img, img2img and inpaint.

Each assembles the diffusers pipeline for the model's base from cached components and calls it the
way a diffusers user would, so its pixels are the pipeline's pixels; progress, previews and
cancellation come through `callback_on_step_end`. With `control` (ControlNets, txt2img and img2img)
the pipeline is StableDiffusion(XL)ControlNet(Img2Img)Pipeline, as in `denoise_latents`; with
`ip_adapter` the pipeline gets diffusers' IP-Adapter as `load_ip_adapter` sets it up, for the call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from invokeai_core import BaseInvocation, ImageField, InputField, InvocationContext, invocation
from invokeai_diffusers.fields import ControlField, IPAdapterField, LoRAField
from invokeai_diffusers.nodes.common import (
    DiffusionNodeError,
    ImageOutput,
    check_size,
    embedding_error,
    generator,
    load,
    load_embeddings,
    load_loras,
    lora_error,
    preflight_model,
    raise_if_canceled,
    record,
    save_image,
    step_callback,
)
from invokeai_diffusers.nodes.conditioning import warn_if_truncated
from invokeai_diffusers.schedulers import SchedulerName, install_scheduler, make_scheduler

if TYPE_CHECKING:
    from invokeai_core import Services

SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer")
SDXL_PARTS = (*SD_PARTS, "text_encoder_2", "tokenizer_2")


def assemble(
    context: InvocationContext, model: str, mode: str, scheduler: str, guidance: Any = None
) -> tuple[Any, str]:
    """A diffusers pipeline for `mode` (txt2img, img2img, inpaint) from the model's cached components;
    with `guidance` (ControlNets, see `control_denoise.prepare`) the matching ControlNet pipeline."""
    import diffusers

    found = record(context, model, "model")
    parts = {p: load(context, model, p, "model") for p in (SDXL_PARTS if found.base == "sdxl" else SD_PARTS)}
    parts["scheduler"] = make_scheduler("default", load(context, model, "scheduler", "model"))
    extra: dict[str, Any]
    if guidance is not None:
        from invokeai_diffusers.nodes.control_denoise import pipeline_class, pipeline_extras

        sdxl, img2img = found.base == "sdxl", mode == "img2img"
        cls = pipeline_class(guidance, sdxl, img2img)
        extra = {**pipeline_extras(guidance, sdxl, img2img), **parts}  # the text encoders too, here
        parts = {}
    elif found.base == "sdxl":
        cls = {
            "txt2img": diffusers.StableDiffusionXLPipeline,
            "img2img": diffusers.StableDiffusionXLImg2ImgPipeline,
            "inpaint": diffusers.StableDiffusionXLInpaintPipeline,
        }[mode]
        extra = {"add_watermarker": False}
        if mode != "txt2img":
            extra["requires_aesthetics_score"] = False
    else:
        cls = {
            "txt2img": diffusers.StableDiffusionPipeline,
            "img2img": diffusers.StableDiffusionImg2ImgPipeline,
            "inpaint": diffusers.StableDiffusionInpaintPipeline,
        }[mode]
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    pipe = cls(**parts, **extra)
    install_scheduler(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe, found.base


class _GenerationFields(BaseInvocation):
    """Inputs every one-node generator shares (not a node itself)."""

    model: str = InputField(
        description="The installed model's name (see `invokeai models list`)",
        ui_type="model",
        ui_model_type="main",
        ui_model_base=["sd-1", "sd-2", "sdxl"],
    )
    prompt: str = InputField(default="", description="The prompt", ui_component="textarea")
    negative_prompt: str = InputField(default="", description="The negative prompt", ui_component="textarea")
    steps: int = InputField(default=20, ge=1, le=1000, description="Denoising steps")
    cfg_scale: float = InputField(default=7.5, ge=0, le=100, description="Classifier-free guidance scale")
    scheduler: SchedulerName = InputField(default="default", description="The sampler ('default': the model's own)")
    seed: int = InputField(default=0, ge=0, lt=2**32, description="The seed")
    gallery: bool = InputField(default=True, description="Show the image in the gallery (not intermediate)")
    loras: list[LoRAField] = InputField(
        default=[], description="LoRAs (name and weight) applied to the UNet and text encoders, in order"
    )
    ip_adapter: list[IPAdapterField] = InputField(
        default=[], description="IP-Adapter image prompts (name, image, weight, step range)"
    )

    def preflight(self, services: Services) -> None:
        preflight_model(self, services)

    def _loras(self, context: InvocationContext, pipe: Any, base: str) -> Any:
        """The context in which the pipeline runs with this node's LoRAs injected (unfused)."""
        from invokeai_diffusers.lora import applied

        names = [lora.name for lora in self.loras]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise DiffusionNodeError("loras", f"LoRA '{duplicate}' is listed twice")
        loaded = load_loras(context, self.loras, record(context, self.model, "model").base, "loras")
        parts = {"unet": (pipe.unet, loaded), "text_encoder": (pipe.text_encoder, loaded)}
        if base == "sdxl":
            parts["text_encoder_2"] = (pipe.text_encoder_2, loaded)
        return applied(record(context, self.model, "model").base, parts)

    def _embeddings(self, context: InvocationContext, pipe: Any, base: str) -> Any:
        """The context in which the pipeline's text encoders hold the textual inversion embeddings
        the prompts trigger (`<name>`); none are loaded when no prompt names one."""
        from contextlib import ExitStack

        from invokeai_diffusers.textual_inversion import injected

        widths = {"text_encoder": int(pipe.text_encoder.get_input_embeddings().weight.shape[-1])}
        if base == "sdxl":
            widths["text_encoder_2"] = int(pipe.text_encoder_2.get_input_embeddings().weight.shape[-1])
        found = load_embeddings(context, [self.prompt, self.negative_prompt], base, widths, "prompt")
        stack = ExitStack()
        stack.enter_context(embedding_error("prompt"))
        stack.enter_context(injected(pipe, found))
        return stack

    def _ip_adapters(self, context: InvocationContext, pipe: Any, call: dict[str, Any]) -> Any:
        """The context in which `pipe` holds this node's IP-Adapters (as `denoise_latents` applies
        them: diffusers' attention processors for the call, the UNet's own back after); `call` (the
        pipeline call's kwargs, `callback_on_step_end` included) gets the image prompts."""
        from contextlib import ExitStack

        from invokeai_diffusers import ip_adapter
        from invokeai_diffusers.nodes.denoise import ip_adapter_error, load_ip_adapters

        adapters, image_encoder = load_ip_adapters(context, self.ip_adapter, pipe.unet)
        stack = ExitStack()
        stack.enter_context(ip_adapter_error("ip_adapter"))
        stack.enter_context(ip_adapter.applied(pipe, adapters, image_encoder, call))
        return stack

    def _generate(
        self, context: InvocationContext, mode: str, size: tuple[int, int], control: list[ControlField], **inputs: Any
    ) -> Any:
        """Run the `mode` pipeline (its ControlNet form with `control`) on `inputs` with this node's
        LoRAs, embeddings and IP-Adapters applied; the PIL image (canceled runs raise)."""
        import torch

        guidance = _guidance(context, self.model, control, img2img=mode == "img2img")
        pipe, base = assemble(context, self.model, mode, self.scheduler, guidance)
        call = self._common(context, base, pipe)
        call.update(_control_arguments(context, guidance, *size, img2img=mode == "img2img", base=base))
        with (
            torch.inference_mode(),
            lora_error("loras"),
            self._loras(context, pipe, base),
            self._embeddings(context, pipe, base),
            self._ip_adapters(context, pipe, call),
        ):
            image = pipe(**inputs, **call).images[0]
        raise_if_canceled(context)
        return image

    def _common(self, context: InvocationContext, base: str, pipe: Any) -> dict[str, Any]:
        for text in (self.prompt, self.negative_prompt):
            warn_if_truncated(context, pipe.tokenizer, text)
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt or None,
            "num_inference_steps": self.steps,
            "guidance_scale": self.cfg_scale,
            "generator": generator(self.seed),
            "callback_on_step_end": step_callback(context, base, self.steps),
            "callback_on_step_end_tensor_inputs": ["latents"],
        }

    def _metadata(self, **extra: Any) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "steps": self.steps,
            "cfg_scale": self.cfg_scale,
            "scheduler": self.scheduler,
            **extra,
        }


CONTROL_DESCRIPTION = "ControlNets (control image, model, weight, step range, resize mode), run together"


def _guidance(context: InvocationContext, model: str, control: list[ControlField], *, img2img: bool) -> Any:
    """The loaded ControlNets (None without any), checked as `denoise_latents` checks them."""
    if not control:
        return None
    from invokeai_diffusers.nodes.control_denoise import prepare

    return prepare(context, control, [], record(context, model, "model").base, img2img=img2img, masked=False)


def _control_arguments(
    context: InvocationContext, guidance: Any, width: int, height: int, *, img2img: bool, base: str
) -> dict[str, Any]:
    if guidance is None:
        return {}
    from invokeai_diffusers.nodes.control_denoise import call_arguments

    return call_arguments(context, guidance, width, height, img2img=img2img, sdxl=base == "sdxl")


def _source_image(context: InvocationContext, field: str, image: ImageField) -> Any:
    pil = context.images.load(image).convert("RGB")
    if pil.width % 8 or pil.height % 8:
        raise DiffusionNodeError(field, f"the image is {pil.width}x{pil.height}; both sides must be multiples of 8")
    return pil


@invocation("txt2img", title="Text to Image", tags=["generate", "txt2img"], category="generate", version="1.0.0")
class TextToImageInvocation(_GenerationFields):
    """Generates an image from a prompt in one node (SD 1.x, 2.x or XL, by the model's base)."""

    width: int = InputField(default=512, gt=0, multiple_of=8, description="Width in pixels")
    height: int = InputField(default=512, gt=0, multiple_of=8, description="Height in pixels")
    control: list[ControlField] = InputField(default=[], description=CONTROL_DESCRIPTION)

    def invoke(self, context: InvocationContext) -> ImageOutput:
        check_size(self.width, self.height)
        size = (self.width, self.height)
        image = self._generate(context, "txt2img", size, self.control, width=self.width, height=self.height)
        return save_image(context, image, self._metadata(width=self.width, height=self.height), gallery=self.gallery)


@invocation("img2img", title="Image to Image", tags=["generate", "img2img"], category="generate", version="1.0.0")
class ImageToImageInvocation(_GenerationFields):
    """Transforms an image guided by a prompt in one node."""

    image: ImageField = InputField(description="The image to start from")
    strength: float = InputField(default=0.75, ge=0, le=1, description="How much to change the image")
    control: list[ControlField] = InputField(default=[], description=CONTROL_DESCRIPTION)

    def invoke(self, context: InvocationContext) -> ImageOutput:
        source = _source_image(context, "image", self.image)
        image = self._generate(context, "img2img", source.size, self.control, image=source, strength=self.strength)
        meta = self._metadata(strength=self.strength, source_image=self.image.image_name)
        return save_image(context, image, meta, gallery=self.gallery)


@invocation("inpaint", title="Inpaint", tags=["generate", "inpaint"], category="generate", version="1.0.0")
class InpaintInvocation(_GenerationFields):
    """Repaints the white area of a mask in one node."""

    image: ImageField = InputField(description="The image to repaint")
    mask: ImageField = InputField(description="The mask (white = repaint, black = keep), the image's size")
    strength: float = InputField(default=1.0, ge=0, le=1, description="How much to change the masked area")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        source = _source_image(context, "image", self.image)
        mask = context.images.load(self.mask)
        if mask.size != source.size:
            raise DiffusionNodeError(
                "mask", f"the mask is {mask.width}x{mask.height}, the image is {source.width}x{source.height}"
            )
        image = self._generate(
            context,
            "inpaint",
            source.size,
            [],
            image=source,
            mask_image=mask,
            strength=self.strength,
            width=source.width,
            height=source.height,
        )
        meta = self._metadata(strength=self.strength, source_image=self.image.image_name, mask=self.mask.image_name)
        return save_image(context, image, meta, gallery=self.gallery)
