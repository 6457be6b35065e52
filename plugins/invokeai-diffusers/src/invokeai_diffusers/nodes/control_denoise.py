"""What `denoise_latents` adds for ControlNets and T2I-Adapters: the loaded models, the fitted
control images and the pipeline arguments.

The denoising itself stays diffusers': `nodes/denoise.py` builds StableDiffusion(XL)ControlNetPipeline
(or its Img2Img variant) / StableDiffusion(XL)AdapterPipeline from the cached components instead of
the plain pipeline, with these models as `controlnet` / `adapter` (a list of several becomes the
pipeline's MultiControlNetModel / MultiAdapter, as in diffusers), and calls it with these
arguments. The control images are fitted to the output size here (see `nodes/control.py`); for
`just_resize` that is the pipelines' own Lanczos resize, so an image of another size gives the
bits a diffusers user gets by passing it unchanged.

Limits, each refused with an error naming the field: ControlNets and T2I-Adapters cannot be mixed
(no diffusers pipeline takes both); T2I-Adapters do text to image only (diffusers has no adapter
image-to-image pipeline); a denoise mask cannot be combined with either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invokeai_diffusers.fields import ControlField, T2IAdapterField
from invokeai_diffusers.nodes.common import DiffusionNodeError, load, record
from invokeai_diffusers.nodes.control import check_control_model, fit_image

if TYPE_CHECKING:
    from invokeai_core import InvocationContext


@dataclass
class Guidance:
    """The ControlNets (kind `controlnet`) or T2I-Adapters (kind `t2i_adapter`) of one denoise."""

    kind: str
    fields: list[Any]
    models: list[Any] = field(default_factory=list)

    @property
    def module(self) -> Any:
        """What the pipeline constructor gets: one model, or the list diffusers wraps in Multi*."""
        return self.models[0] if len(self.models) == 1 else list(self.models)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def prepare(
    context: InvocationContext,
    control: list[ControlField],
    adapters: list[T2IAdapterField],
    base: str,
    *,
    img2img: bool,
    masked: bool,
) -> Guidance | None:
    """Check and load the ControlNets or T2I-Adapters (None when there are none)."""
    if not control and not adapters:
        return None
    if control and adapters:
        raise DiffusionNodeError(
            "t2i_adapter", "ControlNets and T2I-Adapters cannot be combined (no diffusers pipeline takes both)"
        )
    name = "control" if control else "t2i_adapter"
    if masked:
        raise DiffusionNodeError(name, "a denoise mask cannot be combined with ControlNets or T2I-Adapters")
    if adapters and img2img:
        raise DiffusionNodeError(
            "t2i_adapter", "T2I-Adapters do text to image only (diffusers has no adapter image-to-image pipeline)"
        )
    kind = "controlnet" if control else "t2i_adapter"
    guidance = Guidance(kind=kind, fields=list(control or adapters))
    seen: set[str] = set()
    for item in guidance.fields:
        model_name = item.control_model if kind == "controlnet" else item.t2i_adapter_model
        found = record(context, model_name, name)
        check_control_model(found, kind, name)
        if found.base != base:
            what = "ControlNet" if kind == "controlnet" else "T2I-Adapter"
            raise DiffusionNodeError(name, f"{what} '{found.name}' is for {found.base}, the UNet is {base}")
        if model_name in seen:
            raise DiffusionNodeError(name, f"'{model_name}' is given twice (one model runs once per step)")
        seen.add(model_name)
        guidance.models.append(load(context, model_name, kind, name))
    if kind == "t2i_adapter":
        factors = {a.adapter_conditioning_factor for a in adapters}
        if len(factors) > 1:
            raise DiffusionNodeError(
                "t2i_adapter",
                f"the adapters' adapter_conditioning_factor differ ({sorted(factors)}): diffusers takes one",
            )
        if base != "sdxl" and factors != {1.0}:
            raise DiffusionNodeError(
                "t2i_adapter",
                "adapter_conditioning_factor is SDXL's only (diffusers' SD adapter pipeline has none): use 1",
            )
    return guidance


def _images(context: InvocationContext, guidance: Guidance, width: int, height: int) -> list[Any]:
    images = []
    for item, model in zip(guidance.fields, guidance.models, strict=True):
        pil = context.images.load(item.image)
        if guidance.kind == "t2i_adapter" and model.config.in_channels == 1:
            pil = pil.convert("L")  # a one-channel (sketch) adapter: the pipeline feeds the array as is
        else:
            pil = pil.convert("RGB")
        images.append(fit_image(pil, width, height, item.resize_mode))
    return images


def call_arguments(
    context: InvocationContext, guidance: Guidance, width: int, height: int, *, img2img: bool, sdxl: bool
) -> dict[str, Any]:
    """The pipeline call's ControlNet / adapter arguments (a scalar each for one model, lists for several)."""
    images = _images(context, guidance, width, height)

    def one_or_list(values: list[Any]) -> Any:
        return values[0] if len(values) == 1 else values

    if guidance.kind == "controlnet":
        fields: list[ControlField] = guidance.fields
        return {
            ("control_image" if img2img else "image"): one_or_list(images),
            "controlnet_conditioning_scale": one_or_list([f.control_weight for f in fields]),
            "control_guidance_start": one_or_list([f.begin_step_percent for f in fields]),
            "control_guidance_end": one_or_list([f.end_step_percent for f in fields]),
            **({"height": height, "width": width} if img2img else {}),  # text to image passes them already
        }
    adapters: list[T2IAdapterField] = guidance.fields
    out: dict[str, Any] = {
        "image": one_or_list(images),
        "adapter_conditioning_scale": one_or_list([a.weight for a in adapters]),
    }
    if sdxl:
        out["adapter_conditioning_factor"] = adapters[0].adapter_conditioning_factor
    return out


def pipeline_class(guidance: Guidance, sdxl: bool, img2img: bool) -> Any:
    import diffusers

    if guidance.kind == "t2i_adapter":
        return diffusers.StableDiffusionXLAdapterPipeline if sdxl else diffusers.StableDiffusionAdapterPipeline
    if sdxl:
        return (
            diffusers.StableDiffusionXLControlNetImg2ImgPipeline
            if img2img
            else diffusers.StableDiffusionXLControlNetPipeline
        )
    return (
        diffusers.StableDiffusionControlNetImg2ImgPipeline if img2img else diffusers.StableDiffusionControlNetPipeline
    )


def pipeline_extras(guidance: Guidance, sdxl: bool, img2img: bool) -> dict[str, Any]:
    """Constructor arguments besides vae/text_encoder/tokenizer/unet/scheduler."""
    if guidance.kind == "t2i_adapter":
        if sdxl:
            return {"adapter": guidance.module, "text_encoder_2": None, "tokenizer_2": None}
        return {
            "adapter": guidance.module,
            "safety_checker": None,
            "feature_extractor": None,
            "requires_safety_checker": False,
        }
    if sdxl:
        extra: dict[str, Any] = {
            "controlnet": guidance.module,
            "text_encoder_2": None,
            "tokenizer_2": None,
            "add_watermarker": False,
        }
        if img2img:
            extra["requires_aesthetics_score"] = False
        return extra
    return {
        "controlnet": guidance.module,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def legacy_callback(inner: Any) -> Any:
    """The adapter pipelines take only the old `callback(step, timestep, latents)`: progress and
    cancel through the same `callback_on_step_end` code (a cancel raises, as nothing else stops them)."""
    from invokeai_diffusers.nodes.common import GenerationCanceled

    class _Pipe:
        _interrupt = False

    def callback(step: int, timestep: Any, latents: Any) -> None:
        pipe = _Pipe()
        inner(pipe, step, timestep, {"latents": latents})
        if pipe._interrupt:
            raise GenerationCanceled("canceled")

    return callback
