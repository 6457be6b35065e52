"""Model loader nodes: a model name in, handles to its components out (nothing is loaded yet)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    Input,
    InputField,
    InvocationContext,
    NodeFieldError,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_diffusers.fields import CLIPField, LoRAField, UNetField, VAEField
from invokeai_diffusers.nodes.common import DiffusionNodeError, check_base, not_a, preflight_model, record

if TYPE_CHECKING:
    from invokeai_core import Services


@invocation_output("model_loader_output")
class ModelLoaderOutput(BaseInvocationOutput):
    """Handles to a Stable Diffusion 1.x/2.x model's components."""

    unet: UNetField = OutputField(description="The UNet (and scheduler config)")
    clip: CLIPField = OutputField(description="The text encoder and tokenizer")
    vae: VAEField = OutputField(description="The VAE")


@invocation_output("sdxl_model_loader_output")
class SDXLModelLoaderOutput(BaseInvocationOutput):
    """Handles to an SDXL model's components."""

    unet: UNetField = OutputField(description="The UNet (and scheduler config)")
    clip: CLIPField = OutputField(description="The first text encoder and tokenizer")
    clip2: CLIPField = OutputField(description="The second text encoder and tokenizer")
    vae: VAEField = OutputField(description="The VAE")


@invocation("main_model_loader", title="Main Model", tags=["model"], category="model", version="1.0.0")
class MainModelLoaderInvocation(BaseInvocation):
    """Selects an installed Stable Diffusion 1.x or 2.x model."""

    model: str = InputField(
        description="The installed model's name (see `invokeai models list`)",
        ui_type="model",
        ui_model_type="main",
        ui_model_base=["sd-1", "sd-2"],
    )

    def preflight(self, services: Services) -> None:
        preflight_model(self, services, base="sd")

    def invoke(self, context: InvocationContext) -> ModelLoaderOutput:
        found = record(context, self.model, "model")
        check_base(found, sdxl=False)
        return ModelLoaderOutput(
            unet=UNetField(model=found.name), clip=CLIPField(model=found.name), vae=VAEField(model=found.name)
        )


@invocation("sdxl_model_loader", title="SDXL Main Model", tags=["model", "sdxl"], category="model", version="1.0.0")
class SDXLModelLoaderInvocation(BaseInvocation):
    """Selects an installed SDXL model."""

    model: str = InputField(
        description="The installed SDXL model's name", ui_type="model", ui_model_type="main", ui_model_base="sdxl"
    )

    def preflight(self, services: Services) -> None:
        preflight_model(self, services, base="sdxl")

    def invoke(self, context: InvocationContext) -> SDXLModelLoaderOutput:
        found = record(context, self.model, "model")
        check_base(found, sdxl=True)
        return SDXLModelLoaderOutput(
            unet=UNetField(model=found.name),
            clip=CLIPField(model=found.name),
            clip2=CLIPField(model=found.name, text_encoder="text_encoder_2", tokenizer="tokenizer_2"),
            vae=VAEField(model=found.name),
        )


@invocation_output("lora_loader_output")
class LoRALoaderOutput(BaseInvocationOutput):
    """The handles that came in, with the LoRA added to each."""

    unet: UNetField = OutputField(description="The UNet, with the LoRA")
    clip: CLIPField = OutputField(description="The text encoder, with the LoRA")
    clip2: CLIPField | None = OutputField(description="SDXL's second text encoder, with the LoRA")


def _with_lora(field: UNetField | CLIPField | None, lora: LoRAField, name: str) -> UNetField | CLIPField | None:
    if field is None:
        return None
    if any(existing.name == lora.name for existing in field.loras):
        raise DiffusionNodeError(name, f"LoRA '{lora.name}' is already applied to this {name}")
    return field.model_copy(update={"loras": [*field.loras, lora]})


@invocation("lora_loader", title="LoRA", tags=["model", "lora"], category="model", version="1.0.0")
class LoRALoaderInvocation(BaseInvocation):
    """Applies an installed LoRA with a weight to a UNet and its text encoders (chain several loaders).

    Applied unfused at run time, as diffusers' `load_lora_weights` + `set_adapters` do; the base
    model is never reloaded or changed."""

    lora: str = InputField(
        description="The installed LoRA's name (see `invokeai models list`)", ui_type="model", ui_model_type="lora"
    )
    weight: float = InputField(default=1.0, ge=-10, le=10, description="The adapter weight")
    unet: UNetField = InputField(description="The UNet (from a model loader)", input=Input.Connection)
    clip: CLIPField = InputField(description="The text encoder (from a model loader)", input=Input.Connection)
    clip2: CLIPField | None = InputField(default=None, description="SDXL's second text encoder", input=Input.Connection)

    def preflight(self, services: Services) -> None:
        from invokeai_core import InvokeAIError
        from invokeai_diffusers.models.manager import ModelManager

        try:
            found = services.get(ModelManager).get(self.lora)
        except InvokeAIError as e:
            raise NodeFieldError(str(e), self.id, "lora") from None
        if found.type != "lora":
            raise NodeFieldError(not_a(found, "a LoRA"), self.id, "lora")

    def invoke(self, context: InvocationContext) -> LoRALoaderOutput:
        found = record(context, self.lora, "lora")
        if found.type != "lora":
            raise DiffusionNodeError("lora", not_a(found, "a LoRA"))
        fields: tuple[tuple[str, UNetField | CLIPField | None], ...] = (
            ("unet", self.unet),
            ("clip", self.clip),
            ("clip2", self.clip2),
        )
        for name, field in fields:
            if field is not None:
                model = record(context, field.model, name)
                if model.base != found.base:
                    raise DiffusionNodeError(
                        "lora", f"LoRA '{found.name}' is for {found.base}, the {name} is {model.base}"
                    )
        lora = LoRAField(name=found.name, weight=self.weight)
        unet = _with_lora(self.unet, lora, "unet")
        clip = _with_lora(self.clip, lora, "clip")
        clip2 = _with_lora(self.clip2, lora, "clip2")
        assert isinstance(unet, UNetField) and isinstance(clip, CLIPField)
        return LoRALoaderOutput(unet=unet, clip=clip, clip2=clip2 if isinstance(clip2, CLIPField) else None)
