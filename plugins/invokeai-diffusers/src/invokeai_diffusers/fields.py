"""Reference fields that travel along edges: model handles, conditioning, latents, masks.

Large values never travel inside a graph: tensors live in `context.objects`, models in the model
cache, and these small models name them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from invokeai_core import ImageField


class _Ref(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LoRAField(_Ref):
    """An installed LoRA and the weight it is applied with (diffusers' `set_adapters` weight)."""

    name: str = Field(description="The installed LoRA's name")
    weight: float = Field(default=1.0, ge=-10, le=10, description="The adapter weight (0 = no effect)")


class UNetField(_Ref):
    """The denoising UNet (and the scheduler config) of an installed model, with the LoRAs to apply."""

    model: str = Field(description="The installed model's name")
    loras: list[LoRAField] = Field(default_factory=list, description="LoRAs applied to the UNet, in order")


class CLIPField(_Ref):
    """A text encoder and its tokenizer."""

    model: str = Field(description="The installed model's name")
    text_encoder: str = Field(default="text_encoder", description="The text encoder component")
    tokenizer: str = Field(default="tokenizer", description="The tokenizer component")
    loras: list[LoRAField] = Field(default_factory=list, description="LoRAs applied to the text encoder, in order")


class VAEField(_Ref):
    """The VAE that maps between images and latents."""

    model: str = Field(description="The installed model's name")


class ConditioningField(_Ref):
    """Encoded prompt embeddings stored in the objects service."""

    conditioning_name: str = Field(description="The name of the conditioning in the objects service")


class LatentsField(_Ref):
    """A latents tensor stored in the objects service."""

    latents_name: str = Field(description="The name of the latents in the objects service")
    seed: int | None = Field(default=None, description="The seed the noise was made from, if any")
    metadata: dict[str, Any] | None = Field(default=None, description="Generation parameters, for image metadata")


class DenoiseMaskField(_Ref):
    """A denoise mask (white = repaint) stored in the objects service."""

    mask_name: str = Field(description="The name of the mask tensor in the objects service")


class TransformerField(_Ref):
    """The denoising transformer (and the scheduler config) of an installed FLUX.1 or SD3.5 model."""

    model: str = Field(description="The installed model's name")


class T5EncoderField(_Ref):
    """A T5 text encoder and its tokenizer (FLUX.1's and SD3.5's long-prompt encoder)."""

    model: str = Field(description="The installed model's name")
    text_encoder: str = Field(default="text_encoder_2", description="The text encoder component")
    tokenizer: str = Field(default="tokenizer_2", description="The tokenizer component")


class IPAdapterField(_Ref):
    """An installed IP-Adapter, the image it is prompted with, its weight and the steps it acts in."""

    name: str = Field(description="The installed IP-Adapter's name")
    image: ImageField = Field(description="The image prompt")
    weight: float = Field(default=1.0, description="The adapter's scale (diffusers' set_ip_adapter_scale)")
    begin_step_percent: float = Field(default=0.0, ge=0, le=1, description="Acts from this fraction of the steps")
    end_step_percent: float = Field(default=1.0, ge=0, le=1, description="Acts until this fraction of the steps")


#: how a control image is fitted to the generated size (see nodes/control.py)
ControlResizeMode = Literal["just_resize", "crop_resize", "fill_resize"]


class ControlField(_Ref):
    """A ControlNet with its control image and settings (the ControlNet pipelines' per-net arguments)."""

    image: ImageField = Field(description="The control image (e.g. canny edges)")
    control_model: str = Field(description="The installed ControlNet's name")
    control_weight: float = Field(default=1.0, description="controlnet_conditioning_scale")
    begin_step_percent: float = Field(default=0.0, ge=0, le=1, description="control_guidance_start")
    end_step_percent: float = Field(default=1.0, ge=0, le=1, description="control_guidance_end")
    resize_mode: ControlResizeMode = Field(default="just_resize", description="How the image is fitted")


class T2IAdapterField(_Ref):
    """A T2I-Adapter with its control image and settings (the adapter pipelines' arguments)."""

    image: ImageField = Field(description="The control image")
    t2i_adapter_model: str = Field(description="The installed T2I-Adapter's name")
    weight: float = Field(default=1.0, description="adapter_conditioning_scale")
    adapter_conditioning_factor: float = Field(
        default=1.0, ge=0, le=1, description="The fraction of the steps (from the first) the adapter is applied"
    )
    resize_mode: ControlResizeMode = Field(default="just_resize", description="How the image is fitted")
